"""TOTP as an account's second factor: codes, replays, enrolment tokens, sealed seeds, QR codes.

Codes are checked against pyotp's and against the RFC 6238 test vectors; the QR
code is read back from the SVG by a real decoder (zxing-cpp) after drawing the
SVG's path into a bitmap.
"""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import zxingcpp
from defusedxml import ElementTree
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.envelope.keys import b64url, b64url_decode
from gateway.identity.totp import (
    DIGITS,
    ENROLMENT_MINUTES,
    SEED_BYTES,
    STEP,
    TOTP,
    TOTPError,
)
from gateway.installsecret import Secrets

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ISSUER = "Acme B.V."
ADDRESS = "Bob.Smith@Example.NET"
NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
RFC_SEED = b"12345678901234567890"  # RFC 6238 Appendix B, HMAC-SHA1
SEED = bytes(range(100, 100 + SEED_BYTES))

totp = TOTP(KEY, ISSUER)


def code_at(seed: bytes, moment: datetime) -> str:
    """The code pyotp (not the module under test) gives for ``moment``."""
    return pyotp.TOTP(base64.b32encode(seed).decode()).at(moment)


def window_codes(seed: bytes, now: datetime) -> set[str]:
    """The codes accepted at ``now``: the steps before, at and after it."""
    return {code_at(seed, now + timedelta(seconds=k * STEP)) for k in (-1, 0, 1)}


def step_of(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP


# --- codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "code"),
    [
        (59, "287082"),
        (1111111109, "081804"),
        (1111111111, "050471"),
        (1234567890, "005924"),
        (2000000000, "279037"),
        (20000000000, "353130"),
    ],
)
def test_rfc_6238_vectors(seconds, code):
    # Appendix B gives 8 digits; 6-digit codes are the last 6 (RFC 4226 §5.3: mod 10^6).
    now = datetime.fromtimestamp(seconds, UTC)
    assert totp.check(RFC_SEED, code, None, now) == seconds // STEP


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_codes_of_the_step_before_now_and_after_are_accepted(offset):
    code = code_at(SEED, NOW + timedelta(seconds=offset * STEP))
    assert totp.check(SEED, code, None, NOW) == step_of(NOW) + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_two_steps_away_or_more_are_refused(offset):
    code = code_at(SEED, NOW + timedelta(seconds=offset * STEP))
    assert code not in window_codes(SEED, NOW)  # this seed's codes do not collide by chance
    assert totp.check(SEED, code, None, NOW) is None


@settings(max_examples=50, deadline=None)
@given(seconds=st.integers(0, 2**33), seed=st.binary(min_size=SEED_BYTES, max_size=SEED_BYTES))
def test_the_code_of_now_is_accepted_at_any_time_for_any_seed(seconds, seed):
    now = datetime.fromtimestamp(seconds, UTC)
    assert totp.check(seed, code_at(seed, now), None, now) == seconds // STEP


def test_a_used_step_is_not_accepted_again():
    code = code_at(SEED, NOW)
    used = totp.check(SEED, code, None, NOW)
    assert used == step_of(NOW)
    assert totp.check(SEED, code, used, NOW) is None
    assert totp.check(SEED, code, used, NOW + timedelta(seconds=STEP)) is None  # still in window


def test_an_older_step_is_refused_after_a_newer_one_was_used():
    newer = totp.check(SEED, code_at(SEED, NOW), None, NOW)
    assert newer is not None
    older = code_at(SEED, NOW - timedelta(seconds=STEP))
    assert totp.check(SEED, older, newer, NOW) is None
    later = code_at(SEED, NOW + timedelta(seconds=STEP))
    assert totp.check(SEED, later, newer, NOW) == newer + 1


def test_a_code_that_is_the_same_for_two_steps_gives_the_later_step():
    # Steps 910737 and 910738 of the RFC seed share a code (the first such pair, found by
    # trying every step): accepting it uses up both, so neither comes back as a replay.
    step = 910737
    generator = pyotp.TOTP(base64.b32encode(RFC_SEED).decode())
    assert generator.at(step * STEP) == generator.at((step + 1) * STEP) == "911617"
    now = datetime.fromtimestamp(step * STEP, UTC)  # the window is step - 1, step, step + 1
    assert totp.check(RFC_SEED, "911617", None, now) == step + 1
    assert totp.check(RFC_SEED, "911617", step, now) == step + 1
    assert totp.check(RFC_SEED, "911617", step + 1, now) is None


