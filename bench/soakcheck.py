"""The soak test's verdict: what was owed, what arrived, what the store and the logs hold.

Everything here reads what the run left behind (the submissions, the sink's
records, the Postfix queue, Sealgate's database and state directory, the logs)
and checks the invariants of DESIGN.md against it, not the pipeline's current
way of meeting them:

- every message reaches each recipient exactly once (a relayed copy, or for a
  protected recipient a notification), or is still queued in Postfix for that
  recipient; a duplicate is allowed only in the crash window DESIGN names
  (between the upstream's acceptance and Sealgate's commit): a worker killed
  within ``crash_window`` seconds after the first copy arrived;
- every protected recipient has exactly one live envelope for the message, its
  notification arrived, and every link that arrived opens a live envelope
  (a link that died because a later step failed is a failure);
- no canary of a protected message arrived in the clear for an outside
  recipient, or lies in the clear in the state directory;
- no log holds a canary, a protected subject, a link secret or an access code.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import os
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from gateway.store import LIVE_STATES

INTERNAL_DOMAIN = "example.org"
CANARY = re.compile(rb"SOAKCANARY-[0-9a-f]{24}")
SUBJECT_TOKEN = re.compile(rb"SOAKSUBJ-[0-9a-f]{16}")
ACCESS_CODE = re.compile(rb"Zq7-[0-9a-f]{10}-Vk")
_LINK = re.compile(r"https?://[^\s\"'<>]+/m/([A-Za-z0-9_-]+)#([A-Za-z0-9_-]+)")
# Faults after which a duplicate is the documented crash window: a process died
# between the upstream's acceptance and Sealgate's commit.
CRASHES = ("kill-worker", "restart-killed")


@dataclass(frozen=True)
class Submission:
    """One message handed to Postfix."""

    message_id: str  # without angle brackets
    queue_id: str
    kind: str  # "relayed" | "protected"
    recipients: tuple[str, ...]
    submitted_at: float
    canary: str = ""
    subject_token: str = ""
    access_code: str = ""

    def owes_notification(self, recipient: str) -> bool:
        return self.kind == "protected" and not internal(recipient)


@dataclass(frozen=True)
class Fault:
    kind: str
    start: float
    end: float
    detail: str = ""


@dataclass(frozen=True)
class Arrival:
    """One message the sink accepted, as far as the accounting cares."""

    seq: int
    at: float
    rcpt_tos: tuple[str, ...]
    kind: str  # "copy" (has a submitted Message-ID) | "notification" | "other"
    message_id: str  # the submitted message it belongs to ("" for "other")
    link_hash: bytes | None = None
    link_secret: str = ""
    description: str = ""


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.failures.append(text)


def internal(address: str) -> bool:
    domain = address.rpartition("@")[2].lower()
    return domain == INTERNAL_DOMAIN or domain.endswith("." + INTERNAL_DOMAIN)


def bare_id(value: str | None) -> str:
    return (value or "").strip().strip("<>").strip()


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# -- reading what arrived ---------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One transaction Sealgate logged: when it answered, and what."""

    at: float
    outcome: str
    reply: str  # the three digits


_TRANSACTION = re.compile(
    r"^(\S+Z) \w+ sealgate\.intake transaction .*? message_id=\"?<([^>\s]+)>.*?"
    r" outcome=(\S+) reply=\"?(\d{3})"
)


def read_answers(log: Path) -> dict[str, list[Answer]]:
    """Sealgate's answers per Message-ID, from its transaction log lines (text format).

    A worker killed in the middle of a transaction logs nothing for it: that is how
    the crash window is told apart from a 4xx given after the upstream accepted.
    """
    answers: dict[str, list[Answer]] = defaultdict(list)
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return answers
    for line in lines:
        match = _TRANSACTION.match(line)
        if match is None:
            continue
        stamp, message_id, outcome, reply = match.groups()
        at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        answers[message_id].append(Answer(at, outcome, reply))
    return answers


def read_index(sink_dir: Path) -> list[dict[str, Any]]:
    path = sink_dir / "index.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _text_parts(data: bytes) -> Iterator[bytes]:
    """The raw message, then every part's decoded payload (base64, quoted-printable)."""
    yield data
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    for part in parsed.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield payload


def canaries_in(data: bytes) -> set[bytes]:
    return {match for chunk in _text_parts(data) for match in CANARY.findall(chunk)}


