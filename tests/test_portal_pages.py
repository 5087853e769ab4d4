"""The recipient portal's pages: templates, words, and portal.js in a real browser.

The templates are rendered with plain Jinja2 (autoescape, strict undefined) from the
contexts the portal contract gives, in both languages, and checked for what the CSP
and accessibility need. The browser tests serve a rendered message.html, /static/ and
a fake theme from a small http.server (with the portal's real CSP) and drive the
whole way through portal.js and sealed.js with the envelope test vector: choose a
method, enter a code, decrypt, download, reply, sign out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jinja2 import Environment, StrictUndefined

from gateway.portal import i18n
from gateway.portal.security import CSP
from gateway.store.sent import RecipientStatus
from tests.support import browser as browser_support

PORTAL = Path(__file__).resolve().parent.parent / "gateway" / "portal"
TEMPLATES = PORTAL / "templates"
STATIC = PORTAL / "static"
VECTORS = Path(__file__).resolve().parent / "vectors"

HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)>\"'&"
CSRF = "csrf-token-for-tests"


def environment(lang: str) -> Environment:
    """The portal's own environment in ``lang``, strict about undefined names."""
    return i18n.environment(TEMPLATES, lang).overlay(undefined=StrictUndefined)


def common(lang: str, path: str = "/m/aMSAskdfE7Q4W8bjIQo8Aw", **org: Any) -> dict[str, Any]:
    return {
        "lang": lang,
        "org": {"name": "Example Org", "logo_url": None, "theme_url": "/assets/theme.css"} | org,
        "other_lang": "nl" if lang == "en" else "en",
        "path": path,
    }


def page_data(lang: str, link_id: str = "aMSAskdfE7Q4W8bjIQo8Aw", **overrides: Any) -> dict:
    base = f"/m/{link_id}"
    data = {
        "link_id": link_id,
        "sender": "alice@example.org",
        "sender_name": "Alice Example",
        "recipient_masked": "b***@example.net",
        "methods": ["email", "sms", "access-code"],
        "phone_masked": "+31 6•••••78",
        "expires_at": "2031-06-30T12:00:00+00:00",
        "code_length": 6,
        "session": False,
        "device": False,
        "remember_days": 30,
        "reply_max_size": 10_000_000,
        "api": {
            "code": f"{base}/code",
            "verify": f"{base}/verify",
            "open": f"{base}/open",
            "part": f"{base}/part/",
            "reply": f"{base}/reply",
            "logout": f"{base}/logout",
        },
        "strings": i18n.page_strings(lang),
    }
    data.update(overrides)
    return data


def message_context(lang: str, **overrides: Any) -> dict[str, Any]:
    return common(lang) | {"csrf_token": CSRF, "page": page_data(lang, **overrides)}


def account_context(lang: str) -> dict[str, Any]:
    page = {"api": {}, "strings": i18n.page_strings(lang)}
    return common(lang, path="/") | {"csrf_token": CSRF, "page": page}


def all_pages(lang: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, template, context): every template, every state, in ``lang``."""
    pages = [
        ("message", "message.html", message_context(lang)),
        ("message-access-code", "message.html", message_context(lang, methods=["access-code"])),
        (
            "message-no-phone",
            "message.html",
            message_context(lang, methods=["email", "sms"], phone_masked=None, sender_name=None),
        ),
        ("message-session", "message.html", message_context(lang, session=True, remember_days=0)),
        (
            "message-logo",
            "message.html",
            common(lang, logo_url="/assets/logo.png")
            | {"csrf_token": CSRF, "page": page_data(lang)},
        ),
    ]
    pages.append(("account", "account.html", account_context(lang)))
    for reason in ("expired", "revoked", "unknown"):
        pages.append(
            (
                f"gone-{reason}",
                "gone.html",
                common(lang) | {"reason": reason, "sender": "alice@example.org"},
            )
        )
    pages.append(
        ("gone-nosender", "gone.html", common(lang) | {"reason": "expired", "sender": None})
    )
    for status, reason in (
        (404, "not-found"),
        (413, "too-large"),
        (400, "bad-request"),
        (403, "forbidden"),
        (500, "server"),
    ):
        pages.append(
            (
                f"error-{reason}",
                "error.html",
                common(lang, path="/x") | {"status": status, "reason": reason},
            )
        )
    for state in ("done", "gone"):
        pages.append(
            (f"revoke-{state}", "revoke.html", common(lang, path="/s/abc") | {"state": state})
        )
    for live in (True, False):
        pages.append(
            (f"sent-{'live' if live else 'ended'}", "sent.html", sent_context(lang, live=live))
        )
    pages.append(("sent-list", "sent-list.html", sent_list_context(lang)))
    for state in ("confirm", "done", "gone"):
        pages.append(
            (
                f"release-{state}",
                "release.html",
                common(lang, path="/release/abc")
                | {
                    "csrf_token": CSRF,
                    "state": state,
                    "recipients": [
                        {"address": "bob@example.net", "missing": ["phone"]},
                        {"address": "carol@example.com", "missing": []},
                        {"address": "dave@example.com", "missing": ["phone", "something-new"]},
                    ],
                    "action": "/release/abc",
                },
            )
        )
    return pages


def sent_context(lang: str, live: bool = True, recipient: str = "bob@example.net") -> dict:
    """sent.html: a message with one recipient of each status."""
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    envelope = SimpleNamespace(
        envelope_id="56603feb247533bee27e10e971015f8f",
        created_at=at,
        expires_at=at + timedelta(days=30),
    )
    statuses = ("sealed", "notified", "opened", "downloaded", "replied", "held", "refused",
                "withdrawn", "revoked", "expired")  # fmt: skip
    recipients = [
        RecipientStatus(
            f"{i:032x}",
            recipient if i == 0 else f"r{i}@example.net",
            "guest",
            status,
            {"notified": at, "opened": at} if i else {},
        )  # fmt: skip
        for i, status in enumerate(statuses)
    ]
    return common(lang, path="/sent/x") | {
        "csrf_token": CSRF,
        "envelope": envelope,
        "live": live,
        "recipients": recipients,
        "action": "/sent/x",
        "notice": "",
        "problem": "",
        "earliest": "2026-12-02",
        "latest": "2026-12-31",
        "list_url": "/sent",
        "read_url": "/inbox/x",
        "release_url": "/h/x/y",
        "page": {"envelope_id": "56603feb247533bee27e10e971015f8f", "api": {}, "strings": {}},
    }


def sent_list_context(lang: str, recipient: str = "bob@example.net") -> dict:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    messages = [
        {
            "envelope_id": "a" * 32,
            "created_at": at,
            "expires_at": at,
            "live": live,
            "recipients": [recipient, "carol@example.com"],
        }  # fmt: skip
        for live in (True, False)
    ]
    return common(lang, path="/sent") | {"address": "alice@example.org", "messages": messages}


class Parsed(HTMLParser):
    """Tags, attributes, script contents, labels and ids of one rendered page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.label_for: set[str] = set()
        self.labelled_inside: set[int] = set()  # indexes into tags of controls inside a <label>
        self.ids: list[str] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._script_text: list[str] = []
        self._label_depth = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        assert len(attributes) == len(attrs), f"duplicate attribute in <{tag}>"
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids.append(attributes["id"])
        if tag == "script":
            self._script = attributes
            self._script_text = []
        elif tag == "label":
            self._label_depth += 1
            if attributes.get("for"):
                self.label_for.add(attributes["for"])
        elif tag in ("input", "textarea", "select") and self._label_depth:
            self.labelled_inside.add(len(self.tags) - 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._script_text)))
            self._script = None
        elif tag == "label":
            self._label_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script_text.append(data)
        else:
            self.text.append(data)

    def find(self, tag: str, **attributes: str) -> list[dict[str, str | None]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and all(attrs.get(key) == value for key, value in attributes.items())
        ]


