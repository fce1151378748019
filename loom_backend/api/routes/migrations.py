"""Reading Migrations and their Candidates, and their inputs (the event log is in events.py)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from loom_backend.api.deps import MigrationId, Operator, ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.domain import (
    CandidateStatus,
    CandidateView,
    ListMigrationsResponse,
    Migration,
    UpdateInputsRequest,
)

router = APIRouter(tags=["migrations"])


@router.get("/migrations", response_model=ListMigrationsResponse, responses=_errors(401, 403))
async def list_migrations(service: ServiceDep, principal: Viewer) -> Any:
    return ListMigrationsResponse(migrations=await service.all_migrations(principal))


@router.get("/migrations/{migration_id}", response_model=Migration, responses=_errors(401, 403, 404, 422))
async def get_migration(migration_id: MigrationId, service: ServiceDep, principal: Viewer) -> Any:
    return await service.get_migration(principal, migration_id)


@router.get(
    "/migrations/{migration_id}/candidates",
    response_model=list[CandidateView],
    responses=_errors(401, 403, 404, 422),
)
async def list_candidates(
    migration_id: MigrationId,
    request: Request,
    response: Response,
    service: ServiceDep,
    principal: Viewer,
    status_: Annotated[CandidateStatus | None, Query(alias="status")] = None,
    kind: Annotated[str | None, Query(max_length=128)] = None,
    q: Annotated[str | None, Query(max_length=256, description="Text in the id or metadata")] = None,
    needs_attention: Annotated[bool, Query(alias="needsAttention")] = False,
    limit: Annotated[int | None, Query(ge=1, le=10_000_000, description="All of them when absent")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Any:
    """The Candidates as a JSON array (upstream's shape), all by default; `limit`/`offset` page it, with the total
    in `X-Total-Count` and the next and previous pages in `Link`."""
    page = await service.list_candidates(
        principal,
        migration_id,
        status=status_,
        kind=kind,
        text=q,
        needs_attention=needs_attention,
        limit=limit,
        offset=offset,
    )
    response.headers["X-Total-Count"] = str(page.total)
    links = page_links(request, page.total, limit, offset)
    if links:
        response.headers["Link"] = links
    return page.candidates


def page_links(request: Request, total: int, limit: int | None, offset: int) -> str:
    """RFC 8288 links to the next and previous pages of a paged list (none when it is all on one page)."""
    if limit is None:
        return ""
    links = []
    if offset + limit < total:
        links.append((offset + limit, "next"))
    if offset > 0:
        links.append((max(offset - limit, 0), "prev"))
    return ", ".join(f'<{request.url.include_query_params(limit=limit, offset=at)}>; rel="{rel}"' for at, rel in links)


@router.get("/migrations/{migration_id}/inputs", response_model=UpdateInputsRequest, responses=_errors(401, 403, 404))
async def get_migration_inputs(migration_id: MigrationId, service: ServiceDep, principal: Viewer) -> Any:
    """The values of required inputs set for every Candidate of the Migration."""
    return UpdateInputsRequest(inputs=await service.get_migration_inputs(principal, migration_id))


@router.patch(
    "/migrations/{migration_id}/inputs",
    response_model=UpdateInputsRequest,
    responses=_errors(400, 401, 403, 404, 413, 422),
)
async def update_migration_inputs(
    migration_id: MigrationId, body: UpdateInputsRequest, service: ServiceDep, principal: Operator
) -> Any:
    """Set values for every Candidate (a Candidate's own inputs override them); an empty value removes one."""
    return UpdateInputsRequest(inputs=await service.update_migration_inputs(principal, migration_id, body.inputs))
