"""The account holder's side of the portal (docs/accounts.md): the front page with
sign-in and the inbox, reading a message with the account's key, passkeys, the
sessions list, a new password, a forgotten one (reset) and deleting the account.

Every call is a JSON POST with the CSRF pair, like the link pages. Sign-in takes
the login secret the browser derived from the password and a second factor (the
app's code, a recovery code or a passkey); the answer for a wrong address,
password or factor is one and the same. The session
is a cookie for the whole portal (``sg_account``), stored only as its SHA-256,
ending after ``accounts.idle_minutes`` without use or ``accounts.session_hours``
after sign-in.

Throttles, without letting a stranger lock the owner out: failures count per
client address (locked out at ``client_attempts`` an hour, as for codes) and per
account, where each failure only makes the next try wait longer (doubling from
``backoff_seconds``, at most ``ACCOUNT_BACKOFF_CAP``): the owner, who also holds
the TOTP app, is slowed for a minute at worst, never shut out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.envelope import keys
from gateway.errors import PermanentError, TemporaryError
from gateway.identity import textcodes
from gateway.identity.accounts import (
    RESET_MINUTES,
    AccountDesk,
    FactorOff,
    SignedIn,
    UploadError,
    check_password_upload,
    check_upload,
)
from gateway.identity.passkeys import PasskeyError, Passkeys
from gateway.identity.secondfactor import normal_phone
from gateway.identity.textcodes import TextCodeError
from gateway.identity.totp import TOTPError
from gateway.logsetup import event
from gateway.portal import i18n
from gateway.portal.codes import mask_phone
from gateway.portal.problems import Problem, json_error
from gateway.portal.rendering import ACCOUNT_COOKIE, Pages, opening
from gateway.portal.security import (
    new_token,
)
from gateway.portal.sms import SMSError
from gateway.store import AccountRecord, EnvelopeRecord, ReaderRecord
from gateway.store.sessions import Session, session_id

log = logging.getLogger("sealgate.portal")

ACCOUNT_BACKOFF_CAP = timedelta(minutes=1)
_TEXT_SECONDS = int(textcodes.VALID.total_seconds())
_WINDOW = timedelta(hours=1)
_MAX_ADDRESS = 254
_ENVELOPE_ID = re.compile(r"[0-9a-f]{32}")
NEXT = re.compile(r"/(inbox/[0-9a-f]{32}|sent(/[0-9a-f]{32})?)?")  # where a sign-in may lead


class AccountPages(Pages):
    """Sign-in, sign-out, the inbox and reading as an account holder."""

    @property
    def desk(self) -> AccountDesk:
        if self.deps.accounts is None:
            raise Problem(404, "accounts-off")
        return self.deps.accounts

    # pages

    async def start(self, request: Request) -> Response:
        """The portal's front page: sign in to the account's inbox (or open a link)."""
        lang = self._lang(request)
        csrf = request.cookies.get(self._csrf_name) or new_token()
        page = {
            "api": {
                "unlocking": "/account/unlocking",
                "sign_in": "/account/sign-in",
                "sign_out": "/account/sign-out",
                "inbox": "/account/inbox",
                "password": "/account/password",
                "delete": "/account/delete",
                "sessions": "/account/sessions",
                "end_session": "/account/sessions/end",
                "passkey_options": "/account/passkey/options",
                "passkey": "/account/passkey",
                "passkey_sign_in": "/account/passkey/sign-in-options",
                "reset_code": "/account/reset/code",
                "reset_text": "/account/reset/text",
                "reset": "/account/reset",
                "sign_in_text": "/account/sign-in/text",
                "factors": "/account/factors",
                "phone_code": "/account/phone/code",
                "phone": "/account/phone",
                "totp_enrol": "/account/totp/enrol",
                "totp": "/account/totp",
            },
            "passkeys": self.deps.accounts is not None and self.deps.accounts.passkeys is not None,
            "texts": self.deps.accounts is not None and self.deps.accounts.texts is not None,
            "strings": i18n.page_strings(lang),
        }
        context = {"csrf_token": csrf, "page": page, "sso_providers": self._sso_buttons(request)}
        response = self._render(request, "account.html", context)
        self._csrf_cookie(response, csrf, request)
        return response

    def _sso_buttons(self, request: Request) -> list[dict[str, str]]:
        """A button for each identity provider, coming back to the page asked for."""
        if self.deps.sso is None:
            return []
        wanted = request.query_params.get("next", "")
        query = f"?{urlencode({'next': wanted})}" if NEXT.fullmatch(wanted) else ""
        return [
            {"title": provider.title, "href": f"/sso/{name}{query}"}
            for name, provider in self.deps.sso.providers.items()
        ]

    async def message_page(self, request: Request) -> Response:
        """A message in the account's inbox: the message page, reading with the account's
        key. Nothing about the message is on the page until the signed-in browser asks."""
        envelope_id = str(request.path_params["envelope_id"])
        if not _ENVELOPE_ID.fullmatch(envelope_id):
            raise HTTPException(404)
        return self.account_message_page(request, envelope_id)

    def account_message_page(
        self, request: Request, envelope_id: str, sender: str = "", sender_name: str = ""
    ) -> Response:
        """message.html for a message that opens with the account's key (``sender`` only
        where the link already showed it)."""
        lang = self._lang(request)
        csrf = request.cookies.get(self._csrf_name) or new_token()
        base = f"/account/messages/{envelope_id}"
        page: dict[str, Any] = {
            "account": {"envelope_id": envelope_id, "sign_in": f"/?next=/inbox/{envelope_id}"},
            "sender": sender,
            "sender_name": sender_name or None,
            "recipient_masked": "",
            "methods": [],
            "phone_masked": None,
            "expires_at": "",
            "code_length": self.deps.settings.code_length,
            "session": False,
            "device": False,
            "remember_days": 0,
            "reply_max_size": 0,
            "api": {"open": f"{base}/open", "part": f"{base}/part/", "logout": "/account/sign-out"},
            "strings": i18n.page_strings(lang),
        }
        response = self._render(request, "message.html", {"csrf_token": csrf, "page": page})
        self._csrf_cookie(response, csrf, request)
        return response

    # signing in and out

    async def unlocking(self, request: Request) -> Response:
        """The salt and KDF parameters to derive the keys from the password with."""
        try:
            body = await self._json(request)
            address = _address(body)
            found = await asyncio.to_thread(self.desk.unlocking, address)
        except Problem as problem:
            return json_error(problem)
        return JSONResponse(
            {"kdf": found.kdf, "iterations": found.iterations, "salt": keys.b64url(found.salt)}
        )

    async def sign_in(self, request: Request) -> Response:
        try:
            body = await self._json(request)
            signed = await self._proven(request, _address(body), body)
        except Problem as problem:
            return json_error(problem)
        account = signed.account
        response = JSONResponse(
            {
                "address": account.address,
                "encrypted_private_key": keys.b64url(account.encrypted_private_key),
            }
        )
        await self.start_session(response, account.address, signed.method)
        return response

    async def sign_in_text(self, request: Request) -> Response:
        """Text a sign-in code to the account's phone once ``{address, login_secret}`` are
        right. The answer (a token for :meth:`sign_in`) is the same whether or not they
        are, and whether or not the account has a phone; the text goes out after it, so
        the time taken does not tell either. Each request counts as a failed try."""
        try:
            body = await self._json(request)
            address = _address(body)
            login_secret = _login_secret(body)
            ask = partial(self.desk.text_sign_in, address, login_secret, datetime.now(UTC))
            return await self._text_after_answering(request, address, ask)
        except Problem as problem:
            return json_error(problem)

    async def _text_after_answering(
        self, request: Request, address: str, ask: Callable[[], tuple[str, str | None, str | None]]
    ) -> Response:
        """The answer to a request for a code by text: ``ask`` the desk for (token, code,
        phone) (code None when nothing is to be sent), send the code after answering. Each
        request counts as a failed try: a text costs money."""
        limits = self._sign_in_limits(self._client(request), address)
        await asyncio.to_thread(self._check_not_locked, limits)
        await asyncio.to_thread(self._count_failure, limits)
        try:
            token, code, phone = await asyncio.to_thread(ask)
        except FactorOff:
            raise Problem(404, "factor-off") from None
        if code is not None and phone is not None:
            self.deps.spawn(self._text_quietly(request, phone, code, "sign-in"))
        return JSONResponse({"token": token, "expires_in": _TEXT_SECONDS})

    async def change_password(self, request: Request) -> Response:
        """A new password: the current one and a code first, then the private key sealed
        under the new KEK (the browser re-seals it). Other sessions end; this one renews."""
        try:
            body = await self._json(request)
            session = await self._session(request)
            assert session.address is not None
            account = (await self._proven(request, session.address, body)).account
            new = body.get("new")
            try:
                upload = check_password_upload(new if isinstance(new, dict) else {})
            except UploadError as error:
                raise Problem(400, "upload", field=error.field) from None
            await asyncio.to_thread(self.desk.change_password, account, upload)
        except Problem as problem:
            return json_error(problem)
        response = JSONResponse({"ok": True})
        await self.start_session(response, account.address, session.method or "totp")
        return response

    async def delete(self, request: Request) -> Response:
        """Delete the account (password and code first): what was sealed to it is shredded."""
        try:
            body = await self._json(request)
            session = await self._session(request)
            assert session.address is not None
            account = (await self._proven(request, session.address, body)).account
            shredded = await asyncio.to_thread(self.desk.delete, account)
        except Problem as problem:
            return json_error(problem)
        response = JSONResponse({"ok": True, "messages_shredded": shredded})
        response.delete_cookie(ACCOUNT_COOKIE, path="/")
        return response

    async def _proven(self, request: Request, address: str, body: dict[str, Any]) -> SignedIn:
        """The account, once the body's login secret and second factor prove it (``code``:
        the app's, a recovery code, or with ``text_token`` the one sent by text; or
        ``passkey``: {token, assertion}); throttled and recorded like every sign-in.
        Problem 401 (the same for every reason) or 429."""
        code, text_token = body.get("code", ""), body.get("text_token")
        if not isinstance(code, str) or len(code) > 16:
            raise Problem(400, "bad-request")
        if text_token is not None and (not isinstance(text_token, str) or len(text_token) > 200):
            raise Problem(400, "bad-request")
        login_secret = _login_secret(body)
        passkey = _passkey_assertion(body)
        client = self._client(request)
        limits = self._sign_in_limits(client, address)
        await asyncio.to_thread(self._check_not_locked, limits)
        now = datetime.now(UTC)
        signed = await asyncio.to_thread(
            self.desk.sign_in, address, login_secret, code, now, passkey, text_token
        )
        record = self.deps.store.record_event
        if signed is None:
            await asyncio.to_thread(self._count_failure, limits)
            await asyncio.to_thread(
                record, "sign-in-failed", address=address, detail=f"client={client}"
            )
            raise Problem(401, "sign-in")
        await asyncio.to_thread(self._forgive, limits)
        await asyncio.to_thread(
            record, "signed-in", address=signed.account.address,
            detail=f"method={signed.method} client={client}",
        )  # fmt: skip
        return signed

    async def sign_out(self, request: Request) -> Response:
        """End this session, or with ``{"everywhere": true}`` every session of the account."""
        try:
            body = await self._json(request)
            everywhere = body.get("everywhere") is True
            session = await self._session(request) if everywhere else None
        except Problem as problem:
            return json_error(problem)
        sessions = self.deps.state.sessions
        if session is not None and session.address is not None:
            await asyncio.to_thread(sessions.end_account_sessions, session.address)
        token = request.cookies.get(ACCOUNT_COOKIE)
        if token:
            await asyncio.to_thread(sessions.end_session, token)
        response = JSONResponse({"ok": True})
        response.delete_cookie(ACCOUNT_COOKIE, path="/")
        return response

    async def start_session(self, response: Response, address: str, method: str) -> None:
        """A new account session for ``address``, as a cookie on ``response``."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        lifetime = timedelta(hours=self.deps.account_settings.session_hours)
        await asyncio.to_thread(
            self.deps.state.sessions.add_session,
            token,
            kind="account",
            now=now,
            expires_at=now + lifetime,
            address=address.lower(),
            method=method,
        )
        self._cookie(response, ACCOUNT_COOKIE, token, int(lifetime.total_seconds()), "/")

    async def _text_quietly(self, request: Request, phone: str, code: str, purpose: str) -> None:
        """Send a code by text after the answer went out; a failure is only logged."""
        with contextlib.suppress(Problem):  # logged by send_text; the person asks again
            await self.send_text(request, phone, code, purpose)

    async def send_text(self, request: Request, phone: str, code: str, purpose: str) -> None:
        """The account code ``code`` by text to ``phone``; Problem 503 when it cannot go."""
        if self.deps.sms is None:
            raise Problem(404, "factor-off")
        minutes = _TEXT_SECONDS // 60
        text = i18n.sms_account_code(
            self._lang(request), code, minutes, self.deps.organisation, purpose
        )
        try:
            await self.deps.sms.send(phone, text)
        except (SMSError, OSError) as error:
            event(log, logging.WARNING, "account code not sent", purpose=purpose, error=str(error))
            raise Problem(503, "unavailable") from None

    # a forgotten password

    async def reset_code(self, request: Request) -> Response:
        """Email a code to reset the password of ``{address}``'s account. The answer is the
        same whether or not the address has one; the mail goes out after it."""
        try:
            body = await self._json(request)
            address = _address(body)
            client = self._client(request)
            limits = self._sign_in_limits(client, address)
            await asyncio.to_thread(self._check_not_locked, limits)
            await asyncio.to_thread(self._count_failure, limits)  # each one mails a code
            token, code = await asyncio.to_thread(
                self.desk.reset_request, address, datetime.now(UTC)
            )
        except Problem as problem:
            return json_error(problem)
        if code is not None:
            self.deps.spawn(self._send_reset_code(request, address, code))
        return JSONResponse({"token": token, "expires_in": RESET_MINUTES * 60})

    async def _send_reset_code(self, request: Request, address: str, code: str) -> None:
        notifier = self.deps.notifier()
        data = notifier.code_email(
            address, code, RESET_MINUTES, "", self._lang(request), purpose="reset"
        )
        try:
            await self.deps.send(self.deps.from_address, [address], data)
        except (TemporaryError, PermanentError) as error:
            event(log, logging.WARNING, "reset code not sent", error=str(error))

    async def reset_text(self, request: Request) -> Response:
        """Text the reset's second code to the account's phone once ``{address, token,
        email_code}`` are right (the same answer whether or not they are)."""
        try:
            body = await self._json(request)
            address = _address(body)
            token, email_code = body.get("token"), body.get("email_code")
            if not all(isinstance(v, str) and len(v) <= 200 for v in (token, email_code)):
                raise Problem(400, "bad-request")
            now = datetime.now(UTC)
            ask = partial(self.desk.text_reset, address, str(token), str(email_code), now)
            return await self._text_after_answering(request, address, ask)
        except Problem as problem:
            return json_error(problem)

    async def reset(self, request: Request) -> Response:
        """A new password and key pair: ``{address, token, email_code, code}`` and the keys
        as at sign-up. What was sealed to the old key can no longer be read."""
        try:
            body = await self._json(request)
            address = _address(body)
            token, email_code, code = body.get("token"), body.get("email_code"), body.get("code")
            if not all(isinstance(v, str) and len(v) <= 200 for v in (token, email_code, code)):
                raise Problem(400, "bad-request")
            text_token = body.get("text_token")
            if text_token is not None and not (
                isinstance(text_token, str) and len(text_token) <= 200
            ):
                raise Problem(400, "bad-request")
            try:
                upload = check_upload(body)
            except UploadError as error:
                raise Problem(400, "upload", field=error.field) from None
            client = self._client(request)
            limits = self._sign_in_limits(client, address)
            await asyncio.to_thread(self._check_not_locked, limits)
            account = await asyncio.to_thread(
                self.desk.reset, address, str(token), str(email_code), str(code), upload,
                datetime.now(UTC), text_token,
            )  # fmt: skip
            if account is None:
                await asyncio.to_thread(self._count_failure, limits)
                raise Problem(401, "reset")
        except Problem as problem:
            return json_error(problem)
        await asyncio.to_thread(self._forgive, limits)
        response = JSONResponse({"address": account.address})
        await self.start_session(response, account.address, "reset")
        return response

    # passkeys

    async def passkey_sign_in_options(self, request: Request) -> Response:
        """Options to sign in with any of this site's passkeys (the same for everyone)."""
        try:
            await self._json(request)
            passkeys = self._passkeys()
            options, token = await asyncio.to_thread(passkeys.authentication, datetime.now(UTC))
        except Problem as problem:
            return json_error(problem)
        return JSONResponse({"options": json.loads(options), "token": token})

    async def passkey_options(self, request: Request) -> Response:
        """Options to register a passkey for the signed-in account."""
        try:
            await self._json(request)
            session = await self._session(request)
            self._passkeys()
            assert session.address is not None
            options, token = await asyncio.to_thread(
                self.desk.passkey_registration, session.address, datetime.now(UTC)
            )
        except Problem as problem:
            return json_error(problem)
        return JSONResponse({"options": json.loads(options), "token": token})

    async def add_passkey(self, request: Request) -> Response:
        """Register the passkey the browser made: ``{token, credential}``."""
        try:
            body = await self._json(request)
            account = await self._signed_in(request)
            token, credential = body.get("token"), body.get("credential")
            if not isinstance(token, str) or not isinstance(credential, dict):
                raise Problem(400, "bad-request")
            try:
                await asyncio.to_thread(
                    self.desk.add_passkey, account, token, json.dumps(credential),
                    datetime.now(UTC),
                )  # fmt: skip
            except PasskeyError:
                raise Problem(400, "passkey") from None
        except Problem as problem:
            return json_error(problem)
        return JSONResponse({"ok": True})

    def _passkeys(self) -> Passkeys:
        if self.desk.passkeys is None:
            raise Problem(404, "passkeys-off")
        return self.desk.passkeys

    # second factors of a signed-in account

    async def factors(self, request: Request) -> Response:
        """The account's second factors, for its settings: whether it has an app, its
        phone (masked), how many passkeys and recovery codes, and what may be added."""
        try:
            await self._json(request)
            account = await self._signed_in(request)
            found = await asyncio.to_thread(self._factors_of, account)
        except Problem as problem:
            return json_error(problem)
        return JSONResponse(found)

    def _factors_of(self, account: AccountRecord) -> dict[str, Any]:
        desk = self.desk
        counts = desk.accounts.factor_counts(account.address)
        phone = desk.phone_of(account) if counts.get("sms") else None
        return {
            "sso": account.kdf == keys.SSO_KDF,
            "totp": bool(counts.get("totp")),
            "phone": mask_phone(phone) if phone else None,
            "passkeys": counts.get("passkey", 0),
            "recovery_codes": counts.get("recovery", 0),
            "can_add": [
                kind
                for kind, on in (
                    ("totp", desk.totp),
                    ("sms", desk.texts),
                    ("passkey", desk.passkeys),
                )
                if on is not None
            ],
        }

    async def phone_code(self, request: Request) -> Response:
        """Text a code to ``{phone}``, to prove it before it becomes the account's number."""
        try:
            body = await self._json(request)
            account = await self._signed_in(request)
            phone = _phone(body)
            token = await self.text_enrolment(request, account.address, phone)
        except Problem as problem:
            return json_error(problem)
        return JSONResponse({"token": token, "sent_to": mask_phone(phone),
                             "expires_in": _TEXT_SECONDS})  # fmt: skip

    async def text_enrolment(self, request: Request, address: str, phone: str) -> str:
        """Text a code to prove ``phone`` for ``address`` (throttled like a sign-in, as a
        text costs money); the token that checks it. Problem 404, 429 or 503."""
        limits = self._sign_in_limits(self._client(request), address)
        await asyncio.to_thread(self._check_not_locked, limits)
        await asyncio.to_thread(self._count_failure, limits)
        try:
            token, code = await asyncio.to_thread(
                self.desk.text_enrolment, address, phone, datetime.now(UTC)
            )
        except FactorOff:
            raise Problem(404, "factor-off") from None
        await self.send_text(request, phone, code, "enrol")
        return token

    async def add_phone(self, request: Request) -> Response:
        """Make ``{phone}`` the account's number for codes by text, with ``{token, code}``
        from :meth:`phone_code`."""
        try:
            body = await self._json(request)
            account = await self._signed_in(request)
            phone, token, code = _phone(body), body.get("token"), body.get("code")
            if not isinstance(token, str) or not isinstance(code, str) or len(token) > 200:
                raise Problem(400, "bad-request")
            try:
                await asyncio.to_thread(
                    self.desk.add_phone, account, phone, token, code[:16], datetime.now(UTC)
                )
            except FactorOff:
                raise Problem(404, "factor-off") from None
            except TextCodeError:
                raise Problem(400, "code") from None
        except Problem as problem:
            return json_error(problem)
        return JSONResponse({"ok": True, "phone": mask_phone(phone)})

    async def totp_enrolment(self, request: Request) -> Response:
        """A new authenticator-app seed for the account: its QR code and a token."""
        try:
            await self._json(request)
            account = await self._signed_in(request)
            totp = self.desk.totp
            if totp is None:
                raise Problem(404, "factor-off")
            made = await asyncio.to_thread(totp.enrolment, account.address, datetime.now(UTC))
        except Problem as problem:
            return json_error(problem)
        return JSONResponse(
            {"token": made.token, "uri": made.uri, "svg": made.svg, "secret": made.secret}
        )

    async def add_totp(self, request: Request) -> Response:
        """Make the enrolled app the account's (in place of any it had): ``{token, code}``."""
        try:
            body = await self._json(request)
            account = await self._signed_in(request)
            token, code = body.get("token"), body.get("code")
            if not isinstance(token, str) or not isinstance(code, str) or len(token) > 400:
                raise Problem(400, "bad-request")
            try:
                await asyncio.to_thread(
                    self.desk.add_totp, account, token, code[:16], datetime.now(UTC)
                )
            except FactorOff:
                raise Problem(404, "factor-off") from None
            except TOTPError:
                raise Problem(400, "code") from None
        except Problem as problem:
            return json_error(problem)
        return JSONResponse({"ok": True})

    async def _signed_in(self, request: Request) -> AccountRecord:
        """The account of this request's session; Problem 401."""
        session = await self._session(request)
        assert session.address is not None
        account = await asyncio.to_thread(self.deps.store.get_account, session.address)
        if account is None:
            raise Problem(401, "sign-in")
        return account

    # where the account is signed in

    async def sessions(self, request: Request) -> Response:
        """The account's sessions and remembered devices, this one marked."""
        try:
            await self._json(request)
            session = await self._session(request)
            assert session.address is not None
            listed = await asyncio.to_thread(
                self.deps.state.sessions.of_address, session.address, datetime.now(UTC)
            )
        except Problem as problem:
            return json_error(problem)
        current = session_id(request.cookies.get(ACCOUNT_COOKIE, ""))
        return JSONResponse(
            {
                "sessions": [
                    {
                        "id": item.session_id,
                        "kind": item.kind,
                        "created_at": item.created_at.isoformat(),
                        "last_seen_at": item.last_seen_at.isoformat()
                        if item.last_seen_at
                        else None,
                        "expires_at": item.expires_at.isoformat(),
                        "current": item.session_id == current,
                    }
                    for item in listed
                ]
            }
        )

    async def end_session(self, request: Request) -> Response:
        """End one of the account's sessions or remembered devices: ``{"id"}``."""
        try:
            body = await self._json(request)
            session = await self._session(request)
            assert session.address is not None
            listed_id = body.get("id")
            if not isinstance(listed_id, str) or not re.fullmatch(r"[0-9a-f]{32}", listed_id):
                raise Problem(400, "bad-request")
            ended = await asyncio.to_thread(
                self.deps.state.sessions.end_listed, session.address, listed_id
            )
        except Problem as problem:
            return json_error(problem)
        return JSONResponse({"ok": True, "ended": ended})

    # the inbox and its messages

    async def inbox(self, request: Request) -> Response:
        try:
            body = await self._json(request)
            session = await self._session(request)
            sender = body.get("sender")
            if sender is not None and (not isinstance(sender, str) or len(sender) > 200):
                raise Problem(400, "bad-request")
            assert session.address is not None
            entries = await asyncio.to_thread(
                self.desk.accounts.inbox, session.address, sender or None
            )
        except Problem as problem:
            return json_error(problem)
        return JSONResponse(
            {
                "address": session.address,
                "messages": [
                    {
                        "envelope_id": e.envelope_id,
                        "sender": e.sender,
                        "sender_name": e.sender_name,
                        "sent_at": e.created_at.isoformat(),
                        "expires_at": e.expires_at.isoformat(),
                        "size": e.size,
                        "read": e.read,
                        # A guest copy (sealed before the account existed) opens with its link.
                        "opens_here": e.kind == "account",
                    }
                    for e in entries
                ],
            }
        )

    async def open(self, request: Request) -> Response:
        try:
            await self._json(request)
            envelope, reader = await self._message(request)
        except Problem as problem:
            return json_error(problem)
        client = self._client(request)
        first = await asyncio.to_thread(
            self.deps.state.record_first, "opened", envelope.envelope_id, reader.reader_id,
            reader.address, f"account client={client}",
        )  # fmt: skip
        own_copy = reader.address.lower() == envelope.sender.lower()
        if first and self.deps.read_notice and envelope.sender and not own_copy:
            self.deps.spawn(self.deps.read_notice_to_sender(envelope, reader.address))
        return JSONResponse(opening(envelope, reader))

    async def part(self, request: Request) -> Response:
        try:
            envelope, reader = await self._message(request)
        except Problem as problem:
            return json_error(problem)
        number = request.path_params["part"]

        def downloaded() -> Awaitable[None]:
            return asyncio.to_thread(
                self.deps.store.record_event, "downloaded", envelope_id=envelope.envelope_id,
                reader_id=reader.reader_id, address=reader.address, detail=f"part={number}",
            )  # fmt: skip

        return await self._sealed_part(envelope, number, downloaded)

    # helpers

    async def _session(self, request: Request) -> Session:
        """The account session of this request (its idle clock reset); Problem 401."""
        session = await self._account_session(request)
        if session is None:
            raise Problem(401, "sign-in")
        return session

    async def _message(self, request: Request) -> tuple[EnvelopeRecord, ReaderRecord]:
        """The live envelope of the path and the signed-in account's reader in it."""
        session = await self._session(request)
        envelope_id = str(request.path_params["envelope_id"])
        envelope = None
        if _ENVELOPE_ID.fullmatch(envelope_id):
            envelope = await asyncio.to_thread(self.deps.store.get, envelope_id)
        reader = None
        if envelope is not None and session.address is not None:
            reader = next(
                (
                    r
                    for r in envelope.readers
                    if r.kind == "account"
                    and r.address.lower() == session.address
                    and r.wrapped_key is not None  # shredded by a reset: it opens no more
                ),
                None,
            )
        if envelope is None or reader is None:
            raise Problem(404, "unknown")  # the same for another's message as for none
        if not envelope.is_live():
            raise Problem(410, "revoked" if envelope.state in ("revoked", "superseded")
                          else "expired")  # fmt: skip
        return envelope, reader

    def _sign_in_limits(self, client: str, address: str) -> dict[str, dict[str, Any]]:
        settings = self.deps.settings
        lockout = timedelta(minutes=settings.lockout_minutes)
        return {
            f"client:{client}": {"limit": settings.client_attempts, "lockout": lockout},
            f"account:{address}": {
                "limit": 1_000_000,  # never a lock-out: a backoff only
                "lockout": ACCOUNT_BACKOFF_CAP,
                "backoff": timedelta(seconds=settings.backoff_seconds),
            },
        }

    def _check_not_locked(self, limits: dict[str, dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        for key in limits:
            until = self.deps.state.throttles.locked_until(key, now)
            if until is not None:
                wait = max(1, int((until - now).total_seconds() + 0.999))
                raise Problem(429, "locked", retry_after=wait)

    def _count_failure(self, limits: dict[str, dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        for key, rule in limits.items():
            self.deps.state.throttles.count(key, now, window=_WINDOW, **rule)

    def _forgive(self, limits: dict[str, dict[str, Any]]) -> None:
        client_key, account_key = limits
        self.deps.state.throttles.clear(account_key)
        self.deps.state.throttles.uncount(client_key, self.deps.settings.client_attempts)


def _login_secret(body: dict[str, Any]) -> bytes:
    secret = body.get("login_secret")
    if not isinstance(secret, str) or len(secret) > 100:
        raise Problem(400, "bad-request")
    try:
        return keys.b64url_decode(secret)
    except ValueError:
        raise Problem(400, "bad-request") from None


def _passkey_assertion(body: dict[str, Any]) -> tuple[str, str] | None:
    """(token, assertion as JSON) of the body's ``passkey``, or None without one."""
    passkey = body.get("passkey")
    if passkey is None:
        return None
    token = passkey.get("token") if isinstance(passkey, dict) else None
    assertion = passkey.get("assertion") if isinstance(passkey, dict) else None
    if not isinstance(token, str) or not isinstance(assertion, dict):
        raise Problem(400, "bad-request")
    return token, json.dumps(assertion)


def _phone(body: dict[str, Any]) -> str:
    """The body's ``phone`` in E.164 (blanks and dashes allowed); Problem 400 "phone"."""
    text = body.get("phone")
    phone = normal_phone(text) if isinstance(text, str) and len(text) <= 40 else None
    if phone is None:
        raise Problem(400, "phone")
    return phone


def _address(body: dict[str, Any]) -> str:
    address = body.get("address")
    if not isinstance(address, str) or not 3 <= len(address) <= _MAX_ADDRESS:
        raise Problem(400, "bad-request")
    address = address.strip().lower()
    if address.count("@") != 1 or any(c.isspace() for c in address):
        raise Problem(400, "bad-request")
    return address
