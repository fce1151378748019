"""The ports the service layer needs; adapters in store/, execution/ and migrator_client.py implement them.

The read model's ports are split by role (Registry, RunStore, BoardQueries, MetricsQueries), so each user takes
only what it calls and a fake of one is a few lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from loom_backend.domain import (
    Burndown,
    Candidate,
    CandidateFilter,
    CandidatePage,
    CandidateSort,
    CandidateStatus,
    CandidateView,
    DispatchStepRequest,
    DriftCheck,
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
    Ownership,
    Principal,
    PrometheusSnapshot,
    ReadinessCheck,
    ReadModelChange,
    RunChange,
    SavedView,
    StepEvent,
    StepMetricsResponse,
    StepResult,
    StepStatusEvent,
    StringMap,
    StuckLimits,
    StuckRule,
    TokenKind,
    TokenRecord,
    UserRecord,
)
from loom_backend.rollout import (
    BulkAction,
    BulkOperation,
    BulkOutcome,
    BulkOutcomeKind,
    RolloutObservation,
    RolloutPolicy,
    RolloutState,
    RolloutStatus,
)
from loom_backend.webhooks import PendingDelivery, Webhook, WebhookCreated, WebhookRequest, WebhookTarget


class Registry(Protocol):
    """The registered Migrations and their Candidates, as Migrators announce them and operators set inputs."""

    def announce(self, announcement: MigrationAnnouncement, now: datetime) -> None:
        """Upsert the Migration and merge its Candidates, in one transaction."""

    def submit_candidates(self, migration_id: str, candidates: list[Candidate], now: datetime) -> None:
        """Merge re-discovered Candidates: only not_started ones are replaced or dropped."""

    def get_migration(self, migration_id: str, with_candidates: bool = True) -> Migration | None: ...

    def all_migrations(self) -> list[Migration]:
        """Every Migration with its Candidates."""

    def list_migrations(self) -> list[MigrationSummary]: ...

    def get_candidate(self, migration_id: str, candidate_id: str) -> Candidate | None: ...

    def get_inputs(self, migration_id: str, candidate_id: str) -> StringMap: ...

    def set_inputs(self, migration_id: str, candidate_id: str, inputs: StringMap) -> None: ...

    def get_migration_inputs(self, migration_id: str) -> StringMap:
        """Values of required inputs set once for every Candidate of the Migration."""

    def set_migration_inputs(self, migration_id: str, inputs: StringMap) -> None: ...

    def get_rollout_policy(self, migration_id: str) -> dict[str, Any] | None:
        """The rollout policy last set for the Migration (its JSON form), or None."""

    def set_rollout_policy(self, migration_id: str, policy: dict[str, Any]) -> None: ...

    def get_rollout_status(self, migration_id: str) -> RolloutStatus | None:
        """What the Migration's rollout last published about itself (the read model of the rollout), or None."""

    def set_rollout_status(
        self, migration_id: str, status: RolloutStatus, events: Sequence[tuple[str, StepEvent]] = ()
    ) -> None:
        """Publish the rollout's status and append its actions to the event log (each once, by key), together."""

    def list_rollout_statuses(self) -> dict[str, RolloutStatus]:
        """Every Migration's rollout as it last published itself, by Migration id (never rolled out: absent)."""


class RunStore(Protocol):
    """The read model's side of a Run: claiming its Candidate, and the changes the Run writes as it goes."""

    def claim_candidate(self, migration_id: str, candidate_id: str, inputs: StringMap) -> CandidateStatus | None:
        """Move a not_started Candidate to running (saving inputs); return its status when it was not not_started."""

    def set_candidate_status(self, migration_id: str, candidate_id: str, status: CandidateStatus) -> None: ...

    def check_writable(self) -> None:
        """Commit a small write, or raise: what readiness asks, since a database can answer reads and refuse writes."""

    def reset_run(self, migration_id: str, candidate_id: str) -> None:
        """Forget the step results of the Candidate's previous Run (in this Migration only) before it runs again."""

    def step_results(self, run_id: str) -> list[StepResult]: ...

    def has_rollout_policy(self, migration_id: str) -> bool:
        """Whether the Migration has a rollout policy: only then may a rollout be following its Runs."""

    def apply_run_changes(
        self, run_id: str, migration_id: str, candidate_id: str, changes: list[RunChange], once: bool = False
    ) -> None:
        """A Run's changes to the read model, in order, in one transaction; each is idempotent.

        With `once`, nothing is written when the batch's last event is already in the log.
        """


