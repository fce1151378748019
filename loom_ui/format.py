"""Pure formatting helpers for the board: times, statuses, diffs, filter URLs. No Reflex, no I/O."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

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
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


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

    @property
    def active(self) -> bool:
        return bool(self.text or self.kind or self.attention or self.metadata)


def parse_board_query(params: Mapping[str, str]) -> BoardFilter:
    """`?q=pay&kind=service&attention=1&m.team=payments` → BoardFilter."""
    return BoardFilter(
        text=params.get("q", "").strip(),
        kind=params.get("kind", "").strip(),
        attention=params.get("attention", "") in ("1", "true", "yes"),
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
