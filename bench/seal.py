"""Sealing benchmark: each stage of sealing a message, against a baseline measured alongside.

    .venv/bin/python bench/seal.py                 # default run, about 1 minute on 2 cores
    .venv/bin/python bench/seal.py --quick         # smoke run: fewer rounds, no 25 MB message
    .venv/bin/python bench/seal.py --json out.json # the figures as JSON as well
    .venv/bin/python bench/seal.py --profile 10k   # cProfile of the end-to-end seal, then exit

For a 10 KB, a 1 MB and a 25 MB message (deterministic MIME built with the stdlib:
text + HTML body, base64 attachments of random bytes), in interleaved rounds whose
order alternates (A B ..., ... B A), the medians of:

- content model: ``extract(raw)`` and every attachment's ``chunks()`` read to the end,
  against ``email.message_from_bytes(raw)`` + ``get_payload(decode=True)`` of every part;
- encryption: ``seal_part`` over the plaintext pieces Sealer.seal seals (original in
  64 KiB slices, decoded attachments, a manifest), against ``AESGCM.encrypt`` of the
  same bytes in 64 KiB chunks; SHA-256 of the same bytes (Sealer hashes every part);
- storing: the sealed parts through ``FileBlobStore.writer`` (one file, its fsync and its
  directory's) plus ``Store.commit_envelope`` (SQLite, WAL, synchronous=FULL), against one plain
  file of the same bytes written and fsync'ed once, and the same rows committed with
  the bare sqlite3 module (same schema and pragmas);
- end to end: ``Sealer(store.blobs).seal`` + ``store.commit_envelope`` with two
  guest readers (format v2: a guest's content key is wrapped under a key derived from
  its link, no key pair): what Vault runs in its worker thread, less the links kept
  for a retry (the last section measures those).

First, each in a fresh process (``--rss-child``): peak RSS of sealing the 25 MB message
and of the stdlib parse of it. Linux carries a parent's RSS high-water mark into its
child's ru_maxrss, so the messages are built in a child as well and this process stays
small until then; VmHWM (the child's own peak) is shown beside ru_maxrss as a check.

Last, what a reader costs, in interleaved rounds as well: per call, a v2 guest's
``keys.wrap_for_link`` (HKDF + AES-GCM) against the RSA-2048 key generation that a
format v1 guest cost (``keys.generate_key_pair``, a few per round, in this process), an
account reader's RSA-OAEP wrap (``keys.wrap_content_key``) and the RSA-OAEP seal of a
link to an RSA-3072 reply key (``reply.seal_link``, what the pipeline adds per guest
while a message is unsettled, when the portal runs); then the 10 KB message sealed and
committed end to end with 1, 2 and 10 guest readers, without and with those kept links.
Every process and temporary directory is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import email
import email.policy
import gc
import hashlib
import json
import os
import pstats
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from benchlib import median, percentile, run_interruptibly
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.envelope import keys, reply, stream
from gateway.envelope.seal import SealedEnvelope, Sealer, SealRequest
from gateway.mail.content import extract
from gateway.store import EnvelopeRecord, FileBlobStore, Store

HERE = Path(__file__).resolve()
MB = 1_000_000  # MB and MB/s are decimal throughout
CHUNK = stream.CHUNK_SIZE
RSA_BITS = 2048  # an account reader's key; what a format v1 guest's key pair had
SENDER = "alice@example.org"
READERS = ("bob@example.net", "carol@example.com")
SEED = 20261128
READER_COUNTS = (1, 2, 10)  # guest readers of the 10 KB message in the last section

# Reference figures from the issue (same kind of 2-core machine).
REFERENCE = {
    "aes_gcm_mb_s": 2500.0,
    "stdlib_parse_25mb_mb_s": 28.0,
    "stdlib_parse_25mb_peak_x": 7.0,
    "rsa2048_oaep_wrap_per_s": 24000.0,
}
TARGETS = {"e2e_10k_ms": 3.0, "e2e_25m_mb_s": 25.0, "rss_25m_x": 3.0}


@dataclasses.dataclass(frozen=True)
class Size:
    name: str  # command-line name
    label: str
    target: int  # bytes of the whole message
    attachments: tuple[tuple[str, str, str, float], ...]  # maintype, subtype, filename, share
    body_words: int
    rounds: int  # interleaved rounds
    cpu_repeat: int  # CPU-only stages: calls per round (time per call = total / repeat)
    io_repeat: int  # storing and end to end: samples per round


SIZES = {
    "10k": Size(
        "10k", "10 KB", 10_000,
        (("application", "pdf", "invoice-2026-11.pdf", 1.0),),
        body_words=60, rounds=31, cpu_repeat=50, io_repeat=8,
    ),
    "1m": Size(
        "1m", "1 MB", 1_000_000,
        (
            ("application", "pdf", "quarterly-report.pdf", 0.6),
            ("image", "jpeg", "site-photo.jpg", 0.4),
        ),
        body_words=400, rounds=15, cpu_repeat=2, io_repeat=1,
    ),
    "25m": Size(
        "25m", "25 MB", 25_000_000,
        (
            ("application", "pdf", "contract-scan.pdf", 0.4),
            ("application", "zip", "drawings.zip", 0.3),
            ("image", "jpeg", "IMG_2041.jpg", 0.2),
            ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             "figures.xlsx", 0.1),
        ),
        body_words=400, rounds=9, cpu_repeat=1, io_repeat=1,
    ),
}  # fmt: skip
QUICK = {"10k": (7, 10, 3), "1m": (3, 1, 1)}  # rounds, cpu_repeat, io_repeat


@dataclasses.dataclass(frozen=True)
class ReaderRounds:
    """The rounds of the last section, what a reader costs."""

    rounds: int  # interleaved rounds
    wrap_repeat: int  # wrap_for_link calls per round (the RSA-OAEP calls: a tenth of that)
    keygens: int  # RSA-2048 key pairs generated per round, each one a sample
    seals: int  # end-to-end seals per round for each reader count, without and with kept links


READER_ROUNDS = ReaderRounds(rounds=15, wrap_repeat=2000, keygens=2, seals=6)
READER_ROUNDS_QUICK = ReaderRounds(rounds=5, wrap_repeat=500, keygens=1, seals=2)


def say(*args: Any) -> None:
    print(*args, flush=True)


# --------------------------------------------------------------------------- messages

WORDS = [
    "the", "invoice", "for", "november", "is", "attached", "please", "find", "signed",
    "contract", "and", "drawings", "we", "discussed", "on", "tuesday", "let", "me", "know",
    "whether", "figures", "match", "your", "records", "regards", "müller", "straße", "déjà",
    "vu", "naïve", "café",
]  # fmt: skip


def _text(rng: random.Random, words: int) -> str:
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(WORDS))
        if len(line) == 12:
            lines.append(" ".join(line).capitalize() + ".")
            line = []
    lines.append(" ".join(line))
    return "Hello Bob,\n\n" + "\n".join(lines) + "\n\nAlice\n"


def _html(text: str) -> str:
    paragraphs = "".join(f"<p>{line}</p>\n" for line in text.splitlines() if line)
    return (
        "<html><head><style>p { font-family: sans-serif; }</style></head><body>\n"
        f'<div style="color: #222">{paragraphs}</div>\n'
        '<p><a href="https://example.org/terms">Terms</a></p></body></html>\n'
    )


def _build(size: Size, decoded: int) -> bytes:
    rng = random.Random(f"{SEED}-{size.name}")
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{SENDER}>"
    msg["To"] = ", ".join(f"<{r}>" for r in READERS)
    msg["Subject"] = f"Bench message {size.label}: contract, drawings and figures"
    msg["Date"] = formatdate(1795852800, localtime=False)  # 2026-11-28, fixed
    msg["Message-ID"] = f"<bench.{size.name}.{SEED}@example.org>"
    text = _text(rng, size.body_words)
    msg.set_content(text)
    msg.add_alternative(_html(text), subtype="html")
    for maintype, subtype, filename, share in size.attachments:
        data = rng.randbytes(max(1, int(decoded * share)))
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    for number, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"----=_Bench_{SEED}_{number}")
    return msg.as_bytes(policy=email.policy.SMTP)


def build_message(size: Size) -> bytes:
    """A deterministic message of about ``size.target`` bytes (CRLF lines)."""
    overhead = len(_build(size, 0))
    # base64 with 76-character lines and CRLF: 4/3 * 78/76 bytes per decoded byte
    decoded = max(1, int((size.target - overhead) / (4 / 3 * 78 / 76)))
    return _build(size, decoded)


# --------------------------------------------------------------------------- stages


def stdlib_parse(raw: bytes) -> int:
    """The baseline: the stdlib's parse, every leaf payload decoded (and dropped)."""
    msg = email.message_from_bytes(raw)
    total = 0
    for part in msg.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            total += len(payload or b"")
    return total


