"""The metadata store on SQLite and on a real PostgreSQL: one commit per sealing, one live
envelope per message, crypto-shredding that reaches the files, an append-only trail, and
errors that tell the pipeline whether to answer 451."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.sql import Executable

from gateway.store import (
    AccountRecord,
    BlobMissing,
    EnvelopeRecord,
    FileBlobStore,
    PartRecord,
    ReaderRecord,
    Store,
    StoreError,
    TemporaryStoreError,
)
from gateway.store.pending import PendingLinks
from gateway.store.schema import events as events_table
from tests.support.postgres import PostgresCluster
from tests.support.process import free_port
from tests.support.schema import schema_differences

NOW = datetime(2025, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)


def make_envelope(
    *,
    key: str | None = None,
    created_at: datetime = NOW,
    lifetime: timedelta = timedelta(days=30),
    guests: int = 2,
) -> EnvelopeRecord:
    """An envelope as the sealing code builds it: guests with links, then the sender."""
    readers = [
        ReaderRecord(
            reader_id=os.urandom(16).hex(),
            kind="guest",
            address=f"reader{n}@example.org",
            wrapped_key=os.urandom(256),
            encrypted_private_key=os.urandom(1232),
            public_key=os.urandom(294),
            link_id_hash=os.urandom(32),
        )
        for n in range(guests)
    ]
    readers.append(
        ReaderRecord(
            reader_id=os.urandom(16).hex(),
            kind="account",
            address="sender@example.com",
            wrapped_key=os.urandom(256),
            encrypted_private_key=None,
            public_key=None,
            link_id_hash=None,
        )
    )
    parts = (
        PartRecord(0, "manifest", 700, 760),
        PartRecord(1, "original", 5000, 5100),
        PartRecord(2, "attachment", 3000, 3060),
    )
    return EnvelopeRecord(
        envelope_id=os.urandom(16).hex(),
        created_at=created_at,
        expires_at=created_at + lifetime,
        state="sealed",
        sender="sender@example.com",
        queue_id="4XyZ12abc",
        idempotency_key=key or os.urandom(32).hex(),
        original_size=5000,
        sealed_size=sum(part.sealed_size for part in parts),
        parts=parts,
        readers=tuple(readers),
    )


def write_blobs(store: Store, envelope: EnvelopeRecord) -> None:
    with store.blobs.writer(envelope.envelope_id) as writer:
        for part in envelope.parts:
            writer.write(part.part_id, [os.urandom(part.sealed_size)])
        writer.commit()


def seal(store: Store, envelope: EnvelopeRecord | None = None) -> EnvelopeRecord:
    """Blobs first, then the one commit: what the sealing code does."""
    envelope = envelope or make_envelope()
    write_blobs(store, envelope)
    store.commit_envelope(envelope)
    return envelope


def has_blobs(store: Store, envelope_id: str) -> bool:
    return envelope_id in dict(store.blobs.envelopes())


def assert_shredded(store: Store, envelope_id: str, state: str) -> None:
    record = store.get(envelope_id)
    assert record is not None and record.state == state
    assert all(r.wrapped_key is None and r.encrypted_private_key is None for r in record.readers)
    assert not has_blobs(store, envelope_id)
    with pytest.raises(BlobMissing):
        store.blobs.open(envelope_id, 0)


def age(store: Store, envelope_id: str, seconds: float) -> None:
    """Pretend the envelope's blobs were last touched ``seconds`` ago."""
    assert isinstance(store.blobs, FileBlobStore)
    then = time.time() - seconds
    os.utime(store.blobs.root / envelope_id[:2] / f"{envelope_id}.sge", (then, then))


def sqlite_path(url: str) -> Path:
    return Path(str(make_url(url).database))


# round trips


