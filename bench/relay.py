"""Relay benchmark: Sealgate against a minimal aiosmtpd relay, through the same sink.

    .venv/bin/python bench/relay.py                  # default run (make bench-relay), ~1 minute
    .venv/bin/python bench/relay.py --workers 2      # Sealgate with 2 workers
    .venv/bin/python bench/relay.py --scaling        # Sealgate workers 1 vs 2, and the ratio
    .venv/bin/python bench/relay.py --json           # machine-readable result on stdout
    .venv/bin/python bench/relay.py --verify         # own sink that checks every message's bytes
    .venv/bin/python bench/relay.py --profile DIR    # extra cProfile'd pass of both relays

Processes (all on loopback, ports found by binding port 0, all stopped at the end):

- the sink: Postfix's ``smtp-sink`` (C, counts messages with ``-c``) when installed,
  else (or with ``--verify``) an aiosmtpd sink run from this file;
- the baseline: an aiosmtpd server run from this file whose ``handle_DATA`` relays
  the message with aiosmtplib over a small pool of persistent upstream connections;
- Sealgate: ``sealgate serve -c <generated toml>`` (``--workers N`` for several);
- the load generator: a separate process (asyncio, raw sockets), one run per measurement.

Each measurement opens C connections, sends a warm-up on them, then N messages
(each connection takes the next message until N are sent, reusing its
connection), timing each from MAIL to the 250 after the data. The targets are
measured interleaved, ``--repeats`` times, and the medians are reported. A run
counts only if the client got a 250 for every message and the sink counted
every one of them; otherwise the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from benchlib import run_interruptibly, stop_process_group

HOST = "127.0.0.1"
SENDER = "bench@example.org"
RECIPIENT = "rcpt@example.net"
SMTP_SINK = "/usr/sbin/smtp-sink"
HERE = Path(__file__).resolve()
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A warning or error line of Sealgate's log (text format), or a traceback.
LOG_PROBLEM = re.compile(r"^(\S+Z (warning|error|critical) |Traceback)")


# --------------------------------------------------------------------------- messages


def message_body(size: int) -> bytes:
    """A deterministic plain-text body of about ``size`` bytes, CRLF lines, no leading dots."""
    words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    line_length = 76
    lines = []
    total = 0
    i = 0
    while total < max(size, 2):
        start = (i * 7) % len(words)
        line = (words[start:] + words)[: min(line_length, max(size - total - 2, 0))]
        lines.append(line + b"\r\n")
        total += len(line) + 2
        i += 1
    return b"".join(lines)


def message_header(run: str, seq: int) -> bytes:
    return (
        f"From: Bench <{SENDER}>\r\n"
        f"To: <{RECIPIENT}>\r\n"
        f"Subject: relay benchmark {seq}\r\n"
        f"Message-ID: <{run}.{seq}@bench.example>\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode("ascii")


HEADER_ESTIMATE = 230  # bytes of message_header(), so that header + body is about --size


def body_for(size: int) -> bytes:
    return message_body(max(size - HEADER_ESTIMATE, 64))


# --------------------------------------------------------------------------- client


class SMTPFailure(Exception):
    def __init__(self, step: str, code: int, text: bytes) -> None:
        super().__init__(f"{step}: {code} {text[:80].decode('ascii', 'replace')}")
        self.step = step
        self.code = code


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines).rstrip()


async def expect(reader: asyncio.StreamReader, step: str, code: int) -> None:
    got, text = await read_reply(reader)
    if got != code:
        raise SMTPFailure(step, got, text)


@dataclass
class ClientStats:
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failures[what] = self.failures.get(what, 0) + 1


async def client_main(args: argparse.Namespace) -> dict[str, Any]:
    run = f"{os.getpid()}.{int(time.time())}"
    body = body_for(args.size)
    tail = body + b".\r\n"
    mail = f"MAIL FROM:<{SENDER}> SIZE={args.size}\r\n".encode()
    rcpt = f"RCPT TO:<{RECIPIENT}>\r\n".encode()
    seq = 0
    stats = {"warmup": ClientStats(), "measured": ClientStats()}

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(args.host, args.port)
        await expect(reader, "greeting", 220)
        writer.write(b"EHLO bench-client.example\r\n")
        await expect(reader, "EHLO", 250)
        return reader, writer

    conns = await asyncio.gather(*(connect() for _ in range(args.concurrency)))

    async def worker(index: int, phase: str, budget: list[int]) -> None:
        nonlocal seq
        reader, writer = conns[index]
        st = stats[phase]
        while budget[0] > 0:
            budget[0] -= 1
            seq += 1
            header = message_header(run, seq)
            started = time.perf_counter()
            try:
                writer.write(mail)
                await expect(reader, "MAIL", 250)
                writer.write(rcpt)
                await expect(reader, "RCPT", 250)
                writer.write(b"DATA\r\n")
                await expect(reader, "DATA", 354)
                writer.writelines((header, tail))
                await expect(reader, "end of data", 250)
            except SMTPFailure as failure:
                st.fail(f"{failure.step} {failure.code}")
                try:
                    writer.write(b"RSET\r\n")
                    await read_reply(reader)
                except (OSError, ConnectionError):
                    conns[index] = await connect()
                    reader, writer = conns[index]
                continue
            except (OSError, ConnectionError) as error:
                st.fail(f"connection: {error.__class__.__name__}")
                conns[index] = await connect()
                reader, writer = conns[index]
                continue
            st.latencies.append(time.perf_counter() - started)
            st.ok += 1

    cpu0 = time.process_time()
    warmup = [args.warmup]
    await asyncio.gather(*(worker(i, "warmup", warmup) for i in range(args.concurrency)))
    measured = [args.count]
    began = time.perf_counter()
    await asyncio.gather(*(worker(i, "measured", measured) for i in range(args.concurrency)))
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu0
    for reader, writer in conns:
        with contextlib.suppress(OSError, ConnectionError):
            writer.write(b"QUIT\r\n")
            await read_reply(reader)
            writer.close()
    m, w = stats["measured"], stats["warmup"]
    lat = sorted(m.latencies) or [0.0]
    failures: dict[str, int] = {}
    for st in (w, m):
        for key, value in st.failures.items():
            failures[key] = failures.get(key, 0) + value
    return {
        "attempted": args.warmup + args.count,
        "ok": w.ok + m.ok,
        "failed": sum(failures.values()),
        "failures": failures,
        "measured": args.count,
        "measured_ok": m.ok,
        "elapsed_s": elapsed,
        "msgs_per_s": m.ok / elapsed if elapsed else 0.0,
        "p50_ms": percentile(lat, 50) * 1000,
        "p90_ms": percentile(lat, 90) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": lat[-1] * 1000,
        "message_bytes": len(message_header(run, 1)) + len(body),
        "client_cpu_s": cpu,
    }


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * pct / 100
    low = int(k)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (k - low)


# --------------------------------------------------------------------------- servers


def _serve_until_signal(start: Any) -> None:
    """Run ``start()`` (returning an asyncio.Server) until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        server = await start()
        await stop.wait()
        server.close()

    asyncio.run(main())


