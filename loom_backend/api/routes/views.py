"""Saved table views of a Migration's board: its filters, sort and columns kept by name."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from loom_backend.api.deps import MigrationId, Operator, ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.domain import MAX_VIEW_NAME_LENGTH, SavedView, SavedViewList, SaveViewRequest

router = APIRouter(tags=["views"])
# One more than the limit: a longer name reaches the service, whose 400 says what the limit is.
ViewName = Annotated[str, Path(max_length=MAX_VIEW_NAME_LENGTH + 1)]


@router.get("/migrations/{migration_id}/views", response_model=SavedViewList, responses=_errors(401, 403, 404, 422))
async def list_views(migration_id: MigrationId, service: ServiceDep, principal: Viewer) -> Any:
    return SavedViewList(views=await service.list_views(principal, migration_id))


@router.get("/migrations/{migration_id}/views/{name}", response_model=SavedView, responses=_errors(401, 403, 404, 422))
async def get_view(migration_id: MigrationId, name: ViewName, service: ServiceDep, principal: Viewer) -> Any:
    return await service.get_view(principal, migration_id, name)


@router.put(
    "/migrations/{migration_id}/views/{name}",
    response_model=SavedView,
    responses=_errors(400, 401, 403, 404, 413, 422),
)
async def put_view(
    migration_id: MigrationId, name: ViewName, body: SaveViewRequest, service: ServiceDep, principal: Operator
) -> Any:
    """Save (or replace) the view; `params` are the board's URL query parameters: {"view": "table", "sort": "-pr"}."""
    return await service.save_view(principal, migration_id, name, body.params)


@router.delete("/migrations/{migration_id}/views/{name}", status_code=204, responses=_errors(401, 403, 404, 422))
async def delete_view(migration_id: MigrationId, name: ViewName, service: ServiceDep, principal: Operator) -> Response:
    await service.delete_view(principal, migration_id, name)
    return Response(status_code=204)