def render(template: str, context: dict[str, Any]) -> str:
    return environment(context["lang"]).get_template(template).render(**context)


ALL = [(lang, *page) for lang in i18n.LANGUAGES for page in all_pages(lang)]


@pytest.mark.parametrize(
    ("lang", "label", "template", "context"), ALL, ids=[f"{p[0]}-{p[1]}" for p in ALL]
)
def test_pages_keep_the_csp_and_label_every_control(lang, label, template, context):
    html = render(template, context)
    page = Parsed(html)

    html_tag = page.find("html")
    assert len(html_tag) == 1 and html_tag[0].get("lang") == lang
    assert page.find("meta", name="viewport")
    assert len(page.find("main")) == 1 and page.find("header") and page.find("footer")
    assert len(page.find("h1")) >= 1
    assert page.find("link", rel="stylesheet", href="/static/portal.css")
    assert page.find("link", rel="stylesheet", href="/assets/theme.css")
    switch = page.find("a", id="sg-lang")
    # Relative: a path like //evil.example/x must not become a link off the site.
    assert switch and switch[0]["href"] == f"?lang={context['other_lang']}"
    assert len(page.ids) == len(set(page.ids)), "duplicate id"

    for tag, attributes in page.tags:
        assert tag != "style", "no <style> elements (style-src 'self')"
        for name, value in attributes.items():
            assert name != "style", f"style= on <{tag}>"
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
            if name in ("href", "src", "action"):
                assert not (value or "").lower().lstrip().startswith("javascript:")
                assert not re.match(r"(?i)\s*(https?:)?//", value or ""), f"external URL {value}"
        if tag == "iframe":
            assert attributes.get("sandbox") == "", "a sandbox without allow-* tokens"
            assert attributes.get("title")
    # The same, on the raw text of every tag (what a browser would parse).
    for raw in re.findall(r"<[a-zA-Z][^<>]*>", html):
        assert not re.search(r"\sstyle\s*=", raw), raw
        assert not re.search(r"\son[a-z]+\s*=", raw, re.IGNORECASE), raw

    for attributes, text in page.scripts:
        if attributes.get("src"):
            script = {"account.html": "inbox.js", "sent.html": "sent.js"}.get(template, "portal.js")
            assert attributes == {"type": "module", "src": f"/static/{script}"}
            assert text == ""
        else:
            assert attributes == {"type": "application/json", "id": "sg-page"}, attributes
            assert json.loads(text) == context["page"]

    for index, (tag, attributes) in enumerate(page.tags):
        if tag in ("input", "textarea", "select") and attributes.get("type") not in (
            "hidden",
            "submit",
        ):
            assert index in page.labelled_inside or attributes.get("id") in page.label_for, (
                f"<{tag} id={attributes.get('id')}> has no label"
            )
    for form in page.find("form"):
        assert form.get("method") == "post"

    if template == "message.html":
        assert page.find("meta", name="csrf-token", content=CSRF)
        assert len(page.scripts) == 2
        methods = [b["data-method"] for _, b in page.tags if b.get("data-method")]
        expected = [
            m for m in context["page"]["methods"] if m != "sms" or context["page"]["phone_masked"]
        ]
        assert methods == expected
        code = page.find("input", id="sg-code")[0]
        assert code["inputmode"] == "numeric" and code["autocomplete"] == "one-time-code"
        assert "multiple" in page.find("input", type="file", id="sg-reply-files")[0]
        assert page.find("p", id="sg-error")[0]["role"] == "alert"
        assert page.find("p", id="sg-progress-text")[0]["aria-live"] == "polite"
        assert bool(page.find("input", id="sg-remember")) == (context["page"]["remember_days"] > 0)
        assert "<noscript>" in html
    elif template == "account.html":
        assert page.find("meta", name="csrf-token", content=CSRF)
        assert len(page.scripts) == 2
        totp = page.find("input", id="sg-totp")[0]
        assert totp["inputmode"] == "numeric" and totp["autocomplete"] == "one-time-code"
        assert page.find("input", id="sg-password")[0]["autocomplete"] == "current-password"
        assert "<noscript>" in html
    elif template == "sent.html":  # a script only for "send again", which needs the key
        assert len(page.scripts) == (2 if context["read_url"] else 0)
    else:
        assert not page.scripts
    if template == "sent.html" and context["live"]:
        assert page.find("input", type="hidden", name="csrf", value=CSRF)
        withdraw = page.find("input", type="hidden", name="action", value="withdraw")
        assert len(withdraw) == 9  # every recipient but the one withdrawn already
        assert page.find("input", id="sg-until", min="2026-12-02", max="2026-12-31")
    if template == "release.html" and context["state"] == "confirm":
        assert page.find("input", type="hidden", name="csrf", value=CSRF)
        assert page.find("form", action=context["action"])
    if template == "release.html" and context["state"] == "confirm":
        assert page.find("input", name="phone_0") and page.find("input", name="phone_2")
        assert not page.find("input", name="phone_1")
        assert page.find("button", name="decision", value="release")
        assert page.find("button", name="decision", value="cancel")


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_a_hostile_sender_is_escaped_everywhere(lang):
    context = message_context(lang, sender_name=HOSTILE, sender=f"x{HOSTILE}@example.org")
    context["page"]["strings"]["(no subject)"] = "</script><script>alert(3)</script>"
    html = render("message.html", context)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html  # shown, as text
    page = Parsed(html)
    data = [text for attrs, text in page.scripts if attrs.get("id") == "sg-page"]
    assert len(data) == 1 and "</" not in data[0]
    assert json.loads(data[0]) == context["page"]
    assert len(page.scripts) == 2

    gone = render("gone.html", common(lang) | {"reason": "revoked", "sender": HOSTILE})
    assert "<script>alert" not in gone and "&lt;/script&gt;" in gone
    for name, context in (
        ("sent.html", sent_context(lang, recipient=HOSTILE)),
        ("sent-list.html", sent_list_context(lang, recipient=HOSTILE)),
    ):
        sent = render(name, context)
        assert "<script>alert" not in sent and "&lt;/script&gt;" in sent
    release = render(
        "release.html",
        common(lang)
        | {
            "csrf_token": CSRF,
            "state": "confirm",
            "recipients": [{"address": HOSTILE, "missing": ["phone"]}],
            "action": "/r",
        },
    )
    assert "<script>alert" not in release and "<img src=x" not in release


