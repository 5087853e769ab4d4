"""A server with fixed ports in a network namespace of its own, reached from 127.0.0.1.

Some peers cannot be told to use another port (a Samba domain controller listens on
389, 636, 88, 53, ...). :class:`IsolatedProcess` runs such a server under ``unshare
--net --pid --fork --kill-child``: a new network namespace with nothing but its own
loopback, which it brings up first, and a new PID namespace in which the server is
process 1, so that when it ends the kernel ends every process it started, and the
namespaces go with them. Nothing is left under /run/netns to clean up.

:class:`Relay` makes one of its ports reachable from the test process: it listens
on 127.0.0.1 and a free port in the test's namespace and forwards each connection to
an address on the server's loopback. It needs no veth pair and no private
addresses: the forwarding thread enters the server's network namespace (setns(2))
after binding its listening socket, so its outgoing sockets are created in there,
and traffic never leaves the loopback interfaces. Both need root (CI runs as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class IsolatedProcess:
    """``argv`` as process 1 of new network and PID namespaces; its output goes to ``log``."""

    def __init__(self, argv: list[str], log: Path) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("a server in a network namespace needs root (CI runs as root)")
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        script = 'ip link set lo up && exec "$@"'
        self.process = subprocess.Popen(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "sh", "-c", script, "sh"]
            + argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self._server_pid()

    def _server_pid(self, timeout: float = 10) -> int:
        """The server's PID as seen from here: unshare's one child."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            with contextlib.suppress(OSError):
                pids = children.read_text().split()
                if pids:
                    return int(pids[0])
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"unshare did not start its process:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to the server (unshare itself ignores it), SIGKILL if it lingers;
        every process in its PID namespace ends with it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


class Relay:
    """127.0.0.1:``port`` here, forwarded to ``target`` inside the network namespace of ``pid``."""

    def __init__(self, pid: int, target: tuple[str, int]) -> None:
        self.target = target
        self._namespace = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="netns-relay", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            self.close()
            raise self._error

    def _run(self) -> None:
        # This thread, and only this thread, moves into the namespace: the listening
        # socket was bound before, in ours; connections it opens are made in there.
        if _libc.setns(self._namespace, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            self._error = OSError(errno, f"setns: {os.strerror(errno)}")
            self._started.set()
            return
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._forward, sock=self._listener)
            )
        except BaseException as error:  # noqa: BLE001 - handed to the starting thread
            self._error = error
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._finish())
        self._loop.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            inner_reader, inner_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                _pipe(reader, inner_writer), _pipe(inner_reader, writer), return_exceptions=True
            )
        except asyncio.CancelledError:
            # Closing the relay with a connection open: end this handler quietly (asyncio
            # logs a handler task that ends cancelled as an error).
            writer.close()
            inner_writer.close()

    async def _finish(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if self._thread.is_alive() and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()
        self._listener.close()
        with contextlib.suppress(OSError):
            os.close(self._namespace)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def wait_for_tls(port: int, process: IsolatedProcess, timeout: float = 60) -> None:
    """Until a TLS handshake through the relay on ``port`` succeeds (the server listens)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise RuntimeError(
                f"the server exited with {process.process.returncode}:\n{process.log}"
            )
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
                context.wrap_socket(sock),
            ):
                return
        except (OSError, ssl.SSLError):
            time.sleep(0.1)
    raise RuntimeError(
        f"no TLS on the relay's port {port} within {timeout} s:\n{process.log[-3000:]}"
    )
