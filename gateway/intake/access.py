"""Who may hand mail to Sealgate: trusted networks, and SMTP AUTH accounts.

Sealgate must never be an open relay. A client may submit when its address is
in ``smtp.allow_networks`` or it authenticated with a configured account.
Passwords are stored only as Argon2id hashes; checking one takes tens of
milliseconds, so it runs in a thread and failures are counted per client
address, which is locked out after ``smtp.auth.max_failures``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway import config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_ip(host: str) -> IPAddress | None:
    """The client's address, with IPv4-mapped IPv6 (``::ffff:1.2.3.4``) unwrapped."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(host: str, networks: Iterable[config.IPNetwork]) -> bool:
    address = client_ip(host)
    return address is not None and any(address in network for network in networks)


class Credentials:
    """SMTP AUTH accounts, checked against their Argon2id hashes, with lockout."""

    def __init__(self, settings: config.Auth) -> None:
        self._hashes = {user.name: user.password_hash for user in settings.users}
        self._hasher = PasswordHasher()
        # A hash to check unknown names against, so that they take as long as known ones.
        self._decoy = self._hasher.hash("sealgate decoy password")
        self._max_failures = settings.max_failures
        self._lockout = settings.lockout
        self._failures: dict[str, deque[float]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def locked_out(self, client: str) -> bool:
        failures = self._failures.get(client)
        if not failures:
            return False
        horizon = time.monotonic() - self._lockout
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return False
        return len(failures) >= self._max_failures

    async def verify(self, client: str, login: bytes, password: bytes) -> str | None:
        """The user name if ``login``/``password`` match an account, else None."""
        name = login.decode("utf-8", "replace")
        stored = self._hashes.get(name, self._decoy)
        ok = await asyncio.to_thread(self._check, stored, password)
        if ok and name in self._hashes:
            self._failures.pop(client, None)
            return name
        self._failures.setdefault(client, deque(maxlen=self._max_failures)).append(time.monotonic())
        return None

    def _check(self, stored: str, password: bytes) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def hash_password(password: str) -> str:
    """An Argon2id hash for ``smtp.auth.users``, with argon2-cffi's current defaults."""
    return PasswordHasher().hash(password)
