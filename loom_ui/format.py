"""Pure formatting helpers for the board: times, statuses, diffs, filter URLs, metrics. No Reflex, no I/O."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from loom_backend.domain import Burndown, DispatchRetry, FailedStep, MetricsOverview, StepMetrics, TimelineDay

STATUS_LABELS = {
    "not_started": "Not started",
    "running": "Running",
    "completed": "Completed",
    "in_progress": "In progress",
    "open": "PR open",
    "awaiting_review": "Awaiting review",
    "merged": "Merged",
    "failed": "Failed",
    "pending": "Pending",
}

# Radix colour scales: red wants a person now, amber wants a review, green is done.
STATUS_COLORS = {
    "not_started": "gray",
    "pending": "gray",
    "running": "blue",
    "in_progress": "blue",
    "open": "violet",
    "awaiting_review": "amber",
    "merged": "green",
    "completed": "green",
    "failed": "red",
}

CANDIDATE_STATUSES = ("not_started", "running", "completed")
META_PREFIX = "m."


def status_label(status: str | None) -> str:
    if not status:
        return "Pending"
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def status_color(status: str | None) -> str:
    return STATUS_COLORS.get(status or "", "gray")


def attention_level(status: str | None) -> str:
    """'failed' and 'review' need a person; '' does not."""
    if status == "failed":
        return "failed"
    if status == "awaiting_review":
        return "review"
    return ""


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest and hours < 10 else f"{hours} h"
    return f"{hours // 24} d"


def relative_time(moment: datetime | None, now: datetime) -> str:
    """'just now', '4 min ago', '3 h ago', '2 d ago'; '—' when there is no moment."""
    if moment is None:
        return "—"
    seconds = (now - moment).total_seconds()
    if seconds < 10:
        return "just now"
    return f"{_span(seconds)} ago"


def waited_for(since: datetime | None, now: datetime) -> str:
    """How long something has waited: '45 s', '3 h 5 min', '2 d'."""
    if since is None:
        return "—"
    return _span((now - since).total_seconds())


def duration(start: datetime | None, end: datetime | None) -> str:
    """A Step's duration: '850 ms', '12.3 s', '4 min 5 s', '2 h 10 min'; '' when it has not started."""
    if start is None or end is None:
        return ""
    return _elapsed(max(0.0, (end - start).total_seconds()))


def millis(ms: int | float | None) -> str:
    """A duration the metrics give in milliseconds, read like `duration`; '—' when there is none."""
    if ms is None:
        return "—"
    return _elapsed(max(0.0, ms / 1000))


def _elapsed(seconds: float) -> str:
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def next_attempt(at: datetime, now: datetime) -> str:
    """When Loom tries the Migrator again: 'next in 40 s', 'next in 4 min'; 'retrying now' once that moment passed."""
    seconds = (at - now).total_seconds()
    return f"next in {_span(math.ceil(seconds))}" if seconds >= 1 else "retrying now"


def dispatch_retry_text(retry: DispatchRetry, now: datetime) -> str:
    """The timeline's notice for a Step whose Migrator cannot be reached yet."""
    return f"Migrator unreachable, retrying — attempt {retry.attempt}, {next_attempt(retry.next_attempt_at, now)}"


