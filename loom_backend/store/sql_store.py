"""The MigrationStore adapter: SQLModel over SQLite (default) or PostgreSQL.

Each public method is one transaction, so a rejected or failed request writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    Connection,
    Engine,
    String,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    event,
    exists,
    func,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from loom_backend.domain import (
    ATTENTION_STEP_STATUSES,
    MAX_FAILURE_EXAMPLES,
    STUCK_STEP_STATUSES,
    Burndown,
    Candidate,
    CandidateFilter,
    CandidatePage,
    CandidateSort,
    CandidateStatus,
    CandidateView,
    DispatchRetry,
    DriftCheck,
    DryRunResult,
    EventCursor,
    EventPage,
    EventType,
    FailureGroup,
    FailureGroups,
    FailureList,
    InputDefinition,
    MetricsOverview,
    MetricsTimeline,
    Migration,
    MigrationAnnouncement,
    MigrationSummary,
    PrometheusSnapshot,
    ReadModelChange,
    RunChange,
    RunProgress,
    SortField,
    StepDefinition,
    StepEvent,
    StepMetricsResponse,
    StepResult,
    StepStatus,
    StringMap,
    StuckLimits,
    current_step_index,
    merge_rediscovered,
    normalise_failure,
    run_id,
    run_progress,
)
from loom_backend.rollout import (
    BulkAction,
    BulkOperation,
    BulkOutcome,
    BulkOutcomeKind,
    BulkState,
    MemberProgress,
    RolloutObservation,
    RolloutStatus,
)
from loom_backend.store.metrics import MetricsQueries
from loom_backend.store.rollups import Rollups
from loom_backend.store.tables import (
    BulkOperationRow,
    BulkOutcomeRow,
    CandidateDriftRow,
    CandidateRow,
    HealthRow,
    MigrationRow,
    StepEventRow,
    StepResultRow,
    insert_on,
)

MIGRATIONS: Table = MigrationRow.__table__  # type: ignore[attr-defined]
CANDIDATES: Table = CandidateRow.__table__  # type: ignore[attr-defined]
STEP_RESULTS: Table = StepResultRow.__table__  # type: ignore[attr-defined]
STEP_EVENTS: Table = StepEventRow.__table__  # type: ignore[attr-defined]
HEALTH: Table = HealthRow.__table__  # type: ignore[attr-defined]
BULK_OPERATIONS: Table = BulkOperationRow.__table__  # type: ignore[attr-defined]
BULK_OUTCOMES: Table = BulkOutcomeRow.__table__  # type: ignore[attr-defined]
DRIFT: Table = CandidateDriftRow.__table__  # type: ignore[attr-defined]
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
ATTENTION_STATUSES = sorted(s.value for s in ATTENTION_STEP_STATUSES)
NOT_STARTED, RUNNING = CandidateStatus.NOT_STARTED.value, CandidateStatus.RUNNING.value
_INSERT_BATCH = 2_000
# Every committed write that a board shows is announced on this channel (PostgreSQL); see store/change_feed.py.
CHANGE_CHANNEL = "loom_changes"
_NOTIFY = text(f"SELECT pg_notify('{CHANGE_CHANNEL}', :payload)")


def create_db_engine(url: str) -> Engine:
    """SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL a pool sized for the worker's threads."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything Loom stores is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    """A bound on a stored time: SQLite compares UTC wall clocks, so an offset is turned into UTC first."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class DatabaseFileGone(OSError):
    """The SQLite file Loom opened was removed or replaced while Loom runs: writing on would write into nothing."""


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def like_literal(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself: '%' and '_' (and the escape '\\') escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqlStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self._dialect = self.engine.dialect.name
        self._rollups = Rollups(self._dialect)
        parsed = make_url(url)
        file = parsed.database if self._dialect == "sqlite" and parsed.database not in (None, "", ":memory:") else None
        self._file = Path(file).resolve() if file else None
        self._file_identity: tuple[int, int] | None = None
        # Told of each committed change on databases without NOTIFY (SQLite): the process's change feed.
        self.listeners: list[Callable[[ReadModelChange], None]] = []

    def _notify(self, connection: Connection | Session, *changes: ReadModelChange) -> None:
        """Announce changes inside the transaction: PostgreSQL delivers them on commit, to every process listening."""
        if self._dialect == "postgresql":
            for change in changes:
                connection.execute(_NOTIFY, {"payload": change.to_payload()})

    def _committed(self, *changes: ReadModelChange) -> None:
        """Without NOTIFY, tell this process's listeners once the transaction committed."""
        if self._dialect != "postgresql":
            for listener in self.listeners:
                for change in changes:
                    listener(change)

    def check_file(self) -> None:
        """Raise DatabaseFileGone when the SQLite file is not the one Loom opened (deleted, or swapped under it).

        SQLite keeps writing into a deleted file's open inode, so without this Loom would write past the loss.
        """
        if self._file is None:
            return
        identity = _file_identity(self._file)
        if self._file_identity is None:
            self._file_identity = identity
        if identity is None or identity != self._file_identity:
            raise DatabaseFileGone(
                f"The database file {self._file} was removed or replaced while Loom runs; "
                "restore it (or restart Loom on a new one): nothing is written until then"
            )

    def check_writable(self) -> None:
        """Rewrite the health row: proof that the database takes a write and commits it, not only that it answers."""
        self.check_file()
        with self.engine.begin() as connection:
            now = _now()
            statement = insert_on(self._dialect, HEALTH).values(id=1, checked_at=now)
            connection.execute(statement.on_conflict_do_update(index_elements=["id"], set_={"checked_at": now}))

    # -- schema ---------------------------------------------------------------------------

    def upgrade_schema(self) -> None:
        """Bring the schema to Alembic's head; the only way the schema changes."""
        from alembic.config import Config

        from alembic import command

        config = Config(str(ALEMBIC_INI))
        config.set_main_option("script_location", str(ALEMBIC_INI.parent / "alembic"))
        config.attributes["engine"] = self.engine
        command.upgrade(config, "head")
        if self._file is not None:
            self._file_identity = _file_identity(self._file)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _insert(self, table: Any) -> Any:
        return insert_on(self._dialect, table)

    # -- migrations and candidates ----------------------------------------------------------

    def announce(self, announcement: MigrationAnnouncement, now: datetime) -> None:
        row = {
            "id": announcement.id,
            "name": announcement.name,
            "description": announcement.description,
            "overview": list(announcement.overview),
            "required_inputs": [i.model_dump(mode="json", exclude_none=True) for i in announcement.required_inputs],
            "steps": [s.model_dump(mode="json", exclude_none=True) for s in announcement.steps],
            "migrator_url": announcement.migrator_url,
            "created_at": now,
            "updated_at": now,
        }
        statement = self._insert(MIGRATIONS).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={k: statement.excluded[k] for k in row if k not in ("id", "created_at")},
        )
        with self._session() as session:
            session.execute(statement)
            self._merge_candidates(session, announcement.id, announcement.candidates, now)
            self._notify(session, ReadModelChange(announcement.id))
        self._committed(ReadModelChange(announcement.id))

    def submit_candidates(self, migration_id: str, candidates: list[Candidate], now: datetime) -> None:
        with self._session() as session:
            session.execute(update(MIGRATIONS).where(MIGRATIONS.c.id == migration_id).values(updated_at=now))
            self._merge_candidates(session, migration_id, candidates, now)
            self._notify(session, ReadModelChange(migration_id))
        self._committed(ReadModelChange(migration_id))

    def _merge_candidates(
        self, session: Session, migration_id: str, candidates: list[Candidate], now: datetime
    ) -> None:
        """Apply the domain's re-discovery rule (merge_rediscovered) in one transaction."""
        table = CANDIDATES
        existing = {
            cid: CandidateStatus(status)
            for cid, status in session.execute(
                select(table.c.id, table.c.status).where(table.c.migration_id == migration_id)
            ).all()
        }
        merge = merge_rediscovered(existing, candidates)
        for start in range(0, len(merge.delete), _INSERT_BATCH):
            batch = merge.delete[start : start + _INSERT_BATCH]
            session.execute(delete(table).where(table.c.migration_id == migration_id, table.c.id.in_(batch)))
        rows = [
            {
                "migration_id": migration_id,
                "id": c.id,
                "position": position,
                "kind": c.kind,
                "metadata": c.metadata,
                "files": [g.model_dump(mode="json") for g in c.files],
                "steps": [s.model_dump(mode="json", exclude_none=True) for s in c.steps] if c.steps else None,
                "status": NOT_STARTED,
                "inputs": {},
                "updated_at": now,
            }
            for position, c in merge.upsert
        ]
        if rows:
            statement = self._insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=["migration_id", "id"],
                set_={
                    k: statement.excluded[k] for k in ("position", "kind", "metadata", "files", "steps", "updated_at")
                },
            )
            session.execute(statement, rows)

    def get_migration(self, migration_id: str, with_candidates: bool = True) -> Migration | None:
        with self._session() as session:
            row = session.get(MigrationRow, migration_id)
            if row is None:
                return None
            candidates: list[Candidate] = []
            if with_candidates:
                table = CANDIDATES
                result = session.execute(
                    select(table).where(table.c.migration_id == migration_id).order_by(table.c.position)
                )
                candidates = _CANDIDATES.validate_python([_candidate_data(r) for r in result.mappings()])
            return _migration(row, candidates)

    def all_migrations(self) -> list[Migration]:
        """Every Migration with its Candidates, in two queries (the contract's GET /api/migrations)."""
        with self._session() as session:
            rows = session.execute(select(MigrationRow).order_by(MIGRATIONS.c.created_at)).scalars().all()
            by_migration: dict[str, list[dict[str, Any]]] = {}
            for r in session.execute(
                select(CANDIDATES).order_by(CANDIDATES.c.migration_id, CANDIDATES.c.position)
            ).mappings():
                by_migration.setdefault(r["migration_id"], []).append(_candidate_data(r))
            return [_migration(row, _CANDIDATES.validate_python(by_migration.get(row.id, []))) for row in rows]

    def list_migrations(self) -> list[MigrationSummary]:
        with self._session() as session:
            rows = session.execute(select(MigrationRow).order_by(MIGRATIONS.c.created_at)).scalars().all()
            counts: dict[str, dict[CandidateStatus, int]] = {}
            for mid, status, n in session.execute(
                select(CANDIDATES.c.migration_id, CANDIDATES.c.status, func.count()).group_by(
                    CANDIDATES.c.migration_id, CANDIDATES.c.status
                )
            ):
                counts.setdefault(mid, {})[CandidateStatus(status)] = n
            attention = dict(
                session.execute(
                    select(STEP_RESULTS.c.migration_id, func.count(func.distinct(STEP_RESULTS.c.run_id)))
                    .where(STEP_RESULTS.c.status.in_(ATTENTION_STATUSES), _run_is_active())
                    .group_by(STEP_RESULTS.c.migration_id)
                ).all()
            )
            last = dict(
                session.execute(
                    select(STEP_EVENTS.c.migration_id, func.max(STEP_EVENTS.c.created_at)).group_by(
                        STEP_EVENTS.c.migration_id
                    )
                ).all()
            )
            return [
                MigrationSummary(
                    **_migration(row, []).model_dump(exclude={"candidates"}, by_alias=False),
                    candidate_counts={s: counts.get(row.id, {}).get(s, 0) for s in CandidateStatus},
                    needs_attention=attention.get(row.id, 0),
                    last_activity_at=_utc(last.get(row.id)) or _utc(row.updated_at),
                )
                for row in rows
            ]

    def list_candidates(
        self,
        migration_id: str,
        where: CandidateFilter | None = None,
        *,
        sort: CandidateSort | None = None,
        stuck: StuckLimits | None = None,
        candidate_id: str | None = None,
        limit: int | None = 500,
        offset: int = 0,
    ) -> CandidatePage:
        """One page of the Candidates the filter matches, in board order unless sorted; `stuck` flags stuck Steps
        (and is needed to filter on them)."""
        table = CANDIDATES
        conditions = [table.c.migration_id == migration_id, *_filter_conditions(where or CandidateFilter(), stuck)]
        if candidate_id:
            conditions.append(table.c.id == candidate_id)
        order = _order(sort)
        with self._session() as session:
            total = session.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one()
            rows = list(
                session.execute(
                    select(table).where(*conditions).order_by(*order).limit(limit).offset(offset)
                ).mappings()
            )
            candidates = [_candidate(r) for r in rows]
            progress = self._progress(
                session, migration_id, [c for c in candidates if c.status != CandidateStatus.NOT_STARTED]
            )
            drifted = self._drifted(
                session, migration_id, [c.id for c in candidates if c.status == CandidateStatus.COMPLETED]
            )
        views = [
            CandidateView(
                **c.model_dump(by_alias=False),
                **progress.get(c.id, {}),
                **_table_columns(r, stuck),
                drifted=drifted.get(c.id),
            )
            for c, r in zip(candidates, rows, strict=True)
        ]
        return CandidatePage(candidates=views, total=total, limit=len(views) if limit is None else limit, offset=offset)

    def failure_groups(self, migration_id: str) -> FailureGroups:
        """Failed current Steps of Runs in progress, grouped by their key (Step and normalised message)."""
        table = CANDIDATES
        with self._session() as session:
            rows = session.execute(
                select(
                    table.c.id, table.c.step_name, table.c.failure_group, table.c.failure_message, table.c.status_since
                )
                .where(
                    table.c.migration_id == migration_id,
                    table.c.status == RUNNING,
                    table.c.step_status == StepStatus.FAILED.value,
                    table.c.failure_group.is_not(None),
                )
                .order_by(table.c.status_since, table.c.id)
            ).all()
        groups: dict[str, FailureGroup] = {}
        for cid, step, key, message, since in rows:
            group = groups.get(key)
            if group is None:
                group = groups[key] = FailureGroup(
                    key=key, step_name=step, message=normalise_failure(message), count=0, examples=[]
                )
            group.count += 1
            if len(group.examples) < MAX_FAILURE_EXAMPLES:
                group.examples.append(cid)
            at = _utc(since)
            group.first_seen = group.first_seen or at
            group.last_seen = at or group.last_seen
        return FailureGroups(groups=sorted(groups.values(), key=lambda g: (-g.count, g.step_name, g.key)))

    def stuck_count(self, migration_id: str, stuck: StuckLimits) -> int:
        table = CANDIDATES
        with self._session() as session:
            return session.execute(
                select(func.count()).where(table.c.migration_id == migration_id, _stuck_condition(stuck))
            ).scalar_one()

    def _progress(
        self, session: Session, migration_id: str, candidates: Sequence[Candidate]
    ) -> dict[str, dict[str, Any]]:
        """The current Step of each Candidate's Run, by the domain's rule (current_step_index)."""
        if not candidates:
            return {}
        run_ids = [run_id(migration_id, c.id) for c in candidates]
        by_run: dict[str, list[Any]] = {}
        for start in range(0, len(run_ids), _INSERT_BATCH):
            for r in session.execute(
                select(STEP_RESULTS).where(STEP_RESULTS.c.run_id.in_(run_ids[start : start + _INSERT_BATCH]))
            ).mappings():
                by_run.setdefault(r["run_id"], []).append(r)
        progress: dict[str, dict[str, Any]] = {}
        for c in candidates:
            results = sorted(by_run.get(run_id(migration_id, c.id), []), key=lambda r: _utc(r["started_at"]) or _now())
            index = current_step_index([StepStatus(r["status"]) for r in results])
            if index is None:
                continue
            current = results[index]
            pr_url = next((r["pr_url"] for r in reversed(results) if r["pr_url"]), None)
            progress[c.id] = {
                "current_step": current["step_name"],
                "current_step_status": StepStatus(current["status"]),
                "pr_url": pr_url,
                "step_updated_at": _utc(current["updated_at"]),
                "dispatch_retry": (
                    DispatchRetry.of(_step_result(current))
                    if current["status"] == StepStatus.IN_PROGRESS.value
                    else None
                ),
            }
        return progress

    def get_candidate(self, migration_id: str, candidate_id: str) -> Candidate | None:
        with self._session() as session:
            row = session.get(CandidateRow, (migration_id, candidate_id))
            return None if row is None else _candidate(_row_mapping(row))

    def get_inputs(self, migration_id: str, candidate_id: str) -> StringMap:
        with self._session() as session:
            row = session.get(CandidateRow, (migration_id, candidate_id))
            return dict(row.inputs) if row is not None else {}

    def set_inputs(self, migration_id: str, candidate_id: str, inputs: StringMap) -> None:
        with self._session() as session:
            session.execute(
                update(CANDIDATES)
                .where(CANDIDATES.c.migration_id == migration_id, CANDIDATES.c.id == candidate_id)
                .values(inputs=inputs, updated_at=_now())
            )
            _merge_into_metadata(session, migration_id, candidate_id, inputs)
            self._notify(session, ReadModelChange(migration_id, candidate_id))
        self._committed(ReadModelChange(migration_id, candidate_id))

    def get_migration_inputs(self, migration_id: str) -> StringMap:
        with self._session() as session:
            row = session.get(MigrationRow, migration_id)
            return dict(row.inputs or {}) if row is not None else {}

    def set_migration_inputs(self, migration_id: str, inputs: StringMap) -> None:
        with self._session() as session:
            session.execute(update(MIGRATIONS).where(MIGRATIONS.c.id == migration_id).values(inputs=inputs))

    def get_rollout_policy(self, migration_id: str) -> dict[str, Any] | None:
        with self._session() as session:
            row = session.get(MigrationRow, migration_id)
            return dict(row.rollout_policy) if row is not None and row.rollout_policy else None

    def has_rollout_policy(self, migration_id: str) -> bool:
        """Asked as Runs end (bare Connection, one column): whether to wake a rollout."""
        with self.engine.connect() as connection:
            row = connection.execute(_ROLLOUT_POLICY, {"id": migration_id}).first()
        return bool(row and row[0])

    def set_rollout_policy(self, migration_id: str, policy: dict[str, Any]) -> None:
        with self._session() as session:
            session.execute(update(MIGRATIONS).where(MIGRATIONS.c.id == migration_id).values(rollout_policy=policy))

    def get_rollout_status(self, migration_id: str) -> RolloutStatus | None:
        with self._session() as session:
            row = session.get(MigrationRow, migration_id)
            return RolloutStatus.model_validate(row.rollout_status) if row is not None and row.rollout_status else None

    def list_rollout_statuses(self) -> dict[str, RolloutStatus]:
        with self._session() as session:
            rows = session.execute(
                select(MIGRATIONS.c.id, MIGRATIONS.c.rollout_status).where(MIGRATIONS.c.rollout_status.is_not(None))
            ).all()
        return {mid: RolloutStatus.model_validate(status) for mid, status in rows if status}

    def set_rollout_status(
        self, migration_id: str, status: RolloutStatus, events: Sequence[tuple[str, StepEvent]] = ()
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(MIGRATIONS)
                .where(MIGRATIONS.c.id == migration_id)
                .values(rollout_status=status.model_dump(mode="json"), updated_at=_now())
            )
            for key, event in events:
                self._append_event(connection, event, key)

    def rollout_progress(
        self, migration_id: str, candidate_ids: Sequence[str], group_key: str | None, since: datetime
    ) -> RolloutObservation:
        """The rollout's Candidates (status, Steps failed since `since`, failing now) and the Migration's open Runs."""
        table = CANDIDATES
        members: dict[str, MemberProgress] = {}
        with self._session() as session:
            running = session.execute(
                select(func.count()).where(table.c.migration_id == migration_id, table.c.status == RUNNING)
            ).scalar_one()
            by_group: dict[str, int] = {}
            if group_key is not None:
                value = table.c.metadata[group_key].as_string()
                for group, count in session.execute(
                    select(value, func.count())
                    .where(table.c.migration_id == migration_id, table.c.status == RUNNING)
                    .group_by(value)
                ).all():
                    if group is not None:
                        by_group[group] = count
            for start in range(0, len(candidate_ids), _INSERT_BATCH):
                batch = list(candidate_ids[start : start + _INSERT_BATCH])
                statuses = session.execute(
                    select(table.c.id, table.c.status).where(
                        table.c.migration_id == migration_id, table.c.id.in_(batch)
                    )
                ).all()
                failures = dict(
                    session.execute(
                        select(STEP_EVENTS.c.candidate_id, func.count())
                        .where(
                            STEP_EVENTS.c.migration_id == migration_id,
                            STEP_EVENTS.c.candidate_id.in_(batch),
                            STEP_EVENTS.c.event_type == EventType.STEP_COMPLETED.value,
                            STEP_EVENTS.c.status == StepStatus.FAILED.value,
                            STEP_EVENTS.c.created_at >= since,
                        )
                        .group_by(STEP_EVENTS.c.candidate_id)
                    ).all()
                )
                step_failures: dict[tuple[str, str], int] = {}
                rejected: dict[str, list[str]] = {}
                for cid, step, event_type, count in session.execute(
                    select(STEP_EVENTS.c.candidate_id, STEP_EVENTS.c.step_name, STEP_EVENTS.c.event_type, func.count())
                    .where(
                        STEP_EVENTS.c.migration_id == migration_id,
                        STEP_EVENTS.c.candidate_id.in_(batch),
                        or_(
                            and_(
                                STEP_EVENTS.c.event_type == EventType.STEP_COMPLETED.value,
                                STEP_EVENTS.c.status == StepStatus.FAILED.value,
                            ),
                            STEP_EVENTS.c.event_type == EventType.REVIEW_REJECTED.value,
                        ),
                        STEP_EVENTS.c.created_at >= since,
                    )
                    .group_by(STEP_EVENTS.c.candidate_id, STEP_EVENTS.c.step_name, STEP_EVENTS.c.event_type)
                ).all():
                    if event_type == EventType.REVIEW_REJECTED.value:
                        rejected.setdefault(cid, []).append(step)
                    else:
                        step_failures[(cid, step)] = count
                # The Step each Run waits on a person for: a failed one (to retry) or one awaiting review.
                waiting: dict[str, tuple[str, str, datetime | None]] = {}
                for cid, step, status, updated_at in session.execute(
                    select(
                        STEP_RESULTS.c.candidate_id,
                        STEP_RESULTS.c.step_name,
                        STEP_RESULTS.c.status,
                        STEP_RESULTS.c.updated_at,
                    ).where(
                        STEP_RESULTS.c.migration_id == migration_id,
                        STEP_RESULTS.c.candidate_id.in_(batch),
                        STEP_RESULTS.c.status.in_(ATTENTION_STATUSES),
                    )
                ).all():
                    if cid not in waiting or status == StepStatus.FAILED.value:
                        waiting[cid] = (step, status, _utc(updated_at))
                for cid, status in statuses:
                    step, step_status, at = waiting.get(cid, (None, None, None))
                    failing = status == RUNNING and step_status == StepStatus.FAILED.value
                    members[cid] = MemberProgress(
                        status=CandidateStatus(status),
                        failures=failures.get(cid, 0),
                        failing=failing,
                        failed_step=step if failing else None,
                        failed_at=at if failing else None,
                        step_failures=step_failures.get((cid, step), 0) if failing and step else 0,
                        review_step=step if step_status == StepStatus.AWAITING_REVIEW.value else None,
                        rejected=sorted(rejected.get(cid, [])),
                    )
        return RolloutObservation(members=members, running=running, running_by_group=by_group)

    # -- bulk operations --------------------------------------------------------------------

    def create_bulk(self, operation: BulkOperation, outcomes: Sequence[BulkOutcome]) -> None:
        """The operation and one outcome per Candidate, in one transaction."""
        with self._session() as session:
            session.execute(
                self._insert(BULK_OPERATIONS).values(
                    id=operation.id,
                    migration_id=operation.migration_id,
                    action=operation.action.value,
                    actor=operation.actor,
                    request=operation.request,
                    state=operation.state.value,
                    total=len(outcomes),
                    created_at=operation.created_at,
                )
            )
            rows = [
                {
                    "op_id": operation.id,
                    "candidate_id": o.candidate_id,
                    "position": i,
                    "outcome": o.outcome.value,
                    "message": o.message,
                }
                for i, o in enumerate(outcomes)
            ]
            for start in range(0, len(rows), _INSERT_BATCH):
                session.execute(BULK_OUTCOMES.insert(), rows[start : start + _INSERT_BATCH])

    def delete_bulk(self, op_id: str) -> None:
        with self._session() as session:
            session.execute(delete(BULK_OUTCOMES).where(BULK_OUTCOMES.c.op_id == op_id))
            session.execute(delete(BULK_OPERATIONS).where(BULK_OPERATIONS.c.id == op_id))

    def set_bulk_outcome(self, op_id: str, candidate_id: str, outcome: BulkOutcomeKind, message: str | None) -> None:
        with self._session() as session:
            session.execute(
                update(BULK_OUTCOMES)
                .where(BULK_OUTCOMES.c.op_id == op_id, BULK_OUTCOMES.c.candidate_id == candidate_id)
                .values(outcome=outcome.value, message=message)
            )

    def bulk_outcome(self, op_id: str, candidate_id: str) -> BulkOutcomeKind | None:
        with self._session() as session:
            row = session.get(BulkOutcomeRow, (op_id, candidate_id))
            return BulkOutcomeKind(row.outcome) if row is not None else None

    def finish_bulk(self, op_id: str, now: datetime) -> None:
        with self._session() as session:
            session.execute(
                update(BULK_OPERATIONS)
                .where(BULK_OPERATIONS.c.id == op_id)
                .values(state=BulkState.DONE.value, finished_at=now)
            )

    # -- drift checks -------------------------------------------------------------------------

    def set_drift(self, check: DriftCheck) -> None:
        """Keep the Candidate's latest drift check (one row per Candidate)."""
        values = {
            "migration_id": check.migration_id,
            "candidate_id": check.candidate_id,
            "drifted": check.drifted,
            "changed_files": check.changed_files,
            "checked_at": check.checked_at,
            "actor": check.actor,
            "result": check.result.model_dump(mode="json"),
        }
        changed = ReadModelChange(check.migration_id, check.candidate_id)
        with self._session() as session:
            statement = self._insert(DRIFT).values(**values)
            keys = ("migration_id", "candidate_id")
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=list(keys), set_={k: v for k, v in values.items() if k not in keys}
                )
            )
            self._notify(session, changed)
        self._committed(changed)

    def get_drift(self, migration_id: str, candidate_id: str) -> DriftCheck | None:
        with self._session() as session:
            row = (
                session.execute(
                    select(DRIFT).where(DRIFT.c.migration_id == migration_id, DRIFT.c.candidate_id == candidate_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return DriftCheck(
            migration_id=row["migration_id"],
            candidate_id=row["candidate_id"],
            drifted=row["drifted"],
            changed_files=row["changed_files"],
            checked_at=_utc(row["checked_at"]),
            actor=row["actor"],
            result=DryRunResult.model_validate(row["result"]),
        )

    def _drifted(self, session: Session, migration_id: str, candidate_ids: Sequence[str]) -> dict[str, bool]:
        """The drift flags of the page's completed Candidates that were checked."""
        if not candidate_ids:
            return {}
        rows = session.execute(
            select(DRIFT.c.candidate_id, DRIFT.c.drifted).where(
                DRIFT.c.migration_id == migration_id, DRIFT.c.candidate_id.in_(list(candidate_ids))
            )
        )
        return dict(rows.tuples().all())

    def get_bulk(self, op_id: str) -> BulkOperation | None:
        with self._session() as session:
            row = session.get(BulkOperationRow, op_id)
            if row is None:
                return None
            outcomes = session.execute(
                select(BULK_OUTCOMES).where(BULK_OUTCOMES.c.op_id == op_id).order_by(BULK_OUTCOMES.c.position)
            ).mappings()
            return BulkOperation(
                id=row.id,
                migration_id=row.migration_id,
                action=BulkAction(row.action),
                actor=row.actor,
                request=row.request,
                state=BulkState(row.state),
                created_at=_utc(row.created_at) or _now(),
                finished_at=_utc(row.finished_at),
                outcomes=[
                    BulkOutcome(
                        candidate_id=o["candidate_id"], outcome=BulkOutcomeKind(o["outcome"]), message=o["message"]
                    )
                    for o in outcomes
                ],
            )

    def claim_candidate(self, migration_id: str, candidate_id: str, inputs: StringMap) -> CandidateStatus | None:
        """Compare-and-set, so two Starts of one Candidate can never both win."""
        with self._session() as session:
            claimed = session.execute(
                update(CANDIDATES)
                .where(
                    CANDIDATES.c.migration_id == migration_id,
                    CANDIDATES.c.id == candidate_id,
                    CANDIDATES.c.status == NOT_STARTED,
                )
                .values(status=RUNNING, inputs=inputs, updated_at=_now())
                .returning(CANDIDATES.c.id)
            ).first()
            if claimed is None:
                row = session.get(CandidateRow, (migration_id, candidate_id))
                return CandidateStatus(row.status) if row is not None else None
            _merge_into_metadata(session, migration_id, candidate_id, inputs)
            change = ReadModelChange(migration_id, candidate_id, CandidateStatus.RUNNING)
            self._notify(session, change)
        self._committed(change)
        return None

    def set_candidate_status(self, migration_id: str, candidate_id: str, status: CandidateStatus) -> None:
        change = ReadModelChange(migration_id, candidate_id, status)
        with self.engine.begin() as connection:
            self._set_candidate_status(connection, migration_id, candidate_id, status)
            self._notify(connection, change)
        self._committed(change)

    @staticmethod
    def _set_candidate_status(
        connection: Connection, migration_id: str, candidate_id: str, status: CandidateStatus
    ) -> None:
        params = {"status": status.value, "updated_at": _now(), "b_migration_id": migration_id, "b_id": candidate_id}
        connection.execute(_SET_CANDIDATE_STATUS, params)

    def apply_run_changes(
        self, run_id: str, migration_id: str, candidate_id: str, changes: list[RunChange], once: bool = False
    ) -> None:
        """All of a Run's pending changes in one transaction: one commit instead of one per change.

        `once`: skip the whole batch when its last event is already in the log, i.e. an earlier attempt
        wrote it; rewriting its Step results could undo what the Run wrote since.
        The hot write path of every Run, so it runs prebuilt statements on the bare Connection.
        """
        self.check_file()
        with self.engine.begin() as connection:
            if once:
                last_key = next((c.event_key for c in reversed(changes) if c.event_key is not None), None)
                if last_key is not None and connection.execute(_EVENT_WITH_KEY, {"key": last_key}).first():
                    return
            for change in changes:
                if change.candidate_status is not None:
                    self._set_candidate_status(connection, migration_id, candidate_id, change.candidate_status)
                if change.step_result is not None:
                    self._save_step_result(connection, run_id, migration_id, change.step_result)
                if change.event is not None and change.event_key is not None:
                    self._append_event(connection, change.event, change.event_key)
            self._keep_progress(connection, run_id, migration_id, candidate_id, changes)
            status = next((c.candidate_status for c in reversed(changes) if c.candidate_status is not None), None)
            changed = ReadModelChange(migration_id, candidate_id, status)
            self._notify(connection, changed)
        self._committed(changed)

    def _keep_progress(
        self, connection: Connection, run_id: str, migration_id: str, candidate_id: str, changes: list[RunChange]
    ) -> None:
        """Rewrite the Candidate's copy of its Run's progress (domain.run_progress) after the Run's writes."""
        events = [c.event.created_at for c in changes if c.event is not None]
        if not any(c.step_result is not None or c.candidate_status is not None for c in changes) and not events:
            return
        key = {"b_migration_id": migration_id, "b_id": candidate_id}
        row = connection.execute(_CANDIDATE_PROGRESS, key).mappings().first()
        if row is None:
            return
        values: dict[str, Any] = {}
        if events:
            latest = max(events)
            before = _utc(row["last_event_at"])
            values["last_event_at"] = latest if before is None or latest > before else before
        if any(c.step_result is not None or c.candidate_status is not None for c in changes):
            if row["status"] == NOT_STARTED:
                progress = RunProgress()
            else:
                results = [_step_result(r) for r in connection.execute(_RUN_RESULTS, {"run_id": run_id}).mappings()]
                results.sort(key=lambda r: r.started_at or _now())
                progress = run_progress(results, _progress_of(row), _now())
            values.update(_progress_row(progress))
        connection.execute(_UPDATE_CANDIDATE, {**key, **values})

    # -- step results and events ------------------------------------------------------------

    def reset_run(self, migration_id: str, candidate_id: str) -> None:
        """Scoped by Migration and Candidate, not by Run id alone, so it can never reach another Migration's Run."""
        with self._session() as session:
            session.execute(
                delete(StepResultRow).where(
                    STEP_RESULTS.c.migration_id == migration_id,
                    STEP_RESULTS.c.candidate_id == candidate_id,
                    STEP_RESULTS.c.run_id == run_id(migration_id, candidate_id),
                )
            )
            session.execute(
                update(CANDIDATES)
                .where(CANDIDATES.c.migration_id == migration_id, CANDIDATES.c.id == candidate_id)
                .values(_progress_row(RunProgress()))
            )
            self._notify(session, ReadModelChange(migration_id, candidate_id))
        self._committed(ReadModelChange(migration_id, candidate_id))

    def save_step_result(self, run_id: str, migration_id: str, result: StepResult) -> None:
        with self.engine.begin() as connection:
            self._save_step_result(connection, run_id, migration_id, result)
            self._keep_progress(connection, run_id, migration_id, result.candidate_id, [RunChange(step_result=result)])

    def _save_step_result(self, connection: Connection, run_id: str, migration_id: str, result: StepResult) -> None:
        row = {
            "run_id": run_id,
            "step_name": result.step_name,
            "migration_id": migration_id,
            "candidate_id": result.candidate_id,
            "status": result.status.value,
            "metadata": result.metadata,
            "pr_url": result.pr_url,
            "started_at": result.started_at,
            "updated_at": result.updated_at,
            "completed_at": result.completed_at,
        }
        connection.execute(_upsert_step_result(self._dialect), row)

    def step_results(self, run_id: str) -> list[StepResult]:
        with self._session() as session:
            rows = session.execute(select(STEP_RESULTS).where(STEP_RESULTS.c.run_id == run_id)).mappings()
            results = [_step_result(r) for r in rows]
        return sorted(results, key=lambda r: r.started_at or _now())

    def append_event(self, event: StepEvent, key: str) -> bool:
        with self.engine.begin() as connection:
            return self._append_event(connection, event, key)

    def _append_event(self, connection: Connection, event: StepEvent, key: str) -> bool:
        row = {
            "run_id": event.run_id,
            "migration_id": event.migration_id,
            "candidate_id": event.candidate_id,
            "step_name": event.step_name,
            "event_type": event.event_type.value,
            "status": event.status,
            "actor": event.actor,
            "duration_ms": event.duration_ms,
            "created_at": event.created_at,
            "key": key,
            "metadata": event.metadata,
        }
        event_id = connection.execute(_insert_event(self._dialect), row).scalar()
        if event_id is None:
            return False
        self._rollups.apply(connection, event_id, row)
        return True

    def rebuild_rollups(self) -> None:
        """Recompute the metrics rollups from the event log, for events written around append_event (bulk loads)."""
        with self._session() as session:
            self._rollups.rebuild(session)

    def list_events(
        self,
        migration_id: str | None,
        *,
        candidate_id: str | None = None,
        event_type: EventType | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: EventCursor | None = None,
        with_total: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> EventPage:
        """Newest first, of one Migration or all; `before` continues after the last event of a previous page (the
        export's keyset paging, which new events cannot shift as they shift an offset)."""
        table = STEP_EVENTS
        conditions: list[Any] = []
        if migration_id is not None:
            conditions.append(table.c.migration_id == migration_id)
        if candidate_id:
            conditions.append(table.c.candidate_id == candidate_id)
        if event_type:
            conditions.append(table.c.event_type == event_type.value)
        if actor:
            conditions.append(table.c.actor == actor)
        if since is not None:
            conditions.append(table.c.created_at >= _as_utc(since))
        if until is not None:
            conditions.append(table.c.created_at < _as_utc(until))
        if before is not None:
            at = _as_utc(before.created_at)
            conditions.append(or_(table.c.created_at < at, and_(table.c.created_at == at, table.c.id < before.id)))
        with self._session() as session:
            count = select(func.count()).select_from(table).where(*conditions)
            total = session.execute(count).scalar_one() if with_total else -1
            rows = session.execute(
                select(table)
                .where(*conditions)
                .order_by(table.c.created_at.desc(), table.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).mappings()
            events = [
                StepEvent(
                    id=r["id"],
                    run_id=r["run_id"],
                    migration_id=r["migration_id"],
                    candidate_id=r["candidate_id"],
                    step_name=r["step_name"],
                    event_type=EventType(r["event_type"]),
                    status=r["status"],
                    actor=r["actor"],
                    duration_ms=r["duration_ms"],
                    metadata=r["metadata"] or {},
                    created_at=_utc(r["created_at"]),
                )
                for r in rows
            ]
        return EventPage(events=events, total=total, limit=limit, offset=offset)

    # -- board queries ----------------------------------------------------------------------

    def activity_marker(self, migration_id: str | None = None) -> str:
        """A fingerprint that changes whenever anything a board shows changes; cheap enough to poll twice a second."""
        events, candidates, results, migrations = (
            STEP_EVENTS,
            CANDIDATES,
            STEP_RESULTS,
            MIGRATIONS,
        )
        queries = [
            select(func.max(events.c.id)).where(*_scoped(events, migration_id)),
            select(func.max(candidates.c.updated_at), func.count()).where(*_scoped(candidates, migration_id)),
            select(func.max(results.c.updated_at), func.count()).where(*_scoped(results, migration_id)),
            select(func.max(migrations.c.updated_at), func.count()).where(
                *([migrations.c.id == migration_id] if migration_id else [])
            ),
        ]
        with self._session() as session:
            parts = [session.execute(q).one() for q in queries]
        return "|".join(",".join(str(v) for v in part) for part in parts)

    def candidate_kinds(self, migration_id: str) -> list[str]:
        table = CANDIDATES
        with self._session() as session:
            rows = session.execute(
                select(table.c.kind).where(table.c.migration_id == migration_id).distinct().order_by(table.c.kind)
            )
            return [r[0] for r in rows]

    def attention_steps(self, open_pr_before: datetime, limit: int = 500) -> list[tuple[str, StepResult]]:
        """Steps of Runs in progress that wait on a person: reviews, failures, PRs open since before the cutoff.

        Oldest first, each with its Migration's id.
        """
        table = STEP_RESULTS
        waiting = or_(
            table.c.status.in_(ATTENTION_STATUSES),
            (table.c.status == StepStatus.OPEN.value) & (table.c.updated_at < open_pr_before),
        )
        with self._session() as session:
            rows = session.execute(
                select(table)
                .where(waiting, _run_is_active())
                .order_by(table.c.updated_at.asc(), table.c.run_id)
                .limit(limit)
            ).mappings()
            return [
                (
                    r["migration_id"],
                    _step_result(r),
                )
                for r in rows
            ]

    # -- metrics and history (queries in store/metrics.py) ------------------------------------

    @property
    def _metrics(self) -> MetricsQueries:
        return MetricsQueries(self._dialect)

    def metrics_overview(self, migration_id: str | None = None) -> MetricsOverview:
        with self._session() as session:
            return self._metrics.overview(session, migration_id)

    def step_metrics(self, migration_id: str | None = None) -> StepMetricsResponse:
        with self._session() as session:
            return self._metrics.steps(session, migration_id)

    def step_p95_ms(self, migration_id: str) -> dict[str, int]:
        with self._session() as session:
            return self._metrics.step_p95(session, migration_id)

    def metrics_timeline(self, days: int, today: date, migration_id: str | None = None) -> MetricsTimeline:
        with self._session() as session:
            return self._metrics.timeline(session, migration_id, days, today)

    def recent_failures(self, limit: int, migration_id: str | None = None) -> FailureList:
        with self._session() as session:
            return self._metrics.failures(session, migration_id, limit)

    def burndown(self, now: datetime, migration_id: str | None = None) -> Burndown:
        with self._session() as session:
            return self._metrics.burndown(session, migration_id, now)

    def prometheus_snapshot(self) -> PrometheusSnapshot:
        with self._session() as session:
            return self._metrics.prometheus(session)

    def candidate_metadata_keys(self, migration_id: str) -> list[str]:
        with self._session() as session:
            return self._metrics.metadata_keys(session, migration_id)


# The Runs' writes run these with each row's values; building them per call cost more CPU than the write.
_UPDATE_CANDIDATE = _SET_CANDIDATE_STATUS = update(CANDIDATES).where(
    CANDIDATES.c.migration_id == bindparam("b_migration_id"), CANDIDATES.c.id == bindparam("b_id")
)
_PROGRESS_COLUMNS = tuple(RunProgress.model_fields)
_CANDIDATE_PROGRESS = select(
    CANDIDATES.c.status, CANDIDATES.c.last_event_at, *(CANDIDATES.c[name] for name in _PROGRESS_COLUMNS)
).where(CANDIDATES.c.migration_id == bindparam("b_migration_id"), CANDIDATES.c.id == bindparam("b_id"))
_RUN_RESULTS = select(STEP_RESULTS).where(STEP_RESULTS.c.run_id == bindparam("run_id"))
_EVENT_WITH_KEY = select(STEP_EVENTS.c.id).where(STEP_EVENTS.c.key == bindparam("key"))
_ROLLOUT_POLICY = select(MIGRATIONS.c.rollout_policy).where(MIGRATIONS.c.id == bindparam("id"))
_STEP_RESULT_UPDATES = (
    "migration_id",
    "candidate_id",
    "status",
    "metadata",
    "pr_url",
    "started_at",
    "updated_at",
    "completed_at",
)


@cache
def _upsert_step_result(dialect: str) -> Any:
    statement = insert_on(dialect, STEP_RESULTS)
    return statement.on_conflict_do_update(
        index_elements=["run_id", "step_name"], set_={k: statement.excluded[k] for k in _STEP_RESULT_UPDATES}
    )


@cache
def _insert_event(dialect: str) -> Any:
    """Inserts nothing, and so returns no id, when the key is already there: a retried batch adds nothing."""
    return insert_on(dialect, STEP_EVENTS).on_conflict_do_nothing(index_elements=["key"]).returning(STEP_EVENTS.c.id)


def _progress_row(progress: RunProgress) -> dict[str, Any]:
    row = progress.model_dump(mode="python")
    for name in ("step_status", "checks", "review"):
        row[name] = row[name].value if row[name] is not None else None
    return row


def _progress_of(row: Any) -> RunProgress:
    return RunProgress.model_validate(
        {name: _utc(row[name]) if name.endswith(("_since", "_at")) else row[name] for name in _PROGRESS_COLUMNS}
    )


def _table_columns(row: Any, stuck: StuckLimits | None) -> dict[str, Any]:
    """What the Candidate table shows from the Candidate's copy of its Run's progress."""
    if row["status"] == NOT_STARTED:
        return {"last_event_at": _utc(row["last_event_at"])}
    status = StepStatus(row["step_status"]) if row["step_status"] else None
    since = _utc(row["status_since"])
    return {
        "status_since": since,
        "pr_opened_at": _utc(row["pr_opened_at"]),
        "checks": row["checks"],
        "review": row["review"],
        "mergeable": row["mergeable"],
        "last_event_at": _utc(row["last_event_at"]),
        "failure_message": row["failure_message"],
        "failure_group": row["failure_group"],
        "stuck": row["status"] == RUNNING and stuck is not None and stuck.flags(row["step_name"], status, since),
    }


def _filter_conditions(where: CandidateFilter, stuck: StuckLimits | None) -> list[Any]:
    """The filter as SQL over the candidates table (and its copy of each Run's progress)."""
    table = CANDIDATES
    conditions: list[Any] = []
    if where.status is not None:
        conditions.append(table.c.status == where.status.value)
    if where.kind:
        conditions.append(table.c.kind == where.kind)
    if where.q:
        pattern = f"%{like_literal(where.q.lower())}%"
        conditions.append(
            or_(
                table.c.id.like(pattern, escape="\\"),
                func.lower(cast(table.c.metadata, String)).like(pattern, escape="\\"),
            )
        )
    for key, value in where.metadata.items():
        conditions.append(table.c.metadata[key].as_string() == value)
    if where.needs_attention:
        # A Step waiting on a person is always the Run's current one (the first not succeeded): read off the copy.
        conditions.append(table.c.status == RUNNING)
        conditions.append(table.c.step_status.in_(ATTENTION_STATUSES))
    if where.drifted is not None:
        conditions.append(table.c.status == CandidateStatus.COMPLETED.value)
        conditions.append(
            exists().where(
                DRIFT.c.migration_id == table.c.migration_id,
                DRIFT.c.candidate_id == table.c.id,
                DRIFT.c.drifted == where.drifted,
            )
        )
    if where.on_progress:
        conditions.append(table.c.status != NOT_STARTED)
    now = stuck.now if stuck is not None else _now()
    if where.step is not None:
        conditions.append(table.c.step_name == where.step)
    if where.step_status is not None:
        conditions.append(table.c.step_status == where.step_status.value)
    if where.in_status_longer_than is not None:
        conditions.append(table.c.status_since < now - timedelta(seconds=where.in_status_longer_than))
    if where.pr_older_than is not None:
        conditions.append(table.c.pr_opened_at < now - timedelta(seconds=where.pr_older_than))
    for name in ("checks", "review"):
        value = getattr(where, name)
        if value is not None:
            conditions.append(table.c[name] == value.value)
    if where.mergeable is not None:
        conditions.append(table.c.mergeable == where.mergeable)
    if where.failure:
        pattern = f"%{like_literal(where.failure.lower())}%"
        conditions.append(func.lower(table.c.failure_message).like(pattern, escape="\\"))
    if where.failure_group is not None:
        conditions.append(table.c.failure_group == where.failure_group)
        conditions.append(table.c.step_status == StepStatus.FAILED.value)
    if where.stuck is not None:
        if stuck is None:
            raise ValueError("filtering on stuck needs the Migration's StuckLimits")
        condition = _stuck_condition(stuck)
        conditions.append(condition if where.stuck else not_(condition))
    return conditions


def _stuck_condition(stuck: StuckLimits) -> Any:
    """Never NULL, so that its negation is exact: running, a non-terminal status for longer than the Step's limit."""
    table = CANDIDATES
    name = func.coalesce(table.c.step_name, "")
    since = table.c.status_since
    known = sorted(stuck.p95_ms)
    too_long = [and_(name == step, since < stuck.now - timedelta(seconds=stuck.seconds(step))) for step in known]
    too_long.append(and_(name.not_in(known), since < stuck.now - timedelta(seconds=stuck.rule.floor_seconds)))
    return and_(
        table.c.status == RUNNING,
        table.c.step_status.is_not(None),
        table.c.step_status.in_(sorted(s.value for s in STUCK_STEP_STATUSES)),
        since.is_not(None),
        or_(*too_long),
    )


def _order(sort: CandidateSort | None) -> list[Any]:
    """Board order by default; a sort puts empty values last either way and breaks ties by id."""
    table = CANDIDATES
    if sort is None:
        return [table.c.position, table.c.id]
    columns: dict[SortField, Any] = {
        SortField.ID: table.c.id,
        SortField.KIND: table.c.kind,
        SortField.STEP: table.c.step_name,
        SortField.STEP_STATUS: table.c.step_status,
        SortField.TIME_IN_STATUS: table.c.status_since,
        SortField.LAST_EVENT: table.c.last_event_at,
        SortField.PR: table.c.pr_url,
    }
    if sort.by is SortField.METADATA:
        column = table.c.metadata[sort.metadata_key or ""].as_string()
    else:
        column = columns[sort.by]
    # Longer in status is an earlier status_since: timeInStatus ascending is status_since descending.
    descending = sort.descending != (sort.by is SortField.TIME_IN_STATUS)
    ordered = column.desc() if descending else column.asc()
    return [ordered.nulls_last(), table.c.id]


def _scoped(table: Any, migration_id: str | None) -> list[Any]:
    return [table.c.migration_id == migration_id] if migration_id else []


def _run_is_active() -> Any:
    """Attention counts only for Runs in progress: a cancelled Run's failed Step needs nobody."""
    return exists().where(
        CANDIDATES.c.migration_id == STEP_RESULTS.c.migration_id,
        CANDIDATES.c.id == STEP_RESULTS.c.candidate_id,
        CANDIDATES.c.status == RUNNING,
    )


def _merge_into_metadata(session: Session, migration_id: str, candidate_id: str, inputs: StringMap) -> None:
    """A Run's inputs show in its Candidate's metadata, as upstream's Start promises, so a client that edits
    the inputs from the metadata keeps them."""
    if not inputs:
        return
    where = (CANDIDATES.c.migration_id == migration_id, CANDIDATES.c.id == candidate_id)
    metadata = session.execute(select(CANDIDATES.c.metadata).where(*where)).scalar_one_or_none()
    session.execute(update(CANDIDATES).where(*where).values(metadata={**(metadata or {}), **inputs}))


def _row_mapping(row: CandidateRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "metadata": row.meta,
        "files": row.files,
        "steps": row.steps,
        "status": row.status,
    }


_CANDIDATES = TypeAdapter(list[Candidate])


def _step_result(r: Any) -> StepResult:
    return StepResult(
        step_name=r["step_name"],
        candidate_id=r["candidate_id"],
        status=StepStatus(r["status"]),
        metadata=r["metadata"] or {},
        pr_url=r["pr_url"],
        started_at=_utc(r["started_at"]),
        updated_at=_utc(r["updated_at"]),
        completed_at=_utc(r["completed_at"]),
    )


def _candidate_data(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "metadata": r["metadata"] or {},
        "files": r["files"] or [],
        "steps": r["steps"],
        "status": r["status"],
    }


def _candidate(r: Any) -> Candidate:
    return Candidate.model_validate(_candidate_data(r))


def _migration(row: MigrationRow, candidates: list[Candidate]) -> Migration:
    return Migration.model_construct(
        id=row.id,
        name=row.name,
        description=row.description,
        overview=list(row.overview or []),
        required_inputs=[_input(i) for i in row.required_inputs or []],
        steps=[_step(s) for s in row.steps or []],
        candidates=candidates,
        migrator_url=row.migrator_url,
        created_at=_utc(row.created_at) or row.created_at,
        updated_at=_utc(row.updated_at),
    )


def _input(data: dict[str, Any]) -> InputDefinition:
    return InputDefinition.model_validate(data)


def _step(data: dict[str, Any]) -> StepDefinition:
    return StepDefinition.model_validate(data)
