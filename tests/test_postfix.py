"""A real Postfix in front of Sealgate: relayhost and after-queue content filter.

Postfix hands mail to Sealgate, Sealgate relays it to the fake upstream (the
sink), directly or through Postfix's re-injection port. Faults between
Sealgate and the upstream (refused connections, connections dropped in the
middle of a transaction, stalls past Sealgate's timeouts, Sealgate itself
restarted) must end the same way: every message delivered exactly once, or
still in Postfix's queue; none lost, none duplicated.

The tests flush Postfix's queue (``postqueue -f``) rather than wait for its
retry timers, so the whole file runs in seconds.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from gateway.mail import message
from tests.support.gateway import RunningGateway
from tests.support.loopthread import LoopThread
from tests.support.postfix import (
    Postfix,
    PostfixError,
    free_port,
    group_alive,
    port_open,
    postfix_instance,
)
from tests.support.sink import Behaviour, Sink

pytestmark = pytest.mark.peers  # every test runs a real Postfix

SENDER = "alice@example.org"
RECIPIENTS = ("bob@example.net", "carol@example.com")

# A body that breaks careless relays: 8-bit UTF-8, lines that need
# dot-stuffing, a lone dot, trailing white space, a long line (below the 998
# octets at which Postfix folds), "From " at the start of a line, tabs, and
# empty lines at the end.
BODY = "".join(
    line + "\r\n"
    for line in [
        "Dag Bob,",
        "",
        "Één regel met UTF-8: naïve café, Ελληνικά, 日本語.",
        ".a line that starts with a dot",
        "..two dots",
        ".",
        "trailing spaces   ",
        "trailing tab\t",
        "\tleading tab",
        "From the start of a line",
        "x" * 900,
        "",
        "",
    ]
).encode()


def make_message(tag: str, index: int = 0, body: bytes = BODY) -> tuple[str, bytes]:
    """A message with a unique Message-ID: (Message-ID, bytes with CRLF line ends)."""
    message_id = f"<{tag}-{index}-{uuid.uuid4().hex}@example.org>"
    header = (
        f"From: Alice <{SENDER}>\r\n"
        f"To: Bob <{RECIPIENTS[0]}>, Carol <{RECIPIENTS[1]}>\r\n"
        f"Subject: Sealgate behind Postfix ({tag} {index})\r\n"
        "Date: Sat, 28 Nov 2026 05:20:13 +0100\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
    ).encode()
    return message_id, header + body


def fields_of(header: bytes) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) of each field in a block of header fields."""
    return [
        (name, value.decode("utf-8", "replace").strip())
        for name, value, _ in message.fields(header)
    ]


# -- accounting: delivered exactly once, or still queued -------------------------


@dataclass
class Submitted:
    message_id: str
    queue_id: str


def sink_counts(sink: Sink) -> Counter[str]:
    """How often each Message-ID reached the sink."""
    return Counter(
        message.first_value(received.data, "Message-ID") or "(none)"
        for received in list(sink.messages)
    )


def accounting(postfix: Postfix, sink: Sink, submitted: list[Submitted]) -> str:
    counts = sink_counts(sink)
    queued = {entry.queue_id: entry for entry in postfix.queue_entries()}
    lines = []
    for item in submitted:
        entry = queued.get(item.queue_id)
        place = f"queued ({entry.queue_name}: {list(entry.delay_reasons)})" if entry else "-"
        lines.append(f"{item.message_id} {item.queue_id}: sink x{counts[item.message_id]}, {place}")
    extra = set(counts) - {item.message_id for item in submitted}
    if extra:
        lines.append(f"unexpected messages at the sink: {sorted(extra)}")
    return "--- accounting ---\n" + "\n".join(lines)


def settled(postfix: Postfix, sink: Sink, submitted: list[Submitted]) -> bool:
    """No delivery in progress, and each message is at the sink once xor deferred in Postfix."""
    entries = postfix.queue_entries()
    if any(entry.queue_name not in ("deferred", "hold") for entry in entries):
        return False
    queued = {entry.queue_id for entry in entries}
    counts = sink_counts(sink)
    return all((counts[item.message_id] == 1) != (item.queue_id in queued) for item in submitted)


def assert_no_duplicates(sink: Sink, what: str = "") -> None:
    duplicates = {mid: n for mid, n in sink_counts(sink).items() if n > 1}
    assert not duplicates, f"duplicated at the sink {what}: {duplicates}"


