"""The soak test's upstream: an SMTP sink that records everything it accepts, and flaps.

It plays the MTA that Sealgate relays to. Every message it accepts (it has
answered 250 to the end of the data) is written to ``DIR/NNNNNN.eml`` and
described by one JSON line in ``DIR/index.jsonl``: when it arrived, the
envelope sender and recipients, and the file. A message that got a 451 or
whose connection was dropped is not recorded: an MTA that never said 250 has
not taken it.

On request it misbehaves the way real upstreams do:

- ``tempfail()``: 451 to MAIL, RCPT or the end of DATA (the stage is picked at
  random per transaction, seeded), as a full queue or greylisting would;
- ``refuse()``: stop listening (connections are refused) and drop the open
  ones; ``listen()`` binds the same port again;
- ``drop()``: receive the whole message, then close the connection without a
  reply, the moment a crash or a network cut hurts most;
- ``normal()``: back to accepting.

In the tempfail and drop modes only a share of the transactions (``rate``,
drawn per transaction) fails: a flapping upstream, which lets some of the
messages Sealgate owes for one original through and not others.

It runs its own event loop in a thread of the calling process, so the soak
test switches modes with plain method calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
STAGES = ("mail", "rcpt", "data")


class _SinkSMTP(SMTP):
    # Real MTAs (Postfix) accept lines longer than RFC 5321's 1000 octets.
    line_length_limit = 1 << 20
    live: set[SMTP] | None = None  # the sink's open connections, to drop on refuse()

    def connection_lost(self, error: Exception | None) -> None:
        if self.live is not None:
            self.live.discard(self)
        super().connection_lost(error)


class RecordingSink:
    """The upstream: records accepted mail to a directory; ``mode`` says how it behaves."""

    def __init__(self, directory: Path, seed: int = 1) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.index_path = directory / "index.jsonl"
        self._index = open(self.index_path, "a", encoding="utf-8")  # noqa: SIM115 (close())
        self.mode = "normal"
        self.rate = 1.0  # share of transactions that fail in the tempfail and drop modes
        self.port = 0
        self.accepted = 0
        self.counters: dict[str, int] = {}
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._live: set[SMTP] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="soak-sink")
        self._thread.daemon = True
        self._thread.start()

    # -- control, from any thread ------------------------------------------------

    def _call(self, coro: Any, timeout: float = 15) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def listen(self, attempts: int = 50) -> int:
        """Listen (on the same port as before, if there was one); the port."""
        return int(self._call(self._listen(attempts)))

    def refuse(self) -> None:
        """Stop listening and drop the open connections: the upstream is down."""
        self._call(self._close())

    def tempfail(self, rate: float = 1.0) -> None:
        self.rate = rate
        self.mode = "tempfail"

    def drop(self, rate: float = 1.0) -> None:
        self.rate = rate
        self.mode = "drop"

    def normal(self) -> None:
        self.mode = "normal"

    @property
    def listening(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        """Stop serving and end the thread (bounded)."""
        with contextlib.suppress(Exception):
            self._call(self._close(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
        self._index.close()

    # -- the server, on the sink's loop --------------------------------------------

    async def _listen(self, attempts: int) -> int:
        if self._server is not None:
            return self.port
        for attempt in range(attempts):
            try:
                self._server = await self._loop.create_server(
                    self._protocol, host=HOST, port=self.port, reuse_address=True
                )
                break
            except OSError:
                # The old port is still in use by a closing socket: try again shortly.
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.1)
        assert self._server is not None
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for protocol in list(self._live):
            if isinstance(protocol.transport, asyncio.Transport):
                protocol.transport.abort()
        self._live.clear()

    def _protocol(self) -> SMTP:
        self._count("connections")
        protocol = _SinkSMTP(
            _Handler(self),
            hostname="sink.soak.test",
            enable_SMTPUTF8=True,
            data_size_limit=None,
            decode_data=False,
        )
        protocol.live = self._live
        self._live.add(protocol)
        return protocol

    # -- behaviour -------------------------------------------------------------------

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def stage_to_fail(self) -> str | None:
        """The stage this transaction fails at (chosen at MAIL): "mail", "rcpt" or "data"
        in tempfail mode, "drop" in drop mode, for a share ``rate`` of transactions."""
        if self.mode == "normal" or self._random.random() >= self.rate:
            return None
        return "drop" if self.mode == "drop" else self._random.choice(STAGES)

    def record(self, envelope: Envelope) -> int:
        self.accepted += 1
        seq = self.accepted
        name = f"{seq:06d}.eml"
        (self.directory / name).write_bytes(envelope.original_content or b"")
        entry = {
            "seq": seq,
            "at": time.time(),
            "mail_from": envelope.mail_from or "",
            "rcpt_tos": list(envelope.rcpt_tos),
            "file": name,
        }
        self._index.write(json.dumps(entry) + "\n")
        self._index.flush()
        return seq


class _Handler:
    def __init__(self, sink: RecordingSink) -> None:
        self.sink = sink

    def _fails_at(self, envelope: Envelope, stage: str) -> bool:
        failing = getattr(envelope, "soak_fail_at", None)
        if failing == stage:
            self.sink._count("dropped after data" if stage == "drop" else f"451 at {stage}")
            return True
        return False

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.soak_fail_at = self.sink.stage_to_fail()  # type: ignore[attr-defined]
        if self._fails_at(envelope, "mail"):
            return "451 4.3.2 soak: upstream busy, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._fails_at(envelope, "rcpt"):
            return "451 4.3.2 soak: upstream busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self._fails_at(envelope, "drop"):
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "421 dropped"  # never sent: the connection is gone
        if self._fails_at(envelope, "data"):
            return "451 4.3.2 soak: upstream busy, try again later"
        seq = self.sink.record(envelope)
        return f"250 2.0.0 Ok: queued as SOAK{seq}"
