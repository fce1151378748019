"""The board's rows: a card per Candidate, a column per Candidate status, the Migration's plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from loom_backend.domain import CandidatePage, CandidateStatus, CandidateView, Migration
from loom_backend.rollout import RolloutPhase, RolloutStatus
from loom_ui import format as fmt
from loom_ui.views.common import MetaPair
from loom_ui.views.fleet import PrMarks, pr_marks

PAGE_SIZE = 50
COLUMNS = [
    (CandidateStatus.NOT_STARTED, "Not started"),
    (CandidateStatus.RUNNING, "Running"),
    (CandidateStatus.COMPLETED, "Completed"),
]
SHOWN_METADATA = 3


@dataclass
class CardView:
    id: str = ""
    kind: str = ""
    href: str = ""
    status: str = ""
    meta: list[MetaPair] = field(default_factory=list)
    step: str = ""
    step_label: str = ""
    step_color: str = "gray"
    pr_url: str = ""
    attention: str = ""
    retrying: str = ""
    selectable: bool = False
    drifted: bool = False  # completed, but its dry run still shows changes
    stuck: bool = False
    pr: PrMarks = field(default_factory=PrMarks)


@dataclass
class ColumnView:
    status: str = ""
    title: str = ""
    total: int = 0
    total_text: str = "0"
    cards: list[CardView] = field(default_factory=list)
    more: int = 0


@dataclass
class StepLine:
    number: int = 0
    name: str = ""
    description: str = ""
    type: str = ""


def card_view(migration_id: str, c: CandidateView, now: datetime) -> CardView:
    status = c.current_step_status.value if c.current_step_status else ""
    retry = c.dispatch_retry
    return CardView(
        id=c.id,
        kind=c.kind,
        href=f"/migrations/{migration_id}/candidates/{c.id}",
        status=c.status.value,
        meta=[MetaPair(k, v) for k, v in list(c.metadata.items())[:SHOWN_METADATA]],
        step=c.current_step or "",
        step_label=fmt.status_label(status) if c.current_step else "",
        step_color=fmt.status_color(status),
        pr_url=c.pr_url or "",
        attention=fmt.attention_level(status) if c.needs_attention else "",
        retrying=f"{fmt.dispatch_retry_text(retry, now)}: {retry.error}" if retry else "",
        selectable=c.status == CandidateStatus.NOT_STARTED,
        drifted=bool(c.drifted),
        stuck=c.stuck,
        pr=pr_marks(c.checks.value if c.checks else None, c.review.value if c.review else None, c.mergeable),
    )


def column_view(
    migration_id: str, status: CandidateStatus, title: str, page: CandidatePage, now: datetime
) -> ColumnView:
    """One column: the cards shown, the exact total, and how many more one "Show more" adds."""
    return ColumnView(
        status=status.value,
        title=title,
        total=page.total,
        total_text=f"{page.total:,}",
        cards=[card_view(migration_id, c, now) for c in page.candidates],
        more=min(PAGE_SIZE, max(0, page.total - len(page.candidates))),
    )


# The views of the pages read last, by page: tabs that share a read (`LoomService.sharing_reads`) share its view,
# built once per change, not once per tab. Views are never mutated (pages replace them), so sharing is safe.
_SHARED_COLUMNS: dict[int, tuple[CandidatePage, ColumnView]] = {}
MAX_SHARED_COLUMNS = 64


def shared_column_view(
    migration_id: str, status: CandidateStatus, title: str, page: CandidatePage, now: datetime
) -> ColumnView:
    """`column_view` of this very page object, built by the first tab that asks (at its `now`)."""
    hit = _SHARED_COLUMNS.get(id(page))
    if hit is not None and hit[0] is page:
        return hit[1]
    view = column_view(migration_id, status, title, page, now)
    if len(_SHARED_COLUMNS) >= MAX_SHARED_COLUMNS:
        _SHARED_COLUMNS.clear()
    _SHARED_COLUMNS[id(page)] = (page, view)
    return view


def plan_lines(migration: Migration) -> list[StepLine]:
    return [StepLine(i + 1, s.name, s.description or "", s.type or "") for i, s in enumerate(migration.steps)]


@dataclass
class RolloutView:
    """The board's rollout panel: hidden while the Migration has never rolled out."""

    shown: bool = False
    state: str = ""
    state_label: str = ""
    color: str = "gray"
    policy: str = ""
    wave: str = ""
    counts: str = ""
    reason: str = ""
    can_pause: bool = False
    can_resume: bool = False
    can_promote: bool = False
    can_stop: bool = False


_ROLLOUT_LOOK = {
    RolloutPhase.RUNNING: ("Rolling out", "blue"),
    RolloutPhase.WAITING_FOR_PROMOTION: ("Waiting for Promote", "amber"),
    RolloutPhase.PAUSED: ("Paused", "red"),
    RolloutPhase.COMPLETED: ("Rollout completed", "green"),
    RolloutPhase.STOPPED: ("Rollout stopped", "gray"),
}


def rollout_view(status: RolloutStatus) -> RolloutView:
    if status.state is RolloutPhase.IDLE or status.policy is None:
        return RolloutView()
    p = status.policy
    parts = [f"at most {p.max_running} running"]
    if p.max_running_per_group:
        parts.append(f"{p.max_running_per_group.max} per {p.max_running_per_group.key}")
    if p.starts_per_hour:
        parts.append(f"{p.starts_per_hour} starts an hour")
    if p.waves:
        gate = f"auto gate after {p.soak_minutes:g} min" if p.gate.value == "auto" else "manual gate"
        parts.append(f"waves {', '.join(str(w) for w in p.waves)} ({gate})")
    if p.pause_after_failures:
        parts.append(f"pauses after {p.pause_after_failures} failed")
    c = status.counts
    label, color = _ROLLOUT_LOOK[status.state]
    wave = status.wave
    waiting = status.state is RolloutPhase.WAITING_FOR_PROMOTION
    return RolloutView(
        shown=True,
        state=status.state.value,
        state_label=label,
        color=color,
        policy=" · ".join(parts),
        wave=f"Wave {wave.index + 1} of {wave.count}: {wave.completed} of {wave.size} completed" if wave else "",
        counts=f"{c.queued} queued · {c.running} running · {c.completed} completed · {c.failed} failed",
        reason=status.paused_reason or ("an operator must Promote the next wave" if status.gate_waiting else ""),
        can_pause=status.state in (RolloutPhase.RUNNING, RolloutPhase.WAITING_FOR_PROMOTION),
        can_resume=status.state is RolloutPhase.PAUSED,
        can_promote=waiting,
        can_stop=not status.state.over,
    )
