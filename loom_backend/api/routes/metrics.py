"""Read-only figures from the event log and the read model, and the Candidates as CSV."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from loom_backend.api.csv_export import csv_response
from loom_backend.api.deps import ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.domain import Burndown, FailureList, MetricsOverview, MetricsTimeline, StepMetricsResponse
from loom_backend.service import MAX_FAILURES, MAX_TIMELINE_DAYS

router = APIRouter(responses=_errors(401, 403, 404, 422))
MigrationFilter = Annotated[str | None, Query(alias="migrationId", max_length=128)]


@router.get("/metrics/overview", tags=["metrics"], response_model=MetricsOverview)
async def overview(service: ServiceDep, principal: Viewer, migration_id: MigrationFilter = None) -> Any:
    return await service.metrics_overview(principal, migration_id)


@router.get("/metrics/steps", tags=["metrics"], response_model=StepMetricsResponse)
async def steps(service: ServiceDep, principal: Viewer, migration_id: MigrationFilter = None) -> Any:
    return await service.step_metrics(principal, migration_id)


@router.get("/metrics/timeline", tags=["metrics"], response_model=MetricsTimeline)
async def timeline(
    service: ServiceDep,
    principal: Viewer,
    days: Annotated[int, Query(ge=1, le=MAX_TIMELINE_DAYS)] = 30,
    migration_id: MigrationFilter = None,
) -> Any:
    return await service.metrics_timeline(principal, days, migration_id)


@router.get("/metrics/failures", tags=["metrics"], response_model=FailureList)
async def failures(
    service: ServiceDep,
    principal: Viewer,
    limit: Annotated[int, Query(ge=1, le=MAX_FAILURES)] = 50,
    migration_id: MigrationFilter = None,
) -> Any:
    return await service.recent_failures(principal, limit, migration_id)


@router.get("/metrics/burndown", tags=["metrics"], response_model=Burndown)
async def burndown(service: ServiceDep, principal: Viewer, migration_id: MigrationFilter = None) -> Any:
    return await service.burndown(principal, migration_id)


@router.get("/migrations/{migration_id}/candidates.csv", tags=["migrations"], response_class=StreamingResponse)
async def candidates_csv(migration_id: str, service: ServiceDep, principal: Viewer) -> StreamingResponse:
    """Every Candidate with its current Step, PR link and metadata, streamed as CSV."""
    rows = service.export_candidates(principal, migration_id)
    header = await anext(rows)  # an unknown Migration answers 404 here, before the response starts
    return csv_response(header, rows, f"{migration_id}-candidates.csv")
