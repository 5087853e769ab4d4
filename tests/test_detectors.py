"""The built-in detectors: precision and recall on the corpora, properties, options, registry.

The corpora are in tests/data/detectors (rebuilt by its generate.py). Figures
measured on them, each asserted below:

=================  ======  =========  ==============================================
detector           recall  precision  hits counted
=================  ======  =========  ==============================================
bsn                1.000   0.953      122 true, 6 false: 6 of the 40 bare nine-digit
                                      customer numbers among the look-alikes pass
                                      the 11-test; nothing else is reported
bsn, context       1.000   1.000      62 true (the valid texts with a context word)
iban               1.000   1.000      189 true (89 countries), 0 false
payment_card       1.000   1.000      137 true (8 schemes), 0 false; of the 40
                                      twelve-digit parcel numbers among the
                                      look-alikes about 1 in 67 would be a
                                      Luhn-valid Maestro number, none here is
email_addresses    1.000   1.000      12 true, 0 false
=================  ======  =========  ==============================================

On random nine-digit strings the BSN detector fires at the rate the 11-test
implies: exactly 90,909,090 of the 10**9 nine-digit strings, 9.0909090 %;
measured 8.84 % on 10,000 seeded strings (within 1 sigma); with
``require_context`` and no context word, 0 %. On random strings of digits and
separators, 9.30 % of the stand-alone nine-digit candidates are hits.
"""

from __future__ import annotations

import json
import random
import re
import string
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.policy.detectors as registry
from gateway.policy.detectors import BUILTIN, DetectorPluginError, available
from gateway.policy.detectors.bsn import passes_11_test
from gateway.policy.detectors.cards import SCHEMES, luhn_valid
from gateway.policy.detectors.iban import LENGTHS, valid_check_digits
from gateway.policy.types import Detector, DetectorConfigError

