"""The SMTP client towards the upstream MTA, with a pool of open connections.

Everything Sealgate sends leaves through here: relayed messages, and later
notifications and receipts. A transaction is opened in two steps so that the
caller sees which recipients the upstream accepts before any data is sent;
that is what lets the pipeline never claim delivery for a recipient the
upstream refused (see docs/relay.md for the whole reply mapping).

Reply mapping, in short: anything transient (no connection, TLS or AUTH
failure, 4xx, timeout, lost connection) raises :class:`TemporaryError` with a
451, so the sending MTA keeps the mail. A 5xx about the message raises
:class:`PermanentError` carrying the upstream's code and a sanitised text.
Protocol-level 5xx replies (500-504) mean Sealgate and the upstream disagree
about SMTP, which is no fault of the message, so they count as transient.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

import aiosmtplib

from gateway import config
from gateway.errors import GatewayError, PermanentError, SMTPReply, TemporaryError, safe_text

log = logging.getLogger("sealgate.upstream")

_ENHANCED_PREFIX = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\s+")
_PROTOCOL_ERRORS = range(500, 505)


def reply_of(code: int, message: str) -> SMTPReply:
    """An upstream reply as an :class:`SMTPReply` with a sanitised text."""
    text = message.replace("\n", " ")
    match = _ENHANCED_PREFIX.match(text)
    if match and match.group(1) == str(code)[0]:
        enhanced = ".".join(match.group(1, 2, 3))
        text = text[match.end() :]
    else:
        enhanced = f"{str(code)[0]}.0.0"
    return SMTPReply(code, enhanced, safe_text(text) or "(no text)")


def _temporary(enhanced: str, text: str, detail: str) -> TemporaryError:
    return TemporaryError(451, enhanced, text, detail)


def _failure(
    reply: SMTPReply, what: str, *, about_content: bool = False
) -> TemporaryError | PermanentError:
    """The error to answer our client with, for an upstream refusal of ``what``.

    A 500-504 reply to MAIL or RCPT means Sealgate and the upstream disagree
    about SMTP, no fault of the message: transient. After the data it is
    about the content (a line too long, say): permanent.
    """
    if reply.is_temporary or (reply.code in _PROTOCOL_ERRORS and not about_content):
        enhanced = reply.enhanced if reply.is_temporary else "4.3.0"
        return _temporary(enhanced, f"Upstream deferred {what}: {reply.text}", str(reply))
    code = reply.code if reply.code in (550, 551, 552, 553, 554) else 554
    enhanced = reply.enhanced if reply.enhanced.startswith("5.") else "5.0.0"
    return PermanentError(code, enhanced, f"Upstream refused {what}: {reply.text}", str(reply))


def _connect_error(error: BaseException) -> BaseException:
    """What a failure to connect, say hello, start TLS or log in means for the client."""
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        text = "Upstream refused Sealgate's credentials; try again later"
        return _temporary("4.3.5", text, repr(error))
    if isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError):
        return _temporary("4.7.5", "TLS with the upstream failed; try again later", repr(error))
    if isinstance(error, aiosmtplib.SMTPException | OSError | TimeoutError):
        return _temporary("4.4.1", "Upstream unreachable; try again later", repr(error))
    return error


def client_tls_context(settings: config.Upstream) -> ssl.SSLContext:
    """TLS settings towards the upstream: verification on unless configured off."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.ca_file is not None:
        context.load_verify_locations(cafile=str(settings.ca_file))
    if not settings.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _StaleConnection(Exception):
    """A pooled connection turned out to be closed by the upstream."""


@dataclass(frozen=True)
class _MailOptions:
    smtputf8: bool
    body_8bit: bool
    size: int


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    idle_since: float = field(default_factory=time.monotonic)
    reused: bool = False

    @property
    def alive(self) -> bool:
        return self.client.is_connected


