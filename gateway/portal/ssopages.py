"""Signing in with the organisation's single sign-on (docs/identity.md): to the provider and
back, then the account's key in the browser.

``GET /sso/{provider}`` sends the browser to the provider with a fresh state, nonce and
PKCE challenge, kept in a sealed cookie (``sg_sso``, ``SameSite=Lax`` so that it comes
back with the provider's redirect, path ``/sso/``, ten minutes). ``GET
/sso/{provider}/callback`` checks the state, exchanges the code, checks the ID token
(gateway.identity.sso) and answers with a page that carries, for this browser only and
never cached, what it needs to open or make the account's key
(gateway.identity.ssoaccounts). The key secret itself never leaves the server, and the
server stores neither it nor the keys derived from it.

Anything that goes wrong on the way ends on an error page that says what to do, with
nothing signed in, and an ``sso-failed`` event in the audit trail naming the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.envelope import keys
from gateway.identity.accounts import UploadError, check_public_key, check_sealed_private_key
from gateway.identity.sso import Identity, OIDCProvider, SSOError
from gateway.identity.ssoaccounts import Arrival, SSOTokenError
from gateway.logsetup import event
from gateway.portal import i18n
from gateway.portal.accountpages import NEXT, AccountPages
from gateway.portal.deps import PortalDeps, SingleSignOn
from gateway.portal.problems import Problem, json_error
from gateway.portal.rendering import Pages
from gateway.portal.security import new_token

log = logging.getLogger("sealgate.portal")

STATE_COOKIE = "sg_sso"
_STATE_PATH = "/sso/"


class SSOPages(Pages):
    def __init__(self, deps: PortalDeps, account_pages: AccountPages) -> None:
        super().__init__(deps)
        self.account_pages = account_pages

    @property
    def sso(self) -> SingleSignOn:
        if self.deps.sso is None:
            raise HTTPException(404)
        return self.deps.sso

    def _provider(self, request: Request) -> OIDCProvider:
        provider = self.sso.providers.get(str(request.path_params["provider"]))
        if provider is None:
            raise HTTPException(404)
        return provider

    # --- to the provider --------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        provider = self._provider(request)
        next_path = request.query_params.get("next", "/")
        if not NEXT.fullmatch(next_path):
            next_path = "/"
        try:
            now = time.time()
            url, state = await provider.start(next_path)
        except SSOError as error:
            return await self._failed(request, provider, error)
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            STATE_COOKIE,
            self.sso.states.seal(state, now),
            max_age=600,
            path=_STATE_PATH,
            secure=self.deps.https,
            httponly=True,
            samesite="lax",  # it must come back with the provider's redirect
        )
        return response

    # --- and back ---------------------------------------------------------------------

    async def callback(self, request: Request) -> Response:
        provider = self._provider(request)
        try:
            identity, next_path = await self._identity(request, provider)
            active = await asyncio.to_thread(self.deps.store.directory_active, identity.address)
            if active is False:  # SCIM or the directory sync switched them off
                raise SSOError("inactive", f"{identity.address} is deactivated in the directory")
            arrival = await asyncio.to_thread(self.sso.accounts.arrival, identity)
        except SSOError as error:
            return await self._failed(request, provider, error)
        await asyncio.to_thread(
            self.deps.store.record_event, "signed-in", address=identity.address,
            detail=f"method=sso provider={provider.name} mode={arrival.mode} "
                   f"client={self._client(request)}",
        )  # fmt: skip
        response = self._arrival_page(request, arrival, next_path)
        if arrival.account is not None:
            await self.account_pages.start_session(response, identity.address, "sso")
        response.delete_cookie(STATE_COOKIE, path=_STATE_PATH)
        return response

    async def _identity(self, request: Request, provider: OIDCProvider) -> tuple[Identity, str]:
        """Who the provider says signed in, once state, code and ID token check out."""
        params = request.query_params
        if "error" in params:
            cancelled = params.get("error") in ("access_denied", "login_required")
            raise SSOError("cancelled" if cancelled else "provider-error",
                           f"the provider answered {params.get('error', '')[:40]!r}")  # fmt: skip
        state = self.sso.states.open(request.cookies.get(STATE_COOKIE, ""), time.time())
        if state.provider != provider.name or not _same(params.get("state", ""), state.state):
            raise SSOError("state", "the state does not match this browser's sign-in")
        code = params.get("code", "")
        if not code or len(code) > 2048:
            raise SSOError("state", "the provider sent no code")
        return await provider.finish(state, code, time.time()), state.next_path

    def _arrival_page(self, request: Request, arrival: Arrival, next_path: str) -> Response:
        csrf = request.cookies.get(self._csrf_name) or new_token()
        account = arrival.account
        page = {
            "mode": arrival.mode,
            "address": arrival.address,
            "next": next_path,
            "encrypted_private_key": keys.b64url(account.encrypted_private_key)
            if account is not None
            else None,
            "kek": keys.b64url(arrival.kek) if arrival.kek is not None else None,
            "new_kek": keys.b64url(arrival.new_kek) if arrival.new_kek is not None else None,
            "renew_token": arrival.renew_token,
            "new_key_token": arrival.new_key_token,
            "api": {
                "unlocking": "/account/unlocking",
                "renew": "/account/sso/renew",
                "new_key": "/account/sso/new-key",
            },
            "strings": i18n.page_strings(self._lang(request)),
        }
        response = self._render(request, "sso.html", {"csrf_token": csrf, "page": page})
        response.headers["Cache-Control"] = "no-store"
        self._csrf_cookie(response, csrf, request)
        return response

    async def _failed(self, request: Request, provider: OIDCProvider, error: SSOError) -> Response:
        """The error page for a sign-in that did not work; nothing is signed in."""
        event(log, logging.WARNING, "single sign-on failed", provider=provider.name,
              reason=error.reason, error=str(error))  # fmt: skip
        await asyncio.to_thread(
            self.deps.store.record_event, "sso-failed",
            detail=f"provider={provider.name} reason={error.reason} "
                   f"client={self._client(request)}",
        )  # fmt: skip
        reason, status = _PAGES.get(error.reason, ("sso-refused", 401))
        response = self._render(request, "error.html", {"status": status, "reason": reason}, status)
        response.delete_cookie(STATE_COOKIE, path=_STATE_PATH)
        return response

    # --- what the page sends back -----------------------------------------------------

    async def renew(self, request: Request) -> Response:
        """The account's private key sealed under the new KEK: ``{address, token,
        encrypted_private_key}`` (after a rotation, or moving from a password)."""
        try:
            body = await self._json(request)
            address, token = _address_and_token(body)
            sealed = _upload(check_sealed_private_key, body)
            await asyncio.to_thread(self.sso.accounts.renew, token, address, sealed)
        except SSOTokenError:
            return json_error(Problem(401, "sign-in"))
        except Problem as problem:
            return json_error(problem)
        response = JSONResponse({"ok": True})
        await self.account_pages.start_session(response, address, "sso")
        return response

    async def new_key(self, request: Request) -> Response:
        """A new key pair for the account (or the account, at the first sign-in):
        ``{address, token, public_key, encrypted_private_key}``."""
        try:
            body = await self._json(request)
            address, token = _address_and_token(body)
            public_key = _upload(check_public_key, body)
            sealed = _upload(check_sealed_private_key, body)
            shredded = await asyncio.to_thread(
                self.sso.accounts.new_key, token, address, public_key, sealed
            )
        except SSOTokenError:
            return json_error(Problem(401, "sign-in"))
        except Problem as problem:
            return json_error(problem)
        response = JSONResponse({"ok": True, "messages_shredded": shredded})
        await self.account_pages.start_session(response, address, "sso")
        return response


# reason -> (error page, status)
_PAGES = {
    "cancelled": ("sso-cancelled", 400),
    "state": ("sso-state", 400),
    "provider-down": ("sso-down", 503),
    "inactive": ("sso-inactive", 403),
}


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _address_and_token(body: dict[str, Any]) -> tuple[str, str]:
    address, token = body.get("address"), body.get("token")
    if not isinstance(address, str) or not isinstance(token, str) or len(token) > 1000:
        raise Problem(400, "bad-request")
    return address.lower(), token


def _upload(check: Callable[[dict[str, Any]], bytes], body: dict[str, Any]) -> bytes:
    try:
        return check(body)
    except UploadError as error:
        raise Problem(400, "upload", field=error.field) from None
