"""Loom's domain model and its wire form (camelCase JSON), defined once.

These models serve the HTTP API, the Temporal Run and the UI alike, so a field renamed here is renamed
everywhere. What Loom and a Migrator send each other lives in the Migrator SDK (loom_migrator.wire) and is
re-exported here, so both packages share one definition. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated
from urllib.parse import quote, urlsplit

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field, model_validator

from loom_migrator.wire import (  # noqa: F401  (re-exported: these names were defined here)
    CALLBACK_STEP_STATUSES,
    LEGACY_STEP_STATUSES,
    MAX_CANDIDATE_STEPS,
    MAX_CANDIDATES_PER_REQUEST,
    MAX_FILE_GROUPS,
    MAX_FILES,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    RUN_ID_SEPARATOR,
    SLUG_PATTERN,
    SUCCEEDED_STEP_STATUSES,
    Candidate,
    Candidates,
    CandidateStatus,
    DispatchStepRequest,
    DryRunRequest,
    DryRunResult,
    FileDiff,
    FileDiffStatus,
    FileGroup,
    FileRef,
    HttpUrl,
    InputDefinition,
    Metadata,
    MigrationAnnouncement,
    MigrationSlug,
    ShortText,
    Slug,
    StepDefinition,
    StepDryRunResult,
    Steps,
    StepStatus,
    StepStatusEvent,
    StringMap,
    SubmitCandidatesRequest,
    WireModel,
    absent_when_none,
    merged_metadata,
    parse_run_id,
    run_id,
)


class EventType(StrEnum):
    """What the append-only step event log records."""

    RUN_STARTED = "run_started"
    STEP_DISPATCHED = "step_dispatched"
    STEP_UPDATED = "step_updated"
    STEP_COMPLETED = "step_completed"
    STEP_RETRIED = "step_retried"
    REVIEW_APPROVED = "review_approved"
    REVIEW_REJECTED = "review_rejected"
    STEP_MARKED_MERGED = "step_marked_merged"
    INPUTS_UPDATED = "inputs_updated"
    RUN_COMPLETED = "run_completed"
    RUN_CANCELLED = "run_cancelled"
    STEP_STUCK = "step_stuck"  # the current Step outstayed the stuck rule; recorded once per stay in a status
    # A Migration's rollout and the Migration as a whole: these have no Candidate (candidate_id "").
    ROLLOUT_STARTED = "rollout_started"
    ROLLOUT_PAUSED = "rollout_paused"  # by an operator (actor) or by the breaker (actor "breaker")
    ROLLOUT_RESUMED = "rollout_resumed"
    ROLLOUT_PROMOTED = "rollout_promoted"  # the next wave started: an operator's Promote, or the auto gate
    ROLLOUT_STOPPED = "rollout_stopped"
    ROLLOUT_POLICY_EDITED = "rollout_policy_edited"
    ROLLOUT_STEP_RETRIED = (
        "rollout_step_retried"  # the rollout retried a failed Step by its autoRetry (actor "rollout")
    )
    ROLLOUT_STEP_APPROVED = "rollout_step_approved"  # the rollout approved a review by its autoApprove
    ROLLOUT_COMPLETED = "rollout_completed"
    MIGRATION_COMPLETED = "migration_completed"  # every Candidate completed; recorded once


class Migration(MigrationAnnouncement):
    """The registered plan: the announcement as stored, with its Candidates' statuses."""

    created_at: datetime
    updated_at: datetime | None = None


class MigrationSummary(WireModel):
    """A Migration without its Candidates, with counts: what lists and cards need."""

    id: str
    name: str
    description: str
    overview: list[str] = Field(default_factory=list)
    required_inputs: list[InputDefinition] = Field(default_factory=list)
    steps: list[StepDefinition]
    migrator_url: str
    created_at: datetime
    updated_at: datetime | None = None
    candidate_counts: dict[CandidateStatus, int] = Field(default_factory=dict)
    needs_attention: int = 0
    last_activity_at: datetime | None = None


class CandidateView(Candidate):
    """A Candidate as the board and the Candidate table show it: with its Run's current Step, when it has a Run."""

    current_step: str | None = None
    current_step_status: StepStatus | None = None
    pr_url: str | None = None
    step_updated_at: datetime | None = None
    dispatch_retry: DispatchRetry | None = None  # the current Step waits for its Migrator to come back
    status_since: datetime | None = None  # when the current Step entered its status
    pr_opened_at: datetime | None = None
    checks: ChecksState | None = None
    review: ReviewState | None = None
    mergeable: bool | None = None
    last_event_at: datetime | None = None
    failure_message: str | None = None  # the current Step's error, when it failed
    failure_group: str | None = None  # its key in GET /failure-groups
    stuck: bool = False
    drifted: bool | None = None  # a completed Candidate's last drift check: does its dry run still show changes

    @property
    def needs_attention(self) -> bool:
        return self.status == CandidateStatus.RUNNING and self.current_step_status in ATTENTION_STEP_STATUSES


class CandidatePage(WireModel):
    """One page of a Migration's Candidates, with the exact total that matches the filter."""

    candidates: list[CandidateView]
    total: int
    limit: int
    offset: int


class ListMigrationsResponse(WireModel):
    migrations: list[Migration]


class StepResult(WireModel):
    """The outcome of one Step of a Run, as the read model keeps it."""

    step_name: str
    candidate_id: str
    status: StepStatus
    metadata: StringMap = Field(default_factory=dict)
    pr_url: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None


