"""The typed objects a Run, its activities and its callers exchange, and the names of its updates.

Each workflow, activity, update and signal takes exactly one of these objects, so a field
can be added later without breaking a Run already in flight.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from loom_backend.domain import DispatchStepRequest, MigrationManifest, RunChange, StepStatusEvent, StringMap
from loom_backend.rollout import BulkAction, RolloutNote, RolloutPolicy, RolloutState, RolloutStatus

WORKFLOW_NAME = "LoomRun"

# Update and signal names, defined once; the engine and the Run both use these.
STEP_EVENT_UPDATE = "step_event"
RETRY_STEP_UPDATE = "retry_step"
REVIEW_STEP_UPDATE = "review_step"
MARK_MERGED_UPDATE = "mark_merged"
UPDATE_INPUTS_UPDATE = "update_inputs"
CANCEL_REQUESTED_SIGNAL = "cancel_requested"
DESCRIBE_QUERY = "describe"

# Type name of the ApplicationError a Run answers when an action does not fit a Step's status.
STEP_NOT_IN_STATE = "StepNotInState"


class DispatchPolicy(BaseModel):
    """How long a Run keeps trying to reach a Migrator before it marks the Step failed.

    A Migrator redeploy or an outage of a few hours must not page anyone: attempts back off
    exponentially up to `maximum_interval_seconds` and go on for `retry_window_seconds`.
    """

    retry_window_seconds: float = Field(6 * 3600, gt=0)
    max_attempts: int | None = Field(None, ge=1)  # a hard cap besides the window; None: the window alone
    initial_interval_seconds: float = 1.0
    maximum_interval_seconds: float = 300.0
    timeout_seconds: float = 10.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the attempt-th failed attempt: doubling from the initial interval, capped."""
        return min(self.initial_interval_seconds * 2 ** min(attempt - 1, 30), self.maximum_interval_seconds)


class RunInput(BaseModel):
    """What a Run starts from: the MigrationManifest, who started it, and the dispatch policy."""

    manifest: MigrationManifest
    actor: str | None = None
    dispatch: DispatchPolicy = Field(default_factory=DispatchPolicy)


class StepEventInput(StepStatusEvent):
    """A Step callback as the Run takes it: a Migrator's (no actor), or an operator's manual override.

    A subclass, so a callback recorded in an older Run's history (a bare StepStatusEvent) still decodes.
    """

    actor: str | None = None


class RetryStepInput(BaseModel):
    step_name: str
    actor: str


class ReviewStepInput(BaseModel):
    step_name: str
    approved: bool
    actor: str
    comment: str | None = None


class MarkMergedInput(BaseModel):
    step_name: str
    actor: str


class UpdateInputsInput(BaseModel):
    inputs: StringMap
    actor: str


class CancelRequest(BaseModel):
    actor: str


class PersistBatch(BaseModel):
    run_id: str
    migration_id: str
    candidate_id: str
    writes: list[RunChange]


class DispatchInput(BaseModel):
    """A Step's dispatch and the Run's writes that must reach the read model before the Migrator hears of it."""

    request: DispatchStepRequest
    writes: PersistBatch
    attempt: int = 1  # the Run's attempt: a later one writes only if no earlier one did


# Type names of the ApplicationErrors the dispatch activity raises, so the Run tells the causes apart.
MIGRATOR_REJECTED = "MigratorRejected"
MIGRATOR_UNAVAILABLE = "MigratorUnavailable"
READ_MODEL_UNAVAILABLE = "ReadModelUnavailable"

# The dispatch activity's writes must be in within this, or it reports Loom's database unavailable; it runs for at
# most this plus the Migrator's HTTP timeout plus a second, so a slow database is never taken for a silent Migrator.
DISPATCH_WRITE_SECONDS = 4.0


class StepView(BaseModel):
    name: str
    status: str | None = None
    dispatches: int = 0


class RunView(BaseModel):
    """What the describe query answers: where the Run is, for operators and tests."""

    current_step: str | None
    inputs: StringMap
    steps: list[StepView]


# -- the rollout and bulk operations ---------------------------------------------------------------

ROLLOUT_WORKFLOW_NAME = "LoomRollout"
BULK_WORKFLOW_NAME = "LoomBulk"
ROLLOUT_ACTION_UPDATE = "rollout_action"
ROLLOUT_POLICY_UPDATE = "rollout_policy"
ROLLOUT_STATE_QUERY = "rollout_state"
# Sent by a Run's activity once the Run's end (or a failed Step) is in the read model: the rollout looks again now.
ROLLOUT_LOOK_SIGNAL = "rollout_look"
# Type name of the ApplicationError a rollout answers when an action does not fit its phase.
ROLLOUT_NOT_IN_STATE = "RolloutNotInState"


class RolloutInput(BaseModel):
    """A rollout starts (or continues as new) from its whole state."""

    state: RolloutState
    poll_seconds: float = 1.0


class RolloutActionInput(BaseModel):
    action: str  # pause | resume | promote | stop
    actor: str


class RolloutPolicyInput(BaseModel):
    policy: RolloutPolicy
    actor: str


class ObserveInput(BaseModel):
    migration_id: str
    candidate_ids: list[str]
    group_key: str | None = None
    since: datetime


class RolloutStartInput(BaseModel):
    migration_id: str
    candidate_id: str
    actor: str


class RolloutStartManyInput(BaseModel):
    migration_id: str
    candidate_ids: list[str]
    actor: str


class RolloutStartManyOutcome(BaseModel):
    refusals: list[str | None]  # one per Candidate, in order: as RolloutStartOutcome.refusal


class PublishInput(BaseModel):
    migration_id: str
    status: RolloutStatus
    notes: list[RolloutNote] = Field(default_factory=list)  # rollout actions for the event log
    started_at: datetime | None = None  # of the rollout: with each note's seq, its event's key


class RolloutStartOutcome(BaseModel):
    refusal: str | None = None  # why the Start was refused (missing inputs, ...); None: the Candidate has a Run


class RolloutActInput(BaseModel):
    """A Retry or an approval the rollout makes by its policy; a Retry names the failure it answers (the Step's
    failure count since `since`), so a repeated attempt never retries a later failure."""

    migration_id: str
    candidate_id: str
    step_name: str
    action: BulkAction
    actor: str
    since: datetime
    failures: int = 0
    comment: str | None = None


class RolloutActOutcome(BaseModel):
    refusal: str | None = None  # why the Retry or approval was not made (the Step moved on); None: it was


class BulkInput(BaseModel):
    op_id: str
    migration_id: str
    action: BulkAction
    actor: str
    candidate_ids: list[str]
    step_name: str | None = None
    comment: str | None = None
    parallel: int = 8


class BulkApplyInput(BaseModel):
    op_id: str
    migration_id: str
    action: BulkAction
    actor: str
    candidate_id: str
    step_name: str | None = None
    comment: str | None = None
