"""Loom's use cases: the rules, with no HTTP, SQL or Temporal in sight.

The HTTP routes and the board both call these; adapters come in through the ports. Every use case takes the
`Principal` calling it and decides whether they may: viewers read, operators also drive Runs and previews,
admins may do everything, and a Migrator token reaches only the Migrations it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from loom_backend import errors
from loom_backend.domain import (
    EVENT_EXPORT_COLUMNS,
    MAX_COMMENT_LENGTH,
    MAX_INPUT_LENGTH,
    MAX_METADATA_KEYS,
    MAX_VIEWS_PER_MIGRATION,
    SESSION_COOKIE,
    Burndown,
    Candidate,
    CandidateFilter,
    CandidatePage,
    CandidateSort,
    CandidateStatus,
    CandidateStepsResponse,
    CandidateView,
    Credentials,
    DriftCheck,
    DryRunCandidateRequest,
    DryRunRequest,
    DryRunResult,
    EventCursor,
    EventPage,
    EventType,
    FailureGroups,
    FailureList,
    MetricsOverview,
    MetricsTimeline,
    Migration,
    MigrationAnnouncement,
    MigrationManifest,
    MigrationSummary,
    Principal,
    PrincipalKind,
    PrometheusSnapshot,
    Readiness,
    ReadinessCheck,
    Role,
    SavedView,
    SignInThrottle,
    StepMetricsResponse,
    StepResult,
    StepState,
    StepStatus,
    StepStatusEvent,
    StringMap,
    StuckLimits,
    StuckRule,
    changed_files,
    event_export_row,
    merged_metadata,
    missing_inputs,
    origin_refusal,
    run_id,
    steps_for,
    text_refusal,
    view_name_refusal,
    workflow_ui_url,
)
from loom_backend.ports import (
    BoardQueries,
    BulkStore,
    ChangeFeed,
    ChangeSubscription,
    DriftStore,
    ExecutionEngine,
    Gatekeeper,
    MetricsQueries,
    MigrationStore,
    MigratorNotifier,
    ReadinessProbe,
    Registry,
    RunStore,
    SavedViews,
    Webhooks,
)
from loom_backend.rollout import (
    BulkAction,
    BulkOperation,
    BulkOutcome,
    BulkOutcomeKind,
    BulkRequest,
    BulkState,
    RolloutPhase,
    RolloutPolicy,
    RolloutStartRequest,
    RolloutState,
    RolloutStatus,
    plan_order,
    policy_refusal,
    status_of,
)
from loom_backend.webhooks import Webhook, WebhookCreated, WebhookRequest

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_TIMELINE_DAYS = 365
READINESS_TIMEOUT_SECONDS = 5.0
MAX_FAILURES = 500
CANDIDATE_EXPORT_COLUMNS = ("id", "kind", "status", "currentStep", "stepStatus", "prUrl", "stepUpdatedAt")


def _utcnow() -> datetime:
    return datetime.now(UTC)


START_MANY_PARALLEL = 16  # a rollout's Starts in flight at once: each is a few store calls and a Temporal start


async def _refusal_of(starting: Awaitable[None]) -> str | None:
    """A Start on an operator's behalf: None when the Candidate has a Run (now or already), else why it was refused."""
    try:
        await starting
    except errors.CandidateAlreadyStarted:
        return None
    except errors.ServiceUnavailable:
        raise
    except errors.LoomError as exc:
        return str(exc)
    return None


# Set while a live page reloads after changes (`LoomService.sharing_reads`): its reads may be shared, by answers at
# least as fresh as this generation (-1: the feed's generation when each read is made).
_SHARING: contextvars.ContextVar[int | None] = contextvars.ContextVar("loom_sharing_reads", default=None)
MAX_SHARED_READS = 1_000


@dataclass(frozen=True)
class WaitingStep:
    """A Step of a Run in progress that waits on a person: what the "Needs me" queue lists."""

    migration_id: str
    migration_name: str
    step: StepResult
    reason: str  # "review", "failed", "open_pr", or "stuck" (a Step stuck in progress, waiting on no one in Loom)
    waiting_since: datetime | None
    stuck: bool = False  # in one status longer than the stuck rule allows (any reason)


@dataclass(frozen=True)
class WaitingRollout:
    """A rollout that waits on a person, for "Needs me": paused (by its breaker or an operator) or at a manual gate."""

    migration_id: str
    migration_name: str
    status: RolloutStatus


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