class StepState(StepResult):
    """A Step's outcome as GET .../steps answers it: with the Candidate and a success flag, as upstream's clients read."""

    candidate: Candidate
    success: bool

    @classmethod
    def of(cls, result: StepResult, candidate: Candidate) -> StepState:
        return cls(**dict(result), candidate=candidate, success=result.status.succeeded)


class CandidateStepsResponse(WireModel):
    status: CandidateStatus
    steps: list[StepState]


class MigrationManifest(WireModel):
    """The snapshot a Run starts from: the Migration's plan plus the one Candidate."""

    migration_id: str
    migrator_url: str
    candidate: Candidate
    steps: list[StepDefinition]
    inputs: StringMap = Field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return run_id(self.migration_id, self.candidate.id)


class DispatchRetry(WireModel):
    """A Step whose dispatch the Migrator has not taken yet: Loom retries it, and says so on the timeline.

    Kept in the Step result's metadata (under `dispatchRetry*` keys) until the Migrator takes the Step.
    """

    attempt: int  # the attempt that comes next
    error: str
    next_attempt_at: datetime

    def metadata(self) -> StringMap:
        return {
            "dispatchRetryAttempt": str(self.attempt),
            "dispatchRetryError": self.error,
            "dispatchRetryAt": self.next_attempt_at.isoformat(),
        }

    @classmethod
    def of(cls, result: StepResult) -> DispatchRetry | None:
        """The retry a Step in progress waits for, if any."""
        m = result.metadata
        if result.status is not StepStatus.IN_PROGRESS or "dispatchRetryAt" not in m:
            return None
        try:
            return cls(
                attempt=int(m["dispatchRetryAttempt"]),
                error=m.get("dispatchRetryError", ""),
                next_attempt_at=datetime.fromisoformat(m["dispatchRetryAt"]),
            )
        except (KeyError, ValueError):
            return None


# What an operator types: an input's value and a review comment. The forms say so before submit; the service refuses more.
MAX_INPUT_LENGTH = 1_000
MAX_COMMENT_LENGTH = 4_000


def text_refusal(label: str, value: str, limit: int) -> str | None:
    """Why an operator's text is refused (too long, or only spaces), or None; the forms and the service agree."""
    if len(value) > limit:
        return f"{label} is {len(value):,} characters; at most {limit:,}"
    if value and not value.strip():
        return f"{label} is only spaces; type a value or leave it empty"
    return None


class StartRequest(WireModel):
    inputs: Metadata = Field(default_factory=dict)


class UpdateInputsRequest(WireModel):
    inputs: Metadata


class RetryStepRequest(WireModel):
    step_name: Annotated[str, Field(min_length=1, max_length=128)]


class ReviewRequest(WireModel):
    comment: Annotated[str, Field(max_length=MAX_COMMENT_LENGTH)] | None = None


class DryRunCandidateRequest(WireModel):
    """Preview a Run: name a known Candidate, or pass one in full."""

    candidate_id: str | None = None
    candidate: Candidate | None = None
    inputs: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_candidate(self) -> DryRunCandidateRequest:
        if (self.candidate_id is None) == (self.candidate is None):
            raise ValueError("give exactly one of candidateId or candidate")
        return self


class StepEvent(WireModel):
    """One entry of the append-only event log: who did what to which Run, and when."""

    id: int | None = None
    run_id: str
    migration_id: str
    candidate_id: str
    step_name: str | None = None
    event_type: EventType
    status: str | None = None
    actor: str | None = None
    duration_ms: int | None = None
    metadata: StringMap = Field(default_factory=dict)
    created_at: datetime


@dataclass(frozen=True)
class ReadModelChange:
    """What one committed write to the read model touched, as the change feed carries it to open pages.

    A Candidate of a Migration; the whole Migration when `candidate_id` is None; anything when both are None.
    `status` is the Candidate's new status when the write changed it (a card moves between columns).
    """

    migration_id: str | None = None
    candidate_id: str | None = None
    status: CandidateStatus | None = None

    def concerns(self, migration_id: str | None, candidate_id: str | None = None) -> bool:
        """Whether a page showing this Migration (all when None), or only this Candidate of it, must look again."""
        if migration_id is None or self.migration_id is None:
            return True
        if self.migration_id != migration_id:
            return False
        return candidate_id is None or self.candidate_id is None or self.candidate_id == candidate_id

    def to_payload(self) -> str:
        """A compact form for a notification channel (PostgreSQL NOTIFY allows 8000 bytes)."""
        return json.dumps([self.migration_id, self.candidate_id, self.status.value if self.status else None])

    @classmethod
    def from_payload(cls, payload: str) -> ReadModelChange:
        """The change a payload names; anything that cannot be read is "anything may have changed"."""
        try:
            migration_id, candidate_id, status = json.loads(payload)
            return cls(migration_id, candidate_id, CandidateStatus(status) if status else None)
        except (ValueError, TypeError):
            return cls()


class RunChange(BaseModel):
    """One change a Run makes to the read model; exactly one part is set. Applied in order, each idempotent."""

    candidate_status: CandidateStatus | None = None
    step_result: StepResult | None = None
    event: StepEvent | None = None
    event_key: str | None = None


class EventPage(WireModel):
    events: list[StepEvent]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class EventCursor:
    """Where a newest-first walk of the event log stopped: its last event's time and id."""

    created_at: datetime
    id: int