class BoardQueries(Protocol):
    """What the board, the Candidate page and Needs me read: filtered Candidates, the event log, what changed."""

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
        """`limit=None`: every Candidate from `offset` on. `stuck` flags stuck Steps; filtering on them needs it."""

    def failure_groups(self, migration_id: str) -> FailureGroups:
        """Failed current Steps of Runs in progress, grouped by Step and normalised message, largest first."""

    def stuck_count(self, migration_id: str, stuck: StuckLimits) -> int:
        """How many of the Migration's Runs have a stuck current Step."""

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
        """Newest first, of one Migration or all (None); `before` continues a keyset walk; no total: -1."""

    def activity_marker(self, migration_id: str | None = None) -> str:
        """A fingerprint of the read model (of one Migration, or all): it changes whenever a board would."""

    def candidate_kinds(self, migration_id: str) -> list[str]: ...

    def attention_steps(self, open_pr_before: datetime, limit: int = 500) -> list[tuple[str, StepResult]]:
        """Steps of Runs in progress waiting on a person, oldest first, with their Migration's id."""

    def rollout_progress(
        self, migration_id: str, candidate_ids: Sequence[str], group_key: str | None, since: datetime
    ) -> RolloutObservation:
        """The Candidates' statuses and Steps failed since `since`, and the Migration's open Runs (by group)."""


class BulkStore(Protocol):
    """Bulk operations and each Candidate's outcome, so progress can be read back after any restart."""

    def create_bulk(self, operation: BulkOperation, outcomes: Sequence[BulkOutcome]) -> None: ...

    def delete_bulk(self, op_id: str) -> None: ...

    def bulk_outcome(self, op_id: str, candidate_id: str) -> BulkOutcomeKind | None: ...

    def set_bulk_outcome(
        self, op_id: str, candidate_id: str, outcome: BulkOutcomeKind, message: str | None
    ) -> None: ...

    def finish_bulk(self, op_id: str, now: datetime) -> None: ...

    def get_bulk(self, op_id: str) -> BulkOperation | None: ...


class SavedViews(Protocol):
    """A Migration's board table views, kept by name so an operator opens one again or shares it."""

    def list_views(self, migration_id: str) -> list[SavedView]: ...

    def get_view(self, migration_id: str, name: str) -> SavedView | None: ...

    def put_view(self, migration_id: str, view: SavedView, limit: int) -> bool:
        """Insert or replace; False (nothing written) when the view is new and the Migration has `limit` already."""

    def delete_view(self, migration_id: str, name: str) -> bool:
        """False when there was no such view."""


class OperatorActions(Protocol):
    """What a rollout or a bulk operation does on an operator's behalf: the service's use cases, by actor name."""

    async def start_for(self, actor: str, migration_id: str, candidate_id: str) -> str | None:
        """Start the Candidate's Run; None when it has one (now or already), else why the Start was refused."""

    async def start_many_for(self, actor: str, migration_id: str, candidate_ids: Sequence[str]) -> list[str | None]:
        """start_for of each Candidate, in order; an error of the store or Temporal only once every one was tried."""

    async def bulk_apply(
        self,
        actor: str,
        migration_id: str,
        candidate_id: str,
        action: BulkAction,
        step_name: str | None,
        comment: str | None,
    ) -> tuple[BulkOutcomeKind, str | None]: ...


class MetricsQueries(Protocol):
    """Figures and history from the event log and the read model, each scoped to one Migration when named."""

    def metrics_overview(self, migration_id: str | None = None) -> MetricsOverview: ...

    def step_metrics(self, migration_id: str | None = None) -> StepMetricsResponse: ...

    def step_p95_ms(self, migration_id: str) -> dict[str, int]:
        """Each Step's p95 successful duration in the Migration (Steps with none timed are absent)."""

    def metrics_timeline(self, days: int, today: date, migration_id: str | None = None) -> MetricsTimeline:
        """One row per UTC day from today - days + 1 to today, days without events included."""

    def recent_failures(self, limit: int, migration_id: str | None = None) -> FailureList: ...

    def burndown(self, now: datetime, migration_id: str | None = None) -> Burndown: ...

    def prometheus_snapshot(self) -> PrometheusSnapshot: ...

    def candidate_metadata_keys(self, migration_id: str) -> list[str]:
        """Every metadata key any of the Migration's Candidates has, sorted: the CSV export's columns."""


class DriftStore(Protocol):
    """The last drift check of each completed Candidate; the Candidate lists read its flag alongside."""

    def set_drift(self, check: DriftCheck) -> None: ...

    def get_drift(self, migration_id: str, candidate_id: str) -> DriftCheck | None: ...


class MigrationStore(Registry, RunStore, BoardQueries, MetricsQueries, BulkStore, DriftStore, Protocol):
    """Every role at once, as the SQL store plays them; bootstrap hands each user only the roles it needs."""


