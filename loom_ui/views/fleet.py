"""The board's Candidate table and failure groups: the table's view as it lives in the URL, its rows and groups.

Everything the table shows is in its URL query (`?view=table&step=bump&sort=-timeInStatus&page=2&cols=owner`), so
a reload, the back button or a shared link restores it, and a saved view is that query kept by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from pydantic import ValidationError

from loom_backend.domain import CandidateFilter, CandidateSort, CandidateView, FailureGroup
from loom_ui import format as fmt

TABLE_PAGE_SIZE = 50
MAX_COLUMNS = 6
# The table's sortable columns in order: (sort key, header).
SORTABLE = [
    ("id", "Candidate"),
    ("kind", "Kind"),
    ("step", "Step"),
    ("stepStatus", "Step status"),
    ("timeInStatus", "In status for"),
    ("pr", "PR"),
    ("lastEvent", "Last event"),
]
SHOWN_FAILURE = 160  # characters of a failure message a row shows (the whole one in its title)
STEP_STATUSES = ["in_progress", "open", "awaiting_review", "failed", "merged", "completed"]
CHECKS = [("passing", "Checks passing"), ("failing", "Checks failing"), ("pending", "Checks pending")]
REVIEWS = [("approved", "Approved"), ("changes_requested", "Changes requested"), ("pending", "Review pending")]
# TableQuery's text fields and their URL names (the API's filter names).
_URL_NAMES = {
    "q": "q",
    "step": "step",
    "step_status": "stepStatus",
    "in_status": "inStatusLongerThan",
    "pr_age": "prOlderThan",
    "checks": "checks",
    "review": "review",
    "mergeable": "mergeable",
    "failure": "failure",
    "failure_group": "failureGroup",
}


@dataclass
class TableQuery:
    """What the table shows: filters, sort, page and the chosen metadata columns."""

    q: str = ""
    step: str = ""
    step_status: str = ""
    in_status: str = ""  # a duration: "4h", "3d", or seconds
    pr_age: str = ""
    checks: str = ""
    review: str = ""
    mergeable: str = ""  # "", "true" or "false"
    failure: str = ""
    failure_group: str = ""
    stuck: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    sort: str = "id"
    page: int = 1
    cols: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        return bool(self.stuck or self.metadata or any(getattr(self, name) for name in _URL_NAMES))

    def cleared(self) -> TableQuery:
        """The same sort and columns with no filter, from the first page."""
        return TableQuery(sort=self.sort, cols=list(self.cols))


def parse_table_query(params: Mapping[str, str]) -> TableQuery:
    """The URL's query → TableQuery; what cannot be read is left at its default (the URL is anyone's to write)."""
    texts = {name: params.get(url, "").strip()[:256] for name, url in _URL_NAMES.items()}
    try:
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        page = 1
    sort = params.get("sort", "").strip() or "id"
    try:
        CandidateSort.parse(sort)
    except ValueError:
        sort = "id"
    cols = [c.strip() for c in params.get("cols", "").split(",") if c.strip()]
    return TableQuery(
        **texts,
        stuck=params.get("stuck", "") in ("1", "true", "yes"),
        metadata={
            k[len(fmt.META_PREFIX) :]: v
            for k, v in params.items()
            if k.startswith(fmt.META_PREFIX) and k != fmt.META_PREFIX and v
        },
        sort=sort,
        page=page,
        cols=list(dict.fromkeys(cols))[:MAX_COLUMNS],
    )


def table_params(t: TableQuery) -> dict[str, str]:
    """TableQuery → the URL's parameters (what a saved view keeps); the inverse of parse_table_query."""
    params = {"view": "table"}
    params.update({url: getattr(t, name) for name, url in _URL_NAMES.items() if getattr(t, name)})
    if t.stuck:
        params["stuck"] = "1"
    params.update({fmt.META_PREFIX + k: v for k, v in sorted(t.metadata.items())})
    if t.sort != "id":
        params["sort"] = t.sort
    if t.page > 1:
        params["page"] = str(t.page)
    if t.cols:
        params["cols"] = ",".join(t.cols)
    return params


def table_query(t: TableQuery) -> str:
    return "?" + urlencode(table_params(t))