EVENT_EXPORT_COLUMNS = (
    "id",
    "createdAt",
    "migrationId",
    "candidateId",
    "runId",
    "eventType",
    "stepName",
    "status",
    "actor",
    "durationMs",
    "metadata",
)


def event_export_row(e: StepEvent) -> list[str]:
    """One event as the audit CSV's row, in EVENT_EXPORT_COLUMNS order; metadata as one JSON object."""
    return [
        str(e.id or ""),
        e.created_at.isoformat(),
        e.migration_id,
        e.candidate_id,
        e.run_id,
        e.event_type.value,
        e.step_name or "",
        e.status or "",
        e.actor or "",
        "" if e.duration_ms is None else str(e.duration_ms),
        json.dumps(e.metadata, sort_keys=True) if e.metadata else "",
    ]


class DriftCheck(WireModel):
    """A completed Candidate's dry run, run again: a merged PR does not prove the change landed, or stayed."""

    migration_id: str
    candidate_id: str
    drifted: bool
    changed_files: int
    checked_at: datetime
    actor: str
    result: DryRunResult


def changed_files(result: DryRunResult) -> int:
    """The files a dry run would still change, over the Steps it did not skip; an unchanged file does not count."""
    return sum(
        1
        for step in result.steps
        if not step.skipped
        for f in step.files
        if f.status != "modified" or f.before != f.after
    )


def workflow_ui_url(base_url: str | None, namespace: str, workflow_id: str) -> str | None:
    """Where the Temporal Web UI shows a Run's workflow (its id is the RunID), or None without a UI configured."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


# -- saved views of the board's table -------------------------------------------------------------

MAX_VIEW_NAME_LENGTH = 64
MAX_VIEWS_PER_MIGRATION = 200
ViewParams = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=1_000)]],
    Field(max_length=40),
]


class SavedView(WireModel):
    """A table view of a Migration's board kept by name: its URL query parameters (filters, sort, columns)."""

    name: str
    params: StringMap = Field(default_factory=dict)
    saved_by: str = ""
    updated_at: datetime | None = None


class SaveViewRequest(WireModel):
    params: ViewParams = Field(default_factory=dict)


class SavedViewList(WireModel):
    views: list[SavedView]


def view_name_refusal(name: str) -> str | None:
    """Why a saved view may not have this name, or None: it names the view in a URL and a menu."""
    if not name.strip():
        return "A view needs a name"
    if len(name) > MAX_VIEW_NAME_LENGTH:
        return f"A view's name takes at most {MAX_VIEW_NAME_LENGTH} characters"
    if name != name.strip() or any(not ch.isprintable() for ch in name) or "/" in name:
        return "A view's name has no leading or trailing spaces, no '/' and no control characters"
    return None


def steps_for(candidate: Candidate, migration_steps: list[StepDefinition]) -> list[StepDefinition]:
    """A Candidate's own Steps, when discovery gave it some, replace the Migration's."""
    return candidate.steps if candidate.steps else migration_steps


def missing_inputs(required: list[InputDefinition], inputs: StringMap) -> list[str]:
    return [i.name for i in required if not inputs.get(i.name, "").strip()]


# -- rules: what may happen to a Run, its Steps and a Migration's Candidates ----------------------
#
# Plain functions of the models above, so the workflow, the store, the service and the pages
# ask the same rule instead of re-deriving it; unit-tested without Temporal or a database.

# A person must act: an operator's review, or a Retry (or Cancel) of a failed Step.
ATTENTION_STEP_STATUSES = frozenset({StepStatus.FAILED, StepStatus.AWAITING_REVIEW})
# The callbacks the Step a Run waits on takes, by its status; a Step in another status takes none.
# A Step awaiting review moves to completed only by an operator's approval.
CALLBACKS_BY_STEP_STATUS: Mapping[StepStatus, frozenset[StepStatus]] = {
    StepStatus.IN_PROGRESS: CALLBACK_STEP_STATUSES,
    StepStatus.OPEN: CALLBACK_STEP_STATUSES,
    StepStatus.AWAITING_REVIEW: frozenset({StepStatus.FAILED}),
}


class StepAction(StrEnum):
    """What an operator can do to a Step of a running Run."""

    RETRY = "retry"
    APPROVE = "approve"
    REJECT = "reject"
    MARK_MERGED = "mark_merged"


# The one status of the Step in which each action fits, and how a refusal says so.
ACTION_STEP_STATUS: Mapping[StepAction, StepStatus] = {
    StepAction.RETRY: StepStatus.FAILED,
    StepAction.APPROVE: StepStatus.AWAITING_REVIEW,
    StepAction.REJECT: StepStatus.AWAITING_REVIEW,
    StepAction.MARK_MERGED: StepStatus.OPEN,
}
_ACTION_ONLY: Mapping[StepAction, str] = {
    StepAction.RETRY: "a failed Step can be retried",
    StepAction.APPROVE: "a Step awaiting review can be approved or rejected",
    StepAction.REJECT: "a Step awaiting review can be approved or rejected",
    StepAction.MARK_MERGED: "a Step with an open PR can be marked merged",
}


class RunPosition(BaseModel):
    """What the Step rules need to know of a Run: its id and Candidate, each Step's status, the Step it waits on."""

    run_id: str
    candidate_id: str
    steps: dict[str, StepStatus | None]
    waiting_on: str | None = None


