"""rollout and bulk: Migration-level inputs, the saved rollout policy, bulk operations with per-Candidate outcomes

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): batch mode would copy the table that candidates reference.
    op.add_column("migrations", sa.Column("inputs", sa.JSON(), nullable=True))
    op.add_column("migrations", sa.Column("rollout_policy", sa.JSON(), nullable=True))
    op.add_column("migrations", sa.Column("rollout_status", sa.JSON(), nullable=True))
    op.create_table(
        "bulk_operations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("migration_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["migration_id"], ["migrations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bulk_operations_migration_id", "bulk_operations", ["migration_id"])
    op.create_table(
        "bulk_outcomes",
        sa.Column("op_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["op_id"], ["bulk_operations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("op_id", "candidate_id"),
    )


def downgrade() -> None:
    op.drop_table("bulk_outcomes")
    op.drop_index("ix_bulk_operations_migration_id", table_name="bulk_operations")
    op.drop_table("bulk_operations")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("rollout_status")
        batch.drop_column("rollout_policy")
        batch.drop_column("inputs")
