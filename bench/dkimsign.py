"""DKIM signing benchmark: Sealgate's signer against dkimpy's own, in the same run.

    .venv/bin/python bench/dkimsign.py                 # default run, about 30 s
    .venv/bin/python bench/dkimsign.py --quick         # smoke run, a few seconds
    .venv/bin/python bench/dkimsign.py --json out.json # the figures as JSON as well

Keys made for the run: RSA-2048 and Ed25519. Messages, built deterministically: a
notification (about 1 KB, the kind Sealgate originates) and a 10 KB text/plain message.

Contenders, per message, in interleaved rounds whose order alternates (A B ..., ... B A);
every call is timed on its own:

- ``Signer([rsa]).sign`` (gateway/mailauth/dkimsign.py): dkimpy's canonicalisation and
  header code, the RSA operation in OpenSSL through ``cryptography``;
- ``dkim.DKIM(msg).sign`` with the same key, relaxed/relaxed and the same ``h=`` list:
  dkimpy's pure-Python RSA (the baseline);
- ``Signer([ed25519]).sign``, and ``Signer([rsa, ed25519]).sign`` (two signatures a call);
- dkimpy's Ed25519 signing through PyNaCl, when PyNaCl is installed;
- the floors: the bare RSA-2048 PKCS#1 v1.5 and Ed25519 operations on a 32-byte digest.

The process is pinned to one CPU, so "per second" means on one core. Before the timing,
each contender's output is verified with dkimpy. Throughput is calls / time over all rounds;
ratios are throughput against dkimpy's pure-Python RSA (> 1: faster).
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
from benchlib import median, percentile, run_interruptibly
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from gateway.mailauth.dkimsign import Signer, SigningKey, generate_key

DOMAIN = "example.org"
TARGET_PER_SECOND = 800  # issue 5: RSA-2048 signing on one core
PROSE = (
    "the message was sealed and stored before the notification went out to every reader who "
    "asked for a copy of the original with its attachments and the policy that applied"
)

try:
    import nacl.signing  # noqa: F401  (dkimpy signs Ed25519 only with PyNaCl)

    HAVE_NACL = True
except ImportError:
    HAVE_NACL = False


@dataclass(frozen=True)
class Plan:
    rounds: int = 9
    seconds_per_round: float = 0.25


QUICK = Plan(rounds=3, seconds_per_round=0.05)


def say(text: str) -> None:
    print(text, flush=True)


def notification() -> bytes:
    return (
        b"From: Sealgate <noreply@example.org>\r\n"
        b"To: Bob Example <bob@example.net>\r\n"
        b"Subject: A protected message from alice@example.org is waiting for you\r\n"
        b"Date: Sat, 28 Nov 2026 08:00:00 +0000\r\n"
        b"Message-ID: <n.0123456789abcdef@example.org>\r\n"
        b"Auto-Submitted: auto-generated\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"\r\n" + b"Alice sent you a protected message. Open it in your browser:\r\n"
        b"https://mail.example.org/m/0123456789abcdef#secretsecretsecretsecret\r\n\r\n"
        + b"This link works for 30 days. You need the code we sent separately.\r\n"
        * 8
    )


def ten_kb() -> bytes:
    rng = random.Random(5)
    words = PROSE.split()
    lines = []
    size = 0
    while size < 9_600:
        line = " ".join(rng.choice(words) for _ in range(12)).encode() + b"\r\n"
        lines.append(line)
        size += len(line)
    return (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
        b"Subject: Quarterly report\r\nDate: Sat, 28 Nov 2026 08:00:00 +0000\r\n"
        b"Message-ID: <r.42@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + b"".join(lines)
    )


class Contenders:
    """The signing calls to time, each checked once with dkimpy before any timing."""

    def __init__(self) -> None:
        self.rsa = SigningKey.from_pem(DOMAIN, "rsa", generate_key("rsa"))
        self.ed = SigningKey.from_pem(DOMAIN, "ed", generate_key("ed25519"))
        self.records = {key.dns_name: key.dns_record() for key in (self.rsa, self.ed)}
        self.rsa_pem = self.rsa.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        raw = self.ed.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.ed_seed = base64.b64encode(raw)
        self.signers = {
            "rsa": Signer([self.rsa]),
            "ed": Signer([self.ed]),
            "both": Signer([self.rsa, self.ed]),
        }

    def calls(self, message: bytes) -> dict[str, tuple[Callable[[], bytes], int]]:
        """name -> (call, signatures per call)."""
        include = [
            name.decode() for name in _h_list(self.signers["rsa"].sign(message)).split(b" : ")
        ]
        digest = hashlib.sha256(message).digest()
        rsa_key = self.rsa.private_key
        ed_key = self.ed.private_key
        assert isinstance(rsa_key, rsa.RSAPrivateKey)
        assert isinstance(ed_key, ed25519.Ed25519PrivateKey)
        calls: dict[str, tuple[Callable[[], bytes], int]] = {
            "ours_rsa": (lambda: self.signers["rsa"].sign(message), 1),
            "dkimpy_rsa": (
                lambda: dkim.DKIM(message).sign(
                    b"rsa",
                    DOMAIN.encode(),
                    self.rsa_pem,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=include,
                ),  # fmt: skip
                1,
            ),
            "ours_ed25519": (lambda: self.signers["ed"].sign(message), 1),
            "ours_rsa_and_ed25519": (lambda: self.signers["both"].sign(message), 2),
            "floor_rsa": (
                lambda: rsa_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())),
                1,
            ),
            "floor_ed25519": (lambda: ed_key.sign(digest), 1),
        }
        if HAVE_NACL:
            calls["dkimpy_ed25519"] = (
                lambda: dkim.DKIM(message).sign(
                    b"ed",
                    DOMAIN.encode(),
                    self.ed_seed,
                    signature_algorithm=b"ed25519-sha256",
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=include,
                ),  # fmt: skip
                1,
            )
        return calls

    def check(self, name: str, fields: bytes, message: bytes) -> None:
        """Every signature a contender makes must verify, or its speed means nothing."""
        if name.startswith("floor"):
            return
        checker = dkim.DKIM(fields + message)
        made = fields.split(b"DKIM-Signature:")[1:]
        for idx, field in enumerate(made):
            if b"a=ed25519-sha256" in field and not HAVE_NACL:
                continue  # dkimpy verifies Ed25519 only with PyNaCl
            if not checker.verify(idx=idx, dnsfunc=self.dnsfunc):
                raise RuntimeError(f"{name}: signature {idx + 1} of {len(made)} does not verify")

    def dnsfunc(self, name: bytes, timeout: float = 5) -> bytes | None:
        value = self.records.get(name.decode().rstrip("."))
        return None if value is None else value.encode()


def _h_list(fields: bytes) -> bytes:
    unfolded = fields.replace(b"\r\n ", b" ")
    return unfolded.split(b" h=", 1)[1].split(b";", 1)[0]


def time_calls(call: Callable[[], bytes], seconds: float) -> list[float]:
    samples: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    while True:
        started = clock()
        call()
        ended = clock()
        samples.append(ended - started)
        if ended >= deadline:
            return samples


def measure(contenders: Contenders, message: bytes, plan: Plan) -> dict[str, Any]:
    calls = contenders.calls(message)
    for name, (call, _count) in calls.items():
        contenders.check(name, call(), message)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_no in range(plan.rounds):
        for name in names if round_no % 2 == 0 else reversed(names):
            gc.collect()
            samples[name] += time_calls(calls[name][0], plan.seconds_per_round)
    base = len(samples["dkimpy_rsa"]) / sum(samples["dkimpy_rsa"])
    result: dict[str, Any] = {}
    for name, values in samples.items():
        per_call = len(values) / sum(values)
        signatures = per_call * calls[name][1]
        result[name] = {
            "calls": len(values),
            "median_ms": median(values) * 1000,
            "p90_ms": percentile(values, 90) * 1000,
            "calls_per_s": per_call,
            "signatures_per_s": signatures,
            "ratio_vs_dkimpy_rsa": signatures / base,
        }
    return result


LABELS = {
    "ours_rsa": "Sealgate RSA-2048 (OpenSSL)",
    "dkimpy_rsa": "dkimpy RSA-2048 (pure Python)",
    "ours_ed25519": "Sealgate Ed25519 (OpenSSL)",
    "dkimpy_ed25519": "dkimpy Ed25519 (PyNaCl)",
    "ours_rsa_and_ed25519": "Sealgate RSA-2048 + Ed25519",
    "floor_rsa": "bare RSA-2048 sign (floor)",
    "floor_ed25519": "bare Ed25519 sign (floor)",
}


def print_result(title: str, size: int, result: dict[str, Any]) -> None:
    say(f"\n{title} ({size:,} B)")
    say(f"  {'':32} {'median ms':>10} {'p90 ms':>8} {'signatures/s':>13} {'vs dkimpy RSA':>14}")
    for name, label in LABELS.items():
        if name not in result:
            continue
        row = result[name]
        say(
            f"  {label:32} {row['median_ms']:10.3f} {row['p90_ms']:8.3f} "
            f"{row['signatures_per_s']:13,.0f} {row['ratio_vs_dkimpy_rsa']:13.1f}x"
        )


def pin_to_one_cpu() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def orchestrate(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else Plan()
    began = time.perf_counter()
    cpu = pin_to_one_cpu()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "pinned_to_cpu": cpu,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "quick": args.quick,
        "pynacl": HAVE_NACL,
        "target_signatures_per_s": TARGET_PER_SECOND,
        "messages": {},
    }
    say(
        f"DKIM signing benchmark; {os.cpu_count()} CPUs, pinned to CPU {cpu}, load average "
        f"{os.getloadavg()[0]:.2f}; PyNaCl {'installed' if HAVE_NACL else 'missing'}"
    )
    contenders = Contenders()
    for name, title, message in (
        ("notification", "Notification", notification()),
        ("10k", "10 KB message", ten_kb()),
    ):
        result = measure(contenders, message, plan)
        report["messages"][name] = {"bytes": len(message), "results": result}
        print_result(title, len(message), result)
    worst = min(m["results"]["ours_rsa"]["signatures_per_s"] for m in report["messages"].values())
    report["target_met"] = worst >= TARGET_PER_SECOND
    say(
        f"\nTarget: RSA-2048 >= {TARGET_PER_SECOND} signatures/s on one core: "
        f"{'MET' if report['target_met'] else 'MISSED'} ({worst:,.0f}/s at the slowest message)"
    )
    report["seconds"] = time.perf_counter() - began
    say(f"whole run {report['seconds']:.0f} s; {plan.rounds} interleaved rounds")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        say(f"figures written to {args.json}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="DKIM signatures per second: Sealgate's signer against dkimpy's.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_interruptibly(lambda: orchestrate(args), "nothing to clean up")


if __name__ == "__main__":
    sys.exit(main())