DATA = Path(__file__).parent / "data" / "detectors"
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def corpus(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def make(name: str, **options: Any) -> Detector:
    return BUILTIN[name](options)


# --- Precision and recall on the corpora ---------------------------------------------------


def measure(
    detector: Detector, valid: list[dict[str, Any]], invalid: list[dict[str, Any]]
) -> tuple[float, float, int, int]:
    """Recall over the expected values, precision over every value reported; TP and FP counts.

    A valid text must yield exactly its value; an invalid text or a look-alike nothing.
    """
    true = false = missed = 0
    for case in valid:
        found = detector.find(case["text"])
        true += found.count(case["value"])
        missed += case["value"] not in found
        false += len([value for value in found if value != case["value"]])
    for case in invalid:
        false += len(detector.find(case["text"]))
    return true / (true + missed), true / (true + false), true, false


def false_hits(detector: Detector, invalid: list[dict[str, Any]]) -> int:
    return sum(len(detector.find(case["text"])) for case in invalid)


def test_corpora_are_big_enough() -> None:
    assert len(corpus("bsn")["valid"]) >= 100
    assert len({case["value"][:2] for case in corpus("iban")["valid"]}) >= 30
    issued = {name for case in corpus("cards")["valid"] for name, s in SCHEMES.items()
              if s.issues(case["value"])}  # fmt: skip
    assert issued == set(SCHEMES)
    kinds = {case["kind"] for case in corpus("lookalikes")}
    for kind in ("order number", "phone number", "date", "invoice number", "isbn",
                 "tracking number", "postcode", "amount", "timestamp"):  # fmt: skip
        assert kind in kinds


def test_bsn_precision_and_recall() -> None:
    """Recall 1.000; precision 0.953 (122 true, 6 false: bare customer numbers)."""
    data = corpus("bsn")
    lookalikes = corpus("lookalikes")
    recall, precision, true, false = measure(
        make("bsn"), data["valid"], data["invalid"] + lookalikes
    )
    assert (recall, true, false) == (1.0, 122, 6)
    assert precision == pytest.approx(0.953, abs=0.0005)
    bare = [case for case in lookalikes if case["kind"] == "nine-digit customer number"]
    others = [case for case in lookalikes if case["kind"] != "nine-digit customer number"]
    assert false_hits(make("bsn"), data["invalid"] + others) == 0  # the rules reject every one
    chance = sum(passes_11_test(case["text"][-9:]) for case in bare)
    assert false == chance == 6  # exactly those that pass the 11-test by chance


def test_bsn_with_context_precision_and_recall() -> None:
    """require_context: recall 1.000 on the 62 texts with a context word, precision 1.000."""
    data = corpus("bsn")
    with_context = [case for case in data["valid"] if case["context"]]
    without = [{"text": case["text"]} for case in data["valid"] if not case["context"]]
    detector = make("bsn", require_context=True)
    negatives = data["invalid"] + corpus("lookalikes") + without
    recall, precision, true, false = measure(detector, with_context, negatives)
    assert (recall, precision, true, false) == (1.0, 1.0, 62, 0)


def test_iban_precision_and_recall() -> None:
    """Recall 1.000 (189 IBANs, every registry country), precision 1.000."""
    data = corpus("iban")
    invalid = data["invalid"] + corpus("lookalikes")
    recall, precision, true, _ = measure(make("iban"), data["valid"], invalid)
    assert (recall, precision, true) == (1.0, 1.0, 189)
    assert {case["value"][:2] for case in data["valid"]} == set(LENGTHS)


def test_card_precision_and_recall() -> None:
    """Recall 1.000 (137 numbers, all 8 schemes), precision 1.000."""
    data = corpus("cards")
    invalid = data["invalid"] + corpus("lookalikes")
    recall, precision, true, _ = measure(make("payment_card"), data["valid"], invalid)
    assert (recall, precision, true) == (1.0, 1.0, 137)


def test_email_precision_and_recall() -> None:
    """Recall 1.000, precision 1.000 on 12 addresses and 10 near-misses."""
    data = corpus("emails")
    invalid = data["invalid"] + corpus("lookalikes")
    recall, precision, _, _ = measure(make("email_addresses"), data["valid"], invalid)
    assert (recall, precision) == (1.0, 1.0)


# --- Properties: valid numbers in random text are found, with the right value ------------

FILLER = st.sampled_from(
    ["de", "het", "patiënt", "factuur", "meeting", "Grüße", "naïve", "l'été", "and", "NL",
     "IBAN", "&amp;", "—", "…", "?", "!", "(zie bijlage)", "«citaat»", "日本語"]
)  # fmt: skip
BREAK = st.sampled_from([" ", "\n", "\r\n", "\t", ": ", ", ", " (", ") ", "\u00a0", " - ", "; "])
HTML = st.sampled_from(["{}", "<td>{}</td>", "<p>Nummer: {}</p>", "<b>{}</b>\n", "<li>{}, ok</li>"])


@st.composite
def prose(draw: st.DrawFn) -> str:
    words = draw(st.lists(FILLER, max_size=12))
    return "".join(word + draw(BREAK) for word in words)


@st.composite
def embedded(draw: st.DrawFn, written: str) -> str:
    """``written`` in random prose or HTML-as-text, apart from its neighbours."""
    before = draw(prose()) + draw(BREAK)
    after = draw(BREAK) + draw(prose())
    return before + draw(HTML).format(written) + after


@st.composite
def bsns(draw: st.DrawFn) -> tuple[str, str]:
    head = draw(st.text(string.digits, min_size=8, max_size=8))
    weighted = sum(w * int(d) for w, d in zip((9, 8, 7, 6, 5, 4, 3, 2), head, strict=True))
    last = weighted % 11
    if last == 10 or head + str(last) == "0" * 9:
        head, last = "11122233", 3
    digits = head + str(last)
    written = draw(st.sampled_from([
        digits, f"{digits[:4]}.{digits[4:6]}.{digits[6:]}", f"{digits[:4]} {digits[4:6]} {digits[6:]}",
        f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
    ]))  # fmt: skip
    return digits, written


@st.composite
def ibans(draw: st.DrawFn) -> tuple[str, str]:
    country = draw(st.sampled_from(sorted(LENGTHS)))
    bban = draw(st.text(string.digits + string.ascii_uppercase, min_size=LENGTHS[country] - 4,
                        max_size=LENGTHS[country] - 4))  # fmt: skip
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    iban = f"{country}{98 - number % 97:02d}{bban}"
    written = draw(
        st.sampled_from([iban, " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))])
    )
    return iban, written.lower() if draw(st.booleans()) else written


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str]:
    scheme = draw(st.sampled_from(sorted(SCHEMES.values(), key=repr)))
    low, high = draw(st.sampled_from(scheme.prefixes))
    prefix = str(draw(st.integers(int(low), int(high)))).zfill(len(low))
    length = draw(st.sampled_from(sorted(scheme.lengths)))
    body = prefix + draw(st.text(string.digits, min_size=length - len(prefix) - 1,
                                 max_size=length - len(prefix) - 1))  # fmt: skip
    number = next(body + d for d in string.digits if luhn_valid(body + d))
    separator = draw(st.sampled_from(["", " ", "-"]))
    if separator and length in (14, 15) and draw(st.booleans()):
        written = separator.join((number[:4], number[4:10], number[10:]))
    else:
        written = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    return number, written


@PROPERTY
@given(st.data(), bsns())
def test_a_bsn_in_random_text_is_found(data: st.DataObject, bsn: tuple[str, str]) -> None:
    digits, written = bsn
    assert make("bsn").find(data.draw(embedded(written))) == [digits]


@PROPERTY
@given(st.data(), ibans())
def test_an_iban_in_random_text_is_found(data: st.DataObject, iban: tuple[str, str]) -> None:
    compact, written = iban
    assert make("iban").find(data.draw(embedded(written))) == [compact]


@PROPERTY
@given(st.data(), cards())
def test_a_card_in_random_text_is_found(data: st.DataObject, card: tuple[str, str]) -> None:
    number, written = card
    assert make("payment_card").find(data.draw(embedded(written))) == [number]


# --- The BSN detector's false-positive rate on random digits -------------------------------

# The rules, restated with Python's re (look-around) to check the re2 scanner against.
_REFERENCE = re.compile(
    r"(?<![\w])(\d{9}|\d{4}\.\d\d\.\d{3}|\d{4} \d\d \d{3}|\d{3}\.\d{3}\.\d{3})(?!\w)"
)
_PREFIX = re.compile(r"(?:\d[.\-]|(?:\+|(?<!\d)00)\d{1,3}[ \-]?(?:\(0\)[ \-]?)?)\Z")


def reference_candidates(text: str) -> list[str]:
    """Stand-alone BSN-shaped numbers in text made of digits, spaces, dots and hyphens."""
    found = []
    for match in _REFERENCE.finditer(text):
        continued = re.match(r"[.\-]\d", text[match.end() :]) is not None
        if not continued and _PREFIX.search(text[: match.start()]) is None:
            found.append(match.group(1).replace(".", "").replace(" ", ""))
    return found


@PROPERTY
@given(st.text("0123456789 .-", min_size=5, max_size=30))
def test_bsn_hits_in_random_digits_are_exactly_the_stand_alone_11_test_passes(text: str) -> None:
    expected = [digits for digits in reference_candidates(text) if passes_11_test(digits)]
    assert make("bsn").find(text) == expected


def exact_11_test_rate() -> float:
    """The share of all 10**9 nine-digit strings that pass the 11-test, counted exactly."""
    counts = [1] + [0] * 10  # weighted sums of the first k digits, modulo 11
    for weight in (9, 8, 7, 6, 5, 4, 3, 2):
        counts = [sum(counts[(r - weight * d) % 11] for d in range(10)) for r in range(11)]
    # d9 (weight -1) closes the sum to 0 mod 11 for one digit when the rest is 0..9 mod 11.
    passing = 10**8 - counts[10] - 1  # and 000000000 does not count
    return passing / 10**9


def test_bsn_rate_on_random_nine_digit_numbers_is_the_11_test_rate() -> None:
    """Measured 8.84 % on 10,000 seeded random strings; the 11-test implies 9.09 %."""
    rng = random.Random(11)
    numbers = ["".join(rng.choice(string.digits) for _ in range(9)) for _ in range(10_000)]
    text = "\n".join(numbers)
    rate = len(make("bsn").find(text)) / len(numbers)
    exact = exact_11_test_rate()
    assert exact == 90_909_090 / 10**9
    assert abs(rate - exact) < 4 * (exact * (1 - exact) / len(numbers)) ** 0.5  # 4 sigma: 0.0115
    assert rate == pytest.approx(0.0884, abs=0.0001)
    assert make("bsn", require_context=True).find(text) == []


def test_bsn_rate_on_random_digit_strings_follows_the_rules() -> None:
    """100,000 seeded strings as in the property test above (5-30 characters of digits, space,
    dot, hyphen): 3,408 stand-alone candidates, 317 hits, so 9.30 % of candidates (1/11 = 9.09 %)
    and 0.317 % of strings."""
    rng = random.Random(12)
    texts = ["".join(rng.choice("0123456789 .-") for _ in range(rng.randint(5, 30)))
             for _ in range(100_000)]  # fmt: skip
    detector = make("bsn")
    candidates = sum(len(reference_candidates(text)) for text in texts)
    hits = sum(len(detector.find(text)) for text in texts)
    assert (candidates, hits) == (3408, 317)
    assert abs(hits / candidates - 1 / 11) < 4 * (1 / 11 * 10 / 11 / candidates) ** 0.5


# --- The BSN detector's rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("123456782 en 1234.56.782, 1234 56 782; 123.456.782.", ["123456782"] * 4),
        ("12345678", []),  # eight digits: not accepted
        ("BSN: 123456782\n111222333", ["123456782", "111222333"]),
        ("123456782 987654321", ["123456782"]),  # adjacency does not hide the second
        ("123456782,19800101,Jansen", ["123456782"]),  # a CSV row
        ("+31 123456782 / 0031 123456782 / +31 (0)123456782", []),
        ("5.123456782, 2026-123456782, 123456782-01, 123456782.5", []),
        ("€ 123456782, EUR 123.456.782, 123.456.782,00", []),
        ("x123456782 123456782x 123456782_", []),
        ("١٢٣٤٥٦٧٨٢", []),  # only ASCII digits are digits here
    ],
)
def test_bsn_rules(text: str, found: list[str]) -> None:
    assert make("bsn").find(text) == found