def clock_time(moment: datetime | None) -> str:
    """'2026-11-01 12:04:05 UTC'."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


@dataclass(frozen=True)
class Segment:
    status: str
    count: int
    percent: float
    color: str
    label: str


def progress_segments(counts: Mapping[str, int]) -> list[Segment]:
    """Segments of a progress bar in status order; empty statuses are left out, percents sum to 100."""
    total = sum(counts.get(s, 0) for s in CANDIDATE_STATUSES)
    if total == 0:
        return []
    colors = {"not_started": "gray", "running": "blue", "completed": "green"}
    return [
        Segment(s, counts[s], round(100 * counts[s] / total, 2), colors[s], status_label(s))
        for s in CANDIDATE_STATUSES
        if counts.get(s, 0)
    ]


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "meta", "hunk", "add", "del" or "ctx"
    text: str


def unified_diff(path: str, before: str, after: str, context: int = 3) -> list[DiffLine]:
    """A readable unified diff of one file, line by line, tagged for colouring."""
    a = before.splitlines()
    b = after.splitlines()
    lines: list[DiffLine] = []
    for raw in difflib.unified_diff(
        a,
        b,
        fromfile=f"a/{path}" if before else "/dev/null",
        tofile=f"b/{path}" if after else "/dev/null",
        n=context,
        lineterm="",
    ):
        if raw.startswith(("---", "+++")):
            kind = "meta"
        elif raw.startswith("@@"):
            kind = "hunk"
        elif raw.startswith("+"):
            kind = "add"
        elif raw.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append(DiffLine(kind, raw))
    return lines


def diff_stats(lines: list[DiffLine]) -> tuple[int, int]:
    """(lines added, lines removed)."""
    return sum(1 for d in lines if d.kind == "add"), sum(1 for d in lines if d.kind == "del")


@dataclass
class BoardFilter:
    """What the board shows, as it lives in the URL query (so a reload or a shared link keeps it)."""

    text: str = ""
    kind: str = ""
    attention: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    drifted: bool = False  # completed Candidates whose last drift check found changes

    @property
    def active(self) -> bool:
        return bool(self.text or self.kind or self.attention or self.metadata or self.drifted)


def parse_board_query(params: Mapping[str, str]) -> BoardFilter:
    """`?q=pay&kind=service&attention=1&m.team=payments` → BoardFilter."""
    return BoardFilter(
        text=params.get("q", "").strip(),
        kind=params.get("kind", "").strip(),
        attention=params.get("attention", "") in ("1", "true", "yes"),
        drifted=params.get("drifted", "") in ("1", "true", "yes"),
        metadata={
            k[len(META_PREFIX) :]: v for k, v in params.items() if k.startswith(META_PREFIX) and k != META_PREFIX and v
        },
    )


def board_query(f: BoardFilter) -> str:
    """BoardFilter → '?q=…' (or '' when nothing is filtered); the inverse of parse_board_query."""
    pairs: list[tuple[str, str]] = []
    if f.text:
        pairs.append(("q", f.text))
    if f.kind:
        pairs.append(("kind", f.kind))
    if f.attention:
        pairs.append(("attention", "1"))
    if f.drifted:
        pairs.append(("drifted", "1"))
    pairs.extend((META_PREFIX + k, v) for k, v in sorted(f.metadata.items()))
    return "?" + urlencode(pairs) if pairs else ""


def announce_curl(base_url: str) -> str:
    """The shortest curl that announces a Migration, for the empty state."""
    body = (
        '{"id":"hello-loom","name":"Hello Loom","description":"My first Migration",'
        '"steps":[{"name":"bump","migratorApp":"my-migrator"}],'
        '"candidates":[{"id":"checkout","kind":"service","metadata":{"team":"payments"}}],'
        '"migratorUrl":"http://localhost:8050"}'
    )
    return f"curl -X POST {base_url.rstrip('/')}/api/registry/announce -H 'Content-Type: application/json' -d '{body}'"


# -- history -------------------------------------------------------------------------------------

EVENT_LABELS = {
    "run_started": "Run started",
    "step_dispatched": "Step sent to the Migrator",
    "step_updated": "Migrator reported progress",
    "step_completed": "Step completed",
    "step_retried": "Step retried",
    "review_approved": "Review approved",
    "review_rejected": "Review rejected",
    "step_marked_merged": "Marked as merged",
    "inputs_updated": "Inputs edited",
    "run_completed": "Run completed",
    "run_cancelled": "Run cancelled",
    "step_stuck": "Step stuck (longer in this status than the stuck rule allows)",
    "rollout_started": "Rollout started",
    "rollout_paused": "Rollout paused",
    "rollout_resumed": "Rollout resumed",
    "rollout_promoted": "Next wave started",
    "rollout_stopped": "Rollout stopped",
    "rollout_policy_edited": "Rollout policy edited",
    "rollout_step_retried": "Step retried by the rollout (autoRetry)",
    "rollout_step_approved": "Review approved by the rollout (autoApprove)",
    "rollout_completed": "Rollout completed",
    "migration_completed": "Migration completed",
}
# What a Step's final status makes of "step_completed": a failure reads as one.
_FINISHED_AS = {"failed": "Step failed", "merged": "PR merged"}


def event_label(event_type: str, status: str | None = None) -> str:
    """The history's words for an event: 'Review approved', 'Step failed', 'Run cancelled'."""
    if event_type == "step_completed" and status in _FINISHED_AS:
        return _FINISHED_AS[status]
    return EVENT_LABELS.get(event_type, event_type.replace("_", " ").capitalize())


def event_comment(metadata: Mapping[str, str]) -> str:
    """The reviewer's comment, shown as a quote rather than as a metadata pair."""
    return metadata.get("comment", "").strip()


def event_detail(metadata: Mapping[str, str]) -> str:
    """The event's other metadata, 'key: value' pairs in key order."""
    return "; ".join(f"{k}: {v}" for k, v in sorted(metadata.items()) if k != "comment")


def showing(shown: int, total: int, noun: str) -> str:
    """'Showing 50 of 120 events'; '' when everything is shown."""
    if shown >= total:
        return ""
    return f"Showing {shown:,} of {plural(total, noun)}"