class BaselineRelay:
    """The reference: aiosmtpd in, aiosmtplib out over a few persistent connections."""

    def __init__(self, host: str, port: int, pool_size: int) -> None:
        import aiosmtplib

        self.aiosmtplib = aiosmtplib
        self.host, self.port, self.pool_size = host, port, pool_size
        self.idle: asyncio.Queue[Any] = asyncio.Queue()
        self.opened = 0

    async def _acquire(self) -> Any:
        """An idle connection, a new one while fewer than ``pool_size`` are open, or wait.

        The queue holds idle connections, and None for a slot whose connection
        was lost, so that a waiter opens a replacement instead of waiting forever.
        """
        if self.idle.empty() and self.opened < self.pool_size:
            self.opened += 1
            client = None
        else:
            client = await self.idle.get()
        if client is None:
            client = self.aiosmtplib.SMTP(
                hostname=self.host, port=self.port, start_tls=False, local_hostname="baseline"
            )
            try:
                await client.connect()
            except BaseException:
                self.idle.put_nowait(None)
                raise
        return client

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        try:
            client = await self._acquire()
        except (OSError, self.aiosmtplib.SMTPException):
            return "451 4.4.1 upstream unreachable"
        try:
            await client.sendmail(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)
        except self.aiosmtplib.SMTPResponseException as error:
            # Refused by the upstream: the connection itself is still good.
            self.idle.put_nowait(client)
            return f"451 4.4.2 upstream said {error.code}"
        except (OSError, self.aiosmtplib.SMTPException) as error:
            client.close()
            self.idle.put_nowait(None)
            return f"451 4.4.2 upstream failed: {error.__class__.__name__}"
        self.idle.put_nowait(client)
        return "250 2.0.0 Ok"


