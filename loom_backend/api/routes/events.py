"""The audit trail: the event log of one Migration or of all, filtered, as pages of JSON or as one CSV."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from loom_backend.api.csv_export import csv_response
from loom_backend.api.deps import MigrationId, ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.domain import EventPage, EventType

router = APIRouter(tags=["events"], responses=_errors(401, 403, 404, 422))

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


@dataclass(frozen=True)
class EventFilters:
    """What every audit route narrows the log by; `since` is inclusive and `until` exclusive."""

    candidate_id: str | None
    event_type: EventType | None
    actor: str | None
    since: datetime | None
    until: datetime | None

    def kwargs(self) -> dict[str, Any]:
        return {
            "candidate_id": self.candidate_id,
            "event_type": self.event_type,
            "actor": self.actor,
            "since": self.since,
            "until": self.until,
        }


async def event_filters(
    candidate_id: Annotated[str | None, Query(alias="candidateId", max_length=128)] = None,
    event_type: Annotated[EventType | None, Query(alias="type")] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; events at or after it (UTC when no offset)")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; events before it (UTC when no offset)")] = None,
) -> EventFilters:
    if since is not None and until is not None and _utc(since) >= _utc(until):
        raise RequestValidationError(
            [{"loc": ("query", "until"), "type": "value_error", "msg": "until must be later than since"}]
        )
    return EventFilters(candidate_id, event_type, actor, since, until)


def _utc(value: datetime) -> datetime:
    """Comparable whether or not the caller gave an offset (none means UTC, as the store reads it)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Filters = Annotated[EventFilters, Depends(event_filters)]
MigrationFilter = Annotated[str | None, Query(alias="migrationId", max_length=128)]


@router.get("/migrations/{migration_id}/events", response_model=EventPage)
async def migration_events(
    migration_id: MigrationId,
    filters: Filters,
    service: ServiceDep,
    principal: Viewer,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """The Migration's event log, newest first, a page at a time."""
    return await service.list_events(principal, migration_id, **filters.kwargs(), limit=limit, offset=offset)


@router.get("/migrations/{migration_id}/events.csv", response_class=StreamingResponse)
async def migration_events_csv(
    migration_id: MigrationId, filters: Filters, service: ServiceDep, principal: Viewer
) -> StreamingResponse:
    """Every matching event of the Migration, newest first, streamed as CSV."""
    rows = service.export_events(principal, migration_id, **filters.kwargs())
    header = await anext(rows)  # an unknown Migration answers 404 here, before the response starts
    return csv_response(header, rows, f"{migration_id}-events.csv")


@router.get("/events", response_model=EventPage)
async def all_events(
    filters: Filters,
    service: ServiceDep,
    principal: Viewer,
    migration_id: MigrationFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """The event log across every Migration (or the one `migrationId` names), newest first."""
    return await service.list_events(principal, migration_id, **filters.kwargs(), limit=limit, offset=offset)


@router.get("/events.csv", response_class=StreamingResponse)
async def all_events_csv(
    filters: Filters, service: ServiceDep, principal: Viewer, migration_id: MigrationFilter = None
) -> StreamingResponse:
    """Every matching event across Migrations, newest first, streamed as CSV."""
    rows = service.export_events(principal, migration_id, **filters.kwargs())
    header = await anext(rows)
    return csv_response(header, rows, f"{migration_id or 'loom'}-events.csv")
