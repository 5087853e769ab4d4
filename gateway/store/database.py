"""The metadata database of sealed envelopes: one :class:`Store` over SQLAlchemy Core.

Why it is built this way:

- Every method is one short transaction on a connection of its own from one
  Engine, so a Store is thread-safe and the caller may run its methods in
  worker threads (``asyncio.to_thread``).
- SQLite is the embedded default. Every connection runs with WAL,
  ``synchronous=FULL`` (a commit is on disk when it returns: we answer 250
  after it), a busy timeout, foreign keys and ``secure_delete`` (shredded keys
  are overwritten in the file, not left in free pages). Write transactions
  start with ``BEGIN IMMEDIATE``: a writer waits for the write lock up front
  (within the busy timeout) instead of failing when it upgrades a read lock.
  The write transactions of one process share a commit (gateway.store.groupcommit):
  one fsync for the work of every concurrent writer.
- PostgreSQL is the scale-out choice. The busy timeout becomes
  ``lock_timeout`` and bounds the connect timeout.
- Failures the sending MTA should retry (locked, unreachable, timed out) raise
  :class:`TemporaryStoreError` (SMTP 451); other database failures raise
  :class:`StoreError`. Messages show the URL with its password hidden, and SQL
  parameters (wrapped keys among them) are never rendered into errors.
- Blobs are written by the caller before :meth:`Store.commit_envelope`, and
  deleted only after the commit that ended an envelope. A crash in between
  leaves blobs without a live row; :meth:`Store.sweep_orphans` removes them.
"""

from __future__ import annotations

