"""SQL tables of the read model. Wire models live in domain.py; these are storage only.

Alembic owns the schema (alembic/versions); a test proves these tables and the
migrations agree.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel


def _json(name: str, nullable: bool = False) -> Any:
    return Field(sa_column=Column(name, JSON, nullable=nullable))


def _time(nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class MigrationRow(SQLModel, table=True):
    __tablename__ = "migrations"

    id: str = Field(sa_column=Column(String(128), primary_key=True))
    name: str = Field(sa_column=Column(String(256), nullable=False))
    description: str = Field(sa_column=Column(Text, nullable=False))
    overview: list[str] = _json("overview")
    required_inputs: list[dict[str, Any]] = _json("required_inputs")
    steps: list[dict[str, Any]] = _json("steps")
    migrator_url: str = Field(sa_column=Column(String(2048), nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()
    # Values of required inputs for every Candidate (a Candidate's own override them); None: none set.
    inputs: dict[str, str] | None = _json("inputs", nullable=True)
    rollout_policy: dict[str, Any] | None = _json("rollout_policy", nullable=True)
    rollout_status: dict[str, Any] | None = _json("rollout_status", nullable=True)  # the rollout's, as it last said


class CandidateRow(SQLModel, table=True):
    __tablename__ = "candidates"
    __table_args__ = (
        ForeignKeyConstraint(["migration_id"], ["migrations.id"], ondelete="CASCADE"),
        Index("ix_candidates_migration_status", "migration_id", "status"),
        Index("ix_candidates_migration_kind", "migration_id", "kind"),
        Index("ix_candidates_migration_position", "migration_id", "position"),
        # The Candidate table (fleet views): filters and sorts on the Run's progress kept below.
        Index("ix_candidates_migration_step", "migration_id", "step_name", "step_status"),
        Index("ix_candidates_migration_step_status_since", "migration_id", "step_status", "status_since"),
    )

    migration_id: str = Field(sa_column=Column(String(128), primary_key=True))
    id: str = Field(sa_column=Column(String(128), primary_key=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    kind: str = Field(sa_column=Column(String(128), nullable=False))
    meta: dict[str, str] = _json("metadata")
    files: list[dict[str, Any]] = _json("files")
    steps: list[dict[str, Any]] | None = _json("steps", nullable=True)
    status: str = Field(sa_column=Column(String(32), nullable=False))
    inputs: dict[str, str] = _json("inputs")
    updated_at: datetime = _time()
    # The Run's progress (domain.RunProgress), rewritten with each of its Step results; None before a Run.
    step_name: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    step_status: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    status_since: datetime | None = _time(nullable=True)
    pr_url: str | None = Field(default=None, sa_column=Column(String(4096), nullable=True))
    pr_opened_at: datetime | None = _time(nullable=True)
    checks: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    review: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    mergeable: bool | None = Field(default=None, sa_column=Column(Boolean, nullable=True))
    failure_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failure_group: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    last_event_at: datetime | None = _time(nullable=True)


class StepResultRow(SQLModel, table=True):
    __tablename__ = "step_results"
    __table_args__ = (Index("ix_step_results_migration_status", "migration_id", "status"),)

    run_id: str = Field(sa_column=Column(String(260), primary_key=True))
    step_name: str = Field(sa_column=Column(String(128), primary_key=True))
    migration_id: str = Field(sa_column=Column(String(128), nullable=False))
    candidate_id: str = Field(sa_column=Column(String(128), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    meta: dict[str, str] = _json("metadata")
    pr_url: str | None = Field(default=None, sa_column=Column(String(4096), nullable=True))
    started_at: datetime | None = _time(nullable=True)
    updated_at: datetime | None = _time(nullable=True)
    completed_at: datetime | None = _time(nullable=True)


class StepEventRow(SQLModel, table=True):
    """Append-only: rows are inserted once (by `key`) and never updated."""

    __tablename__ = "step_events"
    __table_args__ = (
        Index("ix_step_events_migration_time", "migration_id", "created_at"),
        Index("ix_step_events_migration_candidate", "migration_id", "candidate_id"),
        Index("ix_step_events_type_time", "event_type", "created_at"),
        # Metrics (store/metrics.py): recent failures and Prometheus outcomes, overall and per Migration.
        Index("ix_step_events_type_status_time", "event_type", "status", "created_at"),
        Index("ix_step_events_migration_type_status_time", "migration_id", "event_type", "status", "created_at"),
        # The event before or after another of the same Run: review waits (store/rollups.py), callback latency.
        Index("ix_step_events_run_type_time", "run_id", "event_type", "created_at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    key: str = Field(sa_column=Column(String(300), nullable=False, unique=True))
    run_id: str = Field(sa_column=Column(String(260), nullable=False, index=True))
    migration_id: str = Field(sa_column=Column(String(128), nullable=False))
    candidate_id: str = Field(sa_column=Column(String(128), nullable=False))
    step_name: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    event_type: str = Field(sa_column=Column(String(32), nullable=False))
    status: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    actor: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    duration_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    meta: dict[str, str] = _json("metadata")
    created_at: datetime = _time()


class BulkOperationRow(SQLModel, table=True):
    """One bulk action over a selection; its per-Candidate outcomes in bulk_outcomes."""

    __tablename__ = "bulk_operations"
    __table_args__ = (ForeignKeyConstraint(["migration_id"], ["migrations.id"], ondelete="CASCADE"),)

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    migration_id: str = Field(sa_column=Column(String(128), nullable=False, index=True))
    action: str = Field(sa_column=Column(String(32), nullable=False))
    actor: str = Field(sa_column=Column(String(128), nullable=False))
    request: dict[str, Any] = _json("request")
    state: str = Field(sa_column=Column(String(16), nullable=False))
    total: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = _time()
    finished_at: datetime | None = _time(nullable=True)


class CandidateDriftRow(SQLModel, table=True):
    """The last drift check of a completed Candidate: does its dry run still show changes, and that dry run."""

    __tablename__ = "candidate_drift"
    __table_args__ = (
        ForeignKeyConstraint(
            ["migration_id", "candidate_id"], ["candidates.migration_id", "candidates.id"], ondelete="CASCADE"
        ),
        Index("ix_candidate_drift_migration_drifted", "migration_id", "drifted"),
    )

    migration_id: str = Field(sa_column=Column(String(128), primary_key=True))
    candidate_id: str = Field(sa_column=Column(String(128), primary_key=True))
    drifted: bool = Field(sa_column=Column(Boolean, nullable=False))
    changed_files: int = Field(sa_column=Column(Integer, nullable=False))
    checked_at: datetime = _time()
    actor: str = Field(sa_column=Column(String(128), nullable=False))
    result: dict[str, Any] = _json("result")


class BulkOutcomeRow(SQLModel, table=True):
    __tablename__ = "bulk_outcomes"
    __table_args__ = (ForeignKeyConstraint(["op_id"], ["bulk_operations.id"], ondelete="CASCADE"),)

    op_id: str = Field(sa_column=Column(String(64), primary_key=True))
    candidate_id: str = Field(sa_column=Column(String(128), primary_key=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    outcome: str = Field(sa_column=Column(String(16), nullable=False))
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SavedViewRow(SQLModel, table=True):
    """A named table view of a Migration's board: the URL query that restores it."""

    __tablename__ = "saved_views"
    __table_args__ = (ForeignKeyConstraint(["migration_id"], ["migrations.id"], ondelete="CASCADE"),)

    migration_id: str = Field(sa_column=Column(String(128), primary_key=True))
    name: str = Field(sa_column=Column(String(64), primary_key=True))
    params: dict[str, str] = _json("params")
    saved_by: str = Field(sa_column=Column(String(128), nullable=False))
    updated_at: datetime = _time()


