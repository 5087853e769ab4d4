"""Sealgate against the real peer: a Postfix relay hop, the same client and sink around either.

    .venv/bin/python bench/hop.py                    # default run (make bench), about 4 minutes
    .venv/bin/python bench/hop.py --rounds 5 --seconds 10
    .venv/bin/python bench/hop.py --profile /tmp/prof   # + a cProfile'd pass, protected path
    .venv/bin/python bench/hop.py --big              # + one 25 MB attachment, end to end
    .venv/bin/python bench/hop.py --burst 500        # + 500 protected messages through Postfix
    .venv/bin/python bench/hop.py --json result.json # the figures as JSON as well

Needs root (a throwaway Postfix with its own configuration directory) and Debian's postfix
package, which brings ``smtp-source`` and ``smtp-sink`` (``make system-packages``).

Processes, all on 127.0.0.1 (Sealgate binds port 0 and says in its log which ports it got;
Postfix and the sink cannot, they get a port that was free a moment before):

    smtp-source -s 20 --SMTP--> (a) Postfix: smtpd -> queue (fsync) -> smtp   --SMTP--> smtp-sink -c
                                (b) sealgate serve --workers 1 | 2

- (a) is a pure relay hop: its own configuration and queue directories under /tmp,
  ``relayhost`` = the sink, no local delivery (tests/support/postfix.py);
- (b) is ``sealgate serve -c <generated toml>``: SQLite with fsync (the default), the default
  policy pack, notifications DKIM-signed (a key made with ``sealgate dkim-keygen``), the portal
  on, ``upstream`` = the sink, logging at its default level (info: a line per transaction).
- The relay path sends plain messages; the protected path the same with the subject
  ``[secure] ...``, which the baseline pack protects; one recipient per message, outside
  (``NNrcpt@example.net``, ``-N``), so each protected message yields one notification.

A measurement waits until every process is idle (Postfix's queue empty, helper processes quiet),
sends a warm-up, then N messages, and takes the time from starting the client until the sink
has counted all N (for Postfix, mail is in the sink, not only in its queue). N is chosen so
that a run lasts about ``--seconds``, from the rate the target showed in its last run.
A run is valid only if the client got 250 for every message, the sink counted exactly N and,
for Sealgate, N more envelopes reached the state "delivered" (sealed, stored, notified) on
the protected path and none on the relay path: otherwise NOT VERIFIED and exit status 1.

Every process started is stopped at the end, also on error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import email.policy
import io
import json
import os
import pstats
import re
import resource
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from benchlib import median, memory, percentile, run_interruptibly
from relay import Managed, sealgate_command

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postfix import Postfix, free_port  # noqa: E402

HOST = "127.0.0.1"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
SENDER = "bench@example.org"
RECIPIENT = "rcpt@example.net"  # smtp-source -N makes it 1rcpt@..., 2rcpt@..., ...
NOTIFY_FROM = "secure@example.org"
DKIM_DOMAIN, DKIM_SELECTOR = "example.org", "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIG_LIMIT = 64_000_000  # message size limit of both the hop and Sealgate: room for --big
# A worker's "listening" event: its SMTP addresses, the portal's URL, its pid.
LISTENING = re.compile(r" listening smtp=(\[[^]]*\]) portal=(\S+) .*? pid=(\d+)")
# A warning or error line of Sealgate's log (text format), or a traceback.
LOG_PROBLEM = re.compile(r"^(\S+Z (warning|error|critical) |Traceback)")
# First guess of msg/s, for the first run's count (later runs use the rate measured).
GUESS = {"relay": 400.0, "protected": 25.0}


# --------------------------------------------------------------------------- /proc


def _proc_table() -> dict[int, tuple[int, float]]:
    """Every process: pid -> (parent, CPU seconds of itself and its reaped children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields_ = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime stime cutime cstime: a Postfix smtpd that exits after max_use is in its
        # master's cutime afterwards, so the tree's total keeps it.
        cpu = sum(int(x) for x in fields_[11:15]) / CLK_TCK
        table[int(entry)] = (int(fields_[1]), cpu)
    return table


def tree_pids(root: int, table: dict[int, tuple[int, float]] | None = None) -> list[int]:
    table = table if table is not None else _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def tree_cpu(roots: list[int]) -> dict[int, float]:
    """CPU seconds so far of each root's whole process tree."""
    table = _proc_table()
    return {root: sum(table[p][1] for p in tree_pids(root, table)) for root in roots}


def cpu_split(roots: list[int], ours: list[int]) -> tuple[dict[int, float], float, float]:
    """CPU seconds so far: of each root's process tree; of all our processes (the trees of
    ``ours``); of everyone else's (other sessions' work; kernel threads not counted)."""
    table = _proc_table()
    mine = {pid for root in ours for pid in tree_pids(root, table)}
    trees = {root: sum(table[p][1] for p in tree_pids(root, table)) for root in roots}
    ours_cpu = sum(table[p][1] for p in mine)
    others = sum(
        cpu for pid, (parent, cpu) in table.items() if pid not in mine and 2 not in (pid, parent)
    )
    return trees, ours_cpu, others


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def children_cpu() -> float:
    """CPU seconds of our reaped children (the smtp-source runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in argv if a]
    if any("multiprocessing" in a for a in args):
        return "helper processes (text extractor)"
    if "--worker" in args:
        return "worker"
    return "main process" if "serve" in args else " ".join(args)[:60]


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS (Linux >= 4.0, root): the peak of what follows, not of the start."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """A relay hop under test: Postfix, or one Sealgate setup."""

    name: str
    port: int
    root_pid: int
    workers: int = 0  # Sealgate's
    portal: str = ""
    database: Path | None = None
    proc: Managed | None = None

    def envelope_states(self) -> dict[str, int]:
        if self.database is None:
            return {}
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as db:
            rows = db.execute("SELECT state, COUNT(*) FROM envelopes GROUP BY state").fetchall()
        return {state: count for state, count in rows}


@dataclass
class Series:
    """One (target, path) pair of a round set, measured once a round."""

    label: str
    target: Target
    protected: bool
    count: int
    fixed: bool
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return "protected" if self.protected else "relay"


def sealgate_config(workdir: Path, name: str, sink_port: int, big: bool = False) -> Path:
    state = workdir / name
    state.mkdir()
    path = workdir / f"{name}.toml"
    path.write_text(
        f"""# generated by bench/hop.py
[smtp]
listen = ["{HOST}:0"]
hostname = "sealgate.bench.example"
max_connections = 200
max_message_size = {BIG_LIMIT if big else 10_240_000}

[upstream]
host = "{HOST}"
port = {sink_port}
helo_name = "sealgate.bench.example"
max_idle_connections = 20

[loop]
secret_file = "{workdir / "loop.key"}"

[store]
directory = "{state}"

[service]
shutdown_timeout = 5

[dev_outbox]
enabled = false

[[dkim.keys]]
domain = "{DKIM_DOMAIN}"
selector = "{DKIM_SELECTOR}"
key_file = "{workdir / "dkim.pem"}"

[notify]
from_address = "{NOTIFY_FROM}"

# On, as in production; port 0 with every worker count, url empty: links name the bound port.
[portal]
enabled = true
listen = "{HOST}:0"
url = ""
"""
    )
    return path


def wait_sealgate(proc: Managed, workers: int, timeout: float = 60) -> tuple[int, str]:
    """The SMTP port and portal URL Sealgate's workers log as listening, once ``workers`` do."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        found = LISTENING.findall(proc.log_path.read_text(errors="replace"))
        if len({pid for _, _, pid in found}) >= workers:
            # Every worker serves (and links to) the addresses its supervisor bound.
            if len({(smtp, portal) for smtp, portal, _ in found}) != 1:
                raise RuntimeError(f"{proc.name}: workers disagree on addresses: {found}")
            smtp, portal, _ = found[0]
            return int(json.loads(smtp)[0].rsplit(":", 1)[1]), portal
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not listening after {timeout}s:\n{proc.log_tail()}")


# --------------------------------------------------------------------------- the bench


class Hop:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="sealgate-hop-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        self.procs: list[Managed] = []
        self.postfixes: list[Postfix] = []
        self.client: subprocess.Popen[bytes] | None = None
        self.sink: Managed | None = None
        self.sink_port = 0
        self.targets: list[Target] = []
        self.sealgates: list[Managed] = []  # every one started, for their logs
        self.notes: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    # -- processes

    def start_sink(self) -> None:
        self.sink_port = free_port()
        argv = [SMTP_SINK, "-c", "-u", "nobody", "-m", "1024", f"{HOST}:{self.sink_port}", "1024"]
        self.sink = Managed("sink", argv, self.workdir, capture_stdout=True)
        self.procs.append(self.sink)
        deadline = time.monotonic() + 10
        while not _port_open(self.sink_port):
            if time.monotonic() > deadline or not self.sink.alive():
                raise RuntimeError(f"smtp-sink did not start:\n{self.sink.log_tail()}")
            time.sleep(0.05)

    def make_dkim_key(self) -> None:
        argv = [
            *sealgate_command(),
            "dkim-keygen",
            "--domain",
            DKIM_DOMAIN,
            "--selector",
            DKIM_SELECTOR,
            "--out",
            str(self.workdir / "dkim.pem"),
        ]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def start_postfix(self, name: str, relay_port: int) -> Postfix:
        instance = Postfix(name=name, hostname=f"{name}.bench.example")
        self.postfixes.append(instance)
        instance.start_relayhost(relay_port, settings={"message_size_limit": str(BIG_LIMIT)})
        return instance

    def start_hop(self) -> Target:
        postfix = self.start_postfix("hop", self.sink_port)
        assert postfix.master_pid is not None
        target = Target("postfix", postfix.smtpd_port, postfix.master_pid)
        self.targets.append(target)
        return target

    def start_sealgate(
        self,
        name: str,
        workers: int,
        *,
        upstream: int = 0,
        big: bool = False,
        profile: tuple[Path, str] | None = None,
    ) -> Target:
        config = sealgate_config(self.workdir, name, upstream or self.sink_port, big)
        if profile is not None:
            argv = [
                sys.executable,
                str(HERE),
                "--role",
                "profiled-serve",
                "--profile-out",
                str(profile[0]),
                "--profile-timer",
                profile[1],
                "--",
                "serve",
                "-c",
                str(config),
            ]
        else:
            argv = [*sealgate_command(), "serve", "-c", str(config)]
        argv += ["--workers", str(workers)]
        proc = Managed(name, argv, self.workdir)
        self.procs.append(proc)
        self.sealgates.append(proc)
        port, portal = wait_sealgate(proc, workers)
        target = Target(
            name, port, proc.proc.pid, workers, portal, self.workdir / name / "sealgate.db", proc
        )
        self.targets.append(target)
        return target

    def stop_target(self, target: Target) -> None:
        if target.proc is not None:
            target.proc.stop(timeout=30)
            self.procs.remove(target.proc)
        self.targets.remove(target)

    def stop_all(self) -> None:
        if self.client is not None and self.client.poll() is None:
            self.client.kill()
            self.client.wait()
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        for instance in self.postfixes:
            with contextlib.suppress(Exception):
                if self.args.keep:
                    instance.stop()
                else:
                    instance.close()
        if self.args.keep:
            self.say(f"kept {self.workdir} (Postfix under /tmp/sealgate-postfix-*)")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_problems(self) -> dict[str, int]:
        """Warning and error lines in each Sealgate's log."""
        return {
            proc.name: sum(
                1
                for line in proc.log_path.read_text(errors="replace").splitlines()
                if LOG_PROBLEM.match(line)
            )
            for proc in self.sealgates
        }

    def settle(self, timeout: float = 30) -> bool:
        """Wait until Postfix, every Sealgate and the sink are idle."""
        roots = [t.root_pid for t in self.targets] + [self.sink.proc.pid if self.sink else 0]
        deadline = time.monotonic() + timeout
        while True:
            before = sum(tree_cpu(roots).values())
            time.sleep(0.5)
            if sum(tree_cpu(roots).values()) - before < 0.05:
                return True
            if time.monotonic() > deadline:
                self.notes.append(f"not idle after {timeout:.0f}s before a run")
                return False

    # -- sending

    def source_argv(self, port: int, count: int, protected: bool, sessions: int) -> list[str]:
        argv = [
            SMTP_SOURCE,
            "-s",
            str(min(sessions, count)),
            "-m",
            str(count),
            "-l",
            str(self.args.size),
            "-f",
            SENDER,
            "-t",
            RECIPIENT,
            "-N",
            "-M",
            "client.bench.example",
            "-S",
            "[secure] hop benchmark" if protected else "hop benchmark",
        ]
        if not self.args.no_reuse:
            argv.append("-d")  # one connection per session, as an MTA's connection cache
        return [*argv, f"{HOST}:{port}"]

    def sink_counter(self) -> int:
        assert self.sink is not None
        return self.sink.counter

    def send(self, argv: list[str], target: Target, expected: int, limit: float) -> dict[str, Any]:
        """Run the client; wait for the sink to count ``expected`` more; time and CPU."""
        assert self.sink is not None
        sink_before = self.sink_counter()
        roots = [target.root_pid, self.sink.proc.pid]
        ours = [os.getpid(), *(p.master_pid for p in self.postfixes if p.master_pid)]
        (cpu_before, ours_before, others_before), busy_before = (
            cpu_split(roots, ours),
            machine_busy(),
        )
        client_before = children_cpu()
        started = time.monotonic()
        self.client = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            _, err = self.client.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            self.client.kill()
            _, err = self.client.communicate()
            err += f"\n(client killed after {limit:.0f}s)".encode()
        client_done = time.monotonic()
        code = self.client.returncode
        deadline = client_done + 30 + expected / 20
        reached = client_done
        while self.sink_counter() - sink_before < expected and time.monotonic() < deadline:
            time.sleep(0.005)
            reached = time.monotonic()
        ended = max(client_done, reached)
        (cpu_after, ours_after, others_after), busy_after = cpu_split(roots, ours), machine_busy()
        client_after = children_cpu()
        elapsed = ended - started
        target_cpu = cpu_after[target.root_pid] - cpu_before[target.root_pid]
        sink_cpu = cpu_after[self.sink.proc.pid] - cpu_before[self.sink.proc.pid]
        client_cpu = client_after - client_before
        return {
            "client_exit": code,
            "client_error": err.decode(errors="replace").strip()[-500:],
            "sink_counted": self.sink_counter() - sink_before,
            "elapsed_s": elapsed,
            "target_cpu_s": target_cpu,
            "sink_cpu_s": sink_cpu,
            "client_cpu_s": client_cpu,
            # What else the machine did meanwhile, in cores: other sessions' processes; the
            # kernel's threads and interrupts (the file system journal, loopback networking).
            "other_cores": (others_after - others_before) / elapsed,
            "kernel_cores": max(
                0.0,
                busy_after
                - busy_before
                - (ours_after - ours_before)
                - (others_after - others_before),
            )
            / elapsed,
        }

    def measure(self, series: Series) -> dict[str, Any]:
        args, target = self.args, series.target
        self.settle()
        states = target.envelope_states()
        # Protected: as many per worker (format v1 needed it to empty the key pools).
        warmup = args.warmup * max(1, target.workers) if series.protected else args.warmup
        warm = self.send(
            self.source_argv(target.port, warmup, series.protected, args.sessions),
            target,
            warmup,
            120 + warmup,
        )
        run = self.send(
            self.source_argv(target.port, series.count, series.protected, args.sessions),
            target,
            series.count,
            120 + series.count / 5,
        )
        run["count"], run["warmup"] = series.count, warmup
        run["msgs_per_s"] = series.count / run["elapsed_s"]
        run["cpu_ms_per_msg"] = run["target_cpu_s"] * 1000 / series.count
        problems = []
        for what, result, n in (("warm-up", warm, warmup), ("run", run, series.count)):
            if result["client_exit"] != 0:
                problems.append(
                    f"{what}: client exit {result['client_exit']}: {result['client_error']}"
                )
            if result["sink_counted"] != n:
                problems.append(f"{what}: sink counted {result['sink_counted']} of {n}")
        if target.database is not None:
            after = target.envelope_states()
            delivered = after.get("delivered", 0) - states.get("delivered", 0)
            others = {s: c - states.get(s, 0) for s, c in after.items() if s != "delivered"}
            run["envelopes_delivered"] = delivered
            expected = warmup + series.count if series.protected else 0
            if delivered != expected or any(others.values()):
                problems.append(
                    f"envelopes delivered {delivered}, expected {expected}; other states {others}"
                )
        run["problems"] = problems
        run["verified"] = not problems
        if not series.fixed:  # next time, about --seconds
            rate = run["msgs_per_s"]
            series.count = int(min(100_000, max(args.min_count, rate * args.seconds)))
        return run

    # -- the rounds

    def run_rounds(self, sets: list[list[Series]]) -> None:
        for rnd in range(1, self.args.rounds + 1):
            for series_set in sets:
                order = series_set if rnd % 2 else list(reversed(series_set))
                for series in order:
                    run = self.measure(series)
                    run["round"] = rnd
                    series.runs.append(run)
                    self.report_run(rnd, series, run)

    def report_run(self, rnd: int, series: Series, run: dict[str, Any]) -> None:
        extra = ""
        if "envelopes_delivered" in run and series.protected:
            extra = f"  sealed+notified +{run['envelopes_delivered']} (with the warm-up)"
        flag = "" if run["verified"] else "  <-- NOT VERIFIED: " + "; ".join(run["problems"])
        self.say(
            f"  round {rnd} {series.label:<22} {run['msgs_per_s']:8.1f} msg/s "
            f"({run['count']} in {run['elapsed_s']:5.1f} s)  "
            f"cpu {run['cpu_ms_per_msg']:6.2f} ms/msg ({run['target_cpu_s'] / run['elapsed_s']:.2f}"
            f" cores)  sink {run['sink_cpu_s'] / run['elapsed_s']:.2f}  client "
            f"{run['client_cpu_s'] / run['elapsed_s']:.2f}  kernel {run['kernel_cores']:.2f}  "
            f"others {run['other_cores']:.2f} cores  "
            f"sink +{run['sink_counted']}{extra}{flag}"
        )

    # -- the check that the protected path really seals, signs and links (before measuring)

    def preflight(self) -> dict[str, Any]:
        """Sealgate (2 workers, port 0) into a recording sink: a relayed message arrives as
        it is; a protected one is sealed and its DKIM-signed notification links to the
        portal port the workers really serve."""
        import dkim
        import httpx

        from gateway.mailauth.dkimsign import SigningKey
        from tests.support.loopthread import LoopThread
        from tests.support.sink import Sink

        thread = LoopThread()
        sink = Sink()
        thread.run(sink.start())
        target = None
        try:
            target = self.start_sealgate("sealgate-check", 2, upstream=sink.port)
            with smtplib.SMTP(HOST, target.port, timeout=60) as client:
                client.sendmail(SENDER, ["a@example.net"], check_message("plain check"))
                client.sendmail(SENDER, ["b@example.net"], check_message("[secure] check"))
            by_rcpt = {m.rcpt_tos[0]: m for m in sink.messages}
            relayed, notice = by_rcpt.get("a@example.net"), by_rcpt.get("b@example.net")
            key = SigningKey.from_pem_file(DKIM_DOMAIN, DKIM_SELECTOR, self.workdir / "dkim.pem")
            record = key.dns_record().encode()
            problems = []
            if relayed is None or b"plain check" not in relayed.data:
                problems.append("the relayed message did not arrive")
            if notice is None or b"[secure] check" in notice.data or b"/m/" not in notice.data:
                problems.append("no notification (or the subject in it) for the protected one")
            else:
                if not dkim.verify(notice.data, dnsfunc=lambda name, timeout=5: record):
                    problems.append("the notification's DKIM signature does not verify")
                text = notice.data.decode(errors="replace").replace("=\r\n", "")
                link = re.search(re.escape(target.portal) + r"/m/[A-Za-z0-9_-]+", text)
                if link is None:
                    problems.append(f"no link to {target.portal} in the notification")
                elif httpx.get(link.group(0), timeout=10).status_code != 200:
                    problems.append(f"the link's page {link.group(0)} does not answer 200")
            if target.envelope_states() != {"delivered": 1}:
                problems.append(f"envelopes: {target.envelope_states()}")
            if problems:
                raise RuntimeError("preflight: " + "; ".join(problems))
            self.say(
                f"preflight: 2 workers on port 0 ({target.port}, portal {target.portal}): "
                "relayed as is; protected sealed, notification DKIM-signed (d=example.org, "
                "verifies), its link answers 200 on the bound portal port"
            )
            return {"smtp_port": target.port, "portal": target.portal, "ok": True}
        finally:
            if target is not None:
                self.stop_target(target)
            thread.run(sink.stop())
            thread.close()

    # -- profile

    def profile(self, directory: Path, count: int) -> dict[str, Any]:
        """Two cProfile'd passes of Sealgate --workers 1 on the protected path, every thread
        profiled: CPU time (each thread's own) and wall-clock time (waits included)."""
        directory.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {}
        for timer in ("cpu", "wall"):
            path = directory / f"protected-w1-{timer}.prof"
            path.unlink(missing_ok=True)
            target = self.start_sealgate(f"sealgate-prof-{timer}", 1, profile=(path, timer))
            try:
                self.settle()
                warm = self.source_argv(target.port, self.args.warmup, True, self.args.sessions)
                self.send(warm, target, self.args.warmup, 120)
                table = _proc_table()
                before = {p: table[p][1] for p in tree_pids(target.root_pid, table)}
                argv = self.source_argv(target.port, count, True, self.args.sessions)
                run = self.send(argv, target, count, 120 + count)
                table = _proc_table()
                by_role: dict[str, float] = {}
                for pid in tree_pids(target.root_pid, table):
                    role = process_role(pid)
                    by_role[role] = by_role.get(role, 0.0) + table[pid][1] - before.get(pid, 0)
            finally:
                self.stop_target(target)
            if not path.exists() or run["sink_counted"] != count:
                raise RuntimeError(f"profile pass ({timer}) failed: {run}")
            rate = count / run["elapsed_s"]
            report[timer] = {"profile": str(path), "msgs_per_s": rate, "cpu_s_by_process": by_role}
            self.say(
                f"\ncProfile ({timer} time), Sealgate --workers 1, protected path: "
                f"{count} messages at {rate:.1f} msg/s under the profiler; {path}"
            )
            for role, seconds in sorted(by_role.items(), key=lambda kv: -kv[1]):
                self.say(
                    f"  CPU during the run, {role}: {seconds:.2f} s "
                    f"({seconds * 1000 / count:.1f} ms/msg)"
                )
            if timer == "cpu":
                self.print_profile(path, "tottime", None, "CPU")
                self.print_profile(path, "cumulative", "/gateway/", "CPU, Sealgate's functions")
            else:  # idle threads wait for hours in sum: Sealgate's own functions tell more
                self.print_profile(path, "cumulative", "/gateway/", "wall, Sealgate's functions")
        return report

    def print_profile(self, path: Path, order: str, only: str | None, what: str) -> None:
        """The top functions, with the paths of this tree, the venv and Python cut short."""
        out = io.StringIO()
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats(order).print_stats(*([only] if only else []), self.args.profile_top)
        text = out.getvalue().split("   ncalls", 1)[-1]
        for prefix in sorted({str(ROOT) + "/", *sys.path}, key=len, reverse=True):
            if prefix.startswith("/"):
                text = text.replace(prefix.rstrip("/") + "/", "")
        self.say(f"-- top {self.args.profile_top} by {order} ({what}) --\n   ncalls{text.rstrip()}")

    # -- one big message

    def big(self, hop: Target) -> dict[str, Any]:
        """The big message through the Postfix hop and Sealgate's protected path, in turns."""
        args = self.args
        path = self.workdir / "big.eml"
        wire = write_big_message(path, args.big_mib)
        target = self.start_sealgate("sealgate-big", 1, big=True)
        results: dict[str, list[dict[str, Any]]] = {"postfix": [], "sealgate": []}
        try:
            # First use (the reply key is made then) on a small message, not the big one.
            with smtplib.SMTP(HOST, target.port, timeout=60) as client:
                client.sendmail(SENDER, ["first@example.net"], check_message("[secure] first"))
            for rnd in range(1, args.big_rounds + 1):
                order = [hop, target]
                for tgt in order if rnd % 2 else reversed(order):
                    new_message_id(path)  # a copy of the last one would be taken for a retry
                    run = self.big_run(tgt, path, wire)
                    results["sealgate" if tgt is target else "postfix"].append(run)
                    grow = ""
                    if "growth_x" in run:
                        grow = (
                            f"  RSS {run['rss_before'] / 1e6:.0f} MB -> peak "
                            f"{run['rss_peak'] / 1e6:.0f} MB ({run['growth_x']:.2f}x)"
                        )
                    self.say(
                        f"  big round {rnd} {tgt.name:<12} {run['elapsed_s']:6.2f} s "
                        f"{run['mb_per_s']:6.1f} MB/s{grow}"
                        + ("" if run["verified"] else f"  <-- NOT VERIFIED {run['client_error']}")
                    )
        finally:
            self.stop_target(target)
        pf = median(r["mb_per_s"] for r in results["postfix"])
        sg = median(r["mb_per_s"] for r in results["sealgate"])
        return {
            "wire_bytes": wire,
            "attachment_bytes": args.big_mib * 1024 * 1024,
            "postfix_mb_per_s": pf,
            "sealgate_mb_per_s": sg,
            "ratio": sg / pf,
            "growth_x": median(r["growth_x"] for r in results["sealgate"]),
            "runs": results,
            "verified": all(r["verified"] for rs in results.values() for r in rs),
        }

    def big_run(self, target: Target, path: Path, wire: int) -> dict[str, Any]:
        """One big message to ``target``; for Sealgate (one process) its peak RSS too."""
        self.settle()
        argv = [SMTP_SOURCE, "-F", str(path), "-f", SENDER, "-t", "big@example.net",
                "-M", "client.bench.example", f"{HOST}:{target.port}"]  # fmt: skip
        states = target.envelope_states()
        if target.proc is not None:
            reset_peak(target.root_pid)
            rss_before = memory(target.root_pid)[0]
        run = self.send(argv, target, 1, 600)
        run["mb_per_s"] = wire / run["elapsed_s"] / 1e6
        run["verified"] = run["client_exit"] == 0 and run["sink_counted"] == 1
        if target.proc is not None:
            run["rss_before"], run["rss_peak"] = rss_before, memory(target.root_pid)[1]
            run["growth_x"] = (run["rss_peak"] - rss_before) / wire
            delivered = target.envelope_states().get("delivered", 0) - states.get("delivered", 0)
            run["verified"] = run["verified"] and delivered == 1
        return run

    # -- a burst through a front Postfix

    def burst(self, count: int, workers: int) -> dict[str, Any]:
        target = self.start_sealgate(f"sealgate-burst-w{workers}", workers)
        front = self.start_postfix("front", target.port)
        assert self.sink is not None
        try:
            self.settle()
            before = self.sink_counter()
            argv = self.source_argv(front.smtpd_port, count, True, self.args.sessions)
            started = time.monotonic()
            submit = subprocess.run(argv, capture_output=True, timeout=300, check=False)
            submitted = time.monotonic() - started
            deadline = time.monotonic() + self.args.burst_timeout
            while time.monotonic() < deadline:
                if self.sink_counter() - before >= count and not front.queue():
                    break
                time.sleep(0.5)
            drained = time.monotonic() - started
            time.sleep(1)  # anything more (a duplicate) would arrive now
            sink = self.sink_counter() - before
            states = target.envelope_states()
            queued = len(front.queue())
        finally:
            self.stop_target(target)
            front.stop()
        maillog = front.maillog()
        return burst_figures(
            count,
            workers,
            submit.returncode,
            submitted,
            drained,
            sink,
            states,
            queued,
            maillog,
            target.proc.log_path.read_text(errors="replace") if target.proc else "",
        )


def burst_figures(
    count: int,
    workers: int,
    submit_code: int,
    submitted: float,
    drained: float,
    sink: int,
    states: dict[str, int],
    queued: int,
    maillog: str,
    sealgate_log: str,
) -> dict[str, Any]:
    """What the front Postfix's maillog and Sealgate's log say about the burst."""
    sent = [line for line in maillog.splitlines() if " status=sent " in line]
    delays = [float(m.group(1)) for line in sent if (m := re.search(r" delay=([0-9.]+)", line))]
    bounced = sum(" status=bounced " in line for line in maillog.splitlines())
    deferred = [line for line in maillog.splitlines() if " status=deferred " in line]
    # What Sealgate answered that was not 250, as Postfix saw it ("said: 451 ...",
    # "refused to talk to me: 421 ...") and as Sealgate logged it (reply="4..").
    postfix_4xx: dict[str, int] = {}
    for line in deferred:
        m = re.search(r"(?:said|refused to talk to me): (\d{3})", line)
        key = m.group(1) if m else "no reply (" + (line.split("(", 1)[-1][:50]) + ")"
        postfix_4xx[key] = postfix_4xx.get(key, 0) + 1
    sealgate_4xx: dict[str, int] = {}
    for m in re.finditer(r' transaction .*? reply="?(\d{3})', sealgate_log):
        if m.group(1) != "250":
            sealgate_4xx[m.group(1)] = sealgate_4xx.get(m.group(1), 0) + 1
    delivered = states.get("delivered", 0)
    verified = (
        submit_code == 0
        and sink == count
        and delivered == count
        and len(sent) == count
        and bounced == 0
        and queued == 0
    )
    return {
        "count": count,
        "workers": workers,
        "submit_exit": submit_code,
        "submitted_s": submitted,
        "drained_s": drained,
        "sink_counted": sink,
        "envelopes": states,
        "sent": len(sent),
        "bounced": bounced,
        "still_queued": queued,
        "deferrals": len(deferred),
        "postfix_4xx": postfix_4xx,
        "sealgate_non_250": sealgate_4xx,
        "p50_s": percentile(delays, 50) if delays else 0.0,
        "p99_s": percentile(delays, 99) if delays else 0.0,
        "max_s": max(delays) if delays else 0.0,
        "verified": verified,
    }


def check_message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Bench <{SENDER}>"
    msg["To"] = "someone@example.net"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<check.{time.time_ns()}@example.org>"
    msg.set_content(f"{subject}\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def write_big_message(path: Path, mib: int) -> int:
    """A protected message with one ``mib`` MiB attachment of random bytes (base64 on the
    wire), written with LF line ends (smtp-source -F sends each line with CRLF); the bytes
    on the wire."""
    msg = EmailMessage()
    msg["From"] = f"Bench <{SENDER}>"
    msg["To"] = "big@example.net"
    msg["Subject"] = "[secure] the big one"
    msg["Message-ID"] = f"<big.{0:020d}@example.org>"  # see new_message_id
    msg.set_content("The figures are attached.\n")
    msg.add_attachment(
        os.urandom(mib * 1024 * 1024),
        maintype="application",
        subtype="octet-stream",
        filename="figures.bin",
    )
    data = msg.as_bytes(policy=email.policy.default)
    path.write_bytes(data)
    return len(data) + data.count(b"\n")


def new_message_id(path: Path) -> None:
    """Give the message in ``path`` a Message-ID of its own (same length, same bytes else)."""
    with path.open("r+b") as file:
        head = file.read(4096)
        start = head.index(b"Message-ID: <big.") + len(b"Message-ID: <big.")
        file.seek(start)
        file.write(b"%020d" % time.time_ns())


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- reporting


def summarize(sets: list[list[Series]]) -> list[dict[str, Any]]:
    rows = []
    for series_set in sets:
        hop, relay, protected = series_set
        row: dict[str, Any] = {"workers": relay.target.workers}
        base = median(r["msgs_per_s"] for r in hop.runs)
        for key, series in (("postfix", hop), ("relay", relay), ("protected", protected)):
            rate = median(r["msgs_per_s"] for r in series.runs)
            row[key] = {
                "msgs_per_s": rate,
                "ratio": rate / base,
                "ratio_per_round": [
                    r["msgs_per_s"] / h["msgs_per_s"]
                    for r, h in zip(series.runs, hop.runs, strict=True)
                ],
                "cpu_ms_per_msg": median(r["cpu_ms_per_msg"] for r in series.runs),
                "runs_msgs_per_s": [round(r["msgs_per_s"], 1) for r in series.runs],
                "counts": [r["count"] for r in series.runs],
                "other_cores": median(r["other_cores"] for r in series.runs),
            }
        rows.append(row)
    return rows


def print_table(say: Any, rows: list[dict[str, Any]]) -> None:
    say("| setup | Postfix relay hop | Sealgate relay path | Sealgate protected path |")
    say("|---|---|---|---|")
    for row in rows:
        pf, rl, pr = row["postfix"], row["relay"], row["protected"]
        say(
            f"| `--workers {row['workers']}`, portal on | {pf['msgs_per_s']:.0f} msg/s | "
            f"{rl['msgs_per_s']:.0f} ({rl['ratio']:.2f}×) | "
            f"{_rate(pr['msgs_per_s'])} ({pr['ratio']:.2f}×) |"
        )
    say("")
    say("CPU per message (every process of the hop, median ms; less sensitive to a busy machine")
    say("than msg/s; in brackets the hop's CPU per message over this one, > 1: cheaper):")
    say("| setup | Postfix relay hop | Sealgate relay path | Sealgate protected path |")
    say("|---|---|---|---|")
    for row in rows:
        pf, rl, pr = (row[k]["cpu_ms_per_msg"] for k in ("postfix", "relay", "protected"))
        say(
            f"| `--workers {row['workers']}` | {pf:.2f} ms | {rl:.2f} ({pf / rl:.2f}×) | "
            f"{pr:.1f} ({pf / pr:.2f}×) |"
        )
    others = median(
        row[key]["other_cores"] for row in rows for key in ("postfix", "relay", "protected")
    )
    say(
        f"Other sessions' processes used {others:.2f} cores on median during the runs"
        + (" -- a busy machine: the figures are noisy" if others > 0.25 else "")
    )
    for row in rows:
        for key in ("relay", "protected"):
            ratios = " ".join(f"{x:.2f}" for x in row[key]["ratio_per_round"])
            say(
                f"workers {row['workers']} {key:<9}: msg/s per round {row[key]['runs_msgs_per_s']}"
                f" (Postfix {row['postfix']['runs_msgs_per_s']}), ratio per round {ratios}"
            )


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def throughput(hop: Hop, postfix: Target) -> tuple[list[dict[str, Any]], bool]:
    """The rounds and the table: for each worker count, Postfix hop, relay path, protected."""
    args, say = hop.args, hop.say
    sets = []
    for workers in args.workers:
        target = hop.start_sealgate(f"sealgate-w{workers}", workers)

        def series(label: str, tgt: Target, protected: bool) -> Series:
            fixed = args.protected_count if protected else args.count
            guess = GUESS["protected" if protected else "relay"] * args.seconds
            return Series(label, tgt, protected, fixed or int(guess), bool(fixed))

        sets.append(
            [
                series(f"w{workers} Postfix hop", postfix, False),
                series(f"w{workers} Sealgate relay", target, False),
                series(f"w{workers} Sealgate protected", target, True),
            ]
        )
    say(
        f"Postfix hop on {postfix.port}; Sealgate "
        + ", ".join(
            f"w{s[1].target.workers} on {s[1].target.port} (portal {s[1].target.portal})"
            for s in sets
        )
    )
    hop.run_rounds(sets)
    for series_set in sets:
        hop.stop_target(series_set[1].target)
    rows = summarize(sets)
    say("")
    print_table(say, rows)
    say(
        "(protected: sealed, stored with fsync, one DKIM-signed notification per message; fewer "
        "messages a run than on the relay path, sized for about --seconds a run)"
    )
    for row, series_set in zip(rows, sets, strict=True):
        row["runs"] = {s.label: s.runs for s in series_set}
    return rows, all(r["verified"] for ss in sets for s in ss for r in s.runs)


def report_big(say: Any, big: dict[str, Any], mib: int) -> None:
    say(
        "| message | Postfix hop | Sealgate protected (SMTP in, sealed, notification out) | "
        "ratio | Sealgate's memory growth |\n|---|---|---|---|---|"
    )
    say(
        f"| {big['wire_bytes'] / 1e6:.1f} MB on the wire ({mib} MiB attachment) "
        f"| {big['postfix_mb_per_s']:.1f} MB/s | {big['sealgate_mb_per_s']:.1f} MB/s | "
        f"{big['ratio']:.2f}× | {big['growth_x']:.2f}× the message (peak RSS - RSS before) |"
    )
    say(
        "(medians; the protected run ends when the sink has the notification and the client "
        "Sealgate's 250)"
    )


def report_burst(say: Any, burst: dict[str, Any]) -> None:
    say(
        f"  submitted in {burst['submitted_s']:.1f} s, all through in "
        f"{burst['drained_s']:.1f} s; envelopes {burst['envelopes']}, sink "
        f"+{burst['sink_counted']}, sent {burst['sent']}, bounced {burst['bounced']}, "
        f"still queued {burst['still_queued']}"
    )
    say(
        f"  4xx: Postfix deferred {burst['deferrals']} deliveries {burst['postfix_4xx']}; "
        f"Sealgate answered {burst['sealgate_non_250'] or 'nothing'} besides 250"
    )
    say(
        f"  submission (arrival at the front Postfix) to delivery (Sealgate's 250, after the "
        f"notification reached the sink), Postfix's delay=: p50 {burst['p50_s']:.1f} s, "
        f"p99 {burst['p99_s']:.1f} s, max {burst['max_s']:.1f} s"
    )


def orchestrate(args: argparse.Namespace) -> int:
    hop = Hop(args)
    say = hop.say
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "size": args.size,
        "sessions": args.sessions,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "reuse_connections": not args.no_reuse,
    }
    began = time.monotonic()
    verified = True
    try:
        hop.make_dkim_key()
        hop.start_sink()
        say(
            f"hop benchmark: smtp-source -s {args.sessions}, {args.size}-byte messages"
            f"{'' if args.no_reuse else ', connections reused (-d)'}; {args.rounds} rounds of "
            f"about {args.seconds:g} s a run after {args.warmup} warm-up messages (protected: "
            f"{args.warmup} per worker); smtp-sink; {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f}; commit {report['commit']}"
        )
        if not args.no_preflight:
            report["preflight"] = hop.preflight()
        postfix = hop.start_hop()
        if args.rounds:
            report["table"], verified = throughput(hop, postfix)
        if args.profile:
            count = args.protected_count or int(GUESS["protected"] * args.seconds)
            if args.rounds:
                count = report["table"][0]["protected"]["counts"][-1]
            report["profile"] = hop.profile(Path(args.profile), count)
        if args.big:
            say(
                f"\n--big: one message with a {args.big_mib} MiB attachment, "
                f"{args.big_rounds} rounds, Postfix hop vs Sealgate --workers 1 protected"
            )
            report["big"] = hop.big(postfix)
            report_big(say, report["big"], args.big_mib)
            verified = verified and report["big"]["verified"]
        if args.burst:
            say(
                f"\n--burst: {args.burst} protected messages into a front Postfix (relayhost = "
                f"Sealgate --workers {args.burst_workers}) at once"
            )
            report["burst"] = hop.burst(args.burst, args.burst_workers)
            report_burst(say, report["burst"])
            verified = verified and report["burst"]["verified"]
        report["sealgate_log_problems"] = hop.log_problems()
        for name, lines in report["sealgate_log_problems"].items():
            if lines:
                say(f"note: {name} logged {lines} warning/error lines")
        for note in dict.fromkeys(hop.notes):
            say(f"note: {note}")
        report["verified"] = verified
        report["seconds_total"] = time.monotonic() - began
        say(
            f"\n{'verified' if verified else 'NOT VERIFIED'}: "
            + (
                "every message reached the sink; every protected one was sealed and notified"
                if verified
                else "see the runs marked above"
            )
            + f" ({report['seconds_total']:.0f} s in all)"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        return 0 if verified else 1
    finally:
        hop.stop_all()


def _commit() -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return result.stdout.strip() + (" (gateway/ modified)" if dirty else "")


# --------------------------------------------------------------------------- profiled serve


def profiled_serve(out: Path, timer: str, argv: list[str]) -> int:
    """``sealgate ARGV`` under cProfile, every thread with a profiler of its own (cProfile
    alone sees the main thread only, and sealing and the policy run in worker threads);
    the profiles merged into ``out`` at exit. ``timer``: "cpu" (each thread's CPU time)
    or "wall" (waits included)."""
    import cProfile
    import threading

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def new_profile() -> cProfile.Profile:
        return cProfile.Profile(time.thread_time) if timer == "cpu" else cProfile.Profile()

    def start_in_thread(*_: Any) -> None:
        profile = new_profile()
        with lock:
            profiles.append(profile)
        profile.enable()  # replaces this hook in the new thread

    threading.setprofile(start_in_thread)
    main_profile = new_profile()
    profiles.append(main_profile)
    from gateway.cli import main as cli

    code = 0
    main_profile.enable()
    try:
        cli.main(args=argv, prog_name="sealgate")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0
    finally:
        main_profile.disable()
        threading.setprofile(None)
        with lock:
            stats = pstats.Stats(main_profile)
            for profile in profiles[1:]:
                with contextlib.suppress(TypeError):  # a thread that never ran any code
                    stats.add(profile)
        stats.dump_stats(str(out))
    return code


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sealgate against a real Postfix relay hop: the same client and sink.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds (A B C, C B A, ...)")
    parser.add_argument("--seconds", type=float, default=6, help="about this long a run")
    parser.add_argument(
        "-n", "--count", type=int, default=0, help="messages a relay run (0: sized for --seconds)"
    )
    parser.add_argument(
        "--protected-count",
        type=int,
        default=0,
        help="messages a protected run (0: sized for --seconds)",
    )
    parser.add_argument("--min-count", type=int, default=60, help="the least a sized run sends")
    parser.add_argument("--warmup", type=int, default=60, help="warm-up messages before a run")
    parser.add_argument("-s", "--sessions", type=int, default=20, help="smtp-source -s")
    parser.add_argument("-l", "--size", type=int, default=10240, help="smtp-source -l (bytes)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="Sealgate setups to measure"
    )
    parser.add_argument(
        "--no-reuse", action="store_true", help="a new connection per message (no smtp-source -d)"
    )
    parser.add_argument("--no-preflight", action="store_true", help="skip the first check")
    parser.add_argument("--profile", metavar="DIR", help="also cProfile'd protected passes")
    parser.add_argument("--profile-top", type=int, default=25, help="functions shown")
    parser.add_argument("--big", action="store_true", help="also one big message end to end")
    parser.add_argument("--big-mib", type=int, default=25, help="its attachment, MiB")
    parser.add_argument("--big-rounds", type=int, default=3, help="rounds of it")
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="N",
        help="also N protected messages through a front Postfix at once",
    )
    parser.add_argument("--burst-workers", type=int, default=2, help="Sealgate's, for --burst")
    parser.add_argument("--burst-timeout", type=float, default=900, help="seconds to drain")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--role", choices=["profiled-serve"], help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--profile-timer", choices=["cpu", "wall"], help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is None:
        if os.geteuid() != 0:
            parser.error("needs root: a throwaway Postfix with its own configuration directory")
        for program in (SMTP_SOURCE, SMTP_SINK, "/usr/sbin/postfix"):
            if not os.access(program, os.X_OK):
                parser.error(f"{program} not found: make system-packages (Debian's postfix)")
        if min(args.warmup, args.sessions, *args.workers) < 1 or args.seconds <= 0:
            parser.error("--warmup, --sessions, --workers and --seconds must be > 0")
        if args.rounds < 0:
            parser.error("--rounds must be >= 0 (0: only --profile, --big, --burst)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "profiled-serve":
        return profiled_serve(Path(args.profile_out), args.profile_timer, args.rest)
    return run_interruptibly(lambda: orchestrate(args), "every process started was stopped")


if __name__ == "__main__":
    sys.exit(main())
