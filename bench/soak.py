"""Soak test: sustained mail through a real Postfix into Sealgate while faults are injected.

    .venv/bin/python bench/soak.py --quick       # 500 messages over 1 minute: try it out
    .venv/bin/python bench/soak.py               # 10,000 messages over 10 minutes (make soak)
    .venv/bin/python bench/soak.py -n 20000 -d 1800 --json result.json --keep

Needs root (a Postfix instance with its own configuration directory, and a
loop-mounted ext4 image for Sealgate's state) and Debian's postfix package.
Not part of ``make test``: run it by hand, or with ``make soak``.

Topology, all on 127.0.0.1 with ports found by binding port 0:

    submitters --SMTP--> Postfix (relayhost mode) --SMTP--> sealgate serve --workers 2
        --SMTP--> recording sink (bench/soaksink.py: records every message it accepts)

Sealgate's state directory (SQLite database, blobs) lives on a small ext4
image (``--image-mib``, default 256) mounted with ``-o loop``, so that fsync is
real and the disk can be filled.

The messages (``--count``, spread evenly over ``--duration`` seconds) are a mix
of relayed mail and protected mail (``[secure]`` in the subject, which the
baseline policy pack protects; ``--protected-share``). Every protected message
carries a unique canary in its body (and sometimes in an attachment), a unique
token in its subject, and sometimes an access code.

While the mail flows, one fault at a time is injected on a schedule, cycling
through the kinds (``--faults``, default all of them):

- ``upstream-451``: the sink answers 451 at MAIL, RCPT or the end of DATA;
- ``upstream-refuse``: the sink stops listening (connections refused);
- ``upstream-drop``: the sink takes the whole message, then drops the connection
  without a reply;
- ``kill-worker``: SIGKILL to one of Sealgate's worker processes (the supervisor
  starts another);
- ``restart``: SIGTERM to Sealgate (``restart-killed`` if it had to be killed),
  then it is started again;
- ``db-lock``: another process holds ``BEGIN EXCLUSIVE`` on Sealgate's SQLite
  database for longer than ``store.busy_timeout``;
- ``disk-full``: a ballast file takes every free block of the state directory's
  file system for a while, then is deleted.

At the end the faults stop, Postfix's queue is flushed until it is empty (or
``--drain`` seconds pass), Sealgate is stopped, and the invariants are checked
(bench/soakcheck.py): every message delivered exactly once to each recipient
or still queued in Postfix (a duplicate only in the crash window DESIGN.md
names, i.e. right after a worker was killed); every protected recipient has
exactly one live envelope, got its notification, and every link that arrived
opens a live envelope; no canary of protected mail reached an outside recipient
or lies in the clear in the state directory; no log holds a canary, a protected
subject, a link secret or an access code. Figures: messages sent, faults by
kind, lost, duplicated (and when), p50/p99 latency from submission to arrival at
the sink, throughput. The exit status is 1 if any invariant fails.

Everything is bounded (each loop has a count and a deadline), every process
started is stopped, and the image is unmounted at the end, also on error,
Ctrl-C or SIGTERM. ``--keep`` keeps the work directory (logs, configuration,
what the sink received, a copy of the database).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

from benchlib import run_interruptibly
from soakcheck import Checker, Fault, Submission, Verdict, read_answers, read_store
from soaksink import RecordingSink

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postfix import Postfix, free_ports, group_alive  # noqa: E402
from tests.support.process import children_of  # noqa: E402

HOST = "127.0.0.1"
QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")
SENDER = "alice@example.org"
FAULT_KINDS = (
    "upstream-451",
    "upstream-refuse",
    "upstream-drop",
    "kill-worker",
    "restart",
    "db-lock",
    "disk-full",
)
LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
db.close()
"""


