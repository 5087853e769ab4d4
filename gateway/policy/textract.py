"""Every text a message carries, for the policy detectors, within hard limits.

The detectors see the subject, the text body, the HTML body as text, and the
text inside attachments: any text/* part, PDF, Word/Excel/PowerPoint (OOXML),
OpenDocument, zip archives (recursively) and attached messages. Next to the
texts come the facts about every attachment and archive member (real type by
content, size, encryption) and ``incomplete``: what a limit stopped or a
format kept us from reading, by position, never by file name, so that rules
fall back instead of relaying what nobody read.

Why it is built this way:

- Attachments are hostile input and parsers are slow or worse: a zip bomb
  unpacks 10 GB from 10 MB, 42.zip nests bombs, a crafted PDF keeps pypdf's
  pure-Python text extraction busy for minutes in one call. Byte, ratio, depth,
  member and text caps are enforced while streaming (gateway.policy.formats),
  and a time budget bounds each message.
- A thread cannot be stopped from outside, and pypdf or the XML parser, in a
  thread of the gateway, would also hold the GIL the SMTP side needs. So PDF
  and zip-based files (OOXML, ODF, archives) are parsed in spawned helper
  processes, one request per attachment, its bytes sent once. The helper checks
  the clock between pages, rows and chunks and stops by itself with what it
  has; past the budget (and a short grace) the gateway kills it and starts
  another, for a parser stuck inside a single call.
- The helpers are our own processes rather than a ProcessPoolExecutor: on
  Python 3.11 an executor cannot end a running task (``shutdown`` leaves it
  running; ``terminate_workers`` came in 3.14), and a stuck task would keep a
  worker and a CPU forever. They start with "spawn", not fork, so they inherit
  neither the gateway's threads nor its locks.
- Plain text is decoded here: it is fast C code, and sending it to a helper
  would cost more than decoding it.
- The time budget counts reading, not waiting for a free or starting helper, so
  a burst of messages slows mail down instead of marking it incomplete.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import TYPE_CHECKING

from gateway.mail.content import AttachmentSource, Content
from gateway.mail.content import extract as extract_content
from gateway.policy.formats import (
    CHUNK,
    Budget,
    Found,
    Kind,
    LimitReached,
    archives,
    html_to_text,
    sniff,
    text_of,
)
from gateway.policy.types import AttachmentFacts, Extracted, Where

if TYPE_CHECKING:
    from gateway.config import Policy

log = logging.getLogger("sealgate.textract")

_MESSAGES = frozenset({"message/rfc822", "message/global"})
_IN_HELPER = frozenset({sniff.PDF, sniff.ZIP})  # what only a killable process parses
_GRACE = 0.5  # seconds a helper past its budget gets to answer before it is killed
_STARTUP = 60.0  # seconds a new helper may take to import its parsers

Outcome = tuple[Kind, Found, Budget]


@dataclass(frozen=True)
class Limits:
    """What one message may cost; what stops early is named in ``Extracted.incomplete``."""

    max_attachment_bytes: int = 25 * 1024 * 1024  # larger: not read ("size limit")
    max_depth: int = 3  # archive and attached-message nesting ("nesting limit")
    max_members: int = 1000  # per archive ("member limit")
    max_ratio: float = 100.0  # unpacked/packed, per member and per archive
    max_expanded_bytes: int = 100 * 1024 * 1024  # unpacked per message ("size limit")
    max_text_chars: int = 20_000_000  # handed to the detectors ("text limit")
    time_budget: float = 10.0  # seconds of reading per message ("time limit")

    @classmethod
    def from_config(cls, settings: Policy) -> Limits:
        """The limits ``[policy]`` sets; the others keep their defaults."""
        return cls(
            max_attachment_bytes=settings.max_attachment_size,
            max_depth=settings.max_depth,
            time_budget=settings.time_budget,
        )


class TextExtractor:
    """Extracts the texts of messages; thread-safe, ``processes`` helpers shared by all."""

    def __init__(self, limits: Limits = Limits(), *, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError("a text extractor needs at least one helper process")
        self.limits = limits
        self._helpers = _HelperPool(processes)

    def start(self) -> None:
        """Start the helpers (else the first :meth:`extract` does)."""
        self._helpers.start()

    def close(self) -> None:
        self._helpers.close()

    def extract(self, raw: bytes) -> Extracted:
        """The texts, attachment facts and omissions of the message ``raw``; blocks (call
        it off the event loop); never raises on malformed input."""
        return _Reading(self.limits, self._helpers).message(raw)


class _Reading:
    """The reading of one message: its budget, and what was found so far."""

    def __init__(self, limits: Limits, helpers: _HelperPool) -> None:
        self.limits = limits
        self.helpers = helpers
        self.found = Found()
        self.budget = Budget(
            max_depth=limits.max_depth,
            max_members=limits.max_members,
            max_ratio=limits.max_ratio,
            max_file_bytes=limits.max_attachment_bytes,
            expanded_bytes=limits.max_expanded_bytes,
            text_chars=limits.max_text_chars,
            deadline=time.monotonic() + limits.time_budget,
        )

    def message(self, raw: bytes) -> Extracted:
        content = extract_content(raw)
        self.text("subject", "", content.headers.subject)
        self.bodies(content, "body", "")
        self.attachments(content.attachments, "", 0)
        return Extracted(
            tuple(self.found.texts),
            tuple(self.found.files),
            tuple(dict.fromkeys(self.found.incomplete)),
        )

    def bodies(self, content: Content, where: Where, label: str) -> None:
        self.text(where, label, content.text)
        self.text(where, label, None if content.html is None else html_to_text(content.html))

    def text(self, where: Where, label: str, text: str | None) -> None:
        if not text:
            return
        try:
            with text_of(self.found, label, self.budget, where) as pieces:
                pieces.add(text)
        except LimitReached as stop:
            self.found.note(label or where, stop.reason)

    def attachments(self, sources: list[AttachmentSource], prefix: str, depth: int) -> None:
        for number, source in enumerate(sources, 1):
            self.attachment(source, f"{prefix}attachment {number}", depth)

    def attachment(self, source: AttachmentSource, label: str, depth: int) -> None:
        """List one attachment and read it, or say why it was not read."""
        data, size = _read_source(source, self.limits.max_attachment_bytes)
        declared = source.content_type
        kind = Kind(sniff.sniff(data, declared))
        is_message = declared in _MESSAGES and kind.real_type.startswith("text/")
        if is_message:
            kind.real_type = declared
        index = len(self.found.files)
        if size > self.limits.max_attachment_bytes:
            self.found.note(label, "size limit")
        elif time.monotonic() > self.budget.deadline:
            self.found.note(label, "time limit")
        elif is_message:
            self.attached_message(data, label, depth)
        else:
            kind = self.read(data, declared, label, depth, kind)
        facts = AttachmentFacts(
            label, source.filename, declared, kind.real_type, size, kind.encrypted, depth
        )
        self.found.files.insert(index, facts)

    def attached_message(self, data: bytes, label: str, depth: int) -> None:
        """An attached message's subject and bodies as its text; its attachments one
        level deeper ("attachment 2 > attachment 1")."""
        if depth + 1 > self.limits.max_depth:
            self.found.note(label, "nesting limit")
            return
        inner = extract_content(data)
        self.text("attachment", label, inner.headers.subject)
        self.bodies(inner, "attachment", label)
        self.attachments(inner.attachments, f"{label} > ", depth + 1)

    def read(self, data: bytes, declared: str, label: str, depth: int, kind: Kind) -> Kind:
        if kind.real_type in _IN_HELPER:
            kind, found = self.read_in_helper(data, declared, label, depth, kind)
        else:
            kind, found = archives.read_attachment(data, declared, label, depth, self.budget)
        self.found.texts += found.texts
        self.found.files += found.files
        self.found.incomplete += found.incomplete
        return kind

    def read_in_helper(
        self, data: bytes, declared: str, label: str, depth: int, kind: Kind
    ) -> tuple[Kind, Found]:
        try:
            return self.call_helper((data, declared, label, depth, self.budget))
        except TimeoutError:
            log.warning("a text extraction helper ran out of time and was replaced")
            return kind, _noted(label, "time limit")
        except _HelperLost:
            log.warning("a text extraction helper died and was replaced")
            return kind, _noted(label, f"unreadable ({sniff.short_name(kind.real_type)})")

    def call_helper(self, request: tuple[bytes, str, str, int, Budget]) -> tuple[Kind, Found]:
        waiting = time.monotonic()
        with self.helpers.borrow() as helper:
            self.budget.deadline += time.monotonic() - waiting  # waiting is not reading
            seconds = self.budget.deadline - time.monotonic()
            kind, found, spent = helper.call((*request, seconds), seconds + _GRACE)
        self.budget.expanded_bytes = spent.expanded_bytes
        self.budget.text_chars = spent.text_chars
        return kind, found


def _noted(label: str, reason: str) -> Found:
    found = Found()
    found.note(label, reason)
    return found


def _read_source(source: AttachmentSource, limit: int) -> tuple[bytes, int]:
    """The decoded bytes and their size; past ``limit``, only the first chunk is kept (to
    tell the type), but the size is still counted."""
    pieces: list[bytes] = []
    size = 0
    for chunk in source.chunks(CHUNK):
        size += len(chunk)
        if size <= limit or not pieces:
            pieces.append(chunk)
        elif len(pieces) > 1:
            del pieces[1:]
    return b"".join(pieces), size


# --- helper processes -----------------------------------------------------------------


class _HelperLost(Exception):
    """A helper died (or never started); it has been replaced."""


def _serve(conn: Connection) -> None:
    """A helper's life: read attachments until the gateway closes the pipe.

    It logs nothing and shows no warnings: parsers describe broken files in
    their messages, and a helper's stderr is the gateway's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when helpers end
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    try:
        conn.send("ready")
        while True:
            data, declared, label, depth, budget, seconds = conn.recv()
            budget.deadline = time.monotonic() + seconds
            kind, found = archives.read_attachment(data, declared, label, depth, budget)
            conn.send((kind, found, budget))
    except (EOFError, OSError):
        return  # the gateway closed the pipe (it stops, or gave up on this helper)


