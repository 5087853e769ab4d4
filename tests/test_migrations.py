"""Migrations are frozen once written, and a database from any revision upgrades with its data.

Three promises, on SQLite and on PostgreSQL:

- a database created at any revision, holding the rows the application kept then, upgrades
  to head with every value intact, and the store reads it through its own API;
- after the upgrade the tables are exactly what the live schema (gateway/store/schema.py)
  declares, and the records (gateway/store/records.py) are those tables' columns;
- a migration, once written, never changes: tests/data/migration-digests.txt holds the
  SHA-256 of each one (and of the frozen types they use), in ``sha256sum`` format, and
  migrations import nothing of the live application.

The revisions are read from alembic's script directory, so a new migration is covered
as soon as it exists; it must then get a line in the digest list, and any column it adds
a realistic value in ``SAMPLE`` below.
"""

from __future__ import annotations

import ast
import hashlib
import os
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Table, insert, inspect, select, text

import gateway.store.migrations
from gateway.store import (
    AccountRecord,
    EnvelopeRecord,
    EventRecord,
    FileBlobStore,
    PartRecord,
    ReaderRecord,
    Store,
    records,
)
from gateway.store.codes import TriedCode
from gateway.store.directory import Directory, DirectoryUser, Email, UserFields
from gateway.store.holds import Hold
from gateway.store.portalstate import PortalState
from gateway.store.replies import QueuedReply
from gateway.store.schema import metadata
from gateway.store.sessions import Session
from gateway.store.threads import message_id_hash
from tests.support.schema import schema_differences

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = Path(gateway.store.migrations.__file__).resolve().parent
DIGESTS = Path(__file__).parent / "data" / "migration-digests.txt"
FROZEN = "migrations are frozen: add a new one instead"

# -- the rows a running gateway keeps --------------------------------------------------------

NOW = datetime(2025, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
ENVELOPE = "a1" * 16
REVOKED = "a2" * 16
GUEST = "b1" * 16  # a guest with a link and every second factor
HELD = "b2" * 16  # a guest the policy held for a missing phone number
SENDER = "b3" * 16  # the sender, an account reader
LINK_HASH = hashlib.sha256(b"link id of the guest").digest()
MESSAGE_ID = "<20251128120000.4XyZ12abc@example.org>"
REPLY = "c1" * 16
DIRECTORY_USER = "e1" * 16
DIRECTORY_GROUP = "e2" * 16


def _envelope(envelope_id: str, state: str, key: str) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "created_at": NOW,
        "expires_at": NOW + timedelta(days=30),
        "state": state,
        "sender": "alice@example.org",
        "queue_id": "4XyZ12abc",
        "idempotency_key": key,
        "original_size": 5000,
        "sealed_size": 8920,
        "message_id": MESSAGE_ID,
        "sender_name": "Alice Example",
    }


def _reader(reader_id: str, position: int, address: str, **values: Any) -> dict[str, Any]:
    row = {
        "reader_id": reader_id,
        "envelope_id": ENVELOPE,
        "position": position,
        "kind": "guest",
        "address": address,
        "wrapped_key": os.urandom(256),
        "encrypted_private_key": os.urandom(1232),
        "public_key": os.urandom(294),
        "link_id_hash": hashlib.sha256(reader_id.encode()).digest(),
        "methods": "email",
        "access_code_hash": None,
        "phone": None,
        "access_code_failures": 0,
    }
    return row | values


def _event(kind: str, **values: Any) -> dict[str, Any]:
    row = {
        "at": NOW,
        "kind": kind,
        "envelope_id": ENVELOPE,
        "reader_id": None,
        "address": None,
        "detail": "",
    }
    return row | values


