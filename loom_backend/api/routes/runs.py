"""Driving Runs: start, cancel, retry, review, mark merged, edit inputs, read Steps, preview (dry run)."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from loom_backend.api.deps import CandidateId, MigrationId, Operator, ServiceDep, StepName, Viewer
from loom_backend.api.errors import _errors
from loom_backend.domain import (
    CandidateStepsResponse,
    DryRunCandidateRequest,
    DryRunResult,
    RetryStepRequest,
    ReviewRequest,
    StartRequest,
    UpdateInputsRequest,
)

router = APIRouter(tags=["runs"])
RUN_PATH = "/migrations/{migration_id}/candidates/{candidate_id}"
ACTION_ERRORS = _errors(400, 401, 403, 404, 409, 413, 422)


@router.post(f"{RUN_PATH}/start", status_code=202, responses=ACTION_ERRORS)
async def start(
    migration_id: MigrationId,
    candidate_id: CandidateId,
    service: ServiceDep,
    principal: Operator,
    body: StartRequest | None = None,
) -> dict[str, str]:
    await service.start_run(principal, migration_id, candidate_id, (body or StartRequest()).inputs)
    return {"status": "started"}


@router.post(f"{RUN_PATH}/cancel", status_code=204, responses=ACTION_ERRORS)
async def cancel(
    migration_id: MigrationId, candidate_id: CandidateId, service: ServiceDep, principal: Operator
) -> Response:
    await service.cancel_run(principal, migration_id, candidate_id)
    return Response(status_code=204)


@router.post(f"{RUN_PATH}/retry-step", status_code=202, responses=ACTION_ERRORS)
async def retry_step(
    migration_id: MigrationId,
    candidate_id: CandidateId,
    body: RetryStepRequest,
    service: ServiceDep,
    principal: Operator,
) -> dict[str, str]:
    await service.retry_step(principal, migration_id, candidate_id, body.step_name)
    return {"status": "accepted"}


@router.post(f"{RUN_PATH}/steps/{{step_name}}/approve", status_code=202, responses=ACTION_ERRORS)
async def approve(
    migration_id: MigrationId,
    candidate_id: CandidateId,
    step_name: StepName,
    service: ServiceDep,
    principal: Operator,
    body: ReviewRequest | None = None,
) -> dict[str, str]:
    await service.review_step(principal, migration_id, candidate_id, step_name, True, (body or ReviewRequest()).comment)
    return {"status": "accepted"}


@router.post(f"{RUN_PATH}/steps/{{step_name}}/reject", status_code=202, responses=ACTION_ERRORS)
async def reject(
    migration_id: MigrationId,
    candidate_id: CandidateId,
    step_name: StepName,
    service: ServiceDep,
    principal: Operator,
    body: ReviewRequest | None = None,
) -> dict[str, str]:
    await service.review_step(
        principal, migration_id, candidate_id, step_name, False, (body or ReviewRequest()).comment
    )
    return {"status": "accepted"}


@router.post(f"{RUN_PATH}/steps/{{step_name}}/mark-merged", status_code=202, responses=ACTION_ERRORS)
async def mark_merged(
    migration_id: MigrationId,
    candidate_id: CandidateId,
    step_name: StepName,
    service: ServiceDep,
    principal: Operator,
) -> dict[str, str]:
    await service.mark_merged(principal, migration_id, candidate_id, step_name)
    return {"status": "accepted"}


@router.patch(f"{RUN_PATH}/inputs", status_code=204, responses=ACTION_ERRORS)
async def update_inputs(
    migration_id: MigrationId,
    candidate_id: CandidateId,
    body: UpdateInputsRequest,
    service: ServiceDep,
    principal: Operator,
) -> Response:
    await service.update_inputs(principal, migration_id, candidate_id, body.inputs)
    return Response(status_code=204)


@router.get(f"{RUN_PATH}/steps", response_model=CandidateStepsResponse, responses=_errors(401, 403, 404, 422))
async def candidate_steps(
    migration_id: MigrationId, candidate_id: CandidateId, service: ServiceDep, principal: Viewer
) -> Any:
    return await service.candidate_steps(principal, migration_id, candidate_id)


@router.post(
    "/migrations/{migration_id}/dry-run",
    response_model=DryRunResult,
    responses=_errors(400, 401, 403, 404, 413, 422, 502),
)
async def dry_run(
    migration_id: MigrationId, body: DryRunCandidateRequest, service: ServiceDep, principal: Viewer
) -> Any:
    return await service.dry_run(principal, migration_id, body)
