"""fleet views: each Candidate keeps its Run's progress (current Step, status since, PR state, failure, last
event) so the Candidate table filters and sorts in SQL; backfilled from the step results and the event log

Revision ID: 0007_fleet_views
Revises: 0006
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007_fleet_views"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = [
    sa.Column("step_name", sa.String(length=128), nullable=True),
    sa.Column("step_status", sa.String(length=32), nullable=True),
    sa.Column("status_since", sa.DateTime(timezone=True), nullable=True),
    sa.Column("pr_url", sa.String(length=4096), nullable=True),
    sa.Column("pr_opened_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("checks", sa.String(length=32), nullable=True),
    sa.Column("review", sa.String(length=32), nullable=True),
    sa.Column("mergeable", sa.Boolean(), nullable=True),
    sa.Column("failure_message", sa.Text(), nullable=True),
    sa.Column("failure_group", sa.String(length=16), nullable=True),
    sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
]
INDEXES = {
    "ix_candidates_migration_step": ["migration_id", "step_name", "step_status"],
    "ix_candidates_migration_step_status_since": ["migration_id", "step_status", "status_since"],
}


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): batch mode would copy the table.
    for column in COLUMNS:
        op.add_column("candidates", column.copy())
    for name, columns in INDEXES.items():
        op.create_index(name, "candidates", columns)
    _backfill(op.get_bind())


def _backfill(connection: sa.Connection) -> None:
    from loom_backend.domain import StepResult, StepStatus, run_progress

    results = sa.table(
        "step_results",
        *(sa.column(c) for c in ("run_id", "step_name", "migration_id", "candidate_id", "status", "pr_url")),
        sa.column("metadata", sa.JSON()),
        *(sa.column(c, sa.DateTime(timezone=True)) for c in ("started_at", "updated_at", "completed_at")),
    )
    events = sa.table("step_events", sa.column("migration_id"), sa.column("candidate_id"), sa.column("created_at"))
    candidates = sa.table("candidates", sa.column("migration_id"), sa.column("id"), *(sa.column(c.name) for c in COLUMNS))
    by_candidate: dict[tuple[str, str], list[StepResult]] = {}
    for r in connection.execute(sa.select(results)).mappings():
        by_candidate.setdefault((r["migration_id"], r["candidate_id"]), []).append(
            StepResult(
                step_name=r["step_name"],
                candidate_id=r["candidate_id"],
                status=StepStatus(r["status"]),
                metadata=r["metadata"] or {},
                pr_url=r["pr_url"],
                started_at=_utc(r["started_at"]),
                updated_at=_utc(r["updated_at"]),
                completed_at=_utc(r["completed_at"]),
            )
        )
    now = datetime.now(UTC)
    where = sa.and_(
        candidates.c.migration_id == sa.bindparam("b_migration_id"), candidates.c.id == sa.bindparam("b_id")
    )
    rows: list[dict[str, Any]] = []
    for (migration_id, candidate_id), found in by_candidate.items():
        found.sort(key=lambda r: r.started_at or now)
        progress = run_progress(found, None, now).model_dump(mode="python")
        for key in ("step_status", "checks", "review"):
            progress[key] = progress[key].value if progress[key] is not None else None
        rows.append({"b_migration_id": migration_id, "b_id": candidate_id, **progress})
    if rows:
        connection.execute(sa.update(candidates).where(where), rows)
    last = [
        {"b_migration_id": m, "b_id": c, "last_event_at": at}
        for m, c, at in connection.execute(
            sa.select(events.c.migration_id, events.c.candidate_id, sa.func.max(events.c.created_at)).group_by(
                events.c.migration_id, events.c.candidate_id
            )
        )
    ]
    if last:
        connection.execute(sa.update(candidates).where(where), last)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="candidates")
    with op.batch_alter_table("candidates") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column.name)