def candidate_filter(t: TableQuery) -> CandidateFilter:
    """The service's filter for this query; ValueError with a sentence an operator reads when a value is wrong."""
    raw: dict[str, object] = {url: getattr(t, name) for name, url in _URL_NAMES.items() if getattr(t, name)}
    if t.stuck:
        raw["stuck"] = True
    if t.metadata:
        raw["metadata"] = t.metadata
    try:
        return CandidateFilter.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = str(e["loc"][0]) if e["loc"] else ""
            problems.append(f"{FILTER_LABELS.get(where, where)}: {e['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from None


FILTER_LABELS = {
    "q": "Text",
    "step": "Step",
    "stepStatus": "Step status",
    "inStatusLongerThan": "In status longer than",
    "prOlderThan": "PR older than",
    "checks": "Checks",
    "review": "Review",
    "mergeable": "Mergeable",
    "failure": "Failure message",
    "failureGroup": "Failure group",
}


def next_sort(current: str, column: str) -> str:
    """A click on a column's header: ascending first, then descending, then ascending again."""
    return f"-{column}" if current == column else column


def aria_sort(current: str, column: str) -> str:
    if current == column:
        return "ascending"
    if current == f"-{column}":
        return "descending"
    return "none"


def page_count(total: int, size: int = TABLE_PAGE_SIZE) -> int:
    return max(1, -(-total // size))


def range_text(page: int, total: int, size: int = TABLE_PAGE_SIZE) -> str:
    """'1\u201350 of 10,000' (an en dash); '0 of 0' when nothing matches."""
    if total <= 0:
        return "0 of 0"
    first = (page - 1) * size + 1
    return f"{first:,}\u2013{min(total, page * size):,} of {total:,}"


@dataclass
class PrMarks:
    """A PR's state in a few characters each, with words for the title and screen readers."""

    checks: str = ""
    checks_label: str = ""
    checks_color: str = "gray"
    review: str = ""
    review_color: str = "gray"
    mergeable: str = ""
    mergeable_color: str = "gray"


_CHECK_MARKS = {
    "passing": ("✓", "Checks passing", "green"),
    "failing": ("✗", "Checks failing", "red"),
    "pending": ("…", "Checks pending", "amber"),
}
_REVIEW_MARKS = {
    "approved": ("Approved", "green"),
    "changes_requested": ("Changes requested", "red"),
    "pending": ("Review pending", "amber"),
}


def pr_marks(checks: str | None, review: str | None, mergeable: bool | None) -> PrMarks:
    mark, label, color = _CHECK_MARKS.get(checks or "", ("", "", "gray"))
    review_text, review_color = _REVIEW_MARKS.get(review or "", ("", "gray"))
    return PrMarks(
        checks=mark,
        checks_label=label,
        checks_color=color,
        review=review_text,
        review_color=review_color,
        mergeable="" if mergeable is None else ("Mergeable" if mergeable else "Conflicts"),
        mergeable_color="green" if mergeable else "red",
    )


@dataclass
class RowView:
    id: str = ""
    href: str = ""
    kind: str = ""
    step: str = ""
    step_label: str = ""
    step_color: str = "gray"
    in_status: str = ""
    pr_url: str = ""
    pr_age: str = ""
    pr: PrMarks = field(default_factory=PrMarks)
    last_event: str = ""
    meta: list[str] = field(default_factory=list)
    stuck: bool = False
    failure: str = ""
    failure_full: str = ""


def clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _value(v: object) -> str:
    return str(getattr(v, "value", v)) if v is not None else ""


def row_view(migration_id: str, c: CandidateView, now: datetime, cols: list[str]) -> RowView:
    status = _value(c.current_step_status)
    return RowView(
        id=c.id,
        href=f"/migrations/{migration_id}/candidates/{c.id}",
        kind=c.kind,
        step=c.current_step or "",
        step_label=fmt.status_label(status) if c.current_step else "",
        step_color=fmt.status_color(status),
        in_status=fmt.waited_for(c.status_since, now) if c.current_step and c.status_since else "",
        pr_url=c.pr_url or "",
        pr_age=fmt.waited_for(c.pr_opened_at, now) if c.pr_url and c.pr_opened_at else "",
        pr=pr_marks(_value(c.checks), _value(c.review), c.mergeable),
        last_event=fmt.relative_time(c.last_event_at, now) if c.last_event_at else "",
        meta=[c.metadata.get(k, "") for k in cols],
        stuck=c.stuck,
        failure=clipped(c.failure_message or "", SHOWN_FAILURE),
        failure_full=c.failure_message or "",
    )


@dataclass
class ExampleLink:
    id: str = ""
    href: str = ""


@dataclass
class FailureGroupView:
    key: str = ""
    step: str = ""
    message: str = ""
    count: int = 0
    count_text: str = ""
    examples: list[ExampleLink] = field(default_factory=list)
    more: str = ""


def failure_group_view(migration_id: str, g: FailureGroup) -> FailureGroupView:
    return FailureGroupView(
        key=g.key,
        step=g.step_name,
        message=clipped(g.message, 2 * SHOWN_FAILURE) or "(no message)",
        count=g.count,
        count_text=fmt.plural(g.count, "Candidate"),
        examples=[ExampleLink(cid, f"/migrations/{migration_id}/candidates/{cid}") for cid in g.examples],
        more=f"and {g.count - len(g.examples):,} more" if g.count > len(g.examples) else "",
    )
