"""Group commit on SQLite: concurrent writers share a transaction, each returns durable.

The writers are made to overlap deterministically: the first one holds its turn
until the others are queued behind it, so all of them join one transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import IntegrityError

from gateway.store import FileBlobStore, Store, StoreError, TemporaryStoreError
from gateway.store.groupcommit import GroupCommit

WRITERS = 8


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", FileBlobStore(tmp_path / "blobs"))
    opened.migrate()
    with opened.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, owner TEXT)")
        conn.exec_driver_sql(
            "CREATE TABLE refs (id INTEGER PRIMARY KEY, note INTEGER"
            " REFERENCES notes(id) DEFERRABLE INITIALLY DEFERRED)"
        )
    yield opened
    opened.close()


def commits_of(store: Store) -> list[int]:
    counted = [0]
    event.listen(store.engine, "commit", lambda conn: counted.__setitem__(0, counted[0] + 1))
    return counted


def writer_of(store: Store) -> GroupCommit:
    writer = store._writer  # the Store's own, as its write transactions use it
    assert writer is not None
    return writer


def fresh_count(path: Path, owner: str) -> int:
    """Rows of ``owner`` as another process would see them: a connection of its own."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM notes WHERE owner = :o"), {"o": owner})
        value = count.scalar_one()
    engine.dispose()
    return value


def run_overlapping(store: Store, work: Callable[[int], None]) -> dict[int, BaseException]:
    """Run ``work(n)`` for every writer n in its own thread, all in one transaction."""
    gate = threading.Event()
    failures: dict[int, BaseException] = {}

    def first() -> None:
        try:
            with store.transaction("test", write=True) as conn:
                conn.execute(text("INSERT INTO notes (owner) VALUES ('first')"))
                gate.wait(10)  # hold the turn until everyone else is queued
        except BaseException as error:  # noqa: BLE001 (reported to the test)
            failures[0] = error

    def other(number: int) -> None:
        try:
            work(number)
        except BaseException as error:  # noqa: BLE001 (reported to the test)
            failures[number] = error

    threads = [threading.Thread(target=first)]
    threads += [threading.Thread(target=other, args=(n,)) for n in range(1, WRITERS)]
    threads[0].start()
    while not writer_of(store)._members:
        time.sleep(0.001)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while writer_of(store)._waiting < WRITERS - 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    gate.set()
    for thread in threads:
        thread.join(10)
    return failures


def test_concurrent_writers_share_one_commit_and_return_durable(store: Store, tmp_path: Path):
    commits = commits_of(store)
    seen: dict[int, int] = {}

    def insert(number: int) -> None:
        with store.transaction("test", write=True) as conn:
            conn.execute(text("INSERT INTO notes (owner) VALUES (:o)"), {"o": f"w{number}"})
        seen[number] = fresh_count(tmp_path / "db.sqlite", f"w{number}")  # durable on return

    assert run_overlapping(store, insert) == {}
    assert seen == {number: 1 for number in range(1, WRITERS)}
    assert commits[0] == 1  # eight writers, one commit (one fsync)


def test_a_failing_writer_undoes_only_its_own_work(store: Store, tmp_path: Path):
    def insert(number: int) -> None:
        with store.transaction("test", write=True) as conn:
            conn.execute(text("INSERT INTO notes (owner) VALUES (:o)"), {"o": f"w{number}"})
            if number == 3:
                raise ValueError("writer 3 changes its mind")

    failures = run_overlapping(store, insert)
    assert list(failures) == [3] and isinstance(failures[3], ValueError)
    database = tmp_path / "db.sqlite"
    assert [fresh_count(database, f"w{n}") for n in range(1, WRITERS)] == [1, 1, 0, 1, 1, 1, 1]
    assert fresh_count(database, "first") == 1


def test_a_failed_commit_fails_every_writer_in_it(store: Store, tmp_path: Path):
    """A deferred foreign key fails at COMMIT: nobody in that transaction may return 'durable'."""

    def insert(number: int) -> None:
        with store.transaction("test", write=True) as conn:
            conn.execute(text("INSERT INTO notes (owner) VALUES (:o)"), {"o": f"w{number}"})
            if number == 5:
                conn.execute(text("INSERT INTO refs (note) VALUES (999999)"))

    failures = run_overlapping(store, insert)
    assert sorted(failures) == list(range(WRITERS))  # the first writer's work too
    assert all(isinstance(f, StoreError) for f in failures.values())
    assert not any(isinstance(f, TemporaryStoreError) for f in failures.values())
    assert "FOREIGN KEY" in str(failures[1]) or isinstance(failures[1].__cause__, IntegrityError)
    database = tmp_path / "db.sqlite"
    assert sum(fresh_count(database, f"w{n}") for n in range(1, WRITERS)) == 0
    # The next transaction is a new one, and works.
    with store.transaction("test", write=True) as conn:
        conn.execute(text("INSERT INTO notes (owner) VALUES ('after')"))
    assert fresh_count(database, "after") == 1


def test_a_closed_store_writes_again_like_a_disposed_engine(store: Store, tmp_path: Path):
    store.close()
    store.close()
    with store.transaction("test", write=True) as conn:
        conn.execute(text("INSERT INTO notes (owner) VALUES ('reopened')"))
    assert fresh_count(tmp_path / "db.sqlite", "reopened") == 1


def test_nested_write_is_part_of_the_callers_work(store: Store, tmp_path: Path):
    with store.transaction("outer", write=True) as outer:
        outer.execute(text("INSERT INTO notes (owner) VALUES ('outer')"))
        with store.transaction("inner", write=True) as inner:
            inner.execute(text("INSERT INTO notes (owner) VALUES ('inner')"))
    assert fresh_count(tmp_path / "db.sqlite", "inner") == 1


def writer_connection(store: Store) -> object:
    """The driver's connection of a write transaction."""
    with store.transaction("test", write=True) as conn:
        conn.execute(text("INSERT INTO notes (owner) VALUES ('probe')"))
        return conn.connection.driver_connection


def test_the_writer_connection_is_kept_until_a_commit_fails(store: Store):
    """Kept, its page cache stays valid between transactions (SQLite drops a connection's
    cache when another one committed); after a failed commit it is replaced."""
    kept = writer_connection(store)
    with store.transaction("a read", write=False) as conn:  # a pooled connection, not the writer
        assert conn.connection.driver_connection is not kept
    assert writer_connection(store) is kept

    with pytest.raises(StoreError), store.transaction("test", write=True) as conn:
        conn.execute(text("INSERT INTO refs (note) VALUES (999999)"))  # fails at COMMIT
    assert writer_connection(store) is not kept


def test_savepoints_keep_their_journal_in_memory(store: Store):
    """Every writer's work is a SAVEPOINT; with temporary files on disk, its journal of a
    protected message's pages spilled into one (about 50 pwrite calls a message)."""
    with store.transaction("test", write=True) as conn:
        assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # MEMORY
