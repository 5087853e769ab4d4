"""Accounts in the portal: sign-up with keys made in the browser, and sign-in.

The browser derives everything from the password (gateway.envelope.keys, the
same derivation as ``sealgate account create``): it sends the public key, the
private key encrypted under its key-encryption key, the salt and iteration
count, and a login secret. The server keeps an Argon2id hash of the login
secret and never sees the password or the private key, so all it can enforce
is the shape of what arrives (:func:`check_upload`); password strength is
checked in the browser (docs/accounts.md says which rule is checked where).

Sign-in answers the same way whether or not an address has an account: an
unknown address gets a salt derived from the installation secret (stable, so
asking twice tells nothing), and its login secret is checked against a dummy
hash, so the time taken does not tell either. A person the organisation's
directory deactivated (SCIM, gateway.identity.directory) is refused the same way.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.envelope import keys
from gateway.envelope.account import DEFAULT_ITERATIONS, KDF
from gateway.identity.passkeys import Credential, PasskeyError, Passkeys
from gateway.identity.textcodes import TextCodeError, TextCodes
from gateway.identity.totp import TOTP, TOTPError
from gateway.store import AccountRecord, Store
from gateway.store.accounts import Accounts

# One salt size and one round count for every account: an address without one gets a
# made-up salt of the same size and the same count, so the answers cannot tell them apart.
SALT_SIZE = 16
LOGIN_SECRET_SIZE = keys.KEY_SIZE
MAX_PUBLIC_KEY = 1024  # DER SubjectPublicKeyInfo of RSA-4096 is 550 bytes
# version, nonce, tag, and PKCS#8 of RSA-2048 (about 1,217 bytes) to RSA-4096 (about 2,374)
PRIVATE_KEY_SIZES = (1 + keys.NONCE_SIZE + 16 + 1100, 1 + keys.NONCE_SIZE + 16 + 2500)
_FAKE_SALT = b"sealgate account salt\x00"


class UploadError(ValueError):
    """What the browser sent cannot be an account's keys: ``field`` names the value."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.field = name


@dataclass(frozen=True)
class KeyUpload:
    """An account's keys as the browser made them (nothing here opens the private key)."""

    iterations: int
    salt: bytes
    login_secret: bytes = field(repr=False)
    public_key: bytes
    encrypted_private_key: bytes


def check_upload(body: dict[str, Any]) -> KeyUpload:
    """The keys of a sign-up, checked as far as the server can; :class:`UploadError`."""
    public_key = check_public_key(body)
    password = check_password_upload(body)
    return KeyUpload(
        password.iterations, password.salt, password.login_secret, public_key,
        password.encrypted_private_key,
    )  # fmt: skip


@dataclass(frozen=True)
class PasswordUpload:
    """What a password makes (at sign-up, or when it changes): the key pair stays."""

    iterations: int
    salt: bytes
    login_secret: bytes = field(repr=False)
    encrypted_private_key: bytes


def check_password_upload(body: dict[str, Any]) -> PasswordUpload:
    """The KDF parameters, login secret and sealed private key of a new password."""
    if body.get("kdf") != KDF:
        raise UploadError("kdf", f"must be {KDF!r}")
    iterations = body.get("iterations")
    if iterations != DEFAULT_ITERATIONS or isinstance(iterations, bool):
        raise UploadError("iterations", f"must be {DEFAULT_ITERATIONS}")
    salt = _bytes(body, "salt", SALT_SIZE, SALT_SIZE)
    login_secret = _bytes(body, "login_secret", LOGIN_SECRET_SIZE, LOGIN_SECRET_SIZE)
    return PasswordUpload(iterations, salt, login_secret, check_sealed_private_key(body))


def check_sealed_private_key(body: dict[str, Any]) -> bytes:
    """The body's ``encrypted_private_key``: a plausible size and a known version."""
    sealed = _bytes(body, "encrypted_private_key", *PRIVATE_KEY_SIZES)
    if sealed[:1] != keys.PRIVATE_KEY_VERSION:
        raise UploadError("encrypted_private_key", "unknown version")
    return sealed


def check_public_key(body: dict[str, Any]) -> bytes:
    """The body's ``public_key``: DER of an RSA key of a size keys.py accepts, e = 65537."""
    public_key = _bytes(body, "public_key", 100, MAX_PUBLIC_KEY)
    _check_public_key(public_key)
    return public_key


