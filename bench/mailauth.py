"""Mail authentication benchmark: SPF, DKIM and DMARC verification of one message per call.

    .venv/bin/python bench/mailauth.py                 # default run, about 15 s
    .venv/bin/python bench/mailauth.py --quick         # smoke run, a few seconds
    .venv/bin/python bench/mailauth.py --json out.json # the figures as JSON as well

The DNS is the test suite's (``tests.support.unbound.start_test_dns``, as the ``test_dns``
fixture starts it): the signed zones served by the test authoritative server behind a
validating unbound on 127.0.0.1. A sender domain of our own is added with ``set_records``:
``bench.signed.test`` TXT ``v=spf1 ip4:127.0.0.1 -all`` and ``_dmarc.bench.signed.test``
``v=DMARC1; p=reject``. The message (10 KB, text/plain, built deterministically) is From
alice@bench.signed.test and carries one DKIM signature made by
``Signer.sign(message, domain="signed.test")`` with the scenario's RSA-2048 key
(``d=signed.test``, ``s=sel``; relaxed DMARC alignment). Before any timing the
verdicts must be spf=pass, dkim=pass, dmarc=pass, all DNSSEC-secure.

Stages, in interleaved rounds whose order alternates (A B ..., ... B A); every call is one
sample:

- **warm cache**: ``Verifier(resolver, "sealgate.test").verify(...)`` with one ``Resolver``
  reused for every call of a round. unbound's ``cache-max-ttl: 5`` caps the answers' TTL, and
  so our cache's, at 5 s, and unbound counts it down while it caches: each round therefore
  flushes ``signed.test`` in unbound and warms a new resolver with one untimed call (full 5 s
  TTLs, a round lasts about 0.2 s). Lookups that still reached unbound during timed calls
  are counted (0 expected);
- **cold cache**: a fresh ``Resolver`` (and ``Verifier``, sharing one public suffix list)
  for every call, only ``verify`` timed: each call asks unbound (its own cache warm) for the
  SPF, DKIM key and DMARC records;
- ``Verifier.header(verdicts)``: rendering the Authentication-Results field;
- the baseline: ``email.message_from_bytes`` of the same message.

And, for completeness (bench/dkimsign.py measures signing in depth), one RSA-2048 signature of
the 10 KB message by ``Signer.sign``. The process's main thread is pinned to one CPU after the
DNS has started (unbound and the authoritative server's threads are not pinned), so "per
second" means on one core. Ratios are throughput ours / baseline (> 1: faster).
"""

from __future__ import annotations

import argparse
import cProfile
import email
import gc
import io
import json
import os
import pstats
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import median, percentile, run_interruptibly
from publicsuffixlist import PublicSuffixList

from gateway.mailauth.dkimsign import Signer, SigningKey
from gateway.mailauth.dns import Resolver
from gateway.mailauth.verify import Verdicts, Verifier

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

from tests.support.unbound import TestDNS, start_test_dns  # noqa: E402

AUTHSERV_ID = "sealgate.test"
SENDER_DOMAIN = "bench.signed.test"
MAIL_FROM = f"alice@{SENDER_DOMAIN}"
HELO = SENDER_DOMAIN
CLIENT_IP = "127.0.0.1"
TARGET_VERIFY_MS = 3.0  # issue: verification with a warm cache, median per message
TARGET_SIGN_PER_S = 800  # issue: RSA-2048 signing on one core
PROSE = (
    "the quarterly figures were checked twice before the report went out to every reader who "
    "asked for a copy of the original with its appendices and the notes of the meeting"
)


@dataclass(frozen=True)
class Plan:
    rounds: int = 31
    warm_calls: int = 200
    cold_calls: int = 50
    header_calls: int = 200
    baseline_calls: int = 200
    sign_seconds: float = 2.0


QUICK = Plan(rounds=3, warm_calls=30, cold_calls=10, header_calls=50, baseline_calls=50,
             sign_seconds=0.3)  # fmt: skip


def say(text: str) -> None:
    print(text, flush=True)


def ten_kb() -> bytes:
    rng = random.Random(5)
    words = PROSE.split()
    lines = []
    size = 0
    while size < 9_550:
        line = " ".join(rng.choice(words) for _ in range(12)).encode() + b"\r\n"
        lines.append(line)
        size += len(line)
    return (
        f"From: Alice <{MAIL_FROM}>\r\nTo: bob@example.net\r\n".encode()
        + b"Subject: Quarterly report\r\nDate: Sat, 28 Nov 2026 08:00:00 +0000\r\n"
        b"Message-ID: <r.42@bench.signed.test>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + b"".join(lines)
    )


class Lookups:
    """Counts the lookups a resolver sends to its nameserver (the misses of its cache)."""

    def __init__(self, resolver: Resolver) -> None:
        self.count = 0
        for server in resolver._servers:  # noqa: SLF001  (bench-only instrumentation)
            blocking = server.blocking_resolver
            original = blocking.resolve

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.count += 1
                return _original(*args, **kwargs)

            blocking.resolve = counted  # type: ignore[method-assign]


