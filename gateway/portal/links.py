"""The links in a sender's mail: revoke (in the receipt) and release (in the held notice).

Each carries a capability: an HMAC, under a key derived from the installation
secret (gateway.installsecret), of the purpose and the envelope id. Whoever
has the link may act on that one envelope for that one purpose; nobody can
make one for another envelope.
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.envelope import keys


def sender_token(secret: bytes, purpose: str, envelope_id: str) -> str:
    """The capability in a sender's link: an HMAC of the purpose and the envelope id."""
    message = f"sealgate {purpose}\x00{envelope_id}".encode()
    return keys.b64url(hmac.new(secret, message, hashlib.sha256).digest()[:24])


def revoke_url(base: str, secret: bytes, envelope_id: str) -> str:
    """The sender's revoke link for an envelope (in the "sent securely" receipt)."""
    return f"{base}/s/{envelope_id}/{sender_token(secret, 'revoke', envelope_id)}"


def release_url(base: str, secret: bytes, envelope_id: str) -> str:
    """The sender's page for held recipients: supply what is missing, release or cancel."""
    return f"{base}/h/{envelope_id}/{sender_token(secret, 'release', envelope_id)}"
