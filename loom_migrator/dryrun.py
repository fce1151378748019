"""Dry-run: what each Step would change in a Candidate's files, computed without changing them."""

from __future__ import annotations

from typing import NoReturn

from loom_backend.domain import Candidate, DryRunRequest, FileDiff, FileDiffStatus, StepDefinition


class StepSkipped(Exception):
    """Raised by a dry-run function when the Step would not run for this Candidate."""


def file_diff(path: str, before: str | None, after: str | None, *, repo: str = "") -> FileDiff | None:
    """The diff of one file: `None` means absent (before: a new file; after: a deleted one).

    Returns None when nothing would change, so a dry-run can list every file it looked at.
    """
    if before == after:
        return None
    if before is None:
        status = FileDiffStatus.NEW
    elif after is None:
        status = FileDiffStatus.DELETED
    else:
        status = FileDiffStatus.MODIFIED
    return FileDiff(path=path, repo=repo, before=before or "", after=after or "", status=status)


class DryRunContext:
    """One Step of a dry-run: the Step's definition and the Candidate (inputs merged into metadata)."""

    def __init__(self, request: DryRunRequest, step: StepDefinition) -> None:
        self.request = request
        self.step = step

    @property
    def candidate(self) -> Candidate:
        return self.request.candidate

    @property
    def metadata(self) -> dict[str, str]:
        return self.request.candidate.metadata

    @property
    def migration_id(self) -> str:
        return self.request.migration_id

    @property
    def step_name(self) -> str:
        return self.step.name

    @property
    def config(self) -> dict[str, str]:
        return self.step.config

    def require(self, name: str) -> str:
        value = self.metadata.get(name, "").strip()
        if not value:
            raise ValueError(f"Step {self.step_name!r} needs {name!r}: give it as an input to preview this Step")
        return value

    def skip(self) -> NoReturn:
        raise StepSkipped(self.step_name)