def test_blanks_in_the_code_are_ignored():
    code = code_at(SEED, NOW)
    for typed in (f"{code[:3]} {code[3:]}", f" {code}\n", f"{code[:2]}\t{code[2:4]} {code[4:]}"):
        assert totp.check(SEED, typed, None, NOW) == step_of(NOW)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda code: "",
        lambda code: code[:-1],
        lambda code: code + "0",
        lambda code: "0" + code,
        lambda code: code[:-1] + "a",
        lambda code: code[:3] + "-" + code[3:],
        lambda code: "+" + code[1:],
        # The same number in Arabic-Indic or full-width digits: str.isdigit() says yes.
        lambda code: "".join(chr(0x0660 + int(c)) for c in code),
        lambda code: "".join(chr(0xFF10 + int(c)) for c in code),
    ],
)
def test_malformed_codes_are_refused(mangle):
    assert totp.check(SEED, mangle(code_at(SEED, NOW)), None, NOW) is None


@settings(max_examples=300, deadline=None)
@given(typed=st.text(alphabet="0123456789", min_size=DIGITS, max_size=DIGITS))
def test_any_six_digits_but_the_codes_of_the_window_are_refused(typed):
    assume(typed not in window_codes(SEED, NOW))
    assert totp.check(SEED, typed, None, NOW) is None


@settings(max_examples=300, deadline=None)
@given(typed=st.text(max_size=20))
def test_any_text_but_the_codes_of_the_window_is_refused_without_an_exception(typed):
    assume("".join(typed.split()) not in window_codes(SEED, NOW))
    assert totp.check(SEED, typed, None, NOW) is None


def test_a_time_without_a_zone_is_a_programming_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        totp.check(SEED, "123456", None, datetime(2025, 3, 14, 9, 26, 53))


# --- enrolment ---------------------------------------------------------------------


def test_enrolment_round_trip():
    enrolment = totp.enrolment(ADDRESS, NOW)
    seed = totp.open_enrolment(enrolment.token, ADDRESS, NOW + timedelta(minutes=3))
    assert len(seed) == SEED_BYTES
    assert base64.b32decode(enrolment.secret.replace(" ", "")) == seed
    # The address is compared lower-cased, as the account is looked up.
    assert totp.open_enrolment(enrolment.token, ADDRESS.lower(), NOW) == seed
    # The app that scanned the QR code gives codes that are accepted.
    assert totp.check(seed, code_at(seed, NOW), None, NOW) == step_of(NOW)


def test_every_enrolment_has_a_new_seed():
    seeds = {
        totp.open_enrolment(totp.enrolment(ADDRESS, NOW).token, ADDRESS, NOW) for _ in range(20)
    }
    assert len(seeds) == 20


def test_the_secret_is_shown_in_groups_of_four():
    secret = totp.enrolment(ADDRESS, NOW).secret
    groups = secret.split(" ")
    assert len(groups) == 8 and all(len(g) == 4 for g in groups)
    assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567 ")


def test_the_enrolment_shows_no_secret_in_its_repr():
    enrolment = totp.enrolment(ADDRESS, NOW)
    assert enrolment.secret.split(" ")[0] not in repr(enrolment)
    assert repr(enrolment) == "Enrolment(...)"


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_tampered_token_does_not_open(data):
    raw = b64url_decode(totp.enrolment(ADDRESS, NOW).token)
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(TOTPError):
        totp.open_enrolment(b64url(bytes(flipped)), ADDRESS, NOW)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: "",
        lambda token: token[:-1],
        lambda token: token + "A",
        lambda token: token[:-4],
        lambda token: token + "=",
        lambda token: token.replace("-", "+").replace("_", "/") + "+/",
        lambda token: "not a token at all",
    ],
)
def test_a_malformed_token_does_not_open(mangle):
    token = totp.enrolment(ADDRESS, NOW).token
    with pytest.raises(TOTPError):
        totp.open_enrolment(mangle(token), ADDRESS, NOW)


def test_a_token_for_another_address_does_not_open():
    token = totp.enrolment(ADDRESS, NOW).token
    with pytest.raises(TOTPError, match="another account"):
        totp.open_enrolment(token, "alice@example.net", NOW)


def test_a_token_from_another_key_does_not_open():
    token = TOTP(OTHER_KEY, ISSUER).enrolment(ADDRESS, NOW).token
    with pytest.raises(TOTPError):
        totp.open_enrolment(token, ADDRESS, NOW)


def test_a_token_expires_after_the_enrolment_minutes():
    token = totp.enrolment(ADDRESS, NOW).token
    last = NOW + timedelta(minutes=ENROLMENT_MINUTES)
    assert len(totp.open_enrolment(token, ADDRESS, last)) == SEED_BYTES
    with pytest.raises(TOTPError, match="older than"):
        totp.open_enrolment(token, ADDRESS, last + timedelta(seconds=1))