class _Helper:
    """One helper process and the pipe to it."""

    def __init__(self, context: SpawnContext) -> None:
        self._context = context
        self._conn, self._process = self._spawn()
        self._ready = False

    def _spawn(self) -> tuple[Connection, SpawnProcess]:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(theirs,), name="sealgate-textract", daemon=True
        )
        process.start()
        theirs.close()
        return ours, process

    def wait_ready(self) -> None:
        """Wait for the helper to be ready; one that died while idle is replaced first."""
        if not self._process.is_alive():
            self.restart()
        if self._ready:
            return
        try:
            self._ready = self._conn.poll(_STARTUP) and self._conn.recv() == "ready"
        except (EOFError, OSError):
            self._ready = False
        if not self._ready:
            self.restart()
            raise _HelperLost("the helper did not start")

    def call(self, request: tuple[object, ...], timeout: float) -> Outcome:
        """Send one attachment and wait ``timeout`` seconds for what the helper read;
        on ``TimeoutError`` or :class:`_HelperLost`, the helper has been replaced."""
        try:
            self._conn.send(request)
            answered = self._conn.poll(max(timeout, 0.0))
            outcome: Outcome | None = self._conn.recv() if answered else None
        except (EOFError, OSError) as exc:
            self.restart()
            raise _HelperLost from exc
        if outcome is None:
            self.restart()
            raise TimeoutError
        return outcome

    def restart(self) -> None:
        self.stop()
        self._conn, self._process = self._spawn()
        self._ready = False

    def stop(self) -> None:
        self._conn.close()
        self._process.kill()
        self._process.join()
        self._process.close()