# Every column of the live schema (autoincrement ids aside) has a value here; rows go into
# a table only when it exists at the revision under test, with the columns that exist then.
SAMPLE: dict[str, list[dict[str, Any]]] = {
    "envelopes": [
        _envelope(ENVELOPE, "delivered", "d1" * 32),
        _envelope(REVOKED, "revoked", "d2" * 32),
    ],
    "parts": [
        {
            "envelope_id": ENVELOPE,
            "part_id": 0,
            "kind": "manifest",
            "plaintext_size": 700,
            "sealed_size": 760,
        },
        {
            "envelope_id": ENVELOPE,
            "part_id": 1,
            "kind": "original",
            "plaintext_size": 5000,
            "sealed_size": 5100,
        },
        {
            "envelope_id": ENVELOPE,
            "part_id": 2,
            "kind": "attachment",
            "plaintext_size": 3000,
            "sealed_size": 3060,
        },
    ],
    "readers": [
        _reader(
            GUEST,
            0,
            "bob@example.net",
            link_id_hash=LINK_HASH,
            methods="email,sms,access-code",
            access_code_hash=hashlib.sha256(b"hmac of the access code").digest(),
            phone="+31612345678",
        ),
        _reader(HELD, 1, "carol@example.net"),
        _reader(
            SENDER,
            2,
            "alice@example.org",
            kind="account",
            encrypted_private_key=None,
            public_key=None,
            link_id_hash=None,
        ),
    ],
    "events": [
        _event("sealed", detail="parts=3 readers=3"),
        _event("notified"),
        _event("opened", reader_id=GUEST, address="bob@example.net", detail="method=email"),
        _event("account-created", envelope_id=None, address="alice@example.org"),
    ],
    "accounts": [
        {
            "address": "alice@example.org",
            "created_at": NOW - timedelta(days=90),
            "kdf": "pbkdf2-sha256",
            "kdf_iterations": 600_000,
            "kdf_salt": os.urandom(16),
            "login_verifier": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
            "public_key": os.urandom(294),
            "encrypted_private_key": os.urandom(1232),
        }
    ],
    "codes": [
        {
            "reader_id": GUEST,
            "method": "email",
            "code_hash": os.urandom(32),
            "created_at": NOW,
            "expires_at": NOW + timedelta(minutes=10),
            "failures": 1,
            "used": 0,
        },
    ],
    "throttles": [
        {
            "key": f"link:{GUEST}",
            "failures": 3,
            "window_start": NOW,
            "locked_until": NOW + timedelta(minutes=5),
        },
        {"key": "client:192.0.2.7", "failures": 1, "window_start": NOW, "locked_until": None},
    ],
    "sessions": [
        {
            "token_hash": hashlib.sha256(b"session-token").digest(),
            "kind": "session",
            "reader_id": GUEST,
            "address": None,
            "method": None,
            "created_at": NOW,
            "expires_at": NOW + timedelta(hours=1),
            "last_seen_at": None,
        },
        {
            "token_hash": hashlib.sha256(b"device-token").digest(),
            "kind": "device",
            "reader_id": None,
            "address": "bob@example.net",
            "method": "email",
            "created_at": NOW,
            "expires_at": NOW + timedelta(days=30),
            "last_seen_at": None,
        },
        {
            "token_hash": hashlib.sha256(b"account-token").digest(),
            "kind": "account",
            "reader_id": None,
            "address": "alice@example.org",
            "method": "totp",
            "created_at": NOW - timedelta(minutes=20),
            "expires_at": NOW + timedelta(hours=12),
            "last_seen_at": NOW - timedelta(minutes=2),
        },
    ],
    "account_factors": [
        {
            "address": "alice@example.org",
            "kind": "totp",
            "secret": os.urandom(49),
            "last_step": 59_000_000,
            "created_at": NOW - timedelta(days=80),
            "last_used_at": NOW - timedelta(days=1),
        }
    ],
    "replies": [
        {
            "reply_id": REPLY,
            "envelope_id": ENVELOPE,
            "reader_id": GUEST,
            "created_at": NOW,
            "state": "queued",
            "attempts": 0,
            "next_attempt_at": NOW,
            "blob": os.urandom(2048),
        },
    ],
    "threads": [
        {
            "message_id_hash": message_id_hash(MESSAGE_ID),
            "envelope_id": ENVELOPE,
            "created_at": NOW,
        },
    ],
    "holds": [
        {
            "envelope_id": ENVELOPE,
            "reader_id": HELD,
            "address": "carol@example.net",
            "missing": "phone",
            "reason": "",
            "sealed_link": os.urandom(300),
            "state": "held",
            "created_at": NOW,
        },
    ],
    "pending_links": [
        {"envelope_id": ENVELOPE, "reader_id": GUEST, "sealed_link": os.urandom(384)},
    ],
    "directory_users": [
        {
            "user_id": DIRECTORY_USER,
            "user_name": "alice@example.org",
            "external_id": "8f0b7c1e-5d3a-4e2b-9c61-2a4d5e6f7a80",
            "display_name": "Alice Example",
            "name": '{"givenName": "Alice", "familyName": "Example"}',
            "active": True,
            "created_at": NOW - timedelta(days=200),
            "modified_at": NOW - timedelta(days=3),
            "version": 4,
            "phone": "+31612345678",
            "sync_source": "directory",
        },
    ],
    "directory_sync": [
        {
            "source": "directory",
            "cursor": "v1 3f9a0c1e5b7d2468ace13579bdf02468 48213",
            "synced_at": NOW - timedelta(hours=1),
        },
    ],
    "directory_emails": [
        {
            "user_id": DIRECTORY_USER,
            "position": 0,
            "value": "Alice@example.org",
            "type": "work",
            "is_primary": True,
        },
    ],
    "directory_groups": [
        {
            "group_id": DIRECTORY_GROUP,
            "display_name": "Finance",
            "external_id": "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
            "created_at": NOW - timedelta(days=300),
            "modified_at": NOW - timedelta(days=3),
            "version": 12,
            "sync_source": "directory",
        },
    ],
    "directory_members": [{"group_id": DIRECTORY_GROUP, "user_id": DIRECTORY_USER}],
}

