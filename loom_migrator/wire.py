"""Loom's wire models (camelCase JSON) and run ids: what Loom and a Migrator send each other, defined once.

The Migrator SDK's own module, so a Migrator needs none of Loom's server; Loom imports them from here
(loom_backend.domain re-exports them). Pure: no I/O.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
_SLUG = re.compile(SLUG_PATTERN)
RUN_ID_SEPARATOR = "__"
MAX_CANDIDATES_PER_REQUEST = 20_000
# What one Candidate may carry, so no single one makes the Migration's pages megabytes (see the README's API section).
MAX_METADATA_KEYS = 100
MAX_METADATA_KEY_LENGTH = 128
MAX_METADATA_VALUE_LENGTH = 4096
MAX_FILE_GROUPS = 100
MAX_FILES = 1000  # in all of a Candidate's file groups
MAX_CANDIDATE_STEPS = 100


def _check_slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            "must be a slug: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return value


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
        raise ValueError("must be an http:// or https:// URL")
    if "?" in value or "#" in value:
        raise ValueError(
            "must not have a query string or a fragment: Loom adds /dispatch-step and /dry-run to its path"
        )
    return value.rstrip("/")


def _nul_free(value: Any) -> bool:
    """No NUL character in a string, nor in the strings of a list or dict (nested models check themselves)."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_nul_free(k) and _nul_free(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_nul_free(v) for v in value)
    return True


def _check_migration_id(value: str) -> str:
    """A Run id is '{migrationId}__{candidateId}', split at its first '__': the Migration's part must hold none."""
    if RUN_ID_SEPARATOR in value or value.endswith("_"):
        raise ValueError(
            f"must not contain {RUN_ID_SEPARATOR!r} nor end with '_': a Run id is "
            f"'<migrationId>{RUN_ID_SEPARATOR}<candidateId>', so the Migration's id must end where "
            f"the first {RUN_ID_SEPARATOR!r} begins (use '-' instead)"
        )
    return value


