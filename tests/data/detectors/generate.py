"""Write the detector corpora in this directory: ``python tests/data/detectors/generate.py``.

Deterministic (one seeded random generator), so a rerun reproduces the files
byte for byte. Check digits are computed here from the standards, independently
of gateway.policy.detectors, so the corpora test the detectors rather than
echo them.

Each ``<detector>.json`` holds ``valid`` (texts with the one normalised value
the detector must report) and ``invalid`` (texts it must report nothing in, each
with why). ``lookalikes.json`` holds everyday numbers and codes (orders, phones,
dates, invoices, ISBNs, tracking numbers, postcodes, amounts, timestamps ...)
that none of the number detectors should report; some of them (nine-digit order
numbers, twelve-digit parcel numbers) pass the checksums by chance, and the tests
measure what that costs in precision rather than hide it.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
rng = random.Random(20261128)

# --- BSN (the 11-test) ---------------------------------------------------------------------


def bsn_sum(digits: str) -> int:
    return sum(w * int(d) for w, d in zip((9, 8, 7, 6, 5, 4, 3, 2, -1), digits, strict=True))


def is_bsn(digits: str) -> bool:
    return len(digits) == 9 and bsn_sum(digits) % 11 == 0 and digits != "0" * 9


def random_bsn(first: str = "") -> str:
    while True:
        head = first + "".join(rng.choice(string.digits) for _ in range(8 - len(first)))
        last = bsn_sum(head + "0") % 11  # d9 enters with weight -1
        if last < 10 and is_bsn(head + str(last)):
            return head + str(last)


def random_non_bsn() -> str:
    while True:
        digits = "".join(rng.choice(string.digits) for _ in range(9))
        if not is_bsn(digits):
            return digits


BSN_FORMATS: list[Callable[[str], str]] = [
    lambda d: d,
    lambda d: f"{d[:4]}.{d[4:6]}.{d[6:]}",
    lambda d: f"{d[:4]} {d[4:6]} {d[6:]}",
    lambda d: f"{d[:3]}.{d[3:6]}.{d[6:]}",
]
BSN_WITH_CONTEXT = [
    "BSN: {}",
    "Burgerservicenummer {} (zie bijlage)",
    "Het sofinummer van mevrouw is {}.",
    "Patiënt: J. de Vries, {}, geboortedatum 12-03-1981",
    "citizen service number {}\nplease keep this safe",
    "<tr><td>BSN</td><td>{}</td></tr>",
    "Jansen;{};geboortedatum 01-01-1980",
]
BSN_WITHOUT_CONTEXT = [
    "Zie nummer {} in het dossier.",
    "Referentie {}",
    "{}",
    "Nummer: {}\nGraag controleren.",
    "<td>{}</td>",
    "(nr. {})",
]


def bsn_corpus() -> dict[str, object]:
    valid = []
    for index in range(120):
        digits = random_bsn()
        templates = BSN_WITH_CONTEXT if index % 2 == 0 else BSN_WITHOUT_CONTEXT
        template = templates[index // 2 % len(templates)]
        written = BSN_FORMATS[index % len(BSN_FORMATS)](digits)
        valid.append({"text": template.format(written), "value": digits, "context": index % 2 == 0})
    for digits in ("111222333", "123456782"):  # numbers often used as examples
        valid.append({"text": f"BSN {digits}", "value": digits, "context": True})
    return {"valid": valid, "invalid": bsn_invalid()}


def bsn_invalid() -> list[dict[str, str]]:
    cases: list[tuple[str, str]] = []
    for index in range(40):
        written = BSN_FORMATS[index % 4](random_non_bsn())
        cases.append(("fails the 11-test", f"BSN: {written}"))
    for _ in range(15):
        cases.append(("eight digits, leading zero left off", f"BSN {random_bsn('0')[1:]}"))
        cases.append(("ten digits", f"BSN {random_bsn()}{rng.choice(string.digits)}"))
        cases.append(("ten digits", f"nummer {rng.choice('123456789')}{random_bsn()}"))
    cases.append(("all zeros", "BSN 000000000"))
    longer = [
        ("glued to letters", "ref X{}"),
        ("glued to letters", "code {}AB"),
        ("glued to an underscore", "file_{}.pdf"),
        ("decimal number", "ratio 0.{}"),
        ("dash-joined reference", "dossier 2026-{}"),
        ("dash-joined reference", "{}-01"),
        ("dot-joined number", "versie {}.2"),
        ("phone, international", "bel +31 {}"),
        ("phone, international", "tel. 0031 {}"),
        ("phone, international", "tel +31 (0){}"),
        ("phone, international", "fax +31-{}"),
        ("amount", "totaal € {}"),
        ("amount", "EUR {}"),
        ("inside an IBAN", "IBAN NL20INGB0{}"),
        ("inside a longer run", "00{}00"),
    ]
    for why, template in longer:
        for _ in range(3):
            cases.append((why, template.format(random_bsn())))
    for _ in range(5):
        dotted = BSN_FORMATS[3](random_bsn())
        cases.append(("amount with decimals", f"bedrag {dotted},00"))
    return [{"why": why, "text": text} for why, text in cases]


# --- IBAN (ISO 13616, MOD 97-10) -----------------------------------------------------------

# The SWIFT IBAN registry lengths; the detector's table is checked against these examples.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
PUBLISHED_IBANS = [  # the registry's and banks' own examples
    "NL91ABNA0417164300", "DE89370400440532013000", "GB82WEST12345698765432",
    "BE68539007547034", "FR1420041010050500013M02606", "CH9300762011623852957",
    "ES9121000418450200051332", "IT60X0542811101000000123456", "NO9386011117947",
    "MT84MALT011000012345MTLCAST001S", "LC55HEMM000100010012001200023015",
]  # fmt: skip


def mod97(text: str) -> int:
    return int("".join(str(int(char, 36)) for char in text)) % 97


def with_check_digits(country: str, bban: str) -> str:
    return f"{country}{98 - mod97(bban + country + '00'):02d}{bban}"


def random_bban(length: int) -> str:
    letters = rng.randint(0, min(4, length))  # many BBANs open with a bank code in letters
    head = "".join(rng.choice(string.ascii_uppercase) for _ in range(letters))
    return head + "".join(rng.choice(string.digits) for _ in range(length - letters))


def printed(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


IBAN_TEMPLATES = [
    "IBAN: {}",
    "Graag overmaken naar {} t.n.v. Stichting X.",
    "Please pay to account {}\nReference 2026-113",
    "<td>{}</td>",
    "{} is my account",
    "rekening ({})",
]


def iban_corpus() -> dict[str, object]:
    valid = []
    ibans = [with_check_digits(c, random_bban(n - 4)) for c, n in IBAN_LENGTHS.items()]
    ibans += [with_check_digits(c, random_bban(n - 4)) for c, n in IBAN_LENGTHS.items()]
    for index, iban in enumerate(ibans + PUBLISHED_IBANS):
        written = printed(iban) if index % 2 else iban
        written = written.lower() if index % 5 == 0 else written
        template = IBAN_TEMPLATES[index % len(IBAN_TEMPLATES)]
        valid.append({"text": template.format(written), "value": iban})
    return {"valid": valid, "invalid": iban_invalid()}


def iban_invalid() -> list[dict[str, str]]:
    cases: list[tuple[str, str]] = []
    countries = sorted(IBAN_LENGTHS)
    for index in range(40):
        country = countries[index * 7 % len(countries)]
        iban = with_check_digits(country, random_bban(IBAN_LENGTHS[country] - 4))
        position = rng.randrange(4, len(iban))
        wrong = rng.choice([d for d in string.digits if d != iban[position]])
        changed = iban[:position] + wrong + iban[position + 1 :]
        if mod97(changed[4:] + changed[:4]) != 1:
            cases.append(
                ("wrong check digits", f"IBAN {printed(changed) if index % 2 else changed}")
            )
    for index in range(30):
        country = countries[index * 5 % len(countries)]
        length = IBAN_LENGTHS[country] + rng.choice((-2, -1, 1, 2))
        iban = with_check_digits(country, random_bban(length - 4))
        cases.append(
            ("wrong length for the country", f"IBAN {printed(iban) if index % 2 else iban}")
        )
    for country in ("US", "CA", "XX", "JP", "AU", "CN"):
        iban = with_check_digits(country, random_bban(18))
        cases.append(("no IBAN in that country", f"IBAN {iban}"))
    while len([c for c in cases if c[0] == "check digits 01"]) < 3:  # 01 passes mod 97 like 98
        iban = with_check_digits("NL", random_bban(14))
        if iban[2:4] == "98":
            cases.append(("check digits 01", f"IBAN {iban[:2]}01{iban[4:]}"))
    for _ in range(5):
        iban = with_check_digits("NL", random_bban(14))
        cases.append(("glued to letters", f"IBAN:{iban}X"))
        cases.append(("glued to digits", f"ref 7{iban}"))
        cases.append(("print format, glued last group", f"IBAN {printed(iban)}7"))
        cases.append(("groups not of four", f"IBAN {iban[:6]} {iban[6:11]} {iban[11:]}"))
    return [{"why": why, "text": text} for why, text in cases]


# --- Payment cards (ISO/IEC 7812: Luhn, issuer ranges) -------------------------------------

CARD_SCHEMES = {  # scheme: ([(low, high) leading digits], lengths)
    "visa": ([("4", "4")], [13, 16, 19]),
    "mastercard": ([("51", "55"), ("2221", "2720")], [16]),
    "amex": ([("34", "34"), ("37", "37")], [15]),
    "discover": ([("6011", "6011"), ("644", "649"), ("65", "65")], [16, 17, 18, 19]),
    "diners": ([("36", "36"), ("300", "305"), ("38", "39")], [14, 15, 16, 17, 18, 19]),
    "jcb": ([("3528", "3589")], [16, 17, 18, 19]),
    "maestro": ([("50", "50"), ("56", "69")], list(range(12, 20))),
    "unionpay": ([("62", "62")], [16, 17, 18, 19]),
}
PUBLISHED_CARDS = [  # the schemes' and processors' test numbers
    "4111111111111111", "4012888888881881", "4222222222222", "5555555555554444",
    "5105105105105100", "2223003122003222", "378282246310005", "371449635398431",
    "6011111111111117", "6011000990139424", "3056930009020004", "36227206271667",
    "3566002020360505", "6200000000000005", "6759649826438453",
]  # fmt: skip


def luhn_digit(body: str) -> str:
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char) * (2 if index % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return str(-total % 10)


def luhn_ok(number: str) -> bool:
    return luhn_digit(number[:-1]) == number[-1]


def in_some_scheme(number: str) -> bool:
    return any(
        len(number) in lengths and any(lo <= number[: len(lo)] <= hi for lo, hi in ranges)
        for ranges, lengths in CARD_SCHEMES.values()
    )


def card(prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn_digit(body)


def random_prefix(low: str, high: str) -> str:
    return str(rng.randint(int(low), int(high))).zfill(len(low))


def card_written(number: str, style: int) -> str:
    if style == 0:
        return number
    separator = " " if style in (1, 3) else "-"
    if style == 3 and len(number) in (14, 15):  # Amex and Diners print 4-6-5 / 4-6-4
        return separator.join((number[:4], number[4:10], number[10:]))
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


CARD_TEMPLATES = [
    "Card number: {}",
    "Mijn creditcard is {}, vervaldatum 12/28.",
    "pay with {}\nCVC 123",
    "<td>{}</td>",
    "{} exp 11/27",
]


def cards_corpus() -> dict[str, object]:
    numbers = list(PUBLISHED_CARDS)
    for ranges, lengths in CARD_SCHEMES.values():
        for low, high in ranges:
            for length in lengths:
                numbers += [card(random_prefix(low, high), length) for _ in range(2)]
    valid = []
    for index, number in enumerate(numbers):
        template = CARD_TEMPLATES[index % len(CARD_TEMPLATES)]
        valid.append({"text": template.format(card_written(number, index % 4)), "value": number})
    return {"valid": valid, "invalid": cards_invalid()}


def cards_invalid() -> list[dict[str, str]]:
    cases: list[tuple[str, str]] = []
    for index, (ranges, lengths) in enumerate(list(CARD_SCHEMES.values()) * 4):
        low, high = ranges[index % len(ranges)]
        number = card(random_prefix(low, high), lengths[index % len(lengths)])
        wrong = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
        cases.append(("fails Luhn", f"Card {card_written(wrong, index % 3)}"))
    outside = 0
    while outside < 40:
        length = rng.randint(12, 19)
        number = card(rng.choice("123456789") + rng.choice(string.digits), length)
        if not in_some_scheme(number):
            cases.append(
                ("Luhn-valid, no scheme issues it", f"Card {card_written(number, outside % 3)}")
            )
            outside += 1
    for _ in range(5):
        number = card("4", 16)
        cases.append(("glued to digits", f"Card 9{number}"))
        cases.append(("glued to letters", f"Card {number}X"))
        cases.append(
            ("mixed separators", f"Card {number[:4]} {number[4:8]}-{number[8:12]} {number[12:]}")
        )
        cases.append(("too short", f"Card {number[:11]}"))
    return [{"why": why, "text": text} for why, text in cases]


# --- E-mail addresses ----------------------------------------------------------------------


def emails_corpus() -> dict[str, object]:
    addresses = [
        "jan.jansen@example.com", "piet+nieuwsbrief@mail.example.co.uk", "a.b-c_d@sub.domain.nl",
        "jörg.müller@beispiel.de", "émilie@société.fr", "user@xn--mller-kva.de",
        "o'brien@example.ie", "x@example.museum", "FirstLast@Example.ORG",
        "佐藤@例え.jp", "ivan@пример.рф", "name.surname+tag+more@a-b.c-d.example",
    ]  # fmt: skip
    templates = ["Mail {} voor info.", "<{}>", "mailto:{}", "Contact: {}, tel 020-1234567", "({})"]
    valid = [
        {"text": templates[i % len(templates)].format(a), "value": a.lower()}
        for i, a in enumerate(addresses)
    ]
    invalid = [
        ("handle", "follow @sealgate on social"),
        ("no domain dot", "jan@localhost"),
        ("retina image", '<img src="logo@2x.png">'),
        ("retina image", "icon@3x.jpg"),
        ("no local part", "@example.com"),
        ("dot before @", "jan.@example.com"),
        ("double @", "jan@@example.com"),
        ("label starts with hyphen", "jan@-example.com"),
        ("numeric top label", "jan@192.168.1.1"),
        ("local part over 64 octets", f"{'a' * 65}@example.com"),
    ]
    return {"valid": valid, "invalid": [{"why": w, "text": t} for w, t in invalid]}


# --- Look-alikes ---------------------------------------------------------------------------


def digits(count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def day() -> str:
    return f"{rng.randint(1, 28):02d}"


def month() -> str:
    return f"{rng.randint(1, 12):02d}"


def lookalikes() -> list[dict[str, str]]:
    makers: dict[str, Callable[[], str]] = {
        "order number": lambda: rng.choice((
            f"Ordernummer: 2026-{digits(6)}", f"Order #{digits(9)}", f"Bestelling {digits(10)}",
            f"PO-{digits(8)}", f"SO{digits(9)}", f"Order {digits(7)}",
        )),
        "phone number": lambda: rng.choice((
            f"+31 6 {digits(8)}", f"+31 (0)20 {digits(3)} {digits(4)}", f"020-{digits(7)}",
            f"06-{digits(8)}", f"06{digits(8)}", f"+316{digits(8)}", f"+31 20 {digits(3)} {digits(4)}",
            f"+49 30 {digits(8)}", f"+1 (555) {digits(3)}-{digits(4)}", f"+31 {digits(9)}",
            f"0031 {digits(9)}", f"tel. 010 {digits(3)} {digits(2)} {digits(2)}",
        )),
        "date": lambda: rng.choice((
            f"2026-{month()}-{day()}", f"{day()}-{month()}-2026", f"{day()}/{month()}/2026",
            f"{day()}.{month()}.2026", f"2026{month()}{day()}",
        )),
        "invoice number": lambda: rng.choice((
            f"INV-2026-{digits(6)}", f"Factuurnummer F2026.{digits(4)}", f"Factuur 2026/{digits(5)}",
            f"Invoice {digits(4)}-{digits(4)}",
        )),
        "isbn": lambda: rng.choice((
            f"ISBN 978-90-{digits(3)}-{digits(4)}-{digits(1)}", f"ISBN 978{digits(10)}",
            f"ISBN 90-{digits(3)}-{digits(4)}-X",
        )),
        "tracking number": lambda: rng.choice((
            f"3SABCD{digits(9)}", f"1Z999AA1{digits(10)}", f"JJD00{digits(9)}",
            f"SSCC 00{digits(18)}", f"FedEx {digits(12)}", f"DHL {digits(10)}",
        )),
        "postcode": lambda: rng.choice((
            f"{rng.randint(1000, 9999)} AB Amsterdam", f"{digits(5)} Berlin", "SW1A 1AA London",
        )),
        "amount": lambda: rng.choice((
            f"€ {digits(3)}.{digits(3)},{digits(2)}", f"EUR {rng.randint(100, 999)}.{digits(3)}.{digits(3)}",
            f"${rng.randint(1, 999)},{digits(3)},{digits(3)}.{digits(2)}",
            f"totaal {rng.randint(100, 999)}.{digits(3)}.{digits(3)},{digits(2)} euro",
            f"€ {digits(9)}",
        )),
        "timestamp": lambda: rng.choice((
            f"2026-{month()}-{day()}T14:03:12Z", f"17{digits(8)}", f"2026{month()}{day()}140312",
            f"14:03:12.{digits(9)}", f"2026-{month()}-{day()} 14:03:12,{digits(3)}",
        )),
        "vat and chamber of commerce": lambda: rng.choice((
            f"BTW NL{digits(9)}B01", f"KvK {digits(8)}", "BIC ABNANL2A",
        )),
        "device identifier": lambda: rng.choice((f"IMEI 35{digits(13)}", f"serial {digits(4)}-{digits(4)}")),
        "ip address and version": lambda: rng.choice((
            f"192.168.{rng.randint(0, 255)}.{rng.randint(0, 255)}", f"versie 1.{rng.randint(0, 99)}.3",
        )),
        # Indistinguishable from a BSN or a card by their digits: about 1 in 11 nine-digit numbers
        # passes the 11-test, about 1 in 67 twelve-digit ones is a Luhn-valid Maestro number.
        "nine-digit customer number": lambda: rng.choice((
            f"Klantnummer {digits(9)}", f"Order #{digits(9)}", f"Polisnummer: {digits(9)}",
        )),
        "twelve-digit parcel number": lambda: f"FedEx tracking {digits(12)}",
    }  # fmt: skip
    return [{"kind": kind, "text": make()} for kind, make in makers.items() for _ in range(40)]


def write(name: str, content: object) -> None:
    text = json.dumps(content, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    (HERE / name).write_text(text, encoding="utf-8")


def main() -> None:
    write("bsn.json", bsn_corpus())
    write("iban.json", iban_corpus())
    write("cards.json", cards_corpus())
    write("emails.json", emails_corpus())
    write("lookalikes.json", lookalikes())


if __name__ == "__main__":
    main()