class _HelperPool:
    """``size`` helpers, each lent to one attachment at a time."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: list[_Helper] = []
        self._available = threading.Condition()
        self._started = False
        self._closed = False

    def start(self) -> None:
        with self._available:
            if self._closed:
                raise RuntimeError("the text extractor was closed")
            if not self._started:
                context = multiprocessing.get_context("spawn")
                self._idle = [_Helper(context) for _ in range(self._size)]
                self._started = True
                self._available.notify_all()

    def close(self) -> None:
        """End the idle helpers now; busy ones end when their attachment is done."""
        with self._available:
            self._closed = True
            idle, self._idle = self._idle, []
            self._available.notify_all()
        for helper in idle:
            helper.stop()

    @contextmanager
    def borrow(self) -> Iterator[_Helper]:
        """A ready helper, for one attachment."""
        self.start()
        with self._available:
            self._available.wait_for(lambda: self._idle or self._closed)
            if self._closed:
                raise RuntimeError("the text extractor was closed")
            helper = self._idle.pop()
        try:
            helper.wait_ready()
            yield helper
        finally:
            self._give_back(helper)

    def _give_back(self, helper: _Helper) -> None:
        with self._available:
            if not self._closed:
                self._idle.append(helper)
                self._available.notify()
                return
        helper.stop()