def content_model(raw: bytes) -> int:
    content = extract(raw)
    total = 0
    for attachment in content.attachments:
        for piece in attachment.chunks(CHUNK):
            total += len(piece)
    return total


def slices(data: bytes) -> list[bytes]:
    view = memoryview(data)
    return [bytes(view[i : i + CHUNK]) for i in range(0, len(view), CHUNK)]


@dataclasses.dataclass
class Plaintext:
    """The pieces Sealer.seal feeds to seal_part: original, attachments, manifest."""

    parts: list[tuple[int, list[bytes]]]  # (part id, pieces)
    chunks: list[bytes]  # the same bytes, concatenated and cut in 64 KiB chunks
    size: int


def plaintext_of(raw: bytes) -> Plaintext:
    content = extract(raw)
    parts: list[tuple[int, list[bytes]]] = [(1, slices(raw))]
    listed = []
    for offset, attachment in enumerate(content.attachments):
        pieces = list(attachment.chunks(CHUNK))
        parts.append((2 + offset, pieces))
        listed.append(
            {
                "part": 2 + offset,
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "size": sum(map(len, pieces)),
                "sha256": hashlib.sha256(b"".join(pieces)).hexdigest(),
            }
        )
    manifest = {
        "headers": content.headers.as_dict(),
        "text": content.text,
        "html": content.html,
        "attachments": listed,
        "problems": content.problems,
    }
    parts.append((0, [json.dumps(manifest, separators=(",", ":")).encode()]))
    whole = b"".join(piece for _, pieces in parts for piece in pieces)
    return Plaintext(parts, slices(whole), len(whole))


def raw_aes(key: bytes, chunks: list[bytes]) -> int:
    aead = AESGCM(key)
    aad = bytes(34)
    total = 0
    for index, chunk in enumerate(chunks):
        total += len(aead.encrypt(index.to_bytes(12, "big"), chunk, aad))
    return total