def test_commit_and_read_back(store: Store) -> None:
    envelope = seal(store)
    guest = envelope.readers[1]

    assert store.get(envelope.envelope_id) == envelope
    assert store.find_live(envelope.idempotency_key) == envelope
    # Only this reader: the portal asks on every request.
    assert store.reader_by_link(guest.link_id_hash or b"") == (
        replace(envelope, readers=(guest,)),
        guest,
    )
    assert store.list() == [replace(envelope, parts=(), readers=())]
    [sealed] = store.events(envelope.envelope_id)
    assert (sealed.kind, sealed.envelope_id, sealed.detail) == (
        "sealed",
        envelope.envelope_id,
        "parts=3 readers=3",
    )
    assert sealed.at.tzinfo is not None and sealed.at.utcoffset() == timedelta(0)
    assert abs(sealed.at - datetime.now(UTC)) < timedelta(minutes=1)


def test_unknown_things_are_none(store: Store) -> None:
    seal(store)
    assert store.get("0" * 32) is None
    assert store.find_live("f" * 64) is None
    assert store.reader_by_link(os.urandom(32)) is None
    assert store.events("0" * 32) == []


def test_the_idempotency_lookup_searches_the_live_key_index(tmp_path: Path) -> None:
    """Regression: with the live states as bound parameters, SQLite could not use the
    partial unique index on live keys and scanned every envelope for each protected
    message (a cost that grew with the envelopes kept)."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", FileBlobStore(tmp_path / "blobs"))
    store.migrate()
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert store.find_live("f" * 64) is None
        event.remove(store.engine, "before_cursor_execute", record)
        ((query, parameters),) = [s for s in statements if s[0].lstrip().startswith("SELECT")]
        with store.engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", parameters).all()
    finally:
        store.close()
    assert [row[3] for row in plan] == [
        "SEARCH envelopes USING INDEX uq_envelopes_live_idempotency_key (idempotency_key=?)"
    ]


def test_mark_delivered(store: Store) -> None:
    envelope = seal(store)

    store.mark_delivered(envelope.envelope_id)
    store.mark_delivered(envelope.envelope_id)  # a repeat changes nothing

    delivered = replace(envelope, state="delivered")
    assert store.get(envelope.envelope_id) == delivered
    assert store.find_live(envelope.idempotency_key) == delivered
    assert [e.kind for e in store.events(envelope.envelope_id)] == ["sealed", "notified"]
    with pytest.raises(StoreError, match="unknown"):
        store.mark_delivered("0" * 32)
    store.shred(envelope.envelope_id, "revoked")
    with pytest.raises(StoreError, match="revoked"):
        store.mark_delivered(envelope.envelope_id)


def test_mark_delivered_records_the_last_notification_in_the_same_commit(store: Store) -> None:
    envelope = make_envelope()
    write_blobs(store, envelope)
    first, last = envelope.readers[:2]
    kept = {first.reader_id: b"kept link 1", last.reader_id: b"kept link 2"}
    store.commit_envelope(envelope, pending=kept)
    pending = PendingLinks(store)
    pending.notified(envelope.envelope_id, first.reader_id, first.address)

    store.mark_delivered(envelope.envelope_id, last_notified=(last.reader_id, last.address))

    trail = [(e.kind, e.reader_id) for e in store.events(envelope.envelope_id)]
    assert trail == [
        ("sealed", None),
        ("reader-notified", first.reader_id),
        ("reader-notified", last.reader_id),
        ("notified", None),
    ]
    progress = pending.progress(envelope.envelope_id)
    assert progress.owed == {}  # no kept link outlives the settled message
    assert progress.notified == {first.reader_id, last.reader_id}


def test_the_last_notification_is_recorded_even_if_the_envelope_ended_meanwhile(
    store: Store,
) -> None:
    envelope = seal(store)
    reader = envelope.readers[0]
    store.shred(envelope.envelope_id, "revoked")
    with pytest.raises(StoreError, match="revoked"):
        store.mark_delivered(envelope.envelope_id, last_notified=(reader.reader_id, "b@x.test"))
    kinds = [e.kind for e in store.events(envelope.envelope_id)]
    assert kinds == ["sealed", "revoked", "reader-notified"]


def test_list_is_newest_first_and_filters_by_state(store: Store) -> None:
    first, second, third = (
        seal(store, make_envelope(created_at=NOW + timedelta(minutes=n))) for n in range(3)
    )
    store.shred(second.envelope_id, "revoked")

    assert [e.envelope_id for e in store.list()] == [
        third.envelope_id,
        second.envelope_id,
        first.envelope_id,
    ]
    assert [e.envelope_id for e in store.list(limit=1)] == [third.envelope_id]
    assert [e.envelope_id for e in store.list(state="revoked")] == [second.envelope_id]
    with pytest.raises(ValueError, match="unknown state"):
        store.list(state="lost")
    with pytest.raises(ValueError, match="positive"):
        store.list(limit=0)


def test_new_envelopes_are_checked_before_the_database(store: Store) -> None:
    good = make_envelope()
    with pytest.raises(ValueError, match="sealed"):
        store.commit_envelope(replace(good, state="delivered"))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.commit_envelope(replace(good, expires_at=datetime(2030, 1, 1)))
    with pytest.raises(ValueError, match="envelope id"):
        store.commit_envelope(replace(good, envelope_id="../" + "0" * 29))
    assert store.list() == []


# one live envelope per message


def test_a_second_live_envelope_for_one_key_is_refused(store: Store) -> None:
    first = seal(store)
    second = make_envelope(key=first.idempotency_key)

    with pytest.raises(StoreError) as refused:
        store.commit_envelope(second)

    assert not isinstance(refused.value, TemporaryStoreError)
    assert store.get(second.envelope_id) is None
    assert store.events(second.envelope_id) == []
    assert store.reader_by_link(second.readers[0].link_id_hash or b"") is None
    # An ended envelope does not count: a message revoked and sent again is sealed anew.
    store.shred(first.envelope_id, "revoked")
    store.commit_envelope(second)
    assert store.find_live(first.idempotency_key) == second


def test_supersede_leaves_exactly_one_live_envelope(store: Store) -> None:
    old = seal(store)
    new = make_envelope(key=old.idempotency_key)
    write_blobs(store, new)

    store.commit_envelope(new, supersede=old.envelope_id)

    assert store.find_live(old.idempotency_key) == new
    assert [e.envelope_id for e in store.list(state="sealed")] == [new.envelope_id]
    assert_shredded(store, old.envelope_id, "superseded")
    assert has_blobs(store, new.envelope_id)
    superseded = store.events(old.envelope_id)[-1]
    assert superseded.kind == "superseded" and new.envelope_id in superseded.detail


def test_a_delivered_envelope_is_never_superseded(store: Store) -> None:
    """Regression: a retry racing the first attempt's mark_delivered shredded live links."""
    old = seal(store)
    store.mark_delivered(old.envelope_id)
    new = make_envelope(key=old.idempotency_key)
    write_blobs(store, new)

    with pytest.raises(StoreError):
        store.commit_envelope(new, supersede=old.envelope_id)

    assert store.find_live(old.idempotency_key).envelope_id == old.envelope_id
    assert store.get(old.envelope_id).state == "delivered"
    assert all(r.wrapped_key is not None for r in store.get(old.envelope_id).readers)
    assert store.get(new.envelope_id) is None


