"""Dry-run: what each Step would change in a Candidate's files, computed without changing them."""

from __future__ import annotations

from typing import NoReturn

from loom_migrator.wire import Candidate, DryRunRequest, FileDiff, FileDiffStatus, StepDefinition


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


class CandidateStepView:
    """What a handler and a dry-run function both know: the Candidate (inputs merged) and the Step's config."""

    _missing_hint = "set it in the Run's inputs"

    def __init__(self, migration_id: str, step_name: str, candidate: Candidate, config: dict[str, str]) -> None:
        self.migration_id = migration_id
        self.step_name = step_name
        self.candidate = candidate
        self.config = config

    @property
    def metadata(self) -> dict[str, str]:
        return self.candidate.metadata

    def require(self, name: str) -> str:
        """A metadata value or input the Step cannot do without; a clear error when it is missing."""
        value = self.metadata.get(name, "").strip()
        if not value:
            raise ValueError(f"Step {self.step_name!r} needs {name!r}: {self._missing_hint}")
        return value


class DryRunContext(CandidateStepView):
    """One Step of a dry-run: the Step's definition and the Candidate (inputs merged into metadata)."""

    _missing_hint = "give it as an input to preview this Step"

    def __init__(self, request: DryRunRequest, step: StepDefinition) -> None:
        super().__init__(request.migration_id, step.name, request.candidate, step.config)
        self.request = request
        self.step = step

    def skip(self) -> NoReturn:
        raise StepSkipped(self.step_name)