def test_bsn_context_window_and_words() -> None:
    detector = make("bsn", require_context=True, context_window=20)
    assert detector.find("BSN 123456782") == ["123456782"]
    assert detector.find("123456782 (bsn)") == ["123456782"]
    assert detector.find("patiëntnummer: 123456782") == ["123456782"]  # a prefix of a compound
    assert make("bsn", require_context=True).find("Burger\nService  nummer 123456782")
    assert detector.find("bsn" + " " * 30 + "123456782") == []  # outside the window
    assert detector.find("abcbsn 123456782") == []  # not the start of a word
    own = make("bsn", require_context=True, context_words=["klant-id"], context_window=10)
    assert own.find("klant-id 123456782" + " " * 20 + "bsn 111222333") == ["123456782"]


# --- IBAN, cards, e-mail, keywords, regex --------------------------------------------------


def test_iban_print_format_and_neighbours() -> None:
    detector = make("iban")
    assert detector.find("NL91 ABNA 0417 1643 00 NL91ABNA0417164300") == ["NL91ABNA0417164300"] * 2
    assert detector.find("BE68 5390 0754 7034 NL91 ABNA 0417 1643 00") == [
        "BE68539007547034", "NL91ABNA0417164300"]  # fmt: skip
    assert detector.find("AB12 NL91 ABNA 0417 1643 00") == ["NL91ABNA0417164300"]
    assert detector.find("NL91\u00a0ABNA\u00a00417\u00a01643\u00a000") == ["NL91ABNA0417164300"]
    assert detector.find("NL91 ABNA 0417 1643 00X1 NL91ABNA041716430") == []
    assert make("iban", countries=["de"]).find("NL91ABNA0417164300") == []
    assert valid_check_digits("NL91ABNA0417164300")
    assert not valid_check_digits("NL92ABNA0417164300")


