"""Which directory sync keeps a directory user or group.

``directory_users.sync_source`` and ``directory_groups.sync_source`` name the
``directory_sync`` source that keeps the row (``sealgate directory sync``); NULL
for a row provisioned over SCIM. The sync compares the directory only with its
own rows, so a full read never takes a SCIM-provisioned person for one who left.
Within a source, a directory's id (objectGUID, entryUUID) names one row at most:
a unique index over (sync_source, external_id), which SCIM rows (NULL) do not
constrain, and which finds a source's rows.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("directory_users", "directory_groups"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("sync_source", sa.Text(), nullable=True))
        op.create_index(
            f"ix_{table}_sync_source", table, ["sync_source", "external_id"], unique=True
        )


def downgrade() -> None:
    for table in ("directory_groups", "directory_users"):
        op.drop_index(f"ix_{table}_sync_source", table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("sync_source")
