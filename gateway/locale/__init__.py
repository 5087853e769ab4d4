"""The words Sealgate shows and writes, in gettext catalogues.

The portal's pages, portal.js and the notifications take their words from
``<lang>/LC_MESSAGES/sealgate.po`` beside this module. English is the source
language: a msgid is the English text itself, so English needs no catalogue and
a translator sees the sentence, not a key. Placeholders are ``%(name)s``
everywhere (Python, Jinja2 and portal.js alike); ``%%`` is a percent sign.

The catalogues are read with Babel at first use: no compiled ``.mo`` files
that could fall behind the ``.po`` they come from. Fuzzy entries are not used,
as msgfmt would not use them: a message whose translation is missing or fuzzy
comes out in English (and ``tests/test_catalogues.py`` fails on it).
docs/translating.md says how to add or change words and languages.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "sealgate"
SOURCE = "en"
DIRECTORY = Path(__file__).parent

_TAG = re.compile(r"[a-z]{2,3}")


def catalogue_path(lang: str) -> Path:
    """Where the catalogue of ``lang`` is (it may not exist)."""
    return DIRECTORY / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def catalogued() -> tuple[str, ...]:
    """The languages that have a catalogue, sorted."""
    found = DIRECTORY.glob(f"*/LC_MESSAGES/{DOMAIN}.po")
    return tuple(sorted(path.parent.parent.name for path in found))


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The translations for ``lang``; English (the msgids) for the source or an unknown language."""
    path = catalogue_path(lang)
    if lang == SOURCE or not _TAG.fullmatch(lang) or not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def N_(message: str) -> str:
    """Marks ``message`` for extraction (``N_`` is what the tools look for); translated later."""
    return message