def deliver_all(
    postfix: Postfix, sink: Sink, submitted: list[Submitted], timeout: float = 30
) -> None:
    """Flush Postfix until every message reached the sink and the queue is empty.

    Then check, after a moment's grace, that each arrived exactly once.
    """
    expected = Counter({item.message_id: 1 for item in submitted})
    last_flush = 0.0

    def done() -> bool:
        nonlocal last_flush
        if time.monotonic() - last_flush > 1:
            postfix.flush()
            last_flush = time.monotonic()
        assert_no_duplicates(sink, "while delivering")
        return not postfix.queue() and sink_counts(sink) == expected

    postfix.wait_for(
        done,
        timeout=timeout,
        what="every message delivered exactly once, queue empty",
        interval=0.1,
        describe=lambda: accounting(postfix, sink, submitted),
    )
    time.sleep(0.5)  # a late duplicate would show up here
    assert sink_counts(sink) == expected, accounting(postfix, sink, submitted)
    assert not postfix.queue(), postfix.describe()
    assert all(received.mail_from == SENDER for received in sink.messages), (
        "something other than the test mail (a bounce?) reached the sink: "
        + repr([(r.mail_from, r.rcpt_tos) for r in sink.messages])
    )


def submit_many(postfix: Postfix, tag: str, count: int) -> list[Submitted]:
    submitted = []
    for index in range(count):
        message_id, data = make_message(tag, index)
        queue_id = postfix.submit(SENDER, list(RECIPIENTS), data)
        submitted.append(Submitted(message_id, queue_id))
    return submitted


def wait_all_deferred(
    postfix: Postfix, sink: Sink, submitted: list[Submitted], reason: str = "451"
) -> None:
    """Wait until Postfix has tried every message and deferred it with ``reason``."""
    ids = {item.queue_id for item in submitted}

    def deferred() -> bool:
        entries = {e.queue_id: e for e in postfix.queue_entries() if e.queue_id in ids}
        return len(entries) == len(ids) and all(
            e.queue_name == "deferred" and any(reason in r for r in e.delay_reasons)
            for e in entries.values()
        )

    postfix.wait_for(
        deferred,
        timeout=20,
        what=f"all {len(ids)} messages deferred with {reason!r}",
        interval=0.1,
        describe=lambda: accounting(postfix, sink, submitted),
    )


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture
def postfix(make_gateway: Callable[..., RunningGateway]) -> Iterator[Postfix]:
    # Depends on make_gateway (and so on the sink) only to be torn down
    # before them: Postfix, the client, stops first.
    with postfix_instance() as instance:
        yield instance