def test_unknown_reasons_fall_back():
    html = render("gone.html", common("en") | {"reason": "surprise", "sender": None})
    assert "This message is not available" in html
    html = render("error.html", common("nl", path="/") | {"status": 502, "reason": "surprise"})
    assert "Er ging iets mis" in html and "Fout 502" in html


# --- words (tests/test_catalogues.py checks the catalogues against every msgid) ---------------


def test_the_language_link_speaks_the_other_language():
    english = Parsed(render("gone.html", common("en") | {"reason": "expired", "sender": None}))
    dutch = Parsed(render("gone.html", common("nl") | {"reason": "expired", "sender": None}))
    assert english.find(
        "a", id="sg-lang", lang="nl", **{"aria-label": "Lees deze pagina in het Nederlands"}
    )
    assert dutch.find("a", id="sg-lang", lang="en", **{"aria-label": "Read this page in English"})
    assert "Nederlands" in english.text and "English" in dutch.text


def test_page_strings_are_what_the_portals_scripts_use():
    asked: set[str] = set()
    for path in i18n.SCRIPTS:
        if path.name == "strength.js":  # its problems are msgids, N_ below
            continue
        name = path.name
        script = path.read_text()
        asked |= set(re.findall(r'\bgettext\(\s*"([^"]+)"', script))
        assert not re.search(r"\bstr\(", script), "every string goes through gettext()"
        # signup.js translates strength.js's problems, which are msgids (N_ below).
        literal_only = script.replace("gettext(p)", "")
        assert not re.search(r"\bgettext\(\s*[^\s\"]", literal_only), name
    assert len(asked) > 50
    problems = set(re.findall(r'\bN_\(\s*"([^"]+)"', (STATIC / "strength.js").read_text()))
    assert len(problems) == 4 and not asked & problems
    asked |= problems
    english, dutch = i18n.page_strings("en"), i18n.page_strings("nl")
    assert set(english) == set(dutch) == asked
    assert all(english[msgid] == msgid for msgid in asked)
    assert dutch["Checking the code…"] == "De code wordt gecontroleerd…"
    for msgid in asked:  # the placeholders portal.js fills
        assert set(re.findall(r"%\((\w+)\)s", msgid)) <= {
            "address",
            "attempts",
            "last",
            "date",
            "length",
            "masked",
            "minutes",
            "name",
            "percent",
            "size",
            "phone",
            "count",
            "time",
        }, msgid


def test_portal_js_finds_every_element_it_uses():
    script = (STATIC / "portal.js").read_text()
    page = Parsed(render("message.html", message_context("en")))
    ids = set(page.ids)
    wanted = set(re.findall(r"\$\(\"([\w-]+)\"\)", script))
    steps = re.search(r"const STEPS = \[([^\]]*)\]", script)
    assert steps
    wanted |= {f"sg-step-{name}" for name in re.findall(r"\"([\w-]+)\"", steps.group(1))}
    assert wanted and wanted <= ids, wanted - ids
    for selector in re.findall(r"querySelector\(\"\.([\w-]+)\"\)", script):
        assert f'class="{selector}"' in render(
            "message.html", message_context("en")
        ) or selector in str(page.tags)


