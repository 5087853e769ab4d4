"""Talking to the portal as a recipient's browser would, without a browser (httpx)."""

from __future__ import annotations

import email
import email.policy
import re
from typing import Any

import httpx

from gateway.envelope import keys
from tests.support.gateway import RunningGateway, wait_for
from tests.support.protected import link_in, notifications, protected_message
from tests.support.sink import Received, Sink

_CODE = re.compile(r"\b(\d{6,10})\b")


def send_protected(gateway: RunningGateway, sink: Sink, to: str = "bob@example.net",
                   **message: Any) -> keys.Link:  # fmt: skip
    """Send a protected message to ``to``; the link of its notification."""
    before = len(sink.messages)
    with gateway.client() as client:
        client.sendmail("alice@example.org", [to], protected_message(to=to, **message))
    found = notifications(sink.messages[before:])
    return link_in(found[to])


def portal_url(gateway: RunningGateway) -> str:
    return gateway.gateway.portal_url


def code_mail(sink: Sink, to: str, after: int = 0) -> Received:
    """The newest code email to ``to`` that reached the upstream."""
    wait_for(lambda: _codes(sink, to, after), what=f"a code mail to {to}")
    return _codes(sink, to, after)[-1]


def code_in(received: Received) -> str:
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    match = _CODE.search(body.get_content())
    assert match, "no code in the code mail"
    return match.group(1)


def _codes(sink: Sink, to: str, after: int) -> list[Received]:
    return [
        m
        for m in sink.messages[after:]
        if m.rcpt_tos == (to,) and b"/m/" not in m.data and b"Auto-Submitted" in m.data
    ]


class Browser:
    """One browser's cookies against the portal: pages, CSRF and the JSON API."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=15)

    def close(self) -> None:
        self.http.close()

    def page(self, link: keys.Link) -> httpx.Response:
        return self.http.get(f"/m/{keys.b64url(link.link_id)}")

    def post(self, link: keys.Link, action: str, body: dict[str, Any] | None = None,
             **kwargs: Any) -> httpx.Response:  # fmt: skip
        if self.csrf is None:
            self.page(link)
        headers = {
            "X-CSRF-Token": self.csrf or "",
            "Origin": self.base,
            **kwargs.pop("headers", {}),
        }
        path = f"/m/{keys.b64url(link.link_id)}/{action}"
        if "content" in kwargs:
            return self.http.post(path, headers=headers, **kwargs)
        return self.http.post(path, json=body or {}, headers=headers, **kwargs)

    @property
    def csrf(self) -> str | None:
        return self.http.cookies.get("sg_csrf")

    def verify_by_email(self, link: keys.Link, sink: Sink, to: str = "bob@example.net",
                        remember: bool = False) -> httpx.Response:  # fmt: skip
        before = len(sink.messages)
        sent = self.post(link, "code", {"method": "email"})
        assert sent.status_code == 200, sent.text
        code = code_in(code_mail(sink, to, before))
        return self.post(link, "verify", {"method": "email", "code": code, "remember": remember})