class LoomService:
    session_cookie = SESSION_COOKIE

    def __init__(
        self,
        *,
        registry: Registry,
        runs: RunStore,
        board: BoardQueries,
        metrics: MetricsQueries,
        engine: ExecutionEngine,
        notifier: MigratorNotifier,
        access: Gatekeeper,
        clock: Callable[[], datetime] = _utcnow,
        open_pr_attention_hours: float = 24.0,
        stuck_rule: StuckRule | None = None,
        public_url: str = "http://localhost:3000",
        sign_in_throttle: SignInThrottle | None = None,
        concurrent_sign_ins: int = 2,
        changes: ChangeFeed | None = None,
        probes: Sequence[ReadinessProbe] = (),
        bulk: BulkStore | None = None,
        temporal_ui_url: str | None = None,
        temporal_namespace: str = "default",
        drift: DriftStore | None = None,
        views: SavedViews | None = None,
        webhooks: Webhooks | None = None,
    ) -> None:
        self.bulk_store = bulk
        self.drift_store = drift
        self.temporal_ui_url = temporal_ui_url
        self.temporal_namespace = temporal_namespace
        self.views = views
        self.webhooks = webhooks
        self.registry = registry
        self.runs = runs
        self.board = board
        self.metrics = metrics
        self.engine = engine
        self.notifier = notifier
        self.access = access
        self.clock = clock
        self.open_pr_attention_hours = open_pr_attention_hours
        self.stuck_rule = stuck_rule or StuckRule()
        self.public_url = public_url
        self.sign_in_throttle = sign_in_throttle or SignInThrottle()
        # Each Argon2 check takes tens of MB for a moment: a few at a time keeps memory flat under a burst.
        self._hashing = asyncio.Semaphore(concurrent_sign_ins)
        self.changes = changes
        self.probes = tuple(probes)
        self._shared: dict[Any, tuple[int, asyncio.Future[Any]]] = {}
        self._in_flight: dict[Any, asyncio.Future[Any]] = {}

    @classmethod
    def over(
        cls,
        store: MigrationStore,
        engine: ExecutionEngine,
        notifier: MigratorNotifier,
        access: Gatekeeper,
        **options: Any,
    ) -> LoomService:
        """A service whose read model plays every role, as the SQL store does."""
        return cls(
            registry=store,
            runs=store,
            board=store,
            metrics=store,
            bulk=store,
            drift=store,
            engine=engine,
            notifier=notifier,
            access=access,
            **options,
        )

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The store is synchronous; keep it off the event loop that serves the board and the API."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    @contextlib.contextmanager
    def sharing_reads(self, fresh_as_of: int = -1) -> Iterator[None]:
        """Reads made inside are shared with every other live page reading the same: N tabs woken by one change
        cost one query each, not N. An answer serves while it is at least as fresh as `fresh_as_of` (the changes
        the page has taken from its feed, `ChangeSubscription.seen`), so tabs reloading in one tick share it even
        while writes go on; without it, only at the same change generation. Only for pages that follow the change
        feed, which reloads them again after any change a shared answer may have missed."""
        token = _SHARING.set(fresh_as_of)
        try:
            yield
        finally:
            _SHARING.reset(token)

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read of the board or its panels: shared while `sharing_reads` (the newest answer of each query, kept
        with the generation it was asked at), from the store otherwise. Answers are shared objects: callers never
        mutate them."""
        fresh_as_of = _SHARING.get()
        if fresh_as_of is None or self.changes is None:
            return await self._db(fn, *args, **kwargs)
        generation = self.changes.generation  # asked after this generation's commits: it sees all of them
        key = (fn, repr(args), repr(sorted(kwargs.items())))
        shared = self._shared.get(key)
        if (
            shared is not None
            and shared[0] >= (generation if fresh_as_of < 0 else fresh_as_of)
            and not _failed(shared[1])
        ):
            return await asyncio.shield(shared[1])
        if len(self._shared) >= MAX_SHARED_READS:
            self._shared = {}
        future = asyncio.ensure_future(self._db(fn, *args, **kwargs))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even if nobody waits
        self._shared[key] = (generation, future)
        return await asyncio.shield(future)

    async def _read_fresh(self, fn: Callable[..., T], *args: Any) -> T:
        """A read whose answer no change announces: while `sharing_reads`, shared only by the live pages asking
        while one is in flight (the tabs of one tick), never answered from a finished one."""
        if _SHARING.get() is None:
            return await self._db(fn, *args)
        key = (fn, repr(args))
        future = self._in_flight.get(key)
        if future is None:
            future = self._in_flight[key] = asyncio.ensure_future(self._db(fn, *args))

            def done(f: asyncio.Future[Any], key: Any = key) -> None:
                if self._in_flight.get(key) is f:
                    del self._in_flight[key]
                f.cancelled() or f.exception()  # retrieved, even if nobody waits

            future.add_done_callback(done)
        return await asyncio.shield(future)

    # -- who is calling ---------------------------------------------------------------------

    def workflow_url(self, run_id: str) -> str | None:
        """The Run's workflow in the Temporal Web UI, when LOOM_TEMPORAL_UI_URL names one (configuration, not data:
        the page shows it to whoever may see the Run)."""
        return workflow_ui_url(self.temporal_ui_url, self.temporal_namespace, run_id)

    @property
    def proxy_header(self) -> str | None:
        """The header an authenticating proxy names the operator in, when Loom trusts one."""
        return self.access.proxy_header

    @property
    def session_seconds(self) -> int:
        return int(self.access.session_lifetime.total_seconds())

    @property
    def secure_cookie(self) -> bool:
        return self.access.secure_cookie

    async def authenticate(self, credentials: Credentials) -> Principal:
        """Who sent these credentials: the proxy's user name (when Loom trusts one), then the session, then the
        bearer token. The HTTP routes and the pages both ask this; raises Unauthenticated."""
        if self.access.proxy_header and credentials.proxy_user:
            return await self._db(self.access.proxy_user, credentials.proxy_user)
        cookie = credentials.session
        if cookie and len(cookie) <= 256:
            principal = await self._db(self.access.session, cookie)
            if principal is not None:
                if credentials.writes:  # a browser sends the cookie whoever's page asks: the page must be Loom's
                    self.check_origin(credentials.source, credentials.host, required=True)
                return principal
            if credentials.bearer is None:
                raise errors.Unauthenticated("The session has expired or was signed out; sign in again")
        if credentials.bearer is not None:
            return await self._bearer(credentials.bearer)
        raise errors.Unauthenticated("Sign in (POST /api/auth/login) or send `Authorization: Bearer <operator token>`")

    async def authenticate_migrator(self, bearer: str | None) -> Principal:
        """A Migrator's bearer token; an operator's is refused, whatever it may do elsewhere."""
        if bearer is None:
            raise errors.Unauthenticated(
                "Migrator routes need `Authorization: Bearer <token>`; an admin creates one with "
                "`loom token create <migrator-app>`"
            )
        principal = await self._bearer(bearer)
        self.require_migrator(principal)
        return principal

    async def _bearer(self, token: str) -> Principal:
        """A remembered answer needs no thread hop: a busy Migrator's every callback asks this."""
        principal = self.access.recent_bearer(token) or await self._db(self.access.bearer, token)
        if principal is None:
            raise errors.Unauthenticated("The bearer token is not valid: unknown or revoked")
        return principal

    @staticmethod
    def authorize(principal: Principal, needed: Role) -> None:
        """Operators' use cases need a role at least `needed`; Migrator tokens have none."""
        if principal.is_migrator or principal.role is None:
            raise errors.Forbidden("Migrator tokens may only call the Migrator routes; sign in as an operator")
        if not principal.role.allows(needed):
            raise errors.Forbidden(f"{principal.name} is a {principal.role.value}; this needs the {needed.value} role")

    @staticmethod
    def require_migrator(principal: Principal) -> None:
        if not principal.is_migrator:
            raise errors.Forbidden("This is an operator token; Migrator routes need a Migrator token")

    def check_origin(self, source: str | None, host: str | None, *, required: bool) -> None:
        """Refuse a request a page of another site made a browser send (see `auth.origin_refusal`)."""
        refusal = origin_refusal(source, host, self.public_url, required=required)
        if refusal is not None:
            raise errors.CrossSiteRequest(refusal)

    async def login(self, username: str, password: str, client: str = "") -> tuple[str, Principal]:
        """Check a built-in account's password and open a session: its secret (the cookie) and who signed in.

        Throttled per account and per client address (TooManySignIns); a few Argon2 checks at a time.
        """
        wait = self.sign_in_throttle.retry_after(username, client)
        if wait is not None:
            log.warning("Sign-in refused for %r from %s: too many failed sign-ins lately", username, client)
            raise errors.TooManySignIns(
                f"Too many failed sign-ins for this account or from this address; try again in {wait} s", wait
            )
        try:
            async with self._hashing:
                return await self._db(self.access.login, username, password)
        except errors.Unauthenticated:
            self.sign_in_throttle.failed(username, client)
            log.warning("Failed sign-in for %r from %s", username, client)
            raise

    async def logout(self, session: str) -> None:
        if session and len(session) <= 256:
            await self._db(self.access.logout, session)

    # -- registry -------------------------------------------------------------------------

    async def announce(self, principal: Principal, announcement: MigrationAnnouncement) -> None:
        """Register or update a Migration; the first token to announce it owns it, and keeps it only if this works."""
        self.require_migrator(principal)
        claimed = await self._db(self.access.claim_migration, principal, announcement.id)
        try:
            await self.notifier.check_url(announcement.migrator_url)
            await self._db(self.registry.announce, announcement, self.clock())
        except BaseException:
            if claimed:
                await self._db(self.access.release_migration, principal, announcement.id)
            raise

    async def submit_candidates(self, principal: Principal, migration_id: str, candidates: list[Candidate]) -> None:
        self.require_migrator(principal)
        await self._db(self.access.check_migration, principal, migration_id)
        await self._migration(migration_id, with_candidates=False)
        await self._db(self.registry.submit_candidates, migration_id, candidates, self.clock())

    async def step_event(self, principal: Principal, migration_id: str, the_run: str, event: StepStatusEvent) -> None:
        """A Migrator's callback (only the owning token's, remembered for a few seconds so callbacks stay cheap),
        or an operator's manual override of a Step's status, recorded with the operator as actor."""
        if not principal.is_migrator:
            self.authorize(principal, Role.OPERATOR)
            await self._require_running(migration_id, event.candidate_id)
            await self.engine.step_event(the_run, event, actor=principal.name)
            return
        if not self.access.recently_allowed(principal, migration_id):
            await self._db(self.access.check_migration, principal, migration_id)
        await self.engine.step_event(the_run, event)

    # -- reading ----------------------------------------------------------------------------

    async def all_migrations(self, principal: Principal) -> list[Migration]:
        self.authorize(principal, Role.VIEWER)
        return await self._db(self.registry.all_migrations)

    async def list_migrations(self, principal: Principal) -> list[MigrationSummary]:
        self.authorize(principal, Role.VIEWER)
        return await self._db(self.registry.list_migrations)

    async def get_migration(self, principal: Principal, migration_id: str, with_candidates: bool = True) -> Migration:
        self.authorize(principal, Role.VIEWER)
        return await self._migration(migration_id, with_candidates)

    async def _migration(self, migration_id: str, with_candidates: bool = True) -> Migration:
        migration = await self._read(self.registry.get_migration, migration_id, with_candidates)
        if migration is None:
            raise errors.MigrationNotFound(migration_id)
        return migration

    async def list_candidates(
        self,
        principal: Principal,
        migration_id: str,
        where: CandidateFilter | None = None,
        *,
        sort: CandidateSort | None = None,
        status: CandidateStatus | None = None,
        kind: str | None = None,
        text: str | None = None,
        metadata: StringMap | None = None,
        needs_attention: bool = False,
        candidate_id: str | None = None,
        limit: int | None = 500,
        offset: int = 0,
    ) -> CandidatePage:
        """One page of the Candidates that match; `limit=None` answers all of them.

        `where` is the one filter; the board's own keywords (status, kind, text, metadata, needsAttention) narrow it.
        Each view says whether its current Step is stuck.
        """
        self.authorize(principal, Role.VIEWER)
        await self._migration(migration_id, with_candidates=False)
        where = _narrowed(where, status=status, kind=kind, q=text, metadata=metadata, needs_attention=needs_attention)
        return await self._read(
            self.board.list_candidates,
            migration_id,
            where,
            sort=sort,
            stuck=await self._stuck_limits(migration_id),
            candidate_id=candidate_id,
            limit=limit,
            offset=offset,
        )

    async def _stuck_limits(self, migration_id: str) -> StuckLimits:
        """The stuck rule for this Migration now: each Step's p95 duration, from the metrics rollups."""
        p95 = await self._read(self.metrics.step_p95_ms, migration_id)
        # Whole seconds: live pages asking within the same second share one query (`_read` keys on the limits).
        return StuckLimits(now=self.clock().replace(microsecond=0), rule=self.stuck_rule, p95_ms=p95)

    async def failure_groups(self, principal: Principal, migration_id: str) -> FailureGroups:
        """Failed Steps grouped by Step and normalised message; retry one with a bulk retry on its `failureGroup`."""
        self.authorize(principal, Role.VIEWER)
        await self._migration(migration_id, with_candidates=False)
        return await self._db(self.board.failure_groups, migration_id)

    async def stuck_counts(self, principal: Principal) -> dict[str, int]:
        """Runs with a stuck current Step, by Migration id (every Migration, zeros included)."""
        self.authorize(principal, Role.VIEWER)
        counts: dict[str, int] = {}
        for m in await self._read(self.registry.list_migrations):
            counts[m.id] = await self._read(self.board.stuck_count, m.id, await self._stuck_limits(m.id))
        return counts

    async def get_candidate(self, principal: Principal, migration_id: str, candidate_id: str) -> Candidate:
        self.authorize(principal, Role.VIEWER)
        return await self._candidate(migration_id, candidate_id)

    async def _candidate(self, migration_id: str, candidate_id: str) -> Candidate:
        candidate = await self._db(self.registry.get_candidate, migration_id, candidate_id)
        if candidate is None:
            await self._migration(migration_id, with_candidates=False)
            raise errors.CandidateNotFound(migration_id, candidate_id)
        return candidate

    async def get_candidate_view(self, principal: Principal, migration_id: str, candidate_id: str) -> CandidateView:
        self.authorize(principal, Role.VIEWER)
        page = await self._db(self.board.list_candidates, migration_id, candidate_id=candidate_id, limit=1)
        if not page.candidates:
            await self._candidate(migration_id, candidate_id)
        return page.candidates[0]

    async def get_inputs(self, principal: Principal, migration_id: str, candidate_id: str) -> StringMap:
        self.authorize(principal, Role.VIEWER)
        await self._candidate(migration_id, candidate_id)
        return await self._db(self.registry.get_inputs, migration_id, candidate_id)

    # -- Runs (the actor recorded is the principal's name) ----------------------------------

    async def start_run(self, principal: Principal, migration_id: str, candidate_id: str, inputs: StringMap) -> None:
        self.authorize(principal, Role.OPERATOR)
        migration = await self._migration(migration_id, with_candidates=False)
        shared = await self._db(self.registry.get_migration_inputs, migration_id)
        await self._start(principal.name, migration, shared, candidate_id, inputs)

    async def _start(
        self, actor: str, migration: Migration, shared: StringMap, candidate_id: str, inputs: StringMap
    ) -> None:
        """Start one Candidate's Run of `migration`, whose own inputs are `shared` (read once for many Starts)."""
        migration_id = migration.id
        candidate = await self._candidate(migration_id, candidate_id)
        saved = await self._db(self.registry.get_inputs, migration_id, candidate_id)
        own = {**saved, **inputs}
        self._check_input_keys(migration, candidate, own)
        # The Migration's values fill what the Candidate does not set itself; only its own are saved with it.
        inputs = {**shared, **own}
        missing = missing_inputs(migration.required_inputs, {**candidate.metadata, **inputs})
        if missing:
            raise errors.InvalidInput(
                f"Missing required inputs: {', '.join(missing)}; set them for this Candidate or, once for every "
                "Candidate, with PATCH /api/migrations/{id}/inputs",
                field="inputs",
            )
        status = await self._db(self.runs.claim_candidate, migration_id, candidate_id, own)
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
            await self._db(self.runs.reset_run, migration_id, candidate_id)
            await self.engine.start_run(manifest, actor)
        except BaseException:
            await self._db(self.runs.set_candidate_status, migration_id, candidate_id, CandidateStatus.NOT_STARTED)
            raise

    async def cancel_run(self, principal: Principal, migration_id: str, candidate_id: str) -> None:
        self.authorize(principal, Role.OPERATOR)
        await self._require_running(migration_id, candidate_id)
        await self.engine.cancel_run(run_id(migration_id, candidate_id), principal.name)

    async def retry_step(self, principal: Principal, migration_id: str, candidate_id: str, step_name: str) -> None:
        self.authorize(principal, Role.OPERATOR)
        await self._require_running(migration_id, candidate_id)
        await self.engine.retry_step(run_id(migration_id, candidate_id), step_name, principal.name)

    async def review_step(
        self,
        principal: Principal,
        migration_id: str,
        candidate_id: str,
        step_name: str,
        approved: bool,
        comment: str | None = None,
    ) -> None:
        self.authorize(principal, Role.OPERATOR)
        refusal = text_refusal("The comment", comment or "", MAX_COMMENT_LENGTH)
        if refusal:
            raise errors.InvalidInput(refusal, field="comment")
        await self._require_running(migration_id, candidate_id)
        await self.engine.review_step(run_id(migration_id, candidate_id), step_name, approved, principal.name, comment)

    async def mark_merged(self, principal: Principal, migration_id: str, candidate_id: str, step_name: str) -> None:
        self.authorize(principal, Role.OPERATOR)
        await self._require_running(migration_id, candidate_id)
        await self.engine.mark_merged(run_id(migration_id, candidate_id), step_name, principal.name)

    async def update_inputs(
        self, principal: Principal, migration_id: str, candidate_id: str, inputs: StringMap
    ) -> None:
        self.authorize(principal, Role.OPERATOR)
        migration = await self._migration(migration_id, with_candidates=False)
        candidate = await self._candidate(migration_id, candidate_id)
        saved = await self._db(self.registry.get_inputs, migration_id, candidate_id)
        merged = {**saved, **inputs}
        self._check_input_keys(migration, candidate, merged)
        await self._db(self.registry.set_inputs, migration_id, candidate_id, merged)
        if candidate.status == CandidateStatus.RUNNING:
            await self.engine.update_inputs(run_id(migration_id, candidate_id), merged, principal.name)

    async def get_migration_inputs(self, principal: Principal, migration_id: str) -> StringMap:
        self.authorize(principal, Role.VIEWER)
        await self._migration(migration_id, with_candidates=False)
        return await self._db(self.registry.get_migration_inputs, migration_id)

    async def update_migration_inputs(self, principal: Principal, migration_id: str, inputs: StringMap) -> StringMap:
        """Values for every Candidate of the Migration, merged over those set before; a Candidate's own win.

        An empty value removes the Migration's value. Runs already running keep the inputs they started with.
        """
        self.authorize(principal, Role.OPERATOR)
        migration = await self._migration(migration_id, with_candidates=False)
        self._check_input_keys(migration, None, inputs)
        saved = await self._db(self.registry.get_migration_inputs, migration_id)
        merged = {k: v for k, v in {**saved, **inputs}.items() if v.strip()}
        await self._db(self.registry.set_migration_inputs, migration_id, merged)
        return merged

    # -- the rollout -----------------------------------------------------------------------------

    async def set_rollout_policy(self, principal: Principal, migration_id: str, policy: RolloutPolicy) -> RolloutPolicy:
        """Save the policy the next rollout starts with; a rollout in progress takes it at once (caps, gates, waves)."""
        self.authorize(principal, Role.OPERATOR)
        await self._check_policy(migration_id, policy)
        current = await self._db(self.registry.get_rollout_status, migration_id)
        if current is not None and not current.state.over:
            with contextlib.suppress(errors.RolloutNotRunning):  # ended without saying so (say, terminated)
                await self.engine.update_rollout_policy(migration_id, policy, principal.name)
        await self._db(self.registry.set_rollout_policy, migration_id, policy.model_dump(mode="json"))
        return policy

    async def _check_policy(self, migration_id: str, policy: RolloutPolicy) -> Migration:
        migration = await self._migration(migration_id, with_candidates=True)
        keys = await self._db(self.metrics.candidate_metadata_keys, migration_id)
        refusal = policy_refusal(policy, {c.id for c in migration.candidates}, set(keys), migration.steps)
        if refusal is not None:
            raise errors.InvalidPolicy(refusal, field=refusal.split(":")[0].split(" ")[0])
        return migration

    async def rollout_status(self, principal: Principal, migration_id: str) -> RolloutStatus:
        self.authorize(principal, Role.VIEWER)
        await self._migration(migration_id, with_candidates=False)
        # Never shared by change generation: a rollout writes its status a moment after the Runs it moved, with no
        # change of its own, and the pages reading it again on their slow tick must see the new one.
        return await self._read_fresh(self._rollout_status, migration_id)

    def _rollout_status(self, migration_id: str) -> RolloutStatus:
        current = self.registry.get_rollout_status(migration_id)
        if current is not None:
            return current
        saved = self.registry.get_rollout_policy(migration_id)
        return RolloutStatus(state=RolloutPhase.IDLE, policy=RolloutPolicy.model_validate(saved) if saved else None)

    async def start_rollout(
        self, principal: Principal, migration_id: str, request: RolloutStartRequest
    ) -> RolloutStatus:
        """Start Runs by the saved policy over the not-started Candidates of the selection (all, ids or a filter)."""
        self.authorize(principal, Role.OPERATOR)
        saved = await self._db(self.registry.get_rollout_policy, migration_id)
        if saved is None:
            await self._migration(migration_id, with_candidates=False)
            raise errors.RolloutConflict(
                f"Migration {migration_id!r} has no rollout policy; PUT /api/migrations/{migration_id}/rollout first"
            )
        policy = RolloutPolicy.model_validate(saved)
        migration = await self._check_policy(migration_id, policy)
        selection = await self._select(migration_id, request.candidate_ids, request.filter)
        chosen = [c for c in selection if c.status == CandidateStatus.NOT_STARTED]
        if not chosen:
            raise errors.InvalidInput("The selection has no not-started Candidate to roll out", field="candidateIds")
        by_id = {c.id: c for c in migration.candidates}
        chosen_ids = {c.id for c in chosen}
        for cid in sorted(chosen_ids):
            for dep in policy.depends_on.get(cid, []):
                if dep not in chosen_ids and by_id[dep].status != CandidateStatus.COMPLETED:
                    raise errors.InvalidPolicy(
                        f"dependsOn: {cid!r} waits for {dep!r}, which is neither completed nor in the selection; "
                        "add it to the selection or start it first",
                        field="dependsOn",
                    )
        order_key = policy.order
        group = policy.max_running_per_group
        queue = plan_order(
            [c.id for c in chosen],
            {c.id: c.metadata[order_key] for c in chosen if order_key and order_key in c.metadata},
            policy.depends_on,
        )
        state = RolloutState(
            migration_id=migration_id,
            actor=principal.name,
            policy=policy,
            policy_by=principal.name,
            queue=queue,
            groups={c: by_id[c].metadata[group.key] for c in queue if group and group.key in by_id[c].metadata},
            started_at=self.clock(),
        )
        await self.engine.start_rollout(state)
        status = status_of(state)
        await self._db(self.registry.set_rollout_status, migration_id, status)
        return status

    async def rollout_action(self, principal: Principal, migration_id: str, action: str) -> None:
        """pause, resume, promote or stop the Migration's rollout; the engine refuses what does not fit (409)."""
        self.authorize(principal, Role.OPERATOR)
        await self._migration(migration_id, with_candidates=False)
        await self.engine.rollout_action(migration_id, action, principal.name)

    async def _select(
        self, migration_id: str, candidate_ids: list[str] | None, where: CandidateFilter | None
    ) -> list[CandidateView]:
        """The Candidates of a selection in board order: every one, those named, or those the filter matches."""
        where = where or CandidateFilter()
        stuck = await self._stuck_limits(migration_id)
        views: list[CandidateView] = []
        offset = 0
        while True:
            page = await self._db(
                self.board.list_candidates, migration_id, where, stuck=stuck, limit=5000, offset=offset
            )
            views.extend(page.candidates)
            offset += len(page.candidates)
            if not page.candidates or offset >= page.total:
                break
        if candidate_ids is not None:
            known = {v.id for v in views}
            unknown = [c for c in candidate_ids if c not in known]
            if unknown and not where.model_fields_set:
                raise errors.InvalidInput(
                    f"Candidates not in Migration {migration_id!r}: {', '.join(unknown[:10])}", field="candidateIds"
                )
            wanted = set(candidate_ids)
            views = [v for v in views if v.id in wanted]
        return views

    # -- bulk operations -------------------------------------------------------------------------

    async def bulk(self, principal: Principal, migration_id: str, request: BulkRequest) -> BulkOperation:
        """Preview (dryRun) or start a durable bulk action; each Candidate's outcome is read back by the op id."""
        self.authorize(principal, Role.OPERATOR)
        migration = await self._migration(migration_id, with_candidates=False)
        if request.candidate_ids is None and request.filter is None:
            raise errors.InvalidInput("Give candidateIds or a filter: a bulk action never means every Candidate")
        selection = await self._select(migration_id, request.candidate_ids, request.filter)
        shared = await self._db(self.registry.get_migration_inputs, migration_id)
        outcomes = []
        for view in selection:
            saved = await self._db(self.registry.get_inputs, migration_id, view.id) if request.action == "start" else {}
            skip = _bulk_skip(request, view, migration, {**shared, **saved})
            outcomes.append(
                BulkOutcome(candidate_id=view.id, outcome=BulkOutcomeKind.SKIPPED, message=skip)
                if skip
                else BulkOutcome(candidate_id=view.id)
            )
        operation = BulkOperation(
            id=uuid.uuid4().hex,
            migration_id=migration_id,
            action=request.action,
            actor=principal.name,
            request=request.model_dump(mode="json", exclude_none=True),
            state=BulkState.RUNNING,
            created_at=self.clock(),
            outcomes=outcomes,
        )
        if request.dry_run:
            return operation
        bulk = self._bulk_store()
        todo = [o.candidate_id for o in outcomes if o.outcome is BulkOutcomeKind.PENDING]
        await self._db(bulk.create_bulk, operation, outcomes)
        try:
            if todo:
                await self.engine.start_bulk(operation, todo)
            else:
                await self._db(bulk.finish_bulk, operation.id, self.clock())
        except BaseException:
            await self._db(bulk.delete_bulk, operation.id)
            raise
        return await self.get_bulk(principal, operation.id)

    async def get_bulk(self, principal: Principal, op_id: str) -> BulkOperation:
        self.authorize(principal, Role.VIEWER)
        operation = await self._db(self._bulk_store().get_bulk, op_id)
        if operation is None:
            raise errors.BulkOperationNotFound(op_id)
        return operation

    def _bulk_store(self) -> BulkStore:
        if self.bulk_store is None:
            raise errors.ServiceUnavailable("This Loom has no store for bulk operations")
        return self.bulk_store

    # -- saved views of the board's table ------------------------------------------------------------

    def _views(self) -> SavedViews:
        if self.views is None:
            raise errors.ServiceUnavailable("This Loom has no store for saved views")
        return self.views

    async def list_views(self, principal: Principal, migration_id: str) -> list[SavedView]:
        self.authorize(principal, Role.VIEWER)
        await self._migration(migration_id, with_candidates=False)
        return await self._db(self._views().list_views, migration_id)

    async def get_view(self, principal: Principal, migration_id: str, name: str) -> SavedView:
        self.authorize(principal, Role.VIEWER)
        await self._migration(migration_id, with_candidates=False)
        view = await self._db(self._views().get_view, migration_id, name)
        if view is None:
            raise errors.SavedViewNotFound(migration_id, name)
        return view

    async def save_view(self, principal: Principal, migration_id: str, name: str, params: StringMap) -> SavedView:
        """Keep the table's URL query parameters under this name, replacing a view of that name; operators share them."""
        self.authorize(principal, Role.OPERATOR)
        await self._migration(migration_id, with_candidates=False)
        refusal = view_name_refusal(name)
        if refusal:
            raise errors.InvalidInput(refusal, field="name")
        view = SavedView(name=name, params=dict(params), saved_by=principal.name, updated_at=self.clock())
        if not await self._db(self._views().put_view, migration_id, view, MAX_VIEWS_PER_MIGRATION):
            raise errors.InvalidInput(
                f"Migration {migration_id!r} has {MAX_VIEWS_PER_MIGRATION} saved views; delete one first", field="name"
            )
        return view

    async def delete_view(self, principal: Principal, migration_id: str, name: str) -> None:
        self.authorize(principal, Role.OPERATOR)
        await self._migration(migration_id, with_candidates=False)
        if not await self._db(self._views().delete_view, migration_id, name):
            raise errors.SavedViewNotFound(migration_id, name)

    # -- on an operator's behalf (the rollout's and bulk operations' activities) -----------------

    @staticmethod
    def _on_behalf(actor: str) -> Principal:
        """The operator who started the rollout or bulk operation; authorized then, recorded as the actor now."""
        return Principal(actor, PrincipalKind.USER, Role.OPERATOR)

    async def start_for(self, actor: str, migration_id: str, candidate_id: str) -> str | None:
        return await _refusal_of(self.start_run(self._on_behalf(actor), migration_id, candidate_id, {}))

    async def start_many_for(self, actor: str, migration_id: str, candidate_ids: Sequence[str]) -> list[str | None]:
        """start_for of each, the Migration read once and the Starts made a few at a time. Every Start is tried
        before an error (a store or Temporal away) is raised, so a repeat finds the rest claimed and adopts them."""
        try:
            migration = await self._migration(migration_id, with_candidates=False)
            shared = await self._db(self.registry.get_migration_inputs, migration_id)
        except errors.ServiceUnavailable:
            raise
        except errors.LoomError as exc:
            return [str(exc)] * len(candidate_ids)
        turns = asyncio.Semaphore(START_MANY_PARALLEL)

        async def one(candidate_id: str) -> str | None:
            async with turns:
                return await _refusal_of(self._start(actor, migration, shared, candidate_id, {}))

        outcomes = await asyncio.gather(*(one(c) for c in candidate_ids), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if not isinstance(o, BaseException)]

    async def bulk_apply(
        self,
        actor: str,
        migration_id: str,
        candidate_id: str,
        action: BulkAction,
        step_name: str | None,
        comment: str | None,
    ) -> tuple[BulkOutcomeKind, str | None]:
        principal = self._on_behalf(actor)
        try:
            if action is BulkAction.START:
                await self.start_run(principal, migration_id, candidate_id, {})
            elif action is BulkAction.CANCEL:
                await self.cancel_run(principal, migration_id, candidate_id)
            elif action is BulkAction.DRIFT_CHECK:
                check = await self.check_drift(principal, migration_id, candidate_id)
                return BulkOutcomeKind.DONE, drift_text(check)
            else:
                view = await self.get_candidate_view(principal, migration_id, candidate_id)
                step = step_name or view.current_step
                if step is None:
                    return BulkOutcomeKind.SKIPPED, "no Step has started"
                if action is BulkAction.RETRY:
                    await self.retry_step(principal, migration_id, candidate_id, step)
                elif action in (BulkAction.APPROVE, BulkAction.REJECT):
                    approved = action is BulkAction.APPROVE
                    await self.review_step(principal, migration_id, candidate_id, step, approved, comment)
                else:
                    await self.mark_merged(principal, migration_id, candidate_id, step)
        except errors.ServiceUnavailable:
            raise
        except errors.Conflict as exc:
            return BulkOutcomeKind.SKIPPED, str(exc)
        except errors.LoomError as exc:
            return BulkOutcomeKind.FAILED, str(exc)
        return BulkOutcomeKind.DONE, None

    async def candidate_steps(
        self, principal: Principal, migration_id: str, candidate_id: str
    ) -> CandidateStepsResponse:
        self.authorize(principal, Role.VIEWER)
        candidate = await self._candidate(migration_id, candidate_id)
        results = await self._db(self.runs.step_results, run_id(migration_id, candidate_id))
        if candidate.status == CandidateStatus.NOT_STARTED:
            raise errors.RunNotFound(run_id(migration_id, candidate_id))
        return CandidateStepsResponse(status=candidate.status, steps=[StepState.of(r, candidate) for r in results])

    async def dry_run(self, principal: Principal, migration_id: str, request: DryRunCandidateRequest) -> DryRunResult:
        """A preview changes nothing (the Migrator's dry run writes nothing), so viewers may preview too."""
        self.authorize(principal, Role.VIEWER)
        migration = await self._migration(migration_id, with_candidates=False)
        if request.candidate is not None:
            candidate = request.candidate
            saved: StringMap = {}
        else:
            assert request.candidate_id is not None
            candidate = await self._candidate(migration_id, request.candidate_id)
            saved = await self._db(self.registry.get_inputs, migration_id, candidate.id)
        inputs = {**saved, **request.inputs}
        self._check_input_keys(migration, candidate, inputs)
        return await self.notifier.dry_run(
            migration.migrator_url,
            DryRunRequest(
                migration_id=migration_id,
                candidate=merged_metadata(candidate, inputs),
                steps=steps_for(candidate, migration.steps),
            ),
        )

    async def check_drift(self, principal: Principal, migration_id: str, candidate_id: str) -> DriftCheck:
        """Run a completed Candidate's dry run again and keep the answer: changes it still shows mean the merged
        change did not land, or was undone since (drifted). A Migrator that fails a Step's dry run records nothing."""
        self.authorize(principal, Role.OPERATOR)
        candidate = await self._candidate(migration_id, candidate_id)
        if candidate.status != CandidateStatus.COMPLETED:
            raise errors.CandidateNotCompleted(candidate_id)
        result = await self.dry_run(principal, migration_id, DryRunCandidateRequest(candidate_id=candidate_id))
        failed = [f"{s.step_name}: {s.error}" for s in result.steps if s.error]
        if failed:
            raise errors.MigratorUnavailable(f"The Migrator's dry run failed, so drift is unknown: {'; '.join(failed)}")
        changed = changed_files(result)
        check = DriftCheck(
            migration_id=migration_id,
            candidate_id=candidate_id,
            drifted=changed > 0,
            changed_files=changed,
            checked_at=self.clock(),
            actor=principal.name,
            result=result,
        )
        await self._db(self._drift_store().set_drift, check)
        return check

    async def get_drift(self, principal: Principal, migration_id: str, candidate_id: str) -> DriftCheck | None:
        """The Candidate's last drift check, while it is completed (a new Run makes an old check say nothing)."""
        self.authorize(principal, Role.VIEWER)
        candidate = await self._candidate(migration_id, candidate_id)
        if candidate.status != CandidateStatus.COMPLETED:
            return None
        return await self._db(self._drift_store().get_drift, migration_id, candidate_id)

    def _drift_store(self) -> DriftStore:
        if self.drift_store is None:
            raise errors.ServiceUnavailable("This Loom has no store for drift checks")
        return self.drift_store

    async def list_events(
        self,
        principal: Principal,
        migration_id: str | None,
        *,
        candidate_id: str | None = None,
        event_type: EventType | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> EventPage:
        """The event log of one Migration (None: of all), newest first; `since` is inclusive, `until` exclusive."""
        await self._require_migration_if_named(principal, migration_id)
        return await self._db(
            self.board.list_events,
            migration_id,
            candidate_id=candidate_id,
            event_type=event_type,
            actor=actor,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    async def export_events(
        self,
        principal: Principal,
        migration_id: str | None,
        *,
        candidate_id: str | None = None,
        event_type: EventType | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[str]]:
        """The header, then every matching event newest first: what the audit CSV streams.

        Read by keyset pages, so the log never sits in memory at once and events written meanwhile shift nothing.
        """
        await self._require_migration_if_named(principal, migration_id)
        yield list(EVENT_EXPORT_COLUMNS)
        before: EventCursor | None = None
        while True:
            page = await self._db(
                self.board.list_events,
                migration_id,
                candidate_id=candidate_id,
                event_type=event_type,
                actor=actor,
                since=since,
                until=until,
                before=before,
                with_total=False,
                limit=page_size,
            )
            for e in page.events:
                yield event_export_row(e)
            if len(page.events) < page_size:
                return
            last = page.events[-1]
            before = EventCursor(created_at=last.created_at, id=last.id or 0)

    # -- the board ---------------------------------------------------------------------------

    async def activity_marker(self, principal: Principal, migration_id: str | None = None) -> str:
        """Changes whenever a board of this Migration (or of any, when None) would show something new."""
        self.authorize(principal, Role.VIEWER)
        return await self._db(self.board.activity_marker, migration_id)

    def follow_changes(self, principal: Principal) -> AbstractContextManager[ChangeSubscription]:
        """The read model's changes from now on, pushed as they commit (in any process): what live pages wait on."""
        self.authorize(principal, Role.VIEWER)
        if self.changes is None:
            raise RuntimeError("This Loom was built without a change feed")
        return self.changes.subscribe()

    async def candidate_kinds(self, principal: Principal, migration_id: str) -> list[str]:
        self.authorize(principal, Role.VIEWER)
        return await self._read(self.board.candidate_kinds, migration_id)

    async def needs_me(self, principal: Principal, limit: int = 500) -> list[WaitingStep]:
        """Across all Migrations: reviews to approve, failed Steps and PRs open longer than the configured hours."""
        self.authorize(principal, Role.VIEWER)
        # Whole seconds: live pages asking within the same second share one query.
        cutoff = (self.clock() - timedelta(hours=self.open_pr_attention_hours)).replace(microsecond=0)
        rows = await self._read(self.board.attention_steps, cutoff, limit)
        migrations = await self._read(self.registry.list_migrations)
        names = {m.id: m.name for m in migrations}
        reasons = {StepStatus.AWAITING_REVIEW: "review", StepStatus.FAILED: "failed", StepStatus.OPEN: "open_pr"}
        stuck: dict[tuple[str, str], CandidateView] = {}
        for m in migrations:
            limits = await self._stuck_limits(m.id)
            page = await self._read(
                self.board.list_candidates, m.id, CandidateFilter(stuck=True), stuck=limits, limit=limit
            )
            stuck.update(((m.id, v.id), v) for v in page.candidates)
        waiting = [
            WaitingStep(
                migration_id=mid,
                migration_name=names.get(mid, mid),
                step=step,
                reason=reasons[step.status],
                waiting_since=step.updated_at or step.started_at,
                stuck=stuck.pop((mid, step.candidate_id), None) is not None,
            )
            for mid, step in rows
        ]
        for (mid, _), view in stuck.items():
            results = await self._db(self.runs.step_results, run_id(mid, view.id))
            step = next((r for r in results if r.step_name == view.current_step), None)
            if step is not None:
                waiting.append(
                    WaitingStep(mid, names.get(mid, mid), step, "stuck", view.status_since or step.updated_at, True)
                )
        waiting.sort(key=lambda w: w.waiting_since or self.clock())
        return waiting[:limit]

    async def rollouts_waiting(self, principal: Principal) -> list[WaitingRollout]:
        """Across all Migrations: rollouts paused or waiting for an operator's Promote."""
        self.authorize(principal, Role.VIEWER)
        statuses = await self._read_fresh(self.registry.list_rollout_statuses)
        waiting = {mid: s for mid, s in statuses.items() if s.state is RolloutPhase.PAUSED or s.gate_waiting}
        if not waiting:
            return []
        names = {m.id: m.name for m in await self._read(self.registry.list_migrations)}
        return [WaitingRollout(mid, names.get(mid, mid), status) for mid, status in sorted(waiting.items())]

    # -- metrics and history ------------------------------------------------------------------

    async def metrics_overview(self, principal: Principal, migration_id: str | None = None) -> MetricsOverview:
        await self._require_migration_if_named(principal, migration_id)
        overview = await self._read(self.metrics.metrics_overview, migration_id)
        counts = await self.stuck_counts(principal)
        # A copy: a shared read's answer is never changed in place.
        return overview.model_copy(
            update={"stuck_steps": counts.get(migration_id, 0) if migration_id else sum(counts.values())}
        )

    async def step_metrics(self, principal: Principal, migration_id: str | None = None) -> StepMetricsResponse:
        await self._require_migration_if_named(principal, migration_id)
        return await self._db(self.metrics.step_metrics, migration_id)

    async def metrics_timeline(
        self, principal: Principal, days: int = 30, migration_id: str | None = None
    ) -> MetricsTimeline:
        self.authorize(principal, Role.VIEWER)
        if not 1 <= days <= MAX_TIMELINE_DAYS:
            raise errors.InvalidInput(f"days must be between 1 and {MAX_TIMELINE_DAYS}; got {days}", field="days")
        await self._require_migration_if_named(principal, migration_id)
        return await self._db(self.metrics.metrics_timeline, days, self.clock().astimezone(UTC).date(), migration_id)

    async def recent_failures(
        self, principal: Principal, limit: int = 50, migration_id: str | None = None
    ) -> FailureList:
        """The most recently failed Steps, newest first, with the error the Run recorded."""
        self.authorize(principal, Role.VIEWER)
        if not 1 <= limit <= MAX_FAILURES:
            raise errors.InvalidInput(f"limit must be between 1 and {MAX_FAILURES}; got {limit}", field="limit")
        await self._require_migration_if_named(principal, migration_id)
        return await self._db(self.metrics.recent_failures, limit, migration_id)

    async def burndown(self, principal: Principal, migration_id: str | None = None) -> Burndown:
        await self._require_migration_if_named(principal, migration_id)
        # The end of this second, not its start: tabs within a second share the read, and a Run completed
        # earlier in the second is counted in the pace as it is in the totals.
        end_of_second = (self.clock().astimezone(UTC) + timedelta(seconds=1)).replace(microsecond=0)
        return await self._read(self.metrics.burndown, end_of_second, migration_id)

    async def readiness(self) -> Readiness:
        """Whether this process can do its work now. No principal: probes do not sign in, and the answer names
        components (database, Temporal, worker), never data."""
        try:
            await asyncio.wait_for(self._db(self.runs.check_writable), READINESS_TIMEOUT_SECONDS)
            database = ReadinessCheck(name="database", ok=True)
        except Exception as exc:
            detail = f"the database does not take writes: {type(exc).__name__}: {exc}"[:500]
            database = ReadinessCheck(name="database", ok=False, detail=detail)
        checks = [database, *await self.engine.readiness()]
        for probe in self.probes:
            checks += await probe.readiness()
        return Readiness.of(checks)

    async def prometheus_snapshot(self, principal: Principal) -> PrometheusSnapshot:
        self.authorize(principal, Role.VIEWER)
        snapshot = await self._db(self.metrics.prometheus_snapshot)
        snapshot.stuck_steps = await self.stuck_counts(principal)
        return snapshot

    async def export_candidates(
        self, principal: Principal, migration_id: str, page_size: int = 1000
    ) -> AsyncIterator[list[str]]:
        """The header, then one row per Candidate in board order: what the CSV export streams.

        Read page by page so a Migration of tens of thousands of Candidates never sits in memory at once.
        """
        self.authorize(principal, Role.VIEWER)
        await self._migration(migration_id, with_candidates=False)
        keys = await self._db(self.metrics.candidate_metadata_keys, migration_id)
        yield [*CANDIDATE_EXPORT_COLUMNS, *(f"metadata.{k}" for k in keys)]
        offset = 0
        while True:
            page = await self._db(self.board.list_candidates, migration_id, limit=page_size, offset=offset)
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

    # -- outgoing webhooks: admins only ----------------------------------------------------

    def _webhooks(self, principal: Principal) -> Webhooks:
        self.authorize(principal, Role.ADMIN)
        if self.webhooks is None:
            raise errors.ServiceUnavailable("Webhooks are not set up in this process")
        return self.webhooks

    async def create_webhook(self, principal: Principal, request: WebhookRequest) -> WebhookCreated:
        """A hook that hears the chosen events from now on; its secret is in this answer only."""
        webhooks = self._webhooks(principal)
        if request.migration_id is not None:
            await self._migration(request.migration_id, with_candidates=False)
        return await webhooks.create(principal.name, request)

    async def list_webhooks(self, principal: Principal) -> list[Webhook]:
        return await self._webhooks(principal).list()

    async def delete_webhook(self, principal: Principal, hook_id: str) -> None:
        await self._webhooks(principal).remove(hook_id)

    async def _require_migration_if_named(self, principal: Principal, migration_id: str | None) -> None:
        self.authorize(principal, Role.VIEWER)
        if migration_id is not None:
            await self._migration(migration_id, with_candidates=False)

    # -- rules ------------------------------------------------------------------------------

    async def _require_running(self, migration_id: str, candidate_id: str) -> None:
        candidate = await self._candidate(migration_id, candidate_id)
        if candidate.status != CandidateStatus.RUNNING:
            raise errors.CandidateNotRunning(candidate_id)

    @staticmethod
    def _check_input_keys(migration: Migration, candidate: Candidate | None, inputs: StringMap) -> None:
        known = {i.name for i in migration.required_inputs}
        unknown = sorted(set(inputs) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise errors.InvalidInput(
                f"Unknown inputs: {', '.join(unknown)}; this Migration takes: {allowed}", field="inputs"
            )
        for name, value in sorted(inputs.items()):
            refusal = text_refusal(name, value, MAX_INPUT_LENGTH)
            if refusal:
                raise errors.InvalidInput(refusal, field=f"inputs.{name}")
        if candidate is not None and len(merged_metadata(candidate, inputs).metadata) > MAX_METADATA_KEYS:
            raise errors.InvalidInput(
                f"A Candidate's metadata and inputs together hold at most {MAX_METADATA_KEYS} keys", field="inputs"
            )


_BULK_STEP_STATUS = {
    BulkAction.RETRY: StepStatus.FAILED,
    BulkAction.APPROVE: StepStatus.AWAITING_REVIEW,
    BulkAction.REJECT: StepStatus.AWAITING_REVIEW,
    BulkAction.MARK_MERGED: StepStatus.OPEN,
}


def _narrowed(where: CandidateFilter | None, **narrower: Any) -> CandidateFilter:
    """The filter with the board's keywords laid over it (those given: not None, not empty, not False)."""
    given = {k: v for k, v in narrower.items() if v not in (None, {}, False)}
    return (where or CandidateFilter()).model_copy(update=given)


def drift_text(check: DriftCheck) -> str:
    """A drift check's outcome in a sentence, as a bulk operation reports it per Candidate."""
    if not check.drifted:
        return "no changes left: the change landed"
    return f"drifted: the dry run still changes {check.changed_files} file{'s' if check.changed_files != 1 else ''}"


def _bulk_skip(request: BulkRequest, view: CandidateView, migration: Migration, inputs: StringMap) -> str | None:
    """Why the action would not apply to this Candidate now (the impact preview), or None when it would."""
    if request.action is BulkAction.START:
        if view.status != CandidateStatus.NOT_STARTED:
            return f"already {view.status.value}"
        missing = missing_inputs(migration.required_inputs, {**view.metadata, **inputs})
        return f"lacks input {', '.join(missing)}" if missing else None
    if request.action is BulkAction.DRIFT_CHECK:
        return None if view.status == CandidateStatus.COMPLETED else f"is {view.status.value}, not completed"
    if view.status != CandidateStatus.RUNNING:
        return "has no Run in progress"
    if request.action is BulkAction.CANCEL:
        return None
    wanted = _BULK_STEP_STATUS[request.action]
    if request.step_name is not None and view.current_step != request.step_name:
        return f"is on Step {view.current_step!r}, not {request.step_name!r}"
    if view.current_step_status != wanted:
        status = view.current_step_status.value if view.current_step_status else "not started"
        return f"its current Step is {status}, not {wanted.value}"
    return None