@pytest.mark.parametrize(
    ("script", "template"),
    [
        ("signup.js", "message.html"),
        ("inbox.js", "account.html"),
        ("factors.js", "account.html"),
        ("sent.js", "sent.html"),
    ],
)
def test_the_account_scripts_find_every_element_they_use(script, template):
    code = (STATIC / script).read_text()
    contexts = {"message.html": message_context, "account.html": account_context,
                "sent.html": sent_context}  # fmt: skip
    context = contexts[template]("en")
    ids = set(Parsed(render(template, context)).ids)
    wanted = set(re.findall(r"\$\(\"([\w-]+)\"\)", code))
    if script == "inbox.js":  # its steps, shown by name
        wanted |= {"sg-step-sign-in", "sg-step-reset", "sg-step-inbox", "sg-inbox-template"}
    for ids_list in re.findall(r"for \(const id of \[([^\]]*)\]\)", code):
        wanted |= set(re.findall(r"\"([\w-]+)\"", ids_list))
    assert len(wanted) > (1 if script == "sent.js" else 8) and wanted <= ids, wanted - ids


def test_static_files_stay_on_this_origin():
    css = (STATIC / "portal.css").read_text()
    assert "@import" not in css and "url(" not in css and "@font-face" not in css
    assert "--sg-colour" in css and "--sg-on-colour" in css and ":focus-visible" in css
    script = (STATIC / "portal.js").read_text()
    assert not re.search(r"https?://", script)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "console." not in script and "eval(" not in script
    assert 'from "./sealed.js"' in script


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "default", "expected"),
    [
        ("nl", "en", "en", "en", "nl"),
        (" NL ", None, None, "en", "nl"),
        ("fr", "nl", "en", "en", "nl"),
        (None, "en", "nl", "nl", "en"),
        (None, "xx", "nl-BE,nl;q=0.9,en;q=0.8", "en", "nl"),
        (None, None, "de-DE,de;q=0.9,en-GB;q=0.8,nl;q=0.7", "nl", "en"),
        (None, None, "en;q=0.2, nl;q=0.8", "en", "nl"),
        (None, None, "nl;q=0, en;q=0.1", "nl", "en"),
        (None, None, "nl;q=bogus, de", "en", "en"),
        (None, None, "*", "nl", "nl"),
        (None, None, "", "nl", "nl"),
        (None, None, None, "de", "en"),
    ],
)
def test_choose_a_language(query, cookie, accept, default, expected):
    assert i18n.choose(query, cookie, accept, default) == expected


# --- in a browser ------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def _reply_key() -> Any:
    from cryptography.hazmat.primitives import serialization

    from gateway.envelope.reply import ReplyKey

    rsa_vector = json.loads((VECTORS / "rsa-keys.json").read_text())["keys"][0]
    return ReplyKey(
        serialization.load_der_private_key(bytes.fromhex(rsa_vector["private_key_pkcs8"]), None)
    )


