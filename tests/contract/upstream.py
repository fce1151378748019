"""Upstream Loom's wire shapes (public repository tilsley/loom, `schemas/openapi.yaml`), written as our own models.

Strict on what upstream's clients rely on: required fields present, types exact, and no `null` where
upstream's schema does not allow it (an optional field is absent, never null). Like upstream's schema, they
allow extra fields, so Loom may send more. Where DOMAIN.md and upstream disagree, DOMAIN.md wins, and the
model says so: a Step names its `migratorApp` (upstream: `workerApp`; DOMAIN.md keeps "worker" for Temporal's),
and a Step result carries DOMAIN.md's `status` besides upstream's `success`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

# The default of an optional field that may be left out but not sent as null: defaults are not validated,
# so absence passes, while an explicit null is checked against the non-nullable type and fails.
ABSENT: Any = None


class Upstream(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class CandidateStatus(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    COMPLETED = "completed"


class CancelledAttempt(Upstream):
    candidateId: str
    cancelledAt: datetime


class InputDefinition(Upstream):
    name: str
    label: str


class StepDefinition(Upstream):
    name: str
    migratorApp: str  # upstream: workerApp (see the module's docstring)
    description: str = ABSENT
    type: str = ABSENT
    config: dict[str, str] = ABSENT
    instructions: str = ABSENT


class FileRef(Upstream):
    path: str
    url: str


class FileGroup(Upstream):
    name: str
    repo: str
    files: list[FileRef]


class Candidate(Upstream):
    id: str
    kind: str
    metadata: dict[str, str] = ABSENT
    files: list[FileGroup] = ABSENT
    steps: list[StepDefinition] = ABSENT
    status: CandidateStatus = ABSENT


class Migration(Upstream):
    id: str
    name: str
    description: str
    requiredInputs: list[InputDefinition] = ABSENT
    candidates: list[Candidate]
    steps: list[StepDefinition]
    createdAt: datetime
    cancelledAttempts: list[CancelledAttempt] = ABSENT


class ListMigrationsResponse(Upstream):
    migrations: list[Migration]


class StepState(Upstream):
    """A Step of a Run as GET .../steps lists it (upstream's StepResult, named StepState in its newer schema)."""

    stepName: str
    candidate: Candidate
    success: bool
    metadata: dict[str, str] = ABSENT


class CandidateStepsResponse(Upstream):
    status: Literal["running", "completed"]
    steps: list[StepState]


class FileDiff(Upstream):
    path: str
    repo: str
    before: str = ABSENT
    after: str
    status: Literal["new", "modified", "deleted"]


class StepDryRunResult(Upstream):
    stepName: str
    skipped: bool
    error: str = ABSENT
    files: list[FileDiff] = ABSENT


class DryRunResult(Upstream):
    steps: list[StepDryRunResult]


class EventResponse(Upstream):
    status: str


class DispatchStepRequest(Upstream):
    """What upstream's Migrators take on a dispatch."""

    migrationId: str
    stepName: str
    candidate: Candidate
    config: dict[str, str] = ABSENT
    callbackId: str
    eventName: str


class DryRunRequest(Upstream):
    """What upstream's Migrators take on a dry run."""

    migrationId: str
    candidate: Candidate
    steps: list[StepDefinition]


CandidateList = TypeAdapter(list[Candidate])  # GET /migrations/{id}/candidates: a JSON array of Candidate
