"""Small hand-written fakes for what the service needs, so use cases are tested without Temporal, SQL or HTTP.

One in-memory fake per role port of the read model (they share a `FakeRegistry`, as the roles share one database),
an in-memory AuthStore, and fakes of the engine and the notifier that record what they were asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from loom_backend import errors
from loom_backend.domain import (
    Candidate,
    CandidateFilter,
    CandidatePage,
    CandidateStatus,
    CandidateView,
    DispatchStepRequest,
    DryRunRequest,
    DryRunResult,
    EventPage,
    FailureGroups,
    MetricsTimeline,
    Migration,
    MigrationAnnouncement,
    MigrationManifest,
    MigrationSummary,
    Ownership,
    Principal,
    PrincipalKind,
    ReadinessCheck,
    Role,
    RunChange,
    StepEvent,
    StepResult,
    StepStatusEvent,
    StringMap,
    StuckLimits,
    TokenKind,
    TokenRecord,
    UserRecord,
    run_id,
)
from loom_backend.rollout import BulkOperation, RolloutPolicy, RolloutState, RolloutStatus

VIEWER = Principal("vera", PrincipalKind.USER, Role.VIEWER)
OPERATOR = Principal("ana", PrincipalKind.USER, Role.OPERATOR)
ADMIN = Principal("root", PrincipalKind.USER, Role.ADMIN)


@dataclass
class FakeRegistry:
    """Migrations with their Candidates in a dict; re-discovery keeps the Candidates that have a Run."""

    migrations: dict[str, Migration] = field(default_factory=dict)
    inputs: dict[tuple[str, str], StringMap] = field(default_factory=dict)
    migration_inputs: dict[str, StringMap] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, RolloutStatus] = field(default_factory=dict)
    changes: int = 0  # what the board's activity marker follows

    def announce(self, announcement: MigrationAnnouncement, now: datetime) -> None:
        previous = self.migrations.get(announcement.id)
        self.migrations[announcement.id] = Migration.model_validate(
            {**announcement.model_dump(), "candidates": [], "created_at": previous.created_at if previous else now}
        )
        if previous is not None:
            self.migrations[announcement.id].candidates = previous.candidates
        self.submit_candidates(announcement.id, announcement.candidates, now)

    def submit_candidates(self, migration_id: str, candidates: list[Candidate], now: datetime) -> None:
        migration = self.migrations[migration_id]
        kept = {c.id: c for c in migration.candidates if c.status != CandidateStatus.NOT_STARTED}
        merged = [kept.pop(c.id, None) or c.model_copy(deep=True) for c in candidates]
        migration.candidates = merged + list(kept.values())
        migration.updated_at = now
        self.changes += 1

    def get_migration(self, migration_id: str, with_candidates: bool = True) -> Migration | None:
        migration = self.migrations.get(migration_id)
        if migration is None or with_candidates:
            return migration
        return migration.model_copy(update={"candidates": []})

    def all_migrations(self) -> list[Migration]:
        return list(self.migrations.values())

    def list_migrations(self) -> list[MigrationSummary]:
        return [MigrationSummary.model_validate(m.model_dump()) for m in self.migrations.values()]

    def get_candidate(self, migration_id: str, candidate_id: str) -> Candidate | None:
        migration = self.migrations.get(migration_id)
        return next((c for c in migration.candidates if c.id == candidate_id), None) if migration else None

    def get_inputs(self, migration_id: str, candidate_id: str) -> StringMap:
        return dict(self.inputs.get((migration_id, candidate_id), {}))

    def set_inputs(self, migration_id: str, candidate_id: str, inputs: StringMap) -> None:
        self.inputs[(migration_id, candidate_id)] = dict(inputs)
        candidate = self.get_candidate(migration_id, candidate_id)
        if candidate is not None:
            candidate.metadata = {**candidate.metadata, **inputs}

    def get_migration_inputs(self, migration_id: str) -> StringMap:
        return dict(self.migration_inputs.get(migration_id, {}))

    def set_migration_inputs(self, migration_id: str, inputs: StringMap) -> None:
        self.migration_inputs[migration_id] = dict(inputs)

    def get_rollout_policy(self, migration_id: str) -> dict[str, Any] | None:
        return self.policies.get(migration_id)

    def set_rollout_policy(self, migration_id: str, policy: dict[str, Any]) -> None:
        self.policies[migration_id] = policy

    def get_rollout_status(self, migration_id: str) -> RolloutStatus | None:
        return self.statuses.get(migration_id)

    def set_rollout_status(
        self, migration_id: str, status: RolloutStatus, events: Sequence[tuple[str, StepEvent]] = ()
    ) -> None:
        self.statuses[migration_id] = status

    def list_rollout_statuses(self) -> dict[str, RolloutStatus]:
        return dict(self.statuses)

    def set_status(self, migration_id: str, candidate_id: str, status: CandidateStatus) -> None:
        for candidate in self.migrations[migration_id].candidates:
            if candidate.id == candidate_id:
                candidate.status = status
        self.changes += 1


@dataclass
class FakeRunStore:
    """Claims a Candidate by its status in the registry, and keeps step results and Run changes per Run."""

    registry: FakeRegistry
    results: dict[str, list[StepResult]] = field(default_factory=dict)
    applied: list[tuple[str, list[RunChange]]] = field(default_factory=list)
    unwritable: Exception | None = None

    def check_writable(self) -> None:
        if self.unwritable is not None:
            raise self.unwritable

    def claim_candidate(self, migration_id: str, candidate_id: str, inputs: StringMap) -> CandidateStatus | None:
        candidate = self.registry.get_candidate(migration_id, candidate_id)
        if candidate is None or candidate.status != CandidateStatus.NOT_STARTED:
            return candidate.status if candidate else None
        self.registry.set_inputs(migration_id, candidate_id, inputs)
        self.registry.set_status(migration_id, candidate_id, CandidateStatus.RUNNING)
        return None

    def set_candidate_status(self, migration_id: str, candidate_id: str, status: CandidateStatus) -> None:
        self.registry.set_status(migration_id, candidate_id, status)

    def reset_run(self, migration_id: str, candidate_id: str) -> None:
        self.results.pop(run_id(migration_id, candidate_id), None)

    def step_results(self, run_id: str) -> list[StepResult]:
        return list(self.results.get(run_id, []))

    def apply_run_changes(
        self, run_id: str, migration_id: str, candidate_id: str, changes: list[RunChange], once: bool = False
    ) -> None:
        self.applied.append((run_id, changes))


@dataclass
class FakeBoard:
    """The board's reads over the registry: Candidates by status and kind, no events, a change counter."""

    registry: FakeRegistry
    waiting: list[tuple[str, StepResult]] = field(default_factory=list)

    def list_candidates(
        self,
        migration_id: str,
        where: CandidateFilter | None = None,
        *,
        candidate_id: str | None = None,
        limit: int | None = 500,
        offset: int = 0,
        **_: object,
    ) -> CandidatePage:
        status, kind = (where.status, where.kind) if where else (None, None)
        migration = self.registry.migrations[migration_id]
        found = [
            CandidateView.model_validate(c.model_dump())
            for c in migration.candidates
            if (status is None or c.status == status)
            and (kind is None or c.kind == kind)
            and (candidate_id is None or c.id == candidate_id)
        ]
        end = None if limit is None else offset + limit
        return CandidatePage(candidates=found[offset:end], total=len(found), limit=limit or len(found), offset=offset)

    def list_events(self, migration_id: str, *, limit: int = 100, offset: int = 0, **_: object) -> EventPage:
        return EventPage(events=[], total=0, limit=limit, offset=offset)

    def activity_marker(self, migration_id: str | None = None) -> str:
        return str(self.registry.changes)

    def candidate_kinds(self, migration_id: str) -> list[str]:
        return sorted({c.kind for c in self.registry.migrations[migration_id].candidates})

    def attention_steps(self, open_pr_before: datetime, limit: int = 500) -> list[tuple[str, StepResult]]:
        return [(mid, s) for mid, s in self.waiting if s.updated_at is None or s.updated_at < open_pr_before][:limit]

    def failure_groups(self, migration_id: str) -> FailureGroups:
        return FailureGroups(groups=[])

    def stuck_count(self, migration_id: str, stuck: StuckLimits) -> int:
        return 0


