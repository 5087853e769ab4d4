"""Deadlines for slow clients: uvicorn's HTTP/1.1 protocol, with header and body timeouts.

uvicorn closes a keep-alive connection that stays idle between requests, and nothing
else: a client that connects and sends a request line one byte a minute, or declares a
large body and never sends it, keeps its connection (and a file descriptor of the
process that also serves SMTP) for as long as it likes. This subclass of uvicorn's h11
protocol adds what a server exposed to the internet needs (docs/portal.md, "Slow
clients"):

- a **header deadline**: a request's headers must be complete within ``header`` seconds,
  counted from the connection (the first request) or from the first byte of a later one
  (until that byte, uvicorn's keep-alive timeout applies);
- a **body deadline with a minimum rate**: a request body may take ``body`` seconds plus
  one second for every ``body_rate`` bytes it delivers, so a large upload on a slow line
  goes through and a trickle does not; while the portal itself is not reading (its
  buffer full), the clock restarts;
- a **cap** on the connections one process holds; a connection over it gets 503 and is
  closed at once.

A client that misses a deadline gets ``408 Request Timeout`` if no answer has begun, and
the connection is closed either way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState


@dataclass(frozen=True)
class Deadlines:
    """How long a client may take, and how many connections one process keeps."""

    header: float  # seconds to complete a request's headers
    body: float  # seconds a body may take before the minimum rate counts
    body_rate: int  # bytes per second that earn a body more time
    max_connections: int


def protocol_with(deadlines: Deadlines) -> type[H11Protocol]:
    """The protocol class for uvicorn.Config(http=...), keeping ``deadlines``."""

    class Configured(SlowClientDeadlines):
        limits = deadlines

    return Configured


class SlowClientDeadlines(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a body deadline and a connection cap."""

    limits: ClassVar[Deadlines]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._received = 0  # bytes read on this connection
        self._body_since = 0.0  # loop time the body's clock (re)started
        self._body_received = 0  # bytes read when it did

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._answer_and_close(503, b"Service Unavailable")
            return
        self._header_timer = self.loop.call_later(self.limits.header, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        self._stop_body_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()  # a pipelined request may have begun

    def _follow_request(self) -> None:
        """Start and stop the clocks by where the client is in its request."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # A new request has begun once any of its bytes is in; before that, the
            # keep-alive timeout is the one that counts.
            if self._header_timer is None and self.conn.trailing_data[0]:
                self._header_timer = self.loop.call_later(self.limits.header, self._too_slow)
        elif state is h11.SEND_BODY:
            self._stop_header_clock()
            if self._body_timer is None:
                self._restart_body_clock()
        else:
            self._stop_header_clock()
            self._stop_body_clock()

    def _restart_body_clock(self) -> None:
        self._body_since = self.loop.time()
        self._body_received = self._received
        self._body_timer = self.loop.call_at(self._body_deadline(), self._body_due)

    def _body_deadline(self) -> float:
        earned = (self._received - self._body_received) / self.limits.body_rate
        return self._body_since + self.limits.body + earned

    def _body_due(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused:  # the portal is not reading: not the client's fault
            self._restart_body_clock()
            return
        deadline = self._body_deadline()
        if self.loop.time() < deadline:
            self._body_timer = self.loop.call_at(deadline, self._body_due)
            return
        self._too_slow()

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _stop_body_clock(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # The application's receive() now answers http.disconnect, its send() nothing.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._answer_and_close(408, b"")

    def _answer_and_close(self, status: int, body: bytes) -> None:
        """``status`` if no answer has begun on this connection; then close it."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=status, headers=headers),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
        self.transport.close()
