"""The candidate page's rows: the Step timeline with what can be done to each Step, the history, the files."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from loom_backend.domain import (
    Candidate,
    CandidateStatus,
    DispatchRetry,
    DriftCheck,
    EventType,
    StepAction,
    StepDefinition,
    StepEvent,
    StepResult,
    StepStatus,
    available_actions,
    pr_state,
)
from loom_ui import format as fmt
from loom_ui.views.common import MetaPair
from loom_ui.views.fleet import PrMarks, pr_marks

# Metadata the page shows in its own words (the PR link, the error, the retry notice), not as badges.
RETRY_NOTICE_PREFIX = "dispatchRetry"


@dataclass
class StepView:
    number: int = 0
    name: str = ""
    description: str = ""
    type: str = ""
    status: str = ""
    status_label: str = ""
    status_color: str = "gray"
    started: str = ""
    duration: str = ""
    pr_url: str = ""
    instructions: str = ""
    error: str = ""
    retrying: str = ""
    retry_error: str = ""
    meta: list[MetaPair] = field(default_factory=list)
    can_retry: bool = False
    can_review: bool = False
    can_mark_merged: bool = False
    skipped: bool = False
    stuck: bool = False
    pr: PrMarks = field(default_factory=PrMarks)


@dataclass
class EventView:
    when: str = ""
    clock: str = ""
    label: str = ""
    step: str = ""
    status: str = ""
    status_color: str = "gray"
    actor: str = ""
    detail: str = ""
    comment: str = ""
    type: str = ""


@dataclass
class LeftPR:
    step: str = ""
    pr_url: str = ""


@dataclass
class FileView:
    path: str = ""
    url: str = ""


@dataclass
class FileGroupView:
    name: str = ""
    repo: str = ""
    files: list[FileView] = field(default_factory=list)


def fill_template(text: str, values: Mapping[str, str]) -> str:
    """`{name}` placeholders filled from `values`; unknown ones stay as written."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def step_view(
    number: int,
    name: str,
    d: StepDefinition | None,
    r: StepResult | None,
    candidate: CandidateStatus,
    now: datetime,
    values: Mapping[str, str] | None = None,
) -> StepView:
    """One Step of the timeline: its definition, what the Run recorded of it, and the actions the domain allows."""
    view = StepView(
        number=number,
        name=name,
        description=(d.description or "") if d else "",
        type=(d.type or "") if d else "",
        status_label="Not reached",
        status_color=fmt.status_color(""),
    )
    if r is None:
        return view
    meta = {
        k: v
        for k, v in r.metadata.items()
        if k not in ("prUrl", "instructions") and not k.startswith(RETRY_NOTICE_PREFIX)
    }
    error = meta.pop("error", "") if r.status == StepStatus.FAILED else ""
    state = pr_state(r.metadata)
    # The PR's state shows as marks beside its link, not again as metadata badges.
    for key, known in (("checks", state.checks), ("review", state.review), ("mergeable", state.mergeable)):
        if known is not None:
            meta.pop(key, None)
    end = r.completed_at or (now if r.status.waiting else None)
    retry = DispatchRetry.of(r)
    actions = available_actions(candidate, r.status)
    view.status = r.status.value
    view.status_label = fmt.status_label(r.status.value)
    view.status_color = fmt.status_color(r.status.value)
    view.started = fmt.clock_time(r.started_at)
    view.duration = fmt.duration(r.started_at, end)
    view.pr_url = r.pr_url or ""
    view.pr = pr_marks(
        state.checks.value if state.checks else None, state.review.value if state.review else None, state.mergeable
    )
    if r.status == StepStatus.AWAITING_REVIEW:
        # The Migrator's filled-in text when it sent one; else the definition's template, filled in here.
        template = (d.instructions or "") if d else ""
        view.instructions = r.metadata.get("instructions") or fill_template(template, values or {})
    view.error = error
    view.retrying = fmt.dispatch_retry_text(retry, now) if retry else ""
    view.retry_error = retry.error if retry else ""
    view.meta = [MetaPair(k, v) for k, v in sorted(meta.items())]
    view.can_retry = StepAction.RETRY in actions
    view.can_review = StepAction.APPROVE in actions
    view.can_mark_merged = StepAction.MARK_MERGED in actions
    return view


