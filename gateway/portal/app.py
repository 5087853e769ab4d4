"""The portal's routes: the link page, the second factor, the sealed data, replies.

The sender's pages (revoke, release) are in gateway.portal.senderpages, the
links to them in gateway.portal.links, what every page shares (templates in
the reader's language, cookies) in gateway.portal.rendering.

Rules every route keeps:

- ``GET /m/{link}`` only reads. It renders a page, never sends a code, never
  spends the link, never records an event: a link scanner (Safe Links and the
  like) that fetches it first breaks nothing, and links are not single-use.
- Every change is a POST with the CSRF pair (security.csrf_ok), and only
  after the second factor does the server release anything sealed: the
  encrypted reader key, the wrapped content key and the sealed parts.
  Plaintext never exists here; the browser decrypts with the link's fragment.
- Every verification attempt, code sent, open, download and reply goes into
  the envelope's audit trail, with ids and the client's address, never a code.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import filetype
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from gateway.envelope import keys
from gateway.errors import PermanentError, TemporaryError
from gateway.identity.accounts import FactorOff, KeyUpload, UploadError, check_upload
from gateway.identity.secondfactor import normal_phone
from gateway.identity.textcodes import TextCodeError
from gateway.identity.totp import TOTPError
from gateway.logsetup import event
from gateway.portal import i18n, scim
from gateway.portal.accountpages import AccountPages
from gateway.portal.codes import SendLimit, mask_address, mask_phone
from gateway.portal.deps import PortalDeps
from gateway.portal.problems import Problem as _Problem
from gateway.portal.problems import json_error as _json_error
from gateway.portal.rendering import Pages, opening
from gateway.portal.replies import reply_id
from gateway.portal.security import (
    SecurityHeaders,
    TooLarge,
    new_token,
    read_body,
)
from gateway.portal.senderpages import SenderPages
from gateway.portal.sms import SMSError
from gateway.portal.ssopages import SSOPages
from gateway.store import (
    AccountExists,
    EnvelopeRecord,
    ReaderRecord,
    StoreError,
)

log = logging.getLogger("sealgate.portal")

_HERE = Path(__file__).parent
_SESSION = "sg_session"
_DEVICE = "sg_device"
_LANG = "sg_lang"
_MAX_LOGO = 256 * 1024
_REPLIES_PER_HOUR = 20  # per reader: each one is stored and mailed to the sender


def create_app(deps: PortalDeps) -> ASGIApp:
    portal = _Portal(deps)
    account = portal.account_pages
    sso = SSOPages(deps, account)
    sender = SenderPages(deps)
    routes = [
        Route("/m/{link}", portal.page, methods=["GET"]),
        Route("/m/{link}/code", portal.send_code, methods=["POST"]),
        Route("/m/{link}/verify", portal.verify, methods=["POST"]),
        Route("/m/{link}/open", portal.open, methods=["POST"]),
        Route("/m/{link}/part/{part:int}", portal.part, methods=["POST"]),
        Route("/m/{link}/reply", portal.reply, methods=["POST"]),
        Route("/m/{link}/logout", portal.logout, methods=["POST"]),
        Route("/m/{link}/account/enrol", portal.account_enrol, methods=["POST"]),
        Route("/m/{link}/account/phone", portal.account_phone, methods=["POST"]),
        Route("/m/{link}/account", portal.account_create, methods=["POST"]),
        Route("/m/{link}/claim", portal.claim, methods=["POST"]),
        Route("/", account.start, methods=["GET"]),
        Route("/inbox/{envelope_id}", account.message_page, methods=["GET"]),
        Route("/account/unlocking", account.unlocking, methods=["POST"]),
        Route("/account/sign-in", account.sign_in, methods=["POST"]),
        Route("/account/sign-in/text", account.sign_in_text, methods=["POST"]),
        Route("/account/factors", account.factors, methods=["POST"]),
        Route("/account/phone/code", account.phone_code, methods=["POST"]),
        Route("/account/phone", account.add_phone, methods=["POST"]),
        Route("/account/totp/enrol", account.totp_enrolment, methods=["POST"]),
        Route("/account/totp", account.add_totp, methods=["POST"]),
        Route("/account/sign-out", account.sign_out, methods=["POST"]),
        Route("/account/password", account.change_password, methods=["POST"]),
        Route("/account/delete", account.delete, methods=["POST"]),
        Route("/account/sessions", account.sessions, methods=["POST"]),
        Route("/account/reset/code", account.reset_code, methods=["POST"]),
        Route("/account/reset/text", account.reset_text, methods=["POST"]),
        Route("/account/sso/renew", sso.renew, methods=["POST"]),
        Route("/account/sso/new-key", sso.new_key, methods=["POST"]),
        Route("/sso/{provider}", sso.start, methods=["GET"]),
        Route("/sso/{provider}/callback", sso.callback, methods=["GET"]),
        Route("/account/reset", account.reset, methods=["POST"]),
        Route("/account/passkey/options", account.passkey_options, methods=["POST"]),
        Route("/account/passkey", account.add_passkey, methods=["POST"]),
        Route(
            "/account/passkey/sign-in-options", account.passkey_sign_in_options, methods=["POST"]
        ),
        Route("/account/sessions/end", account.end_session, methods=["POST"]),
        Route("/account/inbox", account.inbox, methods=["POST"]),
        Route("/account/messages/{envelope_id}/open", account.open, methods=["POST"]),
        Route("/account/messages/{envelope_id}/part/{part:int}", account.part, methods=["POST"]),
        Route("/s/{envelope_id}/{token}", sender.revoke, methods=["GET", "POST"]),
        Route("/sent", sender.sent_list, methods=["GET"]),
        Route("/sent/{envelope_id:str}", sender.sent_message, methods=["GET", "POST"]),
        Route("/sent/{envelope_id:str}/resend", sender.resend, methods=["POST"]),
        Route("/h/{envelope_id}/{token}", sender.release, methods=["GET", "POST"]),
        Route("/assets/theme.css", portal.theme, methods=["GET"]),
        Route("/assets/logo", portal.logo, methods=["GET"]),
        Route("/healthz", portal.health, methods=["GET"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    if deps.scim is not None:  # the organisation's directory provisions people here
        from gateway.portal.scimapp import scim_app  # heavy: only when SCIM is on

        routes.append(Mount(scim.PREFIX, app=scim_app(deps, deps.scim)))
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: portal.http_error,
            ClientDisconnect: _client_gone,
            Exception: portal.server_error,
        },
    )
    # Outermost, so that even the 500s of Starlette's own error middleware carry them.
    return SecurityHeaders(app, https=deps.https)


async def _client_gone(request: Request, error: Exception) -> Response:
    """The client went, or was cut off as too slow, while its body was read: there is no
    one to answer, and nothing to log (a slow client must not flood the log)."""
    return Response(status_code=400)


@dataclass(frozen=True)
class _Link:
    """A link's reader and envelope, and whether it can still be read."""

    envelope: EnvelopeRecord
    reader: ReaderRecord
    state: str  # "live" | "expired" | "revoked"