def step_status_text(status: StepStatus | None) -> str:
    return status.value if status else "not started"


def action_fits(action: StepAction, step_status: StepStatus | None) -> bool:
    """Whether an operator action fits a Step in this status (the Run must also be waiting on that Step)."""
    return step_status == ACTION_STEP_STATUS[action]


def _not_waiting_refusal(position: RunPosition, step_name: str) -> str | None:
    """A Run takes callbacks and actions only for a Step it has, and only for the one it waits on."""
    if step_name not in position.steps:
        return f"Run {position.run_id!r} has no Step named {step_name!r}"
    if position.waiting_on != step_name:
        where = f"it is on Step {position.waiting_on!r}" if position.waiting_on else "it is not waiting on any Step"
        return f"Run {position.run_id!r} is not waiting on Step {step_name!r}; {where}"
    return None


def callback_refusal(position: RunPosition, event: StepStatusEvent) -> str | None:
    """Why a Migrator's callback does not apply to the Run, or None when it does (a repeat applies, as a no-op)."""
    if event.candidate_id != position.candidate_id:
        return (
            f"The callback is for Candidate {event.candidate_id!r} but Run {position.run_id!r} "
            f"runs Candidate {position.candidate_id!r}"
        )
    if event.step_name in position.steps and position.steps[event.step_name] == event.status:
        return None  # the same callback again: already applied
    refusal = _not_waiting_refusal(position, event.step_name)
    if refusal is not None:
        return refusal
    status = position.steps[event.step_name]
    if status is not None and event.status in CALLBACKS_BY_STEP_STATUS.get(status, frozenset()):
        return None
    if status == StepStatus.AWAITING_REVIEW:
        return f"Step {event.step_name!r} awaits an operator's review; only an approval moves it to completed"
    return (
        f"Step {event.step_name!r} is {step_status_text(status)}; a {event.status.value!r} callback does not apply"
        + (" (retry the Step first)" if status == StepStatus.FAILED else "")
    )


def action_refusal(position: RunPosition, action: StepAction, step_name: str) -> str | None:
    """Why an operator action does not fit the Run's Step, or None when it does."""
    refusal = _not_waiting_refusal(position, step_name)
    if refusal is not None:
        return refusal
    status = position.steps[step_name]
    if action_fits(action, status):
        return None
    return f"Step {step_name!r} is {step_status_text(status)}; only {_ACTION_ONLY[action]}"


def available_actions(candidate_status: CandidateStatus, step_status: StepStatus | None) -> frozenset[StepAction]:
    """The actions a page offers on a Step: only while the Candidate's Run is running, by the Step's status."""
    if candidate_status != CandidateStatus.RUNNING:
        return frozenset()
    return frozenset(a for a in StepAction if action_fits(a, step_status))


def current_step_index(statuses: Sequence[StepStatus]) -> int | None:
    """Of a Run's Steps in the order they started: the first that has not succeeded, else the last."""
    if not statuses:
        return None
    return next((i for i, s in enumerate(statuses) if s not in SUCCEEDED_STEP_STATUSES), len(statuses) - 1)


def current_step(results: Sequence[StepResult]) -> StepResult | None:
    """The Step a Run is on, of its results in the order they started; None before any Step started."""
    index = current_step_index([r.status for r in results])
    return None if index is None else results[index]


class CandidateMerge(BaseModel):
    """What re-discovery does to a Migration's Candidates."""

    upsert: list[tuple[int, Candidate]]  # (position in the discovery, Candidate): added, or replacing a not_started one
    delete: list[str]  # not_started Candidates the discovery no longer lists
    keep: list[str]  # Candidates with a Run (running or completed): kept as they are, listed or not


def merge_rediscovered(existing: Mapping[str, CandidateStatus], incoming: Sequence[Candidate]) -> CandidateMerge:
    """Re-discovery replaces not_started Candidates and drops absent ones; a Candidate with a Run is kept."""
    incoming_ids = {c.id for c in incoming}
    return CandidateMerge.model_construct(  # built from validated Candidates: no second validation of thousands
        upsert=[
            (position, c)
            for position, c in enumerate(incoming)
            if existing.get(c.id, CandidateStatus.NOT_STARTED) == CandidateStatus.NOT_STARTED
        ],
        delete=[cid for cid, s in existing.items() if s == CandidateStatus.NOT_STARTED and cid not in incoming_ids],
        keep=[cid for cid, s in existing.items() if s != CandidateStatus.NOT_STARTED],
    )


# -- metrics and history (read from the event log and the read model) ---------------------------


class MetricsOverview(WireModel):
    """The headline numbers of every Migration (or one): what the metrics page opens on."""

    migration_id: str | None = None
    migrations: int
    candidates: dict[CandidateStatus, int]
    runs_started: int
    runs_completed: int
    runs_cancelled: int
    steps_failed: int
    reviews_waiting: int
    median_run_duration_ms: int | None = None
    stuck_steps: int = 0  # Runs whose current Step is stuck (see StuckRule)


class StepMetrics(WireModel):
    """How one Step (by name) fares across Runs; durations are of successful completions only.

    Percentiles are exact (nearest rank); each review's wait is counted in whole milliseconds.
    """

    step_name: str
    count: int
    succeeded: int
    failures: int
    success_rate: float | None = None
    retries: int
    p50_duration_ms: int | None = None
    p95_duration_ms: int | None = None
    reviews: int = 0
    avg_review_wait_ms: int | None = None
    total_review_wait_ms: int = 0


