"""Policy benchmark: what deciding about a message costs, against baselines run alongside.

    .venv/bin/python bench/policy.py                  # default run, about 70 s on 2 cores
    .venv/bin/python bench/policy.py --quick          # smoke run: fewer rounds, about 25 s
    .venv/bin/python bench/policy.py --json out.json  # the figures as JSON as well
    .venv/bin/python bench/policy.py --profile 10k    # cProfile (10k, attachments or scan), exit

Messages, built deterministically (seeded) in this process:

- 10 KB: a text/plain message of English prose with a few dates, amounts and phone numbers
  and one BSN look-alike (nine digits that fail the 11-test); nothing a shipped pack acts on;
- attachments: a short text body, a ~2 MB PDF (fpdf2, compressed pages of dense text) and a
  ~2 MB DOCX (python-docx, headings and paragraphs) with valid BSNs and IBANs sprinkled in.
  Every byte of both files is text (no images, no embedded fonts): close to the most text two
  2 MB files hold, so this is the slow end of what 2 MB attachments cost.

In interleaved rounds whose order alternates (A B ..., ... B A), each call timed on its own:

- all packs (policies/baseline.toml, nl-healthcare.toml, finance.toml): ``gather(raw,
  sender, extractor)`` with a started ``TextExtractor(Limits(), processes=1)``, then
  ``policy.decide(facts, recipients)`` for one internal (example.org) and one external
  recipient; that is what ``Pipeline._plan`` does per message (in a worker thread; the thread
  hop is not timed here). Split into gather (header parse + text extraction; PDF and
  DOCX in the helper process) and decide (the detectors run here, once per message);
- the baseline pack alone: no rule reads content, so ``_plan`` passes no extractor and
  ``gather`` parses the header only: what every relayed message pays;
- the baseline: ``email.message_from_bytes(raw)`` of the same message.

Then the event loop: the worst gap of an asyncio task ticking every 1 ms while the PDF + DOCX
message is decided with gather in a worker thread and decide on the loop's thread, and with
gather and decide both in one worker thread (``_plan`` before and since commit 4075e84).

Then detector scan rates: each builtin detector, with the options the shipped packs give it
(keywords: nl-healthcare's 22 medical terms; e-mail addresses: its personal_addresses
settings; regex: ``PRJ-[0-9]{4,}``), on ~8 MB of seeded prose with hits of every kind
sprinkled in, against a plain ``re`` scan of the same text with a comparable simple pattern in
the same rounds. Ratios are throughput ours / baseline (> 1: faster than the baseline).

The extractor's helper process is closed at the end, also on error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import email
import email.policy
import gc
import io
import json
import os
import pstats
import random
import re
import sys
import textwrap
import time
import tomllib
import warnings
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import docx
from benchlib import loop_gaps, median, percentile, run_interruptibly
from fpdf import FPDF

from gateway.policy.conditions import Context
from gateway.policy.detectors import BUILTIN
from gateway.policy.detectors.bsn import passes_11_test
from gateway.policy.detectors.iban import valid_check_digits
from gateway.policy.engine import Policy
from gateway.policy.facts import gather
from gateway.policy.formats import Budget, archives
from gateway.policy.textract import Limits, TextExtractor
from gateway.policy.types import Decision, Detector, Extracted

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
PACKS = [ROOT / "policies" / name for name in ("baseline.toml", "nl-healthcare.toml",
                                                "finance.toml")]  # fmt: skip
MB = 1_000_000  # MB and MB/s are decimal throughout
SEED = 20261128
SENDER = "dana.visser@example.org"
RECIPIENTS = ("erik.jansen@example.org", "m.bakker@client.example.net")  # internal, external
TARGET_10K_MS = 2.0  # policy evaluation adds under 2 ms median to a 10 KB message
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclasses.dataclass(frozen=True)
class Plan:
    rounds_10k: int = 31
    calls_10k: int = 50  # calls of each stage per round
    rounds_attachments: int = 9
    rounds_scan: int = 7
    rounds_loop: int = 2
    scan_bytes: int = 8 * MB


QUICK = Plan(rounds_10k=5, calls_10k=10, rounds_attachments=2, rounds_scan=2, rounds_loop=1)


def say(*args: Any) -> None:
    print(*args, flush=True)


# --------------------------------------------------------------------------- prose

# Plain business English: none of these words, alone or side by side, is a keyword of the
# shipped packs (no "statement", "credit", "card", "recept" ...).
_VOCABULARY = """
we have received your request and will review the proposal before the meeting next week please
confirm that schedule still works for team report shows sales in northern region grew faster than
expected while costs remained stable our colleagues office prepare an updated version of document
with changes you suggested during call on thursday it would help if could send latest figures
signed agreement so can close file by end month thank patience project planning budget delivery
customer supplier contract order quarter review board decision approval manager director
department building address station train morning afternoon evening weather holiday weekend
question answer problem solution product service quality support training course session workshop
presentation slides chapter section page table figure summary conclusion introduction background
method result analysis data sample survey response rate increase decrease change improvement risk
issue action owner deadline status update progress milestone phase release version feature ticket
system server network account access permission procedure guideline standard requirement design
drawing model prototype test measurement also however because therefore although about after
again against all almost already always among another any around available before between both
but each early either enough every few first following from further given great high however
important into just large last later least less local long main many may more most much must
new next not now often only other over own part per possible present public quite rather really
recent same second several short should since small some soon still such sure their them then
there these they this those three through time today together two under until very was were
what when where which who why within without work year yes yet Müller café coördinatie naïve
"""
VOCABULARY = sorted(set(_VOCABULARY.split()))

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]  # fmt: skip
PEOPLE = ["anna.de.vries", "pieter.smit", "sanne.meijer", "lucas.mulder", "fleur.bos",
          "daan.visser", "lotte.peters", "bram.hendriks", "emma.dekker", "jesse.vos"]  # fmt: skip
MAILBOXES = ["gmail.com", "outlook.com", "ziggo.nl", "kpnmail.nl", "hotmail.com"]
BANKS = ["ABNA", "INGB", "RABO", "TRIO", "SNSB", "ASNB", "KNAB", "BUNQ"]


def bsn_valid(rng: random.Random) -> str:
    """Nine digits that pass the BSN 11-test."""
    while True:
        head = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(7)]
        last = sum(w * d for w, d in zip((9, 8, 7, 6, 5, 4, 3, 2), head, strict=True)) % 11
        if last < 10:
            digits = "".join(map(str, head)) + str(last)
            assert passes_11_test(digits)
            return digits


def bsn_lookalike(rng: random.Random) -> str:
    """Nine digits that fail the 11-test."""
    while True:
        digits = str(rng.randint(100_000_000, 999_999_999))
        if not passes_11_test(digits):
            return digits


def iban_nl(rng: random.Random) -> str:
    """A valid Dutch IBAN in print format (groups of four)."""
    bban = rng.choice(BANKS) + "".join(str(rng.randint(0, 9)) for _ in range(10))
    numeric = "".join(str(int(char, 36)) for char in bban + "NL00")
    iban = f"NL{98 - int(numeric) % 97:02d}{bban}"
    assert valid_check_digits(iban)
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def visa(rng: random.Random) -> str:
    """A Luhn-valid 16-digit Visa number in groups of four."""
    body = [4] + [rng.randint(0, 9) for _ in range(14)]
    total = 0
    for index, digit in enumerate(reversed(body)):  # the check digit will be at index 0
        if index % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    digits = "".join(map(str, body)) + str((10 - total % 10) % 10)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


Extras = list[tuple[str, float, Callable[[random.Random], str]]]  # (kind, chance, maker)


class Prose:
    """Seeded sentences and paragraphs; a sentence may get one of the ``extras`` inserted
    (each with its chance per sentence), counted by kind in ``inserted``."""

    def __init__(self, seed: str, extras: Extras) -> None:
        self.rng = random.Random(f"{SEED}-{seed}")
        self.extras = extras
        self.chance = sum(weight for _, weight, _ in extras)
        self.inserted: dict[str, int] = dict.fromkeys((kind for kind, _, _ in extras), 0)

    def fact(self) -> str:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0:
            return f"on {rng.randint(1, 28):02d}-{rng.randint(1, 12):02d}-2026"
        if kind == 1:
            return f"by {rng.choice(DAYS)} {rng.randint(1, 28)} {rng.choice(MONTHS)}"
        if kind == 2:
            euros, cents = rng.randint(1, 99_999), rng.randint(0, 99)
            return f"for EUR {euros // 1000}.{euros % 1000:03d},{cents:02d}"
        if kind == 3:
            return f"at {rng.randint(8, 17)}:{rng.choice(('00', '15', '30', '45'))}"
        if kind == 4:
            return f"under order {rng.randint(10_000, 99_999)}"
        return f"on +31 20 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"

    def sentence(self) -> str:
        rng = self.rng
        words = [rng.choice(VOCABULARY) for _ in range(rng.randint(6, 20))]
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words) + 1), self.fact())
        roll = rng.random()
        if roll < self.chance:
            for kind, weight, maker in self.extras:
                if roll < weight:
                    words.insert(rng.randrange(len(words) + 1), maker(rng))
                    self.inserted[kind] += 1
                    break
                roll -= weight
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def paragraph(self, low: int = 3, high: int = 7) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(low, high)))


def pack_detector_options() -> dict[str, dict[str, Any]]:
    """The options the shipped nl-healthcare pack gives its keyword and e-mail detectors."""
    data = tomllib.loads((ROOT / "policies" / "nl-healthcare.toml").read_text(encoding="utf-8"))
    options = {}
    for name in ("medical_terms", "personal_addresses"):
        table = dict(data["detectors"][name])
        table.pop("type")
        options[name] = table
    return options


# --------------------------------------------------------------------------- messages


def _headers(msg: EmailMessage, subject: str, tag: str) -> None:
    msg["From"] = f"Dana Visser <{SENDER}>"
    msg["To"] = f"Erik Jansen <{RECIPIENTS[0]}>, M. Bakker <{RECIPIENTS[1]}>"
    msg["Subject"] = subject
    msg["Date"] = formatdate(1795852800, localtime=False)  # 2026-11-28, fixed
    msg["Message-ID"] = f"<bench.policy.{tag}.{SEED}@example.org>"


def _text_message(body: str) -> bytes:
    msg = EmailMessage()
    _headers(msg, "Planning for the December release and the open questions", "10k")
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


def build_10k(target: int = 10_000) -> tuple[bytes, str]:
    """A text/plain message of at most ``target`` bytes (as close as whole words get) and its
    BSN look-alike (nine digits, failing the 11-test)."""
    prose = Prose("10k", [])
    lookalike = bsn_lookalike(prose.rng)
    paragraphs = [prose.paragraph() for _ in range(3)]
    paragraphs.append(f"Our file number for this is {lookalike}, please quote it in your reply.")
    paragraphs += [prose.paragraph() for _ in range(30)]

    def message(words: list[str]) -> bytes:
        body = [textwrap.fill(p, 72) for p in paragraphs[:4]] + [textwrap.fill(" ".join(words), 72)]
        return _text_message("Hello Erik,\n\n" + "\n\n".join(body) + "\n\nKind regards,\n\n"
                             "Dana Visser\nPlanning department\n+31 20 555 0142\n")  # fmt: skip

    words = " ".join(paragraphs[4:]).split()
    low, high = 0, len(words)  # the most words that fit: message(words[:low]) <= target
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(message(words[:middle])) <= target else (low, middle - 1)
    return message(words[:low]), lookalike


def _document_extras() -> Extras:
    return [
        ("bsn", 0.0008, lambda rng: f"(BSN {bsn_valid(rng)})"),
        ("iban", 0.0008, lambda rng: f"to IBAN {iban_nl(rng)}"),
    ]


def _sprinkled(text: str) -> dict[str, int]:
    return {"bsn": len(re.findall(r"\(BSN\s", text)), "iban": len(re.findall(r"IBAN\sNL", text))}


def build_pdf(target: int) -> tuple[bytes, dict[str, int]]:
    """A PDF of ~``target`` bytes: A4 pages of 56 lines of prose, Helvetica 10 pt, compressed."""
    prose = Prose("pdf", _document_extras())
    lines: list[str] = []

    def render(pages: int) -> bytes:
        while len(lines) < pages * 56:
            lines.extend(textwrap.wrap(prose.paragraph(), 95) + [""])
        document = FPDF(format="A4")
        document.set_auto_page_break(False)
        document.set_font("helvetica", size=10)
        for page in range(pages):
            document.add_page()
            document.text(10, 10, f"Quarterly review, page {page + 1} of {pages}")
            for row, line in enumerate(lines[page * 56 : (page + 1) * 56]):
                document.text(10, 18 + row * 4.9, line)
        return bytes(document.output())

    sample = 40
    per_page = len(render(sample)) / sample
    pages = max(1, round(target / per_page))
    data = render(pages)
    pages = max(1, round(pages * target / len(data)))  # one correction: within a page or two
    data = render(pages)
    text = "\n".join(lines[: pages * 56])
    return data, {"pages": pages, "chars": len(text), **_sprinkled(text)}


def build_docx(target: int) -> tuple[bytes, dict[str, int]]:
    """A DOCX of ~``target`` bytes: a heading every 8 paragraphs of prose."""
    prose = Prose("docx", _document_extras())
    paragraphs: list[str] = []

    def render(count: int) -> bytes:
        while len(paragraphs) < count:
            paragraphs.append(prose.paragraph(4, 9))
        document = docx.Document()
        document.add_heading("Annual programme review", level=0)
        for index, text in enumerate(paragraphs[:count]):
            if index % 8 == 0:
                document.add_heading(f"Section {index // 8 + 1}", level=1)
            document.add_paragraph(text)
        out = io.BytesIO()
        document.save(out)
        return out.getvalue()

    sample = 1000
    base = len(render(0))
    per_paragraph = (len(render(sample)) - base) / sample
    count = max(1, round((target - base) / per_paragraph))
    data = render(count)
    text = "\n".join(paragraphs[:count])
    return data, {"paragraphs": count, "chars": len(text), **_sprinkled(text)}


def build_attachments(size: int) -> tuple[bytes, dict[str, Any]]:
    """A message with a short text body, a PDF and a DOCX of ~``size`` bytes each."""
    pdf, pdf_info = build_pdf(size)
    document, docx_info = build_docx(size)
    msg = EmailMessage()
    _headers(msg, "Quarterly review and annual programme (drafts)", "attachments")
    prose = Prose("attachments-body", [])
    msg.set_content("Hello Erik,\n\n" + textwrap.fill(prose.paragraph(), 72)
                    + "\n\nKind regards,\n\nDana Visser\n")  # fmt: skip
    msg.add_attachment(pdf, maintype="application", subtype="pdf",
                       filename="quarterly-review-2026.pdf")  # fmt: skip
    maintype, subtype = DOCX_TYPE.split("/")
    msg.add_attachment(document, maintype=maintype, subtype=subtype,
                       filename="annual-programme-review.docx")  # fmt: skip
    for number, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"----=_Bench_{SEED}_{number}")
    raw = msg.as_bytes(policy=email.policy.SMTP)
    info = {"pdf_bytes": len(pdf), "pdf": pdf_info, "docx_bytes": len(document),
            "docx": docx_info}  # fmt: skip
    return raw, info


# --------------------------------------------------------------------------- scan corpus


def _scan_extras(keywords: list[str]) -> Extras:
    """Kinds named after the detector that should find them; decoys it should drop."""
    return [
        ("bsn", 0.010, lambda rng: f"BSN {bsn_valid(rng)}"),
        ("decoy", 0.010, lambda rng: f"ref {bsn_lookalike(rng)}"),  # fails the 11-test
        ("iban", 0.010, lambda rng: f"IBAN {iban_nl(rng)}"),
        ("payment_card", 0.005, lambda rng: f"card {visa(rng)}"),
        ("email_addresses", 0.020, lambda rng: f"{rng.choice(PEOPLE)}@{rng.choice(MAILBOXES)}"),
        ("decoy", 0.010, lambda rng: f"info@{rng.choice(MAILBOXES)}"),  # a role address
        ("keywords", 0.030, lambda rng: rng.choice(keywords)),
        ("regex", 0.010, lambda rng: f"PRJ-{rng.randint(1000, 99999)}"),
    ]


def build_scan_text(size: int, keywords: list[str]) -> tuple[str, dict[str, int]]:
    """~``size`` bytes (UTF-8) of prose in paragraphs wrapped at 76 characters, with hits of
    every detector sprinkled in; also how many of each kind were."""
    prose = Prose("scan", _scan_extras(keywords))
    paragraphs, total = [], 0
    while total < size:
        paragraph = textwrap.fill(prose.paragraph(), 76) + "\n\n"
        paragraphs.append(paragraph)
        total += len(paragraph.encode())
    return "".join(paragraphs), prose.inserted


def scan_cases(keywords: list[str], emails: dict[str, Any]) -> list[dict[str, Any]]:
    """Each builtin detector with typical options, and the plain ``re`` pattern it is set
    against (what a hand-written scan would use, without checks)."""
    words = "|".join(re.escape(word).replace(r"\ ", r"\s+") for word in keywords)
    return [
        {"name": "bsn", "options": {}, "re": r"\d{9}", "flags": 0},
        {"name": "iban", "options": {}, "re": r"[A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]{4}){2,7}",
         "flags": 0},
        {"name": "payment_card", "options": {}, "re": r"[0-9]{4}(?:[ -]?[0-9]{4}){2,3}",
         "flags": 0},
        {"name": "email_addresses", "options": emails,
         "re": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "flags": 0},
        {"name": "keywords", "options": {"words": keywords}, "re": rf"\b(?:{words})\b",
         "flags": re.IGNORECASE},
        {"name": "regex", "options": {"pattern": "PRJ-[0-9]{4,}"}, "re": r"PRJ-[0-9]{4,}",
         "flags": 0},
    ]  # fmt: skip


# --------------------------------------------------------------------------- measuring


class Policies:
    """The policies and the text extractor: the extractor's helper is closed in close()."""

    def __init__(self) -> None:
        self.all = Policy.load(PACKS)
        self.baseline = Policy.load(PACKS[:1])
        assert self.all.reads_content and not self.baseline.reads_content
        self.extractor = TextExtractor(Limits(), processes=1)

    def start(self) -> None:
        self.extractor.start()

    def close(self) -> None:
        self.extractor.close()


