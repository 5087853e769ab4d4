"""What every portal response carries, and the checks every state change passes.

- Headers on every response (pages, JSON, files, errors): a strict Content
  Security Policy (no inline script, nothing from elsewhere, no framing),
  nosniff, no referrer, no caching of anything personal, and HSTS over HTTPS.
- CSRF: a random token in a SameSite=Strict cookie that the page repeats in a
  header (JSON) or a form field; a POST without the pair, or from another
  origin, is refused.
- Request bodies are read with a limit, so a huge upload is refused early.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    # style-src-attr: the style attributes the gateway's sanitiser keeps in a message's HTML
    # (shown in a sandboxed frame that inherits this policy). Never <style> or scripts; the
    # portal's own pages write message data with textContent only.
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


def csrf_cookie(https: bool) -> str:
    """The CSRF cookie's name: over HTTPS with the __Host- prefix, which browsers accept only
    from this host, Secure and for path /, so no sibling subdomain can plant one."""
    return "__Host-sg_csrf" if https else "sg_csrf"


CSRF_HEADER = "x-csrf-token"


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
                if self.https:
                    headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"
                headers["cache-control"] = "no-cache" if static else "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(request: Request, submitted: str | None, origin: str) -> bool:
    """The submitted token equals the cookie's, and the request comes from our origin."""
    cookie = request.cookies.get(csrf_cookie(origin.startswith("https://")), "")
    sent_origin = request.headers.get("origin")
    # "null": what a browser sends under Referrer-Policy no-referrer (Fetch 3.1.5); the
    # token and the SameSite=Strict cookie still have to match.
    if sent_origin not in (None, "null", origin):
        return False
    return bool(cookie) and bool(submitted) and hmac.compare_digest(cookie, submitted or "")


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (TooLarge) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def client_address(
    request: Request, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The client's address: the connecting one, or X-Forwarded-For's last hop that is not
    a trusted proxy when the connection comes from one (a malformed hop: the peer)."""
    peer = request.client.host if request.client else "unknown"
    forwarded = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
    hops = [peer, *reversed([h for h in forwarded if h])]
    for hop in hops:
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not any(address in network for network in trusted):
            return hop
    return peer
