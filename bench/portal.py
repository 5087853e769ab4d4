"""Portal benchmark: the recipient portal's endpoints under load, against baselines run alongside.

    .venv/bin/python bench/portal.py                  # default run, about 60 s on 2 cores
    .venv/bin/python bench/portal.py -c 50            # 50 concurrent clients
    .venv/bin/python bench/portal.py --seconds 3      # longer rounds
    .venv/bin/python bench/portal.py -n 500           # 500 requests per target and round
    .venv/bin/python bench/portal.py --no-browser     # the HTTP part only
    .venv/bin/python bench/portal.py --json out.json  # the figures as JSON as well

Processes, all on 127.0.0.1 with ports found by binding port 0, all stopped at the end
(also on error, Ctrl-C or SIGTERM):

- the upstream MTA: the test suite's aiosmtpd sink (tests/support/sink.py), in a thread of
  this process; it receives the notifications and the code mails;
- Sealgate: ``Gateway(cfg, None, with_outbox=False)`` started in a child process (SMTP
  intake, pipeline and the portal on uvicorn, as ``sealgate serve`` runs them, its portal
  socket as ``gateway.service._bind_portal`` makes it), SQLite store;
- the baseline server: a plain Starlette app on uvicorn in another child process (same
  event loop, same HTTP implementation, TCP_NODELAY as ``uvicorn.run`` gets it):
  ``GET /healthz`` and ``GET /blob/...``, a ``FileResponse`` of the very blob files the
  portal serves;
- the load: N clients (``-c``, default 20), each an ``httpx.AsyncClient`` with its own
  cookies and one keep-alive connection per server, in this process;
- the browser: Debian's chromium, headless, driven by Playwright (never ``playwright
  install``), as tests/support/browser.py launches it.

Envelopes, sealed by the gateway from mail sent to it over SMTP: one message to 4 x N guest
readers (the verify targets), one with a 1 MB attachment to one reader (the fetch targets;
each client verifies once and reads with its own session), one with a 25 MB attachment (the
browser). The throttles are set so that nothing locks: ``backoff_seconds = 0``,
``link_attempts = 1000`` and ``client_attempts = 10000`` (the largest values the
configuration accepts), and every client sends its wrong codes from its own address through
``X-Forwarded-For`` (127.0.0.1 is a trusted proxy), a new one every 9,000 attempts.
One-time codes for the successful verifications are issued ahead of each batch with the
portal's own ``CodeBook.issue`` on the same database (the mail path is not measured).

Targets, each for ``--seconds`` (or ``-n`` requests) per round, in ``--rounds`` interleaved
rounds whose order alternates (A B ..., ... B A), after an untimed warm-up:

- ``GET /healthz`` of the portal: the framework's floor (uvicorn, Starlette, the security
  headers middleware);
- ``POST /m/<link>/verify`` with a wrong code (what an attacker hammers), and with the right
  code (batches of 4 x N fresh codes, issued untimed between the batches);
- ``POST /m/<link>/open``, ``POST /m/<link>/part/0`` (the manifest) and ``/part/2`` (the 1 MB
  attachment) with a verified session;
- the baseline server's ``GET /healthz`` and ``GET`` of the same 1 MB sealed blob;
- the same blob read from disk in 64 KiB pieces (one thread, page cache warm).

Per target: requests per second (median of the rounds), p50 and p99 latency over every
request of every round, MB/s of the response bodies, and the CPU time per request of the
server process (user + system from /proc, all its threads) and how busy the server and the
load client were. The client and the server share the 2 cores: when the client is at 100 %
the throughput is the client's, and the server CPU per request is the figure to compare.
Ratios are throughput ours / baseline (> 1: faster than the baseline), taken per round and
their median shown, and the same from the server CPU per request. A round counts only if
every answer was the expected one (status, body length, error code); otherwise the run is
marked NOT VERIFIED and exits 1.

Then the store calls the requests make, one at a time in this process on the same database
(median of interleaved rounds), to show where the server's milliseconds go.

The browser part opens the notification link in chromium, asks for a code by email, reads it
from the sink, enters it, then times, after a warm-up round, in ``--browser-rounds``
alternating rounds: the click on Download until the decrypted, SHA-256-checked file is saved
by the browser (split at the page's ``URL.createObjectURL``); the same sealed part fetched by
the page without decrypting it (the baseline); fetched and decrypted with the portal's own
sealed.js (``openPartStream``) without saving; decrypted from memory (``openPart``); and the
blob as a static file from the baseline server, in a second browser context (a second page in
the portal's context made chromium start the portal page's downloads about 1.7 s late).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from benchlib import median, percentile, run_interruptibly, stop_process_group

from gateway import config, logsetup
from gateway.envelope import keys
from gateway.installsecret import Secrets
from gateway.portal.codes import CodeBook
from gateway.service import Gateway
from gateway.store import FileBlobStore, Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

from tests.support.gateway import config_data, wait_for  # noqa: E402
from tests.support.loopthread import LoopThread  # noqa: E402
from tests.support.portal import code_in, code_mail  # noqa: E402
from tests.support.protected import link_in, notifications  # noqa: E402
from tests.support.sink import Sink  # noqa: E402

HERE = Path(__file__).resolve()
HOST = "127.0.0.1"
MB = 1_000_000  # MB and MB/s are decimal throughout
PIECE = 64 * 1024
SEED = 20261128
SENDER = "alice@example.org"
FETCH_READER = "dave@example.net"
BROWSER_READER = "erin@example.net"
FETCH_SIZE = 1_000_000
BROWSER_SIZE = 25_000_000
READERS_PER_CLIENT = 4
PER_ADDRESS = 9_000  # wrong codes sent from one client address (client_attempts = 10,000)
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_PROBLEM = re.compile(r"^(\S+Z (warning|error|critical) |Traceback)")
NO_LOCKS = {
    "backoff_seconds": 0,
    "link_attempts": 1000,
    "client_attempts": 10000,
    "code_attempts": 20,
    "codes_per_hour": 100,
}


def say(*args: Any) -> None:
    print(*args, flush=True)


# --------------------------------------------------------------------------- child processes


def serve_portal(config_path: str) -> int:
    """Child: Sealgate (intake, pipeline, portal) until SIGTERM; its addresses on stdout."""
    data = json.loads(Path(config_path).read_text())
    cfg = config.parse(data["config"], base_dir=Path(data["base_dir"]))
    logsetup.configure(cfg.log.level, cfg.log.format)

    async def run() -> None:
        gateway = Gateway(cfg, None, with_outbox=False)
        await gateway.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        address = {
            "portal_url": gateway.portal_url,
            "smtp_port": gateway.intake.addresses[0].port,
            "socket_proto": gateway._portal_socket.proto if gateway._portal_socket else None,
        }
        print(json.dumps(address), flush=True)
        await stop.wait()
        await gateway.stop()

    asyncio.run(run())
    return 0


def serve_plain(root: str) -> int:
    """Child: the baseline, a plain Starlette app on uvicorn serving copies of sealed parts,
    one file each (``Bench.part_file``)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, PlainTextResponse, Response
    from starlette.routing import Route

    blobs = Path(root)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def blob(request: Request) -> Response:
        envelope, part = request.path_params["envelope"], request.path_params["part"]
        path = blobs / envelope[:2] / envelope / f"{part}.sg"
        return FileResponse(path, media_type="application/octet-stream")

    app = Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/blob/{envelope}/{part:int}", blob, methods=["GET"]),
        ]
    )
    # IPPROTO_TCP, as the sockets uvicorn.run(host=..., port=...) gets from asyncio: the
    # accepted connections get TCP_NODELAY.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    sock.setblocking(False)
    web = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=60,
    )
    server = uvicorn.Server(web)
    print(json.dumps({"url": f"http://{HOST}:{sock.getsockname()[1]}"}), flush=True)
    # uvicorn's own signal handling: SIGTERM or SIGINT end serve() gracefully.
    asyncio.run(server.serve(sockets=[sock]))
    return 0


