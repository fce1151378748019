"""Reading Migrations, their Candidates and their event log."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from loom_backend.api.deps import MigrationId, Operator, ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.domain import (
    FAILURE_GROUP_KEY,
    SORT_PATTERN,
    CandidateFilter,
    CandidateSort,
    CandidateStatus,
    CandidateView,
    ChecksState,
    EventPage,
    EventType,
    FailureGroups,
    ListMigrationsResponse,
    Migration,
    ReviewState,
    Seconds,
    StepStatus,
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
    metadata: Annotated[
        list[str] | None, Query(description="key:value, repeatable; every one must match", max_length=50)
    ] = None,
    step: Annotated[str | None, Query(max_length=128, description="The current Step's name")] = None,
    step_status: Annotated[StepStatus | None, Query(alias="stepStatus")] = None,
    in_status_longer_than: Annotated[
        Seconds | None,
        Query(alias="inStatusLongerThan", description="Seconds, or a text like 30m, 4h, 3d"),
    ] = None,
    pr_older_than: Annotated[
        Seconds | None, Query(alias="prOlderThan", description="Seconds, or a text like 30m, 4h, 3d")
    ] = None,
    checks: ChecksState | None = None,
    review: ReviewState | None = None,
    mergeable: bool | None = None,
    failure: Annotated[str | None, Query(max_length=256, description="Text in the failure message")] = None,
    failure_group: Annotated[
        str | None, Query(alias="failureGroup", pattern=FAILURE_GROUP_KEY.pattern, description="From /failure-groups")
    ] = None,
    stuck: bool | None = None,
    sort: Annotated[
        str | None,
        Query(
            pattern=SORT_PATTERN,
            description="id, kind, step, stepStatus, timeInStatus, lastEvent, pr or metadata.<key>; '-' first for "
            "descending; ties by id",
        ),
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000_000, description="All of them when absent")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Any:
    """The Candidates as a JSON array (upstream's shape), all by default; `limit`/`offset` page it, with the total
    in `X-Total-Count` and the next and previous pages in `Link`. Filters combine with AND (see CandidateFilter)."""
    where = CandidateFilter(
        status=status_,
        kind=kind,
        q=q,
        needs_attention=needs_attention,
        metadata=metadata_pairs(metadata or []),
        step=step,
        step_status=step_status,
        in_status_longer_than=in_status_longer_than,
        pr_older_than=pr_older_than,
        checks=checks,
        review=review,
        mergeable=mergeable,
        failure=failure,
        failure_group=failure_group,
        stuck=stuck,
    )
    page = await service.list_candidates(
        principal,
        migration_id,
        where,
        sort=CandidateSort.parse(sort) if sort else None,
        limit=limit,
        offset=offset,
    )
    response.headers["X-Total-Count"] = str(page.total)
    links = page_links(request, page.total, limit, offset)
    if links:
        response.headers["Link"] = links
    return page.candidates


def metadata_pairs(pairs: list[str]) -> dict[str, str]:
    """`metadata=team:payments` query values as a map; one without a ':' is a 422 naming the parameter."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, colon, value = pair.partition(":")
        if not colon or not key:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "metadata"),
                        "type": "value_error",
                        "msg": f"metadata filters are key:value; got {pair[:100]!r}",
                        "input": pair,
                    }
                ]
            )
        found[key] = value
    return found


@router.get(
    "/migrations/{migration_id}/failure-groups",
    response_model=FailureGroups,
    responses=_errors(401, 403, 404, 422),
)
async def failure_groups(migration_id: MigrationId, service: ServiceDep, principal: Viewer) -> Any:
    """Failed Steps of Runs in progress by Step and normalised message, largest first; retry a group with
    POST /bulk-operations {"action": "retry", "filter": {"failureGroup": key}}."""
    return await service.failure_groups(principal, migration_id)


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


@router.get("/migrations/{migration_id}/events", response_model=EventPage, responses=_errors(401, 403, 404, 422))
async def list_events(
    migration_id: MigrationId,
    service: ServiceDep,
    principal: Viewer,
    candidate_id: Annotated[str | None, Query(alias="candidateId", max_length=128)] = None,
    event_type: Annotated[EventType | None, Query(alias="type")] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Any:
    return await service.list_events(
        principal,
        migration_id,
        candidate_id=candidate_id,
        event_type=event_type,
        actor=actor,
        limit=limit,
        offset=offset,
    )


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