class LogRecords(logging.Handler):
    """Keeps the records of one logger (from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fields(self, event: str) -> list[dict[str, Any]]:
        return [
            dict(getattr(r, "fields", {})) for r in list(self.records) if r.getMessage() == event
        ]


@pytest.fixture
def intake_log() -> Iterator[LogRecords]:
    logger = logging.getLogger("sealgate.intake")
    handler = LogRecords()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- relayhost mode -------------------------------------------------------------------


def test_relayhost_mail_reaches_the_upstream_unchanged(
    postfix: Postfix, sink: Sink, make_gateway: Callable[..., RunningGateway]
) -> None:
    gateway = make_gateway()
    postfix.start_relayhost(gateway.port)

    message_id, original = make_message("relayhost")
    queue_id = postfix.submit(SENDER, list(RECIPIENTS), original)
    deliver_all(postfix, sink, [Submitted(message_id, queue_id)])

    received = sink.messages[0]
    assert received.mail_from == SENDER
    assert sorted(received.rcpt_tos) == sorted(RECIPIENTS)
    assert "BODY=8BITMIME" in received.mail_options
    # Byte for byte: Postfix and Sealgate only prepend trace fields.
    assert received.data.endswith(original), received.data[:2000]
    added = fields_of(received.data[: -len(original)])
    assert [name for name, _ in added] == ["received", "x-sealgate-loop", "received"], added
    sealgate_received, _, postfix_received = (value for _, value in added)
    assert "by sealgate.test (Sealgate)" in sealgate_received
    assert "from postfix.test" in sealgate_received
    assert "by postfix.test (Postfix)" in postfix_received
    assert queue_id in postfix_received
    # The marker is Sealgate's own and covers what follows it.
    assert gateway.gateway.pipeline.marker.check(received.data).kind is not None
    assert re.search(rf"{queue_id}: to=<{RECIPIENTS[0]}>.*status=sent", postfix.maillog()), (
        postfix.maillog_tail()
    )


# -- after-queue content filter mode ---------------------------------------------------


def test_content_filter_mail_goes_through_sealgate_and_back_into_postfix(
    postfix: Postfix,
    sink: Sink,
    make_gateway: Callable[..., RunningGateway],
    intake_log: LogRecords,
) -> None:
    gateway = make_gateway(upstream={"port": postfix.reinject_port})
    postfix.start_content_filter(gateway.port, relay_port=sink.port)

    # Postfix's own clients, as a proxy in front of it would announce them:
    # the scan transport must pass each on to Sealgate with XFORWARD.
    clients = {"192.0.2.55": "client.example.org", "198.51.100.7": "other.example.net"}
    sent: dict[str, tuple[str, bytes, str]] = {}  # Message-ID -> (queue id, bytes, client)
    for address, name in clients.items():
        message_id, original = make_message("filter", len(sent))
        queue_id = postfix.submit(
            SENDER,
            list(RECIPIENTS),
            original,
            xforward={"NAME": name, "ADDR": address, "PROTO": "ESMTP", "HELO": f"helo.{name}"},
        )
        sent[message_id] = (queue_id, original, address)
    # Re-injected copies get new queue ids, so account by Message-ID only.
    postfix.wait_for(
        lambda: not postfix.queue() and len(sink.messages) >= len(sent),
        timeout=20,
        what="delivery through the content filter",
    )
    time.sleep(0.3)
    assert sink_counts(sink) == Counter({message_id: 1 for message_id in sent})

    log = postfix.maillog()
    transactions = {f.get("message_id"): f for f in intake_log.fields("transaction")}
    for received in sink.messages:
        received_id = message.first_value(received.data, "Message-ID") or ""
        queue_id, original, address = sent[received_id]
        assert received.mail_from == SENDER
        assert sorted(received.rcpt_tos) == sorted(RECIPIENTS)
        assert received.data.endswith(original), received.data[:2000]
        added = fields_of(received.data[: -len(original)])
        names = [name for name, _ in added]
        assert names == ["received", "received", "x-sealgate-loop", "received"], added
        reinjected, through_sealgate, _, submitted = (value for _, value in added)
        # Newest first: Postfix's re-injection <- Sealgate <- Postfix's first hop.
        assert reinjected.startswith("from sealgate.test"), reinjected
        assert "by postfix.test (Postfix)" in reinjected
        assert queue_id not in reinjected
        assert "from postfix.test" in through_sealgate and "(Sealgate)" in through_sealgate
        assert submitted.startswith("from submitter.test"), submitted
        assert queue_id in submitted
        assert gateway.gateway.pipeline.marker.check(received.data).kind is not None
        assert re.search(
            rf"{queue_id}: to=<{RECIPIENTS[0]}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
            rf"{gateway.port},.*status=sent",
            log,
        ), postfix.maillog_tail()
        assert re.search(rf"{queue_id}: .*orig_client={clients[address]}\[{address}\]", log)

        # XFORWARD reached Sealgate: its transaction line names the original client.
        line = transactions[received_id]
        assert line["client"] == "127.0.0.1"
        assert line["orig_client"] == address, line
        assert line["outcome"] == "relayed"
        assert line["sender"] == SENDER and line["nrcpt"] == 2
    assert len(intake_log.fields("transaction")) == len(sent), intake_log.fields("transaction")


def test_content_filter_passes_mail_that_only_just_fits_the_size_limit(
    postfix: Postfix,
    sink: Sink,
    make_gateway: Callable[..., RunningGateway],
) -> None:
    # Sealgate's limit equal to Postfix's, as docs/configuration.md advises.
    limit = 20_000
    gateway = make_gateway(
        upstream={"port": postfix.reinject_port}, smtp={"max_message_size": limit}
    )
    postfix.start_content_filter(
        gateway.port, sink.port, settings={"message_size_limit": str(limit)}
    )
    submitted = []
    refused = []
    for size in range(limit - 1500, limit + 1, 100):
        message_id, data = make_message("size", size)
        line = b"y" * 70 + b"\r\n"
        data += line * ((size - len(data)) // len(line) + 1)
        data = data[: size - 2] + b"\r\n"
        try:
            queue_id = postfix.submit(SENDER, list(RECIPIENTS), data)
        except PostfixError as error:
            assert "552" in str(error)  # too big for Postfix itself: fine
            refused.append(size)
            continue
        submitted.append(Submitted(message_id, queue_id))
    assert submitted and refused, (submitted, refused)
    # The largest message Postfix took is within a few hundred bytes of the limit.
    assert min(refused) - 100 > limit - 1500
    deliver_all(postfix, sink, submitted)


# -- Sealgate answers 451: Postfix keeps the mail -------------------------------------


def test_mail_stays_queued_while_the_upstream_is_down(
    postfix: Postfix,
    sink: Sink,
    loop_thread: LoopThread,
    make_gateway: Callable[..., RunningGateway],
) -> None:
    gateway = make_gateway()
    postfix.start_relayhost(gateway.port)
    loop_thread.run(sink.stop())

    submitted = submit_many(postfix, "down", 5)
    wait_all_deferred(postfix, sink, submitted, reason="451")
    assert set(postfix.queue()) == {item.queue_id for item in submitted}
    assert sink.messages == []
    # A flush while it is still down changes nothing.
    postfix.flush()
    wait_all_deferred(postfix, sink, submitted, reason="451")
    assert sink.messages == []

    loop_thread.run(sink.start())
    deliver_all(postfix, sink, submitted)


# -- faults between Sealgate and the upstream -----------------------------------------

FAULTS = {
    "drop-after-data": Behaviour(drop_at="data"),
    "drop-at-rcpt": Behaviour(drop_at="rcpt"),
    "drop-at-mail": Behaviour(drop_at="mail"),
    "stall-after-data": Behaviour(stall_at="data", stall_seconds=30),
    "stall-at-rcpt": Behaviour(stall_at="rcpt", stall_seconds=30),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_upstream_fault_loses_and_duplicates_nothing(
    fault: str,
    postfix: Postfix,
    sink: Sink,
    make_gateway: Callable[..., RunningGateway],
) -> None:
    gateway = make_gateway(upstream={"connect_timeout": 2, "command_timeout": 1, "data_timeout": 1})
    postfix.start_relayhost(gateway.port)

    # Round 1: the fault holds until Postfix has deferred everything.
    sink.behaviour = FAULTS[fault]
    first = submit_many(postfix, f"{fault}-1", 6)
    wait_all_deferred(postfix, sink, first, reason="451")
    assert sink.messages == [], "the upstream never answered 250, yet something was delivered"
    sink.behaviour = Behaviour()
    deliver_all(postfix, sink, first)

    # Round 2: the fault clears while Postfix is still delivering.
    sink.reset()
    sink.behaviour = FAULTS[fault]
    second = submit_many(postfix, f"{fault}-2", 6)
    stage = (FAULTS[fault].drop_at or FAULTS[fault].stall_at or "").upper()
    postfix.wait_for(
        lambda: sum(command.startswith(stage) for command in sink.commands) >= 2,
        timeout=10,
        what="the fault to hit",
    )
    sink.behaviour = Behaviour()
    deliver_all(postfix, sink, second)


# -- Sealgate restarted while Postfix retries -----------------------------------------


class SealgateProcess:
    """``sealgate serve`` as a real process, on a fixed port."""

    def __init__(
        self, directory: Path, port: int, upstream_port: int, *, shutdown_timeout: float = 5
    ) -> None:
        self.port = port
        self.config = directory / "sealgate.toml"
        self.log_path = directory / "sealgate.log"
        self.config.write_text(
            "[smtp]\n"
            f'listen = ["127.0.0.1:{port}"]\n'
            'hostname = "sealgate.test"\n'
            "command_timeout = 10\n"
            "data_timeout = 10\n"
            "\n[upstream]\n"
            'host = "127.0.0.1"\n'
            f"port = {upstream_port}\n"
            "connect_timeout = 3\n"
            "command_timeout = 3\n"
            "data_timeout = 3\n"
            "\n[loop]\n"
            f'secret_file = "{directory / "loop.key"}"\n'
            "\n[log]\n"
            'level = "info"\n'
            "\n[service]\n"
            f"shutdown_timeout = {shutdown_timeout}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        assert self.process is None
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        executable = Path(sys.executable).with_name("sealgate")
        self.process = subprocess.Popen(
            [str(executable), "serve", "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reap()
                raise AssertionError(f"sealgate serve exited at start:\n{self.log()}")
            if " listening " in self.log()[offset:] and port_open(self.port):
                return
            time.sleep(0.05)
        raise AssertionError(f"sealgate serve did not start listening:\n{self.log()}")

    def terminate(self) -> int:
        """SIGTERM, wait for the exit; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        finally:
            self._reap()

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self._reap()

    def _reap(self) -> None:
        assert self.process is not None
        self.process.wait(timeout=10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def make_sealgate_process(sink: Sink, tmp_path: Path) -> Iterator[Callable[..., SealgateProcess]]:
    made: list[SealgateProcess] = []

    def make(**kwargs: Any) -> SealgateProcess:
        process = SealgateProcess(tmp_path, free_port(), sink.port, **kwargs)
        made.append(process)
        return process

    yield make
    for process in made:
        process.kill()


# graceful: the upstream answers within the shutdown timeout, so the
# transactions in flight at SIGTERM finish. cut: it does not, so Sealgate
# closes them unanswered when the shutdown timeout runs out.
RESTARTS = {
    "graceful": {"stall": 0.5, "shutdown_timeout": 5},
    "cut": {"stall": 2.5, "shutdown_timeout": 1},
}


@pytest.mark.parametrize("restart", list(RESTARTS))
def test_sealgate_restart_while_postfix_retries(
    restart: str,
    postfix: Postfix,
    sink: Sink,
    loop_thread: LoopThread,
    make_sealgate_process: Callable[..., SealgateProcess],
) -> None:
    stall = RESTARTS[restart]["stall"]
    sealgate = make_sealgate_process(shutdown_timeout=RESTARTS[restart]["shutdown_timeout"])
    sealgate.start()
    postfix.start_relayhost(sealgate.port)
    submitted: list[Submitted] = []

    def explain() -> str:
        return accounting(postfix, sink, submitted) + "\n--- sealgate log ---\n" + sealgate.log()

    # Some mail is queued in Postfix after 451s (the upstream is down) ...
    loop_thread.run(sink.stop())
    submitted += submit_many(postfix, "restart-queued", 4)
    wait_all_deferred(postfix, sink, submitted, reason="451")

    # ... and more is in flight (the upstream is slow, but within Sealgate's
    # timeouts) when Sealgate gets SIGTERM.
    loop_thread.run(sink.start())
    sink.behaviour = Behaviour(stall_at="data", stall_seconds=stall)
    submitted += submit_many(postfix, "restart-inflight", 4)
    postfix.flush()
    postfix.wait_for(lambda: "DATA" in sink.commands, timeout=10, what="a transaction in flight")
    in_flight = sink.commands.count("DATA")
    assert sealgate.terminate() == 0, explain()

    # Sealgate is down: Postfix cannot connect and keeps what it has not
    # handed over; what Sealgate finished is at the sink once.
    postfix.flush()
    postfix.wait_for(
        lambda: settled(postfix, sink, submitted),
        timeout=20,
        what="every message delivered once or deferred while Sealgate is down",
        describe=explain,
    )
    delivered_while_stopping = len(sink.messages)
    assert_no_duplicates(sink, "after SIGTERM")
    log = sealgate.log()
    if restart == "graceful":
        # Every transaction that had reached the upstream at SIGTERM finished.
        assert delivered_while_stopping >= in_flight, explain()
        assert "shutdown timeout" not in log, log
    else:
        assert delivered_while_stopping == 0, explain()
        assert "shutdown timeout: closing connections in flight" in log, log
        # Each transaction cut off is logged with its queue id.
        assert log.count("transaction cut off") >= in_flight, log
    assert postfix.queue(), "nothing left to retry: the test did not exercise a restart"
    postfix.flush()
    time.sleep(0.5)
    assert len(sink.messages) == delivered_while_stopping, explain()

    # Sealgate comes back on the same port; Postfix retries and delivers the rest.
    sink.behaviour = Behaviour()
    sealgate.start()
    deliver_all(postfix, sink, submitted)
    assert sealgate.terminate() == 0, explain()
    log = sealgate.log()
    assert log.count(" stopped ") == 2, log
    assert "Traceback" not in log and " error " not in log, log


def test_postfix_instance_leaves_nothing_behind() -> None:
    instance = Postfix()
    instance.start_relayhost(free_port())
    root, pid = instance.root, instance.master_pid
    assert pid is not None and group_alive(pid) and root.is_dir()
    assert oct(root.stat().st_mode & 0o777) == "0o755"
    instance.close()
    assert not group_alive(pid), "a Postfix process outlived close()"
    assert not root.exists()
    assert not port_open(instance.smtpd_port)