def test_card_groupings() -> None:
    detector = make("payment_card")
    assert detector.find("4111 1111 1111 1111 12/28 123") == ["4111111111111111"]
    assert detector.find("4111 1111 1111 1111 5500 0000 0000 0004") == [
        "4111111111111111", "5500000000000004"]  # fmt: skip
    assert detector.find("3782 822463 10005 and 3782-822463-10005") == ["378282246310005"] * 2
    assert detector.find("4111 1111-1111 1111, 41111111111111112, 4111111111111112") == []
    assert make("payment_card", schemes=["amex"]).find("4111111111111111") == []


def test_email_options() -> None:
    text = "Jan.Jansen+x@Example.com, info@klant.nl, p@intern.example.org, NoReply@x.nl"
    assert make("email_addresses").find(text) == [
        "jan.jansen+x@example.com",
        "info@klant.nl",
        "p@intern.example.org",
        "noreply@x.nl",
    ]
    detector = make("email_addresses", exclude_domains=["example.org"], personal_only=True)
    assert detector.find(text) == ["jan.jansen+x@example.com"]
    assert make("email_addresses", exclude_domains=["müller.de"]).find("a@xn--mller-kva.de") == []


def test_keywords() -> None:
    detector = make("keywords", words=["secret", "Top Secret", "vertrouwelijk", "café"])
    text = "TOP\n\u00a0SECRET; secretary, secrets, Secret! vertrouwelijk_x cafés café."
    assert detector.find(text) == ["Top Secret", "secret", "café"]
    assert make("keywords", words=["Secret"], case_sensitive=True).find("secret Secret") == [
        "Secret"
    ]
    assert make("keywords", words=["x"]).find("x x x") == ["x", "x", "x"]


