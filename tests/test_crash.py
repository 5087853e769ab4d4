"""Crash safety of sealing: a real `sealgate serve` killed with SIGKILL mid-message.

Whatever moment the process dies, the MTA in front has no 250 and will retry;
the retry must leave exactly one readable envelope per recipient, and what the
killed attempt left behind must be unreachable and eventually removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway.config import load
from gateway.store import open_store
from tests.support.gateway import wait_for
from tests.support.process import children_of
from tests.support.protected import link_in, notifications, open_with_link, protected_message

ATTACHMENT = os.urandom(300_000)
RAW = protected_message(attachments={"report.pdf": ATTACHMENT})


def send_in_background(port: int) -> dict[str, object]:
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                client.sendmail("alice@example.org", ["bob@example.net"], RAW)
            outcome["reply"] = 250
        except (smtplib.SMTPException, OSError) as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def kill_hard(process) -> None:
    """SIGKILL the gateway and its key-generation helper: no cleanup of any kind."""
    helpers = children_of(process.process.pid)
    process.process.kill()
    process.process.wait(10)
    for pid in helpers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def envelope_blobs(state: Path) -> set[str]:
    """The envelopes that have a blob file (``<2 hex>/<envelope id>.sge``)."""
    return {path.name.removesuffix(".sge") for path in (state / "blobs").glob("*/*.sge")}


def rows(state: Path) -> dict[str, str]:
    with sqlite3.connect(state / "sealgate.db") as db:
        return dict(db.execute("SELECT envelope_id, state FROM envelopes"))


def test_killed_between_blob_write_and_commit(serve, sink, tmp_path):
    state = tmp_path / "var"
    settings = {"store": {"busy_timeout": 30}}
    process, port, path = serve(**settings)
    lock = sqlite3.connect(state / "sealgate.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the commit will wait on this lock
    try:
        outcome = send_in_background(port)
        wait_for(lambda: any((state / "blobs").glob("*/*.sge")), timeout=30, what="sealed blobs")
        kill_hard(process)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    outcome["thread"].join(10)
    assert "error" in outcome  # no 250: the MTA keeps the message and retries
    orphaned = envelope_blobs(state)
    assert len(orphaned) == 1 and rows(state) == {}  # blobs without keys: unreachable

    _, port, _ = serve(**settings)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], RAW)
    (live,) = rows(state)
    assert rows(state)[live] == "delivered"

    # Once older than envelope.orphan_age, the sweep removes what the killed attempt left.
    (orphan,) = orphaned
    an_hour_ago = time.time() - 3700
    os.utime(next((state / "blobs").glob(f"*/{orphan}.sge")), (an_hour_ago, an_hour_ago))
    swept = subprocess.run(
        [sys.executable, "-m", "gateway", "expire", "-c", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "removed 1 orphaned" in swept.stdout
    assert envelope_blobs(state) == {live}
    store = open_store(load(path).store)
    try:
        manifest, attachments = open_with_link(store, link_in(sink.messages[-1]))
    finally:
        store.close()
    assert attachments["report.pdf"] == ATTACHMENT
    assert manifest["headers"]["subject"] == "Quarterly figures"


def test_killed_while_a_notification_is_on_its_way(serve, sink, tmp_path):
    """Committed, the notification in flight, no 250 yet: the retry finishes the same
    envelope with the same link instead of sealing afresh."""
    state = tmp_path / "var"
    process, port, path = serve()
    sink.behaviour.stall_at = "data"  # the notification hangs: committed, no 250 yet
    sink.behaviour.stall_seconds = 60
    outcome = send_in_background(port)
    wait_for(lambda: "DATA" in sink.commands, timeout=30, what="the notification's DATA")
    (first,) = rows(state)
    kill_hard(process)
    outcome["thread"].join(10)
    assert "error" in outcome
    sink.reset()

    _, port, _ = serve()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], RAW)
    assert rows(state) == {first: "delivered"}
    store = open_store(load(path).store)
    try:
        notices = notifications(sink.messages)
        manifest, _ = open_with_link(store, link_in(notices["bob@example.net"]))
    finally:
        store.close()
    assert manifest["text"].startswith("Hello Bob")
