"""The portal: second factors and threads; codes, throttles, sessions, replies, holds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id_column() -> sa.Column[int]:
    return sa.Column(
        "code_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_index(
        "ix_events_envelope_reader_kind", "events", ["envelope_id", "reader_id", "kind"]
    )
    with op.batch_alter_table("envelopes") as batch:
        batch.add_column(sa.Column("message_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sender_name", sa.Text(), nullable=True))
    with op.batch_alter_table("readers") as batch:
        batch.add_column(
            sa.Column("methods", sa.String(64), nullable=False, server_default="email")
        )
        batch.add_column(sa.Column("access_code_hash", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(32), nullable=True))
    op.create_table(
        "codes",
        _id_column(),
        sa.Column("reader_id", sa.String(32), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_id"],
            ["readers.reader_id"],
            name="fk_codes_reader_id_readers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_id", name="pk_codes"),
    )
    op.create_index("ix_codes_reader_id", "codes", ["reader_id"])
    op.create_table(
        "throttles",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_throttles"),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reader_id", sa.String(32), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_sessions"),
    )
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "replies",
        sa.Column("reply_id", sa.String(32), nullable=False),
        sa.Column("envelope_id", sa.String(32), nullable=False),
        sa.Column("reader_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("reply_id", name="pk_replies"),
    )
    op.create_index("ix_replies_next_attempt_at", "replies", ["next_attempt_at"])
    op.create_table(
        "threads",
        sa.Column("message_id_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("envelope_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("message_id_hash", name="pk_threads"),
    )
    op.create_table(
        "holds",
        sa.Column("envelope_id", sa.String(32), nullable=False),
        sa.Column("reader_id", sa.String(32), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("missing", sa.Text(), nullable=False),
        sa.Column("sealed_link", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("envelope_id", "reader_id", name="pk_holds"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_envelope_reader_kind", "events")
    for table in ("holds", "threads", "replies", "sessions", "throttles", "codes"):
        op.drop_table(table)
    with op.batch_alter_table("readers") as batch:
        for column in ("phone", "access_code_hash", "methods"):
            batch.drop_column(column)
    with op.batch_alter_table("envelopes") as batch:
        batch.drop_column("sender_name")
        batch.drop_column("message_id")
