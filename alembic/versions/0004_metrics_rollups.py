"""metrics rollups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 17:10:00.000000

Small tables the event log writer keeps in step (loom_backend/store/rollups.py), filled here from the
existing step_events. The backfill calls the store's rebuild, so it always matches what append_event
writes; a later revision that changes these tables must leave this one a log it can still read (the
backfill only runs when there are events to read).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('metrics_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('migration_id', sa.String(length=128), nullable=False),
    sa.Column('runs_started', sa.BigInteger(), nullable=False),
    sa.Column('runs_completed', sa.BigInteger(), nullable=False),
    sa.Column('runs_cancelled', sa.BigInteger(), nullable=False),
    sa.Column('steps_succeeded', sa.BigInteger(), nullable=False),
    sa.Column('steps_failed', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'migration_id')
    )
    op.create_table('metrics_runs',
    sa.Column('run_id', sa.String(length=260), nullable=False),
    sa.Column('migration_id', sa.String(length=128), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('run_id')
    )
    with op.batch_alter_table('metrics_runs', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_runs_duration', ['duration_ms'], unique=False)
        batch_op.create_index('ix_metrics_runs_migration_duration', ['migration_id', 'duration_ms'], unique=False)

    op.create_table('metrics_steps',
    sa.Column('migration_id', sa.String(length=128), nullable=False),
    sa.Column('step_name', sa.String(length=128), nullable=False),
    sa.Column('completions', sa.BigInteger(), nullable=False),
    sa.Column('succeeded', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.BigInteger(), nullable=False),
    sa.Column('timed', sa.BigInteger(), nullable=False),
    sa.Column('retries', sa.BigInteger(), nullable=False),
    sa.Column('reviews', sa.BigInteger(), nullable=False),
    sa.Column('review_wait_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('migration_id', 'step_name')
    )
    op.create_table('metrics_step_durations',
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('migration_id', sa.String(length=128), nullable=False),
    sa.Column('step_name', sa.String(length=128), nullable=False),
    sa.Column('duration_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('metrics_step_durations', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_step_durations_migration_step_duration', ['migration_id', 'step_name', 'duration_ms'], unique=False)
        batch_op.create_index('ix_metrics_step_durations_step_duration', ['step_name', 'duration_ms'], unique=False)

    # Percentiles now read metrics_step_durations; this index only cost every insert.
    with op.batch_alter_table('step_events', schema=None) as batch_op:
        batch_op.drop_index('ix_step_events_type_step_status_duration')

    bind = op.get_bind()
    if bind.execute(sa.text('SELECT 1 FROM step_events LIMIT 1')).first() is not None:
        from loom_backend.store.rollups import Rollups

        Rollups(bind.dialect.name).rebuild(bind)


def downgrade() -> None:
    with op.batch_alter_table('step_events', schema=None) as batch_op:
        batch_op.create_index('ix_step_events_type_step_status_duration', ['event_type', 'step_name', 'status', 'duration_ms'], unique=False)

    with op.batch_alter_table('metrics_step_durations', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_step_durations_step_duration')
        batch_op.drop_index('ix_metrics_step_durations_migration_step_duration')

    op.drop_table('metrics_step_durations')
    op.drop_table('metrics_steps')
    with op.batch_alter_table('metrics_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_runs_migration_duration')
        batch_op.drop_index('ix_metrics_runs_duration')

    op.drop_table('metrics_runs')
    op.drop_table('metrics_days')
