"""Who gets one of the SMTP connection slots, so that no client can take them all.

The MTA in front (a client in ``smtp.allow_networks``; behind Postfix that is
127.0.0.1 itself) must always get a connection: it carries all the mail.
Everyone else (clients that must authenticate) shares what is left of
``smtp.max_connections`` once ``smtp.reserved_share`` is kept apart, and one
address may hold at most ``smtp.max_connections_per_client`` of those. An
IPv6 client counts by its /64, the block one subscriber usually gets.

The MTA itself has no per-address limit: every connection it makes comes from
the same address.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from gateway import config
from gateway.intake.access import client_ip

TOO_MANY = "421 4.7.0 Too many connections; please try again later"
TOO_MANY_FROM_CLIENT = "421 4.7.0 Too many connections from your address; please try again later"

C = TypeVar("C", bound=Hashable)


def client_key(host: str) -> str:
    """What the per-address limit counts: the address, or an IPv6 address's /64."""
    address = client_ip(host)
    if address is None:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Connections(Generic[C]):
    """The open connections of one process, with what each kind of client holds."""

    def __init__(self) -> None:
        self._all: set[C] = set()
        self._others: dict[C, str] = {}
        self._per_client: Counter[str] = Counter()

    def admit(self, connection: C, host: str, allowed: bool, settings: config.SMTP) -> str | None:
        """Count ``connection`` in, or the 421 reply that refuses it.

        ``allowed``: the client is in ``smtp.allow_networks``.
        """
        if len(self._all) >= settings.max_connections:
            return TOO_MANY
        if not allowed:
            key = client_key(host)
            if len(self._others) >= settings.connections_for_others:
                return TOO_MANY
            if self._per_client[key] >= settings.max_connections_per_client:
                return TOO_MANY_FROM_CLIENT
            self._others[connection] = key
            self._per_client[key] += 1
        self._all.add(connection)
        return None

    def discard(self, connection: C) -> None:
        self._all.discard(connection)
        key = self._others.pop(connection, None)
        if key is not None:
            self._per_client[key] -= 1
            if not self._per_client[key]:
                del self._per_client[key]

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._all))