def seal_parts(key: bytes, envelope: bytes, plain: Plaintext) -> list[tuple[int, list[bytes]]]:
    sealed = []
    for part_id, pieces in plain.parts:
        header = stream.PartHeader(envelope, part_id)
        sealed.append((part_id, list(stream.seal_part(key, header, pieces))))
    return sealed


def sha256_parts(plain: Plaintext) -> None:
    for _, pieces in plain.parts:
        digest = hashlib.sha256()
        for piece in pieces:
            digest.update(piece)
        digest.hexdigest()


def timed(func: Callable[[], Any], repeat: int = 1) -> float:
    """Seconds per call of ``func``, over ``repeat`` calls."""
    started = time.perf_counter()
    for _ in range(repeat):
        func()
    return (time.perf_counter() - started) / repeat


# --------------------------------------------------------------------------- workbench


class Bench:
    """The temporary directory, the store and the child processes; all removed in close()."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="sealgate-bench-seal-"))
        self.blob_root = self.workdir / "blobs"
        self.db_path = self.workdir / "db" / "sealgate.db"
        self.store = Store(f"sqlite:///{self.db_path}", FileBlobStore(self.blob_root))
        self.store.migrate()
        # Steady state of a running gateway: the 256 prefix directories exist already.
        for prefix in range(256):
            (self.blob_root / f"{prefix:02x}").mkdir(parents=True, exist_ok=True)
        self.children: list[subprocess.Popen[bytes]] = []
        self.counter = 0

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        self.store.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def fresh_key(self) -> str:
        self.counter += 1
        return hashlib.sha256(f"{os.getpid()}-{time.time_ns()}-{self.counter}".encode()).hexdigest()


def fresh_record(template: EnvelopeRecord, idempotency_key: str) -> EnvelopeRecord:
    """The template with new ids (unique columns) and the given idempotency key."""
    readers = tuple(
        dataclasses.replace(
            r,
            reader_id=keys.random_bytes(keys.ID_SIZE).hex(),
            link_id_hash=keys.random_bytes(32),
        )
        for r in template.readers
    )
    return dataclasses.replace(
        template,
        envelope_id=keys.random_bytes(keys.ID_SIZE).hex(),
        idempotency_key=idempotency_key,
        readers=readers,
    )


class RawSqlite:
    """The rows commit_envelope writes, into a copy of the Store's schema with the bare sqlite3
    module and the Store's pragmas: the baseline of the database commit."""

    def __init__(self, schema_db: Path, path: Path) -> None:
        source = sqlite3.connect(schema_db)
        try:
            ddl = [
                row[0]
                for row in source.execute(
                    "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE "
                    "'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 "
                    "ELSE 2 END"
                )
            ]
        finally:
            source.close()
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "secure_delete=ON"):  # fmt: skip
            self.conn.execute(f"PRAGMA {pragma}")
        for sql in ddl:
            self.conn.execute(sql)

    def commit(self, record: EnvelopeRecord) -> None:
        now = time.time_ns() // 1000
        eid = record.envelope_id
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO envelopes (envelope_id, created_at, expires_at, state, sender, "
            "queue_id, idempotency_key, original_size, sealed_size) VALUES (?,?,?,?,?,?,?,?,?)",
            (eid, now, now + 30 * 86400 * 10**6, record.state, record.sender, record.queue_id,
             record.idempotency_key, record.original_size, record.sealed_size),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO parts (envelope_id, part_id, kind, plaintext_size, sealed_size) "
            "VALUES (?,?,?,?,?)",
            [(eid, p.part_id, p.kind, p.plaintext_size, p.sealed_size) for p in record.parts],
        )
        conn.executemany(
            "INSERT INTO readers (reader_id, envelope_id, position, kind, address, wrapped_key, "
            "encrypted_private_key, public_key, link_id_hash) VALUES (?,?,?,?,?,?,?,?,?)",
            [(r.reader_id, eid, n, r.kind, r.address, r.wrapped_key, r.encrypted_private_key,
              r.public_key, r.link_id_hash) for n, r in enumerate(record.readers)],
        )  # fmt: skip
        conn.execute(
            "INSERT INTO events (at, kind, envelope_id, detail) VALUES (?,?,?,?)",
            (now, "sealed", eid, f"parts={len(record.parts)} readers={len(record.readers)}"),
        )
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def request_for(
    raw: bytes, idempotency_key: str, readers: tuple[str, ...] = READERS
) -> SealRequest:
    return SealRequest(raw, SENDER, "BENCHQ", readers, idempotency_key)


