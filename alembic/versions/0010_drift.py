"""drift: the last drift check of each completed Candidate (does its dry run still show changes, and the diff)

Revision ID: 0010_drift
Revises: 0009_webhooks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_drift"
down_revision = "0009_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidate_drift",
        sa.Column("migration_id", sa.String(length=128), nullable=False),
        sa.Column("candidate_id", sa.String(length=128), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("changed_files", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["migration_id", "candidate_id"], ["candidates.migration_id", "candidates.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("migration_id", "candidate_id"),
    )
    op.create_index("ix_candidate_drift_migration_drifted", "candidate_drift", ["migration_id", "drifted"])


def downgrade() -> None:
    op.drop_index("ix_candidate_drift_migration_drifted", table_name="candidate_drift")
    op.drop_table("candidate_drift")