def _link_of(data: bytes) -> tuple[bytes | None, str]:
    """The portal link in a notification's text part: (SHA-256 of the link id, secret)."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    if body is None:
        return None, ""
    match = _LINK.search(body.get_content())
    if match is None:
        return None, ""
    link_id = match.group(1)
    raw = base64.urlsafe_b64decode(link_id + "=" * (-len(link_id) % 4))
    return hashlib.sha256(raw).digest(), match.group(2)


def classify(entry: dict[str, Any], data: bytes, submitted: set[str]) -> Arrival:
    header = BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    message_id = bare_id(header.get("Message-ID"))
    rcpts = tuple(r.lower() for r in entry["rcpt_tos"])
    common = {"seq": entry["seq"], "at": entry["at"], "rcpt_tos": rcpts}
    if message_id in submitted:
        return Arrival(kind="copy", message_id=message_id, **common)
    parent = bare_id(header.get("In-Reply-To"))
    if header.get("Auto-Submitted") and parent in submitted:
        link_hash, secret = _link_of(data)
        if link_hash is not None:
            return Arrival(
                kind="notification",
                message_id=parent,
                link_hash=link_hash,
                link_secret=secret,
                **common,
            )
    what = (
        f"from <{entry['mail_from']}> to {list(rcpts)}, subject {header.get('Subject')!r}, "
        f"file {entry['file']}"
    )
    return Arrival(kind="other", message_id="", description=what, **common)


# -- the store -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderRow:
    envelope_id: str
    state: str
    message_id: str
    address: str
    link_hash: bytes | None


def read_store(database: Path) -> list[ReaderRow]:
    """Every reader of every envelope, with the envelope's state and Message-ID."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        rows = connection.execute(
            "SELECT e.envelope_id, e.state, e.message_id, r.address, r.link_id_hash"
            " FROM envelopes e JOIN readers r ON r.envelope_id = e.envelope_id"
        ).fetchall()
    finally:
        connection.close()
    return [
        ReaderRow(str(env), str(state), bare_id(mid), str(addr).lower(), link)
        for env, state, mid, addr, link in rows
    ]


def envelope_states(database: Path) -> Counter[str]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        rows = connection.execute("SELECT state, COUNT(*) FROM envelopes GROUP BY state")
        return Counter({str(state): int(n) for state, n in rows})
    finally:
        connection.close()


