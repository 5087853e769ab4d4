"""The reader key pool: key pairs made in a helper process, and what happens when it dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.envelope.keypool import KeyPool
from tests.support.gateway import wait_for
from tests.support.process import children_of


def helper_pid() -> int:
    """The pool's key-generation process among our children (not the resource tracker)."""
    (helper,) = [
        pid
        for pid in children_of(os.getpid())
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return helper


@pytest.fixture
def pool():
    keys = KeyPool(2048, 2)
    keys.start()
    yield keys
    keys.close()


def test_key_pairs_match_and_are_fresh(pool):
    first, second = pool.take(), pool.take()
    assert first.private_der != second.private_der
    private = serialization.load_der_private_key(first.private_der, password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == first.public_der
    assert private.key_size == 2048


def test_the_pool_fills_itself_ahead_of_need(pool):
    wait_for(lambda: pool.ready >= 2, timeout=30, what="pre-generated keys")


def test_a_dead_helper_fails_fast_and_the_next_take_starts_a_new_one(pool):
    pool.take()
    helper = helper_pid()
    pool._ready.clear()
    os.kill(helper, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no reader key pair"):
        for _ in range(3):  # a batch already on its way may still arrive first
            pool.take(timeout=30)
    assert time.monotonic() - started < 15
    assert pool.take(timeout=30).public_der


def test_a_closed_pool_refuses(pool):
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.take()


def test_a_helper_that_died_while_the_pool_was_idle_is_replaced(pool):
    wait_for(lambda: pool.ready >= 2 and not pool._pending, timeout=30, what="a full pool")
    helper = helper_pid()
    os.kill(helper, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{helper}").exists(), what="the helper gone")
    for _ in range(6):  # the ready keys, then keys from a new helper
        assert pool.take(timeout=30).public_der