class Envelope:
    """A guest's envelope as the portal would serve it: the link and what /open and /part give."""

    def __init__(
        self,
        *,
        link_id: str,
        secret: str,
        envelope_id: str,
        reader_id: str,
        encrypted_private_key: bytes,
        wrapped_key: bytes,
        parts: dict[int, bytes],
        plaintext: dict[int, bytes],
        manifest: dict[str, Any],
    ) -> None:
        self.link_id, self.secret, self.envelope_id = link_id, secret, envelope_id
        self.parts, self.plaintext, self.manifest = parts, plaintext, manifest
        self.reply_key = _reply_key()
        kinds = {0: "manifest", 1: "original"}
        self.open = {
            "envelope_id": envelope_id,
            "reader_id": reader_id,
            "encrypted_private_key": _b64url(encrypted_private_key),
            "wrapped_key": _b64url(wrapped_key),
            "parts": [
                {
                    "part": n,
                    "kind": kinds.get(n, "attachment"),
                    "size": len(plaintext[n]),
                    "sealed_size": len(blob),
                }
                for n, blob in sorted(parts.items())
            ],
            "sender": "alice@example.org",
            "expires_at": "2031-06-30T12:00:00+00:00",
            "reply": {"public_key": _b64url(self.reply_key.public_der), "max_size": 1_000_000},
        }

    @classmethod
    def from_vector(cls) -> Envelope:
        """tests/vectors/envelope.json: text only, one attachment."""
        vector = json.loads((VECTORS / "envelope.json").read_text())
        url = urllib.parse.urlsplit(vector["link_url"])
        server = vector["server"]
        return cls(
            link_id=url.path.rsplit("/", 1)[1],
            secret=url.fragment,
            envelope_id=server["envelope_id"],
            reader_id=server["reader_id"],
            encrypted_private_key=bytes.fromhex(server["encrypted_private_key"]),
            wrapped_key=bytes.fromhex(server["wrapped_content_key"]),
            parts={p["part_id"]: bytes.fromhex(p["sealed"]) for p in vector["parts"]},
            plaintext={
                p["part_id"]: bytes.fromhex(p["plaintext"]) for p in vector["expected"]["parts"]
            },
            manifest=vector["expected"]["manifest"],
        )

    @classmethod
    def with_html(cls, wrong_sha256: bool = False) -> Envelope:
        """Sealed here with the gateway's primitives: HTML with an inline image, a large file."""
        import os

        from gateway.envelope import keys, stream

        content_key, envelope_id, reader_id = os.urandom(32), os.urandom(16), os.urandom(16)
        link = keys.Link.new()
        pair = keys.generate_key_pair(2048)
        files = [
            ("logo.png", "image/png", "inline", "Logo@Example.ORG", PNG_1X1),
            ("big.bin", "application/octet-stream", "attachment", None, bytes(range(256)) * 800),
        ]
        plaintext = {1: b"From: alice@example.org\r\nSubject: Re: plan\r\n\r\nsee HTML\r\n"}
        attachments = []
        for part, (filename, content_type, disposition, content_id, data) in enumerate(files, 2):
            plaintext[part] = data
            attachments.append(
                {
                    "part": part,
                    "filename": filename,
                    "content_type": content_type,
                    "disposition": disposition,
                    "content_id": content_id,
                    "size": len(data),
                    "sha256": "0" * 64 if wrong_sha256 else hashlib.sha256(data).hexdigest(),
                }
            )
        manifest = {
            "format": 1,
            "envelope_id": envelope_id.hex(),
            "headers": {
                "from": ["Alice <alice@example.org>"],
                "to": ["Bob <bob@example.net>"],
                "cc": ["Carol <carol@example.com>", "dave@example.com"],
                "date": "Tue, 02 Jun 2026 10:00:00 +0200",
                "subject": "RE: the plan <b>bold</b>",
                "message_id": "<html-1@example.org>",
                "in_reply_to": None,
                "references": [],
            },
            "text": "Hello Bob,\n  the plan <b>is</b> attached.",
            "html": '<p id="greeting">Hello <b>Bob</b></p>'
            '<p><img id="logo" alt="Logo" src="cid:logo%40example.org"></p>'
            '<p><a href="https://example.org/">a link</a></p>'
            "<script>parent.document.title = 'scripted'</script>",
            "attachments": attachments,
            "original": {
                "part": 1,
                "filename": "message.eml",
                "content_type": "message/rfc822",
                "size": len(plaintext[1]),
                "sha256": hashlib.sha256(plaintext[1]).hexdigest(),
            },
            "problems": ["an unreadable calendar part"],
        }
        plaintext[0] = json.dumps(manifest).encode()
        parts = {
            n: b"".join(stream.seal_part(content_key, stream.PartHeader(envelope_id, n), [data]))
            for n, data in plaintext.items()
        }
        return cls(
            link_id=keys.b64url(link.link_id),
            secret=keys.b64url(link.secret),
            envelope_id=envelope_id.hex(),
            reader_id=reader_id.hex(),
            encrypted_private_key=keys.encrypt_private_key(link.kek(), pair.private_der, reader_id),
            wrapped_key=keys.wrap_content_key(pair.public_der, content_key),
            parts=parts,
            plaintext=plaintext,
            manifest=manifest,
        )


class FakePortal(ThreadingHTTPServer):
    """Just enough of the portal for portal.js: pages, static files and the JSON API."""

    daemon_threads = True

    def __init__(self, envelope: Envelope) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.default = self.envelope = envelope
        self.requests: list[dict[str, Any]] = []
        self.options: dict[str, Any] = {}
        self.reset()

    def reset(self, envelope: Envelope | None = None, **options: Any) -> None:
        self.envelope = envelope or self.default
        self.requests.clear()
        self.options = {
            "session": False,
            "gone": False,
            "methods": ["email", "sms", "access-code"],
        } | options
        self.replies: list[bytes] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def link(self) -> str:
        return f"{self.base}/m/{self.envelope.link_id}#{self.envelope.secret}"


