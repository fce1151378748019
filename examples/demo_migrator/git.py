"""The few git operations the demo needs, through the `git` CLI on local repositories.

Every command sets its own identity, so commits work on a machine with no git config at all.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

MAIN = "main"
IDENTITY = (
    "-c",
    "user.name=Loom Demo Migrator",
    "-c",
    "user.email=demo-migrator@loom.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    f"init.defaultBranch={MAIN}",
)
_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


class GitError(RuntimeError):
    pass


def git(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["git", *IDENTITY, *args], cwd=repo, capture_output=True, text=True, env=_ENV, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {repo.name}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def init(repo: Path, message: str) -> str:
    """Make `repo` (a directory with files) a repository with one commit on main."""
    git(repo, "init", "-q", "-b", MAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return head(repo)


def head(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", ref).strip()


def read(repo: Path, path: str, ref: str = MAIN) -> str | None:
    """A file's content at `ref`, read from the object store: the working tree is not touched."""
    result = subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, text=True, env=_ENV, timeout=60, check=False
    )
    return result.stdout if result.returncode == 0 else None


def _apply(repo: Path, changes: Mapping[str, str | None]) -> None:
    for path, content in changes.items():
        target = repo / path
        if content is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)


def commit(repo: Path, changes: Mapping[str, str | None], message: str, branch: str = MAIN) -> str | None:
    """Commit `changes` (None deletes a file) on `branch`, started afresh from main; None if nothing changed.

    The working tree is back on main afterwards, whatever happens.
    """
    _back_to_main(repo)
    try:
        if branch != MAIN:
            git(repo, "checkout", "-q", "-B", branch, MAIN)
        _apply(repo, changes)
        git(repo, "add", "-A")
        if not git(repo, "status", "--porcelain").strip():
            return None
        git(repo, "commit", "-q", "-m", message)
        return head(repo)
    finally:
        _back_to_main(repo)


def _back_to_main(repo: Path) -> None:
    """A clean working tree on main, whatever an interrupted earlier command left behind."""
    git(repo, "merge", "--abort", check=False)
    git(repo, "reset", "-q", "--hard")
    git(repo, "checkout", "-q", MAIN)


def merge(repo: Path, branch: str, message: str) -> str:
    """Merge `branch` into main with a merge commit, as merging a pull request does."""
    _back_to_main(repo)
    if is_merged(repo, branch):
        return head(repo)
    git(repo, "merge", "-q", "--no-ff", "-m", message, branch)
    return head(repo)


def is_merged(repo: Path, branch: str) -> bool:
    result = subprocess.run(
        ["git", "merge-base", "--is-ancestor", branch, MAIN], cwd=repo, env=_ENV, capture_output=True, timeout=60
    )
    return result.returncode == 0


def branch_exists(repo: Path, branch: str) -> bool:
    return bool(git(repo, "branch", "--list", branch).strip())


def show(repo: Path, rev: str) -> str:
    """A commit's message, stat and patch."""
    return git(repo, "show", "--stat", "--patch", "--format=commit %H%nAuthor: %an <%ae>%nDate:   %ad%n%n    %s%n", rev)


def log(repo: Path, limit: int = 20) -> list[tuple[str, str, str]]:
    """(sha, date, subject) of main's most recent commits."""
    out = git(repo, "log", f"-{limit}", "--format=%H%x09%ad%x09%s", "--date=short", MAIN)
    return [tuple(line.split("\t", 2)) for line in out.splitlines() if line]  # type: ignore[misc]


def files(repo: Path, ref: str = MAIN) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", ref).splitlines()