def step_views(
    plan: Sequence[StepDefinition],
    results: Sequence[StepResult],
    candidate: CandidateStatus,
    now: datetime,
    *,
    migration_plan: Sequence[StepDefinition] = (),
    values: Mapping[str, str] | None = None,
    stuck_step: str | None = None,
) -> list[StepView]:
    """Every Step in order, the plan's and any the Run recorded beyond it; a Step of the Migration that the
    Candidate's own plan leaves out stays in its place, marked skipped, so the numbers never shift."""
    by_name = {r.step_name: r for r in results}
    names = [s.name for s in plan]
    names += [r.step_name for r in results if r.step_name not in names]
    skipped: set[str] = set()
    for i, s in enumerate(migration_plan):
        if s.name in names:
            continue
        before = next((m.name for m in reversed(migration_plan[:i]) if m.name in names), None)
        names.insert(names.index(before) + 1 if before else 0, s.name)
        skipped.add(s.name)
    definitions = {**{s.name: s for s in migration_plan}, **{s.name: s for s in plan}}
    views = []
    for number, name in enumerate(names, start=1):
        if name in skipped:
            d = definitions[name]
            views.append(
                StepView(
                    number=number,
                    name=name,
                    description=d.description or "",
                    type=d.type or "",
                    status="skipped",
                    status_label="Skipped",
                    status_color="gray",
                    skipped=True,
                )
            )
        else:
            views.append(step_view(number, name, definitions.get(name), by_name.get(name), candidate, now, values))
    for v in views:
        v.stuck = v.name == stuck_step
    return views


def left_open_prs(events: Sequence[StepEvent]) -> list[LeftPR]:
    """The PRs a cancelled Run left open: each Step's last PR that neither merged nor completed before the cancel.

    Empty unless the newest Run was cancelled (a Run started since then owns its PRs again).
    """
    prs: dict[str, str] = {}
    cancelled = False
    for e in sorted(events, key=lambda e: (e.created_at, e.id or 0)):
        if e.event_type == EventType.RUN_STARTED:
            prs, cancelled = {}, False
        elif e.event_type == EventType.RUN_CANCELLED:
            cancelled = True
        elif e.step_name and not cancelled:
            if e.metadata.get("prUrl"):
                prs[e.step_name] = e.metadata["prUrl"]
            if e.status in (StepStatus.MERGED.value, StepStatus.COMPLETED.value):
                prs.pop(e.step_name, None)
    return [LeftPR(step, url) for step, url in prs.items()] if cancelled else []


def event_view(e: StepEvent, now: datetime) -> EventView:
    return EventView(
        when=fmt.relative_time(e.created_at, now),
        clock=fmt.clock_time(e.created_at),
        label=fmt.event_label(e.event_type.value, e.status),
        step=e.step_name or "",
        status=fmt.status_label(e.status) if e.status else "",
        status_color=fmt.status_color(e.status),
        actor=e.actor or "",
        detail=fmt.event_detail(e.metadata),
        comment=fmt.event_comment(e.metadata),
        type=e.event_type.value,
    )


def file_groups(candidate: Candidate) -> list[FileGroupView]:
    return [FileGroupView(g.name, g.repo, [FileView(f.path, f.url) for f in g.files]) for g in candidate.files]


def drift_summary(check: DriftCheck, now: datetime) -> str:
    """'Checked 3 min ago by ana: the dry run still changes 2 files.'"""
    said = (
        f"the dry run still changes {fmt.plural(check.changed_files, 'file')}"
        if check.drifted
        else "the dry run changes nothing: the change landed"
    )
    return f"Checked {fmt.relative_time(check.checked_at, now)} by {check.actor}: {said}."