def test_a_token_from_the_future_opens_within_a_minute_only():
    token = totp.enrolment(ADDRESS, NOW).token
    assert totp.open_enrolment(token, ADDRESS, NOW - timedelta(seconds=60))
    with pytest.raises(TOTPError, match="future"):
        totp.open_enrolment(token, ADDRESS, NOW - timedelta(seconds=61))


def test_an_enrolment_seed_is_not_a_sealed_seed():
    # Both are sealed under one key; the labels in the AAD keep them apart.
    raw = b64url_decode(totp.enrolment(ADDRESS, NOW).token)
    with pytest.raises(TOTPError):
        totp.open_seed(b"\x01" + raw[9:], ADDRESS)


def test_errors_name_no_secret():
    enrolment = totp.enrolment(ADDRESS, NOW)
    for call in (
        lambda: totp.open_enrolment(enrolment.token, "alice@example.net", NOW),
        lambda: totp.open_enrolment(enrolment.token[:-2], ADDRESS, NOW),
        lambda: totp.open_seed(totp.seal_seed(SEED, ADDRESS), "alice@example.net"),
    ):
        with pytest.raises(TOTPError) as error:
            call()
        text = str(error.value)
        assert enrolment.token not in text and enrolment.secret[:4] not in text


# --- the seed at rest --------------------------------------------------------------


def test_seal_and_open_a_seed():
    sealed = totp.seal_seed(SEED, ADDRESS)
    assert sealed[:1] == b"\x01" and len(sealed) == 1 + 12 + SEED_BYTES + 16
    assert SEED not in sealed
    assert totp.open_seed(sealed, ADDRESS) == SEED
    assert totp.open_seed(sealed, ADDRESS.upper()) == SEED
    assert totp.seal_seed(SEED, ADDRESS) != sealed  # a fresh nonce each time


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_sealed_seed_with_a_flipped_bit_does_not_open(data):
    sealed = totp.seal_seed(SEED, ADDRESS)
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    flipped = bytearray(sealed)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(TOTPError):
        totp.open_seed(bytes(flipped), ADDRESS)


@pytest.mark.parametrize(
    ("sealed", "address", "key"),
    [
        (lambda: totp.seal_seed(SEED, ADDRESS), "alice@example.net", KEY),
        (lambda: totp.seal_seed(SEED, ADDRESS), ADDRESS, OTHER_KEY),
        (lambda: totp.seal_seed(SEED, ADDRESS)[:-1], ADDRESS, KEY),
        (lambda: b"", ADDRESS, KEY),
        (lambda: b"\x01" + bytes(27), ADDRESS, KEY),
    ],
    ids=["other address", "other key", "truncated", "empty", "zeros"],
)
def test_a_sealed_seed_opens_only_for_its_address_and_key(sealed, address, key):
    with pytest.raises(TOTPError):
        TOTP(key, ISSUER).open_seed(sealed(), address)


def test_the_installation_secret_gives_the_totp_key_under_its_own_label():
    secrets = Secrets(b"an installation secret of the tests")
    expected = hmac.new(b"an installation secret of the tests", b"sealgate totp seeds", "sha256")
    assert secrets.totp == expected.digest()  # the label is stored state: never changed
    others = {secrets.idempotency, secrets.access_codes, secrets.sender_links, secrets.loop_marker}
    assert secrets.totp not in others
    assert (
        TOTP(secrets.totp, ISSUER).open_seed(
            TOTP(secrets.totp, ISSUER).seal_seed(SEED, ADDRESS), ADDRESS
        )
        == SEED
    )


def test_a_key_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        TOTP(bytes(16), ISSUER)