def _bytes(body: dict[str, Any], name: str, least: int, most: int) -> bytes:
    text = body.get(name)
    if not isinstance(text, str) or len(text) > 4 * most:
        raise UploadError(name, "missing or too long")
    try:
        value = keys.b64url_decode(text)
    except ValueError:
        raise UploadError(name, "not base64url") from None
    if not least <= len(value) <= most:
        raise UploadError(name, f"must be {least} to {most} bytes, not {len(value)}")
    return value


def _check_public_key(der: bytes) -> None:
    try:
        key = serialization.load_der_public_key(der)
    except ValueError:
        raise UploadError("public_key", "not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise UploadError("public_key", "not an RSA key")
    if key.key_size not in keys.RSA_SIZES:
        raise UploadError("public_key", f"RSA key size must be one of {keys.RSA_SIZES}")
    if key.public_numbers().e != 65537:
        raise UploadError("public_key", "the public exponent must be 65537")


@dataclass(frozen=True)
class Unlocking:
    """What a browser needs to derive the account's keys from the password."""

    kdf: str
    iterations: int
    salt: bytes


RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off paper
_RECOVERY_LENGTH = 10  # characters: 50 bits each, and sign-in is throttled
_RECOVERY_LABEL = b"sealgate recovery code\x00"
RESET_CODE_LENGTH = 8
RESET_MINUTES = 15
_RESET_LABEL = b"sealgate password reset"


def new_recovery_codes() -> list[str]:
    """Fresh recovery codes, as shown once: ``ABCDE-FGHJK``."""
    codes = []
    for _ in range(RECOVERY_CODES):
        text = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append(f"{text[:5]}-{text[5:]}")
    return codes


def _normal_recovery_code(code: str) -> str | None:
    """The code as stored (capitals, no spaces or dashes), or None if it cannot be one."""
    text = "".join(code.split()).replace("-", "").upper()
    if len(text) != _RECOVERY_LENGTH or any(c not in _RECOVERY_ALPHABET for c in text):
        return None
    return text


_F = TypeVar("_F")


class FactorOff(Exception):
    """The second factor asked for is not allowed here (``accounts.factors``, or no SMS
    provider, or no host name for passkeys)."""


@dataclass(frozen=True)
class SignedIn:
    """An account proven by its login secret and a second factor, and which factor."""

    account: AccountRecord
    method: str  # "totp", "sms", "passkey" or "recovery"


class AccountDesk:
    """Sign-up and sign-in against the store; every method blocks (run it in a thread).

    A factor the installation does not allow is given as None (``totp``,
    ``passkeys``, ``texts``): it cannot be enrolled and no longer signs in;
    recovery codes always do, so nobody is shut out by a change of policy.
    """

    def __init__(
        self,
        store: Store,
        totp: TOTP | None,
        lookup_key: bytes,
        recovery_key: bytes,
        reset_key: bytes,
        passkeys: Passkeys | None = None,
        texts: TextCodes | None = None,
    ) -> None:
        self.store = store
        self.accounts = Accounts(store)
        self.totp = totp
        self.passkeys = passkeys  # None: the portal's URL has no host name to bind them to
        self.texts = texts
        self._lookup_key = lookup_key
        self._recovery_key = recovery_key
        self._reset_key = reset_key
        self._hasher = PasswordHasher()
        # Checked against when an address has no account: as slow as a real one.
        self._dummy = self._hasher.hash(keys.random_bytes(LOGIN_SECRET_SIZE))

    def sign_up(
        self, address: str, upload: KeyUpload, totp_token: str, totp_code: str, now: datetime
    ) -> list[str]:
        """Create the account with TOTP as its second factor, once the code from the
        enrolment proves the authenticator has the seed; the recovery codes, to be shown
        once (only their HMACs are kept). TOTPError for a wrong code or enrolment;
        AccountExists if the address has an account."""
        totp = self._allowed(self.totp)
        address = address.lower()
        seed = totp.open_enrolment(totp_token, address, now)
        step = totp.check(seed, totp_code, None, now)
        if step is None:
            raise TOTPError("the code from the authenticator app is not right")
        # The enrolment's code is spent: it cannot sign in afterwards.
        return self._create(address, upload, "totp", totp.seal_seed(seed, address), step, now)

    def sign_up_by_text(
        self, address: str, upload: KeyUpload, phone: str, token: str, code: str, now: datetime
    ) -> list[str]:
        """Create the account with codes by text to ``phone`` as its second factor, once
        the code sent there (:meth:`text_enrolment`) proves the phone is the person's;
        the recovery codes. TextCodeError for a wrong code; AccountExists."""
        texts = self._allowed(self.texts)
        address = address.lower()
        issued = texts.check(token, code, "enrol", address, phone, None, now)
        if issued is None:
            raise TextCodeError("the code from the text message is not right")
        return self._create(address, upload, "sms", texts.seal_phone(phone, address), issued, now)

    def text_enrolment(self, address: str, phone: str, now: datetime) -> tuple[str, str]:
        """(token, code) to prove ``phone`` (E.164): the code goes by text."""
        return self._allowed(self.texts).challenge("enrol", address, phone, now)

    def _create(
        self, address: str, upload: KeyUpload, kind: str, secret: bytes, step: int, now: datetime
    ) -> list[str]:
        record = AccountRecord(
            address=address,
            created_at=now,
            kdf=KDF,
            kdf_iterations=upload.iterations,
            kdf_salt=upload.salt,
            login_verifier=self._hasher.hash(upload.login_secret),
            public_key=upload.public_key,
            encrypted_private_key=upload.encrypted_private_key,
        )
        recovery = new_recovery_codes()
        hashes = [self._recovery_hash(address, code) for code in recovery]
        self.accounts.create(record, kind, secret, step, hashes)
        return recovery

    @staticmethod
    def _allowed(factor: _F | None) -> _F:
        if factor is None:
            raise FactorOff()
        return factor

    def _recovery_hash(self, address: str, code: str) -> bytes:
        normal = _normal_recovery_code(code) or ""
        message = _RECOVERY_LABEL + address.lower().encode() + b"\x00" + normal.encode()
        return hmac.digest(self._recovery_key, message, "sha256")

    def unlocking(self, address: str) -> Unlocking:
        """The KDF parameters for ``address``; made up, the same each time, when it has
        no account or one that signs in with single sign-on (no password opens it)."""
        account = self.store.get_account(address)
        if account is not None and account.kdf == KDF:  # not one that signs in with SSO
            return Unlocking(account.kdf, account.kdf_iterations, account.kdf_salt)
        salt = hmac.digest(self._lookup_key, _FAKE_SALT + address.lower().encode(), "sha256")
        return Unlocking(KDF, DEFAULT_ITERATIONS, salt[:SALT_SIZE])

    def sign_in(
        self,
        address: str,
        login_secret: bytes,
        code: str,
        now: datetime,
        passkey: tuple[str, str] | None = None,
        text_token: str | None = None,
    ) -> SignedIn | None:
        """The account if the login secret and the second factor are right, else None, the
        same for every reason. The factor: the TOTP code (its step is spent), a recovery
        code (spent), with ``text_token`` the code sent by text (spent), or with
        ``passkey`` (token, assertion) one of the account's passkeys. A person the
        organisation's directory deactivated gets None too, the same answer as a wrong
        password, after the same work."""
        account = self._password_right(address, login_secret)
        if account is None:
            return None
        if passkey is not None:
            right = self._passkey_signed(account, *passkey, now)
            return SignedIn(account, "passkey") if right else None
        method = self._code_right(account, code, now, text_token)
        return SignedIn(account, method) if method is not None else None

    def _password_right(self, address: str, login_secret: bytes) -> AccountRecord | None:
        """The account if ``login_secret`` is its own and the organisation's directory has
        not deactivated its holder; as slow for an unknown address, and the same None for
        every reason."""
        account = self.store.get_account(address)
        verifier = account.login_verifier if account is not None else self._dummy
        right: bool
        try:
            right = self._hasher.verify(verifier, login_secret)
        except (VerificationError, InvalidHashError):
            right = False
        if not right or account is None or self.store.directory_active(address) is False:
            return None
        return account

    def text_sign_in(
        self, address: str, login_secret: bytes, now: datetime
    ) -> tuple[str, str | None, str | None]:
        """(token, code, phone) for signing in with a code by text: code and phone None
        unless the password is right and the account has a phone (the token looks the
        same either way, so the answer tells nothing). FactorOff when texts are off."""
        texts = self._allowed(self.texts)
        account = self._password_right(address, login_secret)
        factor = self.accounts.factor(address, "sms") if account is not None else None
        phone = self._phone(factor.secret, address) if factor is not None else None
        token, code = texts.challenge("sign-in", address, phone or "", now)
        return (token, code, phone) if phone is not None else (token, None, None)

    def _phone(self, sealed: bytes, address: str) -> str | None:
        try:
            return self._allowed(self.texts).open_phone(sealed, address)
        except TextCodeError:
            return None

    def _code_right(
        self, account: AccountRecord, code: str, now: datetime, text_token: str | None = None
    ) -> str | None:
        """The method if ``code`` is a recovery code, the one sent with ``text_token``, or
        the app's current code (each spent once); else None."""
        if _normal_recovery_code(code) is not None:  # instead of the usual code, once
            digest = self._recovery_hash(account.address, code)
            spent = self.accounts.spend_recovery_code(account.address, digest)
            return "recovery" if spent else None
        if text_token is not None:
            return "sms" if self._text_code_right(account, text_token, code, now) else None
        return "totp" if self._totp_right(account, code, now) else None

    def _totp_right(self, account: AccountRecord, code: str, now: datetime) -> bool:
        factor = self.accounts.factor(account.address, "totp")
        if factor is None or self.totp is None:
            return False
        try:
            seed = self.totp.open_seed(factor.secret, account.address)
        except TOTPError:
            return False
        step = self.totp.check(seed, code, factor.last_step, now)
        return step is not None and self.accounts.spend_step(factor.factor_id, step, now)

    def _text_code_right(
        self, account: AccountRecord, token: str, code: str, now: datetime
    ) -> bool:
        factor = self.accounts.factor(account.address, "sms")
        if factor is None or self.texts is None:
            return False
        phone = self._phone(factor.secret, account.address)
        if phone is None:
            return False
        issued = self.texts.check(
            token, code, "sign-in", account.address, phone, factor.last_step, now
        )
        return issued is not None and self.accounts.spend_step(factor.factor_id, issued, now)

    # a forgotten password

    def reset_request(self, address: str, now: datetime) -> tuple[str, str | None]:
        """(token, code) for a password reset: the token goes to the browser, the code to
        the mailbox; code None when the address has no account (the token looks the same,
        and nothing is sent). The token carries the code as an HMAC, bound to the time and
        to the account's current verifier, so that it is spent by the reset it allows."""
        account = self.store.get_account(address)
        code = "".join(secrets.choice("0123456789") for _ in range(RESET_CODE_LENGTH))
        verifier = account.login_verifier if account is not None else ""
        issued = int(now.timestamp()).to_bytes(8, "big")
        token = keys.b64url(issued + self._reset_mac(address, code, issued, verifier))
        return token, code if account is not None else None

    def reset(
        self,
        address: str,
        token: str,
        email_code: str,
        code: str,
        upload: KeyUpload,
        now: datetime,
        text_token: str | None = None,
    ) -> AccountRecord | None:
        """A new key pair and password for the account whose mailbox got ``email_code`` and
        whose app, phone (``text_token``) or recovery code gave ``code``; None if either is
        wrong, the same for every reason. What was sealed to the old key is shredded:
        nobody can open it now."""
        account = self.store.get_account(address)
        if account is None or not self._reset_token_right(account, token, email_code, now):
            return None
        if self.store.directory_active(address) is False:  # a reset signs in: not for them
            return None
        if self._code_right(account, code, now, text_token) is None:
            return None
        self.accounts.reset(
            account.address,
            public_key=upload.public_key,
            salt=upload.salt,
            login_verifier=self._hasher.hash(upload.login_secret),
            encrypted_private_key=upload.encrypted_private_key,
        )
        return self.store.get_account(address)

    def text_reset(
        self, address: str, token: str, email_code: str, now: datetime
    ) -> tuple[str, str | None, str | None]:
        """(token, code, phone) for the second factor of a password reset, by text: code
        and phone None unless the emailed code is right and the account has a phone."""
        texts = self._allowed(self.texts)
        account = self.store.get_account(address)
        proven = account is not None and self._reset_token_right(account, token, email_code, now)
        factor = self.accounts.factor(address, "sms") if proven else None
        phone = self._phone(factor.secret, address) if factor is not None else None
        text_token, code = texts.challenge("sign-in", address, phone or "", now)
        return (text_token, code, phone) if phone is not None else (text_token, None, None)

    def _reset_token_right(
        self, account: AccountRecord, token: str, email_code: str, now: datetime
    ) -> bool:
        try:
            data = keys.b64url_decode(token)
        except ValueError:
            return False
        if len(data) != 8 + 32:
            return False
        issued, mac = data[:8], data[8:]
        age = now.timestamp() - int.from_bytes(issued, "big")
        if not -60 <= age <= RESET_MINUTES * 60:
            return False
        code = "".join(email_code.split())
        right = self._reset_mac(account.address, code, issued, account.login_verifier)
        return hmac.compare_digest(mac, right)

    def _reset_mac(self, address: str, code: str, issued: bytes, verifier: str) -> bytes:
        message = b"\x00".join(
            (_RESET_LABEL, address.lower().encode(), code.encode(), issued, verifier.encode())
        )
        return hmac.digest(self._reset_key, message, "sha256")

    def change_password(self, account: AccountRecord, upload: PasswordUpload) -> None:
        """The account's new salt, login verifier and sealed private key (the key pair
        stays, so every message keeps opening); every session of the account ends.
        The caller has checked the current password and code (:meth:`sign_in`)."""
        self.accounts.change_password(
            account.address,
            salt=upload.salt,
            login_verifier=self._hasher.hash(upload.login_secret),
            encrypted_private_key=upload.encrypted_private_key,
        )

    def delete(self, account: AccountRecord) -> int:
        """Delete the account and crypto-shred what was sealed to it; the number of
        readers whose wrapped key went. The caller has checked password and code."""
        return self.accounts.delete(account.address)

    def add_phone(
        self, account: AccountRecord, phone: str, token: str, code: str, now: datetime
    ) -> None:
        """Codes by text to ``phone`` for the signed-in account, in place of any number it
        had, once the code sent there (:meth:`text_enrolment`) is right; TextCodeError."""
        texts = self._allowed(self.texts)
        issued = texts.check(token, code, "enrol", account.address, phone, None, now)
        if issued is None:
            raise TextCodeError("the code from the text message is not right")
        sealed = texts.seal_phone(phone, account.address)
        self.accounts.set_factor(account.address, "sms", sealed, issued, now)

    def add_totp(self, account: AccountRecord, token: str, code: str, now: datetime) -> None:
        """An authenticator app for the signed-in account, in place of any it had, once a
        code proves the app has the enrolment's seed; TOTPError."""
        totp = self._allowed(self.totp)
        seed = totp.open_enrolment(token, account.address, now)
        step = totp.check(seed, code, None, now)
        if step is None:
            raise TOTPError("the code from the authenticator app is not right")
        sealed = totp.seal_seed(seed, account.address)
        self.accounts.set_factor(account.address, "totp", sealed, step, now)

    def phone_of(self, account: AccountRecord) -> str | None:
        """The account's number for codes by text, or None."""
        factor = self.accounts.factor(account.address, "sms")
        return self._phone(factor.secret, account.address) if factor is not None else None

    def _passkey_signed(
        self, account: AccountRecord, token: str, assertion: str, now: datetime
    ) -> bool:
        if self.passkeys is None:
            return False
        stored = self.accounts.factors(account.address, "passkey")
        credentials = {f.factor_id: Credential.from_stored(f.secret, f.last_step) for f in stored}
        try:
            used = self.passkeys.authenticate(token, assertion, list(credentials.values()), now)
        except PasskeyError:
            return False
        factor_id = next(i for i, c in credentials.items() if c.credential_id == used.credential_id)
        return self.accounts.advance_count(factor_id, used.sign_count, now)

    def add_passkey(
        self, account: AccountRecord, token: str, credential: str, now: datetime
    ) -> None:
        """Register a passkey for the signed-in account; PasskeyError if it does not verify."""
        if self.passkeys is None:
            raise PasskeyError("passkeys need a portal URL with a host name")
        made = self.passkeys.register(account.address, token, credential, now)
        self.accounts.add_factor(account.address, "passkey", made.stored(), made.sign_count, now)

    def passkey_registration(self, address: str, now: datetime) -> tuple[str, str]:
        """Creation options for a new passkey of ``address`` (not its existing ones)."""
        if self.passkeys is None:
            raise PasskeyError("passkeys need a portal URL with a host name")
        existing = [
            Credential.from_stored(f.secret, f.last_step).credential_id
            for f in self.accounts.factors(address, "passkey")
        ]
        return self.passkeys.registration(address, existing, now)
