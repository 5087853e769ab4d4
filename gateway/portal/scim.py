"""SCIM 2.0 on the portal (``/scim/v2``): who may use it, from the ``[scim]`` settings.

The bearer token (RFC 6750; RFC 7644 §2) is the content of ``scim.token_file``,
kept only as its SHA-256 and compared in constant time. The protocol itself is
gateway.portal.scimapp, imported only when SCIM is on: scim2-models and
scim2-server cost every process half a second to import.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import timedelta

from gateway import config

PREFIX = "/scim/v2"
MIN_TOKEN = 32  # characters; `openssl rand -base64 32` gives 44


@dataclass(frozen=True)
class ScimAccess:
    """The SCIM settings the portal serves with; the token only as its SHA-256."""

    token_digest: bytes = field(repr=False)
    attempts: int
    lockout: timedelta
    max_request_size: int

    def token_ok(self, authorization: str | None) -> bool:
        """Whether ``Authorization`` carries the token: ``Bearer <token>``."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        sent = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        right = hmac.compare_digest(sent, self.token_digest)
        return right and scheme.lower() == "bearer"


def scim_access(settings: config.Scim) -> ScimAccess | None:
    """The access ``[scim]`` configures (None: SCIM is off); ConfigError for a short token."""
    if not settings.enabled or settings.token_file is None:
        return None
    token = settings.token_file.read_text(encoding="utf-8").strip()
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        problem = f"scim.token_file: the token must be at least {MIN_TOKEN} characters, no spaces"
        raise config.ConfigError("config", [problem])
    return ScimAccess(
        hashlib.sha256(token.encode("utf-8")).digest(),
        settings.token_attempts,
        timedelta(minutes=settings.lockout_minutes),
        settings.max_request_size,
    )