# -- alembic, driven as Store.migrate() drives it, but to any revision -----------------------


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def upgrade_to(store: Store, revision: str) -> None:
    """The database at ``revision``, through the store's own transaction (as migrate() does)."""
    config = alembic_config()
    with store.transaction(f"migrating to {revision}", write=True) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


@pytest.fixture
def fresh(store_url: str, tmp_path: Path) -> Iterator[Store]:
    """A Store on an empty database (not migrated) on each backend."""
    opened = Store(store_url, FileBlobStore(tmp_path / "blobs"))
    yield opened
    opened.close()


def existing_columns(store: Store) -> dict[str, set[str]]:
    """The tables in the database and their columns (alembic's own table aside)."""
    inspector = inspect(store.engine)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


def insert_samples(store: Store, present: dict[str, set[str]]) -> None:
    """SAMPLE's rows, into the tables and columns that exist at this revision.

    They are written through the live column types, which store values as every revision
    so far did; a revision that changes how a value is stored must write the old form here.
    """
    with store.transaction("inserting sample rows", write=True) as conn:
        for table in metadata.sorted_tables:
            if table.name in present and SAMPLE.get(table.name):
                rows = [
                    {name: value for name, value in row.items() if name in present[table.name]}
                    for row in SAMPLE[table.name]
                ]
                conn.execute(insert(table), rows)


def value_after_upgrade(column: Column[Any]) -> Any:
    """What a row that existed before ``column`` holds in it: its server default, or NULL."""
    default = column.server_default
    if default is None:
        return None
    return column.type.python_type(getattr(default, "arg", default))


def expected_rows(table: Table, present: set[str]) -> list[dict[str, Any]]:
    """SAMPLE's rows of ``table`` after the upgrade: the values written at the old revision,
    and the defaults in the columns added since (or that SAMPLE has no value for)."""
    return [
        {
            column.name: row[column.name]
            if column.name in present and column.name in row
            else value_after_upgrade(column)
            for column in _compared(table)
        }
        for row in SAMPLE.get(table.name, [])
    ]


def _compared(table: Table) -> list[Column[Any]]:
    """The table's columns but an autoincrement id (which the database chooses)."""
    return [column for column in table.columns if column is not table.autoincrement_column]


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=repr)


# -- (a) every revision's data survives the upgrade to head ----------------------------------