# -- metrics rollups: written with each new event (store/rollups.py), read by store/metrics.py ------------


def _count() -> Any:
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class MetricsDayRow(SQLModel, table=True):
    """What happened on one UTC day in one Migration: the overview and timeline sum these rows."""

    __tablename__ = "metrics_days"

    day: date = Field(sa_column=Column(Date, primary_key=True))
    migration_id: str = Field(sa_column=Column(String(128), primary_key=True))
    runs_started: int = _count()
    runs_completed: int = _count()
    runs_cancelled: int = _count()
    steps_succeeded: int = _count()
    steps_failed: int = _count()


class MetricsRunRow(SQLModel, table=True):
    """A Run's latest run_started and run_completed, and the whole milliseconds between them."""

    __tablename__ = "metrics_runs"
    __table_args__ = (
        Index("ix_metrics_runs_duration", "duration_ms"),
        Index("ix_metrics_runs_migration_duration", "migration_id", "duration_ms"),
    )

    run_id: str = Field(sa_column=Column(String(260), primary_key=True))
    migration_id: str = Field(sa_column=Column(String(128), nullable=False))
    started_at: datetime | None = _time(nullable=True)
    completed_at: datetime | None = _time(nullable=True)
    duration_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class MetricsStepRow(SQLModel, table=True):
    """Outcomes, retries and review waits of one Step (by name) in one Migration."""

    __tablename__ = "metrics_steps"

    migration_id: str = Field(sa_column=Column(String(128), primary_key=True))
    step_name: str = Field(sa_column=Column(String(128), primary_key=True))
    completions: int = _count()
    succeeded: int = _count()
    failures: int = _count()
    timed: int = _count()
    retries: int = _count()
    reviews: int = _count()
    review_wait_ms: int = _count()