def check_verdicts(verdicts: Verdicts) -> dict[str, Any]:
    got = {
        "spf": verdicts.spf.result,
        "helo": verdicts.helo.result,
        "dkim": [v.result for v in verdicts.dkim],
        "dmarc": verdicts.dmarc.result,
        "dmarc_policy": verdicts.dmarc_policy,
        "secure": {
            "spf": verdicts.spf.secure,
            "dkim": [v.secure for v in verdicts.dkim],
            "dmarc": verdicts.dmarc.secure,
        },
        "spf_aligned": verdicts.spf_aligned,
        "dkim_aligned": verdicts.dkim_aligned,
    }
    wanted = (
        verdicts.spf.result == "pass"
        and [v.result for v in verdicts.dkim] == ["pass"]
        and verdicts.dmarc.result == "pass"
        and verdicts.spf.secure
        and verdicts.dmarc.secure
        and all(v.secure for v in verdicts.dkim)
    )
    if not wanted:
        raise RuntimeError(f"unexpected verdicts, nothing timed: {got}")
    return got


class Bench:
    def __init__(self, test_dns: TestDNS) -> None:
        self.dns = test_dns
        key = SigningKey(
            domain="signed.test",
            selector="sel",
            algorithm="rsa-sha256",
            private_key=test_dns.keys.dkim_rsa,
        )
        self.signer = Signer([key])
        self.plain = ten_kb()
        fields = self.sign()
        if not fields:
            raise RuntimeError("the signer made no DKIM-Signature for signed.test")
        self.message = fields + self.plain
        self.psl = PublicSuffixList()
        self.resolver = test_dns.resolver()
        self.lookups = Lookups(self.resolver)
        self.verifier = Verifier(self.resolver, AUTHSERV_ID, psl=self.psl)

    def rewarm(self) -> list[int]:
        """A new warm resolver whose answers have unbound's full 5 s TTL; their TTLs.

        unbound counts its cached TTLs down, so an answer it serves from its cache may have
        0-1 s left, and our cache would keep it for that long: unbound forgets the zone first,
        so the warming call fetches fresh answers from the authoritative server.
        """
        self.dns.unbound.flush_zone("signed.test")
        self.resolver = self.dns.resolver()
        self.lookups = Lookups(self.resolver)
        self.verifier = Verifier(self.resolver, AUTHSERV_ID, psl=self.psl)
        self.verify(self.verifier)
        names = (f"{SENDER_DOMAIN}.", "sel._domainkey.signed.test.", f"_dmarc.{SENDER_DOMAIN}.")
        return [self.resolver.query_blocking(name, "TXT").ttl for name in names]

    def sign(self) -> bytes:
        return self.signer.sign(self.plain, domain="signed.test")

    def verify(self, verifier: Verifier) -> Verdicts:
        return verifier.verify(self.message, mail_from=MAIL_FROM, helo=HELO, client_ip=CLIENT_IP)

    def fresh_verifier(self) -> tuple[Verifier, Lookups]:
        resolver = self.dns.resolver()
        return Verifier(resolver, AUTHSERV_ID, psl=self.psl), Lookups(resolver)


def time_each(call: Callable[[], Any], count: int) -> list[float]:
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        call()
        samples.append(clock() - started)
    return samples


def time_cold(bench: Bench, count: int, sent: list[int]) -> list[float]:
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        verifier, lookups = bench.fresh_verifier()
        started = clock()
        bench.verify(verifier)
        samples.append(clock() - started)
        sent.append(lookups.count)
    return samples


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "calls": len(values),
        "median_ms": median(values) * 1000,
        "p90_ms": percentile(values, 90) * 1000,
        "max_ms": max(values) * 1000,
        "per_s": len(values) / sum(values),
    }


