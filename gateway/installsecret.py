"""The installation's secret (``loop.secret_file``) and every key derived from it.

One secret file keys everything that must verify across processes, nodes and
restarts: the loop marker, the idempotency keys, the access codes, the
sender's revoke and release links and the accounts' TOTP seeds. Each use has a
key of its own, an HMAC of the secret under a label; the labels are written here
and nowhere else, so the pipeline that makes a code or a link and the portal
that checks it cannot disagree on how its key is made.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from gateway import config
from gateway.outbound.loopmarker import load_or_create_secret

# Changing a label changes its key: every code, link or idempotency key made before
# stops verifying. They are part of the installation's stored state: never edit them.
_IDEMPOTENCY = "sealgate idempotency key"
_ACCESS_CODES = "sealgate portal codes"
_SENDER_LINKS = "sealgate sender links"
_TOTP = "sealgate totp seeds"
_ACCOUNT_LOOKUPS = "sealgate account lookups"
_RECOVERY_CODES = "sealgate recovery codes"
_PASSKEYS = "sealgate passkey challenges"
_ACCOUNT_RESETS = "sealgate account reset codes"
_ACCOUNT_TEXTS = "sealgate account text codes"
_SSO_STATES = "sealgate sso states"
_SSO_TOKENS = "sealgate sso account tokens"


class Secrets:
    """The keys derived from one installation secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def load(cls, path: Path | None) -> Secrets:
        """The secret in ``path`` (created with a random secret when missing); problems as
        configuration errors naming ``loop.secret_file``."""
        if path is None:
            raise config.ConfigError("config", ["loop.secret_file: must be set"])
        try:
            return cls(load_or_create_secret(path))
        except OSError as error:
            reason = f"cannot read or create {path}: {error.strerror}"
            raise config.ConfigError("config", [f"loop.secret_file: {reason}"]) from None
        except ValueError as error:
            raise config.ConfigError("config", [f"loop.secret_file: {error}"]) from None

    def __repr__(self) -> str:
        return "Secrets(...)"  # never the secret, in a log or a traceback

    @property
    def loop_marker(self) -> bytes:
        """The loop marker's key: the secret itself (the marker's HMAC has its own context)."""
        return self._secret

    @property
    def idempotency(self) -> bytes:
        """Keys the idempotency HMAC over a message's sender, recipients and body."""
        return self._derive(_IDEMPOTENCY)

    @property
    def access_codes(self) -> bytes:
        """Keys the HMAC of access codes and one-time codes (sealing and the portal)."""
        return self._derive(_ACCESS_CODES)

    @property
    def sender_links(self) -> bytes:
        """Keys the tokens of the sender's revoke and release links."""
        return self._derive(_SENDER_LINKS)

    @property
    def totp(self) -> bytes:
        """Seals the accounts' TOTP seeds at rest and the seed inside an enrolment token."""
        return self._derive(_TOTP)

    @property
    def account_lookups(self) -> bytes:
        """Keys the made-up salts the portal gives for addresses without an account."""
        return self._derive(_ACCOUNT_LOOKUPS)

    @property
    def recovery_codes(self) -> bytes:
        """Keys the HMAC under which an account's recovery codes are stored."""
        return self._derive(_RECOVERY_CODES)

    @property
    def passkeys(self) -> bytes:
        """Keys the HMAC that binds a passkey challenge to its purpose, account and time."""
        return self._derive(_PASSKEYS)

    @property
    def account_resets(self) -> bytes:
        """Keys the token that carries a password reset's emailed code (as an HMAC)."""
        return self._derive(_ACCOUNT_RESETS)

    @property
    def account_texts(self) -> bytes:
        """Keys the tokens of codes sent by text to account holders, and seals their numbers."""
        return self._derive(_ACCOUNT_TEXTS)

    @property
    def sso_states(self) -> bytes:
        """Seals the state, nonce and PKCE verifier of a sign-in while the browser is away."""
        return self._derive(_SSO_STATES)

    @property
    def sso_tokens(self) -> bytes:
        """Seals the tokens with which a browser creates or re-seals an SSO account's key."""
        return self._derive(_SSO_TOKENS)

    def _derive(self, label: str) -> bytes:
        return hmac.new(self._secret, label.encode(), "sha256").digest()