# -- metrics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    key: str
    label: str
    value: str
    hint: str = ""
    color: str = "gray"  # the Radix scale of the figure: red or amber when it wants a person


def overview_counters(o: MetricsOverview) -> list[Counter]:
    """The headline figures in reading order; the board's panel picks the Run and Step ones by key."""
    by_status = {str(k): v for k, v in o.candidates.items()}
    total = sum(by_status.values())

    def share(n: int) -> str:
        return f"{round(100 * n / total)}% of {total:,}" if total else ""

    return [
        Counter("migrations", "Migrations", f"{o.migrations:,}"),
        *(
            Counter(
                f"candidates-{s}",
                f"Candidates {status_label(s).lower()}",
                f"{by_status.get(s, 0):,}",
                share(by_status.get(s, 0)),
            )
            for s in CANDIDATE_STATUSES
        ),
        Counter("runs-started", "Runs started", f"{o.runs_started:,}"),
        Counter("runs-completed", "Runs completed", f"{o.runs_completed:,}"),
        Counter("runs-cancelled", "Runs cancelled", f"{o.runs_cancelled:,}"),
        Counter("steps-failed", "Steps failed", f"{o.steps_failed:,}", color="red" if o.steps_failed else "gray"),
        Counter(
            "reviews-waiting",
            "Reviews waiting",
            f"{o.reviews_waiting:,}",
            color="amber" if o.reviews_waiting else "gray",
        ),
        Counter(
            "stuck-steps",
            "Steps stuck",
            f"{o.stuck_steps:,}",
            "in one status far longer than usual",
            color="amber" if o.stuck_steps else "gray",
        ),
        Counter(
            "median-run",
            "Median Run duration",
            millis(o.median_run_duration_ms),
            "of completed Runs" if o.median_run_duration_ms is not None else "no Run completed yet",
        ),
    ]


def day_label(d: date) -> str:
    """'Nov 1': short enough for a chart axis."""
    return f"{d:%b} {d.day}"


def long_date(d: date) -> str:
    """'Nov 1, 2026'."""
    return f"{d:%b} {d.day}, {d.year}"


def timeline_rows(days: Iterable[TimelineDay]) -> list[dict[str, Any]]:
    """One chart row per day, oldest first."""
    return [
        {
            "day": day_label(d.date),
            "runs_started": d.runs_started,
            "runs_completed": d.runs_completed,
            "steps_completed": d.steps_completed,
            "steps_failed": d.steps_failed,
        }
        for d in days
    ]


