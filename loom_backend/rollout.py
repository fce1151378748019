"""Rollout: a whole Migration run by policy — caps, waves with gates, dependencies, a breaker. Pure, no I/O.

The rollout's Temporal workflow keeps a `RolloutState`, asks the read model for a `RolloutObservation` of its
Candidates, and calls the functions here to decide what to do; so the rules are unit-tested without Temporal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from loom_backend.domain import (
    CandidateFilter,
    CandidateStatus,
    EventType,
    StepDefinition,
    StepEvent,
    StringMap,
    WireModel,
)

ROLLOUT_ID_PREFIX = "rollout:"
_PERCENT = re.compile(r"^(\d{1,3}(?:\.\d+)?)%$")


def rollout_id(migration_id: str) -> str:
    """The rollout's id: never a Run id, which is two slugs joined by '__' and so holds no ':'."""
    return f"{ROLLOUT_ID_PREFIX}{migration_id}"


def _check_wave(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 1:
            raise ValueError("a wave of a count must be at least 1")
        return value
    match = _PERCENT.match(value)
    if not match or not 0 < float(match.group(1)) <= 100:
        raise ValueError(f"a wave is a count (3) or a percentage of the selection ('10%'); got {value!r}")
    return value


WaveSize = Annotated[int | str, AfterValidator(_check_wave)]


class Gate(StrEnum):
    AUTO = "auto"  # the next wave starts after soakMinutes when the wave had no failed Step
    MANUAL = "manual"  # the next wave waits for an operator's Promote


class GroupCap(WireModel):
    """At most `max` open Runs per value of the Candidates' metadata `key` (say, two per owning team)."""

    key: Annotated[str, Field(min_length=1, max_length=128)]
    max: Annotated[int, Field(ge=1)]


class AutoRetry(WireModel):
    """Retry a failed Step of the rollout's Runs by itself, as an operator's Retry would: at most `attempts` times
    per Candidate Step, `afterMinutes` after it failed. Only a failure left after these counts for the breaker."""

    attempts: Annotated[int, Field(ge=1, le=100)]
    after_minutes: Annotated[float, Field(ge=0)] = 0


class AutoApprove(WireModel):
    """Approve the manual-review Step `step` of the rollout's Runs as they reach it, from wave `fromWave` (1-based)
    on: an operator reviews the canary wave by hand, then lets later waves through."""

    step: Annotated[str, Field(min_length=1, max_length=128)]
    from_wave: Annotated[int, Field(ge=1)] = 2


class RolloutPolicy(WireModel):
    """How a rollout starts Runs. Waves are cumulative targets: [3, "10%", "100%"] is 3, then up to 10%, then all."""

    max_running: Annotated[int, Field(ge=1, le=10_000)]
    starts_per_hour: Annotated[int, Field(ge=1)] | None = None
    max_running_per_group: GroupCap | None = None
    waves: Annotated[list[WaveSize], Field(max_length=100)] = Field(default_factory=list)
    gate: Gate = Gate.MANUAL
    soak_minutes: Annotated[float, Field(ge=0)] = 0
    order: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # a metadata key to sort by
    depends_on: dict[str, list[str]] = Field(default_factory=dict)  # Candidate -> Candidates it waits for
    pause_after_failures: Annotated[int, Field(ge=1)] | None = None
    auto_retry: AutoRetry | None = None
    auto_approve: AutoApprove | None = None


class RolloutPhase(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    WAITING_FOR_PROMOTION = "waiting_for_promotion"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"

    @property
    def over(self) -> bool:
        return self in (RolloutPhase.COMPLETED, RolloutPhase.STOPPED)


class MemberProgress(BaseModel):
    """One Candidate of the rollout as the read model shows it."""

    status: CandidateStatus
    failures: int = 0  # Steps of its Run that failed since the rollout started
    failing: bool = False  # its current Step is failed: the Run waits for a Retry
    failed_step: str | None = None  # that failed Step
    failed_at: datetime | None = None  # when it failed
    step_failures: int = 0  # how often that Step failed since the rollout started
    review_step: str | None = None  # its current Step, when it awaits review
    rejected: list[str] = Field(default_factory=list)  # its Steps an operator rejected since the rollout started


class RolloutObservation(BaseModel):
    """What the rollout reads from the read model each time it looks: its Candidates and the Migration's load."""

    members: dict[str, MemberProgress] = Field(default_factory=dict)
    running: int = 0  # Runs open in the whole Migration, the rollout's or not
    running_by_group: dict[str, int] = Field(default_factory=dict)  # by value of the policy's group key


class RolloutNote(BaseModel):
    """A rollout action for the event log (started, paused, resumed, promoted, stopped, policy edited, completed),
    kept in the state until the workflow has written it; `seq` makes its key, so a rewrite is a no-op."""

    seq: int
    event_type: EventType
    actor: str | None = None
    metadata: StringMap = Field(default_factory=dict)
    at: datetime


class RolloutState(BaseModel):
    """Everything a rollout knows; carried whole across continue-as-new, so a restart resumes exactly here."""

    migration_id: str
    actor: str
    phase: RolloutPhase = RolloutPhase.RUNNING
    policy: RolloutPolicy
    queue: list[str]  # the selection in the order it starts
    groups: dict[str, str] = Field(default_factory=dict)  # Candidate -> its value of the group key
    started_at: datetime
    started: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)  # Candidates a Start refused, with why
    start_times: list[datetime] = Field(default_factory=list)  # of the last hour, for startsPerHour
    wave: int = 0
    wave_done_at: datetime | None = None
    failure_baseline: dict[str, int] = Field(default_factory=dict)  # at start or last resume, for the breaker
    wave_baseline: dict[str, int] = Field(default_factory=dict)  # when the wave started, for the auto gate
    paused_reason: str | None = None
    seen: RolloutObservation = Field(default_factory=RolloutObservation)
    notes: list[RolloutNote] = Field(default_factory=list)  # not yet in the event log
    note_seq: int = 0
    retries: dict[str, dict[str, int]] = Field(default_factory=dict)  # Candidate -> Step -> automatic retries used
    policy_by: str | None = None  # who set the policy in force: the starter, then whoever edited it


class WaveView(WireModel):
    index: int
    count: int
    size: int
    completed: int


class RolloutCounts(WireModel):
    queued: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0  # Runs whose current Step failed
    refused: int = 0
    cancelled: int = 0


class RolloutStatus(WireModel):
    """What GET /api/migrations/{id}/rollout answers."""

    state: RolloutPhase
    policy: RolloutPolicy | None = None
    wave: WaveView | None = None
    counts: RolloutCounts = Field(default_factory=RolloutCounts)
    paused_reason: str | None = None
    gate_waiting: bool = False
    actor: str | None = None
    started_at: datetime | None = None


# -- checking a policy ---------------------------------------------------------------------------


def find_cycle(depends_on: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as the path that closes it (a, b, a), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in on_path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        on_path.add(node)
        for dep in depends_on.get(node, ()):
            cycle = visit(dep)
            if cycle:
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(depends_on):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def policy_refusal(
    policy: RolloutPolicy, candidate_ids: set[str], metadata_keys: set[str], steps: Sequence[StepDefinition] = ()
) -> str | None:
    """Why a policy cannot run over this Migration's Candidates and Steps, or None: unknown keys, ids or Steps, a
    cycle, an autoApprove of a Step that is not a manual review."""
    if policy.auto_approve is not None:
        step = next((s for s in steps if s.name == policy.auto_approve.step), None)
        if step is None:
            names = ", ".join(s.name for s in steps)
            return f"autoApprove.step: this Migration has no Step named {policy.auto_approve.step!r} (it has {names})"
        if not step.is_manual_review:
            return f"autoApprove.step: Step {step.name!r} is not a manual-review Step; only a review can be approved"
    if policy.order is not None and policy.order not in metadata_keys:
        return f"order: no Candidate has the metadata key {policy.order!r}"
    if policy.max_running_per_group and policy.max_running_per_group.key not in metadata_keys:
        return f"maxRunningPerGroup.key: no Candidate has the metadata key {policy.max_running_per_group.key!r}"
    unknown = sorted({c for c, deps in policy.depends_on.items() for c in (c, *deps)} - candidate_ids)
    if unknown:
        return f"dependsOn names Candidates this Migration does not have: {', '.join(unknown[:10])}"
    cycle = find_cycle(policy.depends_on)
    if cycle:
        return f"dependsOn has a cycle: {' -> '.join(cycle)}"
    return None


FIXED_WHILE_RUNNING = ("order", "depends_on", "max_running_per_group.key")


def edit_refusal(current: RolloutPolicy, new: RolloutPolicy) -> str | None:
    """A running rollout takes new caps, gates and waves; its order and grouping were fixed when it started."""
    if new.order != current.order or new.depends_on != current.depends_on:
        return "order and dependsOn are fixed once a rollout started; stop it and start a new one to change them"
    old_key = current.max_running_per_group.key if current.max_running_per_group else None
    new_key = new.max_running_per_group.key if new.max_running_per_group else None
    if new_key is not None and new_key != old_key:
        return "maxRunningPerGroup.key is fixed once a rollout started; change its max, or stop and start again"
    return None


# -- planning --------------------------------------------------------------------------------------


def plan_order(
    candidate_ids: Sequence[str], sort_values: Mapping[str, str], depends_on: Mapping[str, Sequence[str]]
) -> list[str]:
    """The selection in start order: by the order key's value (then as given), each after its dependencies.

    Dependencies go first so that a wave, a prefix of this order, never waits on a later wave.
    """
    position = {c: i for i, c in enumerate(candidate_ids)}
    ranked = sorted(candidate_ids, key=lambda c: (sort_values.get(c, "\uffff"), position[c]))
    placed: set[str] = set()
    order: list[str] = []

    def place(c: str) -> None:
        if c in placed or c not in position:
            return
        placed.add(c)
        for dep in sorted(depends_on.get(c, ()), key=lambda d: ranked.index(d) if d in position else -1):
            place(dep)
        order.append(c)

    for c in ranked:
        place(c)
    return order


def wave_ends(waves: Sequence[int | str], total: int) -> list[int]:
    """Where each wave ends in the start order (cumulative, non-decreasing); the last always ends at `total`."""
    ends: list[int] = []
    for size in waves:
        end = size if isinstance(size, int) else math.ceil(float(size.rstrip("%")) * total / 100)
        end = max(ends[-1] if ends else 0, min(total, end))
        if not ends or end > ends[-1]:
            ends.append(end)
    if not ends or ends[-1] < total:
        ends.append(total)
    return ends


def wave_members(state: RolloutState) -> list[str]:
    ends = wave_ends(state.policy.waves, len(state.queue))
    index = min(state.wave, len(ends) - 1)
    begin = ends[index - 1] if index > 0 else 0
    return state.queue[begin : ends[index]]


def is_last_wave(state: RolloutState) -> bool:
    return state.wave >= len(wave_ends(state.policy.waves, len(state.queue))) - 1


# -- the event log ----------------------------------------------------------------------------------

BREAKER = "breaker"  # the actor of a pause the breaker made
AUTO_GATE = "auto gate"  # the actor of a wave the auto gate started


def note(state: RolloutState, event_type: EventType, actor: str | None, at: datetime, **metadata: str) -> None:
    """Remember a rollout action for the event log; the workflow writes what it noted with its next status."""
    state.note_seq += 1
    state.notes.append(RolloutNote(seq=state.note_seq, event_type=event_type, actor=actor, metadata=metadata, at=at))


def rollout_events(
    migration_id: str, started_at: datetime, notes: Sequence[RolloutNote]
) -> list[tuple[str, StepEvent]]:
    """The notes as event log entries with their keys: unique per rollout (Migration, start time) and note."""
    run = rollout_id(migration_id)
    return [
        (
            f"{run}:{started_at.isoformat()}:{n.seq}",
            StepEvent(
                run_id=run,
                migration_id=migration_id,
                candidate_id="",
                event_type=n.event_type,
                actor=n.actor,
                metadata=n.metadata,
                created_at=n.at,
            ),
        )
        for n in notes
    ]


# -- deciding ---------------------------------------------------------------------------------------


def _finished(state: RolloutState, candidate_id: str) -> bool:
    """Completed, refused at its Start, or cancelled (back to not_started after the rollout started it)."""
    if candidate_id in state.refused:
        return True
    if candidate_id not in state.started:
        return False
    seen = state.seen.members.get(candidate_id)
    return seen is not None and seen.status != CandidateStatus.RUNNING


def wave_done(state: RolloutState) -> bool:
    """Every Candidate of the current wave has finished: completed, cancelled, or refused at its Start."""
    return all(_finished(state, c) for c in wave_members(state))


def counted_failures(state: RolloutState) -> dict[str, int]:
    """Each Candidate's failed Steps that count for the breaker and the auto gate: those the rollout did not retry
    by itself and will not (a failure waiting for its automatic retry is not counted)."""
    counts: dict[str, int] = {}
    for c, m in state.seen.members.items():
        absorbed = sum(state.retries.get(c, {}).values()) + (retry_due_at(state, c) is not None)
        if m.failures - absorbed > 0:
            counts[c] = m.failures - absorbed
    return counts


def failed_runs(state: RolloutState, baseline: Mapping[str, int], among: set[str] | None = None) -> list[str]:
    """The Candidates (of `among`, or all) with a counted failure since the baseline was taken."""
    counts = counted_failures(state)
    return sorted(c for c, n in counts.items() if n > baseline.get(c, 0) and (among is None or c in among))


def breaker_tripped(state: RolloutState) -> bool:
    """pauseAfterFailures of the rollout's Runs had a failed Step since it started or was last resumed; a failure
    the rollout retries by itself counts only once its automatic retries are used up."""
    limit = state.policy.pause_after_failures
    return limit is not None and len(failed_runs(state, state.failure_baseline)) >= limit


def gate_opens_at(state: RolloutState) -> datetime | None:
    """When an auto gate lets the next wave start: soakMinutes after the wave finished, if none of its Runs had a
    failed Step; None for a manual gate, or a wave that had failures (an operator must Promote it)."""
    if state.policy.gate is not Gate.AUTO or state.wave_done_at is None:
        return None
    if failed_runs(state, state.wave_baseline, set(wave_members(state))):
        return None
    return state.wave_done_at + timedelta(minutes=state.policy.soak_minutes)


def starts_left_this_hour(state: RolloutState, now: datetime) -> int | None:
    if state.policy.starts_per_hour is None:
        return None
    recent = [t for t in state.start_times if t > now - timedelta(hours=1)]
    return max(0, state.policy.starts_per_hour - len(recent))


def next_starts(state: RolloutState, now: datetime) -> list[str]:
    """Who may start now, in order: the current wave's Candidates not yet started whose dependencies completed,
    as many as maxRunning, maxRunningPerGroup and startsPerHour leave room for. Only while running."""
    if state.phase is not RolloutPhase.RUNNING:
        return []
    policy = state.policy
    room = policy.max_running - state.seen.running
    left = starts_left_this_hour(state, now)
    if left is not None:
        room = min(room, left)
    by_group = dict(state.seen.running_by_group)
    cap = policy.max_running_per_group
    chosen: list[str] = []
    for candidate_id in wave_members(state):
        if len(chosen) >= room:
            break
        if candidate_id in state.started or candidate_id in state.refused:
            continue
        deps = policy.depends_on.get(candidate_id, [])
        if any(_status(state, d) != CandidateStatus.COMPLETED for d in deps):
            continue
        if cap is not None:
            group = state.groups.get(candidate_id)
            if group is not None:
                if by_group.get(group, 0) >= cap.max:
                    continue
                by_group[group] = by_group.get(group, 0) + 1
        chosen.append(candidate_id)
    return chosen


def _status(state: RolloutState, candidate_id: str) -> CandidateStatus | None:
    seen = state.seen.members.get(candidate_id)
    return seen.status if seen else None


AUTO = "rollout"  # the actor of a Retry or an approval the rollout made by its policy (autoRetry, autoApprove)
ACTING_PHASES = (RolloutPhase.RUNNING, RolloutPhase.WAITING_FOR_PROMOTION)


def retry_due_at(state: RolloutState, candidate_id: str) -> datetime | None:
    """When autoRetry retries the failed Step of the Candidate's Run, or None if it will not: no autoRetry, nothing
    failed, its attempts are used up, an operator rejected that Step (a person's decision), or this failure was
    retried already (the Step failed no more often than the rollout retried it)."""
    retry = state.policy.auto_retry
    seen = state.seen.members.get(candidate_id)
    if retry is None or seen is None or candidate_id not in state.started or seen.status != CandidateStatus.RUNNING:
        return None
    step = seen.failed_step
    if not seen.failing or step is None or step in seen.rejected:
        return None
    used = state.retries.get(candidate_id, {}).get(step, 0)
    if used >= retry.attempts or used >= seen.step_failures:
        return None
    return (seen.failed_at or state.started_at) + timedelta(minutes=retry.after_minutes)


def auto_retries(state: RolloutState, now: datetime) -> list[tuple[str, str, int]]:
    """The failed Steps to retry now, as (Candidate, Step, attempt); only while the rollout runs or waits at a gate."""
    if state.phase not in ACTING_PHASES:
        return []
    due = ((c, retry_due_at(state, c)) for c in state.started)
    return [
        (c, step, state.retries.get(c, {}).get(step, 0) + 1)
        for c, at in due
        if at is not None and at <= now and (step := state.seen.members[c].failed_step) is not None
    ]


def record_retry(state: RolloutState, candidate_id: str, step_name: str, attempt: int) -> None:
    """An automatic retry decided: its attempt is used whatever its outcome, so no failure is retried twice."""
    state.retries.setdefault(candidate_id, {})[step_name] = attempt


def wave_of(state: RolloutState, candidate_id: str) -> int:
    """The 1-based wave a Candidate of the rollout belongs to, by its place in the start order."""
    position = state.queue.index(candidate_id)
    return next(i for i, end in enumerate(wave_ends(state.policy.waves, len(state.queue))) if position < end) + 1


def auto_approvals(state: RolloutState) -> list[str]:
    """The rollout's Runs whose autoApprove Step awaits review and whose wave is fromWave or later; never a Step an
    operator rejected. Only while the rollout runs or waits at a gate."""
    approve = state.policy.auto_approve
    if approve is None or state.phase not in ACTING_PHASES:
        return []
    return [
        c
        for c in state.started
        if (m := state.seen.members.get(c)) is not None
        and m.status == CandidateStatus.RUNNING
        and m.review_step == approve.step
        and approve.step not in m.rejected
        and wave_of(state, c) >= approve.from_wave
    ]


def next_wake(state: RolloutState, now: datetime) -> datetime | None:
    """The next moment time alone changes a decision: an auto gate opening, a start leaving the hour's window, an
    automatic retry falling due."""
    moments: list[datetime] = []
    if state.phase is RolloutPhase.WAITING_FOR_PROMOTION:
        opens = gate_opens_at(state)
        if opens is not None:
            moments.append(opens)
    if state.phase is RolloutPhase.RUNNING and starts_left_this_hour(state, now) == 0 and state.start_times:
        moments.append(min(state.start_times) + timedelta(hours=1))
    if state.phase in ACTING_PHASES:
        moments.extend(at for c in state.started if (at := retry_due_at(state, c)) is not None and at > now)
    return min(moments) if moments else None


def observed_ids(state: RolloutState) -> list[str]:
    """What the rollout asks the read model about: its Runs not yet seen finished, and the dependencies it waits on.

    A finished Candidate (completed, or cancelled) does not change again for this rollout, so it is not asked again.
    """
    open_runs = [c for c in state.started if not _finished(state, c)]
    waiting = {d for c in state.queue if c not in state.started for d in state.policy.depends_on.get(c, [])}
    done = {c for c in waiting if _status(state, c) == CandidateStatus.COMPLETED}
    return [*open_runs, *sorted(waiting - done - set(open_runs))]


def advance(state: RolloutState, observation: RolloutObservation, now: datetime) -> list[str]:
    """Take in what the read model shows, move the rollout on (breaker, wave done, gate, completion) and
    return who to start now. Mutates `state`; the workflow then starts the Candidates and records each."""
    state.seen = RolloutObservation(
        members={**state.seen.members, **observation.members},
        running=observation.running,
        running_by_group=observation.running_by_group,
    )
    observation = state.seen
    state.start_times = [t for t in state.start_times if t > now - timedelta(hours=1)]
    if state.phase is RolloutPhase.RUNNING and breaker_tripped(state):
        failed = failed_runs(state, state.failure_baseline)
        state.phase = RolloutPhase.PAUSED
        state.paused_reason = (
            f"the breaker tripped: {len(failed)} Run(s) had a failed Step ({', '.join(failed[:5])}); "
            "fix or retry them, then resume"
        )
        note(state, EventType.ROLLOUT_PAUSED, BREAKER, now, reason=state.paused_reason)
        return []
    if state.phase in (RolloutPhase.RUNNING, RolloutPhase.WAITING_FOR_PROMOTION) and wave_done(state):
        if is_last_wave(state):
            state.phase = RolloutPhase.COMPLETED
            note(state, EventType.ROLLOUT_COMPLETED, None, now)
            return []
        if state.wave_done_at is None:
            state.wave_done_at = now
            state.phase = RolloutPhase.WAITING_FOR_PROMOTION
        opens = gate_opens_at(state)
        if opens is not None and now >= opens:
            promote(state)
            note(state, EventType.ROLLOUT_PROMOTED, AUTO_GATE, now, wave=str(state.wave + 1))
    return next_starts(state, now)


def record_start(state: RolloutState, candidate_id: str, refusal: str | None, now: datetime) -> None:
    """A Start the rollout made: it counts as open at once, so the caps hold before the read model is looked at again."""
    if refusal is not None:
        state.refused[candidate_id] = refusal
        return
    state.started.append(candidate_id)
    state.start_times.append(now)
    state.seen.members[candidate_id] = MemberProgress(status=CandidateStatus.RUNNING)
    state.seen.running += 1
    group = state.groups.get(candidate_id)
    if group is not None:
        state.seen.running_by_group[group] = state.seen.running_by_group.get(group, 0) + 1


def promote(state: RolloutState) -> None:
    """Open the gate: the next wave starts."""
    state.wave += 1
    state.wave_done_at = None
    state.wave_baseline = counted_failures(state)
    state.phase = RolloutPhase.RUNNING


def pause(state: RolloutState, actor: str) -> None:
    state.phase = RolloutPhase.PAUSED
    state.paused_reason = f"paused by {actor}"


def resume(state: RolloutState) -> None:
    """Failures so far no longer count towards the breaker; the rollout goes on where it was."""
    state.failure_baseline = counted_failures(state)
    state.paused_reason = None
    state.phase = RolloutPhase.WAITING_FOR_PROMOTION if state.wave_done_at is not None else RolloutPhase.RUNNING


def phase_refusal(state: RolloutState, action: str) -> str | None:
    """Why an operator's action does not fit the rollout's phase, or None."""
    allowed = {
        "pause": (RolloutPhase.RUNNING, RolloutPhase.WAITING_FOR_PROMOTION),
        "resume": (RolloutPhase.PAUSED,),
        "promote": (RolloutPhase.WAITING_FOR_PROMOTION,),
        "stop": (RolloutPhase.RUNNING, RolloutPhase.WAITING_FOR_PROMOTION, RolloutPhase.PAUSED),
        "edit": (RolloutPhase.RUNNING, RolloutPhase.WAITING_FOR_PROMOTION, RolloutPhase.PAUSED),
    }[action]
    if state.phase in allowed:
        return None
    return f"the rollout is {state.phase.value}; {action} needs it {' or '.join(p.value for p in allowed)}"


def status_of(state: RolloutState) -> RolloutStatus:
    counts = RolloutCounts(refused=len(state.refused))
    for candidate_id in state.queue:
        if candidate_id in state.refused:
            continue
        seen = state.seen.members.get(candidate_id)
        if candidate_id not in state.started:
            counts.queued += 1
        elif seen is None or seen.status == CandidateStatus.RUNNING:
            counts.running += 1
            counts.failed += int(bool(seen and seen.failing))
        elif seen.status == CandidateStatus.COMPLETED:
            counts.completed += 1
        else:
            counts.cancelled += 1
    members = wave_members(state)
    ends = wave_ends(state.policy.waves, len(state.queue))
    return RolloutStatus(
        state=state.phase,
        policy=state.policy,
        wave=WaveView(
            index=min(state.wave, len(ends) - 1),
            count=len(ends),
            size=len(members),
            completed=sum(1 for c in members if _status(state, c) == CandidateStatus.COMPLETED and c in state.started),
        ),
        counts=counts,
        paused_reason=state.paused_reason,
        gate_waiting=state.phase is RolloutPhase.WAITING_FOR_PROMOTION and gate_opens_at(state) is None,
        actor=state.actor,
        started_at=state.started_at,
    )


class RolloutStartRequest(WireModel):
    """Over every not-started Candidate by default, or those of a list of ids, or those matching a filter."""

    candidate_ids: Annotated[list[str], Field(max_length=20_000)] | None = None
    filter: CandidateFilter | None = None


# -- bulk operations ---------------------------------------------------------------------------------


class BulkAction(StrEnum):
    START = "start"
    CANCEL = "cancel"
    RETRY = "retry"  # retry the failed Step
    APPROVE = "approve"
    REJECT = "reject"
    MARK_MERGED = "mark_merged"
    DRIFT_CHECK = "drift_check"  # re-run a completed Candidate's dry run; changes left mark it drifted


class BulkState(StrEnum):
    RUNNING = "running"
    DONE = "done"


class BulkOutcomeKind(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"  # the action does not fit the Candidate (say, nothing failed to retry)
    FAILED = "failed"  # the action was tried and refused


class BulkOutcome(WireModel):
    candidate_id: str
    outcome: BulkOutcomeKind = BulkOutcomeKind.PENDING
    message: str | None = None


class BulkRequest(WireModel):
    """An action over a list of Candidates or every one matching a filter; `dryRun` only says what would happen."""

    action: BulkAction
    candidate_ids: Annotated[list[str], Field(max_length=20_000)] | None = None
    filter: CandidateFilter | None = None
    step_name: Annotated[str, Field(max_length=128)] | None = None
    comment: Annotated[str, Field(max_length=10_000)] | None = None
    dry_run: bool = False


class BulkOperation(WireModel):
    """A durable bulk action and each Candidate's outcome, as GET /api/bulk-operations/{opId} answers."""

    id: str
    migration_id: str
    action: BulkAction
    actor: str
    request: dict[str, object] = Field(default_factory=dict)
    state: BulkState
    created_at: datetime
    finished_at: datetime | None = None
    outcomes: list[BulkOutcome] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)

    def model_post_init(self, _: object) -> None:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.outcome.value] = counts.get(o.outcome.value, 0) + 1
        self.counts = counts


def bulk_id(op_id: str) -> str:
    """The bulk operation's workflow id: like the rollout's, it holds ':' and so is never a Run id."""
    return f"bulk:{op_id}"