@PROPERTY
@given(st.data(), st.text("abcxyzéüøçσςß", min_size=2, max_size=8))
def test_a_keyword_in_any_case_is_found_as_configured(data: st.DataObject, word: str) -> None:
    flip = {char: char.upper() for char in word if len(char.upper()) == 1}  # not ß -> SS
    written = "".join(flip[c] if c in flip and data.draw(st.booleans()) else c for c in word)
    detector = make("keywords", words=[word, "filler phrase"])
    assert detector.find(data.draw(embedded(written))) == [word]


def test_regex() -> None:
    detector = make("regex", pattern=r"PRJ-\d+", flags=["ignorecase"])
    assert detector.find("prj-12, PRJ-9 and \ud800 PRJ-") == ["prj-12", "PRJ-9"]
    assert make("regex", pattern=r"^\w+$", flags=["multiline"]).find("ab\ncd") == ["ab", "cd"]
    assert make("regex", pattern=r"a.b", flags=["dotall"]).find("a\nb") == ["a\nb"]
    assert make("regex", pattern=r"\bx?").find("ab") == []  # empty matches are no hits


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    detector = make("regex", pattern=r"(a+)+$")
    assert detector.find("a" * 50_000 + "!") == []  # backtracking engines never return


# --- Options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "key", "words"),
    [
        ("bsn", {"colour": "red"}, "colour", "unknown option"),
        ("bsn", {"require_context": "yes"}, "require_context", "true or false"),
        ("bsn", {"context_window": 0}, "context_window", "at least 1"),
        ("bsn", {"context_window": True}, "context_window", "whole number"),
        ("bsn", {"context_words": "bsn"}, "context_words", "list of strings"),
        ("bsn", {"context_words": []}, "context_words", "must not be empty"),
        ("bsn", {"context_words": ["bsn", 3]}, "context_words", "item 2"),
        ("iban", {"countries": ["NL", "XX"]}, "countries", "'XX'"),
        ("payment_card", {"schemes": ["visa", "diners club"]}, "schemes", "'diners club'"),
        ("email_addresses", {"exclude_domains": ["a@b.nl"]}, "exclude_domains", "not a domain"),
        ("email_addresses", {"personal_only": 1}, "personal_only", "true or false"),
        ("keywords", {}, "words", "required"),
        ("keywords", {"words": []}, "words", "must not be empty"),
        ("keywords", {"words": ["a", " "]}, "words", "item 2"),
        ("keywords", {"words": ["Geheim", "geheim"]}, "words", "twice"),
        ("keywords", {"words": ["a"], "files": ["x"]}, "files", "unknown option"),
        ("regex", {}, "pattern", "required"),
        ("regex", {"pattern": ""}, "pattern", "must not be empty"),
        ("regex", {"pattern": 5}, "pattern", "must be a string"),
        ("regex", {"pattern": "(?<=a)b"}, "pattern", "look-around or backreferences"),
        ("regex", {"pattern": r"(a)\1"}, "pattern", "look-around or backreferences"),
        ("regex", {"pattern": "a("}, "pattern", "not a valid regular expression"),
        ("regex", {"pattern": "a*"}, "pattern", "empty string"),
        ("regex", {"pattern": "a", "flags": ["verbose"]}, "flags", "'verbose'"),
    ],
)
def test_option_errors_name_the_key(
    name: str, options: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(DetectorConfigError) as caught:
        BUILTIN[name](options)
    assert caught.value.key == key
    assert words in caught.value.problem


def test_options_must_be_a_table() -> None:
    with pytest.raises(DetectorConfigError, match="must be a table"):
        BUILTIN["bsn"](["require_context"])  # type: ignore[arg-type]


def test_detectors_are_immutable_and_shareable() -> None:
    detector = make("iban")
    with pytest.raises(AttributeError):
        detector.name = "other"
    required: dict[str, dict[str, Any]] = {"keywords": {"words": ["a"]}, "regex": {"pattern": "a"}}
    assert [BUILTIN[name](required.get(name, {})).name for name in BUILTIN] == list(BUILTIN)
    texts = [f"IBAN NL91ABNA0417164300 nr {i}" * 50 for i in range(8)]
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda t=t: results.append(detector.find(t))) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [["NL91ABNA0417164300"] * 50] * 8