class Handler(BaseHTTPRequestHandler):
    server: FakePortal

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def json(self, status: int, data: dict[str, Any]) -> None:
        self.send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.server.requests.append(
            {"method": "GET", "path": self.path, "headers": dict(self.headers), "body": b""}
        )
        query = urllib.parse.parse_qs(url.query)
        lang = i18n.choose(
            (query.get("lang") or [None])[0], None, self.headers.get("Accept-Language")
        )
        envelope = self.server.envelope
        if url.path == f"/m/{envelope.link_id}":
            if self.server.options["gone"]:
                html = render(
                    "gone.html",
                    common(lang, url.path) | {"reason": "expired", "sender": "alice@example.org"},
                )
                self.send(410, html.encode(), "text/html; charset=utf-8")
                return
            context = common(lang, url.path) | {
                "csrf_token": CSRF,
                "page": page_data(
                    lang,
                    envelope.link_id,
                    session=self.server.options["session"],
                    methods=self.server.options["methods"],
                ),
            }
            self.send(200, render("message.html", context).encode(), "text/html; charset=utf-8")
        elif url.path == "/assets/theme.css":
            self.send(200, b":root{--sg-colour:#5b2a86;--sg-on-colour:#ffffff}\n", "text/css")
        elif url.path.startswith("/static/") and url.path[8:] in {p.name for p in STATIC.iterdir()}:
            name = url.path[8:]
            kind = {".js": "text/javascript", ".css": "text/css"}[Path(name).suffix]
            self.send(200, (STATIC / name).read_bytes(), f"{kind}; charset=utf-8")
        else:
            self.send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path = urllib.parse.urlsplit(self.path).path
        self.server.requests.append(
            {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body}
        )
        envelope = self.server.envelope
        prefix = f"/m/{envelope.link_id}/"
        if self.headers.get("X-CSRF-Token") != CSRF:
            self.json(403, {"error": "csrf", "message": "csrf"})
            return
        if not path.startswith(prefix):
            self.json(404, {"error": "not-found", "message": "?"})
            return
        if self.server.options["gone"]:
            self.json(410, {"error": "expired", "message": "gone"})
            return
        action = path[len(prefix) :]
        if action == "code":
            assert self.headers["Content-Type"] == "application/json"
            method = json.loads(body)["method"]
            self.json(
                200,
                {
                    "sent_to": "+31 6•••••78" if method == "sms" else "b***@example.net",
                    "expires_in": 600,
                },
            )
        elif action == "verify":
            request = json.loads(body)
            if request["code"] == "123456":
                self.server.options["session"] = True
                self.json(200, {"ok": True})
            elif request["code"] == "000000":
                self.json(429, {"error": "locked", "message": "locked", "retry_after": 2})
            else:
                self.json(401, {"error": "wrong-code", "message": "wrong", "attempts_left": 2})
        elif not self.server.options["session"]:
            self.json(401, {"error": "verify", "message": "verify"})
        elif action == "open":
            self.json(200, envelope.open)
        elif (
            action.startswith("part/")
            and action[5:].isdigit()
            and int(action[5:]) in envelope.parts
        ):
            self.send(200, envelope.parts[int(action[5:])], "application/octet-stream")
        elif action == "reply":
            assert self.headers["Content-Type"] == "application/octet-stream"
            if self.server.options.get("reply_status") == 413:
                self.json(413, {"error": "too-large", "message": "too large"})
                return
            self.server.replies.append(body)
            self.json(202, {"ok": True})
        elif action == "logout":
            self.server.options["session"] = False
            self.json(200, {"ok": True})
        else:
            self.json(404, {"error": "not-found", "message": "?"})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with browser_support.chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def portal() -> Iterator[FakePortal]:
    server = FakePortal(Envelope.from_vector())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Tab:
    """A page in a fresh context that records console errors, page errors and CSP violations."""

    def __init__(
        self, browser: Any, viewport: tuple[int, int] = (1280, 800), lang: str = "en"
    ) -> None:
        self.context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            accept_downloads=True,
            locale="nl-NL" if lang == "nl" else "en-GB",
        )
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )

    def violations(self, *statuses: int) -> list[str]:
        """CSP violations and console errors, except the HTTP errors the test provoked."""
        expected = tuple(f"the server responded with a status of {status} " for status in statuses)
        return self.page.evaluate("window.__csp") + [
            problem for problem in self.problems if not any(text in problem for text in expected)
        ]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    opened = Tab(browser)
    yield opened
    opened.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def visible(tab: Tab, selector: str) -> None:
    tab.page.wait_for_selector(selector, state="visible", timeout=10_000)


def focused_id(tab: Tab) -> str:
    return tab.page.evaluate("document.activeElement && document.activeElement.id")


@pytest.mark.parametrize("viewport", [(360, 740), (1280, 800)], ids=["phone", "desktop"])
@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_the_method_choice_shows_cleanly(browser, portal, viewport, lang):
    portal.reset()
    tab = Tab(browser, viewport, lang)
    try:
        tab.page.goto(
            f"{portal.base}/m/{portal.envelope.link_id}?lang={lang}#{portal.envelope.secret}"
        )
        visible(tab, "#sg-step-method")
        page = tab.page
        assert page.get_attribute("html", "lang") == lang
        assert focused_id(tab) == "sg-method-heading"
        assert page.is_hidden("#sg-step-boot") and page.is_hidden("#sg-step-code")
        buttons = page.locator("[data-method]")
        assert buttons.count() == 3
        for i in range(3):
            assert buttons.nth(i).is_visible()
        assert "b***@example.net" in buttons.nth(0).inner_text()
        expiry = page.inner_text("#sg-expiry")
        assert "2031" in expiry and "{date}" not in expiry
        switch = page.get_attribute("#sg-lang", "href")
        assert switch.endswith(f"?lang={'nl' if lang == 'en' else 'en'}#{portal.envelope.secret}")
        # mobile first: nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # the theme's colour is applied to the header
        assert (
            page.evaluate("getComputedStyle(document.querySelector('.sg-header')).backgroundColor")
            == "rgb(91, 42, 134)"
        )
        assert tab.violations() == []
        # GET never asks for a code: nothing was posted
        assert [r for r in portal.requests if r["method"] == "POST"] == []
    finally:
        tab.close()


def test_an_incomplete_link_says_so(tab, portal):
    portal.reset()
    tab.page.goto(f"{portal.base}/m/{portal.envelope.link_id}")
    visible(tab, "#sg-step-link")
    assert "This link is incomplete — open it from the email again." in tab.page.inner_text(
        "#sg-step-link"
    )
    assert focused_id(tab) == "sg-link-heading"
    tab.page.goto(f"{portal.base}/m/{portal.envelope.link_id}#{portal.envelope.secret[:-1]}")
    tab.page.reload()
    visible(tab, "#sg-step-link")
    assert tab.violations() == []


