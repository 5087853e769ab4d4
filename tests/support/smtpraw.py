"""A bare SMTP client over a socket, for sending exactly the bytes a test needs."""

from __future__ import annotations

import socket


class RawSMTP:
    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 15, source: str | None = None
    ) -> None:
        """``source``: the local address to connect from (127.0.0.2 is a second loopback)."""
        address = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=address)
        self.buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str | bytes) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def reply(self) -> tuple[int, str]:
        """One whole (possibly multi-line) reply: its code and its lines joined."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"connection closed; got so far: {lines!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