class StepMetricsResponse(WireModel):
    migration_id: str | None = None
    steps: list[StepMetrics]


class TimelineDay(WireModel):
    date: date
    runs_started: int = 0
    runs_completed: int = 0
    steps_completed: int = 0
    steps_failed: int = 0


class MetricsTimeline(WireModel):
    """One row per UTC day, oldest first, days without events included with zeros."""

    migration_id: str | None = None
    days: list[TimelineDay]


class FailedStep(WireModel):
    migration_id: str
    candidate_id: str
    run_id: str
    step_name: str | None = None
    error: str | None = None
    failed_at: datetime


class FailureList(WireModel):
    failures: list[FailedStep]


class BurndownDay(WireModel):
    date: date
    remaining: int


class StatePoint(WireModel):
    """The Candidates in each state at the end of one hour or UTC day (`at`, exclusive): the stacked burndown.

    `failed` counts Runs waiting on a failed Step (Retry or Cancel); they are not counted in `running` too.
    """

    at: datetime
    not_started: int
    running: int
    failed: int
    completed: int


class Burndown(WireModel):
    """Candidates not yet completed at the end of each UTC day, by state per hour or day, and when the recent
    pace would finish them: completions in the last `paceWindowHours` (24, else 168) per day of that window."""

    migration_id: str | None = None
    total: int
    remaining: int
    days: list[BurndownDay]
    pace_per_day: float | None = None
    projected_completion: date | None = None
    bucket: str = "day"
    states: list[StatePoint] = Field(default_factory=list)
    pace_window_hours: int | None = None
    pace_completions: int = 0
    projected_at: datetime | None = None


# -- the burndown: Candidates by state over time, and the recent completion pace ---------------

# The pace counts the completions of the last day; with none there, of the last week.
PACE_WINDOW_HOURS = (24, 168)
# A Migration started minutes ago is read as if an hour had passed, so a first burst is not taken for a rate
# of thousands a day.
MIN_PACE_SPAN = timedelta(hours=1)
# Younger than this, the burndown is drawn by the hour.
HOURLY_FOR = timedelta(hours=48)
MAX_STATE_POINTS = 366


@dataclass(frozen=True)
class StateEvent:
    """What moves a Candidate between states, as the burndown reads the event log."""

    candidate: str
    event_type: EventType
    status: str | None
    at: datetime


# What the replay reads: a failed Step (step_completed with status failed) and its retry move a Run between
# running and failed; no other Step event changes a Candidate's state, so the store does not read them.
STATE_EVENT_TYPES = (
    EventType.RUN_STARTED,
    EventType.RUN_COMPLETED,
    EventType.RUN_CANCELLED,
    EventType.STEP_COMPLETED,
    EventType.STEP_RETRIED,
)


@dataclass(frozen=True)
class Pace:
    per_day: float
    window_hours: int
    completions: int


def completion_pace(completed_at: Sequence[datetime], now: datetime, started: datetime | None) -> Pace | None:
    """Completions per day over the last 24 h (else the last 7 days), counted over the part of that window the
    Migration has been running (at least MIN_PACE_SPAN): nine Runs done in the first minutes are nine an hour,
    not nine a fortnight. None when nothing completed in the last week."""
    for hours in PACE_WINDOW_HOURS:
        window = timedelta(hours=hours)
        n = sum(1 for t in completed_at if now - window < t <= now)
        if n:
            span = min(window, max(now - started, MIN_PACE_SPAN)) if started is not None else window
            return Pace(per_day=n / (span / timedelta(days=1)), window_hours=hours, completions=n)
    return None


def state_buckets(first: datetime, now: datetime) -> tuple[str, list[datetime]]:
    """The ends of the burndown's buckets, the last one the current hour or day: hours for a Migration younger
    than HOURLY_FOR, else UTC days (the newest MAX_STATE_POINTS)."""
    first, now = first.astimezone(UTC), now.astimezone(UTC)
    if now - first <= HOURLY_FOR:
        hour = first.replace(minute=0, second=0, microsecond=0)
        ends = []
        while hour <= now:
            hour += timedelta(hours=1)
            ends.append(hour)
        return "hour", ends
    start = datetime.combine(max(first.date(), now.date() - timedelta(days=MAX_STATE_POINTS - 1)), time(), UTC)
    return "day", [start + timedelta(days=i + 1) for i in range((now.date() - start.date()).days + 1)]


def state_series(events: Sequence[StateEvent], total: int, ends: Sequence[datetime]) -> list[StatePoint]:
    """Replay the log (oldest first) into the Candidates' states at each bucket end; never started is the rest."""
    states: dict[str, CandidateStatus | str] = {}
    points: list[StatePoint] = []
    i = 0
    for end in ends:
        while i < len(events) and events[i].at < end:
            _replay(states, events[i])
            i += 1
        counts = {s: 0 for s in ("running", "failed", "completed")}
        for state in states.values():
            counts[state] += 1
        points.append(StatePoint(at=end, not_started=max(total - sum(counts.values()), 0), **counts))
    return points


def _replay(states: dict[str, CandidateStatus | str], e: StateEvent) -> None:
    now = states.get(e.candidate)
    if e.event_type == EventType.RUN_STARTED:
        states[e.candidate] = "running"
    elif e.event_type == EventType.RUN_COMPLETED:
        states[e.candidate] = "completed"
    elif e.event_type == EventType.RUN_CANCELLED:
        states.pop(e.candidate, None)
    elif now in ("running", "failed"):
        if e.event_type == EventType.STEP_COMPLETED and e.status == StepStatus.FAILED.value:
            states[e.candidate] = "failed"
        elif e.event_type == EventType.STEP_RETRIED:
            states[e.candidate] = "running"


