"""What a single sign-on does to the account model (docs/identity.md): which key the
person's key secret opens, and the tokens that let their browser create or re-seal it.

The key secret comes in the ID token (gateway.identity.sso). From it and the account's
salt come the same two keys a password gives (gateway.envelope.keys.sso_account_keys):
the KEK, handed to the browser for this sign-in only, and the login secret, of which the
account keeps an Argon2id hash as it does for a password. That hash tells, without
opening the private key, which secret the account's key is sealed under:

- **signed in**: the current secret's. The browser opens the private key with the KEK.
- **rotate**: the previous secret's (the provider still releases it, docs/identity.md):
  the browser opens the key with the old KEK and seals it under the new one.
- **convert**: a password account (made with ``sealgate account create`` or in the
  portal): the person types the password once, the browser opens the key with it and
  seals it under the new KEK. The account signs in with single sign-on from then on.
- **new key**: neither (the secret was rotated without its predecessor being released,
  or the password is forgotten): a new key pair, as a password reset makes, and what
  was sealed to the old key is shredded. The page says so before it is done.
- **create**: no account yet: the browser makes the key pair and seals it under the KEK.

The server may hold the secret, the KEK and the login secret in memory during this
request; it stores none of them. The tokens carry what the browser's next request needs
(address, salt, the login secret's hash, what it allows) sealed with AES-256-GCM under a
key from the installation secret, for 15 minutes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.envelope.keys import SSO_KDF, b64url, b64url_decode, random_bytes, sso_account_keys
from gateway.identity.accounts import SALT_SIZE
from gateway.identity.sealedtokens import SealedTokens, TokenError
from gateway.identity.sso import Identity
from gateway.store import AccountRecord, Store
from gateway.store.accounts import Accounts

TOKEN_MINUTES = 15
MODES = ("signed-in", "rotate", "convert", "new-key", "create")


class SSOTokenError(Exception):
    """A create or renew token that does not open, is too old, or is for something else."""


@dataclass(frozen=True)
class Arrival:
    """What the browser gets back from a sign-in (see the module's docstring)."""

    mode: str
    address: str
    account: AccountRecord | None
    kek: bytes | None = field(default=None, repr=False)  # opens the stored private key
    new_kek: bytes | None = field(default=None, repr=False)  # seals it (or a new one)
    renew_token: str | None = None  # rotate, convert: the same key pair, sealed anew
    new_key_token: str | None = None  # convert, new-key, create: a new key pair


@dataclass(frozen=True)
class _Grant:
    """What a token allows, once opened."""

    purpose: str  # "renew" or "new-key"
    address: str
    salt: bytes
    verifier: str


class SSOAccounts:
    def __init__(self, store: Store, token_key: bytes) -> None:
        self.store = store
        self.accounts = Accounts(store)
        self._tokens = SealedTokens(token_key, b"sealgate v1 sso account ")
        self._hasher = PasswordHasher()

    def arrival(self, identity: Identity) -> Arrival:
        """Which case this sign-in is, and the keys and tokens its page needs."""
        address = identity.address
        account = self.store.get_account(address)
        if account is None:
            return self._fresh("create", identity, None).arrival
        if account.kdf != SSO_KDF:
            fresh = self._fresh("convert", identity, account)
            renew = self._token("renew", address, fresh.new_key_salt, fresh.verifier)
            return Arrival("convert", address, account, None, fresh.kek, renew, fresh.token)
        current = sso_account_keys(identity.key_secret, account.kdf_salt)
        if self._opens(account, current.login_secret):
            return Arrival("signed-in", address, account, current.kek)
        previous = identity.previous_key_secret
        if previous is not None:
            old = sso_account_keys(previous, account.kdf_salt)
            if self._opens(account, old.login_secret):
                verifier = self._hasher.hash(current.login_secret)
                renew = self._token("renew", address, account.kdf_salt, verifier)
                return Arrival("rotate", address, account, old.kek, current.kek, renew)
        return self._fresh("new-key", identity, account).arrival

    def _fresh(self, mode: str, identity: Identity, account: AccountRecord | None) -> _Fresh:
        """Keys under a new salt, and the token for a new key pair sealed under them."""
        salt = random_bytes(SALT_SIZE)
        keys = sso_account_keys(identity.key_secret, salt)
        verifier = self._hasher.hash(keys.login_secret)
        token = self._token("new-key", identity.address, salt, verifier)
        arrival = Arrival(mode, identity.address, account, None, keys.kek, None, token)
        return _Fresh(arrival, keys.kek, salt, verifier, token)

    def _opens(self, account: AccountRecord, login_secret: bytes) -> bool:
        try:
            return self._hasher.verify(account.login_verifier, login_secret)
        except (VerificationError, InvalidHashError):
            return False

    # --- what the browser sends back --------------------------------------------------

    def renew(self, token: str, address: str, sealed_private_key: bytes) -> None:
        """The account's private key, sealed by the browser under the new KEK; the key pair
        stays (rotate, convert). SSOTokenError if the token does not allow it."""
        grant = self._open(token, "renew", address)
        self.accounts.change_password(
            grant.address, salt=grant.salt, login_verifier=grant.verifier,
            encrypted_private_key=sealed_private_key, kdf=(SSO_KDF, 0),
            event="key-secret-renewed",
        )  # fmt: skip

    def new_key(
        self, token: str, address: str, public_key: bytes, sealed_private_key: bytes
    ) -> int:
        """A new key pair for the account, or the account itself when it has none yet; the
        number of message copies shredded with the old key (0 for a new account)."""
        grant = self._open(token, "new-key", address)
        existing = self.store.get_account(grant.address)
        if existing is None:
            self.store.add_account(
                AccountRecord(
                    address=grant.address,
                    created_at=datetime.now(UTC),
                    kdf=SSO_KDF,
                    kdf_iterations=0,
                    kdf_salt=grant.salt,
                    login_verifier=grant.verifier,
                    public_key=public_key,
                    encrypted_private_key=sealed_private_key,
                )
            )
            return 0
        return self.accounts.reset(
            grant.address, public_key=public_key, salt=grant.salt,
            login_verifier=grant.verifier, encrypted_private_key=sealed_private_key,
            kdf=(SSO_KDF, 0), event="key-secret-reset",
        )  # fmt: skip

    # --- the tokens ------------------------------------------------------------------

    def _token(self, purpose: str, address: str, salt: bytes, verifier: str) -> str:
        return self._tokens.seal([purpose, b64url(salt), verifier], time.time(), address)

    def _open(self, token: str, purpose: str, address: str) -> _Grant:
        try:
            made_for, salt, verifier = self._tokens.open(
                token, time.time(), TOKEN_MINUTES * 60, address
            )
        except TokenError as error:
            if error.expired:
                raise SSOTokenError(
                    f"the token is older than {TOKEN_MINUTES} minutes: sign in again"
                ) from None
            raise SSOTokenError("the token is damaged, or for another address") from None
        except ValueError:  # a payload of another shape
            raise SSOTokenError("the token is damaged") from None
        if made_for != purpose:
            raise SSOTokenError(f"the token is for {made_for!r}, not {purpose!r}")
        return _Grant(purpose, address.lower(), b64url_decode(salt), verifier)


@dataclass(frozen=True)
class _Fresh:
    arrival: Arrival
    kek: bytes = field(repr=False)
    new_key_salt: bytes
    verifier: str
    token: str
