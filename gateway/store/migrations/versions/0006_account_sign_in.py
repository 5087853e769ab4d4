"""Accounts sign in: their second factors, and sessions with an idle timeout.

``account_factors`` keeps each account's second factors: for TOTP the seed,
sealed under a key derived from the installation secret (never in clear), and
the last time step used, so that a code is never accepted twice.
``sessions.last_seen_at`` lets an account session end after a spell of
inactivity as well as at its absolute expiry. An index on the readers'
lower-cased addresses finds an account's messages for its inbox.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.migrations.types import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_factors",
        sa.Column(
            "factor_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "address",
            sa.Text(),
            sa.ForeignKey("accounts.address", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_account_factors_address", "account_factors", ["address"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("last_seen_at", UTCDateTime(), nullable=True))
    op.create_index("ix_readers_address", "readers", [sa.text("lower(address)")])


def downgrade() -> None:
    op.drop_index("ix_readers_address", "readers")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_seen_at")
    op.drop_index("ix_account_factors_address", "account_factors")
    op.drop_table("account_factors")
