"""The portal's words: templates, portal.js and code texts, from the gettext catalogues.

The words are in ``gateway/locale`` (see docs/translating.md). ``environment(lang)``
is the Jinja2 environment of the portal's templates in ``lang``, with the i18n
extension (``_("... %(name)s", name=value)``, the value escaped) and ``switch``,
the words of the language link. ``page_strings(lang)`` is what the portal's
scripts need, which the app puts into ``page["strings"]``: every msgid portal.js,
signup.js and inbox.js ask for with ``gettext("...")`` and every problem strength.js
reports (marked ``N_("...")``), mapped to its translation; portal.js fills in the ``%(name)s``
placeholders itself. ``choose()`` picks the language:
``?lang=``, then the cookie, then the browser's Accept-Language, then the default.
"""

from __future__ import annotations

import functools
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract
from jinja2 import Environment, FileSystemLoader

from gateway.locale import translations
from gateway.notify.templates import when

LANGUAGES = ("en", "nl")

# The scripts whose msgids go to the page (babel.cfg names them for `make messages`).
SCRIPTS = tuple(
    Path(__file__).parent / "static" / name
    for name in (
        "portal.js",
        "strength.js",
        "signup.js",
        "inbox.js",
        "factors.js",
        "sso.js",
        "sent.js",
    )
)


def environment(directory: Path, lang: str) -> Environment:
    """The portal's templates in ``directory``, speaking ``lang``; autoescaped."""
    env = Environment(
        loader=FileSystemLoader(directory), autoescape=True, extensions=["jinja2.ext.i18n"]
    )
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals["switch"] = switch
    env.filters["when"] = lambda moment: when(moment, lang)
    return env


def switch(lang: str) -> dict[str, str]:
    """The words of the link to a page in ``lang``, in ``lang`` itself (the link says
    "Nederlands" on an English page)."""
    words = translations(lang)
    return {
        # Translators: the name of your language, in your language.
        "name": words.gettext("English"),
        # Translators: the language link's label on a page in another language.
        "label": words.gettext("Read this page in English"),
    }


@functools.cache
def script_messages() -> tuple[str, ...]:
    """The msgids the portal's scripts ask for, found in them as ``make messages`` finds them."""
    messages: set[str] = set()
    for script in SCRIPTS:
        with script.open("rb") as source:
            found = extract("javascript", source, keywords=DEFAULT_KEYWORDS)
            messages.update(message for _, message, _, _ in found if isinstance(message, str))
    return tuple(sorted(messages))


def page_strings(lang: str) -> dict[str, str]:
    """The strings the scripts need, msgid to translation: what goes into ``page["strings"]``."""
    words = translations(lang)
    return {message: words.gettext(message) for message in script_messages()}


def sms_code(lang: str, code: str, minutes: int, organisation: str) -> str:
    """The text message with a code: short, and no link (a link in a text is what
    phishing looks like)."""
    return translations(lang).gettext(
        "%(code)s is your %(organisation)s code to read a protected message. "
        "Valid for %(minutes)s minutes. Did not ask for it? Ignore this text."
    ) % {"code": code, "minutes": minutes, "organisation": organisation}


def sms_account_code(lang: str, code: str, minutes: int, organisation: str, purpose: str) -> str:
    """The text with an account's code: to sign in (``purpose`` "sign-in", sent only once
    the password was right, so an unexpected one is a warning) or to add this phone."""
    words = translations(lang)
    if purpose == "enrol":
        text = words.gettext(
            "%(code)s is your code to add this phone to your %(organisation)s account. "
            "Valid for %(minutes)s minutes."
        )
    else:
        text = words.gettext(
            "%(code)s is your %(organisation)s sign-in code. Valid for %(minutes)s minutes. "
            "Did not ask for it? Someone knows your password: change it."
        )
    return text % {"code": code, "minutes": minutes, "organisation": organisation}


def _from_accept_language(header: str) -> str | None:
    """The first of LANGUAGES the browser asks for, by q-value, RFC 9110 §12.5.4."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:50]):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in LANGUAGES:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if 0.0 < quality <= 1.0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else None


def choose(
    query: str | None,
    cookie: str | None,
    accept_language: str | None,
    default: str = "en",
) -> str:
    """The page language: ``?lang=`` > cookie > Accept-Language > ``default``."""
    for explicit in (query, cookie):
        if explicit is not None and explicit.strip().lower() in LANGUAGES:
            return explicit.strip().lower()
    if accept_language:
        wanted = _from_accept_language(accept_language)
        if wanted is not None:
            return wanted
    return default if default in LANGUAGES else LANGUAGES[0]