# --- the provisioning URI ------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    ["Sealgate", "Acme B.V.", "Zürich Versicherung AG", "Acme: Legal & Co/NL", "100% #1 ?=+"],
)
@pytest.mark.parametrize(
    "address",
    ["bob@example.com", "Bob.Smith+tag@Example.NET", "o'brien@example.ie", "jörg@bücher.example"],
)
def test_the_uri_parses_back_to_the_same_seed_issuer_and_account(issuer, address):
    enrolment = TOTP(KEY, issuer).enrolment(address, NOW)
    seed = TOTP(KEY, issuer).open_enrolment(enrolment.token, address, NOW)
    parsed = pyotp.parse_uri(enrolment.uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert base64.b32decode(parsed.secret) == seed
    assert (parsed.issuer, parsed.name) == (issuer, address)
    assert (parsed.digits, parsed.interval, parsed.digest().name) == (6, 30, "sha1")
    assert parsed.at(NOW) == code_at(seed, NOW)


def test_the_uri_spells_every_parameter_as_the_key_uri_format_does():
    enrolment = TOTP(KEY, "ACME Co").enrolment("john.doe@email.com", NOW)
    parts = urlsplit(enrolment.uri)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "otpauth",
        "totp",
        "/ACME%20Co:john.doe@email.com",
    )
    query = parse_qs(parts.query, strict_parsing=True)
    secret = enrolment.secret.replace(" ", "")
    assert query == {
        "secret": [secret],
        "issuer": ["ACME Co"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    # The spec's example, spaces as %20 (not +) in the query too.
    assert parts.query == f"secret={secret}&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"


def test_an_issuer_with_a_colon_is_given_only_as_the_parameter():
    # The format forbids a colon in the label's issuer; parsers that decode before they
    # split would cut "Acme%3A Legal:bob@..." at the wrong colon.
    uri = TOTP(KEY, "Acme: Legal").enrolment("bob@example.com", NOW).uri
    assert urlsplit(uri).path == "/bob@example.com"
    assert parse_qs(urlsplit(uri).query)["issuer"] == ["Acme: Legal"]


def test_the_uri_matches_pyotps_own_for_a_plain_issuer_and_address():
    enrolment = TOTP(KEY, "Acme Zürich").enrolment("bob+x@example.com", NOW)
    secret = enrolment.secret.replace(" ", "")
    theirs = pyotp.TOTP(secret).provisioning_uri(
        name="bob+x@example.com", issuer_name="Acme Zürich"
    )
    # pyotp leaves out the default parameters and quotes "@" in the label; both are allowed.
    mine = enrolment.uri.removesuffix("&algorithm=SHA1&digits=6&period=30")
    assert mine == theirs.replace("%40", "@")


# --- the QR code -------------------------------------------------------------------


def svg_modules(svg: str) -> list[list[bool]]:
    """The dark modules of a segno SVG: its stroked path is horizontal runs of lines.

    ``M x y`` starts, ``h n`` draws n modules to the right, ``m dx dy`` moves; a
    line's y is the middle of its row (row + 0.5).
    """
    root = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    scale = int(root.find(f"{ns}g").get("transform").removeprefix("scale(").removesuffix(")"))
    size = int(root.get("width")) // scale
    grid = [[False] * size for _ in range(size)]
    (line,) = [p for p in root.iter(f"{ns}path") if p.get("stroke")]
    path = line.get("d").replace("M", " M ").replace("m", " m ").replace("h", " h ").split()
    x = y = 0.0
    while path:
        command = path.pop(0)
        if command == "M":
            x, y = float(path.pop(0)), float(path.pop(0))
        elif command == "m":
            x, y = x + float(path.pop(0)), y + float(path.pop(0))
        else:
            run = int(path.pop(0))
            for column in range(int(x), int(x) + run):
                grid[int(y)][column] = True
            x += run
    return grid


def decode_qr(modules: list[list[bool]], pixels: int = 4) -> list[str]:
    """The texts zxing-cpp reads from the modules drawn black on white, ``pixels`` a module."""
    rows = bytearray()
    for row in modules:
        line = bytes(0 if dark else 255 for dark in row for _ in range(pixels))
        rows += line * pixels
    width = len(modules) * pixels
    image = memoryview(bytes(rows)).cast("B", (width, width))
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return [barcode.text for barcode in found]


@pytest.mark.parametrize(
    ("issuer", "address"),
    [
        ("Sealgate", "bob@example.com"),
        ("Zürich Versicherung AG: Recht", "Jörg.Müller+totp@bücher.example"),
    ],
)
def test_the_qr_code_decodes_to_the_uri(issuer, address):
    enrolment = TOTP(KEY, issuer).enrolment(address, NOW)
    assert decode_qr(svg_modules(enrolment.svg)) == [enrolment.uri]


def test_the_decoder_reads_what_the_svg_draws_not_something_else():
    # A damaged drawing must not decode to the URI: the test above reads the SVG itself.
    enrolment = totp.enrolment(ADDRESS, NOW)
    modules = svg_modules(enrolment.svg)
    for row in modules[4:12]:
        row[4:12] = [not dark for dark in row[4:12]]  # the top-left finder pattern, inverted
    assert decode_qr(modules) == []


def test_the_svg_is_safe_to_inline():
    svg = totp.enrolment(ADDRESS, NOW).svg
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    lowered = svg.lower()
    for word in ("<?xml", "<!doctype", "<script", "href", "url(", "javascript:", "<foreign"):
        assert word not in lowered
    root = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert {element.tag for element in root.iter()} <= {f"{ns}svg", f"{ns}g", f"{ns}path"}
    attributes = {name for element in root.iter() for name in element.attrib}
    assert attributes <= {"width", "height", "class", "transform", "fill", "stroke", "d"}