def test_the_whole_way_from_link_to_reply(tab, portal, tmp_path):
    portal.reset()
    envelope = portal.envelope
    page = tab.page
    page.goto(portal.link)
    visible(tab, "#sg-step-method")

    page.click("[data-method=email]")
    visible(tab, "#sg-step-code")
    assert focused_id(tab) == "sg-code-heading"
    assert page.inner_text("#sg-code-hint") == "Enter the 6-digit code we sent to b***@example.net."
    assert "10 minutes" in page.inner_text("#sg-code-valid")
    assert page.is_visible("#sg-resend")

    page.fill("#sg-code", "111111")
    page.click("#sg-code-submit")
    expect(page.locator("#sg-error")).to_have_text("That code is not correct. Attempts left: 2.")
    assert page.is_visible("#sg-step-code")

    page.fill("#sg-code", "123 456")
    page.check("#sg-remember")
    page.click("#sg-code-submit")
    visible(tab, "#sg-step-message")
    verify = [json.loads(r["body"]) for r in portal.requests if r["path"].endswith("/verify")]
    assert verify[-1] == {"method": "email", "code": "123456", "remember": True}
    assert focused_id(tab) == "sg-subject"
    assert page.inner_text("#sg-subject") == envelope.manifest["headers"]["subject"]
    assert page.inner_text("#sg-from") == "Alice <alice@example.org>"
    assert page.inner_text("#sg-to") == "Bob <bob@example.net>"
    assert page.is_hidden("#sg-cc-row")
    assert page.inner_text("#sg-text") == envelope.manifest["text"]
    assert page.is_hidden("#sg-html-block")
    assert page.locator("#sg-attachment-list li").count() == 1
    assert page.inner_text("#sg-attachment-list .sg-file-name") == "Zahlen für Q2.txt"

    with page.expect_download() as info:
        page.click("#sg-attachment-list .sg-download")
    download = info.value
    assert download.suggested_filename == "Zahlen für Q2.txt"
    assert Path(download.path()).read_bytes() == envelope.plaintext[2]
    expect(page.locator("#sg-attachment-list .sg-file-status")).to_have_text(
        "Zahlen für Q2.txt has been downloaded."
    )

    with page.expect_download() as info:
        page.click("#sg-original .sg-download")
    assert info.value.suggested_filename == "message.eml"
    assert Path(info.value.path()).read_bytes() == envelope.plaintext[1]

    assert page.is_visible("#sg-reply")
    assert "1 MB" in page.inner_text("#sg-reply-limit")
    page.click("#sg-reply-send")
    assert page.inner_text("#sg-reply-error") == "Write a message or add a file first."
    page.fill("#sg-reply-text", "Dank je, Alice.\nGroet, Bob")
    attachment = tmp_path / "antwoord.csv"
    attachment.write_bytes(b"a,b\n1,2\n" + bytes(range(256)))
    page.set_input_files("#sg-reply-files", [str(attachment)])
    page.click("#sg-reply-send")
    expect(page.locator("#sg-reply-status")).to_have_text("Your reply has been sent securely.")
    assert page.input_value("#sg-reply-text") == ""
    assert len(portal.replies) == 1
    reply = envelope.reply_key.open(portal.replies[0], max_plaintext=1_000_000)
    assert reply.in_reply_to == envelope.envelope_id
    assert reply.subject == "Re: Quartalszahlen für Q2"
    assert reply.text == "Dank je, Alice.\nGroet, Bob"
    assert [(a.filename, a.content_type, a.data) for a in reply.attachments] == [
        ("antwoord.csv", "text/csv", attachment.read_bytes())
    ]

    page.click("#sg-logout")
    visible(tab, "#sg-step-signed-out")
    assert focused_id(tab) == "sg-signed-out-heading"
    assert page.inner_text("#sg-subject") == "" and page.inner_text("#sg-text") == ""
    logout = [r for r in portal.requests if r["path"].endswith("/logout")]
    assert json.loads(logout[0]["body"]) == {"forget_device": False}

    # Every POST carried the CSRF token; the secret never left the browser.
    secret_bytes = base64.urlsafe_b64decode(envelope.secret + "=")
    for request in portal.requests:
        if request["method"] == "POST":
            assert request["headers"].get("X-CSRF-Token") == CSRF
        everything = json.dumps(request["headers"]) + request["path"]
        assert envelope.secret not in everything
        assert envelope.secret.encode() not in request["body"]
        assert (
            secret_bytes not in request["body"]
            and secret_bytes.hex().encode() not in request["body"]
        )
    assert tab.violations(401) == []


def test_a_remembered_session_opens_directly_and_access_codes_need_no_request(tab, portal):
    portal.reset(session=True)
    tab.page.goto(portal.link)
    visible(tab, "#sg-step-message")
    assert [r["path"].rsplit("/", 2)[-1] for r in portal.requests if r["method"] == "POST"] == [
        "open",
        "0",
    ]

    portal.reset(methods=["access-code"])
    tab.page.goto(portal.link)
    tab.page.reload()
    visible(tab, "#sg-step-code")
    assert tab.page.inner_text("#sg-code-label") == "Access code"
    assert tab.page.get_attribute("#sg-code", "inputmode") == "text"
    assert tab.page.is_hidden("#sg-resend") and tab.page.is_hidden("#sg-other-method")
    assert [r for r in portal.requests if r["method"] == "POST"] == []
    assert tab.violations() == []


def test_too_many_attempts_counts_down(tab, portal):
    portal.reset()
    page = tab.page
    page.goto(portal.link)
    page.click("[data-method=sms]")
    visible(tab, "#sg-step-code")
    assert "+31 6•••••78" in page.inner_text("#sg-code-hint")
    page.fill("#sg-code", "000000")
    page.click("#sg-code-submit")
    expect(page.locator("#sg-wait")).to_have_text(
        re.compile(r"You can try again in [12] seconds?\.")
    )
    assert "Too many attempts" in page.inner_text("#sg-error")
    assert page.is_disabled("#sg-code-submit") and page.is_disabled("#sg-resend")
    expect(page.locator("#sg-code-submit")).to_be_enabled(timeout=6000)
    expect(page.locator("#sg-wait")).to_have_text("")


def test_a_gone_message_reloads_into_the_gone_page(tab, portal):
    portal.reset(session=True)
    page = tab.page
    page.goto(portal.link)
    visible(tab, "#sg-step-message")
    portal.options["gone"] = True
    page.click("#sg-attachment-list .sg-download")
    page.wait_for_selector("text=" + "This message has expired", timeout=10_000)
    assert "alice@example.org" in page.inner_text("main")


