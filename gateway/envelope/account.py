"""An account holder's key pair: created once, its private key sealed under the password.

The password never reaches the server in the full product: the browser runs
PBKDF2 and sends only the login secret derived from it. Here the CLI plays
the browser's part (``sealgate account create``) so the hierarchy can be built
and tested before sign-up exists. The server keeps an Argon2id hash of the
login secret, the salt and iteration count, the public key and the encrypted
private key: nothing that opens the private key without the password.
"""

from __future__ import annotations

from datetime import UTC, datetime

from argon2 import PasswordHasher

from gateway.envelope import keys
from gateway.store import AccountRecord

KDF = "pbkdf2-sha256"
DEFAULT_ITERATIONS = 600_000


def create_account(
    address: str, password: str, *, bits: int = 2048, iterations: int = DEFAULT_ITERATIONS
) -> AccountRecord:
    if len(password) < 12:
        raise ValueError("the password must have at least 12 characters")
    address = address.strip().lower()
    salt = keys.random_bytes(16)
    derived = keys.account_keys(password, salt, iterations)
    pair = keys.generate_key_pair(bits)
    return AccountRecord(
        address=address,
        created_at=datetime.now(UTC),
        kdf=KDF,
        kdf_iterations=iterations,
        kdf_salt=salt,
        login_verifier=PasswordHasher().hash(derived.login_secret),
        public_key=pair.public_der,
        encrypted_private_key=keys.encrypt_private_key(
            derived.kek, pair.private_der, address.encode("utf-8")
        ),
    )