def test_supersede_is_one_transaction_with_the_new_envelope(store: Store) -> None:
    old = seal(store)
    # The new envelope cannot be inserted (a link id that is already taken), so the
    # shredding of the old one must not happen either.
    clash = replace(old.readers[0], reader_id=os.urandom(16).hex())
    broken = replace(make_envelope(key=old.idempotency_key), readers=(clash,))

    with pytest.raises(StoreError):
        store.commit_envelope(broken, supersede=old.envelope_id)

    assert store.get(old.envelope_id) == old
    assert store.find_live(old.idempotency_key) == old
    assert store.get(broken.envelope_id) is None
    assert has_blobs(store, old.envelope_id)
    assert [e.kind for e in store.events(old.envelope_id)] == ["sealed"]


# crypto-shredding


def test_shred(store: Store) -> None:
    envelope = seal(store)
    keep = seal(store)

    assert store.shred(envelope.envelope_id, "revoked", detail="by sender@example.com")

    assert_shredded(store, envelope.envelope_id, "revoked")
    shredded = store.get(envelope.envelope_id)
    assert shredded is not None
    assert [r.public_key for r in shredded.readers] == [r.public_key for r in envelope.readers]
    assert store.find_live(envelope.idempotency_key) is None
    revoked = store.events(envelope.envelope_id)[-1]
    assert (revoked.kind, revoked.detail) == ("revoked", "by sender@example.com")
    assert not store.shred(envelope.envelope_id, "expired")
    assert len(store.events(envelope.envelope_id)) == 2
    assert not store.shred("0" * 32, "revoked")
    assert store.get(keep.envelope_id) == keep and has_blobs(store, keep.envelope_id)
    with pytest.raises(ValueError, match="cannot shred"):
        store.shred(keep.envelope_id, "delivered")


