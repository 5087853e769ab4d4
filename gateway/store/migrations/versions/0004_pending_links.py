"""Links owed to readers until their message is settled (retries finish what is missing).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_links",
        sa.Column("envelope_id", sa.String(32), nullable=False),
        sa.Column("reader_id", sa.String(32), nullable=False),
        sa.Column("sealed_link", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("envelope_id", "reader_id"),
    )


def downgrade() -> None:
    op.drop_table("pending_links")
