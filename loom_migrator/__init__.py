"""The Loom Migrator SDK: declare a Migration, discover its Candidates, handle its Steps.

Imports neither Reflex nor Temporal: a Migrator needs only FastAPI, httpx and Loom's wire models.
"""

from loom_migrator.backoff import Backoff
from loom_migrator.client import LoomClient, LoomError, LoomRejected, LoomUnreachable
from loom_migrator.context import StepContext
from loom_migrator.dryrun import DryRunContext, StepSkipped, file_diff
from loom_migrator.migrator import MANUAL_REVIEW, Migrator, StepFailed, format_instructions
from loom_migrator.server import ThreadedServer
from loom_migrator.wire import (
    Candidate,
    DispatchStepRequest,
    DryRunRequest,
    DryRunResult,
    FileDiff,
    FileDiffStatus,
    FileGroup,
    FileRef,
    InputDefinition,
    StepDefinition,
    StepDryRunResult,
    StepStatus,
    StepStatusEvent,
)

__all__ = [
    "MANUAL_REVIEW",
    "Backoff",
    "Candidate",
    "DispatchStepRequest",
    "DryRunContext",
    "DryRunRequest",
    "DryRunResult",
    "FileDiff",
    "FileDiffStatus",
    "FileGroup",
    "FileRef",
    "InputDefinition",
    "LoomClient",
    "LoomError",
    "LoomRejected",
    "LoomUnreachable",
    "Migrator",
    "StepContext",
    "StepDefinition",
    "StepDryRunResult",
    "StepFailed",
    "StepSkipped",
    "StepStatus",
    "StepStatusEvent",
    "ThreadedServer",
    "file_diff",
    "format_instructions",
]
