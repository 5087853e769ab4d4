"""The initial schema: envelopes, parts, readers, events (append-only), accounts.

Revision ID: 0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("state IN ('sealed', 'delivered')")

_SQLITE_APPEND_ONLY = [
    f"""CREATE TRIGGER events_append_only_{action.lower()} BEFORE {action} ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"""
    for action in ("UPDATE", "DELETE")
]
_POSTGRESQL_APPEND_ONLY = [
    """CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'events are append-only'; END $$""",
    """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only()""",
    """CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()""",
]


def _envelope_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["envelope_id"],
        ["envelopes.envelope_id"],
        name=f"fk_{table}_envelope_id_envelopes",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "envelopes",
        sa.Column("envelope_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("queue_id", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("original_size", sa.BigInteger(), nullable=False),
        sa.Column("sealed_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("envelope_id", name="pk_envelopes"),
        sa.CheckConstraint(
            "state IN ('sealed', 'delivered', 'revoked', 'expired', 'superseded')",
            name=op.f("ck_envelopes_state"),
        ),
    )
    op.create_index("ix_envelopes_expires_at", "envelopes", ["expires_at"])
    op.create_index("ix_envelopes_created_at", "envelopes", ["created_at"])
    op.create_index(
        "uq_envelopes_live_idempotency_key",
        "envelopes",
        ["idempotency_key"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    op.create_table(
        "parts",
        sa.Column("envelope_id", sa.String(32), nullable=False),
        sa.Column("part_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("plaintext_size", sa.BigInteger(), nullable=False),
        sa.Column("sealed_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("envelope_id", "part_id", name="pk_parts"),
        _envelope_fk("parts"),
        sa.CheckConstraint(
            "kind IN ('manifest', 'original', 'attachment')", name=op.f("ck_parts_kind")
        ),
    )
    op.create_table(
        "readers",
        sa.Column("reader_id", sa.String(32), nullable=False),
        sa.Column("envelope_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("encrypted_private_key", sa.LargeBinary(), nullable=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=True),
        sa.Column("link_id_hash", sa.LargeBinary(32), nullable=True),
        sa.PrimaryKeyConstraint("reader_id", name="pk_readers"),
        _envelope_fk("readers"),
        sa.CheckConstraint("kind IN ('guest', 'account')", name=op.f("ck_readers_kind")),
    )
    op.create_index("ix_readers_envelope_id", "readers", ["envelope_id"])
    op.create_index("ix_readers_link_id_hash", "readers", ["link_id_hash"], unique=True)
    op.create_table(
        "events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("envelope_id", sa.String(32), nullable=True),
        sa.Column("reader_id", sa.String(32), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
    )
    op.create_index("ix_events_envelope_id", "events", ["envelope_id"])
    for statement in _append_only_statements():
        op.execute(statement)
    op.create_table(
        "accounts",
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("kdf", sa.String(32), nullable=False),
        sa.Column("kdf_iterations", sa.Integer(), nullable=False),
        sa.Column("kdf_salt", sa.LargeBinary(), nullable=False),
        sa.Column("login_verifier", sa.Text(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("encrypted_private_key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_accounts"),
    )


def downgrade() -> None:
    op.drop_table("accounts")
    op.drop_table("events")  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION events_append_only()")
    op.drop_table("readers")
    op.drop_table("parts")
    op.drop_table("envelopes")


def _append_only_statements() -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        return _POSTGRESQL_APPEND_ONLY
    if dialect == "sqlite":
        return _SQLITE_APPEND_ONLY
    raise NotImplementedError(f"no append-only trigger for {dialect}")