def baseline_main(args: argparse.Namespace) -> None:
    from aiosmtpd.smtp import SMTP

    async def start() -> asyncio.Server:
        handler = BaselineRelay(HOST, args.upstream_port, args.pool)
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: SMTP(handler, decode_data=False, enable_SMTPUTF8=True, hostname="baseline"),
            host=HOST,
            port=args.port,
        )

    _serve_until_signal(start)


class CountingSink:
    """A Python sink; prints smtp-sink's ``mesg=N`` counter, with content checks in verify mode."""

    def __init__(self, size: int, verify: bool) -> None:
        self.body = body_for(size)
        self.verify = verify
        self.count = 0
        self.bad = 0
        self.ids: set[bytes] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        if self.verify:
            data: bytes = envelope.original_content
            start = data.find(b"\r\nMessage-ID: <")
            end = data.find(b">", start)
            msgid = data[start + 15 : end] if start >= 0 else b""
            if not data.endswith(self.body) or not msgid or msgid in self.ids:
                self.bad += 1
            self.ids.add(msgid)
        sys.stdout.write(f"mesg={self.count} bad={self.bad}\r")
        sys.stdout.flush()
        return "250 2.0.0 Ok: sunk"


def sink_main(args: argparse.Namespace) -> None:
    from aiosmtpd.smtp import SMTP

    async def start() -> asyncio.Server:
        handler = CountingSink(args.size, args.verify)
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: SMTP(handler, decode_data=False, enable_SMTPUTF8=True, hostname="sink"),
            host=HOST,
            port=args.port,
        )

    _serve_until_signal(start)


# --------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:port (Sealgate's workers share one)."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            parts = line.split()
            if parts[1] == wanted and parts[3] == "0A":
                count += 1
    return count


def serving_workers(supervisor: int, port: int) -> int:
    """Workers of ``supervisor`` accepting on 127.0.0.1:port. They all inherit the one
    listening socket at start; one serves once its event loop watches it (the socket's
    descriptor is in the loop's epoll set, /proc/PID/fdinfo)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    inodes = {f"socket:[{row[9]}]" for row in rows if row[1] == wanted and row[3] == "0A"}
    serving = 0
    for pid in process_tree_cpu(supervisor):
        if pid == supervisor:
            continue
        try:
            fds = {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            listening = {fd for fd, target in fds.items() if target in inodes}
            watched = {
                line.split()[1]
                for fd, target in fds.items()
                if target == "anon_inode:[eventpoll]"
                for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                if line.startswith("tfd:")
            }
        except OSError:  # gone meanwhile
            continue
        serving += bool(listening & watched)
    return serving


def process_tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by ``pid`` and by each of its children."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry))
    used = {}
    for p in pids:
        try:
            fields_ = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[p] = (int(fields_[11]) + int(fields_[12])) / CLK_TCK
    return used


class Managed:
    """A process we started: in its own session, stopped by PID (and its group) at the end."""

    def __init__(self, name: str, argv: list[str], workdir: Path, capture_stdout: bool = False):
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.counter = 0
        self.bad = 0
        if capture_stdout:
            threading.Thread(target=self._read_counters, daemon=True).start()

    def _read_counters(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            buffer += chunk
            *records, buffer = buffer.split(b"\r")
            for record in records[-1:]:
                for item in record.split():
                    key, _, value = item.partition(b"=")
                    if key == b"mesg":
                        self.counter = int(value)
                    elif key == b"bad":
                        self.bad = int(value)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10) -> None:
        stop_process_group(self.proc, timeout)
        self._log.close()


def wait_ready(proc: Managed, port: int, workers: int = 0, timeout: float = 30) -> None:
    """Wait for a greeting on ``port`` and, with ``workers``, for that many Sealgate workers
    to accept from the supervisor's listening socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        if listening_sockets(port) and (
            not workers or serving_workers(proc.proc.pid, port) >= workers
        ):
            try:
                with socket.create_connection((HOST, port), timeout=2) as sock:
                    if sock.recv(512).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready on port {port} after {timeout}s:\n{proc.log_tail()}")


