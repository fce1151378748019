"""Needs me's rows: a Step that waits on a person, with the action the domain allows on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loom_backend.domain import CandidateStatus, StepAction, available_actions
from loom_backend.rollout import RolloutPhase
from loom_backend.service import WaitingRollout, WaitingStep
from loom_ui import format as fmt
from loom_ui.views.candidate import LeftPR

REASONS = {
    "review": ("Awaiting review", "amber", "eye"),
    "failed": ("Failed", "red", "circle-x"),
    "open_pr": ("PR open", "violet", "git-pull-request"),
    "stuck": ("Stuck", "orange", "hourglass"),
}


@dataclass
class WaitingRow:
    key: str = ""
    migration_id: str = ""
    migration_name: str = ""
    candidate_id: str = ""
    step: str = ""
    reason: str = ""
    reason_label: str = ""
    color: str = "gray"
    icon: str = "circle"
    waited: str = ""
    pr_url: str = ""
    error: str = ""
    href: str = ""
    can_approve: bool = False
    can_retry: bool = False
    can_mark_merged: bool = False
    stuck: bool = False


def waiting_row(w: WaitingStep, now: datetime) -> WaitingRow:
    label, color, icon = REASONS.get(w.reason, (w.reason, "gray", "circle"))
    # Needs me lists only Steps of running Runs.
    actions = available_actions(CandidateStatus.RUNNING, w.step.status)
    return WaitingRow(
        key=f"{w.migration_id}/{w.step.candidate_id}/{w.step.step_name}",
        migration_id=w.migration_id,
        migration_name=w.migration_name,
        candidate_id=w.step.candidate_id,
        step=w.step.step_name,
        reason=w.reason,
        reason_label=label,
        color=color,
        icon=icon,
        waited=fmt.waited_for(w.waiting_since, now),
        pr_url=w.step.pr_url or "",
        error=w.step.metadata.get("error", "") if w.reason == "failed" else "",
        href=f"/migrations/{w.migration_id}/candidates/{w.step.candidate_id}",
        can_approve=StepAction.APPROVE in actions,
        can_retry=StepAction.RETRY in actions,
        can_mark_merged=StepAction.MARK_MERGED in actions,
        stuck=w.stuck and w.reason != "stuck",  # a badge beside another reason; "stuck" says it already
    )


@dataclass
class LeftBehindRow:
    """A PR a cancelled Run left open: nothing in Loom waits on it, but someone should close or merge it."""

    key: str = ""
    migration_id: str = ""
    migration_name: str = ""
    candidate_id: str = ""
    step: str = ""
    pr_url: str = ""
    href: str = ""


def left_behind_rows(
    migration_id: str, migration_name: str, candidate_id: str, prs: list[LeftPR]
) -> list[LeftBehindRow]:
    return [
        LeftBehindRow(
            key=f"{migration_id}/{candidate_id}/{p.step}",
            migration_id=migration_id,
            migration_name=migration_name,
            candidate_id=candidate_id,
            step=p.step,
            pr_url=p.pr_url,
            href=f"/migrations/{migration_id}/candidates/{candidate_id}",
        )
        for p in prs
    ]


@dataclass
class RolloutRow:
    """A rollout that waits on an operator: paused (why, and by whom) or at a manual gate (Promote)."""

    migration_id: str = ""
    migration_name: str = ""
    label: str = ""
    reason: str = ""
    counts: str = ""
    href: str = ""
    can_promote: bool = False
    can_resume: bool = False


def rollout_row(w: WaitingRollout) -> RolloutRow:
    s = w.status
    paused = s.state is RolloutPhase.PAUSED
    wave = f"Wave {s.wave.index + 1} of {s.wave.count} completed" if s.wave and not paused else ""
    c = s.counts
    return RolloutRow(
        migration_id=w.migration_id,
        migration_name=w.migration_name,
        label="Rollout paused" if paused else "Waiting for Promote",
        reason=(s.paused_reason or "paused") if paused else (wave or "the next wave waits for an operator"),
        counts=f"{c.queued} queued · {c.running} running · {c.completed} completed · {c.failed} failed",
        href=f"/migrations/{w.migration_id}/rollout",
        can_promote=not paused,
        can_resume=paused,
    )