class FailingDeletes(FileBlobStore):
    def delete_envelope(self, envelope_id: str) -> None:
        raise PermissionError(f"cannot delete {envelope_id}")


def test_a_failed_blob_delete_is_logged_not_raised(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(store_url, FailingDeletes(tmp_path / "blobs"))
    store.migrate()
    try:
        envelope = seal(store)
        with caplog.at_level(logging.WARNING, logger="sealgate.store"):
            assert store.shred(envelope.envelope_id, "revoked")
        record = store.get(envelope.envelope_id)
        assert record is not None and record.state == "revoked"
        assert record.readers[0].wrapped_key is None
        assert "blob delete failed" in caplog.text
    finally:
        store.close()


def test_expire_takes_only_live_envelopes_whose_time_is_up(store: Store) -> None:
    due = seal(
        store, make_envelope(created_at=NOW - timedelta(days=31), lifetime=timedelta(days=30))
    )
    exactly = seal(
        store, make_envelope(created_at=NOW - timedelta(days=1), lifetime=timedelta(days=1))
    )
    later = seal(store, make_envelope(created_at=NOW, lifetime=timedelta(seconds=1)))
    revoked = seal(
        store, make_envelope(created_at=NOW - timedelta(days=40), lifetime=timedelta(days=1))
    )
    store.shred(revoked.envelope_id, "revoked")

    assert store.expire(NOW) == [due.envelope_id, exactly.envelope_id]

    assert_shredded(store, due.envelope_id, "expired")
    assert_shredded(store, exactly.envelope_id, "expired")
    assert store.get(later.envelope_id) == later
    assert_shredded(store, revoked.envelope_id, "revoked")
    assert store.expire(NOW) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        store.expire(datetime(2030, 1, 1))


def test_sweep_orphans(store: Store) -> None:
    live = seal(store)
    ended = seal(store)
    store.shred(ended.envelope_id, "revoked")
    write_blobs(store, ended)  # as if the delete after shredding had failed
    crashed = make_envelope()  # blobs written, then a crash before the commit
    write_blobs(store, crashed)
    in_progress = make_envelope()  # being sealed by another process right now
    write_blobs(store, in_progress)
    for envelope in (live, ended, crashed):
        age(store, envelope.envelope_id, 3600)

    assert store.sweep_orphans(older_than=600) == 2

    assert has_blobs(store, live.envelope_id)
    assert has_blobs(store, in_progress.envelope_id)
    assert not has_blobs(store, ended.envelope_id)
    assert not has_blobs(store, crashed.envelope_id)
    assert store.sweep_orphans(older_than=600) == 0


# the audit trail


def test_record_event_and_read_in_order(store: Store) -> None:
    envelope = seal(store)
    reader = envelope.readers[0]

    store.record_event(
        "opened",
        envelope_id=envelope.envelope_id,
        reader_id=reader.reader_id,
        address=reader.address,
        detail="second factor: email code",
    )
    store.mark_delivered(envelope.envelope_id)

    trail = store.events(envelope.envelope_id)
    assert [e.kind for e in trail] == ["sealed", "opened", "notified"]
    assert (trail[1].reader_id, trail[1].address, trail[1].detail) == (
        reader.reader_id,
        reader.address,
        "second factor: email code",
    )
    assert trail[0].at <= trail[1].at <= trail[2].at
    with pytest.raises(ValueError, match="event kind"):
        store.record_event("Opened; DROP TABLE events")


@pytest.mark.parametrize(
    "statement",
    [
        events_table.update().values(detail="rewritten"),
        events_table.delete(),
    ],
    ids=["update", "delete"],
)
def test_events_are_append_only_in_the_database(store: Store, statement: Executable) -> None:
    envelope = seal(store)

    with pytest.raises(sa_exc.DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(statement)

    [sealed] = store.events(envelope.envelope_id)
    assert sealed.detail == "parts=3 readers=3"


# accounts


def account(address: str) -> AccountRecord:
    return AccountRecord(
        address=address,
        created_at=NOW,
        kdf="pbkdf2-sha256",
        kdf_iterations=600_000,
        kdf_salt=os.urandom(16),
        login_verifier="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        public_key=os.urandom(294),
        encrypted_private_key=os.urandom(1232),
    )


def test_accounts(store: Store) -> None:
    created = account("Alice@Example.ORG")

    store.add_account(created)

    stored = replace(created, address="alice@example.org")
    assert store.get_account("alice@example.org") == stored
    assert store.get_account("ALICE@example.org") == stored
    assert store.get_account("bob@example.org") is None
    with pytest.raises(StoreError, match="account alice@example.org exists"):
        store.add_account(account("alice@EXAMPLE.org"))
    with store.engine.connect() as conn:
        rows = conn.execute(select(events_table.c.kind, events_table.c.address)).all()
    assert [tuple(row) for row in rows] == [("account-created", "alice@example.org")]


def test_the_lookups_before_sealing_are_one_read(store: Store) -> None:
    envelope = seal(store)
    store.add_account(account("Alice@Example.ORG"))

    existing, found = store.find_live_and_accounts(
        envelope.idempotency_key, ["ALICE@example.org", "bob@example.net"]
    )
    assert existing == envelope
    assert list(found) == ["alice@example.org"]
    assert found["alice@example.org"] == store.get_account("alice@example.org")
    assert store.find_live_and_accounts("f" * 64, []) == (None, {})


# schema and migrations


def test_migrate_is_idempotent_and_matches_the_metadata(store: Store) -> None:
    envelope = seal(store)

    store.migrate()

    with store.engine.connect() as conn:
        assert schema_differences(conn) == []
        assert MigrationContext.configure(conn).get_current_revision() == "0009"
    assert store.get(envelope.envelope_id) == envelope


def test_a_schema_from_a_newer_version_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")

    with pytest.raises(StoreError, match="cannot migrate .*9999"):
        store.migrate()


def test_the_schema_has_no_place_for_content(store: Store) -> None:
    inspector = inspect(store.engine)
    columns = {
        column["name"]
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
    }
    assert not {"subject", "body", "filename", "content", "message", "text"} & columns


MIGRATE = """
import sys, time
from pathlib import Path
from gateway.store import FileBlobStore, Store
url, blobs, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = Store(url, FileBlobStore(Path(blobs)))
time.sleep(max(0.0, start - time.time()))
store.migrate()
store.close()
"""


@pytest.mark.peers  # Sealgate processes
def test_concurrent_migrations_in_processes(store_url: str, tmp_path: Path) -> None:
    """Several gateways starting at once on one fresh database: all migrate, none breaks."""
    start = time.time() + 1.0  # after every interpreter has imported the store
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, store_url, str(tmp_path / "blobs"), str(start)],
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = [(process.communicate(timeout=30)[1], process.returncode) for process in processes]

    assert results == [(b"", 0)] * 3
    store = Store(store_url, FileBlobStore(tmp_path / "blobs"))
    try:
        store.migrate()
        seal(store)
    finally:
        store.close()


def test_threads_share_one_store(store: Store) -> None:
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                envelope = seal(store)
                store.mark_delivered(envelope.envelope_id)
                assert store.get(envelope.envelope_id) is not None
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == []
    assert len(store.list(state="delivered")) == 40


# errors


def test_a_password_never_shows_in_errors(tmp_path: Path) -> None:
    password = "Tr0ub4dor-and-3"
    url = f"postgresql+psycopg://sealgate:{password}@127.0.0.1:{free_port()}/sealgate"
    store = Store(url, FileBlobStore(tmp_path / "blobs"), busy_timeout=1)
    try:
        with pytest.raises(TemporaryStoreError) as unreachable:
            store.migrate()
        with pytest.raises(TemporaryStoreError):
            store.commit_envelope(make_envelope())
    finally:
        store.close()

    message = str(unreachable.value)
    assert "sealgate:***@127.0.0.1" in message
    assert "unavailable while migrating the schema" in message
    assert password not in message
    assert password not in "".join(traceback.format_exception(unreachable.value))
    assert password not in repr(store)


def test_unsupported_databases_are_refused(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    with pytest.raises(StoreError, match="unsupported database mysql://u:\\*\\*\\*@h/d"):
        Store("mysql://u:secret@h/d", blobs)
    with pytest.raises(StoreError, match="in-memory"):
        Store("sqlite://", blobs)
    with pytest.raises(StoreError, match="cannot be parsed"):
        Store("not a url", blobs)


# SQLite specifics


def test_sqlite_pragmas_and_directory(tmp_path: Path) -> None:
    database = tmp_path / "var" / "db" / "sealgate.db"
    store = Store(f"sqlite:///{database}", FileBlobStore(tmp_path / "blobs"), busy_timeout=2.5)
    try:
        store.migrate()
        with store.engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in (
                    "journal_mode",
                    "synchronous",
                    "foreign_keys",
                    "secure_delete",
                    "busy_timeout",
                )
            }
    finally:
        store.close()

    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "secure_delete": 1,
        "busy_timeout": 2500,
    }
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700


