"""Slow clients cannot hold the portal's connections (issue 11, finding 8).

Raw sockets against a running portal with one-second deadlines: clients that connect and
send nothing, send half a request line, or trickle their headers or a declared body one
byte at a time are answered 408 and disconnected about when the deadline passes, while a
normal request is served throughout. A body that keeps up the minimum rate may take longer
than the body timeout; a keep-alive connection may stay idle longer than the header
timeout; connections over the cap get 503.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from dataclasses import dataclass, field

import httpx
import pytest

from gateway.envelope import keys
from tests.support.gateway import RunningGateway
from tests.support.portal import Browser, portal_url, send_protected

DEADLINE = 1.0  # header_timeout and body_timeout of these tests
LATE = 3.0  # how much later than the deadline a closing may come on a busy machine
SLOW = {
    "listen": "127.0.0.1:0",
    "url": "",
    "backoff_seconds": 0,
    "header_timeout": DEADLINE,
    "body_timeout": DEADLINE,
}


@pytest.fixture
def portal(make_gateway) -> RunningGateway:
    return make_gateway(portal=SLOW)


def address(running: RunningGateway) -> tuple[str, int]:
    found = running.gateway.portal_address
    assert found is not None
    return found


@dataclass
class Client:
    """One raw connection: what it sent, what came back, and when the server closed it."""

    sock: socket.socket
    opened: float = field(default_factory=time.monotonic)
    answer: bytes = b""
    closed_after: float | None = None

    @classmethod
    def connect(cls, running: RunningGateway, first: bytes = b"") -> Client:
        sock = socket.create_connection(address(running), timeout=5)
        client = cls(sock)
        if first:
            sock.sendall(first)
        return client

    def read(self) -> None:
        """Take what the server sent; note when it closed."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.answer += data
        if not data and self.closed_after is None:
            self.closed_after = time.monotonic() - self.opened

    def read_response(self) -> None:
        """Read one whole response (headers and its Content-Length of body)."""
        while b"\r\n\r\n" not in self.answer and self.closed_after is None:
            self.read()
        head, _, body = self.answer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length and self.closed_after is None:
            self.read()
            body = self.answer.partition(b"\r\n\r\n")[2]

    def status(self) -> int | None:
        if not self.answer.startswith(b"HTTP/1.1 "):
            return None
        return int(self.answer[9:12])


def wait_closed(clients: list[Client], within: float) -> None:
    """Read from every client until the server closed them all or ``within`` seconds pass."""
    selector = selectors.DefaultSelector()
    for client in clients:
        client.sock.setblocking(False)
        selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + within
    try:
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                client = key.data
                client.read()
                if client.closed_after is not None:
                    selector.unregister(client.sock)
    finally:
        selector.close()


def trickle(client: Client, data: bytes, interval: float, within: float) -> None:
    """Send ``data`` one byte every ``interval`` seconds until the server closes."""
    client.sock.settimeout(interval)
    deadline = time.monotonic() + within
    for byte in data:
        if time.monotonic() > deadline:
            return
        try:
            client.sock.sendall(bytes([byte]))
            client.read()  # times out after ``interval`` unless the server answered
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            client.closed_after = time.monotonic() - client.opened
        if client.closed_after is not None:
            return


def close_all(clients: list[Client]) -> None:
    for client in clients:
        client.sock.close()


def served_normally(running: RunningGateway) -> bool:
    answer = httpx.get(portal_url(running) + "/healthz", timeout=5)
    return answer.status_code == 200 and answer.text.strip() == "ok"


def test_slow_and_silent_clients_are_closed_while_others_are_served(portal):
    silent = [Client.connect(portal) for _ in range(25)]
    partial = [Client.connect(portal, b"GET /healthz HTT") for _ in range(25)]
    clients = silent + partial
    try:
        assert served_normally(portal)  # while 50 connections hang
        wait_closed(clients, within=DEADLINE + LATE)
        assert all(c.closed_after is not None for c in clients), "kept open"
        assert min(c.closed_after or 0 for c in clients) >= DEADLINE * 0.9
        assert {c.status() for c in clients} == {408}
        assert served_normally(portal)
    finally:
        close_all(clients)


