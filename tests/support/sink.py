"""A fake upstream MTA: records what it receives and misbehaves on request.

It answers like a real MTA would (250, 451, 554 at MAIL, RCPT or DATA), can
refuse connections (not listening), drop the connection at a chosen command
without replying, or stall before replying. A message counts as received only
once the sink has sent its 250 for it: a stalled or dropped DATA is not
recorded, as a real MTA that never answered has not taken the message.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]
    tls: bool
    login: str | None


@dataclass
class Behaviour:
    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    # The reply to DATA for a transaction that has this recipient (one message of several).
    data_replies: dict[str, str] = field(default_factory=dict)
    drop_at: str | None = None  # "mail", "rcpt" or "data": close without a reply
    stall_at: str | None = None  # same names: wait stall_seconds before replying
    stall_seconds: float = 0.0


class _SinkSMTP(SMTP):
    # Real MTAs (Postfix) accept lines longer than RFC 5321's 1000 octets.
    line_length_limit = 1 << 20


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def _misbehave(self, server: SMTP, stage: str) -> bool:
        behaviour = self.sink.behaviour
        if behaviour.stall_at == stage:
            await asyncio.sleep(behaviour.stall_seconds)
        if behaviour.drop_at == stage:
            assert server.transport is not None
            server.transport.abort()
            return True
        return False

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.sink.commands.append(f"MAIL {address}")
        if await self._misbehave(server, "mail"):
            return "421 dropped"
        if self.sink.behaviour.mail_reply:
            return self.sink.behaviour.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.sink.commands.append(f"RCPT {address}")
        if await self._misbehave(server, "rcpt"):
            return "421 dropped"
        reply = self.sink.behaviour.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.sink.commands.append("DATA")
        if await self._misbehave(server, "data"):
            return "421 dropped"
        if self.sink.behaviour.data_reply:
            return self.sink.behaviour.data_reply
        for address in envelope.rcpt_tos:
            if address in self.sink.behaviour.data_replies:
                return self.sink.behaviour.data_replies[address]
        self.sink.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=envelope.original_content or b"",
                mail_options=tuple(envelope.mail_options),
                tls=server.transport.get_extra_info("sslcontext") is not None,
                login=session.auth_data.login.decode() if session.auth_data else None,
            )
        )
        return f"250 2.0.0 Ok: queued as SINK{len(self.sink.messages)}"


class Sink:
    """The fake upstream. Start it on the loop it will serve from."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = True,
    ) -> None:
        self.behaviour = Behaviour()
        self.messages: list[Received] = []
        self.commands: list[str] = []
        self.connections = 0
        self.port = 0
        self._tls = tls
        self._implicit = implicit_tls
        self._credentials = credentials
        self._smtputf8 = smtputf8
        self._server: asyncio.Server | None = None
        self._live: set[SMTP] = set()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self._credentials == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def _protocol(self) -> SMTP:
        self.connections += 1
        protocol = _SinkSMTP(
            _Handler(self),
            hostname="sink.test",
            enable_SMTPUTF8=self._smtputf8,
            tls_context=None if self._implicit else self._tls,
            auth_require_tls=not self._implicit,
            authenticator=self._authenticate if self._credentials else None,
            auth_required=bool(self._credentials),
            data_size_limit=None,
        )
        self._live.add(protocol)
        return protocol

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            host="127.0.0.1",
            port=port or self.port,
            ssl=self._tls if self._implicit else None,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening (connections are refused) and drop open connections."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for protocol in self._live:
            if protocol.transport is not None:
                protocol.transport.abort()
        self._live.clear()

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.messages.clear()
        self.commands.clear()
