"""Bulk actions over a selection or a filter: an impact preview, then a durable operation whose outcomes read back."""

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from loom_backend.api.deps import MigrationId, Operator, ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.rollout import BulkOperation, BulkRequest

router = APIRouter(tags=["bulk"])


@router.post(
    "/migrations/{migration_id}/bulk",
    status_code=202,
    response_model=BulkOperation,
    responses={**_errors(400, 401, 403, 404, 413, 422, 503), 200: {"model": BulkOperation}},
)
async def bulk(migration_id: MigrationId, body: BulkRequest, service: ServiceDep, principal: Operator) -> Any:
    """202 with the operation (its id to GET); with `dryRun`, 200 with what would happen and nothing stored."""
    operation = await service.bulk(principal, migration_id, body)
    if body.dry_run:
        return JSONResponse(operation.model_dump(mode="json"), status_code=200)
    return operation


@router.get("/bulk-operations/{op_id}", response_model=BulkOperation, responses=_errors(401, 403, 404, 422))
async def get_bulk(op_id: Annotated[str, Path(max_length=64)], service: ServiceDep, principal: Viewer) -> Any:
    return await service.get_bulk(principal, op_id)