def test_a_wrong_secret_is_final(tab, portal):
    portal.reset(session=True)
    wrong = hashlib.sha256(b"not the secret").digest()
    tab.page.goto(f"{portal.base}/m/{portal.envelope.link_id}#{_b64url(wrong)}")
    visible(tab, "#sg-step-fatal")
    assert (
        tab.page.inner_text("#sg-fatal-text")
        == "This message could not be opened with this link. Open the link from the email again. If that does not help, ask the sender to send the message again."
    )
    assert focused_id(tab) == "sg-fatal-heading"


def test_html_shows_sandboxed_with_inline_images(tab, portal):
    envelope = Envelope.with_html()
    portal.reset(envelope, session=True)
    page = tab.page
    page.goto(portal.link)
    visible(tab, "#sg-step-message")
    assert page.inner_text("#sg-subject") == "RE: the plan <b>bold</b>"  # text, not markup
    assert page.inner_text("#sg-cc") == "Carol <carol@example.com>, dave@example.com"
    assert page.is_visible("#sg-problems")
    assert page.is_hidden("#sg-text") and page.is_visible("#sg-html-block")
    page.click("#sg-text-details summary")
    assert page.inner_text("#sg-text-alt") == envelope.manifest["text"]
    # the inline image is shown in the HTML, not listed; the other file is
    assert page.locator("#sg-attachment-list li").count() == 1
    assert page.inner_text("#sg-attachment-list .sg-file-name") == "big.bin"

    frame = page.frame_locator("#sg-html")
    expect(frame.locator("#greeting")).to_have_text("Hello Bob")
    expect(frame.locator("#logo")).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    html_frame = next(f for f in page.frames if f.url == "about:srcdoc")
    assert html_frame.evaluate("document.getElementById('logo').naturalWidth") == 1
    assert page.get_attribute("#sg-html", "sandbox") == ""
    assert page.title() != "scripted"
    assert html_frame.evaluate("document.scripts.length") == 1  # there, but never run
    frame.locator("a").click()  # refused by the sandbox: the message stays
    page.wait_for_timeout(300)
    expect(frame.locator("#greeting")).to_have_text("Hello Bob")
    assert len(page.context.pages) == 1

    with page.expect_download() as info:
        page.click("#sg-attachment-list .sg-download")
    assert Path(info.value.path()).read_bytes() == envelope.plaintext[3]
    # the one complaint: the message's <script> was blocked by the sandbox
    assert all("sandboxed" in problem for problem in tab.violations()), tab.violations()


@pytest.mark.parametrize("damage", ["tag", "sha256"])
def test_a_damaged_attachment_is_not_offered(tab, portal, damage):
    envelope = Envelope.with_html(wrong_sha256=damage == "sha256")
    if damage == "tag":
        envelope.parts[3] = envelope.parts[3][:-1] + bytes([envelope.parts[3][-1] ^ 1])
    portal.reset(envelope, session=True)
    page = tab.page
    page.goto(portal.link)
    visible(tab, "#sg-step-message")
    downloads: list[Any] = []
    page.on("download", lambda download: downloads.append(download))
    page.click("#sg-attachment-list .sg-download")
    expect(page.locator("#sg-attachment-list .sg-file-error")).to_have_text(
        "big.bin could not be opened safely. Try again, or ask the sender to send it again."
    )
    expect(page.locator("#sg-attachment-list .sg-download")).to_be_enabled()
    assert downloads == []


def test_an_expired_session_goes_back_to_verifying(tab, portal):
    portal.reset(session=True)
    page = tab.page
    page.goto(portal.link)
    visible(tab, "#sg-step-message")
    portal.options["session"] = False
    page.click("#sg-attachment-list .sg-download")
    visible(tab, "#sg-step-method")
    expect(page.locator("#sg-error")).to_have_text("Please confirm again that it is you.")
    assert page.inner_text("#sg-subject") == ""  # nothing decrypted stays in the page
    assert focused_id(tab) == "sg-method-heading"


def test_replies_that_are_too_large_are_refused(tab, portal, tmp_path):
    portal.reset(session=True, reply_status=413)
    page = tab.page
    page.goto(portal.link)
    visible(tab, "#sg-step-message")
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 800_000)  # 1.07 MB as base64: over the 1 MB limit
    page.set_input_files("#sg-reply-files", [str(big)])
    page.click("#sg-reply-send")
    expect(page.locator("#sg-reply-error")).to_have_text(
        "Your reply is too large. The limit is 1 MB."
    )
    assert [r for r in portal.requests if r["path"].endswith("/reply")] == []
    page.set_input_files("#sg-reply-files", [])
    page.fill("#sg-reply-text", "short")
    page.click("#sg-reply-send")
    expect(page.locator("#sg-reply-error")).to_have_text("This is too large to send.")
    assert page.input_value("#sg-reply-text") == "short"  # kept, to shorten it


def test_dutch_all_the_way(browser, portal):
    portal.reset()
    tab = Tab(browser, (360, 740), "nl")
    try:
        page = tab.page
        page.goto(f"{portal.base}/m/{portal.envelope.link_id}?lang=nl#{portal.envelope.secret}")
        page.click("[data-method=email]")
        visible(tab, "#sg-step-code")
        assert page.inner_text("#sg-code-hint") == (
            "Vul de 6-cijferige code in die we naar b***@example.net hebben gestuurd."
        )
        assert page.inner_text("#sg-code-valid") == "De code is 10 minuten geldig."
        page.fill("#sg-code", "123456")
        page.click("#sg-code-submit")
        visible(tab, "#sg-step-message")
        assert page.inner_text("#sg-attachment-list .sg-file-size").startswith("42 byte")
        assert "Beschikbaar tot" in page.inner_text("#sg-available")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert tab.violations() == []
    finally:
        tab.close()
