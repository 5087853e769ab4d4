"""The portal's counters in the store hold under concurrency, on SQLite and PostgreSQL.

Several worker processes share one database: a wrong-code counter that loses
updates, or a code attempt two requests can both use, would let an attacker
guess faster than the configured limits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from gateway.store.portalstate import PortalState
from tests.support.sealing import seal


def test_parallel_guesses_share_no_code_attempt(store):
    """Two live codes, 40 guesses at once: every guess is paid with one try of each code,
    so the codes together allow 3 guesses, not 3 each."""
    sealed = seal(store, b"Subject: x\r\n\r\nhello\r\n")
    reader_id = sealed.grants[0].reader_id
    state = PortalState(store)
    now = datetime.now(UTC)
    for n in (1, 2):
        issued = state.codes.issue_code(reader_id, "email", bytes([n]) * 32, now,
                                         timedelta(minutes=5), per_hour=5)  # fmt: skip
        assert issued is None
    with ThreadPoolExecutor(max_workers=8) as threads:
        taken = list(
            threads.map(lambda _: state.codes.reserve_tries(reader_id, "email", now, 3), range(40))
        )
    paid = [t for t in taken if t]
    assert len(paid) == 3 and all(len(t) == 2 for t in paid)  # each guess met both codes
    assert sorted(c.tries_left for t in paid for c in t) == [0, 0, 1, 1, 2, 2]
    assert state.codes.reserve_tries(reader_id, "email", now, 3) == []  # both spent


def test_parallel_requests_send_no_more_codes_than_the_hour_allows(store):
    sealed = seal(store, b"Subject: x\r\n\r\nhello\r\n")
    reader_id = sealed.grants[0].reader_id
    state = PortalState(store)
    now = datetime.now(UTC)

    def issue(n: int) -> datetime | None:
        return state.codes.issue_code(reader_id, "email", bytes([n]) * 32, now,
                                       timedelta(minutes=5), per_hour=4)  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as threads:
        answers = list(threads.map(issue, range(20)))
    assert answers.count(None) == 4
    assert {a for a in answers if a is not None} == {now + timedelta(hours=1)}
    state.sweep(now + timedelta(minutes=30))  # spent or expired, still in the window
    assert issue(99) == now + timedelta(hours=1)
    later = now + timedelta(hours=1, seconds=1)
    assert state.codes.issue_code(reader_id, "email", b"\x07" * 32, later,
                                   timedelta(minutes=5), per_hour=4) is None  # fmt: skip


def test_parallel_failures_are_all_counted(store):
    state = PortalState(store)
    now = datetime.now(UTC)

    def fail(_: int) -> int:
        return state.throttles.count(
            "client:198.51.100.7", now, limit=1000, window=timedelta(hours=1),
            lockout=timedelta(minutes=5),
        ).failures  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as threads:
        counts = list(threads.map(fail, range(60)))
    assert sorted(counts) == list(range(1, 61))


def test_the_sweep_forgets_what_is_spent_and_keeps_what_is_pending(store):
    from gateway.store.holds import Hold

    sealed = seal(
        store, b"Subject: x\r\n\r\nhello\r\n", ("bob@example.net", "eve@example.net")
    )
    bob, eve = sealed.grants
    state = PortalState(store)
    now = datetime.now(UTC)
    state.codes.issue_code(bob.reader_id, "email", b"\x02" * 32, now, timedelta(minutes=5),
                            per_hour=5)  # fmt: skip
    state.sessions.add_session("s1", kind="session", now=now, expires_at=now + timedelta(minutes=1),
                       reader_id=bob.reader_id)  # fmt: skip
    state.sessions.add_session("s2", kind="session", now=now, expires_at=now - timedelta(seconds=1),
                       reader_id=bob.reader_id)  # fmt: skip
    holds = [
        Hold(sealed.envelope_id, g.reader_id, g.address, ("phone",), "needs a phone", b"x")
        for g in (bob, eve)
    ]
    state.holds.add_holds(holds, now)
    state.holds.decide_hold(holds[1], "cancelled")
    state.sweep(now)
    assert state.sessions.session("s1", now) is not None and state.sessions.session("s2", now) is None
    assert len(state.codes.reserve_tries(bob.reader_id, "email", now, 5)) == 1
    assert [h.address for h in state.holds.held(sealed.envelope_id)] == ["bob@example.net"]
    cancelled = next(
        r for r in store.get(sealed.envelope_id).readers if r.address == "eve@example.net"
    )
    assert cancelled.wrapped_key is None and cancelled.encrypted_private_key is None
    store.shred(sealed.envelope_id, "revoked")
    state.sweep(now)
    assert state.holds.held(sealed.envelope_id) == []


def test_only_one_first_open_however_many_at_once(store):
    sealed = seal(store, b"Subject: x\r\n\r\nhello\r\n")
    reader = sealed.grants[0]
    state = PortalState(store)
    with ThreadPoolExecutor(max_workers=8) as threads:
        firsts = list(threads.map(
            lambda _: state.record_first("opened", sealed.envelope_id, reader.reader_id,
                                          reader.address, ""),
            range(16),
        ))  # fmt: skip
    assert firsts.count(True) == 1


def test_counting_while_another_request_clears_never_fails(store):
    state = PortalState(store)
    now = datetime.now(UTC)

    def count_or_clear(n: int) -> None:
        if n % 2:
            state.throttles.clear("link:race")
        else:
            state.throttles.count("link:race", now, limit=1000, window=timedelta(hours=1),
                         lockout=timedelta(minutes=5))  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as threads:
        list(threads.map(count_or_clear, range(200)))