class CallbackLatency(WireModel):
    """Seconds from a Step's dispatch to the Migrator's first callback about it, over a recent window."""

    buckets: list[float]
    counts: list[int]  # cumulative, one per bucket, as Prometheus histograms count
    count: int
    sum_seconds: float


class PrometheusSnapshot(WireModel):
    """What /api/prometheus exposes, read from SQL at scrape time so every process reports the same."""

    runs_in_flight: dict[str, int]
    step_outcomes: dict[str, int]
    dispatch_errors: int
    callback_latency: CallbackLatency
    stuck_steps: dict[str, int] = Field(default_factory=dict)  # by Migration id


# -- readiness ----------------------------------------------------------------------------------


class ReadinessCheck(WireModel):
    """One dependency of a Loom process and whether it works right now."""

    name: str  # "database", "temporal", "worker", ...
    ok: bool
    detail: str = ""


class Readiness(WireModel):
    """What /api/readyz answers: ready only when every check passed."""

    ready: bool
    checks: list[ReadinessCheck]

    @classmethod
    def of(cls, checks: list[ReadinessCheck]) -> Readiness:
        return cls(ready=all(c.ok for c in checks), checks=checks)


# -- who is calling ------------------------------------------------------------------------------

SESSION_COOKIE = "loom_session"


class Role(StrEnum):
    """Viewers read; operators also drive Runs; admins may do everything."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
        return order.index(self) >= order.index(needed)


class TokenKind(StrEnum):
    MIGRATOR = "migrator"
    OPERATOR = "operator"


class PrincipalKind(StrEnum):
    USER = "user"
    PROXY_USER = "proxy_user"
    OPERATOR_TOKEN = "operator_token"
    MIGRATOR = "migrator"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `name` is what the event log records as the actor."""

    name: str
    kind: PrincipalKind
    role: Role | None = None
    token_id: str | None = None

    @property
    def is_migrator(self) -> bool:
        return self.kind == PrincipalKind.MIGRATOR


@dataclass(frozen=True)
class Credentials:
    """What a request carries to say who sent it: the trusted proxy's user name, the session cookie, a bearer token."""

    proxy_user: str | None = None
    session: str | None = None
    bearer: str | None = None
    # For the cross-site rule: whether the request changes state, the page it says it came from (its Origin, or
    # without one its Referer), and the Host it was sent to. The board's websocket sends no writes here.
    writes: bool = False
    source: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    password_hash: str
    created_at: datetime


@dataclass(frozen=True)
class TokenRecord:
    """A token as Loom keeps it: only the SHA-256 of its secret (`digest`), never the secret."""

    id: str
    kind: TokenKind
    name: str
    role: Role | None
    digest: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Ownership:
    """Whether a Migration exists, and the id of the active token that owns it (None: no owner, or a revoked one)."""

    exists: bool
    token_id: str | None