class ReadinessProbe(Protocol):
    """One more thing this process needs to do its work (Redis for the board's page state), as readiness checks."""

    async def readiness(self) -> list[ReadinessCheck]: ...


class ChangeSubscription(Protocol):
    """One open page's share of the change feed: every change committed since it subscribed, none twice."""

    async def next(self, timeout: float) -> list[ReadModelChange]:
        """The changes since the last call, waiting up to `timeout` seconds for one; [] when none came."""

    @property
    def seen(self) -> int:
        """The feed's generation as of the newest change `next` returned: a read at least this fresh shows them all."""


class ChangeFeed(Protocol):
    """The read model's committed changes, from one source per process fanned out to its open pages."""

    def subscribe(self) -> AbstractContextManager[ChangeSubscription]: ...

    @property
    def generation(self) -> int:
        """Moves with every change published: reads made at the same generation see the same read model."""


class AuthStore(Protocol):
    """Persists accounts, tokens, sessions and which token owns each Migration."""

    def add_user(self, user: UserRecord) -> bool:
        """Insert the account; False when the name is taken."""

    def get_user(self, name: str) -> UserRecord | None: ...

    def count_users(self) -> int: ...

    def add_token(self, token: TokenRecord) -> bool:
        """Insert the token; False when one with the same digest exists."""

    def token_by_digest(self, digest: str) -> TokenRecord | None: ...

    def list_tokens(self) -> list[TokenRecord]: ...

    def revoke_token(self, token_id: str, now: datetime) -> bool: ...

    def revoke_tokens_named(self, kind: TokenKind, name: str, now: datetime) -> int: ...

    def add_session(self, digest: str, user_name: str, created_at: datetime, expires_at: datetime) -> None: ...

    def session_user(self, digest: str, now: datetime) -> UserRecord | None:
        """The account of an unexpired session."""

    def delete_session(self, digest: str) -> None: ...

    def delete_expired_sessions(self, now: datetime) -> int: ...

    def claim_migration(self, migration_id: str, token_id: str, now: datetime) -> str:
        """Make the token the owner unless an active token owns the Migration; return the owner's token id."""

    def release_migration(self, migration_id: str, token_id: str) -> None: ...

    def ownership(self, migration_id: str) -> Ownership: ...

    def signing_key(self, migration_id: str) -> bytes | None:
        """The key Loom signs requests to this Migration's Migrator with: its owning token's digest."""


class WebhookStore(Protocol):
    """Hooks, their cursors and pending messages, and what the deliverer reads of the event log."""

    def add_webhook(self, hook: Webhook, secret_digest: str) -> None:
        """Insert the hook with its cursor at the event log's end: it hears only what happens from now on."""

    def list_webhooks(self) -> list[Webhook]: ...

    def delete_webhook(self, hook_id: str) -> bool: ...

    def targets(self) -> list[tuple[WebhookTarget, PendingDelivery | None]]:
        """Every hook as the deliverer needs it, with its pending message."""

    def event_ids_after(self, after_id: int, limit: int) -> list[int]:
        """The ids of the event log's entries above `after_id`, in order (to see gaps a later commit may fill)."""

    def notable_events(self, after_id: int, through: int) -> list[StepEvent]:
        """The entries in (after_id, through] of the kinds in webhooks.NOTABLE_EVENTS, in id order."""

    def candidate_metadata(self, migration_id: str, candidate_ids: Sequence[str]) -> dict[str, StringMap]: ...

    def migration_completed(self, migration_id: str) -> bool:
        """The Migration has Candidates, and every one is completed."""

    def append_event(self, event: StepEvent, key: str) -> bool:
        """Append to the event log unless an event with this key is there; True when it was added."""

    def migration_ids(self) -> list[str]: ...

    def stuck_candidates(self, migration_id: str, rule: StuckRule, now: datetime) -> list[CandidateView]:
        """The Migration's Runs whose current Step is stuck now (by its Steps' p95 durations), at most a few hundred."""

    def advance_cursor(self, hook_id: str, through: int) -> None:
        """Nothing for the hook up to `through`: move its cursor there (never back)."""

    def save_pending(self, hook_id: str, delivery: PendingDelivery, cursor: int) -> bool:
        """Make the message the hook's pending one if it has none and its cursor is still `cursor`; False if not."""

    def record_attempt(
        self, hook_id: str, delivery: PendingDelivery, status: int | None, error: str | None, at: datetime
    ) -> None:
        """An attempt that will be retried: the pending message's attempts, next time, last status and error."""

    def finish_delivery(
        self, hook_id: str, delivery: PendingDelivery, status: int | None, error: str | None, at: datetime, ok: bool
    ) -> None:
        """The message was taken (`ok`) or given up on: the cursor moves to its end, the pending message goes."""