def has_activity(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any row of a chart has a non-zero figure (else the chart shows its empty state)."""
    return any(isinstance(v, int | float) and not isinstance(v, bool) and v for r in rows for v in r.values())


# (unit, milliseconds per unit), smallest first: a chart's axis picks one for all its bars.
_DURATION_UNITS = (("ms", 1), ("s", 1000), ("min", 60_000), ("h", 3_600_000))


def duration_unit(longest_ms: int | float) -> tuple[str, int]:
    """The unit a duration chart reads in, so its longest bar stays under a few hundred of them."""
    for unit, size in reversed(_DURATION_UNITS):
        if longest_ms >= 2 * size:
            return unit, size
    return "ms", 1


def step_duration_rows(steps: Iterable[StepMetrics]) -> tuple[str, list[dict[str, Any]]]:
    """(unit, rows): p50 and p95 of each Step that completed at least once, in that unit."""
    timed = [s for s in steps if s.p50_duration_ms is not None]
    if not timed:
        return "ms", []
    unit, size = duration_unit(max(s.p95_duration_ms or s.p50_duration_ms or 0 for s in timed))
    return unit, [
        {
            "step": s.step_name,
            "p50": round((s.p50_duration_ms or 0) / size, 2),
            "p95": round((s.p95_duration_ms or s.p50_duration_ms or 0) / size, 2),
        }
        for s in timed
    ]


def burndown_rows(b: Burndown, max_rows: int = 120) -> list[dict[str, Any]]:
    """Remaining Candidates per day, then a straight projection to zero on the projected completion date.

    Days run one apart so the axis keeps time honest; a long history or a far projection is thinned
    evenly, keeping the first day, today and the completion day.
    """
    if not b.days:
        return []
    rows: list[dict[str, Any]] = [{"day": day_label(d.date), "remaining": d.remaining} for d in b.days]
    today = b.days[-1].date
    end = b.projected_completion
    if end is not None and end > today and b.remaining > 0:
        span = (end - today).days
        rows[-1]["projected"] = b.remaining
        for i in range(1, span + 1):
            rows.append(
                {"day": day_label(today + timedelta(days=i)), "projected": round(b.remaining * (1 - i / span), 1)}
            )
    if len(rows) <= max_rows:
        return rows
    step = math.ceil(len(rows) / max_rows)
    keep = set(range(0, len(rows), step)) | {len(b.days) - 1, len(rows) - 1}
    return [r for i, r in enumerate(rows) if i in keep]


PACE_WINDOW_WORDS = {24: "the last 24 h", 168: "the last 7 days"}


def pace_text(per_day: float) -> str:
    """'1.5', '216', '0.1': a pace a person reads at a glance."""
    return f"{per_day:,.0f}" if per_day >= 10 else f"{per_day:.1f}".rstrip("0").rstrip(".")


def burndown_summary(b: Burndown, today: date, now: datetime | None = None) -> str:
    """One line under a burndown: how much is left, the recent pace and which window it counts, and when that
    pace finishes (to the hour when it is within two days of `now`)."""
    if b.total == 0:
        return "No Candidates yet"
    if b.remaining == 0:
        when = f" on {long_date(b.projected_completion)}" if b.projected_completion else ""
        return f"All {plural(b.total, 'Candidate')} completed{when}"
    left = f"{b.remaining:,} of {plural(b.total, 'Candidate')} left"
    if b.projected_completion is None or not b.pace_per_day:
        return f"{left} · no Run completed in the last 7 days, so no projected completion yet"
    window = PACE_WINDOW_WORDS.get(b.pace_window_hours or 0)
    counted = f" ({plural(b.pace_completions, 'Run')} completed in {window})" if window else ""
    pace = f"at {pace_text(b.pace_per_day)} a day{counted}"
    if now is not None and b.projected_at is not None and b.projected_at - now < timedelta(days=2):
        hours = max(math.ceil((b.projected_at - now) / timedelta(hours=1)), 1)
        return f"{left} · {pace}, done by {b.projected_at:%b} {b.projected_at.day} {b.projected_at:%H:%M} UTC (in {plural(hours, 'hour')})"
    days = (b.projected_completion - today).days
    return f"{left} · {pace}, done by {long_date(b.projected_completion)} (in {plural(days, 'day')})"


STATE_SERIES = ("failed", "running", "notStarted", "completed")


def state_rows(b: Burndown, max_rows: int = 120) -> list[dict[str, Any]]:
    """The stacked burndown's rows: Candidates by state at the end of each hour or day, then a dashed projection
    of the remaining ones to zero at the projected time, in the same steps (thinned evenly past `max_rows`)."""
    if not b.states:
        return []
    step = timedelta(hours=1) if b.bucket == "hour" else timedelta(days=1)

    def label(at: datetime) -> str:
        return f"{at:%H}:00" if b.bucket == "hour" else day_label((at - step).date())

    rows: list[dict[str, Any]] = [
        {
            "t": label(p.at),
            "failed": p.failed,
            "running": p.running,
            "notStarted": p.not_started,
            "completed": p.completed,
        }
        for p in b.states
    ]
    last = b.states[-1].at
    if b.projected_at is not None and b.remaining > 0 and b.projected_at > last - step:
        steps = max(math.ceil((b.projected_at - last) / step), 1)
        rows[-1]["projected"] = b.remaining
        for i in range(1, steps + 1):
            rows.append({"t": label(last + i * step), "projected": round(b.remaining * (1 - i / steps), 1)})
    if len(rows) <= max_rows:
        return rows
    every = math.ceil(len(rows) / max_rows)
    keep = set(range(0, len(rows), every)) | {len(b.states) - 1, len(rows) - 1}
    return [r for i, r in enumerate(rows) if i in keep]


@dataclass(frozen=True)
class FailureRow:
    migration_id: str
    migration_name: str
    candidate_id: str
    href: str
    step: str
    error: str
    when: str
    clock: str


def failure_row(f: FailedStep, migration_names: Mapping[str, str], now: datetime) -> FailureRow:
    return FailureRow(
        migration_id=f.migration_id,
        migration_name=migration_names.get(f.migration_id, f.migration_id),
        candidate_id=f.candidate_id,
        href=f"/migrations/{f.migration_id}/candidates/{f.candidate_id}",
        step=f.step_name or "",
        error=f.error or "The Migrator gave no reason",
        when=relative_time(f.failed_at, now),
        clock=clock_time(f.failed_at),
    )


def cookie_value(header: str, name: str) -> str:
    """One cookie out of a Cookie request header; "" when absent. Tolerant of malformed pairs, unlike SimpleCookie."""
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return ""


def login_href(path: str, query: str = "") -> str:
    """The sign-in page, told where to come back to afterwards."""
    here = path + (f"?{query}" if query else "")
    return (
        "/login" if here in ("", "/", "/login") or here.startswith("/login?") else f"/login?{urlencode({'next': here})}"
    )
