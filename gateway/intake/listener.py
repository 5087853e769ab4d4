"""The SMTP listeners: one protocol per connection, reconfigured on SIGHUP, a graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence

from gateway import config
from gateway.intake.access import Credentials
from gateway.intake.capacity import Connections
from gateway.intake.handler import IntakeHandler
from gateway.intake.server import Limits, MemoryBudget, SealgateSMTP
from gateway.intake.tls import server_context
from gateway.pipeline import Pipeline

log = logging.getLogger("sealgate.intake")


class IntakeServer:
    """Listens on ``smtp.listen`` and runs one :class:`SealgateSMTP` per connection.

    :meth:`configure` may be called again while running (SIGHUP): new
    connections get the new settings, connections in progress keep theirs.
    """

    def __init__(self, settings: config.SMTP, pipeline: Pipeline, source: str = "config") -> None:
        self._connections: Connections[SealgateSMTP] = Connections()
        self._budget = MemoryBudget(settings.memory_budget)
        self._servers: list[asyncio.Server] = []
        self.configure(settings, pipeline, source)

    def configure(self, settings: config.SMTP, pipeline: Pipeline, source: str = "config") -> None:
        tls: ssl.SSLContext | None = server_context(settings.tls, source)
        self._budget.limit = settings.memory_budget
        self._limits = Limits(settings, Credentials(settings.auth), self._budget, self._connections)
        self._tls = tls
        self._handler = IntakeHandler(pipeline)
        self.settings = settings

    def _protocol(self) -> SealgateSMTP:
        return SealgateSMTP(self._handler, self._limits, self._tls)

    async def start(self, sockets: Sequence[socket.socket] = ()) -> list[config.HostPort]:
        """Serve on ``sockets`` (listening already: a supervisor's, shared by its workers),
        else bind every listen address; the addresses served (port 0 resolved)."""
        loop = asyncio.get_running_loop()
        if sockets:
            for sock in sockets:
                self._servers.append(await _serve_shared(loop, self._protocol, sock))
            return self.addresses
        for address in self.settings.listen:
            server = await loop.create_server(
                self._protocol, host=address.host, port=address.port, reuse_address=True
            )
            self._servers.append(server)
        return self.addresses

    @property
    def addresses(self) -> list[config.HostPort]:
        return [
            config.HostPort(sock.getsockname()[0], sock.getsockname()[1])
            for server in self._servers
            for sock in server.sockets
        ]

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting; let transactions in flight finish, for at most ``timeout`` seconds."""
        for server in self._servers:
            server.close()
        await asyncio.gather(
            *(conn.close_gracefully() for conn in self._connections), return_exceptions=True
        )
        deadline = asyncio.get_running_loop().time() + timeout
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self._connections:
            log.warning(
                "shutdown timeout: closing connections in flight",
                extra={"fields": {"connections": len(self._connections)}},
            )
            for conn in self._connections:
                if conn.transport is not None:
                    conn.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


# The listen queue of a socket shared by the workers (as the supervisor binds it).
SHARED_BACKLOG = 128


async def _serve_shared(
    loop: asyncio.AbstractEventLoop, protocol: Callable[[], asyncio.Protocol], sock: socket.socket
) -> asyncio.Server:
    """Serve a listening socket that other workers serve too, one accept per wakeup.

    Every worker waits on the same socket and the kernel wakes them all. asyncio
    accepts up to ``backlog`` queued connections per wakeup, so the worker that
    wakes first took nearly all of a burst (an MTA opening its connection cache:
    19 of 20 in bench/hop.py), and the others idled. Accepting one at a time lets
    the next connection go to whichever worker is free first, which also steers
    new connections away from a busy one. asyncio uses ``backlog`` both for the
    accept count and for ``listen()``, so the socket's queue is set back at once.
    """
    server = await loop.create_server(protocol, sock=sock, backlog=1)
    sock.listen(SHARED_BACKLOG)
    return server