def test_headers_trickled_a_byte_at_a_time_are_cut_off(portal):
    """Sending keeps no request alive: the deadline counts from the connection."""
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-Pad: " + b"a" * 200
    clients = [Client.connect(portal) for _ in range(3)]
    try:
        trickle(clients[0], request, interval=0.1, within=DEADLINE + LATE)
        wait_closed(clients[1:], within=DEADLINE + LATE)
        assert all(c.closed_after is not None for c in clients)
        assert clients[0].closed_after is not None and clients[0].closed_after < DEADLINE + LATE
        assert clients[0].status() == 408
        assert served_normally(portal)
    finally:
        close_all(clients)


def verify_request(running: RunningGateway, sink, length: int) -> tuple[bytes, Browser]:
    """The head of a POST /verify with a valid link and CSRF pair, declaring ``length``."""
    link = send_protected(running, sink)
    browser = Browser(portal_url(running))
    browser.page(link)
    assert browser.csrf
    head = (
        f"POST /m/{keys.b64url(link.link_id)}/verify HTTP/1.1\r\n"
        f"Host: {address(running)[0]}\r\n"
        f"Cookie: sg_csrf={browser.csrf}\r\n"
        f"X-CSRF-Token: {browser.csrf}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    return head, browser


def test_a_body_that_never_comes_is_cut_off(portal, sink, caplog):
    caplog.set_level(logging.WARNING)
    head, browser = verify_request(portal, sink, length=1000)
    waiting = Client.connect(portal, head + b'{"method": ')  # and nothing more
    trickling = Client.connect(portal, head)
    try:
        trickle(trickling, b" " * 1000, interval=0.1, within=DEADLINE + LATE)
        wait_closed([waiting], within=DEADLINE + LATE)
        for client in (waiting, trickling):
            assert client.closed_after is not None, "kept open"
            assert client.status() == 408
        assert served_normally(portal)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback
    finally:
        close_all([waiting, trickling])
        browser.close()


def test_a_body_that_keeps_the_minimum_rate_may_take_longer(make_gateway, sink):
    running = make_gateway(portal={**SLOW, "body_min_rate": 500})
    body = b'{"method": "email", "code": "000000"}'
    padded = body + b" " * (3000 - len(body))
    head, browser = verify_request(running, sink, length=len(padded))
    client = Client.connect(running, head)
    try:
        started = time.monotonic()
        sent = 0
        while sent < len(padded):  # 2000 bytes a second, four times the minimum
            due = min(len(padded), int((time.monotonic() - started) * 2000))
            client.sock.sendall(padded[sent:due])
            sent = due
            time.sleep(0.02)
        assert time.monotonic() - started > DEADLINE  # longer than body_timeout alone
        client.sock.settimeout(5)
        client.read_response()
        assert client.status() == 401  # answered (a wrong code), not cut off
        assert b"wrong-code" in client.answer
    finally:
        client.sock.close()
        browser.close()


def test_an_idle_keep_alive_connection_outlives_the_header_timeout(portal):
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    client = Client.connect(portal, request)
    try:
        client.sock.settimeout(5)
        client.read_response()
        assert client.status() == 200
        time.sleep(DEADLINE * 1.5)  # idle: the keep-alive timeout (10 s) counts, not ours
        client.answer = b""
        client.sock.sendall(request)
        client.read_response()
        assert client.status() == 200 and client.closed_after is None
        # A later request that stalls half-way is cut off like a first one.
        client.answer = b""
        client.opened = time.monotonic()
        client.sock.sendall(b"GET /heal")
        wait_closed([client], within=DEADLINE + LATE)
        assert client.closed_after is not None and client.closed_after >= DEADLINE * 0.9
        assert client.status() == 408
    finally:
        client.sock.close()


def test_connections_over_the_cap_get_503(make_gateway):
    running = make_gateway(portal={**SLOW, "header_timeout": 30, "max_connections": 5})
    held = [Client.connect(running) for _ in range(5)]
    try:
        time.sleep(0.2)  # all five accepted
        held.append(over := Client.connect(running))
        wait_closed([over], within=LATE)
        assert over.status() == 503 and over.closed_after is not None
    finally:
        close_all(held)
    time.sleep(0.2)  # the server saw them go
    assert served_normally(running)
