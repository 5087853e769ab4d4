"""What a single sign-on does to an account: the five cases of gateway.identity.ssoaccounts,
with the browser's part played by keys.py (the same derivations as account.js).

The key secret opens the account's key; a rotation moves it to the new secret while the
provider still releases the old one; a password account moves to single sign-on with the
password typed once; a secret lost to a rotation gives a new key and shreds what was
sealed to the old one; and none of it stores the secret or a key derived from it.
"""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import select

from gateway.envelope import keys
from gateway.envelope.account import create_account
from gateway.identity import ssoaccounts
from gateway.identity.sso import Identity
from gateway.identity.ssoaccounts import SSOAccounts, SSOTokenError
from gateway.store.schema import accounts, events

SECRET = "k" * 20 + "first-secret-of-bob-0123456789"
NEW_SECRET = "n" * 20 + "second-secret-of-bob-012345678"
BOB = "bob@example.org"


def identity(secret: str = SECRET, previous: str | None = None) -> Identity:
    return Identity("corp", "sub-bob", BOB, "Bob", secret, previous)


def browser_creates(desk: SSOAccounts, arrival) -> bytes:
    """A new key pair sealed under the arrival's new KEK, sent with its token; the private
    key's DER (what the browser keeps)."""
    pair = keys.generate_key_pair(2048)
    sealed = keys.encrypt_private_key(arrival.new_kek, pair.private_der, BOB.encode())
    desk.new_key(arrival.new_key_token, BOB, pair.public_der, sealed)
    return pair.private_der


@pytest.fixture
def desk(store) -> SSOAccounts:
    return SSOAccounts(store, os.urandom(32))


def test_the_first_sign_in_creates_the_account_and_the_next_opens_it(desk, store):
    first = desk.arrival(identity())
    assert first.mode == "create" and first.account is None and first.kek is None
    private = browser_creates(desk, first)
    account = store.get_account(BOB)
    assert account.kdf == keys.SSO_KDF and account.kdf_iterations == 0

    again = desk.arrival(identity())
    assert again.mode == "signed-in" and again.new_key_token is None
    blob = again.account.encrypted_private_key
    assert keys.decrypt_private_key(again.kek, blob, BOB.encode()) == private


def test_a_rotation_reseals_the_same_key_under_the_new_secret(desk, store):
    private = browser_creates(desk, desk.arrival(identity()))
    rotating = desk.arrival(identity(NEW_SECRET, previous=SECRET))
    assert rotating.mode == "rotate"
    blob = rotating.account.encrypted_private_key
    opened = keys.decrypt_private_key(rotating.kek, blob, BOB.encode())
    resealed = keys.encrypt_private_key(rotating.new_kek, opened, BOB.encode())
    desk.renew(rotating.renew_token, BOB, resealed)

    after = desk.arrival(identity(NEW_SECRET))
    assert after.mode == "signed-in"
    assert keys.decrypt_private_key(after.kek, after.account.encrypted_private_key,
                                    BOB.encode()) == private  # fmt: skip
    assert desk.arrival(identity(SECRET)).mode == "new-key"  # the old secret opens nothing now


def test_a_password_account_moves_to_single_sign_on(desk, store):
    record = create_account(BOB, "a long passphrase of bob's")
    store.add_account(record)
    moving = desk.arrival(identity())
    assert moving.mode == "convert" and moving.kek is None
    password_keys = keys.account_keys("a long passphrase of bob's", record.kdf_salt, 600_000)
    opened = keys.decrypt_private_key(password_keys.kek, record.encrypted_private_key,
                                      BOB.encode())  # fmt: skip
    desk.renew(moving.renew_token, BOB, keys.encrypt_private_key(moving.new_kek, opened,
                                                                 BOB.encode()))  # fmt: skip
    after = desk.arrival(identity())
    assert after.mode == "signed-in" and after.account.public_key == record.public_key
    assert keys.decrypt_private_key(after.kek, after.account.encrypted_private_key,
                                    BOB.encode()) == opened  # fmt: skip


def test_a_lost_secret_gives_a_new_key_and_shreds_the_old_one(desk, store):
    browser_creates(desk, desk.arrival(identity()))
    old_public = store.get_account(BOB).public_key
    lost = desk.arrival(identity(NEW_SECRET))  # rotated without the previous one
    assert lost.mode == "new-key" and lost.renew_token is None
    browser_creates(desk, lost)
    assert store.get_account(BOB).public_key != old_public
    assert desk.arrival(identity(NEW_SECRET)).mode == "signed-in"
    with store.engine.connect() as conn:
        kinds = conn.scalars(select(events.c.kind).where(events.c.address == BOB)).all()
    assert "key-secret-reset" in kinds


def test_tokens_are_for_one_address_one_purpose_and_a_short_time(desk, store, monkeypatch):
    arrival = desk.arrival(identity())
    pair = keys.generate_key_pair(2048)
    sealed = keys.encrypt_private_key(arrival.new_kek, pair.private_der, BOB.encode())
    with pytest.raises(SSOTokenError):
        desk.new_key(arrival.new_key_token, "eve@example.org", pair.public_der, sealed)
    with pytest.raises(SSOTokenError):
        desk.renew(arrival.new_key_token, BOB, sealed)  # a new-key token renews nothing
    with pytest.raises(SSOTokenError):
        desk.new_key(arrival.new_key_token[:-4] + "AAAA", BOB, pair.public_der, sealed)
    later = time.time() + 16 * 60
    monkeypatch.setattr(ssoaccounts.time, "time", lambda: later)
    with pytest.raises(SSOTokenError):
        desk.new_key(arrival.new_key_token, BOB, pair.public_der, sealed)
    assert store.get_account(BOB) is None


def test_nothing_derived_from_the_secret_is_stored(desk, store):
    arrival = desk.arrival(identity())
    browser_creates(desk, arrival)
    derived = keys.sso_account_keys(SECRET, store.get_account(BOB).kdf_salt)
    with store.engine.connect() as conn:
        row = conn.execute(select(accounts)).one()
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    for secret in (SECRET.encode(), derived.kek, derived.login_secret,
                   keys.b64url(derived.kek).encode()):  # fmt: skip
        assert secret not in stored
    assert row.login_verifier.startswith("$argon2id$")


def test_a_short_key_secret_is_refused():
    with pytest.raises(ValueError, match="at least 32"):
        keys.sso_account_keys("too short", os.urandom(16))
    assert SECRET not in repr(identity(previous=NEW_SECRET)) and NEW_SECRET not in repr(identity())