def test_a_locked_sqlite_database_is_a_temporary_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sealgate.db'}"
    Store(url, FileBlobStore(tmp_path / "blobs")).migrate()
    impatient = Store(url, FileBlobStore(tmp_path / "blobs"), busy_timeout=0.2)
    holder = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(TemporaryStoreError, match="database is locked"):
            seal(impatient)
        assert time.monotonic() - started < 5
        holder.execute("ROLLBACK")
        seal(impatient)  # and once the lock is gone, it works
    finally:
        holder.close()
        impatient.close()


# crypto-shredding reaches the bytes at rest


def key_material(envelope: EnvelopeRecord) -> list[bytes]:
    return [
        key
        for reader in envelope.readers
        for key in (reader.wrapped_key, reader.encrypted_private_key)
        if key is not None
    ]


def test_shredded_keys_leave_the_sqlite_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sealgate.db'}"
    store = Store(url, FileBlobStore(tmp_path / "blobs"))
    store.migrate()
    database = sqlite_path(url)

    def at_rest() -> bytes:
        files = [database, database.with_name(database.name + "-wal")]
        return b"".join(path.read_bytes() for path in files if path.exists())

    try:
        envelope = seal(store)
        assert all(key in at_rest() for key in key_material(envelope))

        store.shred(envelope.envelope_id, "revoked")  # truncates the WAL itself

        stored = at_rest()
        assert envelope.envelope_id.encode() in stored
        assert not [key for key in key_material(envelope) if key in stored]
    finally:
        store.close()


def test_shredded_keys_leave_a_postgres_dump(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    database = postgres_cluster.create_database()
    store = Store(postgres_cluster.url(database), FileBlobStore(tmp_path / "blobs"))
    try:
        store.migrate()
        envelope = seal(store)
        before = postgres_cluster.dump(database)
        assert all(key.hex().encode() in before for key in key_material(envelope))

        store.shred(envelope.envelope_id, "revoked")

        after = postgres_cluster.dump(database)
        assert envelope.envelope_id.encode() in after
        assert not [key for key in key_material(envelope) if key.hex().encode() in after]
    finally:
        store.close()
        postgres_cluster.drop_database(database)
