"""Rendering the notification templates: Jinja2 with gettext, text and HTML.

Templates live beside this module in ``templates/<kind>.{subject.txt,txt,html}``,
one per message for every language: their words are msgids, translated from
the catalogues in ``gateway/locale`` (Jinja2's i18n extension, new-style
gettext: ``_("... %(name)s", name=value)`` escapes ``value`` in HTML).
Text templates are rendered without escaping, HTML ones with autoescape on;
undefined variables are errors. An administrator's subject template is
rendered in the same sandboxed environment and checked when the notifier is
made, so that a bad one is a configuration error, never an undeliverable message.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from gateway.locale import N_, SOURCE, translations
from gateway.logsetup import event
from gateway.notify.original import clean_text

log = logging.getLogger("sealgate.notify")

DIRECTORY = Path(__file__).parent / "templates"
MAX_SUBJECT = 250

_MONTHS = (
    # Translators: month names, as in "28 December 2026 at 14:00 UTC".
    N_("January"), N_("February"), N_("March"), N_("April"), N_("May"), N_("June"),
    # Translators: month names, as in "28 December 2026 at 14:00 UTC".
    N_("July"), N_("August"), N_("September"), N_("October"), N_("November"), N_("December"),
)  # fmt: skip


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@functools.cache
def environment(lang: str = SOURCE) -> SandboxedEnvironment:
    """The templates, speaking ``lang`` (one environment per language, made once)."""
    env = SandboxedEnvironment(
        loader=FileSystemLoader(DIRECTORY),
        # Compiled once: without this, Jinja2 stats the template files for every
        # message to see whether they changed (5 % of the event loop's time).
        auto_reload=False,
        autoescape=select_autoescape(("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


def render(
    kind: str, lang: str, context: dict[str, Any], subject: Template | None = None
) -> Rendered:
    """The subject, text and HTML of one message; ``subject`` overrides the default one."""
    env = environment(lang)
    default = env.get_template(f"{kind}.subject.txt")
    title = None
    if subject is not None:
        try:
            title = clean_text(subject.render(context), MAX_SUBJECT)
        except TemplateError as error:  # checked when configured; never let it stop a message
            event(log, logging.WARNING, "subject template failed; default used",
                  language=lang, error=type(error).__name__)  # fmt: skip
            title = None
    title = title or clean_text(default.render(context), MAX_SUBJECT) or kind
    page = {**context, "title": title}
    text = env.get_template(f"{kind}.txt").render(page)
    html = env.get_template(f"{kind}.html").render(page)
    return Rendered(title, _lines(text), _lines(html))


def subject_template(source: str) -> Template:
    """An administrator's subject template, compiled and tried; ValueError when it is bad."""
    try:
        template = environment().from_string(source)
        template.render(
            sender="alice@example.org",
            sender_name="Alice Example",
            organisation="Example",
            subject="Subject",
        )
    except TemplateError as error:
        raise ValueError(f"subject template: {error.message or type(error).__name__}") from None
    return template


def when(moment: datetime, lang: str) -> str:
    """A moment in plain words, in UTC: "28 December 2026 at 14:00 UTC"."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    words = translations(lang)
    return words.gettext("%(day)s %(month)s %(year)s at %(time)s UTC") % {
        "day": moment.day,
        "month": words.gettext(_MONTHS[moment.month - 1]),
        "year": moment.year,
        "time": f"{moment:%H:%M}",
    }


def ink(colour: str) -> str:
    """Black or white, whichever reads better on ``colour`` ("#rrggbb")."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    on_white = 1.05 / (luminance + 0.05)
    on_black = (luminance + 0.05) / 0.05
    return "#ffffff" if on_white >= on_black else "#000000"


def _lines(text: str) -> str:
    """Line ends normalised, trailing blanks dropped, one final newline."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"