class _Portal(Pages):
    """The recipient's side: the link page, second factors, the sealed data, replies."""

    def __init__(self, deps: PortalDeps) -> None:
        super().__init__(deps)
        self.account_pages = AccountPages(deps)

    # an account for the reader's address (proved by the emailed code)

    async def account_enrol(self, request: Request) -> Response:
        """A new TOTP seed for the account about to be made: its QR code and a token
        that carries it, sealed, to :meth:`account_create` (nothing is stored yet)."""
        try:
            link, _ = await self._post(request)
            totp = self.account_pages.desk.totp
            address = await self._proved_mailbox(request, link)
            if totp is None:
                raise _Problem(404, "factor-off")
            enrolment = await asyncio.to_thread(totp.enrolment, address, datetime.now(UTC))
        except _Problem as problem:
            return _json_error(problem)
        return JSONResponse(
            {
                "address": address,
                "token": enrolment.token,
                "uri": enrolment.uri,
                "svg": enrolment.svg,
                "secret": enrolment.secret,
            }
        )

    async def account_phone(self, request: Request) -> Response:
        """Text a code to ``{phone}`` to prove it for the account about to be made; the
        token goes back to :meth:`account_create` (nothing is stored yet)."""
        try:
            link, body = await self._post(request)
            address = await self._proved_mailbox(request, link)
            phone = normal_phone(str(body.get("phone", ""))[:40])
            if phone is None:
                raise _Problem(400, "phone")
            token = await self.account_pages.text_enrolment(request, address, phone)
        except _Problem as problem:
            return _json_error(problem)
        return JSONResponse({"token": token, "sent_to": mask_phone(phone)})

    async def account_create(self, request: Request) -> Response:
        """Create the account from the keys the browser made, with the second factor just
        enrolled: the app (``totp_token``, ``totp_code``) or a phone (``phone``,
        ``text_token``, ``text_code``)."""
        try:
            link, body = await self._post(request)
            address = await self._proved_mailbox(request, link)
            try:
                upload = check_upload(body)
            except UploadError as error:
                raise _Problem(400, "upload", field=error.field) from None
            method, recovery = await self._sign_up(address, upload, body)
        except _Problem as problem:
            return _json_error(problem)
        event(log, logging.INFO, "account created", envelope=link.envelope.envelope_id,
              factor=method)  # fmt: skip
        # Shown once: only their HMACs are kept.
        response = JSONResponse({"address": address, "recovery_codes": recovery}, status_code=201)
        await self.account_pages.start_session(response, address, method)
        return response

    async def _sign_up(
        self, address: str, upload: KeyUpload, body: dict[str, Any]
    ) -> tuple[str, list[str]]:
        """(factor, recovery codes) of the new account; _Problem for a wrong code."""
        desk = self.account_pages.desk
        now = datetime.now(UTC)
        by_text = "text_token" in body
        names = ("text_token", "text_code") if by_text else ("totp_token", "totp_code")
        token, code = body.get(names[0]), body.get(names[1])
        if not isinstance(token, str) or not isinstance(code, str) or len(token) > 400:
            raise _Problem(400, "bad-request")
        try:
            if by_text:
                phone = normal_phone(str(body.get("phone", ""))[:40])
                if phone is None:
                    raise _Problem(400, "phone")
                create = partial(
                    desk.sign_up_by_text, address, upload, phone, token, code[:16], now
                )
            else:
                create = partial(desk.sign_up, address, upload, token, code[:16], now)
            recovery = await asyncio.to_thread(create)
        except FactorOff:
            raise _Problem(404, "factor-off") from None
        except (TOTPError, TextCodeError):
            raise _Problem(400, "enrolment") from None
        except AccountExists:
            raise _Problem(409, "account-exists") from None
        return ("sms" if by_text else "totp"), recovery

    async def claim(self, request: Request) -> Response:
        """Add this message to the reader's account: K wrapped by the browser, which opened
        it with the link, to the account's public key. The link keeps working."""
        try:
            link, body = await self._post(request)
            desk = self.account_pages.desk
            address = await self._proved_mailbox(request, link)
            account = await asyncio.to_thread(self.deps.store.get_account, address)
            if account is None:
                raise _Problem(409, "no-account")
            wrapped = body.get("wrapped_key")
            try:
                key = keys.b64url_decode(wrapped if isinstance(wrapped, str) else "")
            except ValueError:
                raise _Problem(400, "bad-request") from None
            if len(key) != keys.rsa_size(account.public_key) // 8:
                raise _Problem(400, "bad-request")
            envelope_id = link.envelope.envelope_id
            added = await asyncio.to_thread(desk.accounts.claim, envelope_id, address, key)
        except _Problem as problem:
            return _json_error(problem)
        return JSONResponse({"ok": True, "added": added})

    async def _account_key(self, reader: ReaderRecord, proof: str | None) -> str | None:
        """The public key of the account of the reader's address, for a browser that proved
        the mailbox (``proof`` "email": the address's account is then no secret to it)."""
        if self.deps.accounts is None or proof != "email":
            return None
        account = await asyncio.to_thread(self.deps.store.get_account, reader.address)
        return keys.b64url(account.public_key) if account is not None else None

    async def _proved_mailbox(self, request: Request, link: _Link) -> str:
        """The reader's address, if this browser proved it has the mailbox (an emailed
        code, in this session or on a remembered device); Problem 401 otherwise."""
        _, proved = await asyncio.to_thread(self._verification, request, link.reader)
        if proved != "email" or link.reader.kind != "guest":
            raise _Problem(401, "verify")
        return link.reader.address.lower()

    # pages

    async def page(self, request: Request) -> Response:
        link = await self._lookup(request.path_params["link"])
        if link is None or link.state != "live":
            return self._gone(request, link)
        envelope, reader = link.envelope, link.reader
        if reader.kind == "account":  # sealed to the recipient's account: read after sign-in
            return self.account_pages.account_message_page(
                request, envelope.envelope_id, envelope.sender, envelope.sender_name or ""
            )
        lang = self._lang(request)
        csrf = request.cookies.get(self._csrf_name) or new_token()
        base = f"/m/{request.path_params['link']}"
        verified, _ = await asyncio.to_thread(self._verification, request, reader)
        page = {
            "link_id": request.path_params["link"],
            "sender": envelope.sender,
            "sender_name": envelope.sender_name,
            "recipient_masked": mask_address(reader.address),
            "methods": self._methods(reader),
            "phone_masked": mask_phone(reader.phone) if reader.phone else None,
            "expires_at": envelope.expires_at.isoformat(),
            "code_length": self.deps.settings.code_length,
            "session": verified == "session",
            "device": verified == "device",
            "remember_days": self.deps.settings.remember_days,
            "reply_max_size": self.deps.settings.max_reply_size,
            "api": {
                "code": f"{base}/code",
                "verify": f"{base}/verify",
                "open": f"{base}/open",
                "part": f"{base}/part/",
                "reply": f"{base}/reply",
                "logout": f"{base}/logout",
                "claim": f"{base}/claim",
            },
            "strings": i18n.page_strings(lang),
            # An account for this address, once the emailed code proved it (signup.js).
            "signup": {
                "enrol": f"{base}/account/enrol",
                "phone": f"{base}/account/phone",
                "create": f"{base}/account",
                "address": reader.address.lower(),
                "totp": self.deps.accounts.totp is not None,
                "texts": self.deps.accounts.texts is not None,
            }
            if self.deps.accounts is not None and "email" in self._methods(reader)
            else None,
        }
        response = self._render(request, "message.html", {"csrf_token": csrf, "page": page})
        self._csrf_cookie(response, csrf, request)
        return response

    def _gone(self, request: Request, link: _Link | None) -> Response:
        reason = link.state if link is not None else "unknown"
        sender = link.envelope.sender if link is not None else None
        status = 404 if link is None else 410
        return self._render(request, "gone.html", {"reason": reason, "sender": sender}, status)

    async def http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        reason = {404: "not-found", 405: "bad-request", 413: "too-large"}.get(
            error.status_code, "bad-request"
        )
        if request.method != "GET":
            return _json_error(_Problem(error.status_code, reason))
        return self._render(
            request,
            "error.html",
            {"status": error.status_code, "reason": reason},
            error.status_code,
        )

    async def server_error(self, request: Request, error: Exception) -> Response:
        log.exception("portal error", extra={"fields": {"path": _loggable(request.url.path)}})
        status = 503 if isinstance(error, StoreError | TemporaryError) else 500
        if request.method != "GET":
            return _json_error(_Problem(status, "server"))
        return self._render(request, "error.html", {"status": status, "reason": "server"}, status)

    # the second factor

    async def send_code(self, request: Request) -> Response:
        try:
            link, body = await self._post(request)
            method = body.get("method")
            if method not in ("email", "sms") or method not in self._methods(link.reader):
                raise _Problem(403, "method")
            try:
                code = await asyncio.to_thread(self.deps.codes.issue, link.reader, method)
            except SendLimit as limit:
                raise _Problem(429, "send-limit", retry_after=limit.retry_after) from None
            sent_to = await self._deliver_code(request, link, method, code)
        except _Problem as problem:
            return _json_error(problem)
        await self._event(link, "code-sent", f"method={method} client={self._client(request)}")
        minutes = self.deps.settings.code_minutes
        return JSONResponse({"sent_to": sent_to, "expires_in": minutes * 60})

    async def _deliver_code(self, request: Request, link: _Link, method: str, code: str) -> str:
        reader = link.reader
        minutes = self.deps.settings.code_minutes
        lang = self._lang(request)
        try:
            if method == "sms":
                assert self.deps.sms is not None and reader.phone
                text = i18n.sms_code(lang, code, minutes, self.deps.organisation)
                await self.deps.sms.send(reader.phone, text)
                return mask_phone(reader.phone)
            notifier = self.deps.notifier()
            data = notifier.code_email(reader.address, code, minutes, link.envelope.sender, lang)
            await self.deps.send(self.deps.from_address, [reader.address], data)
            return mask_address(reader.address)
        except (SMSError, TemporaryError, PermanentError, OSError, ValueError) as error:
            event(log, logging.WARNING, "code not sent", method=method,
                  envelope=link.envelope.envelope_id, error=str(error))  # fmt: skip
            raise _Problem(503, "unavailable") from None

    async def verify(self, request: Request) -> Response:
        try:
            link, body = await self._post(request)
            method, code = body.get("method"), body.get("code")
            if method == "access-code" and self.deps.codes.access_code_closed(link.reader):
                raise _Problem(403, "closed")  # the page offers it no more; say why
            if method not in self._methods(link.reader):
                raise _Problem(403, "method")
            if not isinstance(code, str) or not 1 <= len(code) <= 64:
                raise _Problem(400, "bad-request")
            client = self._client(request)
            outcome = await asyncio.to_thread(
                self.deps.codes.check, link.reader, method, code, client
            )
            if not outcome.ok:
                await self._event(link, "code-failed", f"method={method} client={client}")
                if outcome.error == "locked":
                    raise _Problem(429, "locked", retry_after=outcome.retry_after)
                if outcome.error == "closed":
                    raise _Problem(403, "closed")
                raise _Problem(
                    401,
                    "wrong-code",
                    attempts_left=outcome.attempts_left,
                    retry_after=outcome.retry_after,
                )
        except _Problem as problem:
            return _json_error(problem)
        await self._event(link, "verified", f"method={method} client={client}")
        response = JSONResponse({"ok": True})
        await self._start_session(request, response, link, method)
        # An access code belongs to one message: it cannot vouch for a device.
        remember = body.get("remember") is True and method in ("email", "sms")
        if remember and self.deps.settings.remember_days:
            await self._remember_device(response, link, method)
        return response

    # releasing the sealed data

    async def open(self, request: Request) -> Response:
        try:
            link, _ = await self._post(request)
            how, proof = await self._require_verified(request, link)
        except _Problem as problem:
            return _json_error(problem)
        envelope, reader = link.envelope, link.reader
        reply_key = await asyncio.to_thread(self.deps.reply_key) if envelope.sender else None
        response = JSONResponse(
            opening(envelope, reader)
            | {
                # Only format v1 guests have one (their own key pair); v2 has none.
                "encrypted_private_key": keys.b64url(reader.encrypted_private_key)
                if reader.encrypted_private_key is not None
                else None,
                # The reader's account, if any: the page offers to add the message to it.
                "account_public_key": await self._account_key(reader, proof),
                "reply": {
                    "public_key": keys.b64url(reply_key.public_der),
                    "max_size": self.deps.settings.max_reply_size,
                }
                if reply_key is not None
                else None,
            }
        )
        if how == "device":
            await self._event(link, "verified", f"method=device client={self._client(request)}")
            await self._start_session(request, response, link, proof)
        first = await asyncio.to_thread(
            self.deps.state.record_first,
            "opened",
            envelope.envelope_id,
            reader.reader_id,
            reader.address,
            f"client={self._client(request)}",
        )
        if first and self.deps.read_notice and envelope.sender:
            self.deps.spawn(self.deps.read_notice_to_sender(envelope, link.reader.address))
        return response

    async def part(self, request: Request) -> Response:
        try:
            link, _ = await self._post(request)
            await self._require_verified(request, link)
        except _Problem as problem:
            return _json_error(problem)
        number = request.path_params["part"]
        detail = f"part={number} client={self._client(request)}"
        return await self._sealed_part(
            link.envelope, number, lambda: self._event(link, "downloaded", detail)
        )

    # replies and signing out

    async def reply(self, request: Request) -> Response:
        try:
            link = await self._checked(request, json_body=False)
            await self._require_verified(request, link)
            if not link.envelope.sender:
                raise _Problem(403, "method")
            try:
                blob = await read_body(request, self.deps.settings.max_reply_size)
            except TooLarge:
                raise _Problem(413, "too-large") from None
            try:
                identifier = reply_id(blob)
            except ValueError:
                raise _Problem(400, "bad-request") from None
            await self._limit_replies(link, identifier)
        except _Problem as problem:
            return _json_error(problem)
        await asyncio.to_thread(
            self.deps.state.replies.queue_reply,
            identifier,
            link.envelope.envelope_id,
            link.reader.reader_id,
            link.reader.address,
            blob,
            datetime.now(UTC),
        )
        self.deps.spawn(self.deps.desk.deliver_due())
        return JSONResponse({"ok": True}, status_code=202)

    async def _limit_replies(self, link: _Link, identifier: str) -> None:
        """At most _REPLIES_PER_HOUR new replies per reader (each is stored and mailed);
        a retried upload of a reply already taken is not counted again."""
        state = self.deps.state
        if await asyncio.to_thread(state.replies.reply_known, identifier):
            return
        counted = await asyncio.to_thread(
            state.throttles.count,
            f"reply:{link.reader.reader_id}",
            datetime.now(UTC),
            limit=_REPLIES_PER_HOUR + 1,
            window=timedelta(hours=1),
            lockout=timedelta(hours=1),
        )
        if counted.until is not None:
            retry = max(1, int((counted.until - datetime.now(UTC)).total_seconds()))
            raise _Problem(429, "locked", retry_after=retry)

    async def logout(self, request: Request) -> Response:
        try:
            _, body = await self._post(request, live_only=False)
        except _Problem as problem:
            return _json_error(problem)
        response = JSONResponse({"ok": True})
        path = f"/m/{request.path_params['link']}"
        tokens = [request.cookies.get(_SESSION)]
        response.delete_cookie(_SESSION, path=path)
        if body.get("forget_device") is True:
            tokens.append(request.cookies.get(_DEVICE))
            response.delete_cookie(_DEVICE, path="/m/")
        for token in tokens:
            if token:
                await asyncio.to_thread(self.deps.state.sessions.end_session, token)
        return response

    # assets

    async def theme(self, request: Request) -> Response:
        colour = self.deps.colour
        css = f":root {{ --sg-colour: {colour}; --sg-on-colour: {_on_colour(colour)}; }}\n"
        return Response(css, media_type="text/css")

    async def logo(self, request: Request) -> Response:
        path = self.deps.logo_file
        if path is None:
            raise HTTPException(404)
        data = await asyncio.to_thread(path.read_bytes)
        if len(data) > _MAX_LOGO:
            raise HTTPException(404)
        if path.suffix.lower() == ".svg":
            media = "image/svg+xml"
        else:
            kind = filetype.guess(data)
            if kind is None or kind.mime not in ("image/png", "image/jpeg", "image/gif"):
                raise HTTPException(404)
            media = kind.mime
        return Response(data, media_type=media, headers={"cache-control": "max-age=86400"})

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    # helpers

    async def _lookup(self, text: str) -> _Link | None:
        try:
            link_id = keys.b64url_decode(text)
        except ValueError:
            return None
        if len(link_id) != keys.ID_SIZE or keys.b64url(link_id) != text:
            return None
        found = await asyncio.to_thread(self.deps.store.reader_by_link, keys.link_id_hash(link_id))
        if found is None:
            return None
        envelope, reader = found
        # A live envelope whose key for this reader is gone: the sender withdrew it from them.
        keyless = reader.wrapped_key is None and reader.encrypted_private_key is None
        withdrawn = envelope.is_live() and keyless
        if envelope.is_live() and not withdrawn:
            state = "live"
        elif envelope.state in ("revoked", "superseded") or withdrawn:
            state = "revoked"  # by the sender: from everyone, or from this recipient
        else:
            state = "expired"
        return _Link(envelope, reader, state)

    async def _checked(self, request: Request, *, json_body: bool, live_only: bool = True) -> _Link:
        """The link of a POST, after the CSRF check; _Problem when it cannot be used."""
        self._check_post(request, json_body=json_body)
        link = await self._lookup(request.path_params["link"])
        if link is None:
            raise _Problem(410, "unknown")
        if live_only and link.state != "live":
            raise _Problem(410, link.state)
        if link.reader.kind != "guest":  # sealed to an account: it opens after sign-in only
            raise _Problem(403, "account")
        return link

    async def _post(
        self, request: Request, *, live_only: bool = True
    ) -> tuple[_Link, dict[str, Any]]:
        link = await self._checked(request, json_body=True, live_only=live_only)
        return link, await self._read_json(request)

    def _methods(self, reader: ReaderRecord) -> list[str]:
        methods = [m for m in reader.methods.split(",") if m]
        usable = {
            "email": True,
            "sms": self.deps.sms is not None and bool(reader.phone),
            "access-code": reader.access_code_hash is not None
            and not self.deps.codes.access_code_closed(reader),
        }
        return [m for m in methods if usable.get(m)]

    def _verification(
        self, request: Request, reader: ReaderRecord
    ) -> tuple[str | None, str | None]:
        """How this browser may read as this reader ("session", "device" or None), and
        with which second factor it proved it."""
        now = datetime.now(UTC)
        token = request.cookies.get(_SESSION)
        if token:
            session = self.deps.state.sessions.session(token, now)
            if session and session.kind == "session" and session.reader_id == reader.reader_id:
                return "session", session.method
        token = request.cookies.get(_DEVICE)
        if token and self.deps.settings.remember_days:
            device = self.deps.state.sessions.session(token, now)
            # A device stands in only for the factor it proved, and only where the
            # reader's rule allows that factor: an SMS-only message still wants SMS.
            if (
                device
                and device.kind == "device"
                and device.address == reader.address.lower()
                and device.method in self._methods(reader)
            ):
                return "device", device.method
        return None, None

    async def _require_verified(self, request: Request, link: _Link) -> tuple[str, str | None]:
        """How this browser may read (a "session" or a "device") and with which factor it
        proved it; _Problem 401 if it may not."""
        how, proof = await asyncio.to_thread(self._verification, request, link.reader)
        if how is None:
            raise _Problem(401, "verify")
        return how, proof

    async def _start_session(
        self, request: Request, response: Response, link: _Link, method: str | None
    ) -> None:
        minutes = self.deps.settings.session_minutes
        lifetime = timedelta(minutes=minutes)
        owner = {"reader_id": link.reader.reader_id, **({"method": method} if method else {})}
        token = await self._new_token("session", lifetime, **owner)
        path = f"/m/{request.path_params['link']}"
        self._cookie(response, _SESSION, token, minutes * 60, path)

    async def _remember_device(self, response: Response, link: _Link, method: str) -> None:
        days = self.deps.settings.remember_days
        address = link.reader.address.lower()
        token = await self._new_token("device", timedelta(days=days), address=address,
                                      method=method)  # fmt: skip
        self._cookie(response, _DEVICE, token, days * 86400, "/m/")

    async def _new_token(self, kind: str, lifetime: timedelta, **owner: str) -> str:
        """A random session or device token; the store keeps only its SHA-256."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await asyncio.to_thread(
            self.deps.state.sessions.add_session,
            token,
            kind=kind,
            now=now,
            expires_at=now + lifetime,
            **owner,
        )
        return token

    async def _event(self, link: _Link, kind: str, detail: str) -> None:
        envelope_id, reader = link.envelope.envelope_id, link.reader
        await asyncio.to_thread(
            self.deps.store.record_event,
            kind,
            envelope_id=envelope_id,
            reader_id=reader.reader_id,
            address=reader.address,
            detail=detail,
        )


_PATH_WORDS = {"", "m", "s", "h", "code", "verify", "open", "part", "reply", "logout",
               "static", "assets", "healthz", "account", "enrol", "unlocking", "sign-in",
               "sign-out", "inbox", "messages", "password", "delete", "claim", "sessions",
               "end", "passkey", "options", "sign-in-options", "reset", "scim", "v2",
               "Users", "Groups", "Schemas", "ResourceTypes", "ServiceProviderConfig",
               ".search"}  # fmt: skip


def _loggable(path: str) -> str:
    """A request path without its link id or sender token (``/m/…/open``)."""
    return "/".join(part if part in _PATH_WORDS else "…" for part in path.split("/"))


def _on_colour(colour: str) -> str:
    """Black or white text on the brand colour, whichever contrasts more (WCAG luminance)."""

    def channel(hex_pair: str) -> float:
        value = int(hex_pair, 16) / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i : i + 2]) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#000000" if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else "#ffffff"