class WebhookSender(Protocol):
    """Posts one signed message to a hook's URL."""

    async def check_url(self, url: str) -> None:
        """Raise InvalidInput naming url when Loom must not post there (LOOM_WEBHOOK_URL_ALLOW)."""

    async def send(self, url: str, key: bytes, delivery_id: str, body: bytes) -> tuple[int | None, str | None]:
        """The HTTP status the receiver answered (None: no answer) and, unless it was a 2xx, what went wrong."""


class Webhooks(Protocol):
    """Adding, listing and removing outgoing webhooks; the caller's right to is the service's to check."""

    async def create(self, actor: str, request: WebhookRequest) -> WebhookCreated: ...

    async def list(self) -> list[Webhook]: ...

    async def remove(self, hook_id: str) -> None:
        """Raise WebhookNotFound when there is no such hook."""


class Lease(Protocol):
    """Held by at most one process of an installation at a time: the one that delivers webhooks."""

    def acquire(self) -> bool:
        """Take the lease if it is free (or keep it); False while another process holds it."""

    def held(self) -> bool:
        """Whether this process still holds it (its database connection may have dropped)."""

    def release(self) -> None: ...


class ExecutionEngine(Protocol):
    """Runs one durable Run per Candidate and relays operator and Migrator actions to it."""

    async def start_run(self, manifest: MigrationManifest, actor: str) -> None: ...

    async def readiness(self) -> list[ReadinessCheck]:
        """Whether Runs can go on: the engine answers, and something executes them."""

    async def cancel_run(self, run_id: str, actor: str) -> None: ...

    async def step_event(self, run_id: str, event: StepStatusEvent, actor: str | None = None) -> None:
        """Deliver a Migrator callback, or an operator's override (`actor`); raises RunNotFound or StepNotInState."""

    async def retry_step(self, run_id: str, step_name: str, actor: str) -> None: ...

    async def review_step(
        self, run_id: str, step_name: str, approved: bool, actor: str, comment: str | None
    ) -> None: ...

    async def mark_merged(self, run_id: str, step_name: str, actor: str) -> None: ...

    async def update_inputs(self, run_id: str, inputs: StringMap, actor: str) -> None: ...

    async def is_running(self, run_id: str) -> bool: ...

    async def start_rollout(self, state: RolloutState) -> None:
        """Start the Migration's rollout; raises RolloutConflict while one runs."""

    async def rollout_action(self, migration_id: str, action: str, actor: str) -> None:
        """pause | resume | promote | stop; raises RolloutConflict when it does not fit."""

    async def update_rollout_policy(self, migration_id: str, policy: RolloutPolicy, actor: str) -> None: ...

    async def start_bulk(self, operation: BulkOperation, candidate_ids: list[str]) -> None:
        """Run the bulk operation durably; its outcomes go to the BulkStore."""


class MigratorNotifier(Protocol):
    """Calls a Migrator over HTTP: dispatch a Step, or ask for a dry run."""

    async def check_url(self, migrator_url: str) -> None:
        """Raise InvalidInput naming migratorUrl when Loom must not call that address (LOOM_MIGRATOR_URL_ALLOW)."""

    async def dispatch_step(self, request: DispatchStepRequest) -> None: ...

    async def dry_run(self, migrator_url: str, request: DryRunRequest) -> DryRunResult: ...


class Gatekeeper(Protocol):
    """Who a caller is (sessions, tokens, the proxy's name) and which Migrator token owns a Migration.

    `auth.AccessControl` is the one implementation; the service asks it and decides what the caller may do.
    Blocking except the `recent_*`/`recently_*` lookups, which answer from memory.
    """

    proxy_header: str | None
    session_lifetime: timedelta
    secure_cookie: bool

    def proxy_user(self, name: str) -> Principal: ...

    def session(self, secret: str) -> Principal | None: ...

    def bearer(self, token: str) -> Principal | None: ...

    def recent_bearer(self, token: str) -> Principal | None: ...

    def login(self, name: str, password: str) -> tuple[str, Principal]: ...

    def logout(self, secret: str) -> None: ...

    def claim_migration(self, principal: Principal, migration_id: str) -> bool:
        """Make the Migrator token the Migration's owner unless another owns it; True when the claim is new."""

    def release_migration(self, principal: Principal, migration_id: str) -> None: ...

    def check_migration(self, principal: Principal, migration_id: str) -> None:
        """Raise Forbidden unless the token owns the Migration."""

    def recently_allowed(self, principal: Principal, migration_id: str) -> bool: ...
