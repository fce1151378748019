"""saved views: a Migration's board table views kept by name (filters, sort and columns as a URL query)

Revision ID: 0008_saved_views
Revises: 0007_fleet_views
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_saved_views"
down_revision = "0007_fleet_views"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_views",
        sa.Column("migration_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("saved_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["migration_id"], ["migrations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("migration_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("saved_views")
