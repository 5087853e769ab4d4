"""The database schema as SQLAlchemy Core tables: the one description of the tables.

The migrations create exactly this (a test compares the migrated database with
:data:`metadata`), and the :class:`~gateway.store.database.Store` queries it.
What is deliberately absent: message content. There is no column for a
subject, a body or a file name; those live only inside the encrypted manifest.

Timestamps go through :class:`UTCDateTime`: ``timestamptz`` on PostgreSQL and
integer microseconds since the epoch on SQLite, which has no date type, so that
comparisons such as ``expires_at <= now`` are numeric there and never depend
on how a text form sorts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)

# The timestamp type lives in the migrations' frozen module, and this schema uses that very
# class: migrations 0001 and 0002 import it from here (written before the rule), so it can
# change only as a frozen file changes, never under them (tests/test_migrations.py).
from gateway.store.migrations.types import UTCDateTime as UTCDateTime
from gateway.store.records import LIVE_STATES, PART_KINDS, READER_KINDS, STATES


def _in(column: str, values: tuple[str, ...]) -> str:
    """An SQL ``column IN (...)`` over constant names (never user input)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


LIVE_CONDITION = text(_in("state", LIVE_STATES))

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

envelopes = Table(
    "envelopes",
    metadata,
    Column("envelope_id", String(32), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("sender", Text(), nullable=False),
    Column("queue_id", Text(), nullable=False),
    Column("idempotency_key", String(64), nullable=False),
    Column("original_size", BigInteger(), nullable=False),
    Column("sealed_size", BigInteger(), nullable=False),
    Column("message_id", Text(), nullable=True),
    Column("sender_name", Text(), nullable=True),
    CheckConstraint(_in("state", STATES), name="state"),
    Index("ix_envelopes_expires_at", "expires_at"),
    Index("ix_envelopes_created_at", "created_at"),
    # Two live envelopes for one message are impossible, whatever the callers race.
    Index(
        "uq_envelopes_live_idempotency_key",
        "idempotency_key",
        unique=True,
        sqlite_where=LIVE_CONDITION,
        postgresql_where=LIVE_CONDITION,
    ),
)

parts = Table(
    "parts",
    metadata,
    Column(
        "envelope_id",
        String(32),
        ForeignKey("envelopes.envelope_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("part_id", Integer(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("plaintext_size", BigInteger(), nullable=False),
    Column("sealed_size", BigInteger(), nullable=False),
    PrimaryKeyConstraint("envelope_id", "part_id"),
    CheckConstraint(_in("kind", PART_KINDS), name="kind"),
)

readers = Table(
    "readers",
    metadata,
    Column("reader_id", String(32), primary_key=True),
    Column(
        "envelope_id",
        String(32),
        ForeignKey("envelopes.envelope_id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Readers come back in the order the sealing code gave them.
    Column("position", Integer(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("address", Text(), nullable=False),
    Column("wrapped_key", LargeBinary(), nullable=True),
    Column("encrypted_private_key", LargeBinary(), nullable=True),
    Column("public_key", LargeBinary(), nullable=True),
    Column("link_id_hash", LargeBinary(32), nullable=True),
    Column("methods", String(64), nullable=False, server_default="email"),
    Column("access_code_hash", LargeBinary(32), nullable=True),
    Column("phone", String(32), nullable=True),
    # Wrong access codes over the envelope's life (the budget: portal.access_code_attempts).
    Column("access_code_failures", Integer(), nullable=False, server_default="0"),
    CheckConstraint(_in("kind", READER_KINDS), name="kind"),
    Index("ix_readers_envelope_id", "envelope_id"),
    Index("ix_readers_link_id_hash", "link_id_hash", unique=True),
)

# Append-only: the Store offers no update or delete, and a trigger (see the migration)
# refuses them in the database too. No foreign key: the trail outlives what it describes.
events = Table(
    "events",
    metadata,
    Column(
        "event_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("envelope_id", String(32), nullable=True),
    Column("reader_id", String(32), nullable=True),
    Column("address", Text(), nullable=True),
    Column("detail", Text(), nullable=False),
    Index("ix_events_envelope_id", "envelope_id"),
    # A reader's events of one kind (the first "opened", for the read notice).
    Index("ix_events_envelope_reader_kind", "envelope_id", "reader_id", "kind"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("address", Text(), primary_key=True),  # lower-cased
    Column("created_at", UTCDateTime(), nullable=False),
    Column("kdf", String(32), nullable=False),
    Column("kdf_iterations", Integer(), nullable=False),
    Column("kdf_salt", LargeBinary(), nullable=False),
    Column("login_verifier", Text(), nullable=False),
    Column("public_key", LargeBinary(), nullable=False),
    Column("encrypted_private_key", LargeBinary(), nullable=False),
)

# An account's inbox: the messages sealed for its address, whatever the case it was written in.
Index("ix_readers_address", func.lower(readers.c.address))
Index("ix_envelopes_sender", func.lower(envelopes.c.sender))  # a sender's messages (/sent)

# The portal's short-lived state: one-time codes, throttles, sessions, queued replies and
# the Message-IDs of protected conversations. Secrets appear only as SHA-256 or HMAC values.

codes = Table(
    "codes",
    metadata,
    Column(
        "code_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column(
        "reader_id",
        String(32),
        ForeignKey("readers.reader_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("method", String(16), nullable=False),
    Column("code_hash", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("failures", Integer(), nullable=False),
    Column("used", Integer(), nullable=False),
    Index("ix_codes_reader_id", "reader_id"),
)

throttles = Table(
    "throttles",
    metadata,
    Column("key", String(128), primary_key=True),  # "link:<reader id>", "client:<address>"
    Column("failures", Integer(), nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("locked_until", UTCDateTime(), nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # "session" (a reader), "device", "account"
    Column("reader_id", String(32), nullable=True),
    Column("address", Text(), nullable=True),
    Column("method", String(16), nullable=True),  # the second factor a device proved
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=True),  # account sessions: idle timeout
    Index("ix_sessions_expires_at", "expires_at"),
)

# An account's second factors. TOTP: the seed sealed under the installation's TOTP key
# (gateway.identity.totp), and the last time step used, so that no code works twice.
account_factors = Table(
    "account_factors",
    metadata,
    Column(
        "factor_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column(
        "address",
        Text(),
        ForeignKey("accounts.address", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(16), nullable=False),  # "totp"
    Column("secret", LargeBinary(), nullable=False),
    Column("last_step", BigInteger(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Index("ix_account_factors_address", "address"),
)

replies = Table(
    "replies",
    metadata,
    Column("reply_id", String(32), primary_key=True),
    Column("envelope_id", String(32), nullable=False),
    Column("reader_id", String(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("state", String(16), nullable=False),  # queued | delivered | failed
    Column("attempts", Integer(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("blob", LargeBinary(), nullable=True),  # encrypted to the reply key; NULL when done
    Index("ix_replies_next_attempt_at", "next_attempt_at"),
)

threads = Table(
    "threads",
    metadata,
    Column("message_id_hash", LargeBinary(32), primary_key=True),
    Column("envelope_id", String(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Recipients the policy held: their link, encrypted to the gateway's reply key, waits for
# the sender's release (then the notification goes out) or cancel. NULL once decided.
holds = Table(
    "holds",
    metadata,
    Column("envelope_id", String(32), nullable=False),
    Column("reader_id", String(32), nullable=False),
    Column("address", Text(), nullable=False),
    Column("missing", Text(), nullable=False),  # comma list of factors: "phone,access-code"
    Column("reason", Text(), nullable=False, server_default=""),  # the rule's words
    Column("sealed_link", LargeBinary(), nullable=True),
    Column("state", String(16), nullable=False),  # held | released | cancelled
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("envelope_id", "reader_id"),
)

# Links owed to guest readers until their message is settled (gateway.store.pending):
# sealed to the organisation's reply key, so that a retry after a 4xx sends each
# reader not yet notified the same link instead of sealing afresh. A row goes when
# its reader's notification is accepted, the rest when the envelope is settled
# (delivered) or ends.
pending_links = Table(
    "pending_links",
    metadata,
    Column("envelope_id", String(32), nullable=False),
    Column("reader_id", String(32), nullable=False),
    Column("sealed_link", LargeBinary(), nullable=False),
    PrimaryKeyConstraint("envelope_id", "reader_id"),
)

# The organisation's directory, provisioned over SCIM (gateway.identity.directory) or kept
# by the directory sync (gateway.store.directorysync): its people by address (lower-cased)
# with whether they may sign in, their e-mail addresses, and groups. ``version`` grows with
# every change (the resource's ETag). ``sync_source`` names the sync that keeps a row
# (directory_sync.source); NULL: provisioned over SCIM. Deleting a user or a group takes
# its addresses and memberships with it; the audit trail keeps the rest.
directory_users = Table(
    "directory_users",
    metadata,
    Column("user_id", String(32), primary_key=True),  # random, hex
    Column("user_name", Text(), nullable=False, unique=True),  # the address, lower-cased
    Column("external_id", Text(), nullable=True),  # the identity provider's own id
    Column("display_name", Text(), nullable=True),
    Column("name", Text(), nullable=True),  # SCIM "name" as JSON: givenName, familyName, ...
    Column("active", Boolean(), nullable=True),  # NULL: not stated, which is not inactive
    Column("created_at", UTCDateTime(), nullable=False),
    Column("modified_at", UTCDateTime(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("phone", Text(), nullable=True),  # mobile, E.164, for SMS codes (since 0008)
    Column("sync_source", Text(), nullable=True),  # since 0009
    Index("ix_directory_users_external_id", "external_id"),
    Index("ix_directory_users_sync_source", "sync_source", "external_id", unique=True),
)

# Where the directory sync got to, per directory it reads (AD's USN, OpenLDAP's time).
directory_sync = Table(
    "directory_sync",
    metadata,
    Column("source", Text(), primary_key=True),
    Column("cursor", Text(), nullable=False),
    Column("synced_at", UTCDateTime(), nullable=False),
)

directory_emails = Table(
    "directory_emails",
    metadata,
    Column(
        "user_id",
        String(32),
        ForeignKey("directory_users.user_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer(), nullable=False),  # the order the provider gave them
    Column("value", Text(), nullable=False),
    Column("type", Text(), nullable=True),  # "work", "home", "other", ...
    Column("is_primary", Boolean(), nullable=False),
    PrimaryKeyConstraint("user_id", "position"),
)

directory_groups = Table(
    "directory_groups",
    metadata,
    Column("group_id", String(32), primary_key=True),  # random, hex
    Column("display_name", Text(), nullable=False, unique=True),
    Column("external_id", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("modified_at", UTCDateTime(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("sync_source", Text(), nullable=True),  # since 0009
    Index("ix_directory_groups_external_id", "external_id"),
    Index("ix_directory_groups_sync_source", "sync_source", "external_id", unique=True),
)

directory_members = Table(
    "directory_members",
    metadata,
    Column(
        "group_id",
        String(32),
        ForeignKey("directory_groups.group_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "user_id",
        String(32),
        ForeignKey("directory_users.user_id", ondelete="CASCADE"),
        nullable=False,
    ),
    PrimaryKeyConstraint("group_id", "user_id"),
    Index("ix_directory_members_user_id", "user_id"),
)
