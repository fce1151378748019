"""The preview page's rows: each Step of a dry run, with the files it would change as unified diffs."""

from __future__ import annotations

from dataclasses import dataclass, field

from loom_backend.domain import DryRunResult, FileDiffStatus
from loom_ui import format as fmt

FILE_STATUS = {
    FileDiffStatus.NEW: ("New", "green"),
    FileDiffStatus.MODIFIED: ("Modified", "blue"),
    FileDiffStatus.DELETED: ("Deleted", "red"),
}


@dataclass
class LineView:
    kind: str = ""
    text: str = ""


@dataclass
class FilePreview:
    path: str = ""
    repo: str = ""
    label: str = ""
    color: str = "gray"
    added: int = 0
    removed: int = 0
    lines: list[LineView] = field(default_factory=list)


@dataclass
class StepPreview:
    name: str = ""
    skipped: bool = False
    error: str = ""
    files: list[FilePreview] = field(default_factory=list)


def step_previews(result: DryRunResult) -> list[StepPreview]:
    previews = []
    for step in result.steps:
        files = []
        for f in step.files:
            lines = fmt.unified_diff(f.path, f.before, f.after)
            added, removed = fmt.diff_stats(lines)
            label, color = FILE_STATUS.get(f.status, (str(f.status), "gray"))
            files.append(
                FilePreview(f.path, f.repo, label, color, added, removed, [LineView(d.kind, d.text) for d in lines])
            )
        previews.append(StepPreview(step.step_name, step.skipped, step.error or "", files))
    return previews
