"""What the store keeps about a sealed envelope, as plain immutable values.

The sealing code builds these records and the store persists them; nothing
here knows SQL. They hold ids, sizes, addresses and key material that is only
usable with a secret the server never has (wrapped keys, encrypted private
keys). Message content (subject, body, file names) never appears in a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

LIVE_STATES = ("sealed", "delivered")  # a reader can reach these
ENDED_STATES = ("revoked", "expired", "superseded")  # crypto-shredded
STATES = LIVE_STATES + ENDED_STATES

PART_KINDS = ("manifest", "original", "attachment")
READER_KINDS = ("guest", "account")
METHODS = ("email", "sms", "access-code")  # second factors a guest may be offered
# The event kinds in use; record_event accepts any short lower-case token so that new
# features can add kinds without a schema change.
EVENT_KINDS = (
    "sealed",
    "expiry",
    "notified",
    "reader-notified",
    "reader-refused",
    "bounced",
    "held-notice",
    "opened",
    "code-sent",
    "code-failed",
    "verified",
    "downloaded",
    "replied",
    "released",
    "revoked",
    "expired",
    "superseded",
    "account-created",
)


@dataclass(frozen=True)
class PartRecord:
    """One encrypted part of an envelope, stored as one blob."""

    part_id: int
    kind: str  # "manifest" | "original" | "attachment"
    plaintext_size: int
    sealed_size: int


@dataclass(frozen=True)
class ReaderRecord:
    """One party that may open an envelope, with the key material only they can use."""

    reader_id: str  # 32 hex chars
    kind: str  # "guest" | "account"
    address: str
    # The wrapped content key, None after shredding: for a guest (format v2) AES-GCM
    # under the link's wrapping key, for an account (and a v1 guest) RSA-OAEP.
    wrapped_key: bytes | None
    # Format v1 guests only, whose envelopes stay readable until they expire: their
    # own key pair's private key (encrypted under the link's KEK) and public key.
    encrypted_private_key: bytes | None
    public_key: bytes | None
    link_id_hash: bytes | None  # 32 bytes, SHA-256 of the link id; guests only; unique
    # How a guest proves it is the recipient (the policy's choice): "email,sms,access-code".
    methods: str = "email"
    access_code_hash: bytes | None = None  # HMAC of the sender's access code, keyed outside
    phone: str | None = None  # for SMS codes, E.164
    access_code_failures: int = 0  # wrong access codes so far, over the envelope's life


@dataclass(frozen=True)
class EnvelopeRecord:
    """A sealed message: its life cycle, sizes, parts and readers."""

    envelope_id: str  # 32 hex chars
    created_at: datetime  # timezone-aware UTC
    expires_at: datetime
    state: str
    sender: str  # envelope sender ("" for <>)
    queue_id: str
    idempotency_key: str  # 64 hex chars
    original_size: int
    sealed_size: int
    message_id: str | None = None  # the original's Message-ID: secure replies thread on it
    sender_name: str | None = None  # the From display name, cleaned: pages name the sender
    parts: tuple[PartRecord, ...] = ()
    readers: tuple[ReaderRecord, ...] = ()

    def is_live(self, now: datetime | None = None) -> bool:
        """Whether a reader may still reach it: sealed or delivered, and not past its expiry
        (the sweep shreds expired envelopes a while later; until then they only look live)."""
        moment = now if now is not None else datetime.now(UTC)
        return self.state in LIVE_STATES and self.expires_at > moment


@dataclass(frozen=True)
class EventRecord:
    """One line of the append-only audit trail: ids, counts and reasons, never content."""

    at: datetime
    kind: str  # see EVENT_KINDS
    envelope_id: str | None
    reader_id: str | None
    address: str | None
    detail: str


@dataclass(frozen=True)
class AccountRecord:
    """A reader with a password: the server keeps a verifier, never the password."""

    address: str  # stored lower-cased
    created_at: datetime
    kdf: str  # "pbkdf2-sha256"
    kdf_iterations: int
    kdf_salt: bytes
    login_verifier: str  # an argon2id hash string
    public_key: bytes  # DER SubjectPublicKeyInfo
    encrypted_private_key: bytes
