"""The portal's counters in the store hold under concurrency, on SQLite and PostgreSQL.

Several worker processes share one database: a wrong-code counter that loses
updates, or a code attempt two requests can both use, would let an attacker
guess faster than the configured limits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from gateway.store.access import Access
from tests.support.sealing import seal


def test_parallel_guesses_share_no_code_attempt(store, pool):
    sealed = seal(store, pool, b"Subject: x\r\n\r\nhello\r\n")
    reader_id = sealed.grants[0].reader_id
    access = Access(store)
    now = datetime.now(UTC)
    access.issue_code(reader_id, "email", b"\x01" * 32, now, timedelta(minutes=5))
    active = access.active_code(reader_id, "email", now)
    assert active is not None
    with ThreadPoolExecutor(max_workers=8) as threads:
        taken = list(threads.map(lambda _: access.reserve_attempt(active.code_id, 3), range(40)))
    assert sorted(t for t in taken if t is not None) == [0, 1, 2]
    assert access.active_code(reader_id, "email", now) is None  # spent by its attempts


def test_parallel_failures_are_all_counted(store):
    access = Access(store)
    now = datetime.now(UTC)

    def fail(_: int) -> int:
        return access.count(
            "client:198.51.100.7", now, limit=1000, window=timedelta(hours=1),
            lockout=timedelta(minutes=5),
        ).failures  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as threads:
        counts = list(threads.map(fail, range(60)))
    assert sorted(counts) == list(range(1, 61))


def test_the_sweep_forgets_what_is_spent_and_keeps_what_is_pending(store, pool):
    from gateway.store.access import Hold

    sealed = seal(
        store, pool, b"Subject: x\r\n\r\nhello\r\n", ("bob@example.net", "eve@example.net")
    )
    bob, eve = sealed.grants
    access = Access(store)
    now = datetime.now(UTC)
    access.issue_code(bob.reader_id, "email", b"\x02" * 32, now, timedelta(minutes=5))
    access.add_session("s1", kind="session", now=now, expires_at=now + timedelta(minutes=1),
                       reader_id=bob.reader_id)  # fmt: skip
    access.add_session("s2", kind="session", now=now, expires_at=now - timedelta(seconds=1),
                       reader_id=bob.reader_id)  # fmt: skip
    holds = [
        Hold(sealed.envelope_id, g.reader_id, g.address, ("phone",), "needs a phone", b"x")
        for g in (bob, eve)
    ]
    access.add_holds(holds, now)
    access.decide_hold(holds[1], "cancelled")
    access.sweep(now)
    assert access.session("s1", now) is not None and access.session("s2", now) is None
    assert access.active_code(bob.reader_id, "email", now) is not None
    assert [h.address for h in access.held(sealed.envelope_id)] == ["bob@example.net"]
    cancelled = next(
        r for r in store.get(sealed.envelope_id).readers if r.address == "eve@example.net"
    )
    assert cancelled.wrapped_key is None and cancelled.encrypted_private_key is None
    store.shred(sealed.envelope_id, "revoked")
    access.sweep(now)
    assert access.held(sealed.envelope_id) == []


def test_only_one_first_open_however_many_at_once(store, pool):
    sealed = seal(store, pool, b"Subject: x\r\n\r\nhello\r\n")
    reader = sealed.grants[0]
    access = Access(store)
    with ThreadPoolExecutor(max_workers=8) as threads:
        firsts = list(threads.map(
            lambda _: access.record_first("opened", sealed.envelope_id, reader.reader_id,
                                          reader.address, ""),
            range(16),
        ))  # fmt: skip
    assert firsts.count(True) == 1


def test_counting_while_another_request_clears_never_fails(store):
    access = Access(store)
    now = datetime.now(UTC)

    def count_or_clear(n: int) -> None:
        if n % 2:
            access.clear("link:race")
        else:
            access.count("link:race", now, limit=1000, window=timedelta(hours=1),
                         lockout=timedelta(minutes=5))  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as threads:
        list(threads.map(count_or_clear, range(200)))
