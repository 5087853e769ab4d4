"""The SMTP protocol as Sealgate speaks it: aiosmtpd's server with our rules.

What this adds to aiosmtpd's ``SMTP``:

- DATA is read here, in chunks rather than lines and without copies of the
  message (:mod:`gateway.intake.data`), so that a bare CR or LF anywhere in the
  data is refused (the SMTP smuggling defence, RFC 5321 2.3.8), as is a NUL, the
  size limit answers ``552 5.3.4``, long lines are accepted rather than bounced,
  memory is accounted for, and the idle timer does not fire while the pipeline
  works.
- A NUL in a command line is refused before the command runs.
- XFORWARD (Postfix's extension) from trusted hosts only.
- AUTH PLAIN and LOGIN checked against Argon2id hashes off the event loop,
  with lockout after repeated failures.
- An unexpected error answers ``451 4.3.0``, never aiosmtpd's ``500`` with
  the exception text, and every reply carries an enhanced status code.
- Connection slots kept for the MTA in front, a limit per other client, and
  deadlines: to authenticate (clients outside ``smtp.allow_networks``) and to
  start a transaction (everyone); see :mod:`gateway.intake.capacity`.
- A graceful close for shutdown.

This relies on aiosmtpd internals (``_reader``, ``_reset_timeout``,
``_handle_client``), which is why pyproject.toml pins aiosmtpd to 1.4.x.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import logging
import re
import secrets
import ssl
from base64 import b64decode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, syntax

from gateway import config
from gateway.errors import INTERNAL_ERROR
from gateway.intake.access import Credentials, in_networks
from gateway.intake.capacity import Connections
from gateway.intake.data import DataReceiver, read_chunk

log = logging.getLogger("sealgate.intake")

XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
_UNAVAILABLE = {"[UNAVAILABLE]", "[TEMPUNAVAIL]"}
_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}")
# Enhanced codes (RFC 3463) for aiosmtpd's own replies, which have none.
_DEFAULT_ENHANCED = {
    "221": "2.0.0", "250": "2.0.0", "235": "2.7.0", "252": "2.5.0",
    "421": "4.3.2", "451": "4.3.0", "452": "4.5.3", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "538": "5.7.11", "550": "5.7.1", "552": "5.3.4",
    "553": "5.1.3", "554": "5.7.0", "555": "5.5.4",
}  # fmt: skip
_BUDGET_STEP = 1 << 20
_TIMER_STEP = 1 << 16

SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed maximum message size"
NO_MEMORY = "452 4.3.1 Insufficient system storage; please try again later"
BARE_NEWLINE = (
    "554 5.6.0 Message refused: bare CR or LF in the data; lines must end with CRLF "
    "(RFC 5321 2.3.8)"
)
NUL_IN_DATA = (
    "554 5.6.0 Message refused: NUL character in the data; mail may not contain NUL octets"
)
NUL_IN_COMMAND = "501 5.5.2 Syntax error: NUL character in the command line"
# "<" dot-atom "@" LDH labels ">", then blanks that are not followed by a comment.
_PLAIN_ADDRESS = re.compile(
    r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*(?![ \t(])"
)
SHUTTING_DOWN = "421 4.3.2 Service shutting down; please try again later"
AUTH_TOO_LATE = "421 4.7.0 Not authenticated in time; closing the connection"
MAIL_TOO_LATE = "421 4.4.2 No mail transaction started in time; closing the connection"


class MemoryBudget:
    """Bytes of message data that all transactions together may hold."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, amount: int) -> bool:
        if self.used + amount > self.limit:
            return False
        self.used += amount
        return True

    def release(self, amount: int) -> None:
        self.used = max(0, self.used - amount)


class SealgateSession(Session):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.xforward: dict[str, str | None] = {}


class SealgateEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.queue_id = ""


def with_enhanced_code(status: str) -> str:
    """``status`` with an enhanced code (RFC 3463) if it has none.

    RFC 2034 3: once ENHANCEDSTATUSCODES is announced, every reply but the
    greeting and the HELO/EHLO replies carries one; aiosmtpd's own replies
    do not, so they get the usual code for their basic code.
    """
    if _HAS_ENHANCED.match(status) or status[3:4] != " ":
        return status
    enhanced = _DEFAULT_ENHANCED.get(status[:3])
    return f"{status[:3]} {enhanced}{status[3:]}" if enhanced else status


