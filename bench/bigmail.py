"""One large protected message end to end, against a Postfix relay hop moving the same message.

    .venv/bin/python bench/bigmail.py                  # 5 rounds, 25 MiB attachment (~36 MB)
    .venv/bin/python bench/bigmail.py --rounds 9 --json out.json
    .venv/bin/python bench/bigmail.py --profile /tmp/big  # plus py-spy of one Sealgate round
    .venv/bin/python bench/bigmail.py --sealgate /tmp/old/.venv/bin/sealgate  # another build

What runs, all on 127.0.0.1, every port found by binding port 0:

- **Sink**: Postfix's ``smtp-sink`` (``-c`` counts the messages it took).
- **Postfix hop**: a throwaway Postfix (tests/support/postfix.py, relayhost mode,
  ``message_size_limit`` raised) whose relayhost is the sink: smtpd -> queue -> smtp -> sink.
- **Sealgate**: ``sealgate serve -c <generated toml>`` (one worker unless ``--workers``),
  upstream the sink, the baseline policy pack, ``smtp.max_message_size`` raised, the portal
  on a port of its own.
- **Message**: text body plus one attachment of ``--attachment`` random bytes (base64), a
  ``[secure]`` subject so that the baseline pack protects it for its one outside recipient.

After ``--warmup`` messages to each target (not counted: the first message into a fresh
Sealgate pays for imports and caches), each round sends the message once to each target
(alternating which goes first) from this process over a plain socket: connect, EHLO,
MAIL, RCPT, DATA, the message, ``.``. End to end is from connect until the sink counted
what the target owes it: the relayed message for Postfix, the notification for Sealgate
(whose 250 comes only after the notification went out; Postfix's 250 comes when the
message is queued). MB/s is the message's size on the wire over that time. CPU is the
user + system time of each target's processes over the round (/proc; the sink's and the
client's not counted): much less sensitive than MB/s to other work on a shared machine.

Memory: before each Sealgate round the serving process's peak RSS is reset
(``/proc/PID/clear_refs``, 5) and its RSS read; after the round, its peak (VmHWM) minus
that RSS, over the message size, is the growth (also measured for the warm-up messages:
``growth_first_x`` is a fresh process's first message).

``--profile DIR``: one more Sealgate round under ``py-spy record`` (all threads, idle
frames left out); the raw stacks are written to DIR and the top functions by own and by
total samples printed. Every process started is stopped at the end, also on error or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import median, memory, run_interruptibly  # noqa: E402
from relay import (  # noqa: E402
    HOST,
    SMTP_SINK,
    Managed,
    free_port,
    process_tree_cpu,
    sealgate_command,
    wait_ready,
)

from tests.support.postfix import Postfix  # noqa: E402

MB = 1_000_000
SEED = 20261212
RECIPIENT = "bob@example.net"
SENDER = "alice@example.org"


def build_message(attachment: int) -> bytes:
    """A message with a text body and one base64 attachment of ``attachment`` random bytes."""
    rng = random.Random(SEED)
    encoded = base64.encodebytes(rng.randbytes(attachment)).replace(b"\n", b"\r\n")
    head = (
        f"From: Alice Example <{SENDER}>\r\n"
        f"To: <{RECIPIENT}>\r\n"
        "Subject: [secure] The scans you asked for\r\n"
        "Date: Sat, 12 Dec 2026 10:00:00 +0100\r\n"
        f"Message-ID: <bigmail.{SEED}.000000@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="==bigmail=="\r\n'
        "\r\n"
        "--==bigmail==\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hello Bob,\r\nthe scans are attached.\r\n.a line that starts with a dot\r\n\r\nAlice\r\n"
        "--==bigmail==\r\n"
        "Content-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="scans.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode()
    return head + encoded + b"--==bigmail==--\r\n"


def numbered(wire: bytes, number: int) -> bytes:
    """``wire`` with its own Message-ID: a message sent twice would be a duplicate to Sealgate
    (the idempotency key), answered without a notification."""
    old = f"bigmail.{SEED}.000000@".encode()
    return wire.replace(old, f"bigmail.{SEED}.{number:06}@".encode(), 1)


def dot_stuffed(message: bytes) -> bytes:
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    return (b"." + stuffed if stuffed.startswith(b".") else stuffed) + b".\r\n"


def reply(sock: socket.socket, buffer: bytearray) -> bytes:
    """One SMTP reply (possibly multi-line); raises unless it is 2xx or 3xx."""
    while True:
        while b"\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed while waiting for a reply")
            buffer += chunk
        end = buffer.index(b"\r\n") + 2
        line = bytes(buffer[:end])
        del buffer[:end]
        if line[3:4] != b"-":
            if line[:1] not in (b"2", b"3"):
                raise RuntimeError(f"refused: {line!r}")
            return line


def send(port: int, wire: bytes) -> float:
    """Send one message; the seconds from connect to the reply after the data."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=120) as sock:
        buffer = bytearray()
        reply(sock, buffer)
        for command in (b"EHLO client.bench.example", f"MAIL FROM:<{SENDER}>".encode(),
                        f"RCPT TO:<{RECIPIENT}>".encode(), b"DATA"):  # fmt: skip
            sock.sendall(command + b"\r\n")
            reply(sock, buffer)
        sock.sendall(wire)
        reply(sock, buffer)
        answered = time.perf_counter() - started
        sock.sendall(b"QUIT\r\n")
    return answered


