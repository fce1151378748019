"""SQL tables of the read model. Wire models live in domain.py; these are storage only.

Alembic owns the schema (alembic/versions); a test proves these tables and the
migrations agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKeyConstraint, Index, Integer, String, Text
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


class CandidateRow(SQLModel, table=True):
    __tablename__ = "candidates"
    __table_args__ = (
        ForeignKeyConstraint(["migration_id"], ["migrations.id"], ondelete="CASCADE"),
        Index("ix_candidates_migration_status", "migration_id", "status"),
        Index("ix_candidates_migration_kind", "migration_id", "kind"),
        Index("ix_candidates_migration_position", "migration_id", "position"),
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
        # Metrics (store/metrics.py): outcome counts, timelines and recent failures, overall and per Migration.
        Index("ix_step_events_type_status_time", "event_type", "status", "created_at"),
        Index("ix_step_events_migration_type_status_time", "migration_id", "event_type", "status", "created_at"),
        # Per-Step durations, read in order for the percentiles without touching the table.
        Index("ix_step_events_type_step_status_duration", "event_type", "step_name", "status", "duration_ms"),
        # The event before or after another of the same Run: Run durations, review waits, callback latency.
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