def sealgate_command() -> list[str]:
    script = Path(sys.executable).parent / "sealgate"
    if script.exists():
        return [str(script)]
    found = shutil.which("sealgate")
    return [found] if found else [sys.executable, "-m", "gateway"]


def sealgate_config(workdir: Path, name: str, port: int, sink_port: int, concurrency: int) -> Path:
    path = workdir / f"{name}.toml"
    path.write_text(
        f"""# generated by bench/relay.py
[smtp]
listen = ["{HOST}:{port}"]
hostname = "sealgate.bench.example"
max_connections = {max(200, concurrency * 2)}

[upstream]
host = "{HOST}"
port = {sink_port}
helo_name = "sealgate.bench.example"
max_idle_connections = {max(8, concurrency)}

[loop]
secret_file = "{workdir / "loop.key"}"

[log]
level = "warning"

[service]
shutdown_timeout = 5

# This bench measures the relay; the portal has bench/portal.py (and would need a port).
[portal]
enabled = false
"""
    )
    return path


@dataclass
class Target:
    name: str
    port: int
    proc: Managed
    runs: list[dict[str, Any]] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="sealgate-bench-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        self.procs: list[Managed] = []
        self.client: subprocess.Popen[bytes] | None = None
        self.sink: Managed | None = None
        self.sink_kind = ""
        self.sink_port = 0

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(text, file=sys.stderr if self.args.json else sys.stdout, flush=True)

    def start(self, name: str, argv: list[str], capture_stdout: bool = False) -> Managed:
        proc = Managed(name, argv, self.workdir, capture_stdout)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        if self.client is not None and self.client.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.client.pid, signal.SIGKILL)
            self.client.wait()
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- processes

    def start_sink(self) -> None:
        self.sink_port = free_port()
        use_c = self.args.sink in ("auto", "smtp-sink") and not self.args.verify
        if use_c and not os.access(SMTP_SINK, os.X_OK):
            if self.args.sink == "smtp-sink":
                raise RuntimeError(f"{SMTP_SINK} not found (apt-get install postfix)")
            use_c = False
        if use_c:
            argv = [SMTP_SINK, "-c", "-m", "1024"]
            if os.geteuid() == 0:
                argv += ["-u", "nobody"]
            argv += [f"{HOST}:{self.sink_port}", "1024"]
            self.sink_kind = "smtp-sink"
        else:
            argv = self.self_argv("sink", "--port", str(self.sink_port), "--size",
                                  str(self.args.size))  # fmt: skip
            if self.args.verify:
                argv.append("--verify")
            self.sink_kind = "aiosmtpd sink" + (" (verifying content)" if self.args.verify else "")
        self.sink = self.start("sink", argv, capture_stdout=True)
        wait_ready(self.sink, self.sink_port)

    def self_argv(self, role: str, *rest: str, profile: Path | None = None) -> list[str]:
        prefix = [sys.executable]
        if profile is not None:
            prefix += ["-m", "cProfile", "-o", str(profile)]
        return [*prefix, str(HERE), "--role", role, *rest]

    def start_baseline(self, name: str = "baseline", profile: Path | None = None) -> Target:
        port = free_port()
        argv = self.self_argv(
            "baseline", "--port", str(port), "--upstream-port", str(self.sink_port),
            "--pool", str(self.args.baseline_pool), profile=profile,
        )  # fmt: skip
        proc = self.start(name, argv)
        wait_ready(proc, port)
        return Target(name, port, proc)

    def start_sealgate(self, workers: int, name: str, profile: Path | None = None) -> Target:
        port = free_port()
        config = sealgate_config(self.workdir, name, port, self.sink_port, self.args.concurrency)
        if profile is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "gateway"]
        else:
            argv = sealgate_command()
        argv += ["serve", "-c", str(config)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        proc = self.start(name, argv)
        wait_ready(proc, port, workers=workers)
        return Target(name, port, proc)

    # -- one measurement

    def measure(self, target: Target, count: int, warmup: int) -> dict[str, Any]:
        assert self.sink is not None
        before = self.sink.counter
        cpu_before = process_tree_cpu(target.proc.proc.pid)
        argv = self.self_argv(
            "client", "--port", str(target.port), "--count", str(count),
            "--warmup", str(warmup), "--concurrency", str(self.args.concurrency),
            "--size", str(self.args.size),
        )  # fmt: skip
        self.client = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        limit = 120 + count / 20
        try:
            out, err = self.client.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(self.client.pid, signal.SIGKILL)
            self.client.wait()
            raise RuntimeError(
                f"client against {target.name} took longer than {limit:.0f}s"
            ) from None
        finally:
            cpu_after = process_tree_cpu(target.proc.proc.pid)
        if self.client.returncode != 0:
            raise RuntimeError(f"client against {target.name} failed:\n{err.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(out)
        deadline = time.monotonic() + 5
        while self.sink.counter - before < result["ok"] and time.monotonic() < deadline:
            time.sleep(0.02)
        result["sink_counted"] = self.sink.counter - before
        spent = {p: cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after}
        result["server_cpu_s"] = sum(spent.values())
        result["server_cpu_ms_per_msg"] = (
            result["server_cpu_s"] * 1000 / result["attempted"] if result["attempted"] else 0
        )
        if len(spent) > 1:
            # Supervisor first, then each worker: shows how the load spread over them.
            root = target.proc.proc.pid
            result["server_cpu_s_per_process"] = [round(spent.get(root, 0.0), 2)] + [
                round(spent[p], 2) for p in sorted(spent) if p != root
            ]
        result["verified"] = (
            result["failed"] == 0
            and result["ok"] == result["attempted"]
            and result["sink_counted"] == result["ok"]
            and self.sink.bad == 0
        )
        return result

    def run_rounds(self, targets: list[Target]) -> None:
        args = self.args
        for rnd in range(1, args.repeats + 1):
            order = list(reversed(targets)) if args.alternate and rnd % 2 == 0 else targets
            for target in order:
                result = self.measure(target, args.count, args.warmup)
                result["round"] = rnd
                target.runs.append(result)
                flag = "" if result["verified"] else "  <-- NOT VERIFIED"
                if "server_cpu_s_per_process" in result:
                    flag = f"  cpu s per process {result['server_cpu_s_per_process']}" + flag
                self.say(
                    f"  round {rnd} {target.name:<12} {result['msgs_per_s']:7.1f} msg/s  "
                    f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                    f"server cpu {result['server_cpu_ms_per_msg']:.2f} ms/msg  "
                    f"client cpu {result['client_cpu_s']:.1f} s  "
                    f"sink +{result['sink_counted']}{flag}"
                )

    # -- profiling

    def profile(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {}
        for kind in ("baseline", "sealgate"):
            path = directory / f"{kind}.prof"
            if kind == "baseline":
                target = self.start_baseline("baseline-prof", profile=path)
            else:
                target = self.start_sealgate(1, "sealgate-prof", profile=path)
            result = self.measure(target, self.args.count, self.args.warmup)
            target.proc.stop(timeout=30)
            self.procs.remove(target.proc)
            report[kind] = {"profile": str(path), "msgs_per_s": result["msgs_per_s"]}
            self.say(f"\ncProfile of {kind} ({result['msgs_per_s']:.0f} msg/s under the "
                     f"profiler), {path}: top functions by own time")  # fmt: skip
            if path.exists() and not self.args.json:
                stats = pstats.Stats(str(path))
                stats.sort_stats("tottime").print_stats(self.args.profile_top)
        return report


def summarize(target: Target) -> dict[str, Any]:
    runs = target.runs

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    return {
        "msgs_per_s": med("msgs_per_s"),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "server_cpu_ms_per_msg": med("server_cpu_ms_per_msg"),
        "runs_msgs_per_s": [round(r["msgs_per_s"], 1) for r in runs],
    }


def ratio_of(a: float, b: float) -> float:
    return a / b if b else 0.0


def orchestrate(args: argparse.Namespace) -> int:
    bench = Bench(args)
    say = bench.say
    report: dict[str, Any] = {
        "messages": args.count,
        "warmup": args.warmup,
        "size": args.size,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        bench.start_sink()
        report["sink"] = bench.sink_kind
        targets: list[Target] = []
        if args.scaling:
            targets.append(bench.start_sealgate(1, "sealgate-w1"))
            targets.append(bench.start_sealgate(2, "sealgate-w2"))
        else:
            targets.append(bench.start_baseline())
            targets.append(bench.start_sealgate(args.workers, "sealgate"))
            report["workers"] = args.workers
            report["baseline_pool"] = args.baseline_pool
        say(
            f"relay benchmark: {args.count} messages of {args.size} bytes "
            f"(+{args.warmup} warm-up), {args.concurrency} connections, "
            f"{args.repeats} rounds, sink: {bench.sink_kind}"
            + ("" if args.scaling else f", sealgate workers: {args.workers}")
            + f"; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )
        bench.run_rounds(targets)
        summary = {t.name: summarize(t) for t in targets}
        report["summary"] = summary
        report["runs"] = {t.name: t.runs for t in targets}
        verified = all(r["verified"] for t in targets for r in t.runs)
        total = sum(r["attempted"] for t in targets for r in t.runs)
        report["verified"] = verified
        base, sg = targets[0].name, targets[1].name
        ratio = ratio_of(summary[sg]["msgs_per_s"], summary[base]["msgs_per_s"])
        per_round = [
            ratio_of(s["msgs_per_s"], b["msgs_per_s"])
            for b, s in zip(targets[0].runs, targets[1].runs, strict=True)
        ]
        key = "scaling_w2_over_w1" if args.scaling else "ratio_sealgate_over_baseline"
        report[key] = ratio
        report[key + "_per_round"] = per_round
        # Server CPU per message: much less sensitive to a noisy machine than throughput.
        cpu_ratio = ratio_of(
            summary[sg]["server_cpu_ms_per_msg"], summary[base]["server_cpu_ms_per_msg"]
        )
        report["cpu_per_message_ratio"] = cpu_ratio
        for t in targets:
            if t.name.startswith("sealgate"):
                report.setdefault("sealgate_log_lines", {})[t.name] = sum(
                    1
                    for line in t.proc.log_path.read_text(errors="replace").splitlines()
                    if LOG_PROBLEM.match(line)
                )

        say("")
        say(f"{'median of ' + str(args.repeats):<14} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'cpu ms/msg':>11}   runs (msg/s)")  # fmt: skip
        for t in targets:
            s = summary[t.name]
            say(f"{t.name:<14} {s['msgs_per_s']:8.1f} {s['p50_ms']:8.1f} {s['p99_ms']:8.1f} "
                f"{s['server_cpu_ms_per_msg']:11.2f}   {s['runs_msgs_per_s']}")  # fmt: skip
        rounds = " ".join(f"{r:.2f}" for r in per_round)
        if args.scaling:
            say(f"scaling: workers 2 / workers 1 throughput = {ratio:.2f} (per round: {rounds})")
        else:
            say(f"ratio sealgate/baseline throughput = {ratio:.2f} (target >= 0.85; per round: "
                f"{rounds})")  # fmt: skip
            say(f"server CPU per message, sealgate/baseline = {cpu_ratio:.2f}")
        if verified:
            say(f"verified: all {total} messages got 250 and were counted by the sink")
        else:
            say("NOT VERIFIED: failures or missing messages, see the rounds above")
            for t in targets:
                for r in t.runs:
                    if not r["verified"]:
                        say(f"  {t.name} round {r['round']}: ok {r['ok']}/{r['attempted']}, "
                            f"sink {r['sink_counted']}, failures {r['failures']}")  # fmt: skip
        for name, lines in report.get("sealgate_log_lines", {}).items():
            if lines:
                proc = next(t.proc for t in targets if t.name == name)
                say(f"note: {name} logged {lines} warning/error lines; the log ends with:\n"
                    f"{proc.log_tail(5)}")  # fmt: skip

        if args.profile:
            report["profile"] = bench.profile(Path(args.profile))
        if args.json:
            print(json.dumps(report, indent=2))
        if not verified:
            return 1
        if args.min_ratio is not None and ratio < args.min_ratio:
            say(f"ratio {ratio:.2f} is below --min-ratio {args.min_ratio}")
            return 1
        return 0
    finally:
        bench.stop_all()


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput and latency of Sealgate against a minimal aiosmtpd relay.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-n", "--count", type=int, default=5000, help="measured messages per run")
    parser.add_argument("-s", "--size", type=int, default=10240, help="message size in bytes")
    parser.add_argument("-c", "--concurrency", type=int, default=20, help="client connections")
    parser.add_argument("-r", "--repeats", type=int, default=5, help="rounds per target")
    parser.add_argument("--warmup", type=int, default=400, help="warm-up messages per run")
    parser.add_argument("--workers", type=int, default=1, help="Sealgate worker processes")
    parser.add_argument(
        "--scaling", action="store_true", help="measure Sealgate with 1 and 2 workers instead"
    )
    parser.add_argument(
        "--baseline-pool",
        type=int,
        default=0,
        help="upstream connections of the baseline; 0: as many as --concurrency, which is what "
        "Sealgate's pool ends up with (a smaller pool makes the baseline queue for connections "
        "and cost more CPU per message, i.e. a weaker reference)",
    )
    parser.add_argument(
        "--sink", choices=["auto", "smtp-sink", "python"], default="auto",
        help="auto: Postfix's smtp-sink when installed, else an aiosmtpd sink",
    )  # fmt: skip
    parser.add_argument(
        "--verify", action="store_true",
        help="use the Python sink and check every message's body and Message-ID",
    )  # fmt: skip
    parser.add_argument(
        "--alternate", action=argparse.BooleanOptionalAction, default=True,
        help="reverse the target order every other round (A B, B A, A B, ...)",
    )  # fmt: skip
    parser.add_argument("--profile", metavar="DIR", help="also cProfile both relays, into DIR")
    parser.add_argument("--profile-top", type=int, default=25, help="functions shown per profile")
    parser.add_argument("--min-ratio", type=float, help="exit 1 if the ratio is below this")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    # Internal: the roles this file plays in its child processes.
    parser.add_argument("--role", choices=["client", "baseline", "sink"], help=argparse.SUPPRESS)
    parser.add_argument("--host", default=HOST, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count < 1 or args.concurrency < 1 or args.repeats < 1 or args.size < 100:
        parser.error("--count, --concurrency and --repeats must be >= 1, --size >= 100")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.baseline_pool <= 0:
        args.baseline_pool = args.concurrency
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "client":
        print(json.dumps(asyncio.run(client_main(args))))
        return 0
    if args.role == "baseline":
        baseline_main(args)
        return 0
    if args.role == "sink":
        sink_main(args)
        return 0

    return run_interruptibly(lambda: orchestrate(args), "every process started was stopped")


if __name__ == "__main__":
    sys.exit(main())