@dataclass
class FakeMetrics:
    """Only the timeline: what the service's own rules about metrics (limits, scoping) need."""

    asked: list[tuple[int, date, str | None]] = field(default_factory=list)

    def metrics_timeline(self, days: int, today: date, migration_id: str | None = None) -> MetricsTimeline:
        self.asked.append((days, today, migration_id))
        return MetricsTimeline(migration_id=migration_id, days=[])

    def step_p95_ms(self, migration_id: str) -> dict[str, int]:
        return {}


@dataclass
class FakeAuthStore:
    """Accounts, tokens, sessions and Migration owners in dicts; a Migration exists when the registry has it."""

    registry: FakeRegistry
    users: dict[str, UserRecord] = field(default_factory=dict)
    tokens: dict[str, TokenRecord] = field(default_factory=dict)  # by digest
    sessions: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # digest -> user, expiry
    owners: dict[str, str] = field(default_factory=dict)  # Migration -> token id

    def add_user(self, user: UserRecord) -> bool:
        return self.users.setdefault(user.name, user) is user

    def get_user(self, name: str) -> UserRecord | None:
        return self.users.get(name)

    def count_users(self) -> int:
        return len(self.users)

    def add_token(self, token: TokenRecord) -> bool:
        return self.tokens.setdefault(token.digest, token) is token

    def token_by_digest(self, digest: str) -> TokenRecord | None:
        return self.tokens.get(digest)

    def list_tokens(self) -> list[TokenRecord]:
        return list(self.tokens.values())

    def revoke_token(self, token_id: str, now: datetime) -> bool:
        found = [d for d, t in self.tokens.items() if t.id == token_id and t.revoked_at is None]
        for digest in found:
            self.tokens[digest] = replace(self.tokens[digest], revoked_at=now)
        return bool(found)

    def revoke_tokens_named(self, kind: TokenKind, name: str, now: datetime) -> int:
        named = [t.id for t in self.tokens.values() if t.kind == kind and t.name == name and t.revoked_at is None]
        return sum(self.revoke_token(token_id, now) for token_id in named)

    def add_session(self, digest: str, user_name: str, created_at: datetime, expires_at: datetime) -> None:
        self.sessions[digest] = (user_name, expires_at)

    def session_user(self, digest: str, now: datetime) -> UserRecord | None:
        name, expires_at = self.sessions.get(digest, ("", now))
        return self.users.get(name) if expires_at > now else None

    def delete_session(self, digest: str) -> None:
        self.sessions.pop(digest, None)

    def delete_expired_sessions(self, now: datetime) -> int:
        expired = [d for d, (_, expires_at) in self.sessions.items() if expires_at <= now]
        for digest in expired:
            del self.sessions[digest]
        return len(expired)

    def _active(self, token_id: str | None) -> bool:
        return any(t.id == token_id and t.revoked_at is None for t in self.tokens.values())

    def claim_migration(self, migration_id: str, token_id: str, now: datetime) -> str:
        if not self._active(self.owners.get(migration_id)):
            self.owners[migration_id] = token_id
        return self.owners[migration_id]

    def release_migration(self, migration_id: str, token_id: str) -> None:
        if self.owners.get(migration_id) == token_id:
            del self.owners[migration_id]

    def ownership(self, migration_id: str) -> Ownership:
        owner = self.owners.get(migration_id)
        return Ownership(migration_id in self.registry.migrations, owner if self._active(owner) else None)

    def signing_key(self, migration_id: str) -> bytes | None:
        owner = self.owners.get(migration_id)
        return next((bytes.fromhex(t.digest) for t in self.tokens.values() if t.id == owner), None)


