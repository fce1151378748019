"""The audit page's filter, as its URL carries it, and its rows: the event log of one Migration or of all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from loom_backend.domain import EventType, StepEvent
from loom_ui import format as fmt

PAGE_SIZE = 50
EVENT_TYPES = [t.value for t in EventType]


@dataclass(frozen=True)
class AuditFilter:
    """What the URL says to show: `?type=run_started&actor=ana&candidate=checkout&from=2026-11-01&to=…&page=2`.

    `from` and `to` are UTC days, both included.
    """

    event_type: str = ""
    actor: str = ""
    candidate: str = ""
    date_from: str = ""
    date_to: str = ""
    page: int = 1

    @property
    def filtered(self) -> bool:
        return any((self.event_type, self.actor, self.candidate, self.date_from, self.date_to))


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_audit_query(params: Mapping[str, str]) -> tuple[AuditFilter, list[str]]:
    """The filter the URL names, and what in it was not understood (left out of the filter, said on the page)."""
    problems: list[str] = []
    event_type = params.get("type", "").strip()
    if event_type and event_type not in EVENT_TYPES:
        problems.append(f"“{event_type}” is not an event type; showing every type")
        event_type = ""
    days = {}
    for key in ("from", "to"):
        value = params.get(key, "").strip()
        if value and _day(value) is None:
            problems.append(f"“{value}” is not a day (YYYY-MM-DD); the {key} filter is left out")
            value = ""
        days[key] = value
    if days["from"] and days["to"] and days["from"] > days["to"]:
        problems.append("The from day is after the to day; nothing can match, so both are left out")
        days = {"from": "", "to": ""}
    page = params.get("page", "1")
    return (
        AuditFilter(
            event_type=event_type,
            actor=params.get("actor", "").strip(),
            candidate=params.get("candidate", "").strip(),
            date_from=days["from"],
            date_to=days["to"],
            page=max(int(page), 1) if page.isdigit() else 1,
        ),
        problems,
    )


def checked(f: AuditFilter) -> tuple[AuditFilter, list[str]]:
    """A filter typed into the form, checked as the URL's would be, from its first page."""
    return parse_audit_query(dict(_pairs(f)))


def _pairs(f: AuditFilter) -> list[tuple[str, str]]:
    pairs = [
        ("type", f.event_type),
        ("actor", f.actor),
        ("candidate", f.candidate),
        ("from", f.date_from),
        ("to", f.date_to),
    ]
    return [(k, v) for k, v in pairs if v]


def audit_query(f: AuditFilter) -> str:
    """AuditFilter → '?type=…' ('' when nothing is filtered and it is the first page); parse_audit_query's inverse."""
    pairs = _pairs(f) + ([("page", str(f.page))] if f.page > 1 else [])
    return "?" + urlencode(pairs) if pairs else ""


def audit_href(migration_id: str) -> str:
    return f"/migrations/{quote(migration_id, safe='')}/audit" if migration_id else "/audit"


def service_filters(f: AuditFilter) -> dict[str, Any]:
    """The filter in the service's terms: the to day counts to its end (the API's `until` is exclusive)."""
    start, end = _day(f.date_from), _day(f.date_to)
    return {
        "event_type": EventType(f.event_type) if f.event_type else None,
        "actor": f.actor or None,
        "candidate_id": f.candidate or None,
        "since": datetime.combine(start, time(), UTC) if start else None,
        "until": datetime.combine(end + timedelta(days=1), time(), UTC) if end else None,
    }


def csv_href(migration_id: str, f: AuditFilter) -> str:
    """The API's CSV of every event the filter matches (not just this page), in the API's parameter names."""
    kw = service_filters(f)
    pairs = [
        ("type", f.event_type),
        ("actor", f.actor),
        ("candidateId", f.candidate),
        ("since", kw["since"].isoformat() if kw["since"] else ""),
        ("until", kw["until"].isoformat() if kw["until"] else ""),
    ]
    query = urlencode([(k, v) for k, v in pairs if v])
    path = f"/api/migrations/{quote(migration_id, safe='')}/events.csv" if migration_id else "/api/events.csv"
    return path + (f"?{query}" if query else "")


def showing(f: AuditFilter, shown: int, total: int) -> str:
    """'Events 51 to 100 of 234'; 'No events' when there are none."""
    if total == 0:
        return "No events"
    first = (f.page - 1) * PAGE_SIZE + 1
    return f"Events {first:,} to {first + shown - 1:,} of {total:,}" if shown else f"No events on page {f.page}"


@dataclass
class AuditRow:
    id: int = 0
    when: str = ""
    clock: str = ""
    migration_id: str = ""
    migration_href: str = ""
    candidate_id: str = ""
    candidate_href: str = ""
    type: str = ""
    label: str = ""
    step: str = ""
    status: str = ""
    status_color: str = "gray"
    actor: str = ""
    detail: str = ""


def audit_row(e: StepEvent, now: datetime) -> AuditRow:
    mid = quote(e.migration_id, safe="")
    return AuditRow(
        id=e.id or 0,
        when=fmt.relative_time(e.created_at, now),
        clock=fmt.clock_time(e.created_at),
        migration_id=e.migration_id,
        migration_href=f"/migrations/{mid}",
        candidate_id=e.candidate_id,
        candidate_href=f"/migrations/{mid}/candidates/{quote(e.candidate_id, safe='')}",
        type=e.event_type.value,
        label=fmt.event_label(e.event_type.value, e.status),
        step=e.step_name or "",
        status=fmt.status_label(e.status) if e.status else "",
        status_color=fmt.status_color(e.status),
        actor=e.actor or "",
        detail=fmt.event_detail(e.metadata),
    )
