"""Short-lived tokens that carry state through the browser and back, sealed so that the
browser can neither read nor change them (single sign-on's state, nonce and PKCE
verifier; the tokens with which a browser creates or re-seals an SSO account's key).

``version 0x01 || issued (8 bytes, seconds) || nonce (12) || AES-256-GCM(JSON)``, with the
label, the issue time and what the token is bound to (an address) as associated data:
a token made for one address, or for another purpose (another label), does not open.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.envelope.keys import b64url, b64url_decode

_VERSION = b"\x01"
_TIME = struct.Struct(">q")
_HEAD = len(_VERSION) + _TIME.size
_NONCE = 12
_TAG = 16
FUTURE = 60  # seconds a token may seem to come from the future (another node's clock)


class TokenError(Exception):
    """The token does not open (``expired`` False) or is too old (``expired`` True)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class SealedTokens:
    def __init__(self, key: bytes, label: bytes) -> None:
        self._aead = AESGCM(key)
        self._label = label

    def seal(self, payload: list[Any], now: float, bound_to: str = "") -> str:
        issued = _TIME.pack(int(now))
        nonce = os.urandom(_NONCE)
        body = json.dumps(payload).encode()
        sealed = self._aead.encrypt(nonce, body, self._aad(issued, bound_to))
        return b64url(_VERSION + issued + nonce + sealed)

    def open(self, token: str, now: float, max_age: float, bound_to: str = "") -> list[Any]:
        """The payload :meth:`seal` sealed at most ``max_age`` seconds before ``now``."""
        try:
            raw = b64url_decode(token)
            if raw[:1] != _VERSION or len(raw) < _HEAD + _NONCE + _TAG:
                raise ValueError("unknown version")
            issued = raw[1:_HEAD]
            nonce, sealed = raw[_HEAD : _HEAD + _NONCE], raw[_HEAD + _NONCE :]
            payload = json.loads(self._aead.decrypt(nonce, sealed, self._aad(issued, bound_to)))
        except (ValueError, InvalidTag):
            raise TokenError("the token is damaged, or made for something else") from None
        if not isinstance(payload, list):
            raise TokenError("the token is damaged")
        if not -FUTURE <= now - _TIME.unpack(issued)[0] <= max_age:
            raise TokenError("the token is too old", expired=True)
        return payload

    def _aad(self, issued: bytes, bound_to: str) -> bytes:
        return self._label + issued + bound_to.lower().encode()