def peer_of(session: Session) -> tuple[str, int]:
    """The client's address and port (aiosmtpd types ``peer`` loosely)."""
    peer = cast(tuple[str, int] | None, session.peer)
    return (str(peer[0]), int(peer[1])) if peer else ("", 0)


def new_queue_id() -> str:
    """A short random id for one transaction, shown to the client and in every log line."""
    return secrets.token_hex(6).upper()


@dataclass
class Limits:
    """What one connection needs to know of the whole server."""

    settings: config.SMTP
    credentials: Credentials
    budget: MemoryBudget
    connections: Connections[SealgateSMTP]


class SealgateSMTP(SMTP):
    # The stream reader's limit: the longest command line read before aiosmtpd
    # answers "500 Command line too long", the largest DATA chunk read at once,
    # and the buffer size at which reading pauses (twice this).
    line_length_limit = 1 << 16

    def __init__(self, handler: Any, limits: Limits, tls_context: ssl.SSLContext | None) -> None:
        settings = limits.settings
        super().__init__(
            handler,
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.hostname,
            ident="Sealgate ESMTP",
            tls_context=tls_context,
            require_starttls=False,
            timeout=settings.command_timeout,
            auth_require_tls=True,
            auth_exclude_mechanism=[] if limits.credentials.enabled else ["PLAIN", "LOGIN"],
            command_call_limit={"AUTH": limits.settings.auth.max_failures, "*": 1 << 30},
        )
        self.limits = limits
        self.reserved = 0
        self.processing = False
        self.closing = False
        self._greeting_reply = False
        self._auth_deadline: asyncio.TimerHandle | None = None
        self._mail_deadline: asyncio.TimerHandle | None = None

    def __dir__(self) -> list[str]:
        """The command and AUTH methods only.

        aiosmtpd finds them for every new connection with ``dir()`` and
        ``inspect.getmembers()``, which over every attribute cost about 250 µs a
        connection, a tenth of relaying a message. Nothing else lists attributes.
        """
        return list(_PROTOCOL_METHODS)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing, with a fast path for the plain ``<local@domain>``.

        aiosmtpd runs the email package's header parser and defines a class on every
        call, 8 % of the event loop's time on the protected path. An address of
        dot-atoms and an LDH domain comes out the same from a regular expression
        (tests/test_intake.py compares the two); anything else goes the long way.
        """
        plain = _PLAIN_ADDRESS.match(arg)
        if plain is None:
            return super()._getaddr(arg)
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[plain.end() :]

    # -- connection life -------------------------------------------------

    def _create_session(self) -> Session:
        return SealgateSession(self.loop)

    def _create_envelope(self) -> Envelope:
        return SealgateEnvelope()

    async def _handle_client(self) -> None:
        settings = self.limits.settings
        connections = self.limits.connections
        host = peer_of(self.session)[0] if self.session else ""
        allowed = in_networks(host, settings.allow_networks)
        refusal = connections.admit(self, host, allowed, settings)
        if refusal is not None:
            log.warning(
                "connection refused: too many connections",
                extra={"fields": {**self._who(), "reply": refusal}},
            )
            await self.push(refusal)
            self._close()
            return
        if not allowed:
            self._auth_deadline = self.loop.call_later(
                settings.auth_timeout, self._auth_deadline_passed
            )
        self._start_mail_deadline()
        try:
            await super()._handle_client()
        finally:
            connections.discard(self)

    # -- deadlines -----------------------------------------------------------
    #
    # The idle timer (smtp.command_timeout) does not stop a client that keeps
    # a slot with a NOOP now and then; these do. Each writes its 421 itself,
    # as the client is not waiting for a reply, and closes the connection.

    def _start_mail_deadline(self) -> None:
        self._cancel(self._mail_deadline)
        if self.transport is None:  # the connection is gone already
            return
        self._mail_deadline = self.loop.call_later(
            self.limits.settings.mail_timeout, self._mail_deadline_passed
        )

    @staticmethod
    def _cancel(handle: asyncio.TimerHandle | None) -> None:
        if handle is not None:
            handle.cancel()

    def _auth_deadline_passed(self) -> None:
        if self.session is not None and not self.session.authenticated:
            self._take_back(AUTH_TOO_LATE)

    def _mail_deadline_passed(self) -> None:
        if not self.in_transaction():
            self._take_back(MAIL_TOO_LATE)

    def _take_back(self, reply: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        log.info(
            "connection closed: deadline passed", extra={"fields": {**self._who(), "reply": reply}}
        )
        self._writer.write(reply.encode() + b"\r\n")
        self._close()

    def connection_lost(self, error: Exception | None) -> None:
        self._cancel(self._auth_deadline)
        self._cancel(self._mail_deadline)
        if self.in_transaction():
            # No reply was given: the client keeps the message and retries.
            queue_id = getattr(self.envelope, "queue_id", "")
            log.warning(
                "transaction cut off: connection closed before the reply",
                extra={"fields": {"queue_id": queue_id, **self._who()}},
            )
        self.limits.connections.discard(self)
        self._release_budget()
        super().connection_lost(error)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def in_transaction(self) -> bool:
        return self.processing or bool(self.envelope is not None and self.envelope.mail_from)

    async def close_gracefully(self) -> None:
        """Say goodbye now if idle; otherwise after the transaction's reply."""
        self.closing = True
        if not self.in_transaction() and self.transport is not None:
            await self.push(SHUTTING_DOWN)
            self._close()

    def _who(self) -> dict[str, Any]:
        return {"client": peer_of(self.session)[0] if self.session else None}

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if self.closing:
            # Shutting down: no new transaction on this connection.
            await self.push(SHUTTING_DOWN)
            self._close()
            return
        await super().smtp_MAIL(arg)
        if self.envelope is not None and self.envelope.mail_from:
            self._cancel(self._mail_deadline)

    # -- replies -----------------------------------------------------------

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._greeting_reply = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._greeting_reply = False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self._greeting_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._greeting_reply = False

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and not self._greeting_reply:
            await super().push(with_enhanced_code(status))
        else:
            await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        log.error("unexpected error in SMTP session", exc_info=error, extra={"fields": self._who()})
        return str(INTERNAL_ERROR)

    def _set_rset_state(self) -> None:
        # HELO, EHLO and RSET: like Postfix, forget what XFORWARD said.
        if isinstance(self.session, SealgateSession):
            self.session.xforward.clear()
        super()._set_rset_state()  # type: ignore[no-untyped-call]

    def _set_post_data_state(self) -> None:
        # The end of a transaction (DATA answered, RSET, HELO, EHLO): the
        # client has mail_timeout again to start the next one.
        if self.envelope is not None and self.envelope.mail_from:
            self._start_mail_deadline()
        self._release_budget()
        super()._set_post_data_state()  # type: ignore[no-untyped-call]

    def _release_budget(self) -> None:
        if self.reserved:
            self.limits.budget.release(self.reserved)
            self.reserved = 0

    def reserve(self, total: int) -> bool:
        """Make sure this transaction holds at least ``total`` bytes of the budget."""
        if total <= self.reserved:
            return True
        step = max(total - self.reserved, _BUDGET_STEP)
        if not self.limits.budget.reserve(step):
            return False
        self.reserved += step
        return True

    # -- XFORWARD (www.postfix.org/XFORWARD_README.html) ---------------------

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg: str | None) -> None:
        assert self.session is not None and self.envelope is not None
        if not self.xforward_allowed():
            await self.push("550 5.7.0 Error: insufficient authorization")
            return
        if self.envelope.mail_from:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        if not arg:
            await self.push("501 5.5.4 Syntax: XFORWARD attribute=value ...")
            return
        update: dict[str, str | None] = {}
        for item in arg.split():
            name, eq, value = item.partition("=")
            if not eq or name.upper() not in XFORWARD_ATTRIBUTES:
                await self.push(f"501 5.5.4 Bad XFORWARD attribute: {name[:30]!r}")
                return
            decoded = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), value)
            update[name.lower()] = None if decoded in _UNAVAILABLE else decoded
        assert isinstance(self.session, SealgateSession)
        self.session.xforward.update(update)
        await self.push("250 2.0.0 Ok")

    def xforward_allowed(self) -> bool:
        if self.session is None:
            return False
        return in_networks(peer_of(self.session)[0], self.limits.settings.xforward_hosts)

    # -- AUTH ------------------------------------------------------------------

    async def auth_PLAIN(self, _: SMTP, args: list[str]) -> AuthResult:
        if await self._refuse_locked_out():
            return AuthResult(success=False, handled=True)
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1], validate=True)
            except binascii.Error:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._check_login(parts[1], parts[2])

    async def auth_LOGIN(self, _: SMTP, args: list[str]) -> AuthResult:
        if await self._refuse_locked_out():
            return AuthResult(success=False, handled=True)
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
        else:
            try:
                login = b64decode(args[1], validate=True)
            except binascii.Error:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        if not isinstance(login, bytes):
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check_login(login, password)

    async def _refuse_locked_out(self) -> bool:
        assert self.session is not None
        if self.limits.credentials.locked_out(peer_of(self.session)[0]):
            await self.push("454 4.7.0 Too many failed authentications; please try again later")
            return True
        return False

    async def _check_login(self, login: bytes, password: bytes) -> AuthResult:
        assert self.session is not None
        client = peer_of(self.session)[0]
        name = await self.limits.credentials.verify(client, login, password)
        if name is None:
            log.warning(
                "authentication failed",
                extra={"fields": {"client": client, "user": login.decode("utf-8", "replace")[:64]}},
            )
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=name)

    # -- DATA ------------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = await self._receive_data()
        if received is None:  # the client is gone; it keeps the message
            self._close()
            return
        content, problem = received
        if problem is not None:
            self._set_post_data_state()
            await self.push(problem)
            await self._close_if_shutting_down()
            return
        self.envelope.content = self.envelope.original_content = content
        # The client waits for our reply while the pipeline works: that is
        # not idleness, so the idle timer must not cut the connection.
        self.processing = True
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self.processing = False
            self._reset_timeout()
        self._set_post_data_state()
        await self.push(status)
        await self._close_if_shutting_down()

    async def _close_if_shutting_down(self) -> None:
        # The reply just pushed is flushed before the connection closes; an
        # unsolicited 421 here would be read as the reply to the client's
        # next command (QUIT), so the connection simply ends.
        if self.closing:
            self._close()

    async def _receive_data(self) -> tuple[bytes, str | None] | None:
        """Read DATA up to the lone dot; the content, or the reply that refuses it, or
        None if the client closed the connection first.

        Only CRLF.CRLF ends the data, and a CR or LF anywhere else than in a
        CRLF makes the message refused: no other reading of "end of data" can
        then matter to an MTA further on (SMTP smuggling, RFC 5321 2.3.8).
        The data is read in chunks up to the next ".CRLF" rather than line by
        line; lines of any length are accepted up to the size limit. A refused
        message is still read to its end (then refused), holding nothing.
        """
        receiver = DataReceiver()
        problem: str | None = None
        since_timer = 0
        self._reset_timeout(self.limits.settings.data_timeout)
        while not receiver.done:
            chunk = await read_chunk(self._reader)
            if chunk is None:
                return None
            receiver.feed(chunk)
            since_timer += len(chunk)
            if since_timer >= _TIMER_STEP:
                self._reset_timeout(self.limits.settings.data_timeout)
                since_timer = 0
            if problem is None:
                problem = self._over_limits(receiver.size)
                if problem is not None:
                    receiver.drop()
        if problem is None and receiver.bare_line_end:
            problem = BARE_NEWLINE
        if problem is None and receiver.nul:
            problem = NUL_IN_DATA
        return (b"", problem) if problem is not None else (receiver.content(), None)

    def _over_limits(self, size: int) -> str | None:
        """The reply refusing a message of which ``size`` bytes came so far, if it is one.

        The size limit counts the data without its terminating ".CRLF", as aiosmtpd
        does; the memory budget counts all that came.
        """
        limit = self.data_size_limit or 0
        if limit and size > limit + 3:
            return SIZE_EXCEEDED
        if size > self.reserved and not self.reserve(size):
            return NO_MEMORY
        return None


def _refusing_nul(command: Callable[[SealgateSMTP, str | None], Awaitable[None]]) -> Any:
    """An ``smtp_*`` command behind a check that its argument has no NUL.

    aiosmtpd passes NUL octets in command lines on; no SMTP command may carry
    one, and an address holding one would fail only later, at the upstream.
    """

    @functools.wraps(command)  # its attributes hold the syntax HELP shows
    async def refusing(self: SealgateSMTP, arg: str | None) -> None:
        if arg is not None and "\0" in arg:
            await self.push(NUL_IN_COMMAND)
            return
        await command(self, arg)

    return refusing


# Wrapped once, on the class: per connection it cost 14 closures and their copies.
for _name in [name for name in dir(SealgateSMTP) if name.startswith("smtp_")]:
    setattr(SealgateSMTP, _name, _refusing_nul(getattr(SealgateSMTP, _name)))
_PROTOCOL_METHODS = sorted(
    name for name in dir(SealgateSMTP) if name.startswith(("smtp_", "auth_"))
)