@pytest.mark.parametrize("revision", revisions())
def test_data_from_each_revision_survives_the_upgrade(fresh: Store, revision: str) -> None:
    upgrade_to(fresh, revision)
    present = existing_columns(fresh)
    insert_samples(fresh, present)

    fresh.migrate()  # what the next start of Sealgate does

    with fresh.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == revisions()[-1]
        for table in metadata.sorted_tables:
            if table.name not in present:
                continue
            query = select(*_compared(table))
            stored = [dict(row) for row in conn.execute(query).mappings()]
            assert _sorted(stored) == _sorted(expected_rows(table, present[table.name])), (
                f"rows of {table.name} written at revision {revision} changed on the upgrade"
            )
    assert_the_store_reads(fresh, present)


def assert_the_store_reads(store: Store, present: dict[str, set[str]]) -> None:
    """The application's own reads find what was written, and it can still end an envelope."""
    tables = {table.name: table for table in metadata.sorted_tables}

    def rows(name: str) -> list[dict[str, Any]]:
        return expected_rows(tables[name], present[name])

    envelope = expected_envelope(rows("envelopes")[0], rows("parts"), rows("readers"))
    assert store.get(ENVELOPE) == envelope
    assert store.reader_by_link(LINK_HASH) == (
        expected_envelope(rows("envelopes")[0], rows("parts"), rows("readers")[:1]),
        envelope.readers[0],
    )
    assert store.find_live("d1" * 32) == envelope
    assert store.find_live("d2" * 32) is None  # revoked
    assert [record.envelope_id for record in store.list()] == [REVOKED, ENVELOPE]
    assert [event.kind for event in store.events(ENVELOPE)] == ["sealed", "notified", "opened"]
    assert store.get_account("Alice@example.org") == AccountRecord(**rows("accounts")[0])

    if "codes" in present:  # the portal's state, since 0002
        assert_the_portal_state_reads(PortalState(store))
    if "directory_users" in present:  # the directory, since 0007
        assert_the_directory_reads(store, present["directory_users"])

    assert store.shred(ENVELOPE, "revoked", detail="by the sender")
    shredded = store.get(ENVELOPE)
    assert shredded is not None and shredded.state == "revoked"
    assert all(reader.wrapped_key is None for reader in shredded.readers)


def assert_the_portal_state_reads(state: PortalState) -> None:
    (code,) = SAMPLE["codes"]
    tried = state.codes.reserve_tries(GUEST, "email", NOW, 5)
    assert tried == [TriedCode(1, code["code_hash"], 3)]  # one try taken before, one now
    sent_again = state.codes.issue_code(GUEST, "email", b"\x00" * 32, NOW, timedelta(minutes=10),
                                        per_hour=1)  # fmt: skip
    assert sent_again == NOW + timedelta(hours=1)  # the code sent at NOW fills the hour
    assert state.throttles.locked_until(f"link:{GUEST}", NOW) == NOW + timedelta(minutes=5)
    assert state.throttles.locked_until("client:192.0.2.7", NOW) is None
    assert state.sessions.session("session-token", NOW) == Session("session", GUEST, None, None)
    assert state.sessions.session("device-token", NOW) == Session(
        "device", None, "bob@example.net", "email"
    )
    (reply,) = SAMPLE["replies"]
    assert state.replies.claim_reply(NOW, timedelta(minutes=5)) == QueuedReply(
        REPLY, ENVELOPE, GUEST, 0, reply["blob"]
    )
    assert state.threads.in_protected_thread([MESSAGE_ID])
    (hold,) = SAMPLE["holds"]
    assert state.holds.held(ENVELOPE) == [
        Hold(ENVELOPE, HELD, "carol@example.net", ("phone",), "", hold["sealed_link"])
    ]