class Child:
    """A child process of this script in its own session; its first stdout line is JSON."""

    def __init__(self, name: str, argv: list[str], workdir: Path, timeout: float = 60) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self.info = self._first_line(timeout)

    def _first_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                piece = os.read(fd, 4096)
                if not piece:
                    raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
                line += piece
        return dict(json.loads(line))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def problems(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if LOG_PROBLEM.match(line)]

    def stop(self, timeout: float = 15) -> None:
        stop_process_group(self.proc, timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


# --------------------------------------------------------------------------- messages


def protected(recipients: list[str], attachment: tuple[str, bytes] | None, tag: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{SENDER}>"
    msg["To"] = ", ".join(recipients) if len(recipients) <= 3 else "undisclosed-recipients:;"
    msg["Subject"] = f"[secure] Bench {tag}"
    msg["Message-ID"] = f"<bench.{tag}.{SEED}@example.org>"
    msg["Date"] = "Sat, 28 Nov 2026 10:00:00 +0100"
    msg.set_content("Hello,\nthe figures are attached.\n\nAlice\n")
    if attachment is not None:
        name, data = attachment
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


@dataclass(frozen=True)
class Reader:
    address: str
    link: keys.Link
    envelope_id: str

    @property
    def path(self) -> str:
        return f"/m/{keys.b64url(self.link.link_id)}"


# --------------------------------------------------------------------------- the bench


class Bench:
    """Work directory, sink, Sealgate, the baseline server, and a store handle for codes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="sealgate-bench-portal-"))
        self.thread: LoopThread | None = None
        self.sink: Sink | None = None
        self.portal: Child | None = None
        self.plain: Child | None = None
        self.store: Store | None = None

    def start(self) -> None:
        self.thread = LoopThread()
        self.sink = Sink()
        self.thread.run(self.sink.start())
        state = self.workdir / "state"
        state.mkdir()
        overrides = {
            "smtp": {"max_message_size": 40 * 1024 * 1024},
            "portal": {"listen": f"{HOST}:0", "url": "", "trusted_proxies": [f"{HOST}/32"],
                       **NO_LOCKS},
            "log": {"level": "warning"},
        }  # fmt: skip
        data = config_data(state, self.sink.port, **overrides)
        self.cfg = config.parse(data, base_dir=state)
        path = self.workdir / "config.json"
        path.write_text(json.dumps({"config": data, "base_dir": str(state)}))
        self.portal = Child("sealgate", ["--serve-portal", str(path)], self.workdir)
        self.url = str(self.portal.info["portal_url"])
        self.smtp_port = int(self.portal.info["smtp_port"])
        self.plain_root = self.workdir / "plain"
        self.plain = Child("plain", ["--serve-plain", str(self.plain_root)], self.workdir)
        self.plain_url = str(self.plain.info["url"])
        self.store = Store(self.cfg.store.database_url, FileBlobStore(self.cfg.store.blob_root))
        secret = Secrets.load(self.cfg.loop.secret_file).access_codes
        self.codes = CodeBook(self.store_access(), secret, self.cfg.portal)

    def store_access(self) -> Any:
        from gateway.store.portalstate import PortalState

        assert self.store is not None
        return PortalState(self.store)

    def send(self, recipients: list[str], attachment: tuple[str, bytes] | None,
             tag: str) -> list[Reader]:  # fmt: skip
        """Send a protected message through Sealgate; the readers of its notifications."""
        assert self.sink is not None and self.store is not None
        before = len(self.sink.messages)
        with smtplib.SMTP(HOST, self.smtp_port, timeout=120) as client:
            refused = client.sendmail(SENDER, recipients, protected(recipients, attachment, tag))
        if refused:
            raise RuntimeError(f"recipients refused: {refused}")
        sink = self.sink
        wait_for(lambda: len(notifications(sink.messages[before:])) == len(recipients),
                 timeout=60, what="the notifications")  # fmt: skip
        found = notifications(sink.messages[before:])
        readers = []
        for address in recipients:
            link = link_in(found[address])
            record = self.store.reader_by_link(link.id_hash)
            assert record is not None, f"no reader for {address}'s link"
            readers.append(Reader(address, link, record[0].envelope_id))
        return readers

    def reader_record(self, reader: Reader) -> Any:
        assert self.store is not None
        found = self.store.reader_by_link(reader.link.id_hash)
        assert found is not None
        return found[1]

    def part_file(self, envelope_id: str, part: int) -> Path:
        """A sealed part copied into a file of its own, which the plain server serves (the
        store keeps an envelope's parts in one file)."""
        assert self.store is not None
        path = self.plain_root / envelope_id[:2] / envelope_id / f"{part}.sg"
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.store.blobs.open(envelope_id, part) as blob:
            path.write_bytes(blob.read())
        return path

    def events(self, envelope_id: str) -> int:
        assert self.store is not None
        return len(self.store.events(envelope_id))

    def close(self) -> None:
        for child in (self.plain, self.portal):
            if child is not None:
                child.stop()
        if self.store is not None:
            self.store.close()
        if self.thread is not None:
            if self.sink is not None:
                with contextlib.suppress(Exception):
                    self.thread.run(self.sink.stop())
            self.thread.close()
        if self.args.keep:
            say(f"work directory kept: {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------- load


class BadAnswer(Exception):
    pass


@dataclass
class Sample:
    """One target in one round."""

    requests: int
    elapsed: float
    latencies: list[float]
    nbytes: int
    errors: list[str]
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed

    @property
    def mb_s(self) -> float:
        return self.nbytes / MB / self.elapsed


Call = Callable[[int, int], Awaitable[int]]  # (client index, its request number) -> bytes


async def drive(clients: int, call: Call, *, seconds: float | None, count: int | None,
                server: Child | None) -> Sample:  # fmt: skip
    """Run ``call`` from ``clients`` concurrent workers until the deadline or the count."""
    latencies: list[float] = []
    errors: list[str] = []
    taken = 0
    nbytes = 0
    deadline = 0.0

    async def worker(index: int) -> None:
        nonlocal taken, nbytes
        number = 0
        while True:
            if count is not None:
                if taken >= count:
                    return
                taken += 1
            elif time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                got = await call(index, number)  # not "nbytes += await ...": that reads
                nbytes += got  # nbytes before the await and loses the other workers' bytes
            except (BadAnswer, httpx.HTTPError) as error:
                errors.append(f"{type(error).__name__}: {error}")
            latencies.append(time.perf_counter() - started)
            number += 1

    server_before = server.cpu_seconds() if server is not None else 0.0
    client_before = time.process_time()
    started = time.perf_counter()
    deadline = started + (seconds or 0.0)
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return Sample(
        requests=len(latencies),
        elapsed=elapsed,
        latencies=latencies,
        nbytes=nbytes,
        errors=errors,
        server_cpu=(server.cpu_seconds() - server_before) if server is not None else 0.0,
        client_cpu=time.process_time() - client_before,
    )


def expect(response: httpx.Response, status: int, what: str, size: int | None = None,
           contains: bytes | None = None) -> int:  # fmt: skip
    body = response.content
    if response.status_code != status:
        raise BadAnswer(f"{what}: {response.status_code} {body[:200]!r}")
    if size is not None and len(body) != size:
        raise BadAnswer(f"{what}: {len(body)} bytes, expected {size}")
    if contains is not None and contains not in body:
        raise BadAnswer(f"{what}: {contains!r} not in {body[:200]!r}")
    return len(body)


@dataclass
class Target:
    key: str
    label: str
    server: str  # "portal" | "plain" | "none"
    kind: str  # the request: healthz, verify_wrong, verify_ok, open, part0, part2, file
    baseline: str | None  # key of the target its ratio is taken against
    by: str = "rate"  # "rate" or "mb_s": what the ratio compares
    rounds: list[Sample] = field(default_factory=list)


class Load:
    """The HTTP targets, with the clients and the state they need."""

    def __init__(self, bench: Bench, verify_readers: list[Reader], fetch: Reader) -> None:
        self.bench = bench
        self.c = bench.args.clients
        self.verify_readers = verify_readers
        self.fetch = fetch
        self.portal: list[httpx.AsyncClient] = []
        self.plain: list[httpx.AsyncClient] = []
        self.csrf: list[str] = []
        self.wrong_sent = [0] * self.c
        store = bench.store
        assert store is not None
        envelope = store.get(fetch.envelope_id)
        assert envelope is not None
        self.sealed = {p.part_id: p.sealed_size for p in envelope.parts}
        self.blob_file = bench.part_file(fetch.envelope_id, 2)
        self.pending: list[tuple[Reader, str]] = []
        part0 = f"manifest ({self.sealed[0]:,} B)"
        part2 = f"1 MB attachment ({self.sealed[2]:,} B)"
        targets = [
            Target("healthz", "GET /healthz (the floor)", "portal", "healthz", None),
            Target("verify_wrong", "POST /verify, wrong code", "portal", "verify_wrong",
                   "healthz"),
            Target("verify_ok", "POST /verify, right code", "portal", "verify_ok", "healthz"),
            Target("open", "POST /open", "portal", "open", "healthz"),
            Target("part0", f"POST /part/0, {part0}", "portal", "part0", "healthz"),
            Target("part2", f"POST /part/2, {part2}", "portal", "part2", "plain_file", "mb_s"),
            Target("plain_healthz", "plain Starlette GET /healthz", "plain", "healthz",
                   "healthz"),
            Target("plain_file", "plain FileResponse GET, same 1 MB blob", "plain", "file",
                   "raw_read", "mb_s"),
        ]  # fmt: skip
        self.targets = {t.key: t for t in targets}

    def headers(self, index: int, origin: str, *, attacker: bool = False) -> dict[str, str]:
        # Each client its own address (127.0.0.1 is a trusted proxy that names it), a new
        # one every PER_ADDRESS wrong codes: client_attempts (at most 10,000 an hour) never
        # locks a client out.
        turn = (self.wrong_sent[index] if attacker else 0) // PER_ADDRESS
        return {
            "X-CSRF-Token": self.csrf[index],
            "Origin": origin,
            "X-Forwarded-For": f"198.{18 + turn % 2}.{turn // 2 % 256}.{index % 250 + 1}",
        }

    async def open_clients(self) -> None:
        for _ in range(self.c):
            self.portal.append(httpx.AsyncClient(base_url=self.bench.url, timeout=60))
            self.plain.append(httpx.AsyncClient(base_url=self.bench.plain_url, timeout=60))
        # The link page gives each client its CSRF cookie.
        for client in self.portal:
            expect(await client.get(self.fetch.path), 200, "link page")
            self.csrf.append(client.cookies.get("sg_csrf") or "")
        # Each client verifies once for the fetch reader: its own session, as a browser.
        record = self.bench.reader_record(self.fetch)
        for index, client in enumerate(self.portal):
            code = self.bench.codes.issue(record, "email")
            response = await client.post(
                f"{self.fetch.path}/verify",
                json={"method": "email", "code": code},
                headers=self.headers(index, self.bench.url),
            )
            expect(response, 200, "verify (setup)")

    async def close_clients(self) -> None:
        for client in self.portal + self.plain:
            await client.aclose()

    def call(self, target: Target) -> Call:
        """The request of a target, as (client index, request number) -> body bytes."""
        base = self.bench.url  # the Origin header; the clients have it as base_url
        fetch = self.fetch.path
        readers = self.verify_readers
        c = self.c

        async def healthz(index: int, number: int) -> int:
            clients = self.plain if target.server == "plain" else self.portal
            return expect(await clients[index].get("/healthz"), 200, "healthz", size=3)

        async def verify_wrong(index: int, number: int) -> int:
            reader = readers[(index + number * c) % len(readers)]
            response = await self.portal[index].post(
                f"{reader.path}/verify",
                json={"method": "email", "code": "000000"},
                headers=self.headers(index, base, attacker=True),
            )
            self.wrong_sent[index] += 1
            return expect(response, 401, "wrong code", contains=b'"wrong-code"')

        async def verify_ok(index: int, number: int) -> int:
            reader, code = self.pending.pop()
            response = await self.portal[index].post(
                f"{reader.path}/verify",
                json={"method": "email", "code": code},
                headers=self.headers(index, base),
            )
            return expect(response, 200, "right code", contains=b'"ok":true')

        async def open(index: int, number: int) -> int:
            response = await self.portal[index].post(
                f"{fetch}/open", json={}, headers=self.headers(index, base)
            )
            return expect(response, 200, "open", contains=b'"wrapped_key"')

        def part(n: int) -> Call:
            async def fetch_part(index: int, number: int) -> int:
                response = await self.portal[index].post(
                    f"{fetch}/part/{n}", json={}, headers=self.headers(index, base)
                )
                return expect(response, 200, f"part {n}", size=self.sealed[n])

            return fetch_part

        async def file(index: int, number: int) -> int:
            response = await self.plain[index].get(f"/blob/{self.fetch.envelope_id}/2")
            return expect(response, 200, "plain file", size=self.sealed[2])

        calls: dict[str, Call] = {"healthz": healthz, "verify_wrong": verify_wrong,
                                  "verify_ok": verify_ok, "open": open, "part0": part(0),
                                  "part2": part(2), "file": file}  # fmt: skip
        return calls[target.kind]

    async def measure(self, key: str, *, seconds: float | None, count: int | None) -> Sample:
        target = self.targets[key]
        server = self.bench.plain if target.server == "plain" else self.bench.portal
        call = self.call(target)
        if target.kind != "verify_ok":
            return await drive(self.c, call, seconds=seconds, count=count, server=server)
        # Right codes: batches of one fresh code per reader (issuing one spends the
        # reader's earlier code), issued untimed between the batches.
        batches: list[Sample] = []
        done, spent = 0, 0.0
        while (count is not None and done < count) or (count is None and spent < (seconds or 0)):
            size = len(self.verify_readers)
            if count is not None:
                size = min(size, count - done)
            self.pending = [
                (reader, self.bench.codes.issue(self.bench.reader_record(reader), "email"))
                for reader in self.verify_readers[:size]
            ]
            batches.append(await drive(self.c, call, seconds=None, count=size, server=server))
            done += batches[-1].requests
            spent += batches[-1].elapsed
        return Sample(
            requests=sum(s.requests for s in batches),
            elapsed=sum(s.elapsed for s in batches),
            latencies=[x for s in batches for x in s.latencies],
            nbytes=sum(s.nbytes for s in batches),
            errors=[e for s in batches for e in s.errors],
            server_cpu=sum(s.server_cpu for s in batches),
            client_cpu=sum(s.client_cpu for s in batches),
        )


def raw_read(path: Path) -> Sample:
    """The blob read from disk in 64 KiB pieces, as the portal reads it (one thread)."""
    samples: list[float] = []
    started = time.perf_counter()
    total = 0
    while time.perf_counter() - started < 0.2 or len(samples) < 20:
        began = time.perf_counter()
        with path.open("rb") as source:
            while piece := source.read(PIECE):
                total += len(piece)
        samples.append(time.perf_counter() - began)
    elapsed = sum(samples)
    return Sample(len(samples), elapsed, samples, total, [], 0.0, elapsed)


async def http_phase(bench: Bench, load: Load) -> dict[str, Any]:
    args = bench.args
    await load.open_clients()
    try:
        keys_order = [k for k in load.targets if k != "raw_read"]
        # The first /open of a fresh installation makes the secure-reply key (RSA-3072) in
        # a thread, under a lock: time it alone, before the warm-up.
        started = time.perf_counter()
        await load.call(load.targets["open"])(0, 0)
        first_open = time.perf_counter() - started
        say(f"first /open of the fresh installation: {first_open:.2f} s (reply key made)")
        # Warm-up, untimed: connections, caches, and the reply key (RSA-3072, made on the
        # first /open of a fresh installation).
        say("warming up ...")
        for key in keys_order:
            await load.measure(key, seconds=None, count=2 * args.clients)
        load.targets["raw_read"] = Target("raw_read", "the same blob read from disk", "none",
                                          "read", None, by="mb_s")  # fmt: skip
        fetch_events = []
        for number in range(args.rounds):
            order = keys_order + ["raw_read"]
            if number % 2:
                order.reverse()
            fetch_events.append(bench.events(load.fetch.envelope_id))
            line = []
            for key in order:
                if key == "raw_read":
                    sample = raw_read(load.blob_file)
                else:
                    sample = await load.measure(key, seconds=args.seconds, count=args.requests)
                load.targets[key].rounds.append(sample)
                line.append(f"{key} {sample.rate:,.0f}/s")
                if sample.errors:
                    line.append(f"({len(sample.errors)} bad: {sample.errors[0]})")
            say(f"  round {number + 1}: " + ", ".join(line))
        fetch_events.append(bench.events(load.fetch.envelope_id))
        result = summarise(load, fetch_events)
        result["first_open_s"] = first_open
        return result
    finally:
        await load.close_clients()


def work_ms(rounds: list[Sample]) -> float:
    """CPU milliseconds per request of the server (of this process for the disk read)."""
    requests = max(1, sum(s.requests for s in rounds))
    cpu = sum(s.server_cpu or s.client_cpu for s in rounds)
    return cpu / requests * 1000


def summarise(load: Load, fetch_events: list[int]) -> dict[str, Any]:
    targets = load.targets
    out: dict[str, Any] = {}
    for key, target in targets.items():
        rounds = target.rounds
        requests = sum(s.requests for s in rounds)
        latencies = [x for s in rounds for x in s.latencies]
        row = {
            "label": target.label,
            "requests": requests,
            "errors": sum(len(s.errors) for s in rounds),
            "first_error": next((s.errors[0] for s in rounds if s.errors), None),
            "rate": median(s.rate for s in rounds),
            "rates": [round(s.rate, 1) for s in rounds],
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "mb_s": median(s.mb_s for s in rounds),
            "bytes_per_request": sum(s.nbytes for s in rounds) / max(1, requests),
            "server_cpu_ms": sum(s.server_cpu for s in rounds) / max(1, requests) * 1000,
            "client_cpu_ms": sum(s.client_cpu for s in rounds) / max(1, requests) * 1000,
            "server_busy": sum(s.server_cpu for s in rounds) / sum(s.elapsed for s in rounds),
            "client_busy": sum(s.client_cpu for s in rounds) / sum(s.elapsed for s in rounds),
            "baseline": target.baseline,
        }
        if target.baseline is not None:
            base = targets[target.baseline].rounds
            by = target.by
            ratios = [getattr(s, by) / getattr(b, by) for s, b in zip(rounds, base, strict=True)]
            row["ratio"] = median(ratios)
            row["ratio_by"] = target.by
            # The same as a cost: baseline CPU per request / ours (the throughput ratio if the
            # server were CPU-bound; the load client cannot limit it).
            ours, theirs = work_ms(rounds), work_ms(base)
            row["cpu_ratio"] = theirs / ours if ours else None
        out[key] = row
    out["fetch_envelope_events"] = fetch_events
    return out


def store_calls(bench: Bench, load: Load, rounds: int = 7, calls: int = 20) -> dict[str, Any]:
    """The store calls behind the portal's requests, here, one at a time, same database.

    Median microseconds per call over interleaved rounds. After the HTTP part, so the
    envelopes have the audit trails the load left.
    """
    from datetime import UTC, datetime, timedelta

    from gateway.store.portalstate import PortalState

    store = bench.store
    assert store is not None
    state = PortalState(store)
    records = [bench.reader_record(r) for r in load.verify_readers]
    many = load.verify_readers[0]
    fetch = load.fetch
    now = datetime.now(UTC)
    token = keys.b64url(keys.random_bytes(32))
    state.sessions.add_session(token, kind="session", now=now, expires_at=now + timedelta(hours=1),
                       reader_id=bench.reader_record(fetch).reader_id)  # fmt: skip
    turn = [0]

    def wrong() -> None:
        turn[0] += 1
        outcome = bench.codes.check(records[turn[0] % len(records)], "email", "000000",
                                    "192.0.2.1")  # fmt: skip
        if outcome.ok or outcome.error != "wrong-code":
            raise RuntimeError(f"unexpected outcome of a wrong code: {outcome}")

    opened = bench.reader_record(fetch)
    trail = len(store.events(many.envelope_id))
    probes = iter(range(1_000_000))

    def reopen() -> None:  # what every /open after a reader's first one records
        state.record_first("opened", fetch.envelope_id, opened.reader_id, fetch.address, "")

    def first_open() -> None:
        # A kind never recorded before: no earlier match, as on a reader's first /open.
        state.record_first(f"bench-probe-{next(probes)}", many.envelope_id,
                            records[0].reader_id, many.address, "")  # fmt: skip

    work: dict[str, Callable[[], Any]] = {
        "reader_by_link, envelope with 1 reader": lambda: store.reader_by_link(fetch.link.id_hash),
        f"reader_by_link, envelope with {len(records)} readers":
            lambda: store.reader_by_link(many.link.id_hash),
        "CodeBook.check, wrong code (3 reads, 2 throttle writes)": wrong,
        "record_event (one write)": lambda: store.record_event(
            "code-failed", envelope_id=many.envelope_id, reader_id=records[0].reader_id,
            address=many.address, detail="method=email client=192.0.2.1"),
        "PortalState.sessions.session (the session check of /open, /part)":
            lambda: state.sessions.session(token, datetime.now(UTC)),
        "Access.record_first, reader opened before (every later /open)": reopen,
        f"Access.record_first, no earlier match, envelope with {trail:,} events": first_open,
    }  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in work}
    names = list(work)
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            func = work[name]
            for _ in range(calls):
                started = time.perf_counter()
                func()
                samples[name].append(time.perf_counter() - started)
    return {name: {"median_us": median(v) * 1e6, "p90_us": percentile(v, 90) * 1e6}
            for name, v in samples.items()}  # fmt: skip


def print_store_calls(res: dict[str, Any]) -> None:
    say("\nStore calls behind the requests, in this process, one at a time (SQLite, WAL, "
        "synchronous=FULL)")  # fmt: skip
    say(f"  {'call':<70}{'median ms':>10}{'p90 ms':>9}")
    for name, row in res.items():
        say(f"  {name:<70}{row['median_us'] / 1000:10.3f}{row['p90_us'] / 1000:9.3f}")


# --------------------------------------------------------------------------- the browser

UNLOCK_JS = """async (part) => {
  const s = await import(location.origin + "/static/sealed.js");
  const link = s.parseLink(location.href);
  const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  const post = (url) => fetch(url, {method: "POST", headers: {"X-CSRF-Token": csrf,
    "Content-Type": "application/json"}, body: "{}", credentials: "same-origin",
    cache: "no-store"});
  const info = await (await post(location.pathname + "/open")).json();
  const K = await s.unlockGuest({linkId: link.linkId, secret: link.secret,
    readerId: info.reader_id, encryptedPrivateKey: s.b64urlDecode(info.encrypted_private_key),
    wrappedKey: s.b64urlDecode(info.wrapped_key)});
  window.__bench = {s, K, post, E: info.envelope_id, part,
                    url: location.pathname + "/part/" + part};
  return info.parts;
}"""

FETCH_JS = """async () => {
  const b = window.__bench;
  const t0 = performance.now();
  const response = await b.post(b.url);
  const data = new Uint8Array(await response.arrayBuffer());
  const t1 = performance.now();
  b.sealed = data;
  return {ms: t1 - t0, status: response.status, bytes: data.length};
}"""

FETCH_DECRYPT_JS = """async () => {
  const b = window.__bench;
  const t0 = performance.now();
  const response = await b.post(b.url);
  const chunks = await b.s.openPartStream(b.K, b.E, b.part, response.body);
  const t1 = performance.now();
  const digest = await b.s.sha256Hex(chunks);
  const t2 = performance.now();
  const bytes = chunks.reduce((n, c) => n + c.byteLength, 0);
  return {ms: t1 - t0, sha_ms: t2 - t1, status: response.status, bytes, digest};
}"""

DECRYPT_JS = """async () => {
  const b = window.__bench;
  const t0 = performance.now();
  const chunks = await b.s.openPart(b.K, b.E, b.part, b.sealed);
  const t1 = performance.now();
  return {ms: t1 - t0, bytes: chunks.reduce((n, c) => n + c.byteLength, 0)};
}"""

# When the page clicked Download, and when it handed the decrypted Blob to the browser
# (portal.js save(): URL.createObjectURL, then a click on an <a download>).
MARKS_JS = """() => {
  window.__marks = {};
  const create = URL.createObjectURL;
  URL.createObjectURL = (blob) => {
    window.__marks.blob = performance.now();
    return create.call(URL, blob);
  };
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest(".sg-download")) {
      window.__marks.click = performance.now();
    }
  }, true);
}"""

STATIC_JS = """async (url) => {
  const t0 = performance.now();
  const response = await fetch(url, {cache: "no-store"});
  const data = await response.arrayBuffer();
  const t1 = performance.now();
  return {ms: t1 - t0, status: response.status, bytes: data.byteLength};
}"""


def browser_phase(bench: Bench, reader: Reader, data: bytes, rounds: int) -> dict[str, Any]:
    from tests.support.browser import available, chromium

    if not available():
        raise RuntimeError("chromium not found (/usr/bin/chromium): use --no-browser")
    assert bench.sink is not None and bench.store is not None
    envelope = bench.store.get(reader.envelope_id)
    assert envelope is not None
    part = next(p for p in envelope.parts if p.kind == "attachment")
    expected = hashlib.sha256(data).hexdigest()
    times: dict[str, list[float]] = {k: [] for k in ("download", "page", "saving", "fetch",
                                                     "fetch_decrypt", "sha256", "decrypt",
                                                     "static")}  # fmt: skip
    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(accept_downloads=True)  # type: ignore[attr-defined]
        page = context.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(reader.link.url(bench.url))
        page.wait_for_selector("#sg-step-method:not([hidden])")
        before = len(bench.sink.messages)
        page.click('button[data-method="email"]')
        code = code_in(code_mail(bench.sink, reader.address, before))
        page.wait_for_selector("#sg-step-code:not([hidden])")
        page.fill("#sg-code", code)
        page.click("#sg-code-submit")
        page.wait_for_selector("#sg-step-message:not([hidden])", timeout=30_000)
        page.evaluate(UNLOCK_JS, part.part_id)
        page.evaluate(MARKS_JS)
        # Another context: a second page in the portal's context delays chromium's start
        # of the portal page's downloads by about 1.7 s (seen here with chromium 150).
        static = browser.new_context().new_page()  # type: ignore[attr-defined]
        static.goto(f"{bench.plain_url}/healthz")
        static_url = f"/blob/{reader.envelope_id}/{part.part_id}"

        def download() -> None:
            page.evaluate("() => { window.__marks = {}; }")
            started = time.perf_counter()
            with page.expect_download(timeout=180_000) as info:
                page.locator("#sg-attachment-list .sg-download").first.click()
            saved = Path(info.value.path())  # chromium finished writing the file
            total = time.perf_counter() - started
            marks = page.evaluate("() => window.__marks")
            in_page = (marks["blob"] - marks["click"]) / 1000
            times["download"].append(total)
            times["page"].append(in_page)
            times["saving"].append(total - in_page)
            got = hashlib.sha256(saved.read_bytes()).hexdigest()
            info.value.delete()
            if got != expected:
                raise RuntimeError("the downloaded attachment differs from what was sent")

        def in_page(target: Any, script: str, arg: Any = None, size: int = 0) -> dict[str, Any]:
            result = dict(target.evaluate(script, arg))
            if result.get("status", 200) != 200 or (size and result["bytes"] != size):
                raise RuntimeError(f"browser fetch failed: {result}")
            return result

        steps = ["download", "fetch", "fetch_decrypt", "decrypt", "static"]
        for number in range(-1, rounds):  # round -1: the warm-up, not counted
            order = steps if number % 2 == 0 else steps[::-1]
            for step in order:
                if step == "download":
                    download()
                elif step == "fetch":
                    result = in_page(page, FETCH_JS, size=part.sealed_size)
                    times["fetch"].append(result["ms"] / 1000)
                elif step == "fetch_decrypt":
                    result = in_page(page, FETCH_DECRYPT_JS, size=len(data))
                    if result["digest"] != expected:
                        raise RuntimeError("openPartStream gave other bytes than were sent")
                    times["fetch_decrypt"].append(result["ms"] / 1000)
                    times["sha256"].append(result["sha_ms"] / 1000)
                elif step == "decrypt":
                    if not times["fetch"]:  # the sealed bytes to decrypt, in the page
                        in_page(page, FETCH_JS, size=part.sealed_size)
                    result = in_page(page, DECRYPT_JS, size=len(data))
                    times["decrypt"].append(result["ms"] / 1000)
                else:
                    result = in_page(static, STATIC_JS, static_url, size=part.sealed_size)
                    times["static"].append(result["ms"] / 1000)
            if number < 0:
                for values in times.values():
                    values.clear()
                continue
            say(f"  browser round {number + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))  # fmt: skip
        version = browser.version  # type: ignore[attr-defined]
        context.close()
    return {
        "chromium": version,
        "size": len(data),
        "sealed_size": part.sealed_size,
        "rounds": rounds,
        "seconds": {k: median(v) for k, v in times.items()},
        "all_seconds": times,
        "problems": problems,
    }


# --------------------------------------------------------------------------- output


GROUPS = [
    ("Sealgate portal", ["healthz", "verify_wrong", "verify_ok", "open", "part0", "part2"]),
    ("Baselines", ["plain_healthz", "plain_file", "raw_read"]),
]  # fmt: skip


def print_http(res: dict[str, Any], args: argparse.Namespace) -> None:
    how = f"{args.requests} requests" if args.requests else f"{args.seconds:g} s"
    say(f"\nPortal over HTTP: {args.clients} concurrent clients (httpx, keep-alive), "
        f"{args.rounds} interleaved rounds x {how} per target")  # fmt: skip
    say("  nothing locks: backoff_seconds = 0, link_attempts = 1000, client_attempts = 10000 "
        "(the largest allowed), each client its own address (X-Forwarded-For)")  # fmt: skip
    say(f"  {'target':<48}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'MB/s':>7}{'srv CPU':>9}"
        f"{'srv':>5}{'cli':>5}   ratio    CPU")  # fmt: skip
    say(f"  {'':<48}{'':>7}{'':>8}{'':>8}{'':>7}{'ms/req':>9}{'%':>5}{'%':>5}   {'':>6} ratio")
    for title, keys_ in GROUPS:
        say(f"  {title}")
        for key in keys_:
            row = res[key]
            label = "  " + row["label"]
            mb = f"{row['mb_s']:7.0f}" if row["bytes_per_request"] > 100 else f"{'':>7}"
            if key == "raw_read":
                say(f"  {label:<48}{row['rate']:7,.0f}{row['p50_ms']:8.2f}{'':>8}{mb}{'':>9}{'':>5}"
                    f"{row['client_busy'] * 100:5.0f}   (one thread, page cache; "
                    "req/s = reads of the whole blob)")  # fmt: skip
                continue
            ratio = ""
            if "ratio" in row:
                what = "MB/s" if row["ratio_by"] == "mb_s" else "req/s"
                ratio = f"{row['ratio']:6.3f}{row['cpu_ratio']:7.3f}  ({what} vs {row['baseline']})"
            bad = f"  {row['errors']} BAD: {row['first_error']}" if row["errors"] else ""
            say(f"  {label:<48}{row['rate']:7,.0f}{row['p50_ms']:8.1f}{row['p99_ms']:8.1f}{mb}"
                f"{row['server_cpu_ms']:9.3f}{row['server_busy'] * 100:5.0f}"
                f"{row['client_busy'] * 100:5.0f}   {ratio}{bad}")  # fmt: skip
    say("  srv/cli % = CPU time of the server process / of this load client over the target's "
        "wall time (100 = one core);\n  ratio = throughput ours / baseline (median of per-round "
        "ratios); CPU ratio = baseline's server CPU per request / ours")  # fmt: skip
    say(f"  the first /open of the fresh installation took {res['first_open_s']:.2f} s (it makes "
        "the secure-reply key, RSA-3072)")  # fmt: skip
    events = res["fetch_envelope_events"]
    say("  /open req/s by round: " + ", ".join(f"{r:,.0f}" for r in res["open"]["rates"])
        + f" (audit events of the fetch envelope: {events[0]:,} at round 1, {events[-1]:,} "
        "at the end)")  # fmt: skip


def print_browser(res: dict[str, Any]) -> None:
    size, sec = res["size"], res["seconds"]
    say(f"\nBrowser: {size:,} B attachment (sealed {res['sealed_size']:,} B), headless "
        f"chromium {res['chromium']}, median of {res['rounds']} alternating rounds")  # fmt: skip
    say(f"  {'step':<66}{'s':>7}{'MB/s':>8}{'ratio':>8}")
    base = sec["fetch"]
    rows = [
        ("download", "Download clicked -> decrypted, SHA-256 checked, saved by chromium"),
        ("page", "  in the page: click -> Blob made (fetch, decrypt, SHA-256 check)"),
        ("saving", "  the rest: chromium saving the Blob to a file (and Playwright)"),
        ("fetch", "baseline: POST /part, arrayBuffer(), no decryption (same page)"),
        ("fetch_decrypt", "POST /part + openPartStream (decrypt as it arrives)"),
        ("sha256", "  SHA-256 of the plaintext (crypto.subtle.digest)"),
        ("decrypt", "openPart from memory (WebCrypto AES-GCM, 64 KiB chunks)"),
        ("static", "plain FileResponse GET, arrayBuffer() (other browser context)"),
    ]
    for key, label in rows:
        say(f"  {label:<66}{sec[key]:7.3f}{size / MB / sec[key]:8.1f}{base / sec[key]:8.2f}")
    say("  MB/s = 25 MB attachment / s for every row; ratio = baseline s / s (> 1: faster)")
    if res["problems"]:
        say(f"  browser console errors: {res['problems'][:3]}")


# --------------------------------------------------------------------------- main


def orchestrate(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    bench = Bench(args)
    try:
        say(f"portal benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"work directory {bench.workdir}")  # fmt: skip
        load_at_start = [round(x, 2) for x in os.getloadavg()]
        bench.start()
        proto = bench.portal.info["socket_proto"] if bench.portal else None
        say(f"portal socket proto {proto} (asyncio sets TCP_NODELAY on the connections only "
            f"if it is {socket.IPPROTO_TCP})")  # fmt: skip
        rng = random.Random(SEED)
        count = READERS_PER_CLIENT * args.clients
        say(f"sealing: {count} verify readers, a 1 MB attachment"
            + ("" if args.no_browser else ", a 25 MB attachment") + " ...")  # fmt: skip
        started = time.perf_counter()
        verify_readers = bench.send(
            [f"reader{i:04d}@example.net" for i in range(count)], None, "verify"
        )
        (fetch,) = bench.send([FETCH_READER], ("figures.bin", rng.randbytes(FETCH_SIZE)), "fetch")
        say(f"  sealed in {time.perf_counter() - started:.1f} s")
        load = Load(bench, verify_readers, fetch)
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "clients": args.clients,
            "rounds": args.rounds,
            "seconds": args.seconds if args.requests is None else None,
            "requests": args.requests,
            "throttles": NO_LOCKS,
            "portal_socket_proto": proto,
        }
        report["http"] = asyncio.run(http_phase(bench, load))
        print_http(report["http"], args)
        report["store_calls"] = store_calls(bench, load)
        print_store_calls(report["store_calls"])
        if not args.no_browser:
            say("\nbrowser: sealing the 25 MB attachment, opening the link in chromium ...")
            big = rng.randbytes(BROWSER_SIZE)
            (reader,) = bench.send([BROWSER_READER], ("scan-2026.bin", big), "browser")
            report["browser"] = browser_phase(bench, reader, big, args.browser_rounds)
            print_browser(report["browser"])
        problems = bench.portal.problems() if bench.portal else []
        report["sealgate_log_problems"] = problems
        if problems:
            say(f"\nSealgate logged {len(problems)} warnings/errors, first: {problems[0]}")
        bad = sum(row["errors"] for row in report["http"].values() if isinstance(row, dict))
        report["verified"] = bad == 0
        report["seconds_total"] = time.perf_counter() - began
        say(
            f"\nwhole run {report['seconds_total']:.0f} s; "
            + ("every answer as expected" if bad == 0 else f"NOT VERIFIED: {bad} bad answers")
        )
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            say(f"figures written to {args.json}")
        return 0 if bad == 0 else 1
    finally:
        bench.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load the recipient portal's endpoints, against baselines run alongside.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-c", "--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="seconds per target and round")  # fmt: skip
    parser.add_argument("-n", "--requests", type=int, default=None,
                        help="requests per target and round (instead of --seconds)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--browser-rounds", type=int, default=5, help="rounds in chromium")
    parser.add_argument("--no-browser", action="store_true", help="skip the chromium part")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--serve-portal", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--serve-plain", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.browser_rounds < 1:
        parser.error("--clients, --rounds and --browser-rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_portal:
        return serve_portal(args.serve_portal)
    if args.serve_plain:
        return serve_plain(args.serve_plain)
    return run_interruptibly(
        lambda: orchestrate(args), "every process and directory started was removed"
    )


if __name__ == "__main__":
    sys.exit(main())
