"""The organisation's directory, provisioned over SCIM 2.0 (RFC 7643/7644): users and groups.

``directory_users`` holds one row per person the identity provider provisions:
the address (``user_name``, lower-cased, unique), whether the person is active
(NULL: the provider does not say, which is not a deactivation), and a version
that grows with every change (the ETag). Their e-mail addresses are rows of
``directory_emails`` and group memberships rows of ``directory_members``, so
that SCIM filters on them become SQL (EXISTS) and deleting a user or a group
takes its rows with it (ON DELETE CASCADE). The audit trail (``events``) keeps
what happened to them: it has no foreign key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.migrations.types import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "directory_users",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("modified_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_directory_users"),
        sa.UniqueConstraint("user_name", name="uq_directory_users_user_name"),
    )
    op.create_index("ix_directory_users_external_id", "directory_users", ["external_id"])
    op.create_table(
        "directory_emails",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "position", name="pk_directory_emails"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["directory_users.user_id"],
            name="fk_directory_emails_user_id_directory_users",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "directory_groups",
        sa.Column("group_id", sa.String(32), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("modified_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_directory_groups"),
        sa.UniqueConstraint("display_name", name="uq_directory_groups_display_name"),
    )
    op.create_index("ix_directory_groups_external_id", "directory_groups", ["external_id"])
    op.create_table(
        "directory_members",
        sa.Column("group_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_directory_members"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["directory_groups.group_id"],
            name="fk_directory_members_group_id_directory_groups",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["directory_users.user_id"],
            name="fk_directory_members_user_id_directory_users",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_directory_members_user_id", "directory_members", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_directory_members_user_id", "directory_members")
    op.drop_table("directory_members")
    op.drop_index("ix_directory_groups_external_id", "directory_groups")
    op.drop_table("directory_groups")
    op.drop_table("directory_emails")
    op.drop_index("ix_directory_users_external_id", "directory_users")
    op.drop_table("directory_users")
