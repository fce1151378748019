"""The Migrator contract: announce a Migration, submit re-discovered Candidates, post Step callbacks."""

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from loom_backend import errors
from loom_backend.api.deps import CurrentPrincipal, MigrationId, MigratorPrincipal, ServiceDep
from loom_backend.api.errors import _errors
from loom_backend.domain import MigrationAnnouncement, StepStatusEvent, SubmitCandidatesRequest, parse_run_id

router = APIRouter(tags=["migrators"])


@router.post("/registry/announce", responses=_errors(400, 401, 403, 413, 422))
async def announce(body: MigrationAnnouncement, principal: MigratorPrincipal, service: ServiceDep) -> dict[str, str]:
    """Register or update a Migration and its Candidates (idempotent by id); the first token to announce owns it."""
    await service.announce(principal, body)
    return {"status": "SUCCESS"}


@router.post("/migrations/{migration_id}/candidates", status_code=204, responses=_errors(401, 403, 404, 413, 422))
async def submit_candidates(
    migration_id: MigrationId,
    body: SubmitCandidatesRequest,
    principal: MigratorPrincipal,
    service: ServiceDep,
) -> Response:
    """Merge re-discovered Candidates: only not_started ones are replaced; Candidates with a Run are kept."""
    await service.submit_candidates(principal, migration_id, body.candidates)
    return Response(status_code=204)


@router.post("/event/{run_id}", status_code=202, responses=_errors(400, 401, 403, 404, 409, 413, 422))
async def step_event(
    run_id: Annotated[str, Path(max_length=260)],
    body: StepStatusEvent,
    principal: CurrentPrincipal,
    service: ServiceDep,
) -> dict[str, str]:
    """A Migrator's callback about one Step of a Run; from an operator or admin, a manual override of its status."""
    try:
        migration_id, candidate_id = parse_run_id(run_id)
    except ValueError:
        migration_id = candidate_id = ""
    if candidate_id != body.candidate_id:
        raise errors.InvalidInput(
            f"Run {run_id!r} is not a Run of Candidate {body.candidate_id!r}; post to /api/event/<callbackId>",
            field="candidateId",
        )
    await service.step_event(principal, migration_id, run_id, body)
    return {"status": "accepted"}
