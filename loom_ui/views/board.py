"""The board's rows: a card per Candidate, a column per Candidate status, the Migration's plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from loom_backend.domain import CandidatePage, CandidateStatus, CandidateView, Migration
from loom_ui import format as fmt
from loom_ui.views.common import MetaPair

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


def plan_lines(migration: Migration) -> list[StepLine]:
    return [StepLine(i + 1, s.name, s.description or "", s.type or "") for i, s in enumerate(migration.steps)]