@dataclass
class FakeEngine:
    """Records what the service asked of the engine; a Run 'exists' once started until cancelled."""

    started: dict[str, MigrationManifest] = field(default_factory=dict)
    actions: list[tuple[str, ...]] = field(default_factory=list)
    fail_start: Exception | None = None
    rollouts: dict[str, RolloutState] = field(default_factory=dict)
    bulks: list[tuple[str, list[str]]] = field(default_factory=list)
    checks: list[ReadinessCheck] = field(default_factory=lambda: [ReadinessCheck(name="temporal", ok=True)])

    async def readiness(self) -> list[ReadinessCheck]:
        return list(self.checks)

    async def start_run(self, manifest: MigrationManifest, actor: str) -> None:
        if self.fail_start:
            raise self.fail_start
        self.started[manifest.run_id] = manifest
        self.actions.append(("start", manifest.run_id, actor))

    async def cancel_run(self, run_id: str, actor: str) -> None:
        self.started.pop(run_id, None)
        self.actions.append(("cancel", run_id, actor))

    async def step_event(self, run_id: str, event: StepStatusEvent, actor: str | None = None) -> None:
        if run_id not in self.started:
            raise errors.RunNotFound(run_id)
        self.actions.append(("event", run_id, event.step_name, event.status.value, *([actor] if actor else [])))

    async def retry_step(self, run_id: str, step_name: str, actor: str) -> None:
        self.actions.append(("retry", run_id, step_name, actor))

    async def review_step(self, run_id: str, step_name: str, approved: bool, actor: str, comment: str | None) -> None:
        self.actions.append(("approve" if approved else "reject", run_id, step_name, actor))

    async def mark_merged(self, run_id: str, step_name: str, actor: str) -> None:
        self.actions.append(("mark_merged", run_id, step_name, actor))

    async def update_inputs(self, run_id: str, inputs: StringMap, actor: str) -> None:
        self.actions.append(("inputs", run_id, *sorted(inputs.items())))  # type: ignore[arg-type]

    async def is_running(self, run_id: str) -> bool:
        return run_id in self.started

    async def start_rollout(self, state: RolloutState) -> None:
        if state.migration_id in self.rollouts:
            raise errors.RolloutConflict("a rollout is in progress")
        self.rollouts[state.migration_id] = state

    async def rollout_action(self, migration_id: str, action: str, actor: str) -> None:
        if migration_id not in self.rollouts:
            raise errors.RolloutConflict("no rollout in progress")
        self.actions.append(("rollout", migration_id, action, actor))

    async def update_rollout_policy(self, migration_id: str, policy: RolloutPolicy, actor: str) -> None:
        self.rollouts[migration_id].policy = policy

    async def start_bulk(self, operation: BulkOperation, candidate_ids: list[str]) -> None:
        self.bulks.append((operation.id, list(candidate_ids)))


@dataclass
class FakeNotifier:
    dispatched: list[DispatchStepRequest] = field(default_factory=list)
    dry_runs: list[DryRunRequest] = field(default_factory=list)
    dry_run_result: DryRunResult | None = None

    refused_urls: set[str] = field(default_factory=set)

    async def check_url(self, migrator_url: str) -> None:
        if migrator_url in self.refused_urls:
            raise errors.InvalidInput(f"migratorUrl {migrator_url!r} is refused", field="migratorUrl")

    async def dispatch_step(self, request: DispatchStepRequest) -> None:
        self.dispatched.append(request)

    async def dry_run(self, migrator_url: str, request: DryRunRequest) -> DryRunResult:
        self.dry_runs.append(request)
        if self.dry_run_result is None:
            raise errors.MigratorUnavailable(f"Migrator at {migrator_url} did not answer")
        return self.dry_run_result