def wait_counted(sink: Managed, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sink.counter < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sink counted {sink.counter}, expected {count}")
        time.sleep(0.002)


def cpu_used(pid: int, before: dict[int, float]) -> float:
    """CPU seconds ``pid`` and its children used since ``before`` (Postfix: its master's
    daemons; Sealgate: the server, its workers and helpers)."""
    return sum(used - before.get(p, 0.0) for p, used in process_tree_cpu(pid).items())


def sealgate_config(workdir: Path, port: int, sink_port: int, size: int) -> Path:
    path = workdir / "sealgate.toml"
    portal = free_port()
    path.write_text(
        f"""# generated by bench/bigmail.py
[smtp]
listen = ["{HOST}:{port}"]
hostname = "sealgate.bench.example"
max_message_size = {size}

[upstream]
host = "{HOST}"
port = {sink_port}
helo_name = "sealgate.bench.example"

[loop]
secret_file = "{workdir / "loop.key"}"

[store]
directory = "{workdir / "var"}"

[log]
level = "warning"

[service]
shutdown_timeout = 5

[portal]
listen = "{HOST}:{portal}"
url = "http://{HOST}:{portal}"
"""
    )
    return path


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="sealgate-bigmail-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        self.procs: list[Managed] = []
        self.postfix: Postfix | None = None
        self.sent = 0

    def say(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.postfix is not None:
            self.postfix.close()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self, name: str, argv: list[str], capture_stdout: bool = False) -> Managed:
        proc = Managed(name, argv, self.workdir, capture_stdout)
        self.procs.append(proc)
        return proc

    def start_all(self, size: int) -> None:
        self.sink_port = free_port()
        argv = [SMTP_SINK, "-c", "-u", "nobody", f"{HOST}:{self.sink_port}", "64"]
        self.sink = self.start("sink", argv, capture_stdout=True)
        wait_ready(self.sink, self.sink_port)
        self.postfix = Postfix("bigmail", "postfix.bench.example")
        limit = str(size * 2)
        self.postfix.start_relayhost(
            self.sink_port,
            settings={
                "message_size_limit": limit,
                "mailbox_size_limit": limit,
                "queue_run_delay": "1s",
            },  # fmt: skip
        )
        self.sealgate_port = free_port()
        config = sealgate_config(self.workdir, self.sealgate_port, self.sink_port, size * 2)
        command = [self.args.sealgate] if self.args.sealgate else sealgate_command()
        argv = [*command, "serve", "-c", str(config)]
        if self.args.workers > 1:
            argv += ["--workers", str(self.args.workers)]
        self.sealgate = self.start("sealgate", argv)
        workers = self.args.workers if self.args.workers > 1 else 0
        wait_ready(self.sealgate, self.sealgate_port, workers=workers)

    def serving_pid(self) -> int:
        """The process that takes the SMTP connection (the worker, with several)."""
        pid = self.sealgate.proc.pid
        if self.args.workers == 1:
            return pid
        raise RuntimeError("memory figures need --workers 1")

    def round_postfix(self, wire: bytes) -> dict[str, float]:
        assert self.postfix is not None and self.postfix.master_pid is not None
        self.sent += 1
        wire = numbered(wire, self.sent)
        before = self.sink.counter
        cpu = process_tree_cpu(self.postfix.master_pid)
        started = time.perf_counter()
        answered = send(self.postfix.smtpd_port, wire)
        wait_counted(self.sink, before + 1)
        end_to_end = time.perf_counter() - started
        return {
            "answered_s": answered,
            "end_to_end_s": end_to_end,
            "cpu_s": cpu_used(self.postfix.master_pid, cpu),
        }

    def round_sealgate(self, wire: bytes) -> dict[str, float]:
        self.sent += 1
        wire = numbered(wire, self.sent)
        pid = self.serving_pid()
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        rss = memory(pid)[0]
        before = self.sink.counter
        cpu = process_tree_cpu(self.sealgate.proc.pid)
        started = time.perf_counter()
        answered = send(self.sealgate_port, wire)
        wait_counted(self.sink, before + 1)
        end_to_end = time.perf_counter() - started
        peak = memory(pid)[1]
        return {
            "answered_s": answered,
            "end_to_end_s": end_to_end,
            "cpu_s": cpu_used(self.sealgate.proc.pid, cpu),
            "rss_before": rss,
            "peak": peak,
            "growth": peak - rss,
        }

    def profile(self, wire: bytes, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        raw = directory / "sealgate.pyspy.txt"
        spy = Path(sys.executable).parent / "py-spy"
        recorder = subprocess.Popen(
            [str(spy), "record", "--pid", str(self.serving_pid()), "--rate", "1000",
             "--threads", "--format", "raw", "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(1.0)  # py-spy attaches
            result = self.round_sealgate(wire)
        finally:
            recorder.send_signal(2)
            recorder.wait(30)
        return {"round": result, "top": top_functions(raw), "stacks": str(raw)}

    def run(self) -> dict[str, Any]:
        message = build_message(self.args.attachment)
        wire = dot_stuffed(message)
        self.say(f"message: {len(message):,} bytes ({len(wire):,} on the wire)")
        self.start_all(len(wire))
        warmup = []
        for _ in range(self.args.warmup):  # first messages: imports, caches, the key pool
            self.round_postfix(wire)
            warmup.append(self.round_sealgate(wire))
        rounds: dict[str, list[dict[str, float]]] = {"postfix": [], "sealgate": []}
        for number in range(self.args.rounds):
            order = ["postfix", "sealgate"] if number % 2 == 0 else ["sealgate", "postfix"]
            for name in order:
                figures = (self.round_postfix if name == "postfix" else self.round_sealgate)(wire)
                rounds[name].append(figures)
                extra = ""
                if "growth" in figures:
                    extra = f"  memory growth {figures['growth'] / len(message):.2f}x"
                self.say(
                    f"round {number + 1} {name:9} answered {figures['answered_s']:.3f} s, end to "
                    f"end {figures['end_to_end_s']:.3f} s = "
                    f"{len(wire) / MB / figures['end_to_end_s']:.1f} MB/s, "
                    f"CPU {figures['cpu_s']:.2f} s{extra}"
                )
        summary = self.summary(rounds, warmup, len(wire), len(message))
        if self.args.profile:
            summary["profile"] = self.profile(wire, Path(self.args.profile))
            self.say("py-spy, Sealgate round (samples: own / total):")
            for line in summary["profile"]["top"]:
                self.say("  " + line)
        return summary

    def summary(
        self,
        rounds: dict[str, list[dict[str, float]]],
        warmup: list[dict[str, float]],
        wire: int,
        size: int,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "wire_bytes": wire, "message_bytes": size, "rounds": rounds, "warmup": warmup,
        }  # fmt: skip
        for name, runs in rounds.items():
            seconds = median(r["end_to_end_s"] for r in runs)
            result[name] = {"end_to_end_s": seconds, "mb_s": wire / MB / seconds,
                            "answered_s": median(r["answered_s"] for r in runs),
                            "cpu_s": median(r["cpu_s"] for r in runs)}  # fmt: skip
        growth = [r["growth"] / size for r in rounds["sealgate"]]
        first = (warmup or rounds["sealgate"])[0]["growth"] / size
        result["sealgate"]["growth_first_x"] = first
        result["sealgate"]["growth_median_x"] = median(growth)
        result["sealgate"]["growth_max_x"] = max(growth)
        result["ratio"] = result["sealgate"]["mb_s"] / result["postfix"]["mb_s"]
        self.say(
            f"median end to end: Postfix hop {result['postfix']['mb_s']:.1f} MB/s "
            f"({result['postfix']['end_to_end_s']:.3f} s), Sealgate protected "
            f"{result['sealgate']['mb_s']:.1f} MB/s ({result['sealgate']['end_to_end_s']:.3f} s), "
            f"ratio {result['ratio']:.2f}"
        )
        result["cpu_ratio"] = result["postfix"]["cpu_s"] / result["sealgate"]["cpu_s"]
        self.say(
            f"median CPU seconds per message: Postfix hop {result['postfix']['cpu_s']:.3f}, "
            f"Sealgate {result['sealgate']['cpu_s']:.3f} (Postfix / Sealgate "
            f"{result['cpu_ratio']:.2f})"
        )
        self.say(
            f"Sealgate memory growth / message size: first message {first:.2f}x, median "
            f"{median(growth):.2f}x, max {max(growth):.2f}x"
        )
        return result


def top_functions(raw: Path, count: int = 25) -> list[str]:
    """The functions with the most samples in py-spy's raw (collapsed) stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames or frames[0].startswith("thread ") and len(frames) == 1:
            continue
        n = int(number)
        samples += n
        own[frames[-1]] += n
        for frame in dict.fromkeys(frames):
            total[frame] += n
    lines = [f"{samples} samples"]
    lines += [f"own {n:6}  {name}" for name, n in own.most_common(count)]
    lines += [f"total {n:6}  {name}" for name, n in total.most_common(count * 2)]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attachment", type=int, default=25 * 1024 * 1024,
                        help="attachment size in bytes before base64 (default 25 MiB)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="messages sent to each target before the rounds (not counted)",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", metavar="DIR", help="py-spy one more Sealgate round")
    parser.add_argument(
        "--sealgate",
        metavar="PATH",
        help="the sealgate command to run (another build, e.g. of an older commit in its own "
        "venv); default: this venv's",
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def orchestrate() -> int:
        bench = Bench(args)
        try:
            result = bench.run()
        finally:
            bench.close()
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0

    with contextlib.suppress(BrokenPipeError):
        return run_interruptibly(orchestrate, "every process was stopped")
    return 1


if __name__ == "__main__":
    sys.exit(main())