def measure(bench: Bench, plan: Plan) -> dict[str, Any]:
    verdicts = bench.verify(bench.verifier)  # warms the cache
    header = bench.verifier.header(verdicts)
    cold_sent: list[int] = []
    stages: dict[str, Callable[[], list[float]]] = {
        "verify_warm": lambda: time_each(lambda: bench.verify(bench.verifier), plan.warm_calls),
        "verify_cold": lambda: time_cold(bench, plan.cold_calls, cold_sent),
        "header": lambda: time_each(lambda: bench.verifier.header(verdicts), plan.header_calls),
        "baseline_parse": lambda: time_each(
            lambda: email.message_from_bytes(bench.message), plan.baseline_calls
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in stages}
    warm_misses = 0
    warm_ttls: set[int] = set()
    names = list(stages)
    for round_no in range(plan.rounds):
        for name in names if round_no % 2 == 0 else reversed(names):
            gc.collect()
            if name == "verify_warm":
                ttls = bench.rewarm()
                before = bench.lookups.count
                samples[name] += stages[name]()
                warm_misses += bench.lookups.count - before
                warm_ttls.update(ttls)
            else:
                samples[name] += stages[name]()
    result = {name: stats(values) for name, values in samples.items()}
    base = result["baseline_parse"]["per_s"]
    for name in ("verify_warm", "verify_cold"):
        result[name]["ratio_vs_parse"] = result[name]["per_s"] / base
    result["verify_warm"]["lookups_sent"] = warm_misses
    result["verify_warm"]["ttls_at_warming"] = sorted(warm_ttls)
    result["verify_cold"]["lookups_per_call"] = sorted(set(cold_sent))
    result["header"]["bytes"] = len(header)
    result["header_text"] = header.decode()
    return result


def measure_signing(bench: Bench, seconds: float) -> dict[str, Any]:
    bench.sign()
    samples: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    while True:
        started = clock()
        bench.sign()
        ended = clock()
        samples.append(ended - started)
        if ended >= deadline:
            break
    return stats(samples)


def profile_warm(bench: Bench, calls: int) -> str:
    bench.verify(bench.verifier)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        bench.verify(bench.verifier)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(30)
    return stream.getvalue()


def pin_to_one_cpu() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # this thread only: unbound and the DNS threads run on
    return cpu


def fmt(row: dict[str, Any]) -> str:
    return f"{row['median_ms']:10.3f} {row['p90_ms']:8.3f} {row['per_s']:10,.0f}"


def orchestrate(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else Plan()
    began = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    test_dns = start_test_dns()
    try:
        test_dns.set_records(SENDER_DOMAIN, [("TXT", "v=spf1 ip4:127.0.0.1 -all")])
        test_dns.set_records(f"_dmarc.{SENDER_DOMAIN}", [("TXT", "v=DMARC1; p=reject")])
        cpu = pin_to_one_cpu()
        say(
            f"Mail authentication benchmark; {os.cpu_count()} CPUs, main thread pinned to CPU "
            f"{cpu}, load average {load[0]:.2f}; unbound on port {test_dns.unbound.port}"
        )
        bench = Bench(test_dns)
        verdicts = check_verdicts(bench.verify(bench.verifier))
        say(f"message {len(bench.message):,} B (DKIM-Signature included); verdicts {verdicts}")
        if args.profile:
            say(profile_warm(bench, args.profile))
            return 0
        result = measure(bench, plan)
        signing = measure_signing(bench, plan.sign_seconds)
    finally:
        test_dns.stop()
    base = result["baseline_parse"]
    say(f"\n10 KB message ({len(bench.message):,} B)")
    say(f"  {'':44} {'median ms':>10} {'p90 ms':>8} {'per s':>10} {'ratio':>7}")
    rows = (
        ("verify_warm", "verify, warm cache (SPF+HELO, DKIM, DMARC)"),
        ("verify_cold", "verify, fresh resolver (unbound warm)"),
        ("header", "Verifier.header (Authentication-Results)"),
        ("baseline_parse", "baseline: email.message_from_bytes"),
    )
    for name, label in rows:
        ratio = result[name].get("ratio_vs_parse")
        say(f"  {label:44} {fmt(result[name])} {'' if ratio is None else f'{ratio:7.3f}'}")
    say(f"  {'DKIM sign, RSA-2048 (Signer.sign)':44} {fmt(signing)}")
    say(f"  warm: {result['verify_warm']['lookups_sent']} lookups reached unbound during "
        f"{result['verify_warm']['calls']} timed calls; cold: "
        f"{result['verify_cold']['lookups_per_call']} lookups a call")  # fmt: skip
    say("\n" + result["header_text"].rstrip())
    warm = result["verify_warm"]["median_ms"]
    met_verify = warm < TARGET_VERIFY_MS
    met_sign = signing["per_s"] >= TARGET_SIGN_PER_S
    say(f"\nTarget: verification, warm cache, median < {TARGET_VERIFY_MS} ms: "
        f"{'MET' if met_verify else 'MISSED'} ({warm:.3f} ms)")  # fmt: skip
    say(f"Target: RSA-2048 signing >= {TARGET_SIGN_PER_S}/s on one core: "
        f"{'MET' if met_sign else 'MISSED'} ({signing['per_s']:,.0f}/s)")  # fmt: skip
    seconds = time.perf_counter() - began
    say(f"whole run {seconds:.0f} s; {plan.rounds} interleaved rounds; baseline "
        f"{base['median_ms']:.3f} ms")  # fmt: skip
    if args.json:
        report = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpus": os.cpu_count(),
            "pinned_to_cpu": cpu,
            "load_average_at_start": load,
            "quick": args.quick,
            "message_bytes": len(bench.message),
            "verdicts": verdicts,
            "results": result,
            "signing_rsa2048": signing,
            "targets": {
                "verify_warm_median_ms": TARGET_VERIFY_MS,
                "verify_met": met_verify,
                "sign_per_s": TARGET_SIGN_PER_S,
                "sign_met": met_sign,
            },
            "seconds": seconds,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        say(f"figures written to {args.json}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verifications per second (SPF, DKIM, DMARC) against the test DNS.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    parser.add_argument("--profile", type=int, metavar="CALLS", default=0,
                        help="cProfile CALLS warm-cache verifications, print, exit")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_interruptibly(lambda: orchestrate(args), "unbound and the DNS server stopped")


if __name__ == "__main__":
    sys.exit(main())