def decisions_text(decisions: dict[str, Decision]) -> dict[str, str]:
    return {
        recipient: decision.action
        + (f" ({', '.join(r.rule for r in decision.reasons)})" if decision.reasons else "")
        for recipient, decision in decisions.items()
    }


def extracted_summary(extracted: Extracted) -> dict[str, Any]:
    return {
        "texts": len(extracted.texts),
        "text_chars": sum(len(source.text) for source in extracted.texts),
        "attachments": [
            {"label": a.label, "real_type": a.real_type, "size": a.size}
            for a in extracted.attachments
        ],
        "incomplete": list(extracted.incomplete),
    }


def measure_message(
    policies: Policies, name: str, raw: bytes, rounds: int, calls: int
) -> dict[str, Any]:
    """Interleaved rounds of the stages for one message; every call is one sample."""
    samples: dict[str, list[float]] = {}

    def add(stage: str, seconds: float) -> None:
        samples.setdefault(stage, []).append(seconds)

    def stdlib() -> None:
        started = time.perf_counter()
        email.message_from_bytes(raw)
        add("stdlib_parse", time.perf_counter() - started)

    def all_packs() -> None:
        started = time.perf_counter()
        facts = gather(raw, SENDER, policies.extractor)
        gathered = time.perf_counter()
        policies.all.decide(facts, RECIPIENTS)
        done = time.perf_counter()
        add("gather", gathered - started)
        add("decide", done - gathered)
        add("all_packs", done - started)

    def baseline_pack() -> None:
        policy = policies.baseline
        started = time.perf_counter()
        extractor = policies.extractor if policy.reads_content else None  # as _plan does
        facts = gather(raw, SENDER, extractor)
        policy.decide(facts, RECIPIENTS)
        add("baseline_pack", time.perf_counter() - started)

    # Warm-up, and what the policies decide (the figures are only worth it if complete).
    facts = gather(raw, SENDER, policies.extractor)
    decided = policies.all.decide(facts, RECIPIENTS)
    context = Context(facts)
    hits = {detector_name: sum(map(len, context.scan(detector).values()))
            for detector_name, detector in policies.all.detectors.items()}  # fmt: skip
    baseline_decided = policies.baseline.decide(gather(raw, SENDER, None), RECIPIENTS)
    stdlib()
    samples.clear()

    def repeated(func: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                func()

        return run

    stages = [repeated(stdlib), repeated(all_packs), repeated(baseline_pack)]
    for rnd in range(rounds):
        for run in stages if rnd % 2 == 0 else stages[::-1]:
            gc.collect()
            run()
    result: dict[str, Any] = {
        "name": name,
        "message_bytes": len(raw),
        "rounds": rounds,
        "calls_per_round": calls,
        "samples": len(samples["all_packs"]),
        "extracted": extracted_summary(facts.extracted),
        "detector_hits": hits,
        "decisions": decisions_text(decided),
        "baseline_pack_decisions": decisions_text(baseline_decided),
        "median_ms": {stage: median(values) * 1000 for stage, values in samples.items()},
        "p90_ms": {stage: percentile(values, 90) * 1000 for stage, values in samples.items()},
    }
    m = result["median_ms"]
    result["per_s"] = 1000 / m["all_packs"]
    result["decisions_per_s"] = result["per_s"] * len(RECIPIENTS)
    result["added_ms"] = m["all_packs"]  # everything the policy does is added to the message
    result["vs_stdlib_parse"] = m["stdlib_parse"] / m["all_packs"]  # throughput ratio
    result["baseline_pack_per_s"] = 1000 / m["baseline_pack"]
    result["mb_s"] = len(raw) / MB / (m["all_packs"] / 1000)
    result["all_packs_ms_all"] = [round(s * 1000, 3) for s in samples["all_packs"]]
    return result


def measure_loop(policies: Policies, raw: bytes, rounds: int) -> dict[str, Any]:
    """The event loop while a message is decided: gather in a worker thread, then decide on the
    loop's thread; gather and decide both in one worker thread; the loop doing nothing (the
    noise floor). Worst of ``rounds`` runs each."""
    policy = policies.all

    async def decide_on_loop() -> None:
        facts = await asyncio.to_thread(gather, raw, SENDER, policies.extractor)
        policy.decide(facts, RECIPIENTS)

    def gather_and_decide() -> None:
        policy.decide(gather(raw, SENDER, policies.extractor), RECIPIENTS)

    async def in_thread() -> None:
        await asyncio.to_thread(gather_and_decide)

    async def idle() -> None:
        await asyncio.sleep(0.5)

    runs: dict[str, list[dict[str, float]]] = {}
    stages = [("decide_on_loop", decide_on_loop), ("in_thread", in_thread), ("idle", idle)]
    for rnd in range(rounds):
        for name, work in stages if rnd % 2 == 0 else stages[::-1]:
            gc.collect()
            runs.setdefault(name, []).append(asyncio.run(loop_gaps(work)))
    return {
        name: {
            "max_gap_ms": max(r["max_gap_ms"] for r in results),
            "p99_gap_ms": max(r["p99_gap_ms"] for r in results),
            "gaps_over_10ms": max(r["gaps_over_10ms"] for r in results),
            "seconds": median(r["seconds"] for r in results),
        }
        for name, results in runs.items()
    } | {"rounds": rounds}


def measure_scan(text: str, sprinkled: dict[str, int], rounds: int) -> dict[str, Any]:
    """Each detector's ``find`` on ``text`` against a plain ``re`` scan, interleaved."""
    data_bytes = len(text.encode())
    options = pack_detector_options()
    keywords = list(options["medical_terms"]["words"])
    cases = scan_cases(keywords, options["personal_addresses"])
    detectors: dict[str, Detector] = {c["name"]: BUILTIN[c["name"]](c["options"]) for c in cases}
    patterns = {c["name"]: re.compile(c["re"], c["flags"]) for c in cases}
    samples: dict[str, list[float]] = {}
    hits: dict[str, dict[str, int]] = {}

    def timed(stage: str, func: Callable[[], list[Any]]) -> Callable[[], None]:
        def run() -> None:
            started = time.perf_counter()
            found = func()
            samples.setdefault(stage, []).append(time.perf_counter() - started)
            hits.setdefault(stage, {"hits": len(found), "distinct": len(set(found))})

        return run

    def detector_scan(detector: Detector) -> Callable[[], list[Any]]:
        return lambda: detector.find(text)

    def re_scan(pattern: re.Pattern[str]) -> Callable[[], list[Any]]:
        return lambda: [match.group(0) for match in pattern.finditer(text)]

    stages = []
    for case in cases:
        name = case["name"]
        stages.append(timed(f"{name}:detector", detector_scan(detectors[name])))
        stages.append(timed(f"{name}:re", re_scan(patterns[name])))
    stages.append(timed("encode", lambda: [text.encode("utf-8", "replace")]))
    for rnd in range(rounds):
        for run in stages if rnd % 2 == 0 else stages[::-1]:
            gc.collect()
            run()
    rows = []
    for case in cases:
        name = case["name"]
        ours, base = median(samples[f"{name}:detector"]), median(samples[f"{name}:re"])
        rows.append({
            "detector": name,
            "options": {k: (f"{len(v)} words" if k == "words" else v)
                        for k, v in case["options"].items()},
            "re": case["re"] + (" (re.I)" if case["flags"] else ""),
            "ms": ours * 1000,
            "mb_s": data_bytes / MB / ours,
            "re_ms": base * 1000,
            "re_mb_s": data_bytes / MB / base,
            "ratio": base / ours,
            "hits": hits[f"{name}:detector"],
            "sprinkled": sprinkled.get(name, 0),
            "re_matches": hits[f"{name}:re"]["hits"],
            "p90_ms": percentile(samples[f"{name}:detector"], 90) * 1000,
        })  # fmt: skip
    encode = median(samples["encode"])
    return {
        "text_bytes": data_bytes,
        "text_chars": len(text),
        "rounds": rounds,
        "rows": rows,
        "encode_ms": encode * 1000,
        "encode_mb_s": data_bytes / MB / encode,
    }


# --------------------------------------------------------------------------- report


def print_message(res: dict[str, Any], label: str) -> None:
    m, p = res["median_ms"], res["p90_ms"]
    ex = res["extracted"]
    say(f"\n{label}: {res['message_bytes']:,} bytes; median of {res['samples']} calls "
        f"({res['rounds']} rounds x {res['calls_per_round']})")  # fmt: skip
    say(
        f"  extracted: {ex['texts']} texts, {ex['text_chars']:,} characters; attachments "
        + (", ".join(f"{a['real_type']} {a['size']:,} B" for a in ex["attachments"]) or "none")
        + (f"; INCOMPLETE: {'; '.join(ex['incomplete'])}" if ex["incomplete"] else "; complete")
    )
    say(f"  decisions: {res['decisions']}")
    say(f"  detector hits: {res['detector_hits']}")
    say(f"  {'stage':<46}{'median ms':>11}{'p90 ms':>10}{'per s':>9}")
    rows = [
        ("all packs: gather + decide (2 recipients)", "all_packs"),
        ("  gather (header, text extraction)", "gather"),
        ("  decide (detectors, rules)", "decide"),
        ("baseline pack alone: gather + decide", "baseline_pack"),
        ("baseline: email.message_from_bytes", "stdlib_parse"),
    ]
    for text, key in rows:
        say(f"  {text:<46}{fmt_ms(m[key])}{fmt_ms(p[key], 10)}{1000 / m[key]:9.1f}")
    say(
        f"  {res['per_s']:.1f} messages/s = {res['decisions_per_s']:.1f} decisions/s; "
        f"{res['mb_s']:.1f} MB/s; throughput vs message_from_bytes {res['vs_stdlib_parse']:.2f}"
    )


def fmt_ms(ms: float, width: int = 11) -> str:
    return f"{ms:{width}.3f}" if ms < 10 else f"{ms:{width}.1f}"


def print_scan(scan: dict[str, Any]) -> None:
    say(f"\nDetector scan rates: {scan['text_bytes']:,} bytes of prose ({scan['text_chars']:,} "
        f"characters), median of {scan['rounds']} rounds")  # fmt: skip
    say(f"  {'detector':<16}{'ms':>7}{'MB/s':>8}{'put in':>7}{'hits':>6}{'dist.':>6}   "
        f"{'plain re':<40}{'ms':>7}{'MB/s':>8}{'found':>6}{'ratio':>7}")  # fmt: skip
    for r in scan["rows"]:
        say(
            f"  {r['detector']:<16}{r['ms']:7.1f}{r['mb_s']:8.1f}{r['sprinkled']:7d}"
            f"{r['hits']['hits']:6d}{r['hits']['distinct']:6d}   {r['re'][:40]:<40}"
            f"{r['re_ms']:7.1f}{r['re_mb_s']:8.1f}{r['re_matches']:6d}{r['ratio']:7.2f}"
        )
    say(
        "  put in: hits of that kind sprinkled into the prose; print-format IBANs and grouped "
        "card numbers that a line break splits are not found (the detectors join groups only "
        "across a space)"
    )
    say(f"  (every find() encodes the text to UTF-8 first: {scan['encode_ms']:.1f} ms, "
        f"{scan['encode_mb_s']:.0f} MB/s)")  # fmt: skip


def print_loop(loop: dict[str, Any]) -> None:
    say(f"\nEvent loop while the PDF + DOCX message is decided (1 ms ticker, worst of "
        f"{loop['rounds']} runs)")  # fmt: skip
    say(f"  {'':<58}{'s':>6}{'max gap ms':>12}{'p99 ms':>8}{'gaps>10ms':>10}")
    rows = [
        ("gather in a worker thread, then decide on the loop", "decide_on_loop"),
        ("gather and decide in one worker thread", "in_thread"),
        ("nothing else runs (noise floor)", "idle"),
    ]
    for text, key in rows:
        r = loop[key]
        say(f"  {text:<58}{r['seconds']:6.2f}{r['max_gap_ms']:12.1f}{r['p99_gap_ms']:8.1f}"
            f"{r['gaps_over_10ms']:10d}")  # fmt: skip


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    small = report["messages"].get("10k")
    if small is not None:
        ms = small["median_ms"]["all_packs"]
        out.append({"target": f"policy evaluation adds < {TARGET_10K_MS:g} ms median to a "
                              "10 KB message (all packs, gather + decide)",
                    "measured": f"{ms:.3f} ms (p90 {small['p90_ms']['all_packs']:.3f} ms)",
                    "met": ms < TARGET_10K_MS, "by": ms / TARGET_10K_MS})  # fmt: skip
    return out


# --------------------------------------------------------------------------- profiling


def profile(policies: Policies, what: str, calls: int) -> None:
    profiler = cProfile.Profile()
    if what == "scan":
        options = pack_detector_options()
        keywords = list(options["medical_terms"]["words"])
        text, _ = build_scan_text(2 * MB, keywords)
        cases = scan_cases(keywords, options["personal_addresses"])
        detectors = [BUILTIN[c["name"]](c["options"]) for c in cases]
        profiler.enable()
        for detector in detectors:
            detector.find(text)
        profiler.disable()
        say(f"cProfile of each builtin detector's find() on {len(text):,} characters")
    else:
        raw = build_10k()[0] if what == "10k" else build_attachments(2 * MB)[0]
        policies.start()
        gather(raw, SENDER, policies.extractor)  # warm-up: the helper's imports
        profiler.enable()
        for _ in range(calls):
            facts = gather(raw, SENDER, policies.extractor)
            policies.all.decide(facts, RECIPIENTS)
        profiler.disable()
        say(
            f"cProfile of {calls} x gather + decide (all packs) of the {what} message "
            f"({len(raw):,} bytes); the helper process's work shows as waiting on the pipe"
        )
        if what == "attachments":
            profile_helper(raw)
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(20)


def profile_helper(raw: bytes) -> None:
    """What the helper process does with each attachment, profiled here."""
    from gateway.mail.content import extract as extract_content

    limits = Limits()

    def budget() -> Budget:
        return Budget(max_depth=limits.max_depth, max_members=limits.max_members,
                      max_ratio=limits.max_ratio, max_file_bytes=limits.max_attachment_bytes,
                      expanded_bytes=limits.max_expanded_bytes, text_chars=limits.max_text_chars,
                      deadline=time.monotonic() + 600)  # fmt: skip

    for number, source in enumerate(extract_content(raw).attachments, 1):
        data = b"".join(source.chunks())
        label = f"attachment {number}"
        profiler = cProfile.Profile()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            _, found = archives.read_attachment(data, source.content_type, label, 0, budget())
            seconds = time.perf_counter() - started
            profiler.enable()
            archives.read_attachment(data, source.content_type, label, 0, budget())
            profiler.disable()
        chars = sum(len(text.text) for text in found.texts)
        say(
            f"\n{label} ({source.content_type}, {len(data):,} bytes) read in this process as the "
            f"helper reads it: {seconds:.2f} s unprofiled, {chars:,} characters "
            f"({chars / seconds / 1e6:.2f} M characters/s)"
        )
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(15)
        stats.sort_stats("tottime").print_stats(12)


# --------------------------------------------------------------------------- main


def orchestrate(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else Plan()
    began = time.perf_counter()
    policies = Policies()
    try:
        if args.profile:
            calls = args.profile_calls or (200 if args.profile == "10k" else 2)
            profile(policies, args.profile, calls)
            return 0
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "quick": args.quick,
            "packs": [str(p.relative_to(ROOT)) for p in PACKS],
            "recipients": RECIPIENTS,
            "target_10k_ms": TARGET_10K_MS,
            "messages": {},
        }
        say(f"policy benchmark; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"packs {', '.join(report['packs'])}")  # fmt: skip
        started = time.perf_counter()
        policies.start()
        small, lookalike = build_10k()
        big, big_info = build_attachments(2 * MB)
        report["attachments_info"] = big_info
        report["lookalike_fails_11_test"] = not passes_11_test(lookalike)
        say(f"messages built in {time.perf_counter() - started:.1f} s: 10 KB ({len(small):,} B, "
            f"BSN look-alike fails the 11-test: {report['lookalike_fails_11_test']}); "
            f"attachments ({len(big):,} B): PDF {big_info['pdf_bytes']:,} B, "
            f"{big_info['pdf']['pages']} pages, {big_info['pdf']['chars']:,} characters; DOCX "
            f"{big_info['docx_bytes']:,} B, {big_info['docx']['paragraphs']:,} paragraphs, "
            f"{big_info['docx']['chars']:,} characters")  # fmt: skip
        res = measure_message(policies, "10k", small, plan.rounds_10k, plan.calls_10k)
        report["messages"]["10k"] = res
        print_message(res, "10 KB text message")
        res = measure_message(policies, "attachments", big, plan.rounds_attachments, 1)
        report["messages"]["attachments"] = res
        print_message(res, "PDF + DOCX message")
        report["loop"] = measure_loop(policies, big, plan.rounds_loop)
        print_loop(report["loop"])
        policies.close()  # the helper is not needed for the scan rates
        options = pack_detector_options()
        words = list(options["medical_terms"]["words"])
        text, sprinkled = build_scan_text(plan.scan_bytes, words)
        report["scan"] = measure_scan(text, sprinkled, plan.rounds_scan)
        del text
        print_scan(report["scan"])
        report["verdicts"] = verdicts(report)
        say("\nTarget")
        for v in report["verdicts"]:
            say(f"  {'MET   ' if v['met'] else 'MISSED'} {v['target']}: {v['measured']} "
                f"({v['by']:.2f} of the target)")  # fmt: skip
        report["seconds"] = time.perf_counter() - began
        say(f"\nwhole run {report['seconds']:.0f} s; medians of interleaved rounds, ratios are "
            "throughput ours / baseline (> 1: faster than the baseline)")  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            say(f"figures written to {args.json}")
        return 0
    finally:
        policies.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time policy decisions and detector scans, against baselines run alongside.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    parser.add_argument("--profile", choices=["10k", "attachments", "scan"],
                        help="cProfile gather + decide of a message, or the detectors")  # fmt: skip
    parser.add_argument(
        "--profile-calls",
        type=int,
        help="messages to profile (default 200 for 10k, 2 for attachments)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_interruptibly(
        lambda: orchestrate(args), "the text extractor's helper process was closed"
    )


if __name__ == "__main__":
    sys.exit(main())
