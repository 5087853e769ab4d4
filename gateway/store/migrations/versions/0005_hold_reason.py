"""Held recipients: the missing second factors and the rule's reason in columns of their own.

Until now ``holds.missing`` held either a comma list of factors ("phone",
"access-code") or, for a recipient a rule held, the rule's words, and readers
had to guess which. The words move to ``reason``; ``missing`` keeps factors only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FACTORS = ("phone", "access-code")


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))
    holds = sa.table(
        "holds",
        sa.column("envelope_id", sa.String(32)),
        sa.column("reader_id", sa.String(32)),
        sa.column("missing", sa.Text()),
        sa.column("reason", sa.Text()),
    )
    conn = op.get_bind()
    for row in conn.execute(sa.select(holds.c.envelope_id, holds.c.reader_id, holds.c.missing)):
        if all(item in _FACTORS for item in row.missing.split(",")):
            continue  # factors only: already what the column means now
        conn.execute(
            sa.update(holds)
            .where(holds.c.envelope_id == row.envelope_id, holds.c.reader_id == row.reader_id)
            .values(missing="", reason=row.missing)
        )


def downgrade() -> None:
    holds = sa.table("holds", sa.column("missing", sa.Text()), sa.column("reason", sa.Text()))
    op.execute(sa.update(holds).where(holds.c.missing == "").values(missing=holds.c.reason))
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("reason")
