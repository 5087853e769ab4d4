"""SCIM 2.0 on the portal: ``/scim/v2``, for the organisation's identity provider.

A Starlette sub-application in front of scim2-server (gateway.identity.directory
holds the resources and their storage). What it adds to the protocol:

- The bearer token (gateway.portal.scim.ScimAccess). A request without the
  right token gets a SCIM 401; each one counts against the client's address in
  the shared throttles (``scim:<address>``), and a client with
  ``scim.token_attempts`` failures within an hour is answered 429 for
  ``scim.lockout_minutes``, whatever token it sends then. ``/ServiceProviderConfig``
  needs no token (RFC 7643 §5; it says how to authenticate).
- The base URL of every ``Location`` is the configured portal URL, never the
  request's Host header.
- Bodies are read with a limit (``scim.max_request_size``; 413 past it).
- Every answer is ``application/scim+json``, errors included (RFC 7644 §3.12),
  and carries the portal's security headers (the portal's outermost middleware).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scim2_models import PayloadTooLargeException, SCIMException, UnauthorizedException
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.identity.directory import DirectoryStorage, provider
from gateway.logsetup import event
from gateway.portal.scim import PREFIX, ScimAccess
from gateway.portal.security import TooLarge, client_address, read_body

if TYPE_CHECKING:
    from gateway.portal.deps import PortalDeps

log = logging.getLogger("sealgate.scim")

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_WINDOW = timedelta(hours=1)


class TooManyAttempts(SCIMException):
    """Too many requests with a wrong token from this client (RFC 6585 §4)."""

    status = 429
    _default_detail = "Too many requests with a wrong token; wait and try again"


def scim_app(deps: PortalDeps, access: ScimAccess) -> ASGIApp:
    """The sub-application to mount at :data:`PREFIX`."""
    return Starlette(routes=[Route("/{path:path}", _Scim(deps, access).serve, methods=_METHODS)])


class _Scim:
    def __init__(self, deps: PortalDeps, access: ScimAccess) -> None:
        self.deps = deps
        self.access = access
        scim_provider = provider()
        service = ScimService(scim_provider)
        self.app = ASGIApplication(DirectoryStorage(deps.store), scim_provider, service)
        self.base_url = f"{deps.url.rstrip('/')}{PREFIX}"

    async def serve(self, request: Request) -> Response:
        scim_request = ScimRequest(
            method=request.method,
            base_url=self.base_url,
            path=self.app.split_path("/" + request.path_params["path"]),
            query=dict(request.query_params),
            headers=list(request.headers.items()),
        )
        if self._needs_token(scim_request):
            refused = await self._refusal(request)
            if refused is not None:
                return refused
        try:
            scim_request.body = await read_body(request, self.access.max_request_size)
        except TooLarge:
            too_large = PayloadTooLargeException(
                detail=f"the body is larger than {self.access.max_request_size} bytes"
            )
            return self._answer(self.app.service.error_response(too_large))
        return self._answer(await self.app.serve(scim_request))

    def _needs_token(self, scim_request: ScimRequest) -> bool:
        """Every request but for ``/ServiceProviderConfig``; one that names no endpoint
        too (a stranger learns nothing of the routes, not even a 404)."""
        try:
            return self.app.needs_auth(scim_request)
        except SCIMException:
            return True

    async def _refusal(self, request: Request) -> Response | None:
        """None for the right token; else the answer: 401, or 429 while locked out."""
        client = client_address(request, self.deps.settings.trusted_proxies)
        key = f"scim:{client}"
        throttles = self.deps.state.throttles
        now = datetime.now(UTC)
        until = await asyncio.to_thread(throttles.locked_until, key, now)
        if until is not None:
            locked = self._answer(self.app.service.error_response(TooManyAttempts()))
            locked.headers["retry-after"] = str(max(1, int((until - now).total_seconds() + 1)))
            return locked
        if self.access.token_ok(request.headers.get("authorization")):
            return None
        counted = await asyncio.to_thread(
            throttles.count,
            key,
            now,
            limit=self.access.attempts,
            window=_WINDOW,
            lockout=self.access.lockout,
        )
        event(log, logging.WARNING, "scim token refused", client=client, failures=counted.failures)
        refused = UnauthorizedException(detail="a valid bearer token is needed")
        return self._answer(self.app.service.error_response(refused))

    @staticmethod
    def _answer(scim: ScimResponse) -> Response:
        body = b"" if scim.body is None else json.dumps(scim.body).encode()
        return Response(body, status_code=int(scim.status), headers=dict(scim.headers))