import builtins
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import (
    ColumnElement,
    Engine,
    RowMapping,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url

from gateway.logsetup import event as log_event
from gateway.store.blobs import BlobStore, check_envelope_id
from gateway.store.errors import AccountExists, StoreError, TemporaryStoreError
from gateway.store.groupcommit import GroupCommit
from gateway.store.records import (
    ENDED_STATES,
    LIVE_STATES,
    STATES,
    AccountRecord,
    EnvelopeRecord,
    EventRecord,
    PartRecord,
    ReaderRecord,
)
from gateway.store.schema import (
    LIVE_CONDITION,
    accounts,
    directory_users,
    envelopes,
    events,
    parts,
    pending_links,
    readers,
)
from gateway.store.threads import record_thread

log = logging.getLogger("sealgate.store")

_MIGRATIONS = Path(__file__).with_name("migrations")
# One constant for every Sealgate process: holders of this advisory lock migrate one at a time.
_PG_MIGRATION_LOCK = 0x5EA16A7E
# A connection execution option read by the SQLite "begin" hook.
_IMMEDIATE = "sealgate_begin_immediate"
_SQLITE_POOL = 32
# Alembic keeps the running migration in module globals (alembic.context, alembic.op): two
# migrations in one process must not overlap, even on different databases.
_ALEMBIC = threading.Lock()
_EVENT_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")
_BATCH = 500


def _names(record: type, *exclude: str) -> tuple[str, ...]:
    """The dataclass fields of ``record`` that are columns of the same name."""
    return tuple(f.name for f in fields(record) if f.name not in exclude)


_ENVELOPE_COLUMNS = _names(EnvelopeRecord, "parts", "readers")
_PART_COLUMNS = _names(PartRecord)
_READER_COLUMNS = _names(ReaderRecord)
_EVENT_COLUMNS = _names(EventRecord)
_ACCOUNT_COLUMNS = _names(AccountRecord)

# The statements of a protected message's way, built once: SQLAlchemy's construction of a
# statement (coercions, operators, its cache key) cost about as much again as running it.
_INSERT_ENVELOPE = insert(envelopes)
_INSERT_PARTS = insert(parts)
_INSERT_READERS = insert(readers)
_INSERT_PENDING = insert(pending_links)
_INSERT_EVENTS = insert(events)
# The live states written out as the partial unique index on live keys has them
# (LIVE_CONDITION): a database uses a partial index only when the query repeats its
# condition, and with the states as bound parameters SQLite scanned the whole table.
_SELECT_LIVE = select(envelopes).where(
    envelopes.c.idempotency_key == bindparam("idempotency_key"), LIVE_CONDITION
)
_SELECT_ACCOUNTS = select(accounts).where(
    accounts.c.address.in_(bindparam("addresses", expanding=True))
)
_DELIVER = (
    update(envelopes)
    .where(envelopes.c.envelope_id == bindparam("id"), envelopes.c.state == "sealed")
    .values(state="delivered")
)
_FORGET_LINKS = delete(pending_links).where(pending_links.c.envelope_id == bindparam("id"))


class Store:
    """Envelopes, their parts and readers, the audit trail and accounts.

    Crypto-shredding and what it reaches: :meth:`shred` sets the wrapped keys
    and encrypted private keys to NULL in one commit, then deletes the blobs.
    On SQLite ``secure_delete`` overwrites the old values in the database file,
    and a truncating checkpoint after each shred empties the WAL (best effort:
    a concurrent reader can make it wait for the next one). On PostgreSQL the old
    row versions stay in the table files until (auto)VACUUM reclaims them, and
    in WAL segments and backups until those are recycled; VACUUM cannot run
    inside the shredding transaction. Operators who need a prompt guarantee run
    ``VACUUM readers`` after revocations and keep WAL archives and backups
    short-lived.
    """

    def __init__(self, url: str, blobs: BlobStore, *, busy_timeout: float = 10.0) -> None:
        self.blobs = blobs
        self._url = _parse_url(url)
        self._safe_url = self._url.render_as_string(hide_password=True)
        self._sqlite = self._url.get_backend_name() == "sqlite"
        self._engine = _create_engine(self._url, busy_timeout)
        self._writer: GroupCommit | None = None
        if self._sqlite:
            lock_file = Path(f"{self._url.database}.lock")
            self._writer = GroupCommit(self._engine, lock_file, _IMMEDIATE)

    def __repr__(self) -> str:
        return f"Store({self._safe_url!r})"

    @property
    def engine(self) -> Engine:
        """The Engine, for maintenance and tests; the Store's methods are the interface."""
        return self._engine

    def close(self) -> None:
        """Close every pooled connection, and the writer's."""
        if self._writer is not None:
            self._writer.close()
        self._engine.dispose()

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe at every start and in parallel.

        The whole upgrade runs in one transaction that first takes the migration
        lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so a
        second process waits, then finds the schema current and does nothing. The
        wait is bounded by the busy timeout (TemporaryStoreError after it).
        """
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        config.set_main_option("path_separator", "os")
        with _ALEMBIC, self._transaction("migrating the schema", write=True) as conn:
            if not self._sqlite:
                conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, "head")
            except CommandError as error:  # e.g. a schema written by a newer Sealgate
                raise StoreError(f"cannot migrate {self._safe_url}: {error}") from error

    # envelopes

    def commit_envelope(
        self,
        envelope: EnvelopeRecord,
        *,
        supersede: str | None = None,
        decisions: Mapping[str, str] | None = None,
        events: Sequence[tuple[str, str]] = (),
        pending: Mapping[str, bytes] | None = None,
        remember_thread: bool = False,
    ) -> None:
        """Record a sealed envelope, its parts and readers, in one transaction.

        The blobs must already be durable. With ``supersede``, that envelope is
        shredded in the same transaction (its blobs are deleted after the commit),
        so a retried message never has two live envelopes, nor none.
        ``decisions`` (address -> the policy's decision record, rule names and
        counts only) are kept with the envelope as "decided" events; ``events``
        ((kind, detail): what became of the sender's expiry) follow them. ``pending``
        (reader id -> link sealed to the reply key) are the links owed until the
        message is settled (gateway.store.pending): kept in the same commit, so
        no crash leaves an envelope whose links exist nowhere. ``remember_thread``
        records the envelope's Message-ID as a protected conversation
        (gateway.store.threads) in the same commit.
        """
        _check_new(envelope)
        envelope_id = envelope.envelope_id
        with self._transaction(f"committing envelope {envelope_id}", write=True) as conn:
            # Only an unfinished attempt: one whose links went out ("delivered")
            # stays, and the unique index on live keys then refuses this commit.
            superseded = supersede is not None and _end(
                conn,
                supersede,
                "superseded",
                f"superseded by {envelope_id}",
                from_states=("sealed",),
            )
            # Parameters apart from the statement: its compiled form is cached.
            conn.execute(_INSERT_ENVELOPE, _values(envelope, _ENVELOPE_COLUMNS))
            if envelope.parts:
                conn.execute(
                    _INSERT_PARTS,
                    [
                        {"envelope_id": envelope_id, **_values(part, _PART_COLUMNS)}
                        for part in envelope.parts
                    ],
                )
            if envelope.readers:
                conn.execute(
                    _INSERT_READERS,
                    [
                        {
                            "envelope_id": envelope_id,
                            "position": position,
                            **_values(reader, _READER_COLUMNS),
                        }
                        for position, reader in enumerate(envelope.readers)
                    ],
                )
            if pending:
                conn.execute(
                    _INSERT_PENDING,
                    [
                        {"envelope_id": envelope_id, "reader_id": reader_id, "sealed_link": link}
                        for reader_id, link in pending.items()
                    ],
                )
            detail = f"parts={len(envelope.parts)} readers={len(envelope.readers)}"
            append_events(
                conn,
                [
                    event_row("sealed", envelope_id, detail=detail),
                    *(
                        event_row("decided", envelope_id, address=address, detail=record)
                        for address, record in (decisions or {}).items()
                    ),
                    *(event_row(kind, envelope_id, detail=detail) for kind, detail in events),
                ],
            )
            if remember_thread and envelope.message_id:
                record_thread(conn, [envelope.message_id], envelope_id, envelope.created_at)
        if superseded and supersede is not None:
            self._delete_blobs(supersede)

    def mark_delivered(
        self, envelope_id: str, *, last_notified: tuple[str, str] | None = None
    ) -> None:
        """sealed -> delivered once the notifications are out; repeating it changes nothing.

        ``last_notified`` (reader id, address): the reader whose notification was the
        last thing the message owed, recorded in this transaction rather than one of
        its own (what ``PendingLinks.notified`` records: the event; its kept link goes
        with the others).
        """
        with self._transaction(f"marking {envelope_id} delivered", write=True) as conn:
            trail = []
            if last_notified is not None:
                reader_id, address = last_notified
                trail.append(event_row("reader-notified", envelope_id, reader_id, address))
            changed = conn.execute(_DELIVER, {"id": envelope_id})
            if changed.rowcount == 1:
                # Settled: the links kept for a retry go (gateway.store.pending).
                conn.execute(_FORGET_LINKS, {"id": envelope_id})
                append_events(conn, [*trail, event_row("notified", envelope_id)])
                return
            if trail:  # ended meanwhile (revoked): its links went with it
                append_events(conn, trail)
            state = conn.scalar(
                select(envelopes.c.state).where(envelopes.c.envelope_id == envelope_id)
            )
        if state is None:
            raise StoreError(f"envelope {envelope_id} is unknown")
        if state != "delivered":
            raise StoreError(f"envelope {envelope_id} is {state}, it cannot be delivered")

    def find_live(self, idempotency_key: str) -> EnvelopeRecord | None:
        """The live envelope sealed for this idempotency key, if there is one."""
        with self._transaction("looking up an idempotency key", write=False) as conn:
            return _live(conn, idempotency_key)

    def find_live_and_accounts(
        self, idempotency_key: str, addresses: Iterable[str]
    ) -> tuple[EnvelopeRecord | None, dict[str, AccountRecord]]:
        """:meth:`find_live` and :meth:`get_accounts` in one read transaction: what
        sealing a message looks up first."""
        with self._transaction("looking up an idempotency key", write=False) as conn:
            return _live(conn, idempotency_key), _accounts(conn, addresses)

    def get(self, envelope_id: str) -> EnvelopeRecord | None:
        """The envelope with its parts and readers, in any state."""
        query = select(envelopes).where(envelopes.c.envelope_id == envelope_id)
        with self._transaction(f"reading envelope {envelope_id}", write=False) as conn:
            row = conn.execute(query).mappings().first()
            return None if row is None else _load(conn, row)

    def list(self, *, limit: int = 100, state: str | None = None) -> builtins.list[EnvelopeRecord]:
        """The newest envelopes first, without parts and readers."""
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        query = (
            select(envelopes)
            .order_by(envelopes.c.created_at.desc(), envelopes.c.envelope_id.desc())
            .limit(limit)
        )
        if state is not None:
            query = query.where(envelopes.c.state == state)
        with self._transaction("listing envelopes", write=False) as conn:
            return [_envelope(row) for row in conn.execute(query).mappings()]

    def reader_by_link(self, link_id_hash: bytes) -> tuple[EnvelopeRecord, ReaderRecord] | None:
        """The envelope (in any state, with its parts and only this reader) and the guest
        reader a notification link belongs to: the portal asks on every request, and a
        mailing to a thousand readers should not load a thousand records each time."""
        query = select(envelopes).join(readers).where(readers.c.link_id_hash == link_id_hash)
        with self._transaction("looking up a link", write=False) as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            record = _load(conn, row, readers.c.link_id_hash == link_id_hash)
        return record, record.readers[0]

    def shred(self, envelope_id: str, state: str, *, detail: str = "") -> bool:
        """Crypto-shred a live envelope: keys to NULL and the new state in one commit,
        then its blobs deleted. False if the envelope is unknown or already ended.

        A failure to delete the blobs is logged, not raised: the keys are gone, and
        :meth:`sweep_orphans` retries the blobs later.
        """
        ended = self._shred(envelope_id, state, detail)
        if ended:
            self._truncate_wal()
        return ended

    def _shred(self, envelope_id: str, state: str, detail: str) -> bool:
        if state not in ENDED_STATES:
            raise ValueError(f"cannot shred into state {state!r}; expected one of {ENDED_STATES}")
        with self._transaction(f"shredding envelope {envelope_id}", write=True) as conn:
            ended = _end(conn, envelope_id, state, detail)
        if ended:
            self._delete_blobs(envelope_id)
        return ended

    def _truncate_wal(self) -> None:
        """SQLite: move the WAL into the database file and empty it, best effort.

        ``secure_delete`` overwrites shredded keys in the database file, but the
        WAL still holds the page images written before the shred until a
        checkpoint truncates it. With a reader in the middle of a transaction
        the checkpoint cannot finish; the next shred tries again.
        """
        if not self._sqlite:
            return
        try:
            with self._engine.connect() as conn:
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
        except sa_exc.DBAPIError as error:
            busy, detail = 1, self._reason(error)
        else:
            detail = "a reader holds the WAL"
        if busy:
            log_event(log, logging.INFO, "WAL not truncated after shredding", reason=detail)

    def expire(self, now: datetime) -> builtins.list[str]:
        """Shred every live envelope whose time is up (``expires_at <= now``); their ids."""
        _check_aware(now, "now")
        query = (
            select(envelopes.c.envelope_id, envelopes.c.expires_at)
            .where(envelopes.c.state.in_(LIVE_STATES), envelopes.c.expires_at <= now)
            .order_by(envelopes.c.expires_at)
        )
        with self._transaction("finding expired envelopes", write=False) as conn:
            due = conn.execute(query).all()
        expired = [
            envelope_id
            for envelope_id, expires_at in due
            if self._shred(envelope_id, "expired", f"expires_at={expires_at.isoformat()}")
        ]
        if expired:
            self._truncate_wal()  # once for the whole sweep
        return expired

    def sweep_orphans(self, older_than: float) -> int:
        """Delete blobs that no live envelope owns and that nobody touched for
        ``older_than`` seconds; the number of envelopes swept.

        Such blobs are left by a crash between the blob writes and the commit, or
        by a failed delete after shredding. The age limit keeps a sealing that is
        still in progress (in this or another process) safe: pick it well above
        the time one sealing can take.
        """
        cutoff = time.time() - older_than
        candidates = [eid for eid, mtime in self.blobs.envelopes() if mtime < cutoff]
        live: set[str] = set()
        with self._transaction("looking for orphaned blobs", write=False) as conn:
            for start in range(0, len(candidates), _BATCH):
                batch = candidates[start : start + _BATCH]
                live.update(
                    conn.scalars(
                        select(envelopes.c.envelope_id).where(
                            envelopes.c.envelope_id.in_(batch), envelopes.c.state.in_(LIVE_STATES)
                        )
                    )
                )
        swept = sum(self._delete_blobs(eid) for eid in candidates if eid not in live)
        if swept:
            log_event(log, logging.INFO, "orphaned blobs swept", envelopes=swept)
        return swept

    # the audit trail

    def record_event(
        self,
        kind: str,
        *,
        envelope_id: str | None = None,
        reader_id: str | None = None,
        address: str | None = None,
        detail: str = "",
    ) -> None:
        """Append one event; ``detail`` carries ids, counts and reasons, never content."""
        with self._transaction(f"recording a {kind} event", write=True) as conn:
            append_event(
                conn,
                kind,
                envelope_id=envelope_id,
                reader_id=reader_id,
                address=address,
                detail=detail,
            )

    def events(self, envelope_id: str) -> builtins.list[EventRecord]:
        """The envelope's events, oldest first."""
        query = (
            select(*(events.c[name] for name in _EVENT_COLUMNS))
            .where(events.c.envelope_id == envelope_id)
            .order_by(events.c.event_id)
        )
        with self._transaction(f"reading the events of {envelope_id}", write=False) as conn:
            return [EventRecord(**row) for row in conn.execute(query).mappings()]

    # accounts

    def add_account(self, account: AccountRecord) -> None:
        """Create an account (address lower-cased) and its "account-created" event."""
        with self._transaction(f"adding account {account.address.lower()}", write=True) as conn:
            insert_account(conn, account)

    def get_account(self, address: str) -> AccountRecord | None:
        """The account of this address, compared case-insensitively."""
        return self.get_accounts([address]).get(address.lower())

    def get_accounts(self, addresses: Iterable[str]) -> dict[str, AccountRecord]:
        """The accounts of these addresses (compared lower-cased), by lower-cased address."""
        with self._transaction("reading accounts", write=False) as conn:
            return _accounts(conn, addresses)

    # the directory (gateway.store.directory)

    def directory_active(self, address: str) -> bool | None:
        """Whether the directory lets the person of ``address`` sign in: True (a user not
        deactivated), False (deactivated), None (not in the directory: not the
        organisation's to decide). Sign-in refuses False the same way as a wrong password."""
        query = select(directory_users.c.active).where(
            directory_users.c.user_name == address.lower()
        )
        with self._transaction("looking up the directory", write=False) as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return row.active is None or bool(row.active)

    # internals

    def transaction(self, action: str, *, write: bool) -> AbstractContextManager[Connection]:
        """One transaction, errors translated: for the store's companion modules
        (gateway.store.portalstate). ``action`` names ids, never values."""
        return self._transaction(action, write=write)

    @contextmanager
    def _transaction(self, action: str, *, write: bool) -> Iterator[Connection]:
        """One transaction on a connection of its own, database errors translated.

        ``action`` completes "while ..." in error messages; it names ids, never values.
        """
        try:
            if write and self._writer is not None:
                with self._writer.write() as conn:
                    yield conn
                return
            with self._engine.connect() as conn:
                if not write and not self._sqlite:
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as error:
            raise TemporaryStoreError(
                f"database {self._safe_url} unavailable while {action}: {self._reason(error)}"
            ) from error
        except sa_exc.DBAPIError as error:
            raise StoreError(
                f"database {self._safe_url} refused {action}: {self._reason(error)}"
            ) from error

    def _reason(self, error: sa_exc.SQLAlchemyError) -> str:
        """The first line of the driver's message (later lines may quote values)."""
        orig = getattr(error, "orig", None)
        text = str(orig if orig is not None else error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        password = self._url.password
        return reason.replace(str(password), "***") if password else reason

    def _delete_blobs(self, envelope_id: str) -> bool:
        try:
            self.blobs.delete_envelope(envelope_id)
        except (OSError, StoreError) as error:
            log_event(
                log,
                logging.WARNING,
                "blob delete failed; the sweeper retries",
                envelope=envelope_id,
                error=str(error),
            )
            return False
        return True


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise StoreError("the database URL cannot be parsed") from None
    if parsed.drivername == "postgresql":
        # The driver this project installs, whatever SQLAlchemy's default is.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _create_engine(url: URL, busy_timeout: float) -> Engine:
    backend = url.get_backend_name()
    safe = url.render_as_string(hide_password=True)
    try:
        if backend == "sqlite":
            return _sqlite_engine(url, busy_timeout)
        if backend == "postgresql":
            return _postgresql_engine(url, busy_timeout)
    except ImportError as error:
        raise StoreError(f"no driver for database {safe}: {error}") from None
    raise StoreError(f"unsupported database {safe}: use sqlite:/// or postgresql+psycopg://")


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    database = url.database
    if not database or database == ":memory:" or url.query.get("mode") == "memory":
        raise StoreError("SQLite needs a database file, not an in-memory database")
    Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Enough pooled connections for every thread that reads (the event loop's worker
    # threads, the policy pool's, the portal's): a connection opened beyond the pool is
    # closed when returned, and opening one (WAL, pragmas) cost 14 % of the protected
    # path's thread time with SQLAlchemy's default of 5.
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout},
        hide_parameters=True,
        pool_size=_SQLITE_POOL,
        max_overflow=_SQLITE_POOL,
    )
    # temp_store=MEMORY: each writer of a group commit works in a SAVEPOINT, whose journal of
    # the pages it changes spilled into a temporary file past 64 KiB (about 50 pwrite calls a
    # protected message); it only serves a rollback to the savepoint, never durability.
    pragmas = ("synchronous=FULL", "foreign_keys=ON", "secure_delete=ON", "temp_store=MEMORY")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Turn off the sqlite3 module's own transaction handling: on_begin emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            _enable_wal(cursor, busy_timeout)
            for pragma in pragmas:
                cursor.execute(f"PRAGMA {pragma}")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def _enable_wal(cursor: Any, busy_timeout: float) -> None:
    """``PRAGMA journal_mode=WAL``, waiting for other connections like the busy timeout.

    While another connection holds a lock (two processes opening a new database),
    SQLite answers this pragma "database is locked" at once, without calling the
    busy handler; so the waiting happens here.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
            continue
        if mode != "wal":
            raise StoreError(f"SQLite cannot use write-ahead logging here (journal mode {mode})")
        return


def _postgresql_engine(url: URL, busy_timeout: float) -> Engine:
    connect_args: dict[str, Any] = {"connect_timeout": max(2, math.ceil(busy_timeout))}
    if "options" not in url.query:
        connect_args["options"] = f"-c lock_timeout={int(busy_timeout * 1000)}"
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, hide_parameters=True)


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")


def _check_new(envelope: EnvelopeRecord) -> None:
    check_envelope_id(envelope.envelope_id)
    if envelope.state != "sealed":
        raise ValueError(f"a new envelope is sealed, not {envelope.state!r}")
    _check_aware(envelope.created_at, "created_at")
    _check_aware(envelope.expires_at, "expires_at")


def _values(record: object, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


def _live(conn: Connection, idempotency_key: str) -> EnvelopeRecord | None:
    """The live envelope of this idempotency key, within ``conn``'s transaction."""
    row = conn.execute(_SELECT_LIVE, {"idempotency_key": idempotency_key}).mappings().first()
    return None if row is None else _load(conn, row)


def _accounts(conn: Connection, addresses: Iterable[str]) -> dict[str, AccountRecord]:
    """The accounts of these addresses by lower-cased address, within ``conn``'s transaction."""
    wanted = sorted({address.lower() for address in addresses})
    if not wanted:
        return {}
    rows = conn.execute(_SELECT_ACCOUNTS, {"addresses": wanted}).mappings()
    return {row["address"]: AccountRecord(**{n: row[n] for n in _ACCOUNT_COLUMNS}) for row in rows}


def _envelope(
    row: RowMapping,
    parts: tuple[PartRecord, ...] = (),
    readers: tuple[ReaderRecord, ...] = (),
) -> EnvelopeRecord:
    return EnvelopeRecord(
        **{name: row[name] for name in _ENVELOPE_COLUMNS}, parts=parts, readers=readers
    )


def _load(
    conn: Connection, row: RowMapping, only: ColumnElement[bool] | None = None
) -> EnvelopeRecord:
    """The envelope of ``row`` with its parts (by part id) and readers (in sealing order),
    or only the readers ``only`` selects."""
    envelope_id = row["envelope_id"]
    part_rows = conn.execute(
        select(parts).where(parts.c.envelope_id == envelope_id).order_by(parts.c.part_id)
    ).mappings()
    which = readers.c.envelope_id == envelope_id
    if only is not None:
        which = and_(which, only)
    reader_rows = conn.execute(select(readers).where(which).order_by(readers.c.position)).mappings()
    return _envelope(
        row,
        tuple(PartRecord(**{n: r[n] for n in _PART_COLUMNS}) for r in part_rows),
        tuple(ReaderRecord(**{n: r[n] for n in _READER_COLUMNS}) for r in reader_rows),
    )


def _end(
    conn: Connection,
    envelope_id: str,
    state: str,
    detail: str,
    *,
    from_states: tuple[str, ...] = LIVE_STATES,
) -> bool:
    """Within ``conn``'s transaction: a live envelope ends, its keys are nulled, an event."""
    ended = conn.execute(
        update(envelopes)
        .where(envelopes.c.envelope_id == envelope_id, envelopes.c.state.in_(from_states))
        .values(state=state)
    )
    if ended.rowcount != 1:
        return False
    conn.execute(
        update(readers)
        .where(readers.c.envelope_id == envelope_id)
        .values(wrapped_key=None, encrypted_private_key=None)
    )
    conn.execute(delete(pending_links).where(pending_links.c.envelope_id == envelope_id))
    append_event(conn, state, envelope_id=envelope_id, detail=detail)
    return True


def insert_account(conn: Connection, account: AccountRecord, detail: str = "") -> None:
    """Within ``conn``'s transaction: an account (address lower-cased) and its
    "account-created" event; :class:`AccountExists` if the address has one."""
    _check_aware(account.created_at, "created_at")
    address = account.address.lower()
    if conn.scalar(select(accounts.c.address).where(accounts.c.address == address)):
        raise AccountExists(f"account {address} exists")
    values = {**_values(account, _ACCOUNT_COLUMNS), "address": address}
    try:
        conn.execute(insert(accounts).values(values))
    except sa_exc.IntegrityError:  # created meanwhile by another request
        raise AccountExists(f"account {address} exists") from None
    append_event(conn, "account-created", address=address, detail=detail)


def append_event(
    conn: Connection,
    kind: str,
    *,
    envelope_id: str | None = None,
    reader_id: str | None = None,
    address: str | None = None,
    detail: str = "",
) -> None:
    append_events(conn, [event_row(kind, envelope_id, reader_id, address, detail)])


def event_row(
    kind: str,
    envelope_id: str | None = None,
    reader_id: str | None = None,
    address: str | None = None,
    detail: str = "",
) -> dict[str, object]:
    """One row of the audit trail, for :func:`append_events`."""
    if not _EVENT_KIND.fullmatch(kind):
        raise ValueError(f"not an event kind: {kind!r}")
    return {
        "at": datetime.now(UTC),
        "kind": kind,
        "envelope_id": envelope_id,
        "reader_id": reader_id,
        "address": address,
        "detail": detail,
    }


def append_events(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Within ``conn``'s transaction: these events, in one statement (the protected path
    writes several at once)."""
    conn.execute(_INSERT_EVENTS, rows)