class UpstreamPool:
    """Connections to the upstream MTA, kept open between messages."""

    def __init__(self, settings: config.Upstream, helo_name: str) -> None:
        self.settings = settings
        self._helo = settings.helo_name or helo_name
        self._tls = client_tls_context(settings) if settings.tls != "none" else None
        self._password = settings.read_password() if settings.username else ""
        self._idle: list[_Connection] = []
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None

    async def open(
        self,
        mail_from: str,
        rcpt_tos: Sequence[str],
        *,
        smtputf8: bool = False,
        body_8bit: bool = False,
        size: int = 0,
    ) -> UpstreamTransaction:
        """Start a transaction: MAIL and one RCPT per recipient.

        Raises :class:`TemporaryError` if any recipient is deferred (nothing is
        sent then, so a retry cannot duplicate anything) and the upstream's
        error if the sender or every recipient is refused. Otherwise the
        returned transaction says which recipients were accepted and which
        were refused for good.
        """
        options = _MailOptions(smtputf8=smtputf8, body_8bit=body_8bit, size=size)
        conn = await self._acquire()
        try:
            try:
                await self._mail(conn, mail_from, options)
            except _StaleConnection:
                # The upstream closed an idle connection before our MAIL:
                # nothing was sent, so one retry on a fresh connection is safe.
                self._discard(conn)
                conn = await self._connect()
                await self._mail(conn, mail_from, options)
            transaction = UpstreamTransaction(self, conn)
            await transaction._recipients(rcpt_tos)
            return transaction
        except GatewayError:
            await self._reset_or_discard(conn)
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            self._discard(conn)
            raise _temporary(
                "4.4.2", "Upstream connection failed; try again later", repr(error)
            ) from None
        except BaseException:
            self._discard(conn)
            raise

    async def send(
        self, mail_from: str, rcpt_tos: Sequence[str], data: bytes, *, smtputf8: bool = False
    ) -> SMTPReply:
        """Deliver ``data`` to every recipient or raise: for messages Sealgate writes itself."""
        transaction = await self.open(
            mail_from, rcpt_tos, smtputf8=smtputf8, body_8bit=True, size=len(data)
        )
        async with transaction:
            if transaction.refused:
                address, reply = next(iter(transaction.refused.items()))
                raise _failure(reply, f"recipient {address}")
            return await transaction.send_data(data)

    async def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(conn) for conn in idle))

    async def _mail(self, conn: _Connection, mail_from: str, options: _MailOptions) -> None:
        client = conn.client
        params: list[bytes] = []
        if options.smtputf8:
            if not client.supports_extension("smtputf8"):
                raise PermanentError(
                    554, "5.6.7", "Upstream does not support SMTPUTF8, which this message needs"
                )
            params.append(b"SMTPUTF8")
        if options.body_8bit and client.supports_extension("8bitmime"):
            params.append(b"BODY=8BITMIME")
        if options.size and client.supports_extension("size"):
            params.append(b"SIZE=%d" % options.size)
        try:
            response = await client.execute_command(
                b"MAIL", b"FROM:<" + _wire(mail_from) + b">", *params
            )
        except aiosmtplib.SMTPServerDisconnected:
            if conn.reused:
                raise _StaleConnection from None
            raise
        if response.code == 421 and conn.reused:
            raise _StaleConnection
        if response.code != 250:
            raise _failure(reply_of(response.code, response.message), "the sender")

    async def _acquire(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.alive and now - conn.idle_since < self.settings.idle_timeout:
                conn.reused = True
                return conn
            self._discard(conn)
        return await self._connect()

    async def _connect(self) -> _Connection:
        settings = self.settings
        server_name = settings.server_name or settings.host
        client: aiosmtplib.SMTP | None = None
        try:
            sock = await _open_socket(settings.host, settings.port, settings.connect_timeout)
            client = aiosmtplib.SMTP(
                hostname=server_name,
                local_hostname=self._helo,
                timeout=settings.command_timeout,
                use_tls=settings.tls == "implicit",
                start_tls=False,
                tls_context=self._tls,
                sock=sock,
            )
            await client.connect(timeout=settings.connect_timeout)
            await self._prepare(client, server_name)
        except BaseException as error:
            if client is not None:
                client.close()
            raise _connect_error(error) from None
        self._start_reaper()
        return _Connection(client)

    async def _prepare(self, client: aiosmtplib.SMTP, server_name: str) -> None:
        """EHLO, then STARTTLS and AUTH as configured."""
        await client.ehlo()
        if self.settings.tls == "starttls":
            if not client.supports_extension("starttls"):
                raise _temporary(
                    "4.7.4", "Upstream does not offer STARTTLS; try again later", "no STARTTLS"
                )
            await client.starttls(server_hostname=server_name, tls_context=self._tls)
            await client.ehlo()
        if self.settings.username:
            await self._login(client)

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        """One AUTH attempt with the best mechanism offered, so a refusal is unambiguous."""
        methods = client.server_auth_methods
        username = self.settings.username
        if "plain" in methods:
            await client.auth_plain(username, self._password)
        elif "login" in methods:
            await client.auth_login(username, self._password)
        else:
            raise _temporary(
                "4.3.5",
                "Upstream offers no AUTH mechanism Sealgate can use; try again later",
                f"offered: {methods}",
            )

    async def _release(self, conn: _Connection) -> None:
        if self._closed or not conn.alive or len(self._idle) >= self.settings.max_idle_connections:
            await self._quit(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def _reset_or_discard(self, conn: _Connection) -> None:
        try:
            await conn.client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._discard(conn)
            return
        await self._release(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.client.close()

    async def _quit(self, conn: _Connection) -> None:
        try:
            await asyncio.wait_for(conn.client.quit(), timeout=5)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            conn.client.close()

    def _start_reaper(self) -> None:
        if self._reaper is None and self.settings.max_idle_connections:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """Close connections idle longer than ``idle_timeout``, before the upstream does."""
        while True:
            await asyncio.sleep(self.settings.idle_timeout / 2)
            deadline = time.monotonic() - self.settings.idle_timeout
            stale = [conn for conn in self._idle if conn.idle_since < deadline or not conn.alive]
            self._idle = [conn for conn in self._idle if conn not in stale]
            await asyncio.gather(*(self._quit(conn) for conn in stale))


class UpstreamTransaction:
    """An open upstream transaction after its RCPT commands.

    Use it as an async context manager: leaving it without :meth:`send_data`
    resets the transaction, and the connection goes back to the pool.
    """

    def __init__(self, pool: UpstreamPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self._done = False
        self.accepted: list[str] = []
        self.refused: dict[str, SMTPReply] = {}

    async def _recipients(self, rcpt_tos: Sequence[str]) -> None:
        deferred: dict[str, SMTPReply] = {}
        for address in rcpt_tos:
            response = await self._conn.client.execute_command(
                b"RCPT", b"TO:<" + _wire(address) + b">"
            )
            if response.code in (250, 251):
                self.accepted.append(address)
                continue
            reply = reply_of(response.code, response.message)
            if reply.is_temporary or reply.code in _PROTOCOL_ERRORS:
                deferred[address] = reply
            else:
                self.refused[address] = reply
        if deferred:
            address, reply = next(iter(deferred.items()))
            what = f"recipient {address}" if len(deferred) == 1 else f"{len(deferred)} recipients"
            raise _failure(reply, what)
        if not self.accepted:
            address, reply = next(iter(self.refused.items()))
            what = (
                f"recipient {address}"
                if len(self.refused) == 1
                else f"all {len(self.refused)} recipients"
            )
            raise _failure(reply, what)

    async def send_data(self, data: bytes) -> SMTPReply:
        """Send the message to the accepted recipients; the upstream's 250 reply."""
        self._done = True
        client = self._conn.client
        try:
            response = await client.data(data, timeout=self._pool.settings.data_timeout)
        except aiosmtplib.SMTPDataError as error:
            await self._pool._reset_or_discard(self._conn)
            reply = reply_of(error.code, error.message)
            raise _failure(reply, "the message", about_content=True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            self._pool._discard(self._conn)
            raise _temporary(
                "4.4.2", "Connection to the upstream lost during data; try again later", repr(error)
            ) from None
        except BaseException:
            self._pool._discard(self._conn)
            raise
        await self._pool._release(self._conn)
        return reply_of(response.code, response.message)

    async def __aenter__(self) -> UpstreamTransaction:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._done:
            return
        self._done = True
        if kind is None or issubclass(kind, Exception):
            await self._pool._reset_or_discard(self._conn)
        else:
            self._pool._discard(self._conn)


def _wire(address: str) -> bytes:
    """An envelope address as it goes on the wire: exactly as received (RFC 6531 UTF-8 too)."""
    return b"" if address == "<>" else address.encode("utf-8", "surrogateescape")


async def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected non-blocking TCP socket, trying each address of ``host`` in turn."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout
    )
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout=timeout)
            return sock
        except (OSError, TimeoutError) as error:
            sock.close()
            last = error if isinstance(error, OSError) else OSError(str(error))
    raise last or OSError(f"no address for {host}")