def assert_the_directory_reads(store: Store, user_columns: set[str]) -> None:
    (user,) = SAMPLE["directory_users"]
    (email,) = SAMPLE["directory_emails"]
    (group,) = SAMPLE["directory_groups"]
    directory = Directory(store)
    assert store.directory_active("Alice@Example.org") is True
    assert directory.user(DIRECTORY_USER) == DirectoryUser(
        DIRECTORY_USER,
        UserFields(user["user_name"], user["external_id"], user["display_name"], user["name"],
                   True, (Email(email["value"], "work", True),)),  # fmt: skip
        user["created_at"],
        user["modified_at"],
        4,
        ((DIRECTORY_GROUP, "Finance"),),
        user["phone"] if "phone" in user_columns else None,  # since 0008
    )
    found = directory.find_groups(None, [], 0, 10)
    assert found.total == 1 and found.items[0].fields.members == (DIRECTORY_USER,)
    assert found.items[0].version == group["version"]


def test_a_rule_s_words_move_out_of_holds_missing(fresh: Store) -> None:
    """0005: holds.missing held either factors or a rule's words; the words move to reason."""
    upgrade_to(fresh, "0004")
    insert_samples(fresh, existing_columns(fresh))
    words = "Held by the finance rule: a manager must approve"
    with fresh.transaction("holding by a rule", write=True) as conn:
        conn.execute(
            insert(metadata.tables["holds"]),
            {"envelope_id": ENVELOPE, "reader_id": GUEST, "address": "bob@example.net",
             "missing": words, "sealed_link": b"x" * 300, "state": "held", "created_at": NOW},
        )  # fmt: skip
    fresh.migrate()
    held = {hold.reader_id: hold for hold in PortalState(fresh).holds.held(ENVELOPE)}
    assert (held[GUEST].missing, held[GUEST].reason) == ((), words)
    assert (held[HELD].missing, held[HELD].reason) == (("phone",), "")


def expected_envelope(
    envelope: dict[str, Any], parts: list[dict[str, Any]], readers: list[dict[str, Any]]
) -> EnvelopeRecord:
    """The record the store should build from these rows: fields are columns of the same name."""
    return EnvelopeRecord(
        **_fields(EnvelopeRecord, envelope),
        parts=tuple(PartRecord(**_fields(PartRecord, part)) for part in parts),
        readers=tuple(
            ReaderRecord(**_fields(ReaderRecord, reader))
            for reader in sorted(readers, key=lambda reader: reader["position"])
        ),
    )


def _fields(record: type, row: dict[str, Any]) -> dict[str, Any]:
    assert is_dataclass(record)
    return {field.name: row[field.name] for field in fields(record) if field.name in row}


def test_every_column_has_a_sample_value() -> None:
    """A new column needs a realistic value in SAMPLE, so that later upgrades carry it."""
    for table in metadata.sorted_tables:
        wanted = {column.name for column in _compared(table)}
        assert SAMPLE.get(table.name), f"add sample rows for table {table.name} to SAMPLE"
        for row in SAMPLE[table.name]:
            assert set(row) == wanted, (
                f"SAMPLE[{table.name!r}] in tests/test_migrations.py: add a realistic value "
                f"for {sorted(wanted - set(row))}, drop {sorted(set(row) - wanted)}"
            )


# -- (b) head is the live schema, and the records are its columns ----------------------------


def test_head_is_the_live_schema(fresh: Store) -> None:
    fresh.migrate()

    migrated = existing_columns(fresh)
    assert set(migrated) == set(metadata.tables), "the migrations and schema.py name other tables"
    for table in metadata.sorted_tables:
        declared = {column.name for column in table.columns}
        assert migrated[table.name] == declared, (
            f"table {table.name}: schema.py declares {sorted(declared - migrated[table.name])} "
            f"that no migration creates, the migrations create "
            f"{sorted(migrated[table.name] - declared)} that schema.py lacks"
        )
    with fresh.engine.connect() as conn:  # types, nullability, keys and indexes too
        assert schema_differences(conn) == []
    assert "ix_readers_address" in index_names(fresh, "readers")
    assert "ix_envelopes_sender" in index_names(fresh, "envelopes")


def index_names(store: Store, table: str) -> set[str]:
    """Every index of ``table``, expression indexes included (which SQLAlchemy skips)."""
    if store.engine.dialect.name == "sqlite":
        query = text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t")
    else:
        query = text("SELECT indexname FROM pg_indexes WHERE tablename = :t")
    with store.engine.connect() as conn:
        return {row[0] for row in conn.execute(query, {"t": table})}


