"""The gettext catalogues against the code: every word translated, every translation used.

The msgids are extracted from the Python code, the portal's and the notifications'
templates and portal.js with Babel and the project's babel.cfg, exactly as
`make messages` does, and compared with each catalogue in gateway/locale: a word
added to the code without a translation fails here, and so does a translation
left behind after its word was changed or removed (docs/translating.md).
"""

from __future__ import annotations

import functools
import gettext
import re
import tomllib
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from gateway import locale
from gateway.notify import settings as notify_settings
from gateway.portal import i18n

ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")


@functools.cache
def extracted() -> Catalog:
    """Every msgid the code asks for, found as `make messages` finds them."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    catalog = Catalog()
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        catalog.add(message, None, [(filename, lineno)], context=context)
    return catalog


def read(path: Path) -> Catalog:
    with path.open("rb") as source:
        return read_po(source)


def ids(catalog: Catalog) -> set[str | tuple[str, ...]]:
    return {message.id for message in catalog if message.id}


def _forms(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple) else [message.string]


def _source(message: Message) -> list[str]:
    return list(message.id) if isinstance(message.id, tuple) else [message.id]


def problems(catalog: Catalog, wanted: Catalog) -> list[str]:
    """What is wrong with ``catalog`` for the msgids in ``wanted``; empty when nothing is."""
    found: list[str] = []
    for message in wanted:
        if not message.id:
            continue
        entry = catalog.get(message.id, message.context)
        if entry is None:
            found.append(f"missing: {message.id!r}")
            continue
        forms = _forms(entry)
        if entry.fuzzy or not all(form.strip() for form in forms):
            found.append(f"untranslated or fuzzy: {message.id!r}")
            continue
        if isinstance(message.id, tuple) and len(forms) != catalog.num_plurals:
            found.append(f"{catalog.num_plurals} plural forms wanted: {message.id!r}")
        source = _source(message)
        names = {name for text in source for name in _PLACEHOLDER.findall(text)}
        tags = sorted(_TAG.findall(source[-1]))
        for form in forms:
            # %(num)s may be left out where a language says "one" instead of "1".
            if set(_PLACEHOLDER.findall(form)) - {"num"} != names - {"num"}:
                found.append(f"placeholders differ: {message.id!r}")
            try:
                form % dict.fromkeys(names | {"num"}, "x")
            except (TypeError, ValueError, KeyError):
                found.append(f"not a format string (a lone %? write %%): {message.id!r}")
            if sorted(_TAG.findall(form)) != tags:
                found.append(f"HTML tags differ from the msgid's: {message.id!r}")
    used = ids(wanted)
    found += [
        f"unused: {message.id!r}" for message in catalog if message.id and message.id not in used
    ]
    found += [f"obsolete: {key!r}" for key in catalog.obsolete]
    return found


CATALOGUES = locale.catalogued()


def test_there_are_catalogues_and_words():
    assert CATALOGUES == ("nl",)
    assert len(extracted()) > 150


@pytest.mark.parametrize("lang", CATALOGUES)
def test_every_word_is_translated_and_every_translation_used(lang):
    catalog = read(locale.catalogue_path(lang))
    assert catalog.locale is not None and str(catalog.locale) == lang
    assert problems(catalog, extracted()) == []


def test_the_template_for_new_languages_is_up_to_date():
    assert ids(read(locale.DIRECTORY / f"{locale.DOMAIN}.pot")) == ids(extracted())


def test_the_check_finds_a_missing_an_unused_and_a_fuzzy_word():
    catalog = read(locale.catalogue_path("nl"))
    catalog.delete("Sign out")
    catalog.add("A word nobody asks for", "Een woord")
    catalog["Try again"].flags.add("fuzzy")
    catalog["Reference: %(reference)s"].string = "Kenmerk: %(ref)s"
    catalog["Your code"].string = "<b>Uw code</b>"
    catalog["Attachments"].string = ""
    assert sorted(problems(catalog, extracted())) == sorted(
        [
            "missing: 'Sign out'",
            "unused: 'A word nobody asks for'",
            "untranslated or fuzzy: 'Try again'",
            "placeholders differ: 'Reference: %(reference)s'",
            "not a format string (a lone %? write %%): 'Reference: %(reference)s'",
            "HTML tags differ from the msgid's: 'Your code'",
            "untranslated or fuzzy: 'Attachments'",
        ]
    )


def test_the_languages_offered_are_english_and_the_catalogues():
    assert set(i18n.LANGUAGES) == {locale.SOURCE, *CATALOGUES}
    assert set(notify_settings.LANGUAGES) == set(i18n.LANGUAGES)


def test_translations_are_read_from_the_catalogue():
    dutch = locale.translations("nl")
    assert dutch.gettext("Sign out") == "Afmelden"
    assert dutch.ngettext("The code is valid for %(num)s minute.", "…", 1) == (
        "De code is %(num)s minuut geldig."
    )
    assert dutch.ngettext("The code is valid for %(num)s minute.", "…", 5) == (
        "De code is %(num)s minuten geldig."
    )
    for lang in ("en", "de", "../nl", "NL"):  # the source, no catalogue, not a language tag
        words = locale.translations(lang)
        assert type(words) is gettext.NullTranslations
        assert words.gettext("Sign out") == "Sign out"


def test_a_fuzzy_translation_is_not_used(tmp_path, monkeypatch):
    text = locale.catalogue_path("nl").read_text()
    entry = 'msgid "Sign out"\nmsgstr "Afmelden"'
    assert entry in text
    folder = tmp_path / "nl" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / f"{locale.DOMAIN}.po").write_text(text.replace(entry, "#, fuzzy\n" + entry))
    monkeypatch.setattr(locale, "DIRECTORY", tmp_path)
    locale.translations.cache_clear()
    try:
        words = locale.translations("nl")
        assert words.gettext("Sign out") == "Sign out"
        assert words.gettext("Try again") == "Opnieuw proberen"
    finally:
        monkeypatch.undo()
        locale.translations.cache_clear()


def test_an_installed_sealgate_has_its_catalogues_and_templates():
    """setuptools' package data takes every file the words live in, and the portal's static
    files with the vendored zxcvbn-ts and its README and licence texts."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    dependencies = config["project"]["dependencies"]
    assert any(dependency.startswith("babel") for dependency in dependencies)
    for package, folder, patterns in (
        ("gateway.locale", ROOT / "gateway" / "locale", ("*.po",)),
        ("gateway.notify", ROOT / "gateway" / "notify", ("*.html", "*.txt")),
        (
            "gateway.portal",
            ROOT / "gateway" / "portal",
            ("*.html", "*.js", "*.css", "*.md", "*.txt"),
        ),
    ):
        files = {path for pattern in patterns for path in folder.rglob(pattern)}
        packaged = {path for glob in package_data[package] for path in folder.glob(glob)}
        assert files and files <= packaged, sorted(map(str, files - packaged))