class MetricsStepDurationRow(SQLModel, table=True):
    """One successful, timed Step completion (keyed by its event), indexed in duration order for exact percentiles."""

    __tablename__ = "metrics_step_durations"
    __table_args__ = (
        Index("ix_metrics_step_durations_step_duration", "step_name", "duration_ms"),
        Index("ix_metrics_step_durations_migration_step_duration", "migration_id", "step_name", "duration_ms"),
    )

    event_id: int = Field(
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    )
    migration_id: str = Field(sa_column=Column(String(128), nullable=False))
    step_name: str = Field(sa_column=Column(String(128), nullable=False))
    duration_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class UserRow(SQLModel, table=True):
    """A built-in operator account; the password only as an Argon2 hash."""

    __tablename__ = "users"

    name: str = Field(sa_column=Column(String(128), primary_key=True))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    password_hash: str = Field(sa_column=Column(String(256), nullable=False))
    created_at: datetime = _time()


class ApiTokenRow(SQLModel, table=True):
    """A Migrator or operator token; only the SHA-256 of its secret is kept."""

    __tablename__ = "api_tokens"

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    name: str = Field(sa_column=Column(String(128), nullable=False, index=True))
    role: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    digest: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = _time()
    revoked_at: datetime | None = _time(nullable=True)


class SessionRow(SQLModel, table=True):
    """A signed-in browser; keyed by the SHA-256 of the cookie's secret."""

    __tablename__ = "sessions"
    __table_args__ = (ForeignKeyConstraint(["user_name"], ["users.name"], ondelete="CASCADE"),)

    digest: str = Field(sa_column=Column(String(64), primary_key=True))
    user_name: str = Field(sa_column=Column(String(128), nullable=False, index=True))
    created_at: datetime = _time()
    expires_at: datetime = _time(index=True)


class MigrationOwnerRow(SQLModel, table=True):
    """The Migrator token that first announced a Migration; no foreign key, as the claim precedes the announce."""

    __tablename__ = "migration_owners"

    migration_id: str = Field(sa_column=Column(String(128), primary_key=True))
    token_id: str = Field(sa_column=Column(String(32), nullable=False, index=True))
    claimed_at: datetime = _time()


def insert_on(dialect: str, table: Table) -> Any:
    """An INSERT in the database's own dialect, so ON CONFLICT clauses can follow (SQLite and PostgreSQL)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class HealthRow(SQLModel, table=True):
    """One row that readiness checks rewrite: proof that the database takes writes, not only reads."""

    __tablename__ = "health"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    checked_at: datetime = _time()


class WebhookRow(SQLModel, table=True):
    """An outgoing webhook: its cursor in the event log and at most one pending message (resent byte for byte)."""

    __tablename__ = "webhooks"

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    events: list[str] = _json("events")
    migration_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    filter: dict[str, str] = _json("filter")
    secret_digest: str = Field(sa_column=Column(String(64), nullable=False))  # the signing key, as tokens'
    created_at: datetime = _time()
    created_by: str = Field(sa_column=Column(String(128), nullable=False))
    cursor: int = Field(sa_column=Column(BigInteger, nullable=False))
    delivered: int = _count()
    failed: int = _count()
    delivery_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    delivery_through: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    delivery_body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = _count()
    first_attempt_at: datetime | None = _time(nullable=True)
    next_attempt_at: datetime | None = _time(nullable=True)
    last_status: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_attempt_at: datetime | None = _time(nullable=True)
    last_delivered_at: datetime | None = _time(nullable=True)