def say(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- messages


class Messages:
    """Seeded message factory: relayed and protected mail with canaries and tokens."""

    def __init__(self, seed: int, protected_share: float, run: str) -> None:
        self.seed = seed
        self.random = random.Random(seed)  # reseeded per message by make()
        self.protected_share = protected_share
        self.run = run

    def _hex(self, n: int) -> str:
        return "".join(self.random.choice("0123456789abcdef") for _ in range(n))

    def _outside(self) -> str:
        return f"r{self.random.randrange(50)}@example.net"

    def _colleague(self) -> str:
        return f"c{self.random.randrange(20)}@example.org"

    def make(self, index: int) -> tuple[Submission, bytes]:
        """Message ``index``: the same for the same seed, whichever thread asks first."""
        self.random = random.Random(self.seed * 1_000_003 + index)
        protected = self.random.random() < self.protected_share
        pick = self.random.random()
        if protected:
            if pick < 0.6:
                recipients = [self._outside()]
            elif pick < 0.85:
                recipients = [self._outside(), self._outside()]
            else:
                recipients = [self._outside(), self._colleague()]
        elif pick < 0.5:
            recipients = [self._outside()]
        elif pick < 0.75:
            recipients = [self._colleague()]
        else:
            recipients = [self._outside(), self._colleague()]
        recipients = list(dict.fromkeys(recipients))
        message_id = f"soak-{self.run}-{index}@example.org"
        msg = EmailMessage()
        msg["From"] = f"Alice Example <{SENDER}>"
        msg["To"] = ", ".join(recipients)
        msg["Message-ID"] = f"<{message_id}>"
        msg["Date"] = "Sat, 28 Nov 2026 10:00:00 +0100"
        canary = subject_token = access_code = ""
        text = "".join(
            f"Line {n} of message {index}: the quarterly figures follow below.\n" for n in range(12)
        )
        if protected:
            canary = f"SOAKCANARY-{self._hex(24)}"
            subject_token = f"SOAKSUBJ-{self._hex(16)}"
            msg["Subject"] = f"[secure] Report {subject_token}"
            if self.random.random() < 0.25:
                access_code = f"Zq7-{self._hex(10)}-Vk"
                msg["X-Sealgate-Access-Code"] = access_code
            msg.set_content(f"Hello,\n\n{text}\nPatient reference {canary}\n")
            if self.random.random() < 0.3:
                msg.add_attachment(
                    f"figures;{canary};{index}\n".encode() * 20,
                    maintype="application",
                    subtype="octet-stream",
                    filename="figures.csv",
                )
        else:
            msg["Subject"] = f"Status update {index}"
            msg.set_content(f"Hello,\n\n{text}")
        data = msg.as_bytes(policy=SMTP_POLICY)
        submission = Submission(
            message_id=message_id,
            queue_id="",
            kind="protected" if protected else "relayed",
            recipients=tuple(r.lower() for r in recipients),
            submitted_at=0.0,
            canary=canary,
            subject_token=subject_token,
            access_code=access_code,
        )
        return submission, data


def submit(client: smtplib.SMTP, submission: Submission, data: bytes) -> str:
    """One message to Postfix on an open connection; Postfix's queue id."""
    code, reply = client.mail(SENDER)
    if code != 250:
        client.rset()
        raise smtplib.SMTPSenderRefused(code, reply, SENDER)
    for rcpt in submission.recipients:
        code, reply = client.rcpt(rcpt)
        if code not in (250, 251):
            client.rset()
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
    code, reply = client.data(data)
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    match = QUEUED_AS.search(reply.decode("ascii", "replace"))
    if match is None:
        raise smtplib.SMTPDataError(code, b"no queue id in " + reply)
    return match.group(1)


# --------------------------------------------------------------------------- processes


def greets(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=3) as sock:
            if sock.recv(512).startswith(b"220"):
                sock.sendall(b"QUIT\r\n")
                return True
    except OSError:
        pass
    return False


class Sealgate:
    """``sealgate serve --workers N`` in its own session; its log appended to one file."""

    def __init__(self, config: Path, port: int, workers: int, log_path: Path) -> None:
        self.config = config
        self.port = port
        self.workers = workers
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.closed = False  # stopped for good: a fault thread must not start it again

    def start(self, timeout: float = 90) -> None:
        if self.closed:
            raise RuntimeError("sealgate was stopped for good")
        script = Path(sys.executable).parent / "sealgate"
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]
        argv += ["serve", "-c", str(self.config), "--workers", str(self.workers)]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sealgate exited with {self.proc.returncode}: {self.tail()}")
            if self.listening_since(offset) >= self.workers and greets(self.port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"sealgate not ready after {timeout:.0f}s: {self.tail()}")

    def listening_since(self, offset: int) -> int:
        """Workers that said they listen, in the log written since ``offset``."""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().count(b" sealgate.service listening ")

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid) if self.proc is not None else []

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float, *, final: bool = False) -> bool:
        """SIGTERM, wait; SIGKILL what is left of the group. True if it had to be killed."""
        self.closed = self.closed or final
        if self.proc is None:
            return False
        proc, self.proc = self.proc, None
        killed = False
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
        # The group: the supervisor, its workers and their helpers, even orphaned ones.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        deadline = time.monotonic() + 10
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return killed

    def orphans(self) -> int:
        """Processes of Sealgate's group whose parent died (helpers of a killed worker)."""
        if self.proc is None:
            return 0
        count = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == self.proc.pid and int(fields[1]) == 1:
                    count += 1
        return count

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --------------------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="sealgate-soak-", dir="/tmp"))
        self.workdir.chmod(0o755)
        self.mount = self.workdir / "state-fs"
        self.image = self.workdir / "state.img"
        self.state = self.mount / "state"
        self.mounted = False
        self.sink: RecordingSink | None = None
        self.sealgate: Sealgate | None = None
        self.postfix: Postfix | None = None
        self.lockers: list[subprocess.Popen[bytes]] = []
        self.ballast = self.mount / "ballast"
        self.submissions: list[Submission] = []
        self.submit_failures: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.fault_errors: list[str] = []
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []  # submitters and the fault injector
        self.lock = threading.Lock()
        self.started_at = time.time()
        self.messages = Messages(args.seed, args.protected_share, f"{os.getpid()}{args.seed}")

    # -- set-up

    def mount_state(self) -> None:
        subprocess.run(["truncate", "-s", f"{self.args.image_mib}M", str(self.image)], check=True)
        # -m 0: no blocks reserved for root (Sealgate runs as root here), so the ballast
        # really fills the disk for it.
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)], check=True, timeout=60
        )
        self.mount.mkdir()
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mount)], check=True)
        self.mounted = True
        self.state.mkdir()

    def unmount_state(self) -> None:
        if not self.mounted:
            return
        with contextlib.suppress(OSError):
            self.ballast.unlink()
        for _ in range(20):
            if subprocess.run(["umount", str(self.mount)], capture_output=True).returncode == 0:
                self.mounted = False
                return
            time.sleep(0.5)
        # Still busy after 10 s: detach it lazily rather than leave it mounted.
        subprocess.run(["umount", "-l", str(self.mount)], check=False)
        self.mounted = False

    def write_config(self, smtp_port: int, portal_port: int, sink_port: int) -> Path:
        path = self.workdir / "sealgate.toml"
        path.write_text(
            f"""# generated by bench/soak.py
[smtp]
listen = ["{HOST}:{smtp_port}"]
hostname = "sealgate.soak.test"
command_timeout = 60
data_timeout = 60

[upstream]
host = "{HOST}"
port = {sink_port}
helo_name = "sealgate.soak.test"
connect_timeout = 5
command_timeout = 10
data_timeout = 10

[loop]
secret_file = "{self.workdir / "loop.key"}"

[log]
level = "info"

[service]
shutdown_timeout = {self.args.shutdown_timeout}

[store]
directory = "{self.state}"
busy_timeout = {self.args.busy_timeout}

[policy]
packs = ["{ROOT / "policies" / "baseline.toml"}"]

[portal]
listen = "{HOST}:{portal_port}"
url = "http://localhost:{portal_port}"
"""
        )
        return path

    def start(self) -> None:
        args = self.args
        self.mount_state()
        self.sink = RecordingSink(self.workdir / "sink", seed=args.seed)
        sink_port = self.sink.listen()
        smtp_port, portal_port = free_ports(2)
        config = self.write_config(smtp_port, portal_port, sink_port)
        self.sealgate = Sealgate(config, smtp_port, args.workers, self.workdir / "sealgate.log")
        self.sealgate.start()
        self.postfix = Postfix(name="soak", hostname="postfix.soak.test")
        self.postfix.start_relayhost(
            smtp_port,
            settings={
                "enable_long_queue_ids": "yes",  # queue ids are never reused in a run
                "smtp_connect_timeout": "5s",
            },
        )
        say(
            f"soak: {args.count} messages over {args.duration:.0f}s, {args.protected_share:.0%} "
            f"protected; faults {','.join(args.faults)} every {self.fault_every():.1f}s; "
            f"sealgate workers {args.workers} on {smtp_port}, sink on {sink_port}, "
            f"state on a {args.image_mib} MiB ext4 loop image; work directory {self.workdir}"
        )

    # -- submitting

    def submitter(self, schedule: list[int], began: float) -> None:
        """Submit the messages of ``schedule`` at their times, on one reused connection."""
        client: smtplib.SMTP | None = None
        interval = self.args.duration / self.args.count
        deadline = began + self.args.duration * 3 + 120
        for index in schedule:
            if self.stopping.is_set() or time.time() > deadline:
                self.submit_failures["not submitted (stopped or past the deadline)"] += 1
                continue
            delay = began + index * interval - time.time()
            if delay > 0 and self.stopping.wait(delay):
                continue
            submission, data = self.messages_for(index)
            for attempt in range(5):
                try:
                    if client is None:
                        client = self.connect()
                    queue_id = submit(client, submission, data)
                    break
                except (OSError, smtplib.SMTPException) as error:
                    self.submit_failures[f"retried: {error}"[:120]] += 1
                    with contextlib.suppress(Exception):
                        if client is not None:
                            client.close()
                    client = None
                    time.sleep(0.5 * (attempt + 1))
            else:
                self.submit_failures["not submitted (Postfix failed 5 times)"] += 1
                continue
            done = Submission(**{**asdict(submission), "queue_id": queue_id,
                                 "submitted_at": time.time()})  # fmt: skip
            with self.lock:
                self.submissions.append(done)
                with open(self.workdir / "submissions.jsonl", "a") as out:
                    out.write(json.dumps(asdict(done)) + "\n")
        if client is not None:
            with contextlib.suppress(Exception):
                client.quit()

    def connect(self) -> smtplib.SMTP:
        assert self.postfix is not None
        client = smtplib.SMTP(HOST, self.postfix.smtpd_port, timeout=30)
        client.ehlo("submitter.soak.test")
        return client

    def messages_for(self, index: int) -> tuple[Submission, bytes]:
        with self.lock:
            return self.messages.make(index)

    # -- faults

    def fault_every(self) -> float:
        if self.args.fault_every:
            return float(self.args.fault_every)
        return self.args.duration / max(len(self.args.faults), 1) if self.args.quick else 30.0

    def run_faults(self, began: float) -> None:
        every = self.fault_every()
        hold = min(self.args.fault_hold, every * 0.6)
        kinds = list(self.args.faults)
        deadline = began + self.args.duration * 3 + 120
        slot = 0
        # Until the submissions' duration is over and every kind was injected once.
        while not self.stopping.is_set() and kinds and time.time() < deadline:
            at = began + every * (slot + 0.5)
            if at > began + self.args.duration and slot >= len(kinds):
                break
            if self.stopping.wait(max(0.0, at - time.time())):
                break
            kind = kinds[slot % len(kinds)]
            slot += 1
            start = time.time()
            try:
                detail = self.inject(kind, hold)
            except Exception as error:  # a fault that could not be injected is reported
                detail = f"FAILED to inject: {error}"
                self.fault_errors.append(f"{kind}: {error}")
            end = time.time()
            name = "restart-killed" if kind == "restart" and "killed" in detail else kind
            with self.lock:
                self.faults.append(Fault(name, start, end, detail))
            took = end - start
            say(f"  fault t+{start - self.started_at:6.1f}s {name:<16} {took:5.1f}s {detail}")

    def inject(self, kind: str, hold: float) -> str:
        assert self.sink is not None and self.sealgate is not None
        rate = self.args.flap_rate
        if kind == "upstream-451":
            self.sink.tempfail(rate)
            self.stopping.wait(hold)
            self.sink.normal()
            return f"451 to {rate:.0%} of transactions for {hold:.0f}s"
        if kind == "upstream-drop":
            self.sink.drop(rate)
            self.stopping.wait(hold)
            self.sink.normal()
            return f"{rate:.0%} of transactions dropped after DATA for {hold:.0f}s"
        if kind == "upstream-refuse":
            self.sink.refuse()
            self.stopping.wait(hold)
            self.sink.listen()
            return f"refused connections for {hold:.0f}s"
        if kind == "kill-worker":
            workers = self.sealgate.worker_pids()
            if not workers:
                return "no worker to kill"
            victim = random.Random(len(self.faults)).choice(workers)
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(self.sealgate.worker_pids()) < len(workers):
                time.sleep(0.1)
            return f"SIGKILL worker {victim}; {len(self.sealgate.worker_pids())} workers after"
        if kind == "restart":
            killed = self.sealgate.stop(timeout=self.args.shutdown_timeout + 15)
            stopped = time.time()
            self.sealgate.start()
            took = time.time() - stopped
            return ("killed (SIGTERM not enough)" if killed else "SIGTERM, exit") + (
                f", started again in {took:.1f}s"
            )
        if kind == "db-lock":
            return self.lock_database(self.args.busy_timeout + max(2.0, hold / 2))
        if kind == "disk-full":
            return self.fill_disk(hold)
        raise ValueError(f"unknown fault {kind}")

    def lock_database(self, seconds: float) -> str:
        database = self.state / "sealgate.db"
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(database), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.lockers.append(locker)
        assert locker.stdout is not None
        got = locker.stdout.readline()  # bounded by the locker's own 30 s busy timeout
        try:
            locker.wait(seconds + 40)
        except subprocess.TimeoutExpired:
            locker.kill()
            locker.wait(5)
        if got.strip() != b"locked":
            assert locker.stderr is not None
            raise RuntimeError(f"the locker did not get the lock: {locker.stderr.read()[-300:]!r}")
        return f"BEGIN EXCLUSIVE held {seconds:.0f}s (busy_timeout {self.args.busy_timeout}s)"

    def fill_disk(self, seconds: float) -> str:
        stats = os.statvfs(self.mount)
        free = stats.f_bavail * stats.f_frsize
        fd = os.open(self.ballast, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            with contextlib.suppress(OSError):
                os.posix_fallocate(fd, 0, free)
            os.fsync(fd)
        finally:
            os.close(fd)
        left = os.statvfs(self.mount)
        remaining = left.f_bavail * left.f_frsize
        try:
            self.stopping.wait(seconds)
        finally:
            self.ballast.unlink(missing_ok=True)
        return f"ballast of {free >> 20} MiB, {remaining >> 10} KiB left, for {seconds:.0f}s"

    # -- the end

    def settle_faults(self) -> None:
        """Whatever a fault left behind is undone: the sink listens and accepts, Sealgate
        runs, no lock, no ballast."""
        assert self.sink is not None and self.sealgate is not None
        self.sink.normal()
        self.sink.listen()
        self.ballast.unlink(missing_ok=True)
        for locker in self.lockers:
            if locker.poll() is None:
                locker.kill()
                locker.wait(5)
        if not self.sealgate.running():
            self.sealgate.start()

    def drain(self) -> dict[str, set[str]]:
        """Flush Postfix until its queue is empty or ``--drain`` passes; what is still queued."""
        assert self.postfix is not None
        deadline = time.monotonic() + self.args.drain
        rounds = 0
        while time.monotonic() < deadline and rounds < 10_000:
            rounds += 1
            entries = self.postfix.queue_entries()
            if not entries:
                break
            if rounds % 10 == 1:
                say(f"  draining: {len(entries)} message(s) in Postfix's queue")
            self.postfix.flush()
            time.sleep(2)
        time.sleep(2)  # a late duplicate would arrive now
        return {
            entry.queue_id: {r.lower() for r in entry.recipients}
            for entry in self.postfix.queue_entries()
        }

    def stop_all(self) -> None:
        self.stopping.set()
        for thread in self.threads:  # a fault in progress ends within its own bounds
            thread.join(120)
        if self.postfix is not None:
            with contextlib.suppress(Exception):
                self.postfix.close()
        if self.sealgate is not None:
            self.sealgate.stop(timeout=self.args.shutdown_timeout + 15, final=True)
        for locker in self.lockers:
            if locker.poll() is None:
                locker.kill()
                locker.wait(5)
        if self.sink is not None:
            self.sink.close()
        self.unmount_state()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------- orchestration


OUTCOME = re.compile(r" outcome=(\S+)")
REPLY = re.compile(r' reply="?(\d{3})')


def sealgate_log_figures(path: Path) -> dict[str, Any]:
    """What Sealgate's log says about the run: outcomes, replies, warnings, errors."""
    counts: Counter[str] = Counter()
    first_errors: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        if line.startswith("Traceback"):
            counts["tracebacks"] += 1
        parts = line.split(" ", 4)
        if len(parts) >= 4 and parts[1] in ("warning", "error", "critical"):
            counts[parts[1]] += 1
            # Transactions answered 4xx are counted by reply below; list everything else.
            if parts[3] != "transaction" and len(first_errors) < 8:
                first_errors.append(line[:300])
        if (outcome := OUTCOME.search(line)) is not None:
            counts[f"outcome {outcome.group(1)}"] += 1
        if (reply := REPLY.search(line)) is not None:
            counts[f"reply {reply.group(1)}"] += 1
    return {"lines": len(lines), **dict(sorted(counts.items())), "first_problems": first_errors}


def save_run(soak: Soak, queued: dict[str, set[str]]) -> None:
    """What the checks need besides the submissions and the sink: for --recheck too."""
    run = {
        "started_at": soak.started_at,
        "queued": {queue_id: sorted(rcpts) for queue_id, rcpts in queued.items()},
        "faults": [asdict(f) for f in soak.faults],
    }
    (soak.workdir / "run.json").write_text(json.dumps(run, indent=1))


def run_checks(
    workdir: Path, database: Path, state_dir: Path | None, crash_window: float
) -> Verdict:
    """The invariants, over what a run left in ``workdir`` (and the state directory)."""
    run = json.loads((workdir / "run.json").read_text())
    submissions = [
        Submission(**{**item, "recipients": tuple(item["recipients"])})
        for item in map(json.loads, (workdir / "submissions.jsonl").read_text().splitlines())
    ]
    checker = Checker(
        submissions,
        [Fault(**f) for f in run["faults"]],
        workdir / "sink",
        {queue_id: set(rcpts) for queue_id, rcpts in run["queued"].items()},
        run["started_at"],
        crash_window,
        read_answers(workdir / "sealgate.log"),
    )
    checker.read_arrivals()
    checker.account()
    checker.protected(read_store(database))
    if state_dir is not None:
        checker.at_rest(state_dir)
    checker.logs([workdir / "sealgate.log", workdir / "maillog"])
    return checker.verdict


def recheck(args: argparse.Namespace) -> int:
    """The checks again, over a work directory kept with --keep (no state directory:
    the plaintext-at-rest check needs the mounted image and is skipped)."""
    workdir = Path(args.recheck)
    verdict = run_checks(workdir, workdir / "sealgate.db", None, args.crash_window)
    run = json.loads((workdir / "run.json").read_text())
    faults = [Fault(**f) for f in run["faults"]]
    report = {
        "figures": verdict.figures,
        "faults": dict(Counter(f.kind for f in faults)),
        "duplicates": verdict.duplicates,
        "failures": verdict.failures,
        "notes": ["rechecked from " + str(workdir) + "; plaintext at rest not checked"],
        "sink": {},
        "sealgate_log": sealgate_log_figures(workdir / "sealgate.log"),
    }
    print_report(report)
    return 1 if verdict.failures else 0


def orchestrate(args: argparse.Namespace) -> int:
    soak = Soak(args)
    try:
        soak.start()
        began = time.time()
        threads = [
            threading.Thread(
                target=soak.submitter,
                args=(list(range(n, args.count, args.submitters)), began),
                name=f"submitter-{n}",
            )
            for n in range(args.submitters)
        ]
        faults = threading.Thread(target=soak.run_faults, args=(began,), name="faults")
        soak.threads = [*threads, faults]
        for thread in [*threads, faults]:
            thread.start()
        limit = began + args.duration * 3 + 180
        while any(t.is_alive() for t in threads) and time.time() < limit:
            time.sleep(1)
            done = len(soak.submissions)
            if int(time.time() - began) % 15 == 0:
                sent = soak.sink.accepted if soak.sink else 0
                say(f"  t+{time.time() - soak.started_at:6.1f}s submitted {done}/{args.count}, "
                    f"sink accepted {sent}")  # fmt: skip
        faults.join(max(5.0, limit - time.time()))  # every kind once, even after the last
        soak.stopping.set()
        for thread in [*threads, faults]:
            thread.join(max(5.0, limit - time.time()))
        submitted_until = time.time()
        soak.stopping.clear()
        soak.settle_faults()
        say(f"submitted {len(soak.submissions)} in {submitted_until - began:.0f}s; draining")
        queued = soak.drain()
        assert soak.sealgate is not None and soak.sink is not None
        orphans = soak.sealgate.orphans()
        assert soak.postfix is not None
        shutil.copy2(soak.postfix.maillog_path, soak.workdir / "maillog")
        soak.sealgate.stop(timeout=args.shutdown_timeout + 15, final=True)
        if args.keep:
            for name in ("sealgate.db", "sealgate.db-wal"):
                with contextlib.suppress(OSError):
                    shutil.copy2(soak.state / name, soak.workdir / name)
        save_run(soak, queued)
        verdict = run_checks(
            soak.workdir, soak.state / "sealgate.db", soak.state, args.crash_window
        )
        for what, n in soak.submit_failures.items():
            if not what.startswith("retried"):
                verdict.fail(f"SUBMISSION: {n} x {what}")
        for error in soak.fault_errors:
            verdict.fail(f"FAULT NOT INJECTED: {error}")
        if orphans:
            verdict.notes.append(f"{orphans} orphaned helper process(es) of killed workers")
        report = {
            "figures": verdict.figures,
            "faults": dict(Counter(f.kind for f in soak.faults)),
            "fault_timeline": [
                {
                    **asdict(f),
                    "start": round(f.start - soak.started_at, 1),
                    "end": round(f.end - soak.started_at, 1),
                }
                for f in soak.faults
            ],  # fmt: skip
            "duplicates": verdict.duplicates,
            "failures": verdict.failures,
            "notes": verdict.notes,
            "sink": dict(soak.sink.counters),
            "sealgate_log": sealgate_log_figures(soak.sealgate.log_path),
            "submission_retries": {k: v for k, v in soak.submit_failures.items()},
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
        }
        print_report(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        return 1 if verdict.failures else 0
    finally:
        soak.stop_all()


def print_report(report: dict[str, Any]) -> None:
    f = report["figures"]
    say("")
    say("=== soak result ===")
    say(f"messages sent        {f.get('messages_sent', 0)} "
        f"({f.get('protected_sent', 0)} protected)")  # fmt: skip
    say(f"faults injected      {sum(report['faults'].values())}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report["faults"].items())))  # fmt: skip
    say(f"delivered complete   {f.get('delivered_complete', 0)}; "
        f"still queued in Postfix {f.get('still_queued', 0)}")  # fmt: skip
    say(f"lost                 {f.get('lost_messages', 0)} messages "
        f"({f.get('lost_deliveries', 0)} deliveries)")  # fmt: skip
    say(f"duplicated           {f.get('duplicates', 0)} "
        f"(unexplained: {f.get('duplicates_unexplained', 0)})")  # fmt: skip
    for dup in report["duplicates"][:20]:
        say(f"  {dup['message_id']} -> {dup['recipient']} {dup['kind']} at {dup['arrivals']}: "
            f"{dup['why']}; faults around {dup['faults_around']}")  # fmt: skip
    say(f"dead links           {f.get('dead_links', 0)}")
    say(f"latency              p50 {f.get('latency_p50_s', 0):.2f}s  "
        f"p99 {f.get('latency_p99_s', 0):.2f}s  max {f.get('latency_max_s', 0):.2f}s "
        "(submission to arrival of the last owed copy or notification)")  # fmt: skip
    say(f"throughput           {f.get('throughput_msg_per_s', 0)} msg/s; sink received "
        f"{f.get('sink_messages', 0)} {f.get('sink_by_kind', {})}")  # fmt: skip
    say(f"upstream misbehaved  {report['sink']}")
    say(f"sealgate log         {report['sealgate_log']}")
    for note in report["notes"]:
        say(f"note: {note}")
    if report["failures"]:
        say(f"INVARIANTS FAILED ({len(report['failures'])}):")
        for failure in report["failures"][:60]:
            say(f"  - {failure}")
        if len(report["failures"]) > 60:
            say(f"  ... and {len(report['failures']) - 60} more (--json has them all)")
    else:
        say("all invariants held")


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Soak test: mail through Postfix into Sealgate while faults are injected.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-n", "--count", type=int, default=10_000, help="messages to submit")
    parser.add_argument(
        "-d", "--duration", type=float, default=600, help="seconds to spread them over"
    )
    parser.add_argument(
        "--quick", action="store_true", help="500 messages over 60 s (unless -n/-d are given)"
    )
    parser.add_argument("--workers", type=int, default=2, help="Sealgate worker processes")
    parser.add_argument("--submitters", type=int, default=4, help="submitting connections")
    parser.add_argument("--protected-share", type=float, default=0.3, help="share protected")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help="fault kinds to cycle through, comma-separated (empty: none)",
    )
    parser.add_argument(
        "--fault-every", type=float, default=0.0,
        help="seconds between fault starts (0: 30, or duration / kinds with --quick)",
    )  # fmt: skip
    parser.add_argument("--fault-hold", type=float, default=8.0, help="seconds a fault lasts")
    parser.add_argument(
        "--flap-rate", type=float, default=0.5,
        help="share of upstream transactions answered 451 or dropped while that fault lasts",
    )  # fmt: skip
    parser.add_argument(
        "--crash-window", type=float, default=10.0,
        help="a duplicate is allowed if a worker was killed within this many seconds after "
        "the first copy arrived",
    )  # fmt: skip
    parser.add_argument(
        "--drain",
        type=float,
        default=0.0,
        help="seconds to flush Postfix at the end (0: 300, 120 with --quick)",
    )
    parser.add_argument("--busy-timeout", type=int, default=5, help="Sealgate's store.busy_timeout")
    parser.add_argument("--shutdown-timeout", type=int, default=10,
                        help="Sealgate's service.shutdown_timeout")  # fmt: skip
    parser.add_argument("--image-mib", type=int, default=256, help="size of the state file system")
    parser.add_argument("--seed", type=int, default=1, help="seed of messages and faults")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--recheck", metavar="DIR",
        help="run only the checks again, over a work directory a --keep run left",
    )  # fmt: skip
    args = parser.parse_args(argv)
    given = set(argv if argv is not None else sys.argv[1:])
    if args.quick:
        if not given & {"-n", "--count"}:
            args.count = 500
        if not given & {"-d", "--duration"}:
            args.duration = 60.0
    if not args.drain:
        args.drain = 120.0 if args.quick else 300.0
    args.faults = [k for k in args.faults.split(",") if k]
    unknown = set(args.faults) - set(FAULT_KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
    if args.count < 1 or args.duration <= 0 or args.submitters < 1 or args.workers < 1:
        parser.error("--count, --duration, --submitters and --workers must be positive")
    if not 0 <= args.protected_share <= 1:
        parser.error("--protected-share is a fraction between 0 and 1")
    if args.recheck:
        return args
    if os.geteuid() != 0:
        parser.error("needs root: a throwaway Postfix instance and a loop-mounted file system")
    if not Path("/usr/sbin/postfix").exists():
        parser.error("needs Debian's postfix package (make system-packages)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.recheck:
        return recheck(args)
    return run_interruptibly(
        lambda: orchestrate(args), "every process started was stopped, the image unmounted"
    )


if __name__ == "__main__":
    sys.exit(main())