class LoginRequest(WireModel):
    username: Annotated[str, Field(min_length=1, max_length=128)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class Identity(WireModel):
    """Who the caller is, as GET /api/auth/me and POST /api/auth/login answer."""

    name: str
    kind: PrincipalKind
    role: Role | None = None

    @classmethod
    def of(cls, principal: Principal) -> Identity:
        return cls(name=principal.name, kind=principal.kind, role=principal.role)


def local_path(target: str) -> str:
    """Where to go after signing in: a path on this site, never another origin ('//host', '/\\host', 'https:')."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(c in target for c in "\r\n\t"):
        return "/"
    return target


# -- sign-in and cross-site rules (pure: the service applies them) -------------------------------


def _origin(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return parts.scheme.lower(), parts.netloc.lower()


def origin_refusal(source: str | None, host: str | None, public_url: str, *, required: bool) -> str | None:
    """Why a browser's request must not be taken as Loom's own page's (cross-site request forgery), or None.

    `source` is the request's Origin header, or without one its Referer. It is Loom's own when its host and port are
    the Host the request was sent to (a proxy may change the scheme) or it is LOOM_PUBLIC_URL's origin. `Origin: null`
    (sandboxed frames, redirects across sites, file: pages) is never Loom's. Browsers send Origin on every POST, PUT,
    PATCH and DELETE, so one without either header is no browser's: `required` refuses it where a cookie speaks.
    """
    if source is None or not source.strip():
        return "The request names no Origin or Referer; a signed-in browser always sends one" if required else None
    given = _origin(source)
    if given is not None and (given[1] == (host or "").strip().lower() or given == _origin(public_url)):
        return None
    shown = source.strip()[:200]
    return f"The request comes from {shown!r}, not from Loom's own pages; a cross-site request cannot change anything"


class SignInThrottle:
    """Failed sign-ins over a sliding window, per account and per client address, in this process only.

    Once a key has `limit` failures inside the window, it may not try again until the oldest of them leaves it.
    Memory stays bounded: at most `limit` times per key, and keys whose failures all left the window are dropped
    when there are more than `max_keys`.
    """

    def __init__(
        self,
        per_account: int = 10,
        per_client: int = 50,
        window_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_keys: int = 10_000,
    ) -> None:
        self.limits = {"account": per_account, "client": per_client}
        self.window = timedelta(seconds=window_seconds)
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[datetime]] = {}

    def _keys(self, username: str, client: str) -> list[tuple[str, str]]:
        return [("account", username.lower()), ("client", client)]

    def retry_after(self, username: str, client: str) -> int | None:
        """Seconds until this account and this address may try again; None when they may now."""
        now = self.clock()
        waits = []
        for key in self._keys(username, client):
            failures = self._failures.get(key)
            if failures and len(failures) >= self.limits[key[0]] and now - failures[0] < self.window:
                waits.append(math.ceil((failures[0] + self.window - now).total_seconds()))
        return max(waits, default=None)

    def failed(self, username: str, client: str) -> None:
        now = self.clock()
        if len(self._failures) >= self.max_keys:
            for key in [k for k, f in self._failures.items() if now - f[-1] >= self.window]:
                del self._failures[key]
            if len(self._failures) >= self.max_keys:
                self._failures.clear()  # a flood of distinct names: start over rather than grow
        for key in self._keys(username, client):
            self._failures.setdefault(key, deque(maxlen=self.limits[key[0]])).append(now)


# -- fleet views: the Candidate table's filter and sort, failure groups, stuck Steps, PR state ------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: object) -> float:
    """Seconds, from a number of seconds or a text like "45s", "30m", "4h", "3d", "2w"; never negative."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text like '30m', '4h', '3d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"a duration is a number of seconds or a text like '30m', '4h', '3d'; got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError("a duration is not negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]


class ChecksState(StrEnum):
    """A PR's CI checks, as a Migrator reports them in a Step's metadata (`checks`)."""

    PASSING = "passing"
    FAILING = "failing"
    PENDING = "pending"


class ReviewState(StrEnum):
    """A PR's code review, as a Migrator reports it in a Step's metadata (`review`)."""

    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    PENDING = "pending"


class PrState(BaseModel):
    checks: ChecksState | None = None
    review: ReviewState | None = None
    mergeable: bool | None = None


# The SDK's GitHub helper (loom_migrator/github.py) says success/failure, as GitHub does; both words are read.
_CHECKS_WORDS = {"success": "passing", "failure": "failing"}


def pr_state(metadata: Mapping[str, str]) -> PrState:
    """The PR state a Step's metadata reports (`checks`, `review`, `mergeable`); what is absent or unknown is None."""
    checks = metadata.get("checks", "").strip().lower()
    checks = _CHECKS_WORDS.get(checks, checks)
    review = metadata.get("review", "").strip().lower()
    mergeable = metadata.get("mergeable", "").strip().lower()
    return PrState(
        checks=ChecksState(checks) if checks in set(ChecksState) else None,
        review=ReviewState(review) if review in set(ReviewState) else None,
        mergeable={"true": True, "false": False}.get(mergeable),
    )


FAILURE_GROUP_KEY = re.compile(r"^[0-9a-f]{16}$")


class CandidateFilter(WireModel):
    """One filter for every selection of a Migration's Candidates: the table, bulk operations and rollouts.

    step/stepStatus match the current Step ("failed at step X"); `stepName` is still read as `step`. Durations
    (inStatusLongerThan, prOlderThan) are seconds, or a text like "30m", "4h", "3d". `failureGroup` is a key from
    GET /failure-groups; `stuck` a Step in one status longer than k x its p95 duration (see StuckRule).
    """

    status: CandidateStatus | None = None
    kind: Annotated[str, Field(max_length=128)] | None = None
    q: Annotated[str, Field(max_length=256)] | None = None
    metadata: StringMap = Field(default_factory=dict)
    needs_attention: bool = False
    step: Annotated[str, Field(max_length=128)] | None = Field(
        None, validation_alias=AliasChoices("step", "stepName", "step_name")
    )
    step_status: StepStatus | None = None
    in_status_longer_than: Seconds | None = None
    pr_older_than: Seconds | None = None
    checks: ChecksState | None = None
    review: ReviewState | None = None
    mergeable: bool | None = None
    failure: Annotated[str, Field(max_length=256)] | None = None
    failure_group: Annotated[str, Field(pattern=FAILURE_GROUP_KEY.pattern)] | None = None
    stuck: bool | None = None
    # Completed Candidates whose last drift check found changes left (true) or none (false); unchecked match neither.
    drifted: bool | None = None

    @property
    def on_progress(self) -> bool:
        """Whether it asks about the Run's progress, which only Candidates with a Run have."""
        return any(
            v is not None
            for v in (
                self.step,
                self.step_status,
                self.in_status_longer_than,
                self.pr_older_than,
                self.checks,
                self.review,
                self.mergeable,
                self.failure,
                self.failure_group,
            )
        ) or bool(self.stuck)


class SortField(StrEnum):
    ID = "id"
    KIND = "kind"
    STEP = "step"
    STEP_STATUS = "stepStatus"
    TIME_IN_STATUS = "timeInStatus"
    LAST_EVENT = "lastEvent"
    PR = "pr"
    METADATA = "metadata"


SORT_PATTERN = r"^-?(id|kind|step|stepStatus|timeInStatus|lastEvent|pr|metadata\.[A-Za-z0-9_.\-/]{1,128})$"


@dataclass(frozen=True)
class CandidateSort:
    """`sort=` of the table: one field, `-` first for descending; ties always broken by id, ascending."""

    by: SortField
    descending: bool = False
    metadata_key: str | None = None

    @classmethod
    def parse(cls, text: str) -> CandidateSort:
        if not re.match(SORT_PATTERN, text):
            raise ValueError(
                "sort is one of id, kind, step, stepStatus, timeInStatus, lastEvent, pr, metadata.<key>, "
                f"with '-' first for descending; got {text!r}"
            )
        descending = text.startswith("-")
        name = text.lstrip("-")
        if name.startswith("metadata."):
            return cls(SortField.METADATA, descending, name.removeprefix("metadata."))
        return cls(SortField(name), descending)


_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://\S+", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_HEX = re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,})\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
MAX_FAILURE_MESSAGE = 500


def normalise_failure(message: str | None) -> str:
    """A failure message with what varies between Candidates (URLs, quoted values, UUIDs, hex ids, numbers)
    replaced by placeholders, so the same failure on many Candidates reads as one."""
    text = _URL.sub("<url>", message or "")
    text = _QUOTED.sub("<value>", text)
    text = _UUID.sub("<uuid>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return " ".join(text.split())[:MAX_FAILURE_MESSAGE]


def failure_group_key(step_name: str, message: str | None) -> str:
    """A failure group's stable key: the same for the same Step and normalised message, in any process."""
    digest = hashlib.sha256(f"{step_name}\n{normalise_failure(message)}".encode()).hexdigest()
    return digest[:16]


class FailureGroup(WireModel):
    """Failed Steps of Runs in progress with the same Step and normalised message: one fix, one retry."""

    key: str
    step_name: str
    message: str
    count: int
    examples: list[str]  # up to five Candidate ids
    first_seen: datetime | None = None
    last_seen: datetime | None = None


class FailureGroups(WireModel):
    groups: list[FailureGroup]


MAX_FAILURE_EXAMPLES = 5


# Statuses a Step leaves by itself (a Migrator's callback, a reviewer): the ones that can be "stuck". A failed Step
# waits for an operator's Retry, and is already shown as failed.
STUCK_STEP_STATUSES = frozenset({StepStatus.IN_PROGRESS, StepStatus.OPEN, StepStatus.AWAITING_REVIEW})


@dataclass(frozen=True)
class StuckRule:
    """A Step is stuck after `factor` x its p95 duration in one status, and never before `floor_seconds`."""

    factor: float = 3.0
    floor_seconds: float = 900.0

    def after_seconds(self, p95_ms: int | None) -> float:
        if p95_ms is None:
            return self.floor_seconds
        return max(self.floor_seconds, self.factor * p95_ms / 1000)


def is_stuck(
    status: StepStatus | None, since: datetime | None, now: datetime, p95_ms: int | None, rule: StuckRule
) -> bool:
    """Whether a Step has been in one non-terminal status for longer than the rule allows."""
    if status not in STUCK_STEP_STATUSES or since is None:
        return False
    return (now - since).total_seconds() > rule.after_seconds(p95_ms)


@dataclass(frozen=True)
class StuckLimits:
    """The rule applied to one Migration at one moment: what a query needs to flag its stuck Steps."""

    now: datetime
    rule: StuckRule
    p95_ms: Mapping[str, int] = field(default_factory=dict)  # by Step name

    def seconds(self, step_name: str | None) -> float:
        return self.rule.after_seconds(self.p95_ms.get(step_name or ""))

    def flags(self, step_name: str | None, status: StepStatus | None, since: datetime | None) -> bool:
        return is_stuck(status, since, self.now, self.p95_ms.get(step_name or ""), self.rule)


class RunProgress(BaseModel):
    """What the Candidate table shows of a Run, kept beside its Candidate so the table filters and sorts in SQL."""

    step_name: str | None = None
    step_status: StepStatus | None = None
    status_since: datetime | None = None  # when the current Step entered its status
    pr_url: str | None = None
    pr_opened_at: datetime | None = None
    checks: ChecksState | None = None
    review: ReviewState | None = None
    mergeable: bool | None = None
    failure_message: str | None = None
    failure_group: str | None = None


def run_progress(results: Sequence[StepResult], before: RunProgress | None, now: datetime) -> RunProgress:
    """A Run's progress from its Step results (in the order they started) and what was kept before.

    The current Step's status keeps its `status_since` while it stays; the PR state is read from the latest
    Step that carries a PR (else the current Step).
    """
    current = current_step(results)
    if current is None:
        return RunProgress()
    before = before or RunProgress()
    same = before.step_name == current.step_name and before.step_status == current.status
    since = before.status_since if same and before.status_since else current.updated_at or current.started_at or now
    with_pr = next((r for r in reversed(results) if r.pr_url), None)
    pr_url = with_pr.pr_url if with_pr else None
    if pr_url is None:
        opened = None
    elif pr_url == before.pr_url and before.pr_opened_at:
        opened = before.pr_opened_at
    else:
        opened = (with_pr.updated_at if with_pr else None) or now
    state = pr_state((with_pr or current).metadata)
    failed = current.status is StepStatus.FAILED
    message = (current.metadata.get("error") or "")[:4000] if failed else None
    return RunProgress(
        step_name=current.step_name,
        step_status=current.status,
        status_since=since,
        pr_url=pr_url,
        pr_opened_at=opened,
        checks=state.checks,
        review=state.review,
        mergeable=state.mergeable,
        failure_message=message,
        failure_group=failure_group_key(current.step_name, message) if failed else None,
    )