def measure_size(bench: Bench, size: Size, raw: bytes) -> dict[str, Any]:
    """Interleaved rounds of every stage for one message; medians in seconds."""
    store, blobs = bench.store, bench.store.blobs
    plain = plaintext_of(raw)
    key, envelope = keys.random_bytes(32), keys.random_bytes(16)
    sealed = seal_parts(key, envelope, plain)
    sealed_bytes = sum(len(c) for _, chunks in sealed for c in chunks)
    sealer = Sealer(blobs)
    with counting_fsyncs() as fsyncs:  # warm-up, also the template of the storing stage
        template = sealer.seal(request_for(raw, bench.fresh_key()))
        store.commit_envelope(template.record)
    blobs.delete_envelope(template.envelope_id)
    decoded_attachments = sum(sum(map(len, p)) for pid, p in plain.parts if pid >= 2)
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    def run_store() -> None:
        record = fresh_record(template.record, bench.fresh_key())
        started = time.perf_counter()
        with blobs.writer(record.envelope_id) as writer:
            for part_id, chunks in sealed:
                writer.write(part_id, chunks)
            writer.commit()
        written = time.perf_counter()
        store.commit_envelope(record)
        done = time.perf_counter()
        blobs.delete_envelope(record.envelope_id)
        add("store_blobs", written - started)
        add("store_commit", done - written)
        add("store", done - started)

    def run_raw_write() -> None:
        path = bench.workdir / "raw-write.bin"
        started = time.perf_counter()
        with path.open("wb") as file:
            for _, chunks in sealed:
                for chunk in chunks:
                    file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        add("raw_write", time.perf_counter() - started)
        path.unlink()

    def run_raw_sqlite() -> None:
        record = fresh_record(template.record, bench.fresh_key())
        started = time.perf_counter()
        raw_db.commit(record)
        add("raw_sqlite", time.perf_counter() - started)

    def run_e2e() -> None:
        request = request_for(raw, bench.fresh_key())
        started, cpu = time.perf_counter(), time.thread_time()
        result = sealer.seal(request)
        store.commit_envelope(result.record)
        add("e2e", time.perf_counter() - started)
        add("e2e_cpu", time.thread_time() - cpu)
        blobs.delete_envelope(result.envelope_id)

    # CPU-only stages: timed here over cpu_repeat calls; I/O stages record each call.
    cpu_stages: list[tuple[str, Callable[[], object]]] = [
        ("stdlib_parse", lambda: stdlib_parse(raw)),
        ("content_model", lambda: content_model(raw)),
        ("raw_aes", lambda: raw_aes(key, plain.chunks)),
        ("seal_part", lambda: seal_parts(key, envelope, plain)),
        ("sha256", lambda: sha256_parts(plain)),
    ]
    io_stages = [run_raw_write, run_store, run_raw_sqlite, run_e2e]

    def cpu_stage(name: str, func: Callable[[], object]) -> Callable[[], None]:
        return lambda: add(name, timed(func, size.cpu_repeat))

    def io_stage(func: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(size.io_repeat):
                func()

        return run

    stages = [cpu_stage(n, f) for n, f in cpu_stages] + [io_stage(f) for f in io_stages]
    raw_db = RawSqlite(bench.db_path, bench.workdir / f"raw-{size.name}.db")
    try:
        for rnd in range(size.rounds):
            order = stages if rnd % 2 == 0 else stages[::-1]
            for run in order:
                gc.collect()
                run()
    finally:
        raw_db.close()
    result: dict[str, Any] = {
        "label": size.label,
        "message_bytes": len(raw),
        "attachments": len(size.attachments),
        "decoded_attachment_bytes": decoded_attachments,
        "plaintext_bytes": plain.size,
        "sealed_bytes": sealed_bytes,
        "rounds": size.rounds,
        "cpu_repeat": size.cpu_repeat,
        "io_repeat": size.io_repeat,
        "median_s": {name: median(values) for name, values in samples.items()},
        "samples": len(samples["e2e"]),
        "fsync_calls_per_seal": fsyncs[0],  # os.fsync calls; SQLite syncs its WAL on top
    }
    result["e2e_ms_p90"] = percentile(samples["e2e"], 90) * 1000
    result["e2e_ms_all"] = [round(s * 1000, 2) for s in samples["e2e"]]
    return result


@contextlib.contextmanager
def counting_fsyncs() -> Iterator[list[int]]:
    """Count the os.fsync calls made meanwhile (SQLite's own syncs are not seen)."""
    real, count = os.fsync, [0]

    def fsync(fd: Any) -> None:
        count[0] += 1
        real(fd)

    os.fsync = fsync
    try:
        yield count
    finally:
        os.fsync = real


def derived(res: dict[str, Any]) -> dict[str, Any]:
    """MB/s and ratios (throughput of ours / throughput of the baseline: > 1 is faster)."""
    m = res["median_s"]
    msg, plain, sealed = res["message_bytes"], res["plaintext_bytes"], res["sealed_bytes"]

    def rate(nbytes: int, seconds: float) -> float:
        return nbytes / seconds / MB if seconds else 0.0

    return {
        "content_model_mb_s": rate(msg, m["content_model"]),
        "stdlib_parse_mb_s": rate(msg, m["stdlib_parse"]),
        "content_model_ratio": m["stdlib_parse"] / m["content_model"],
        "seal_part_mb_s": rate(plain, m["seal_part"]),
        "raw_aes_mb_s": rate(plain, m["raw_aes"]),
        "seal_part_ratio": m["raw_aes"] / m["seal_part"],
        "sha256_mb_s": rate(plain, m["sha256"]),
        "store_mb_s": rate(sealed, m["store"]),
        "raw_write_mb_s": rate(sealed, m["raw_write"]),
        "store_ratio": m["raw_write"] / m["store"],
        "e2e_mb_s": rate(msg, m["e2e"]),
        "e2e_ms": m["e2e"] * 1000,
        "e2e_vs_stdlib_parse": m["stdlib_parse"] / m["e2e"],
        "e2e_vs_raw_aes": m["raw_aes"] / m["e2e"],
    }


# --------------------------------------------------------------------------- peak RSS


def vm_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def rss_child(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: RSS before the message exists, with it, and the peak of the work."""
    message = Path(args.message)
    workdir = Path(args.workdir)
    store = None
    try:
        if args.rss_child == "seal":
            store = Store(f"sqlite:///{workdir / 'db' / 'sealgate.db'}",
                          FileBlobStore(workdir / "blobs"))  # fmt: skip
            store.migrate()
        gc.collect()
        before = vm_status()
        maxrss_before = maxrss()
        raw = message.read_bytes()
        with_message = vm_status()["VmRSS"]
        started = time.perf_counter()
        if args.rss_child == "seal":
            assert store is not None
            sealed = Sealer(store.blobs).seal(request_for(raw, "0" * 64))
            store.commit_envelope(sealed.record)
        else:
            stdlib_parse(raw)
        seconds = time.perf_counter() - started
        status = vm_status()
        return {
            "work": args.rss_child,
            "message_bytes": len(raw),
            "seconds": seconds,
            "rss_before_message": before["VmRSS"],
            "hwm_before_message": before["VmHWM"],
            "rss_with_message": with_message,
            "maxrss_before_work": maxrss_before,
            "peak_rss": maxrss(),  # ru_maxrss
            "vm_hwm": status["VmHWM"],  # the peak of this process image only
            "rss_after": status["VmRSS"],
        }
    finally:
        if store is not None:
            store.close()


def run_child(bench: Bench, argv: list[str], what: str) -> bytes:
    """Run this file with ``argv`` in a fresh process (own session); its stdout."""
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    bench.children.append(child)
    try:
        out, err = child.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        raise RuntimeError(f"the {what} child took longer than 300 s") from None
    if child.returncode != 0:
        raise RuntimeError(f"the {what} child failed:\n{err.decode()[-3000:]}")
    return out


def write_messages(bench: Bench, names: list[str]) -> dict[str, Path]:
    """Build the messages in a child, so that this process's RSS high-water mark stays low
    until the peak-RSS children have run (they inherit it in ru_maxrss)."""
    argv = [sys.executable, str(HERE), "--write-messages", str(bench.workdir),
            "--sizes", ",".join(names)]  # fmt: skip
    run_child(bench, argv, "message-building")
    return {name: bench.workdir / f"message-{name}.eml" for name in names}


def run_rss_child(bench: Bench, work: str, message: Path) -> dict[str, Any]:
    workdir = bench.workdir / f"rss-{work}"
    workdir.mkdir()
    argv = [sys.executable, str(HERE), "--rss-child", work, "--message", str(message),
            "--workdir", str(workdir)]  # fmt: skip
    result: dict[str, Any] = json.loads(run_child(bench, argv, f"{work} RSS"))
    size = result["message_bytes"]
    result["peak_minus_before_x"] = (result["peak_rss"] - result["rss_before_message"]) / size
    result["hwm_minus_before_x"] = (result["vm_hwm"] - result["rss_before_message"]) / size
    # Linux carries the parent's high-water mark into a child's ru_maxrss (over fork or vfork
    # and exec); the parent is kept small until here, so both figures must agree.
    result["maxrss_inherited"] = result["peak_rss"] > result["vm_hwm"] + MB
    result["mb_s"] = size / result["seconds"] / MB
    shutil.rmtree(workdir, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- readers


def guests(count: int) -> tuple[str, ...]:
    """``count`` guest addresses, the first two those of the stages above."""
    extra = tuple(f"guest{n}@example.net" for n in range(len(READERS), count))
    return (READERS + extra)[:count]


def keep_links(public_der: bytes, sealed: SealedEnvelope) -> dict[str, bytes]:
    """Every guest's link sealed to the reply key, as the pipeline's keep_link does."""
    return {grant.reader_id: reply.seal_link(public_der, grant.link) for grant in sealed.grants}


def measure_readers(bench: Bench, raw: bytes, plan: ReaderRounds) -> dict[str, Any]:
    """Per call, what a reader costs; the 10 KB message sealed with 1, 2 and 10 guests.

    Interleaved rounds, medians in seconds. Nothing is cached between calls: each
    wrap_for_link derives its wrapping key, each RSA-OAEP call parses the DER public key.
    """
    store, blobs = bench.store, bench.store.blobs
    sealer = Sealer(blobs)
    content_key = keys.random_bytes(keys.KEY_SIZE)
    envelope, reader = keys.random_bytes(keys.ID_SIZE), keys.random_bytes(keys.ID_SIZE)
    link = keys.Link.new()
    account = keys.generate_key_pair(RSA_BITS)
    # The gateway's reply key, made as on its first start (ReplyKey's default size).
    reply_key = reply.ReplyKey.load_or_create(bench.workdir / "reply-key.pem")
    oaep_repeat = max(1, plan.wrap_repeat // 10)
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    def per_call(name: str, func: Callable[[], object], repeat: int) -> Callable[[], None]:
        return lambda: add(name, timed(func, repeat))

    def generate() -> None:
        for _ in range(plan.keygens):
            add("generate_key_pair", timed(lambda: keys.generate_key_pair(RSA_BITS)))

    def seal(count: int, kept: bool) -> Callable[[], None]:
        readers, name = guests(count), f"e2e_{count}" + ("_kept" if kept else "")

        def run() -> None:
            for _ in range(plan.seals):
                request = request_for(raw, bench.fresh_key(), readers)
                started, cpu = time.perf_counter(), time.thread_time()
                sealed = sealer.seal(request)
                pending = keep_links(reply_key.public_der, sealed) if kept else None
                store.commit_envelope(sealed.record, pending=pending)
                add(name, time.perf_counter() - started)
                add(name + "_cpu", time.thread_time() - cpu)
                blobs.delete_envelope(sealed.envelope_id)

        return run

    stages = [
        per_call("wrap_for_link",
                 lambda: keys.wrap_for_link(link, content_key, envelope, reader),
                 plan.wrap_repeat),
        per_call("wrap_content_key",
                 lambda: keys.wrap_content_key(account.public_der, content_key), oaep_repeat),
        per_call("seal_link", lambda: reply.seal_link(reply_key.public_der, link), oaep_repeat),
        generate,
        *(seal(count, kept) for count in READER_COUNTS for kept in (False, True)),
    ]  # fmt: skip
    for run in stages:  # warm-up
        run()
    samples.clear()
    for rnd in range(plan.rounds):
        for run in stages if rnd % 2 == 0 else stages[::-1]:
            gc.collect()
            run()
    m = {name: median(values) for name, values in samples.items()}
    calls = ("wrap_for_link", "generate_key_pair", "wrap_content_key", "seal_link")
    first = READER_COUNTS[0]
    out: dict[str, Any] = {
        "rounds": plan.rounds,
        "calls_per_round": {"wrap_for_link": plan.wrap_repeat, "generate_key_pair": plan.keygens,
                            "wrap_content_key": oaep_repeat, "seal_link": oaep_repeat},
        "account_rsa_bits": RSA_BITS,
        "reply_key_bits": len(reply.seal_link(reply_key.public_der, link)) * 8,  # modulus
        "seals_per_variant": len(samples[f"e2e_{first}"]),
        "median_s": m,
        "per_s": {name: 1 / m[name] for name in calls},
        # the row's time / wrap_for_link's = wrap_for_link's rate / the row's (> 1: slower)
        "vs_wrap_for_link": {name: m[name] / m["wrap_for_link"] for name in calls},
        "generate_key_pair_range_ms": [min(samples["generate_key_pair"]) * 1000,
                                       max(samples["generate_key_pair"]) * 1000],
        "e2e_ms": {},
    }  # fmt: skip
    for count in READER_COUNTS:
        for kept in (False, True):
            name = f"e2e_{count}" + ("_kept" if kept else "")
            one = f"e2e_{first}" + ("_kept" if kept else "")
            out["e2e_ms"][name] = {
                "readers": count,
                "links_kept": kept,
                "median": m[name] * 1000,
                "p90": percentile(samples[name], 90) * 1000,
                "cpu": m[name + "_cpu"] * 1000,
                "cpu_vs_1_reader": m[one + "_cpu"] / m[name + "_cpu"],
            }
    last = READER_COUNTS[-1]
    out["per_extra_guest_ms"] = {
        f"{kept}{clock}": (m[f"e2e_{last}{suffix}{clock}"] - m[f"e2e_{first}{suffix}{clock}"])
        / (last - first)
        * 1000
        for kept, suffix in (("without_kept_links", ""), ("with_kept_links", "_kept"))
        for clock in ("", "_cpu")
    }
    return out


# --------------------------------------------------------------------------- report


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:9.3f}" if ms < 10 else f"{ms:9.1f}"


def print_size(res: dict[str, Any]) -> None:
    m, d = res["median_s"], res["derived"]
    say(f"\n{res['label']} message: {res['message_bytes']:,} bytes, {res['attachments']} "
        f"attachment(s) of {res['decoded_attachment_bytes']:,} bytes decoded; "
        f"{res['plaintext_bytes']:,} bytes sealed into {res['sealed_bytes']:,}; "
        f"median of {res['rounds']} rounds"
        + (f" x {res['cpu_repeat']} calls" if res["cpu_repeat"] > 1 else "")
        + (f" ({res['samples']} seals)" if res["io_repeat"] > 1 else ""))  # fmt: skip
    say(f"  {'stage':<34}{'ms':>9}{'MB/s':>9}   {'baseline':<26}{'ms':>9}{'MB/s':>9}{'ratio':>7}")
    rows = [
        ("content model: extract + decode", "content_model", "stdlib parse + decode",
         "stdlib_parse", "content_model_ratio"),
        ("encryption: seal_part", "seal_part", "raw AES-256-GCM 64 KiB", "raw_aes",
         "seal_part_ratio"),
        ("storing: blobs fsync + commit", "store", "one file write + fsync", "raw_write",
         "store_ratio"),
    ]  # fmt: skip
    for label, key, base_label, base_key, ratio_key in rows:
        say(f"  {label:<34}{fmt_ms(m[key])}{d[key + '_mb_s']:9.1f}   {base_label:<26}"
            f"{fmt_ms(m[base_key])}{d[base_key + '_mb_s']:9.1f}{d[ratio_key]:7.2f}")  # fmt: skip
    say(f"    storing = blob writes {m['store_blobs'] * 1000:.2f} ms + commit_envelope "
        f"{m['store_commit'] * 1000:.2f} ms (bare sqlite3, same rows and pragmas: "
        f"{m['raw_sqlite'] * 1000:.2f} ms)")  # fmt: skip
    say(f"    SHA-256 of every part (Sealer hashes them): {m['sha256'] * 1000:.3f} ms, "
        f"{d['sha256_mb_s']:.0f} MB/s")  # fmt: skip
    say(f"  {'end to end: seal + commit, 2 readers':<34}{fmt_ms(m['e2e'])}{d['e2e_mb_s']:9.1f}   "
        f"{'vs stdlib parse':<26}{fmt_ms(m['stdlib_parse'])}{d['stdlib_parse_mb_s']:9.1f}"
        f"{d['e2e_vs_stdlib_parse']:7.2f}")  # fmt: skip
    say(
        f"    p90 {res['e2e_ms_p90']:.2f} ms, CPU {m['e2e_cpu'] * 1000:.2f} ms (this thread's, "
        f"not the fsync waits); {res['fsync_calls_per_seal']} fsync calls + the SQLite commit "
        "per seal; no key pair generated (format v2 guests)"
    )


def print_rss(rss: dict[str, Any]) -> None:
    say("\nPeak RSS, 25 MB message, each in a fresh process (MB = 10^6 bytes)")
    say(f"  {'work':<30}{'before msg':>11}{'with msg':>10}{'ru_maxrss':>10}{'VmHWM':>8}"
        f"{'(peak-before)/size':>20}{'s':>7}{'MB/s':>7}")  # fmt: skip
    for key, label in (("seal", "seal + commit (Sealer, Store)"),
                       ("stdlib", "stdlib parse + decode")):  # fmt: skip
        r = rss[key]
        note = "  ru_maxrss inherited from the parent!" if r["maxrss_inherited"] else ""
        say(f"  {label:<30}{r['rss_before_message'] / MB:11.1f}{r['rss_with_message'] / MB:10.1f}"
            f"{r['peak_rss'] / MB:10.1f}{r['vm_hwm'] / MB:8.1f}{r['peak_minus_before_x']:19.2f}x"
            f"{r['seconds']:7.2f}{r['mb_s']:7.1f}{note}")  # fmt: skip
    seal, stdlib = rss["seal"]["peak_minus_before_x"], rss["stdlib"]["peak_minus_before_x"]
    say(f"  the stdlib parse's increase is {stdlib / seal:.1f}x sealing's")


def print_readers(r: dict[str, Any]) -> None:
    m, calls = r["median_s"], r["calls_per_round"]
    say(f"\nWhat a reader costs (format v2 guests), median of {r['rounds']} interleaved rounds")
    say(f"  {'per reader, one call':<58}{'us':>10}{'per s':>10}{'ratio':>9}")
    rows = [
        ("wrap_for_link", "v2 guest: keys.wrap_for_link (HKDF + AES-GCM)"),
        ("generate_key_pair", f"v1 guest's key pair: keys.generate_key_pair({RSA_BITS})"),
        ("wrap_content_key", f"account: keys.wrap_content_key (RSA-{RSA_BITS} OAEP)"),
        ("seal_link", f"link kept: reply.seal_link (RSA-{r['reply_key_bits']} OAEP)"),
    ]
    for key, label in rows:
        say(f"  {label:<58}{m[key] * 1e6:10.1f}{r['per_s'][key]:10,.0f}"
            f"{r['vs_wrap_for_link'][key]:9,.1f}")  # fmt: skip
    low, high = r["generate_key_pair_range_ms"]
    say(f"    ratio = the row's time / wrap_for_link's (> 1: wrap_for_link is faster); calls per "
        f"round {calls['wrap_for_link']} / {calls['generate_key_pair']} / "
        f"{calls['wrap_content_key']} / {calls['seal_link']}; the key pairs took "
        f"{low:.1f}-{high:.1f} ms each; RSA-{RSA_BITS} OAEP reference "
        f"{REFERENCE['rsa2048_oaep_wrap_per_s']:,.0f}/s")  # fmt: skip
    say(f"  {'10 KB message sealed + committed':<34}{'ms':>8}{'p90':>8}{'CPU ms':>8}{'ratio':>7}"
        f"   {'links kept:':<12}{'ms':>8}{'p90':>8}{'CPU ms':>8}{'ratio':>7}")  # fmt: skip
    for count in READER_COUNTS:
        plain, kept = r["e2e_ms"][f"e2e_{count}"], r["e2e_ms"][f"e2e_{count}_kept"]
        label = f"{count} guest reader{'s' if count > 1 else ''}"
        say(f"  {label:<34}{plain['median']:8.3f}{plain['p90']:8.3f}{plain['cpu']:8.3f}"
            f"{plain['cpu_vs_1_reader']:7.2f}   {'':<12}{kept['median']:8.3f}{kept['p90']:8.3f}"
            f"{kept['cpu']:8.3f}{kept['cpu_vs_1_reader']:7.2f}")  # fmt: skip
    extra = r["per_extra_guest_ms"]
    say(f"    {r['seals_per_variant']} seals each; CPU = this thread's time (not the fsync "
        "waits); ratio = 1 reader's CPU ms / this one's; links kept = each guest's link sealed "
        "to the reply key and committed with the envelope, as the pipeline does")  # fmt: skip
    say(f"    each guest beyond the first: {extra['without_kept_links_cpu']:.3f} ms CPU "
        f"({extra['without_kept_links']:.3f} ms wall), with its link kept "
        f"{extra['with_kept_links_cpu']:.3f} ms CPU ({extra['with_kept_links']:.3f} ms wall); "
        f"a format v1 guest's key pair alone: {m['generate_key_pair'] * 1000:.1f} ms")  # fmt: skip


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    sizes = report["sizes"]
    if "10k" in sizes:
        ms = sizes["10k"]["derived"]["e2e_ms"]
        out.append({"target": "10 KB, 2 readers, seal + store median < 3 ms",
                    "measured": f"{ms:.2f} ms", "met": ms < TARGETS["e2e_10k_ms"],
                    "by": ms / TARGETS["e2e_10k_ms"]})  # fmt: skip
    if "25m" in sizes:
        rate = sizes["25m"]["derived"]["e2e_mb_s"]
        out.append({"target": "25 MB sealed end to end >= 25 MB/s",
                    "measured": f"{rate:.1f} MB/s", "met": rate >= TARGETS["e2e_25m_mb_s"],
                    "by": rate / TARGETS["e2e_25m_mb_s"]})  # fmt: skip
    if "rss" in report:
        x = report["rss"]["seal"]["peak_minus_before_x"]
        out.append({"target": "25 MB peak RSS < 3x the message size",
                    "measured": f"{x:.2f}x", "met": x < TARGETS["rss_25m_x"],
                    "by": x / TARGETS["rss_25m_x"]})  # fmt: skip
    return out


# --------------------------------------------------------------------------- main


def profile(bench: Bench, name: str, rounds: int) -> None:
    size = SIZES[name]
    raw = build_message(size)
    sealer = Sealer(bench.store.blobs)

    def once() -> str:
        sealed = sealer.seal(request_for(raw, bench.fresh_key()))
        bench.store.commit_envelope(sealed.record)
        return sealed.envelope_id

    bench.store.blobs.delete_envelope(once())
    profiler = cProfile.Profile()
    done = []
    for _ in range(rounds):
        profiler.enable()
        done.append(once())
        profiler.disable()
        bench.store.blobs.delete_envelope(done[-1])  # not profiled
    say(f"cProfile of {rounds} end-to-end seals + commits of the {size.label} message "
        f"({len(raw):,} bytes, 2 guest readers)")  # fmt: skip
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)


def orchestrate(args: argparse.Namespace) -> int:
    names = ["10k", "1m"] if args.quick else ["10k", "1m", "25m"]
    sizes = {n: SIZES[n] for n in names}
    if args.quick:
        sizes = {
            n: dataclasses.replace(s, rounds=r, cpu_repeat=c, io_repeat=i)
            for n, s in sizes.items()
            for r, c, i in [QUICK[n]]
        }
    began = time.perf_counter()
    bench = Bench()
    try:
        if args.profile:
            profile(bench, args.profile, args.profile_rounds)
            return 0
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "quick": args.quick,
            "reference": REFERENCE,
            "targets": TARGETS,
            "sizes": {},
        }
        say(f"sealing benchmark: {', '.join(s.label for s in sizes.values())}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"work directory {bench.workdir}")  # fmt: skip
        files = write_messages(bench, list(sizes))
        if "25m" in files:
            report["rss_launcher_vm_hwm"] = vm_status()["VmHWM"]
            report["rss"] = {
                "seal": run_rss_child(bench, "seal", files["25m"]),
                "stdlib": run_rss_child(bench, "stdlib", files["25m"]),
            }
            print_rss(report["rss"])
        messages = {name: path.read_bytes() for name, path in files.items()}
        for name, size in sizes.items():
            res = measure_size(bench, size, messages[name])
            res["derived"] = derived(res)
            report["sizes"][name] = res
            print_size(res)
        plan = READER_ROUNDS_QUICK if args.quick else READER_ROUNDS
        report["readers"] = measure_readers(bench, messages["10k"], plan)
        print_readers(report["readers"])
        report["verdicts"] = verdicts(report)
        say("\nTargets")
        for v in report["verdicts"]:
            by = f" ({v['by']:.2f} of the target)" if v["by"] is not None else ""
            say(f"  {'MET   ' if v['met'] else 'MISSED'} {v['target']}: {v['measured']}{by}")
        report["seconds"] = time.perf_counter() - began
        say(f"\nwhole run {report['seconds']:.0f} s; medians of interleaved rounds, ratios are "
            "throughput ours / baseline (> 1: faster than the baseline)")  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            say(f"figures written to {args.json}")
        return 0
    finally:
        bench.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time each stage of sealing a message, against baselines run alongside.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no 25 MB message")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    parser.add_argument("--profile", choices=sorted(SIZES), help="cProfile end-to-end seals")
    parser.add_argument("--profile-rounds", type=int, default=20, help="seals to profile")
    # Internal: the peak-RSS child processes.
    parser.add_argument("--rss-child", choices=["seal", "stdlib"], help=argparse.SUPPRESS)
    parser.add_argument("--message", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--write-messages", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        print(json.dumps(rss_child(args)))
        return 0
    if args.write_messages:
        for name in args.sizes.split(","):
            path = Path(args.write_messages) / f"message-{name}.eml"
            path.write_bytes(build_message(SIZES[name]))
        return 0

    return run_interruptibly(
        lambda: orchestrate(args), "every process and directory started was removed"
    )


if __name__ == "__main__":
    sys.exit(main())