# Each record is one table's row: its fields are columns of the same name (the store builds
# records with `Record(**row)`). Besides, a table may only have the columns that place the
# row (the envelope it belongs to, its order, an autoincrement id); a record may only have
# the fields that hold other records.
RECORD_TABLES: dict[type, tuple[str, set[str], set[str]]] = {
    EnvelopeRecord: ("envelopes", set(), {"parts", "readers"}),
    PartRecord: ("parts", {"envelope_id"}, set()),
    ReaderRecord: ("readers", {"envelope_id", "position"}, set()),
    EventRecord: ("events", {"event_id"}, set()),
    AccountRecord: ("accounts", set(), set()),
}


def test_record_fields_are_the_table_columns() -> None:
    defined = {
        value
        for value in vars(records).values()
        if isinstance(value, type) and is_dataclass(value) and value.__module__ == records.__name__
    }
    assert defined == set(RECORD_TABLES), (
        "map every record of gateway/store/records.py to its table"
    )
    for record, (name, placing, nested) in RECORD_TABLES.items():
        columns = {column.name for column in metadata.tables[name].columns}
        names = {field.name for field in fields(record)}
        assert names - nested == columns - placing, (
            f"{record.__name__} and table {name}: fields without a column "
            f"{sorted(names - nested - columns)}, columns without a field "
            f"{sorted(columns - placing - names)}"
        )


# -- (c) written migrations never change -----------------------------------------------------


def frozen_files() -> list[Path]:
    """The files that must never change once released: every revision and the types they use."""
    versions = [
        path for path in (MIGRATIONS / "versions").glob("*.py") if path.name != "__init__.py"
    ]
    return sorted(versions) + [MIGRATIONS / "types.py"]


def listed_digests() -> dict[str, str]:
    """tests/data/migration-digests.txt: path (from the repository root) -> SHA-256."""
    listed: dict[str, str] = {}
    for line in DIGESTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split(maxsplit=1)
            listed[path.lstrip("*")] = digest
    return listed


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_released_migrations_never_change() -> None:
    listed = listed_digests()
    for path, digest in listed.items():
        assert (ROOT / path).is_file(), f"{path} is gone: {FROZEN}"
        assert sha256(ROOT / path) == digest, f"{path} was edited: {FROZEN}"


def test_every_migration_is_in_the_digest_list() -> None:
    listed = listed_digests()
    for path in frozen_files():
        relative = path.relative_to(ROOT).as_posix()
        assert relative in listed, (
            f"new migration {relative}: once it is final, add this line to "
            f"{DIGESTS.relative_to(ROOT)}:\n{sha256(path)}  {relative}"
        )


# 0001 and 0002 were written importing UTCDateTime from gateway.store.schema; they stay as
# they are, and the schema's UTCDateTime is the frozen class itself.
WRITTEN_BEFORE_THE_RULE = {"0001_initial.py", "0002_portal.py"}


def test_the_schema_s_timestamp_type_is_the_frozen_one() -> None:
    from gateway.store import schema
    from gateway.store.migrations import types

    assert schema.UTCDateTime is types.UTCDateTime
    for name in WRITTEN_BEFORE_THE_RULE:
        text = (MIGRATIONS / "versions" / name).read_text()
        assert "from gateway.store.schema import UTCDateTime\n" in text


def test_migrations_do_not_import_the_live_application() -> None:
    """The live schema's types may change; a migration must create what it always created."""
    allowed = {"gateway.store.migrations.types"}
    for path in frozen_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        live = {name for name in imported if name.split(".")[0] == "gateway"} - allowed
        if path.name in WRITTEN_BEFORE_THE_RULE:
            live -= {"gateway.store.schema"}  # checked below: only the frozen type
        assert not live, (
            f"{path.relative_to(ROOT)} imports {sorted(live)}: copy what it needs into "
            "gateway/store/migrations/types.py (frozen) instead"
        )
