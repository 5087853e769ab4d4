"""The security headers docs/portal.md promises are the ones a running portal serves.

The table in the guide's "Security" section is read as data: for each kind of response
(a page, a JSON answer and a JSON error, a sealed part, the portal's static files, the
theme, an error page, the health check), over plain HTTP and over HTTPS, the security
headers served must be exactly the documented ones, with exactly the documented values;
a header the portal sends but the guide leaves out fails as well.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.envelope import keys
from tests.support.gateway import RunningGateway
from tests.support.portal import Browser, portal_url, send_protected

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "portal.md"

# Names that make a header a security header; any of them served must be in the guide.
SECURITY = {
    "cache-control",
    "content-security-policy",
    "content-security-policy-report-only",
    "cross-origin-embedder-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "permissions-policy",
    "referrer-policy",
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "x-permitted-cross-domain-policies",
    "x-xss-protection",
}

_ROW = re.compile(r"^\s*\|\s*`([A-Za-z-]+)`\s*\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$")

# The "On" column's words, and the responses (path, over HTTPS) each covers.
_SCOPES: dict[str, Callable[[str, bool], bool]] = {
    "every response": lambda path, https: True,
    "every response but `/static/`": lambda path, https: not path.startswith("/static/"),
    "`/static/`": lambda path, https: path.startswith("/static/"),
    "HTTPS only": lambda path, https: https,
}


@dataclass(frozen=True)
class Documented:
    name: str
    value: str
    applies: Callable[[str, bool], bool]


def documented_headers() -> list[Documented]:
    """The rows of the security header table in docs/portal.md."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## Security") :]
    section = section[: section.index("\n#", 1)]  # up to the next heading
    rows = []
    for line in section.splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name, value, scope = match.groups()
        # The scope's own words, before any explanation in parentheses.
        key = re.sub(r"\s*\(.*\)$", "", scope)
        assert key in _SCOPES, f"docs/portal.md: unknown scope {scope!r} for {name}"
        rows.append(Documented(name.lower(), value, _SCOPES[key]))
    assert len(rows) >= 5, "docs/portal.md: the security header table is missing"
    return rows


def expected(path: str, https: bool) -> dict[str, str]:
    found: dict[str, str] = {}
    for row in documented_headers():
        if row.applies(path, https):
            assert row.name not in found, f"docs/portal.md: two values of {row.name} for {path}"
            found[row.name] = row.value
    return found


def served(response: httpx.Response) -> dict[str, str]:
    documented = {row.name for row in documented_headers()}
    return {
        name: response.headers[name] for name in SECURITY | documented if name in response.headers
    }


def assert_as_documented(responses: list[httpx.Response], https: bool) -> None:
    kinds = {r.headers.get("content-type", "").split(";")[0] for r in responses}
    assert {"text/html", "application/json", "text/css"} <= kinds  # every kind was fetched
    for response in responses:
        path = response.url.path
        assert served(response) == expected(path, https), f"{response.status_code} {path}"


def test_the_guide_names_the_csp_the_portal_serves(make_gateway, sink):
    running: RunningGateway = make_gateway(
        portal={"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0}
    )
    link = send_protected(running, sink)
    browser = Browser(portal_url(running))
    try:
        responses = [
            browser.page(link),  # the message page
            browser.post(link, "open"),  # a JSON error (not verified yet)
            browser.verify_by_email(link, sink),  # a JSON answer
            browser.post(link, "part/0"),  # a sealed part (a file)
            browser.http.get("/static/portal.js"),
            browser.http.get("/static/portal.css"),
            browser.http.get("/assets/theme.css"),
            browser.http.get("/m/AAAAAAAAAAAAAAAAAAAAAA"),  # an error page
            browser.http.get("/healthz"),
        ]
    finally:
        browser.close()
    assert [r.status_code for r in responses] == [200, 401, 200, 200, 200, 200, 200, 404, 200]
    assert_as_documented(responses, https=False)


def test_the_guide_names_the_headers_served_over_https(make_gateway, sink, certs):
    running: RunningGateway = make_gateway(
        portal={
            "listen": "127.0.0.1:0",
            "url": "",
            "tls_certificate": str(certs.certificate),
            "tls_key": str(certs.key),
        }
    )
    link = send_protected(running, sink)
    address = running.gateway.portal_address
    assert address is not None
    trust = ssl.create_default_context(cafile=str(certs.ca))
    with httpx.Client(verify=trust, base_url=f"https://localhost:{address[1]}") as client:
        responses = [
            client.get(f"/m/{keys.b64url(link.link_id)}"),
            client.post(f"/m/{keys.b64url(link.link_id)}/open", json={}),  # no CSRF token
            client.get("/static/portal.css"),
            client.get("/m/AAAAAAAAAAAAAAAAAAAAAA"),
        ]
    assert [r.status_code for r in responses] == [200, 403, 200, 404]
    assert_as_documented(responses, https=True)