Slug = Annotated[str, AfterValidator(_check_slug)]
MigrationSlug = Annotated[str, AfterValidator(_check_slug), AfterValidator(_check_migration_id)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
ShortText = Annotated[str, Field(max_length=10_000)]
StringMap = dict[str, str]
# A Candidate's metadata and an operator's inputs (which a Step sees merged into it).
Metadata = Annotated[
    dict[
        Annotated[str, Field(max_length=MAX_METADATA_KEY_LENGTH)],
        Annotated[str, Field(max_length=MAX_METADATA_VALUE_LENGTH)],
    ],
    Field(max_length=MAX_METADATA_KEYS),
]


def _is_none(value: object) -> bool:
    return value is None


def absent_when_none() -> Any:
    """An optional field left out of the JSON when None: upstream's schema has it non-nullable."""
    return Field(default=None, exclude_if=_is_none)


def run_id(migration_id: str, candidate_id: str) -> str:
    """The Run of a Candidate has a stable id: each Candidate runs at most once per Migration."""
    return f"{migration_id}{RUN_ID_SEPARATOR}{candidate_id}"


def parse_run_id(the_run: str) -> tuple[str, str]:
    """(migration id, candidate id) of a Run id, split at the first separator; ValueError when malformed.

    Unambiguous because a Migration id holds no separator and does not end with '_' (MigrationSlug).
    """
    migration_id, separator, candidate_id = the_run.partition(RUN_ID_SEPARATOR)
    if not separator or not migration_id or not candidate_id:
        raise ValueError(f"{the_run!r} is not a Run id: expected '<migrationId>{RUN_ID_SEPARATOR}<candidateId>'")
    return migration_id, candidate_id


class CandidateStatus(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    COMPLETED = "completed"


class StepStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    OPEN = "open"
    AWAITING_REVIEW = "awaiting_review"
    MERGED = "merged"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def succeeded(self) -> bool:
        return self in SUCCEEDED_STEP_STATUSES

    @property
    def waiting(self) -> bool:
        """Intermediate statuses: the Run keeps waiting for the next callback."""
        return self in (StepStatus.IN_PROGRESS, StepStatus.OPEN, StepStatus.AWAITING_REVIEW)


# Older migrators speak the upstream protocol's words for the same states.
LEGACY_STEP_STATUSES = {"pending": StepStatus.OPEN, "succeeded": StepStatus.COMPLETED}
CALLBACK_STEP_STATUSES = frozenset(StepStatus) - {StepStatus.IN_PROGRESS}

SUCCEEDED_STEP_STATUSES = frozenset({StepStatus.MERGED, StepStatus.COMPLETED})


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are ignored for forward compatibility."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
        serialize_by_alias=True,
    )

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL cannot store a NUL character, and no name or text needs one: refused in every field (422)."""
        if not _nul_free(value):
            raise ValueError("must not contain NUL characters (\\x00)")
        return value


class InputDefinition(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    label: Annotated[str, Field(min_length=1, max_length=256)]
    description: ShortText | None = None


class StepDefinition(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    migrator_app: Annotated[str, Field(min_length=1, max_length=128)]
    description: ShortText | None = absent_when_none()
    type: Annotated[str, Field(max_length=128)] | None = absent_when_none()
    config: StringMap = Field(default_factory=dict)
    instructions: ShortText | None = absent_when_none()

    @property
    def is_manual_review(self) -> bool:
        return self.type == "manual-review"


def _check_unique_step_names(steps: list[StepDefinition] | None) -> list[StepDefinition] | None:
    if steps is None:
        return None
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise ValueError(f"step names must be unique; {step.name!r} appears twice")
        seen.add(step.name)
    return steps


Steps = Annotated[list[StepDefinition], AfterValidator(_check_unique_step_names)]


class FileRef(WireModel):
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    url: Annotated[str, Field(max_length=4096)] = ""


class FileGroup(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    repo: Annotated[str, Field(max_length=256)] = ""
    files: Annotated[list[FileRef], Field(max_length=MAX_FILES)] = Field(default_factory=list)


def _check_file_count(groups: list[FileGroup]) -> list[FileGroup]:
    if sum(len(g.files) for g in groups) > MAX_FILES:
        raise ValueError(f"a Candidate lists at most {MAX_FILES} files in all its groups")
    return groups


class Candidate(WireModel):
    id: Slug
    kind: Annotated[str, Field(min_length=1, max_length=128)]
    metadata: Metadata = Field(default_factory=dict)
    files: Annotated[list[FileGroup], Field(max_length=MAX_FILE_GROUPS), AfterValidator(_check_file_count)] = Field(
        default_factory=list
    )
    steps: Annotated[
        list[StepDefinition] | None, Field(max_length=MAX_CANDIDATE_STEPS), AfterValidator(_check_unique_step_names)
    ] = absent_when_none()
    status: CandidateStatus = CandidateStatus.NOT_STARTED


def _check_unique_candidate_ids(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.id in seen:
            raise ValueError(f"candidate ids must be unique; {candidate.id!r} appears twice")
        seen.add(candidate.id)
    return candidates


Candidates = Annotated[
    list[Candidate],
    Field(max_length=MAX_CANDIDATES_PER_REQUEST),
    AfterValidator(_check_unique_candidate_ids),
]


class MigrationAnnouncement(WireModel):
    """What a Migrator posts on start-up to register or update its Migration."""

    id: MigrationSlug
    name: Annotated[str, Field(min_length=1, max_length=256)]
    description: ShortText
    overview: list[ShortText] = Field(default_factory=list)
    required_inputs: list[InputDefinition] = Field(default_factory=list)
    steps: Annotated[Steps, Field(min_length=1)]
    candidates: Candidates
    migrator_url: HttpUrl

    @field_validator("required_inputs")
    @classmethod
    def _unique_input_names(cls, inputs: list[InputDefinition]) -> list[InputDefinition]:
        names = [i.name for i in inputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"input names must be unique; {', '.join(duplicates)} repeated")
        return inputs


class SubmitCandidatesRequest(WireModel):
    candidates: Candidates


class DispatchStepRequest(WireModel):
    """What Loom posts to `{migratorUrl}/dispatch-step`."""

    migration_id: str
    step_name: str
    candidate: Candidate
    config: StringMap = Field(default_factory=dict)
    callback_id: str
    event_name: str
    migrator_app: str
    migrator_url: str
    type: str | None = None
    # The same on every retry of one Step attempt, new for a Retry: a Migrator drops repeats by it.
    dispatch_id: str | None = None


class StepStatusEvent(WireModel):
    """A Migrator's callback about one Step, posted to `/api/event/{runId}`."""

    step_name: Annotated[str, Field(min_length=1, max_length=128)]
    candidate_id: Annotated[str, Field(min_length=1, max_length=128)]
    status: StepStatus
    metadata: StringMap = Field(default_factory=dict)

    @field_validator("status", mode="before")
    @classmethod
    def _accept_legacy_status(cls, value: Any) -> Any:
        return LEGACY_STEP_STATUSES.get(value, value) if isinstance(value, str) else value

    @field_validator("status")
    @classmethod
    def _not_in_progress(cls, value: StepStatus) -> StepStatus:
        if value not in CALLBACK_STEP_STATUSES:
            raise ValueError("in_progress is set by Loom when it dispatches a Step, not by a Migrator")
        return value


class FileDiffStatus(StrEnum):
    NEW = "new"
    MODIFIED = "modified"
    DELETED = "deleted"


class FileDiff(WireModel):
    path: str
    repo: str = ""
    before: str = ""
    after: str = ""
    status: FileDiffStatus


class StepDryRunResult(WireModel):
    step_name: str
    skipped: bool = False
    error: str | None = absent_when_none()
    files: list[FileDiff] = Field(default_factory=list)


class DryRunResult(WireModel):
    steps: list[StepDryRunResult]


class DryRunRequest(WireModel):
    """What Loom posts to `{migratorUrl}/dry-run`."""

    migration_id: str
    candidate: Candidate
    steps: list[StepDefinition]


def merged_metadata(candidate: Candidate, inputs: StringMap) -> Candidate:
    """The Candidate as a Step sees it: operator inputs merged over discovered metadata."""
    return candidate.model_copy(update={"metadata": {**candidate.metadata, **inputs}})
