"""Group commit for SQLite: the write transactions of one process share a commit.

Every protected message makes several short write transactions (the envelope,
its thread, each notified reader, delivery), and with ``synchronous=FULL`` each
commit is an fsync of the WAL. Done one by one from concurrent sessions, they
also queue for SQLite's write lock through its busy handler, which sleeps in
steps of up to 100 ms rather than waking when the lock is free. Profiled with
20 sessions, that waiting was 58 % of the protected path.

So the writers of one :class:`GroupCommit` take turns on one connection: each
runs its work inside a SAVEPOINT of the open transaction (its failure undoes
only its own work), and the transaction commits when no other writer is waiting
to add to it. Whoever finishes last commits for everyone, and every writer
returns only after the commit that made its work durable (the 250 waits for
it); if that commit fails, every writer in it gets the error.

Between processes (``--workers``), an exclusive ``flock`` on a file beside the
database is taken before ``BEGIN IMMEDIATE`` and released after the commit: a
writer of another process waits in the kernel and wakes as soon as the lock is
free, instead of polling through the busy handler.

The writer connection is kept from one transaction to the next. SQLite drops a
connection's whole page cache when another connection committed since its last
transaction; a writer taken from the pool each time therefore read every page
of the tables and indexes it wrote anew (about 140 ``pread`` calls a protected
message), where the kept one finds them cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import RootTransaction

_MAX_BATCH = 32  # writers per transaction, so that one process cannot hold the lock forever


class GroupCommit:
    """Write transactions that share one connection, one transaction and one fsync."""

    def __init__(self, engine: Engine, lock_file: Path, immediate_option: str) -> None:
        self._engine = engine
        self._immediate = immediate_option
        self._lock_file = lock_file
        self._lock_fd: int | None = None  # opened at the first write, closed by close()
        self._turn = threading.Condition()  # the writer connection, one writer at a time
        self._waiting = 0  # writers queued for their turn, who will join the open transaction
        self._counter = threading.Lock()  # guards _waiting, which changes outside the turn
        self._conn: Connection | None = None  # the writer connection, kept between transactions
        self._transaction: RootTransaction | None = None  # the open one
        self._batch = 0  # number of the open (or the last) transaction
        self._ended = 0  # every transaction up to this number has committed or failed
        self._members: dict[int, int] = {}  # writers of a transaction not yet returned
        self._failures: dict[int, BaseException] = {}  # why a transaction failed to commit
        self._local = threading.local()

    def close(self) -> None:
        """Close the writer connection and the lock file; a later write opens them again
        (like a disposed Engine)."""
        with self._turn:
            if self._conn is not None and self._transaction is None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            if self._lock_fd is not None and self._transaction is None:
                os.close(self._lock_fd)
                self._lock_fd = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside a write transaction; returns once that work is durable."""
        if getattr(self._local, "inside", False):  # nested: part of the caller's work
            assert self._conn is not None
            with _savepoint(self._conn, "sealgate_nested"):
                yield self._conn
            return
        with self._counter:
            self._waiting += 1
        with self._turn:
            with self._counter:
                self._waiting -= 1
            batch = self._join()
            self._local.inside = True
            try:
                assert self._conn is not None
                with _savepoint(self._conn):  # a failure undoes this work only
                    yield self._conn
            finally:
                self._local.inside = False
                self._settle(batch)
                failure = self._leave(batch)
        if failure is not None:
            raise failure

    def _join(self) -> int:
        """The open transaction's number, beginning one (process lock first) if none is open."""
        if self._transaction is None:
            if self._lock_fd is None:
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                self._lock_fd = os.open(self._lock_file, flags, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                if self._conn is None:
                    self._conn = self._engine.connect()
                    self._conn.execution_options(**{self._immediate: True})
                self._transaction = self._conn.begin()
            except BaseException:
                self._discard()
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                raise
            self._batch += 1
        self._members[self._batch] = self._members.get(self._batch, 0) + 1
        return self._batch

    def _settle(self, batch: int) -> None:
        """Wait until ``batch`` has ended; commit it when no other writer is about to join
        (or it is full)."""
        while self._ended < batch:
            full = self._members[batch] >= _MAX_BATCH
            if self._batch == batch and (self._waiting == 0 or full):
                self._commit()
            else:
                self._turn.wait()

    def _leave(self, batch: int) -> BaseException | None:
        """This writer is done with ``batch``: why it failed to commit, if it did."""
        self._members[batch] -= 1
        if self._members[batch]:
            return self._failures.get(batch)
        del self._members[batch]
        return self._failures.pop(batch, None)

    def _commit(self) -> None:
        transaction = self._transaction
        assert transaction is not None
        try:
            transaction.commit()
        except Exception as error:
            self._failures[self._batch] = error
            with contextlib.suppress(Exception):
                transaction.rollback()
            self._discard()  # a connection whose commit failed is not kept
        finally:
            self._transaction = None
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._ended = self._batch
            self._turn.notify_all()

    def _discard(self) -> None:
        """Close the writer connection; the next transaction opens another."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


@contextmanager
def _savepoint(conn: Connection, name: str = "sealgate_writer") -> Iterator[None]:
    """A SAVEPOINT in plain SQL: SQLAlchemy's nested transaction objects cost about as
    much again as the statements, on a path every write takes."""
    conn.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql(f"ROLLBACK TO {name}")
        conn.exec_driver_sql(f"RELEASE {name}")
        raise
    conn.exec_driver_sql(f"RELEASE {name}")
