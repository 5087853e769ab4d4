"""The directory's phone numbers and its sync cursor; the sender's messages by address.

``directory_users.phone`` keeps a person's mobile number (E.164), from the
directory sync (AD's ``mobile``) or SCIM, for SMS codes when colleagues are sent
protected mail. ``directory_sync`` keeps, per directory a sync reads from, where
the last run got to (AD's highest committed USN, OpenLDAP's latest
modifyTimestamp), so the next run reads only what changed. An index on the
lower-cased envelope sender lists a sender's messages (``/sent``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.migrations.types import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("directory_users") as batch:
        batch.add_column(sa.Column("phone", sa.Text(), nullable=True))
    op.create_table(
        "directory_sync",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_directory_sync"),
    )
    op.create_index("ix_envelopes_sender", "envelopes", [sa.text("lower(sender)")])


def downgrade() -> None:
    op.drop_index("ix_envelopes_sender", "envelopes")
    op.drop_table("directory_sync")
    with op.batch_alter_table("directory_users") as batch:
        batch.drop_column("phone")
