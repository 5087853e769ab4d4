"""Accounts that sign in: their second factors, and the messages sealed for their address.

The account row itself (keys, verifier) is kept by :class:`Store`
(``add_account``, ``get_account``); this module adds what signing in needs.
A TOTP step is spent with one conditional UPDATE, so two workers that get
the same code at the same moment cannot both accept it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from gateway.store.database import Store, append_event, insert_account
from gateway.store.records import LIVE_STATES, AccountRecord
from gateway.store.schema import account_factors, accounts, envelopes, events, readers
from gateway.store.sessions import delete_account_sessions


@dataclass(frozen=True)
class Factor:
    factor_id: int
    kind: str  # "totp", "sms", "passkey" or "recovery"
    # totp: the seed, sealed (gateway.identity.totp); sms: the phone number, sealed
    # (gateway.identity.textcodes); passkey: the credential; recovery: the code's HMAC
    secret: bytes
    # totp: the last step used; sms: the issue time (ms) of the last code used;
    # passkey: the signature counter
    last_step: int | None


@dataclass(frozen=True)
class InboxEntry:
    """One live message sealed for the account's address, as its inbox lists it."""

    envelope_id: str
    reader_id: str
    kind: str  # "account": opens with the account's key; "guest": only with its link
    sender: str
    sender_name: str | None
    created_at: datetime
    expires_at: datetime
    size: int
    read: bool


class Accounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        account: AccountRecord,
        factor_kind: str,
        factor_secret: bytes,
        last_step: int,
        recovery_hashes: list[bytes],
    ) -> None:
        """The account with its first second factor and its recovery codes (HMACs), in one
        transaction: never one without the other. :class:`AccountExists` if the address
        has an account."""
        address = account.address.lower()
        with self.store.transaction(f"creating account {address}", write=True) as conn:
            insert_account(conn, account, detail=f"factor={factor_kind}")
            conn.execute(
                insert(account_factors).values(
                    address=address,
                    kind=factor_kind,
                    secret=factor_secret,
                    last_step=last_step,
                    created_at=account.created_at,
                )
            )
            if recovery_hashes:
                conn.execute(
                    insert(account_factors),
                    [
                        {
                            "address": address,
                            "kind": "recovery",
                            "secret": digest,
                            "last_step": None,
                            "created_at": account.created_at,
                            "last_used_at": None,
                        }  # fmt: skip
                        for digest in recovery_hashes
                    ],
                )

    def factor(self, address: str, kind: str) -> Factor | None:
        """The account's one factor of ``kind`` (its TOTP), or None."""
        return next(iter(self.factors(address, kind)), None)

    def factors(self, address: str, kind: str) -> list[Factor]:
        query = select(account_factors).where(
            account_factors.c.address == address.lower(), account_factors.c.kind == kind
        )
        with self.store.transaction("reading second factors", write=False) as conn:
            rows = conn.execute(query).all()
        return [Factor(r.factor_id, r.kind, r.secret, r.last_step) for r in rows]

    def factor_counts(self, address: str) -> dict[str, int]:
        """How many factors of each kind the account has: ``{"totp": 1, "recovery": 9}``."""
        query = (
            select(account_factors.c.kind, func.count())
            .where(account_factors.c.address == address.lower())
            .group_by(account_factors.c.kind)
        )
        with self.store.transaction("counting second factors", write=False) as conn:
            return {kind: count for kind, count in conn.execute(query).all()}

    def add_factor(self, address: str, kind: str, secret: bytes, count: int, now: datetime) -> None:
        """Another second factor (a passkey) for the account, and its event."""
        address = address.lower()
        with self.store.transaction(f"adding a {kind} to {address}", write=True) as conn:
            conn.execute(
                insert(account_factors).values(
                    address=address, kind=kind, secret=secret, last_step=count, created_at=now
                )
            )
            append_event(conn, "factor-added", address=address, detail=f"kind={kind}")

    def set_factor(self, address: str, kind: str, secret: bytes, step: int, now: datetime) -> None:
        """The account's one factor of ``kind`` (its phone, its app), replacing the one it
        had, and its event."""
        address = address.lower()
        mine = and_(account_factors.c.address == address, account_factors.c.kind == kind)
        with self.store.transaction(f"setting the {kind} of {address}", write=True) as conn:
            replaced = conn.execute(delete(account_factors).where(mine)).rowcount
            conn.execute(
                insert(account_factors).values(
                    address=address, kind=kind, secret=secret, last_step=step, created_at=now
                )
            )
            what = "factor-replaced" if replaced else "factor-added"
            append_event(conn, what, address=address, detail=f"kind={kind}")

    def advance_count(self, factor_id: int, count: int, now: datetime) -> bool:
        """A passkey's signature counter moves on; False if it went back (a cloned key),
        unless the authenticator keeps no counter (0 both times)."""
        last = account_factors.c.last_step
        fresh = last == 0 if count == 0 else or_(last.is_(None), last < count)
        with self.store.transaction("counting a passkey signature", write=True) as conn:
            changed = conn.execute(
                update(account_factors)
                .where(account_factors.c.factor_id == factor_id, fresh)
                .values(last_step=count, last_used_at=now)
            )
        return changed.rowcount == 1

    def spend_recovery_code(self, address: str, digest: bytes) -> bool:
        """Use up the recovery code whose HMAC is ``digest``: True once, then never."""
        address = address.lower()
        mine = and_(
            account_factors.c.address == address,
            account_factors.c.kind == "recovery",
            account_factors.c.secret == digest,
        )
        with self.store.transaction("spending a recovery code", write=True) as conn:
            spent = conn.execute(delete(account_factors).where(mine)).rowcount == 1
            if spent:
                left = conn.scalar(
                    select(func.count()).where(
                        account_factors.c.address == address, account_factors.c.kind == "recovery"
                    )
                )
                append_event(conn, "recovery-code-used", address=address, detail=f"left={left}")
        return spent

    def spend_step(self, factor_id: int, step: int, now: datetime) -> bool:
        """Record that the TOTP code of ``step`` (or the text code issued at ``step``) was
        used; False if that step (or a later one) was used already: a replay, from this
        worker or another."""
        fresh = or_(account_factors.c.last_step.is_(None), account_factors.c.last_step < step)
        with self.store.transaction("spending a one-time code", write=True) as conn:
            changed = conn.execute(
                update(account_factors)
                .where(account_factors.c.factor_id == factor_id, fresh)
                .values(last_step=step, last_used_at=now)
            )
        return changed.rowcount == 1

    def inbox(self, address: str, sender: str | None = None) -> list[InboxEntry]:
        """The live messages sealed for ``address``, newest first; ``sender``: only those
        whose sender contains it (case-insensitive)."""
        address = address.lower()
        read = (
            select(events.c.event_id)
            .where(
                events.c.envelope_id == envelopes.c.envelope_id,
                events.c.reader_id == readers.c.reader_id,
                events.c.kind == "opened",
            )
            .exists()
        )
        query = (
            select(
                envelopes.c.envelope_id,
                readers.c.reader_id,
                readers.c.kind,
                envelopes.c.sender,
                envelopes.c.sender_name,
                envelopes.c.created_at,
                envelopes.c.expires_at,
                envelopes.c.original_size,
                read.label("read"),
            )
            .join(readers, readers.c.envelope_id == envelopes.c.envelope_id)
            .where(
                func.lower(readers.c.address) == address,
                envelopes.c.state.in_(LIVE_STATES),
                readers.c.wrapped_key.is_not(None),  # not one shredded by a password reset
                # The sender's own copy (an account reader without a link, on the sender's
                # address) is what they sent, not an inbox entry.
                or_(
                    readers.c.kind != "account",
                    readers.c.link_id_hash.is_not(None),
                    func.lower(envelopes.c.sender) != address,
                ),
            )
            .order_by(envelopes.c.created_at.desc())
        )
        if sender:
            pattern = "%" + sender.lower().replace("%", "").replace("_", "") + "%"
            query = query.where(
                or_(
                    func.lower(envelopes.c.sender).like(pattern),
                    and_(
                        envelopes.c.sender_name.is_not(None),
                        func.lower(envelopes.c.sender_name).like(pattern),
                    ),
                )
            )
        with self.store.transaction("listing an inbox", write=False) as conn:
            rows = conn.execute(query).all()
        # A message claimed into the account has a guest reader and an account reader for
        # the address: it is listed once, as opening here.
        claimed = {row.envelope_id for row in rows if row.kind == "account"}
        rows = [r for r in rows if r.kind == "account" or r.envelope_id not in claimed]
        return [
            InboxEntry(
                envelope_id=row.envelope_id,
                reader_id=row.reader_id,
                kind=row.kind,
                sender=row.sender,
                sender_name=row.sender_name,
                created_at=row.created_at,
                expires_at=row.expires_at,
                size=row.original_size,
                read=bool(row.read),
            )
            for row in rows
        ]

    def change_password(
        self,
        address: str,
        *,
        salt: bytes,
        login_verifier: str,
        encrypted_private_key: bytes,
        kdf: tuple[str, int] | None = None,
        event: str = "password-changed",
    ) -> None:
        """A new password's salt, verifier and sealed private key (and with ``kdf``, a new
        KDF and round count: an account moving to single sign-on); the key pair stays. The
        account's sessions end (the one that asked gets a new one)."""
        address = address.lower()
        values = {"kdf_salt": salt, "login_verifier": login_verifier,
                  "encrypted_private_key": encrypted_private_key}  # fmt: skip
        with self.store.transaction(f"changing the password of {address}", write=True) as conn:
            _sealed_anew(conn, address, values, kdf)
            append_event(conn, event, address=address)

    def reset(
        self,
        address: str,
        *,
        public_key: bytes,
        salt: bytes,
        login_verifier: str,
        encrypted_private_key: bytes,
        kdf: tuple[str, int] | None = None,
        event: str = "password-reset",
    ) -> int:
        """A forgotten password (or a key secret lost to a rotation): a new key pair and
        password. The content keys wrapped to the old key are shredded (nobody can open
        them any more), the account's sessions end; its second factors stay. The number
        of readers shredded."""
        address = address.lower()
        values = {"public_key": public_key, "kdf_salt": salt, "login_verifier": login_verifier,
                  "encrypted_private_key": encrypted_private_key}  # fmt: skip
        with self.store.transaction(f"resetting account {address}", write=True) as conn:
            shredded = _shred_wrapped_to(conn, address)
            _sealed_anew(conn, address, values, kdf)
            append_event(conn, event, address=address, detail=f"readers={shredded}")
        return shredded

    def delete(self, address: str, by: str = "holder") -> int:
        """Crypto-shred the account: the content keys wrapped to it go (its messages no
        longer open for it), then its sessions, factors and the account itself. The audit
        trail keeps that it happened, and who did it (``by``: "holder" or "command
        line"). The number of readers shredded."""
        address = address.lower()
        with self.store.transaction(f"deleting account {address}", write=True) as conn:
            shredded = _shred_wrapped_to(conn, address)
            delete_account_sessions(conn, address)
            conn.execute(delete(account_factors).where(account_factors.c.address == address))
            conn.execute(delete(accounts).where(accounts.c.address == address))
            detail = f"readers={shredded} by={by}"
            append_event(conn, "account-deleted", address=address, detail=detail)
        return shredded

    def claim(self, envelope_id: str, address: str, wrapped_key: bytes) -> bool:
        """Add an account reader for ``address`` to a live envelope, with K wrapped to the
        account's key by the browser that opened it as a guest; False if the account has
        one there already (or the envelope ended). The guest's link keeps working."""
        address = address.lower()
        mine = and_(
            readers.c.envelope_id == envelope_id,
            readers.c.kind == "account",
            func.lower(readers.c.address) == address,
        )
        live = and_(envelopes.c.envelope_id == envelope_id, envelopes.c.state.in_(LIVE_STATES))
        with self.store.transaction(f"claiming {envelope_id}", write=True) as conn:
            if conn.scalar(select(envelopes.c.envelope_id).where(live)) is None:
                return False
            if conn.scalar(select(readers.c.reader_id).where(mine)) is not None:
                return False
            position = conn.scalar(
                select(func.coalesce(func.max(readers.c.position), -1) + 1).where(
                    readers.c.envelope_id == envelope_id
                )
            )
            reader_id = os.urandom(16).hex()
            conn.execute(
                insert(readers).values(
                    reader_id=reader_id,
                    envelope_id=envelope_id,
                    position=position,
                    kind="account",
                    address=address,
                    wrapped_key=wrapped_key,
                    encrypted_private_key=None,
                    public_key=None,
                    link_id_hash=None,
                    methods="",
                    access_code_hash=None,
                    phone=None,
                    access_code_failures=0,
                )
            )
            append_event(
                conn, "claimed", envelope_id=envelope_id, reader_id=reader_id, address=address
            )
        return True


def _shred_wrapped_to(conn: Connection, address: str) -> int:
    """Within ``conn``'s transaction: delete the content keys wrapped to the account of
    ``address`` (crypto-shredding); how many readers had one."""
    mine = and_(
        readers.c.kind == "account",
        func.lower(readers.c.address) == address,
        readers.c.wrapped_key.is_not(None),
    )
    return conn.execute(update(readers).where(mine).values(wrapped_key=None)).rowcount


def _sealed_anew(
    conn: Connection, address: str, values: Mapping[str, object], kdf: tuple[str, int] | None
) -> None:
    """Within ``conn``'s transaction: the account's new key material (and with ``kdf`` its
    KDF and round count); every session of the account ends."""
    if kdf is not None:
        values = {**values, "kdf": kdf[0], "kdf_iterations": kdf[1]}
    conn.execute(update(accounts).where(accounts.c.address == address).values(values))
    delete_account_sessions(conn, address)