def files_under(root: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            yield Path(directory) / name


# -- the checks ------------------------------------------------------------------------


class Checker:
    def __init__(
        self,
        submissions: list[Submission],
        faults: list[Fault],
        sink_dir: Path,
        queued: dict[str, set[str]],  # Postfix queue id -> recipients still queued
        started_at: float,
        crash_window: float,
        answers: dict[str, list[Answer]],
    ) -> None:
        self.submissions = submissions
        self.by_id = {s.message_id: s for s in submissions}
        self.faults = faults
        self.sink_dir = sink_dir
        self.queued = queued
        self.started_at = started_at
        self.crash_window = crash_window
        self.answers = answers
        self.excused: set[tuple[str, str]] = set()  # duplicates in the crash window
        self.verdict = Verdict()
        self.arrivals: list[Arrival] = []
        self.deliveries: dict[tuple[str, str], list[Arrival]] = defaultdict(list)
        self.leaked: set[bytes] = set()

    def at(self, moment: float) -> str:
        return f"t+{moment - self.started_at:.1f}s"

    # -- arrivals

    def read_arrivals(self) -> None:
        submitted = set(self.by_id)
        protected = {s.canary.encode() for s in self.submissions if s.kind == "protected"}
        verdict = self.verdict
        others: list[str] = []
        for entry in read_index(self.sink_dir):
            data = (self.sink_dir / entry["file"]).read_bytes()
            arrival = classify(entry, data, submitted)
            self.arrivals.append(arrival)
            if arrival.kind == "other":
                others.append(arrival.description)
            for rcpt in arrival.rcpt_tos:
                if arrival.kind != "other":
                    self.deliveries[(arrival.message_id, rcpt)].append(arrival)
            found = canaries_in(data) & protected
            outside = [r for r in arrival.rcpt_tos if not internal(r)]
            if found and (outside or arrival.kind != "copy"):
                self.leaked |= found
                verdict.fail(
                    f"IN THE CLEAR: sink message {entry['file']} ({arrival.kind}) to {outside} "
                    f"carries the canary of protected message(s) "
                    f"{sorted(c.decode() for c in found)[:3]}"
                )
        kinds = Counter(a.kind for a in self.arrivals)
        verdict.figures["sink_messages"] = len(self.arrivals)
        verdict.figures["sink_by_kind"] = dict(kinds)
        if others:
            verdict.fail(
                f"{len(others)} unexpected message(s) at the sink (bounces? refused mail?): "
                + "; ".join(others[:5])
            )

    # -- exactly once, or queued

    def crash_between(self, got: list[Arrival]) -> list[Fault]:
        """Crashes that explain a second copy: after the first copy arrived (within the
        crash window: the upstream had accepted, Sealgate had not yet committed and
        answered) and before the next one arrived (the retry came after the crash)."""
        first = got[0].at
        until = min(first + self.crash_window, got[1].at if len(got) > 1 else first + 1e9)
        return [f for f in self.faults if f.kind in CRASHES and first - 1.0 <= f.start <= until]

    def active(self, start: float, end: float) -> list[str]:
        return [
            f"{f.kind}@{self.at(f.start)}"
            for f in self.faults
            if f.start <= end + 1.0 and f.end >= start - 1.0
        ]

    def account(self) -> None:
        verdict = self.verdict
        delivered = lost = queued = 0
        latencies: list[float] = []
        lost_list: list[str] = []
        last_arrival = 0.0
        for sub in self.submissions:
            complete = True
            arrivals_of_message: list[float] = []
            still = self.queued.get(sub.queue_id, set())
            for rcpt in sub.recipients:
                got = sorted(self.deliveries.get((sub.message_id, rcpt), []), key=lambda a: a.at)
                wanted = "notification" if sub.owes_notification(rcpt) else "copy"
                wrong = [a for a in got if a.kind != wanted]
                if wrong and wanted == "notification":
                    verdict.fail(
                        f"IN THE CLEAR: protected {sub.message_id} reached {rcpt} as a relayed "
                        f"copy (sink {[a.seq for a in wrong]})"
                    )
                if rcpt in still:
                    complete = False
                    if got:
                        self.duplicate(sub, rcpt, got, still_queued=True)
                    continue
                if not got:
                    complete = False
                    lost_list.append(f"{sub.message_id} -> {rcpt} ({sub.kind})")
                    continue
                arrivals_of_message.append(got[0].at)
                if len(got) > 1:
                    self.duplicate(sub, rcpt, got)
            if sub.queue_id in self.queued:
                queued += 1
            elif not complete:
                lost += 1
            if complete and arrivals_of_message:
                delivered += 1
                latencies.append(max(arrivals_of_message) - sub.submitted_at)
                last_arrival = max(last_arrival, max(arrivals_of_message))
        for text in lost_list[:20]:
            verdict.fail(f"LOST: {text}")
        if len(lost_list) > 20:
            verdict.fail(f"LOST: ... and {len(lost_list) - 20} more")
        first = min((s.submitted_at for s in self.submissions), default=0.0)
        span = last_arrival - first
        verdict.figures.update(
            messages_sent=len(self.submissions),
            protected_sent=sum(1 for s in self.submissions if s.kind == "protected"),
            delivered_complete=delivered,
            still_queued=queued,
            lost_messages=lost,
            lost_deliveries=len(lost_list),
            duplicates=len(self.verdict.duplicates),
            duplicates_unexplained=sum(1 for d in self.verdict.duplicates if not d["explained"]),
            latency_p50_s=round(percentile(latencies, 50), 3),
            latency_p99_s=round(percentile(latencies, 99), 3),
            latency_max_s=round(max(latencies, default=0.0), 3),
            throughput_msg_per_s=round(delivered / span, 2) if span > 0 else 0.0,
        )

    def duplicate(
        self, sub: Submission, rcpt: str, got: list[Arrival], *, still_queued: bool = False
    ) -> None:
        """A second copy (or a copy and still queued): excused only by the crash window.

        That is: the attempt that delivered the first copy never answered (nothing
        logged for the message between the first copy and the next), and a worker
        died in between, within ``crash_window`` seconds of the first copy.
        """
        first = got[0].at
        until = got[1].at if len(got) > 1 else float("inf")
        answered = [a for a in self.answers.get(sub.message_id, []) if first - 0.5 <= a.at < until]
        crashes = [] if answered else self.crash_between(got)
        if crashes:
            why = f"crash window: {crashes[0].kind}@{self.at(crashes[0].start)}, no answer logged"
        elif answered:
            why = (
                f"Sealgate answered {answered[0].reply} ({answered[0].outcome}) at "
                f"{self.at(answered[0].at)}, after the first copy was accepted upstream"
            )
        else:
            why = "no crash and no answer logged in between"
        record = {
            "message_id": sub.message_id,
            "recipient": rcpt,
            "kind": got[0].kind,
            "arrivals": [self.at(a.at) for a in got] + (["(queued again)"] if still_queued else []),
            "faults_around": self.active(got[0].at, got[-1].at),
            "explained": bool(crashes),
            "why": why,
        }
        self.verdict.duplicates.append(record)
        if crashes:
            self.excused.add((sub.message_id, rcpt))
        else:
            self.verdict.fail(
                f"DUPLICATE: {sub.message_id} -> {rcpt} {record['kind']} arrived "
                f"{record['arrivals']}: {why}; faults around: {record['faults_around']}"
            )

    # -- protected: one live envelope, its notification, links that open

    def protected(self, readers: list[ReaderRow]) -> None:
        verdict = self.verdict
        live: dict[tuple[str, str], list[ReaderRow]] = defaultdict(list)
        by_link: dict[bytes, ReaderRow] = {}
        for row in readers:
            if row.link_hash is not None:
                by_link[bytes(row.link_hash)] = row
            if row.state in LIVE_STATES:
                live[(row.message_id, row.address)].append(row)
        dead_links = 0
        for sub in self.submissions:
            still = self.queued.get(sub.queue_id, set())
            for rcpt in sub.recipients:
                if not sub.owes_notification(rcpt):
                    if live.get((sub.message_id, rcpt)):
                        verdict.fail(f"SEALED BY MISTAKE: {sub.message_id} for {rcpt}")
                    continue
                envelopes = live.get((sub.message_id, rcpt), [])
                notes = [
                    a
                    for a in self.deliveries.get((sub.message_id, rcpt), [])
                    if a.kind == "notification"
                ]
                if len(envelopes) > 1:
                    verdict.fail(
                        f"TWO LIVE ENVELOPES: {sub.message_id} for {rcpt}: "
                        f"{[e.envelope_id for e in envelopes]}"
                    )
                if rcpt in still:
                    continue  # not settled yet: a sealed envelope may or may not exist
                if not envelopes and notes:
                    verdict.fail(
                        f"NO LIVE ENVELOPE: {sub.message_id} for {rcpt}, although "
                        f"{len(notes)} notification(s) arrived"
                    )
                links = {bytes(a.link_hash) for a in notes if a.link_hash is not None}
                for envelope in envelopes:
                    if envelope.link_hash is not None and bytes(envelope.link_hash) not in links:
                        verdict.fail(
                            f"NOT NOTIFIED: {sub.message_id} for {rcpt}: the live envelope "
                            f"{envelope.envelope_id}'s link never arrived"
                        )
                explained = (sub.message_id, rcpt) in self.excused
                for note in notes:
                    opens = by_link.get(bytes(note.link_hash or b""))
                    if opens is None or opens.state not in LIVE_STATES:
                        dead_links += 1
                        state = "no reader" if opens is None else opens.state
                        if not explained:
                            verdict.fail(
                                f"DEAD LINK: {sub.message_id} -> {rcpt}: the notification that "
                                f"arrived at {self.at(note.at)} opens nothing ({state}); faults "
                                f"around: {self.active(note.at - 5, note.at + 30)}"
                            )
        verdict.figures["live_envelopes_readers"] = sum(len(v) for v in live.values())
        verdict.figures["dead_links"] = dead_links

    # -- secrets

    def at_rest(self, state_dir: Path) -> None:
        protected = {s.canary.encode() for s in self.submissions if s.kind == "protected"}
        for path in files_under(state_dir):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found = set(CANARY.findall(data)) & protected
            if found:
                self.verdict.fail(
                    f"PLAINTEXT AT REST: {path} holds {len(found)} canary(ies) of protected mail"
                )

    def logs(self, logs: Iterable[Path]) -> None:
        protected = [s for s in self.submissions if s.kind == "protected"]
        canaries = {s.canary.encode() for s in protected}
        subjects = {s.subject_token.encode() for s in protected}
        codes = {s.access_code.encode() for s in protected if s.access_code}
        secrets = {a.link_secret for a in self.arrivals if a.link_secret}
        secret_re = re.compile(r"[A-Za-z0-9_-]{40,}")
        for path in logs:
            try:
                text = path.read_bytes()
            except OSError:
                continue
            problems = {
                "canaries": set(CANARY.findall(text)) & canaries,
                "protected subjects": set(SUBJECT_TOKEN.findall(text)) & subjects,
                "access codes": set(ACCESS_CODE.findall(text)) & codes,
                "link secrets": {
                    m.encode()
                    for m in secret_re.findall(text.decode("utf-8", "replace"))
                    if m in secrets
                },
            }
            for what, found in problems.items():
                if found:
                    self.verdict.fail(
                        f"SECRET IN LOG: {path.name} holds {len(found)} {what} "
                        f"(e.g. {sorted(found)[0][:12]!r}...)"
                    )
        self.verdict.figures["link_secrets_checked"] = len(secrets)
