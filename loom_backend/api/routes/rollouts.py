"""A Migration's rollout: its policy, starting it over a selection, pause / resume / promote / stop, its status."""

from typing import Any, Literal

from fastapi import APIRouter

from loom_backend.api.deps import MigrationId, Operator, ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.rollout import RolloutPolicy, RolloutStartRequest, RolloutStatus

router = APIRouter(tags=["rollout"])
ROLLOUT_PATH = "/migrations/{migration_id}/rollout"
ERRORS = _errors(400, 401, 403, 404, 409, 413, 422, 503)


@router.put(ROLLOUT_PATH, response_model=RolloutPolicy, responses=ERRORS)
async def set_policy(migration_id: MigrationId, body: RolloutPolicy, service: ServiceDep, principal: Operator) -> Any:
    return await service.set_rollout_policy(principal, migration_id, body)


@router.get(ROLLOUT_PATH, response_model=RolloutStatus, responses=_errors(401, 403, 404, 422, 503))
async def status(migration_id: MigrationId, service: ServiceDep, principal: Viewer) -> Any:
    return await service.rollout_status(principal, migration_id)


@router.post(f"{ROLLOUT_PATH}/start", status_code=202, response_model=RolloutStatus, responses=ERRORS)
async def start(
    migration_id: MigrationId, service: ServiceDep, principal: Operator, body: RolloutStartRequest | None = None
) -> Any:
    return await service.start_rollout(principal, migration_id, body or RolloutStartRequest())


@router.post(f"{ROLLOUT_PATH}/{{action}}", status_code=202, responses=ERRORS)
async def act(
    migration_id: MigrationId,
    action: Literal["pause", "resume", "promote", "stop"],
    service: ServiceDep,
    principal: Operator,
) -> dict[str, str]:
    await service.rollout_action(principal, migration_id, action)
    return {"status": "accepted"}
