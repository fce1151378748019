"""Loom's use cases: the rules, with no HTTP, SQL or Temporal in sight.

The HTTP routes and the board both call these; adapters come in through the ports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from loom_backend import errors
from loom_backend.domain import (
    Burndown,
    Candidate,
    CandidatePage,
    CandidateStatus,
    CandidateStepsResponse,
    CandidateView,
    DryRunCandidateRequest,
    DryRunRequest,
    DryRunResult,
    EventPage,
    EventType,
    FailureList,
    MetricsOverview,
    MetricsTimeline,
    Migration,
    MigrationAnnouncement,
    MigrationManifest,
    MigrationSummary,
    PrometheusSnapshot,
    StepMetricsResponse,
    StepResult,
    StepStatus,
    StepStatusEvent,
    StringMap,
    merged_metadata,
    missing_inputs,
    run_id,
    steps_for,
)
from loom_backend.ports import ExecutionEngine, MigrationStore, MigratorNotifier

T = TypeVar("T")
MAX_TIMELINE_DAYS = 365
MAX_FAILURES = 500
CANDIDATE_EXPORT_COLUMNS = ("id", "kind", "status", "currentStep", "stepStatus", "prUrl", "stepUpdatedAt")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WaitingStep:
    """A Step of a Run in progress that waits on a person: what the "Needs me" queue lists."""

    migration_id: str
    migration_name: str
    step: StepResult
    reason: str  # "review", "failed" or "open_pr"
    waiting_since: datetime | None


class LoomService:
    def __init__(
        self,
        store: MigrationStore,
        engine: ExecutionEngine,
        notifier: MigratorNotifier,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.engine = engine
        self.notifier = notifier
        self.clock = clock

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The store is synchronous; keep it off the event loop that serves the board and the API."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- registry -------------------------------------------------------------------------

    async def announce(self, announcement: MigrationAnnouncement) -> None:
        await self.notifier.check_url(announcement.migrator_url)
        await self._db(self.store.announce, announcement, self.clock())

    async def submit_candidates(self, migration_id: str, candidates: list[Candidate]) -> None:
        await self.get_migration(migration_id, with_candidates=False)
        await self._db(self.store.submit_candidates, migration_id, candidates, self.clock())

    async def all_migrations(self) -> list[Migration]:
        return await self._db(self.store.all_migrations)

    async def list_migrations(self) -> list[MigrationSummary]:
        return await self._db(self.store.list_migrations)

    async def get_migration(self, migration_id: str, with_candidates: bool = True) -> Migration:
        migration = await self._db(self.store.get_migration, migration_id, with_candidates)
        if migration is None:
            raise errors.MigrationNotFound(migration_id)
        return migration

    async def list_candidates(
        self,
        migration_id: str,
        *,
        status: CandidateStatus | None = None,
        kind: str | None = None,
        text: str | None = None,
        metadata: StringMap | None = None,
        needs_attention: bool = False,
        limit: int = 500,
        offset: int = 0,
    ) -> CandidatePage:
        await self.get_migration(migration_id, with_candidates=False)
        return await self._db(
            self.store.list_candidates,
            migration_id,
            status=status,
            kind=kind,
            text=text,
            metadata=metadata,
            needs_attention=needs_attention,
            limit=limit,
            offset=offset,
        )

    async def get_candidate(self, migration_id: str, candidate_id: str) -> Candidate:
        candidate = await self._db(self.store.get_candidate, migration_id, candidate_id)
        if candidate is None:
            await self.get_migration(migration_id, with_candidates=False)
            raise errors.CandidateNotFound(migration_id, candidate_id)
        return candidate

    async def get_candidate_view(self, migration_id: str, candidate_id: str) -> CandidateView:
        page = await self._db(self.store.list_candidates, migration_id, candidate_id=candidate_id, limit=1)
        if not page.candidates:
            await self.get_candidate(migration_id, candidate_id)
        return page.candidates[0]

    async def get_inputs(self, migration_id: str, candidate_id: str) -> StringMap:
        await self.get_candidate(migration_id, candidate_id)
        return await self._db(self.store.get_inputs, migration_id, candidate_id)

    # -- Runs -------------------------------------------------------------------------------

    async def start_run(self, migration_id: str, candidate_id: str, inputs: StringMap, actor: str) -> None:
        migration = await self.get_migration(migration_id, with_candidates=False)
        candidate = await self.get_candidate(migration_id, candidate_id)
        saved = await self._db(self.store.get_inputs, migration_id, candidate_id)
        inputs = {**saved, **inputs}
        self._check_input_keys(migration, inputs)
        missing = missing_inputs(migration.required_inputs, {**candidate.metadata, **inputs})
        if missing:
            raise errors.InvalidInput(f"Missing required inputs: {', '.join(missing)}", field="inputs")
        status = await self._db(self.store.claim_candidate, migration_id, candidate_id, inputs)
        if status is not None:
            raise errors.CandidateAlreadyStarted(candidate_id, status.value)
        manifest = MigrationManifest(
            migration_id=migration_id,
            migrator_url=migration.migrator_url,
            candidate=candidate.model_copy(update={"status": CandidateStatus.RUNNING}),
            steps=steps_for(candidate, migration.steps),
            inputs=inputs,
        )
        try:
            await self._db(self.store.reset_run, migration_id, candidate_id)
            await self.engine.start_run(manifest, actor)
        except BaseException:
            await self._db(self.store.set_candidate_status, migration_id, candidate_id, CandidateStatus.NOT_STARTED)
            raise

    async def cancel_run(self, migration_id: str, candidate_id: str, actor: str) -> None:
        await self._require_running(migration_id, candidate_id)
        await self.engine.cancel_run(run_id(migration_id, candidate_id), actor)

    async def retry_step(self, migration_id: str, candidate_id: str, step_name: str, actor: str) -> None:
        await self._require_running(migration_id, candidate_id)
        await self.engine.retry_step(run_id(migration_id, candidate_id), step_name, actor)

    async def review_step(
        self, migration_id: str, candidate_id: str, step_name: str, approved: bool, actor: str, comment: str | None
    ) -> None:
        await self._require_running(migration_id, candidate_id)
        await self.engine.review_step(run_id(migration_id, candidate_id), step_name, approved, actor, comment)

    async def mark_merged(self, migration_id: str, candidate_id: str, step_name: str, actor: str) -> None:
        await self._require_running(migration_id, candidate_id)
        await self.engine.mark_merged(run_id(migration_id, candidate_id), step_name, actor)

    async def update_inputs(self, migration_id: str, candidate_id: str, inputs: StringMap, actor: str) -> None:
        migration = await self.get_migration(migration_id, with_candidates=False)
        candidate = await self.get_candidate(migration_id, candidate_id)
        self._check_input_keys(migration, inputs)
        saved = await self._db(self.store.get_inputs, migration_id, candidate_id)
        merged = {**saved, **inputs}
        await self._db(self.store.set_inputs, migration_id, candidate_id, merged)
        if candidate.status == CandidateStatus.RUNNING:
            await self.engine.update_inputs(run_id(migration_id, candidate_id), merged, actor)

    async def candidate_steps(self, migration_id: str, candidate_id: str) -> CandidateStepsResponse:
        candidate = await self.get_candidate(migration_id, candidate_id)
        results = await self._db(self.store.step_results, run_id(migration_id, candidate_id))
        if candidate.status == CandidateStatus.NOT_STARTED:
            raise errors.RunNotFound(run_id(migration_id, candidate_id))
        return CandidateStepsResponse(status=candidate.status, steps=results)

    async def step_event(self, the_run: str, event: StepStatusEvent) -> None:
        await self.engine.step_event(the_run, event)

    async def dry_run(self, migration_id: str, request: DryRunCandidateRequest) -> DryRunResult:
        migration = await self.get_migration(migration_id, with_candidates=False)
        if request.candidate is not None:
            candidate = request.candidate
            saved: StringMap = {}
        else:
            assert request.candidate_id is not None
            candidate = await self.get_candidate(migration_id, request.candidate_id)
            saved = await self._db(self.store.get_inputs, migration_id, candidate.id)
        inputs = {**saved, **request.inputs}
        self._check_input_keys(migration, inputs)
        return await self.notifier.dry_run(
            migration.migrator_url,
            DryRunRequest(
                migration_id=migration_id,
                candidate=merged_metadata(candidate, inputs),
                steps=steps_for(candidate, migration.steps),
            ),
        )

    async def list_events(
        self,
        migration_id: str,
        *,
        candidate_id: str | None = None,
        event_type: EventType | None = None,
        actor: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> EventPage:
        await self.get_migration(migration_id, with_candidates=False)
        return await self._db(
            self.store.list_events,
            migration_id,
            candidate_id=candidate_id,
            event_type=event_type,
            actor=actor,
            limit=limit,
            offset=offset,
        )

    # -- the board ---------------------------------------------------------------------------

    async def activity_marker(self, migration_id: str | None = None) -> str:
        """Changes whenever a board of this Migration (or of any, when None) would show something new."""
        return await self._db(self.store.activity_marker, migration_id)

    async def candidate_kinds(self, migration_id: str) -> list[str]:
        return await self._db(self.store.candidate_kinds, migration_id)

    async def needs_me(self, open_pr_attention_hours: float, limit: int = 500) -> list[WaitingStep]:
        """Across all Migrations: reviews to approve, failed Steps and PRs open too long, oldest first."""
        cutoff = self.clock() - timedelta(hours=open_pr_attention_hours)
        rows = await self._db(self.store.attention_steps, cutoff, limit)
        names = {m.id: m.name for m in await self.list_migrations()} if rows else {}
        reasons = {StepStatus.AWAITING_REVIEW: "review", StepStatus.FAILED: "failed", StepStatus.OPEN: "open_pr"}
        return [
            WaitingStep(
                migration_id=mid,
                migration_name=names.get(mid, mid),
                step=step,
                reason=reasons[step.status],
                waiting_since=step.updated_at or step.started_at,
            )
            for mid, step in rows
        ]

    # -- metrics and history ------------------------------------------------------------------

    async def metrics_overview(self, migration_id: str | None = None) -> MetricsOverview:
        await self._require_migration_if_named(migration_id)
        return await self._db(self.store.metrics_overview, migration_id)

    async def step_metrics(self, migration_id: str | None = None) -> StepMetricsResponse:
        await self._require_migration_if_named(migration_id)
        return await self._db(self.store.step_metrics, migration_id)

    async def metrics_timeline(self, days: int = 30, migration_id: str | None = None) -> MetricsTimeline:
        if not 1 <= days <= MAX_TIMELINE_DAYS:
            raise errors.InvalidInput(f"days must be between 1 and {MAX_TIMELINE_DAYS}; got {days}", field="days")
        await self._require_migration_if_named(migration_id)
        return await self._db(self.store.metrics_timeline, days, self.clock().astimezone(UTC).date(), migration_id)

    async def recent_failures(self, limit: int = 50, migration_id: str | None = None) -> FailureList:
        """The most recently failed Steps, newest first, with the error the Run recorded."""
        if not 1 <= limit <= MAX_FAILURES:
            raise errors.InvalidInput(f"limit must be between 1 and {MAX_FAILURES}; got {limit}", field="limit")
        await self._require_migration_if_named(migration_id)
        return await self._db(self.store.recent_failures, limit, migration_id)

    async def burndown(self, migration_id: str | None = None) -> Burndown:
        await self._require_migration_if_named(migration_id)
        return await self._db(self.store.burndown, self.clock().astimezone(UTC).date(), migration_id)

    async def prometheus_snapshot(self) -> PrometheusSnapshot:
        return await self._db(self.store.prometheus_snapshot)

    async def export_candidates(self, migration_id: str, page_size: int = 1000) -> AsyncIterator[list[str]]:
        """The header, then one row per Candidate in board order: what the CSV export streams.

        Read page by page so a Migration of tens of thousands of Candidates never sits in memory at once.
        """
        await self.get_migration(migration_id, with_candidates=False)
        keys = await self._db(self.store.candidate_metadata_keys, migration_id)
        yield [*CANDIDATE_EXPORT_COLUMNS, *(f"metadata.{k}" for k in keys)]
        offset = 0
        while True:
            page = await self._db(self.store.list_candidates, migration_id, limit=page_size, offset=offset)
            for c in page.candidates:
                yield [
                    c.id,
                    c.kind,
                    c.status.value,
                    c.current_step or "",
                    c.current_step_status.value if c.current_step_status else "",
                    c.pr_url or "",
                    c.step_updated_at.isoformat() if c.step_updated_at else "",
                    *(c.metadata.get(k, "") for k in keys),
                ]
            offset += len(page.candidates)
            if not page.candidates or offset >= page.total:
                return

    async def _require_migration_if_named(self, migration_id: str | None) -> None:
        if migration_id is not None:
            await self.get_migration(migration_id, with_candidates=False)

    # -- rules ------------------------------------------------------------------------------

    async def _require_running(self, migration_id: str, candidate_id: str) -> None:
        candidate = await self.get_candidate(migration_id, candidate_id)
        if candidate.status != CandidateStatus.RUNNING:
            raise errors.CandidateNotRunning(candidate_id)

    @staticmethod
    def _check_input_keys(migration: Migration, inputs: StringMap) -> None:
        known = {i.name for i in migration.required_inputs}
        unknown = sorted(set(inputs) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise errors.InvalidInput(
                f"Unknown inputs: {', '.join(unknown)}; this Migration takes: {allowed}", field="inputs"
            )