# --- Registry ------------------------------------------------------------------------------


def fake_factory(options: Mapping[str, Any]) -> Detector:
    return make("keywords", words=["fake"])


def entry_points_of(*points: EntryPoint) -> Callable[..., list[EntryPoint]]:
    def entry_points(*, group: str) -> list[EntryPoint]:
        return [point for point in points if point.group == group]

    return entry_points


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="sealgate.detectors")


def test_available_lists_the_builtins() -> None:
    assert set(BUILTIN) == {"bsn", "iban", "payment_card", "email_addresses", "keywords", "regex"}
    assert BUILTIN.items() <= available().items()


def test_a_third_party_detector_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry,
        "entry_points",
        entry_points_of(point("steuer_id", "tests.test_detectors:fake_factory")),
    )
    found = available()
    assert found["steuer_id"] is fake_factory
    assert set(found) == set(BUILTIN) | {"steuer_id"}


@pytest.mark.parametrize(
    ("points", "words"),
    [
        ([point("bsn", "tests.test_detectors:fake_factory")], "'bsn'.*clashes with the built-in"),
        (
            [point("broken", "no_such_module_xyz:factory")],
            "'broken'.*no_such_module_xyz.*cannot be",
        ),
        ([point("odd", "tests.test_detectors:DATA")], "'odd'.*not callable"),
        ([point("twice", "tests.test_detectors:fake_factory")] * 2, "'twice'.*more than one"),
    ],
)
def test_a_bad_third_party_detector_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, points: list[EntryPoint], words: str
) -> None:
    monkeypatch.setattr(registry, "entry_points", entry_points_of(*points))
    with pytest.raises(DetectorPluginError, match=words):
        available()


@pytest.mark.parametrize(
    ("detector", "text", "value"),
    [
        ("iban", "pay to NL91 ABNA\n0417 1643 00 today", "NL91ABNA0417164300"),
        ("iban", "IBAN: DE89 3704 0044\r\n0532 0130 00", "DE89370400440532013000"),
        ("payment_card", "card 4111 1111\n1111 1111 exp", "4111111111111111"),
    ],
)
def test_numbers_wrapped_across_lines_are_found(detector, text, value):
    """Regression: hard-wrapped mail and PDF text split printed numbers over two lines."""
    assert BUILTIN[detector]({}).find(text) == [value]
