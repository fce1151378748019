"""The demo Migrator over HTTP, changing real git repositories, with a fake Loom receiving its callbacks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from examples.demo_migrator import MIGRATION_ID, build_demo_migrator, git, repos
from examples.demo_migrator.changes import fails_first_attempt
from loom_migrator import Backoff, Candidate, FileDiffStatus, Migrator, StepDefinition, StepStatus
from loom_migrator.testing import FakeLoom

TARGET = "ghcr.io/acme/base:2024.10"
INPUTS = {"targetImage": TARGET}
FAST = Backoff(initial=0.01, max_delay=0.05)
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def loom() -> Iterator[FakeLoom]:
    with FakeLoom() as fake:
        yield fake


@pytest.fixture(scope="module")
def demo(loom: FakeLoom, data_dir: Path) -> Iterator[Migrator]:
    migrator = build_demo_migrator(
        port=0,
        loom_url=loom.url,
        token=loom.token,
        data_dir=data_dir,
        merge_delay=0.5,
        announce_backoff=FAST,
        callback_backoff=FAST.with_max_attempts(5),
    )
    with migrator.serve_in_thread():
        loom.wait_for_announcement()
        yield migrator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def candidate(loom: FakeLoom, candidate_id: str) -> Candidate:
    return next(c for c in loom.received.announcements[0].candidates if c.id == candidate_id)


def step(demo: Migrator, name: str) -> StepDefinition:
    return next(s for s in demo.steps if s.name == name)


def dispatch(loom: FakeLoom, demo: Migrator, step_name: str, candidate_id: str) -> None:
    response = loom.dispatch(
        demo.migrator_url, MIGRATION_ID, step(demo, step_name), candidate(loom, candidate_id), INPUTS
    )
    assert response.status_code == 202


def test_start_up_generates_about_25_varied_git_repositories(demo: Migrator, data_dir: Path) -> None:
    repo_dirs = sorted(p for p in (data_dir / "repos").iterdir() if not p.name.startswith("."))
    assert len(repo_dirs) == len(repos.CATALOGUE) == 25
    assert all(len(git.log(r)) >= 1 for r in repo_dirs)
    services = [repos.read_service(r) for r in repo_dirs]
    assert {s["kind"] for s in services} == {"service", "worker", "cron-job", "frontend"}
    assert len({s["team"] for s in services}) >= 5 and len({s["language"] for s in services}) >= 4
    assert git.read(data_dir / "repos" / "billing", "Dockerfile").startswith("FROM maven")  # type: ignore[union-attr]
    assert sum(repos.find_ci_file(r) is None for r in repo_dirs) >= 3


def test_generating_again_keeps_existing_repositories_and_their_history(tmp_path: Path) -> None:
    few = repos.CATALOGUE[:2]
    repos.generate(tmp_path, few)
    git.commit(tmp_path / few[0].name, {"NOTES.md": "kept\n"}, "A local change")
    head = git.head(tmp_path / few[0].name)
    repos.generate(tmp_path, few)
    assert git.head(tmp_path / few[0].name) == head


def test_announces_one_migration_with_the_target_image_input_and_per_candidate_steps(
    demo: Migrator, loom: FakeLoom
) -> None:
    announcement = loom.received.announcements[0]
    assert announcement.id == MIGRATION_ID
    assert [(i.name, i.label) for i in announcement.required_inputs] == [("targetImage", "Target base image")]
    assert [s.name for s in announcement.steps] == ["bump-base-image", "verify-staging", "update-ci", "cleanup"]
    assert announcement.steps[1].type == "manual-review"
    assert len(announcement.candidates) == 25
    without_ci = candidate(loom, "ledger-reconcile")
    assert without_ci.steps is not None and "update-ci" not in [s.name for s in without_ci.steps]
    assert candidate(loom, "checkout").steps is None
    assert candidate(loom, "checkout").metadata["currentImage"] == "ghcr.io/acme/base:2023.04"


def test_bump_base_image_commits_on_a_branch_reports_open_with_a_pr_page_then_merges_into_main(
    demo: Migrator, loom: FakeLoom, data_dir: Path
) -> None:
    repo = data_dir / "repos" / "billing"
    dispatch(loom, demo, "bump-base-image", "billing")

    opened = loom.wait_for_event("bump-base-image", StepStatus.OPEN, "billing")
    branch = opened.metadata["branch"]
    assert git.is_merged(repo, branch) is False
    assert f"FROM {TARGET}" in (git.read(repo, "Dockerfile", ref=branch) or "")
    assert f"FROM {TARGET}" not in (git.read(repo, "Dockerfile") or "")
    pr_page = httpx.get(opened.metadata["prUrl"])
    assert pr_page.status_code == 200 and "text/html" in pr_page.headers["content-type"]
    assert (
        "Open" in pr_page.text
        and f"+FROM {TARGET}" in pr_page.text
        and "-FROM ghcr.io/acme/base:2022.12" in pr_page.text
    )

    merged = loom.wait_for_event("bump-base-image", StepStatus.MERGED, "billing")
    assert merged.metadata["prUrl"] == opened.metadata["prUrl"]
    assert git.head(repo) == merged.metadata["mergeCommit"]
    assert f"FROM {TARGET}" in (git.read(repo, "Dockerfile") or "")
    assert git.read(repo, "Dockerfile").count("FROM ") == 2  # type: ignore[union-attr]
    assert "Merged" in httpx.get(opened.metadata["prUrl"]).text
    assert git.git(repo, "status", "--porcelain") == ""


def test_verify_staging_waits_for_review_with_instructions_naming_the_candidate_and_image(
    demo: Migrator, loom: FakeLoom
) -> None:
    dispatch(loom, demo, "verify-staging", "storefront")
    event = loom.wait_for_event("verify-staging", StepStatus.AWAITING_REVIEW, "storefront")
    assert "Check the staging deploy of storefront" in event.metadata["instructions"]
    assert TARGET in event.metadata["instructions"]


def test_update_ci_fails_the_first_attempt_for_about_one_candidate_in_five_and_succeeds_on_retry(
    demo: Migrator, loom: FakeLoom, data_dir: Path
) -> None:
    with_ci = [s.name for s in repos.CATALOGUE if s.ci]
    flaky = [name for name in with_ci if fails_first_attempt(name)]
    assert 2 <= len(flaky) <= len(with_ci) // 3
    name = flaky[0]
    repo = data_dir / "repos" / name
    ci_path = repos.find_ci_file(repo)
    assert ci_path is not None

    dispatch(loom, demo, "update-ci", name)
    failed = loom.wait_for_event("update-ci", StepStatus.FAILED, name)
    assert "Retry" in failed.metadata["error"]
    assert TARGET not in (git.read(repo, ci_path) or "")

    dispatch(loom, demo, "update-ci", name)
    completed = loom.wait_for_event("update-ci", StepStatus.COMPLETED, name)
    assert git.head(repo) == completed.metadata["commit"]
    assert TARGET in (git.read(repo, ci_path) or "")
    assert httpx.get(completed.metadata["commitUrl"]).status_code == 200


def test_update_ci_succeeds_at_once_for_the_other_candidates(demo: Migrator, loom: FakeLoom) -> None:
    steady = next(s.name for s in repos.CATALOGUE if s.ci and not fails_first_attempt(s.name))
    dispatch(loom, demo, "update-ci", steady)
    loom.wait_for_event("update-ci", StepStatus.COMPLETED, steady)
    assert [e.status for e in loom.events_for(steady, "update-ci")] == [StepStatus.COMPLETED]


def test_cleanup_deletes_the_legacy_file_in_a_commit_on_main(demo: Migrator, loom: FakeLoom, data_dir: Path) -> None:
    repo = data_dir / "repos" / "fraud-score"
    assert git.read(repo, "scripts/build-legacy-image.sh") is not None
    dispatch(loom, demo, "cleanup", "fraud-score")
    event = loom.wait_for_event("cleanup", StepStatus.COMPLETED, "fraud-score")
    assert event.metadata["removed"] == "scripts/build-legacy-image.sh"
    assert git.read(repo, "scripts/build-legacy-image.sh") is None
    assert not (repo / "scripts" / "build-legacy-image.sh").exists()


def test_dry_run_returns_each_steps_real_diffs_without_touching_the_repository(
    demo: Migrator, loom: FakeLoom, data_dir: Path
) -> None:
    repo = data_dir / "repos" / "recommendations"
    refs_before = git.git(repo, "for-each-ref")
    dockerfile_before = git.read(repo, "Dockerfile")

    result = loom.dry_run(demo.migrator_url, MIGRATION_ID, candidate(loom, "recommendations"), demo.steps, INPUTS)

    by_step = {s.step_name: s for s in result.steps}
    [dockerfile] = by_step["bump-base-image"].files
    assert (dockerfile.path, dockerfile.repo, dockerfile.status) == (
        "Dockerfile",
        "recommendations",
        FileDiffStatus.MODIFIED,
    )
    assert dockerfile.before == dockerfile_before
    assert dockerfile.after == dockerfile_before.replace("ghcr.io/acme/base:2023.04", TARGET)  # type: ignore[union-attr]
    assert by_step["verify-staging"].files == [] and by_step["verify-staging"].skipped
    [ci] = by_step["update-ci"].files
    assert ci.path == ".github/workflows/ci.yml" and TARGET in ci.after and TARGET not in ci.before
    [legacy] = by_step["cleanup"].files
    assert (legacy.path, legacy.status, legacy.after) == ("Dockerfile.legacy", FileDiffStatus.DELETED, "")
    assert git.git(repo, "for-each-ref") == refs_before
    assert git.git(repo, "status", "--porcelain") == ""


def test_dry_run_skips_steps_with_nothing_to_do_and_explains_a_missing_input(demo: Migrator, loom: FakeLoom) -> None:
    bare = candidate(loom, "admin-console")  # no CI file, no legacy files
    result = loom.dry_run(demo.migrator_url, MIGRATION_ID, bare, demo.steps, INPUTS)
    skipped = {s.step_name: s.skipped for s in result.steps}
    assert skipped == {"bump-base-image": False, "verify-staging": True, "update-ci": True, "cleanup": True}

    no_input = loom.dry_run(demo.migrator_url, MIGRATION_ID, bare, demo.steps[:1])
    assert "targetImage" in (no_input.steps[0].error or "")


def test_the_command_line_starts_the_demo_and_announces_it(tmp_path: Path) -> None:
    with FakeLoom() as fake:
        port = free_port()
        command = ["-m", "examples.demo_migrator", "--port", str(port), "--loom-url", fake.url]
        process = subprocess.Popen(
            [sys.executable, *command, "--data-dir", str(tmp_path), "--merge-delay", "0.1", "--host", "127.0.0.1"],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOOM_TOKEN": fake.token},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            announcement = fake.wait_for_announcement(timeout=30)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
    assert announcement.id == MIGRATION_ID and len(announcement.candidates) == 25
    assert announcement.migrator_url == f"http://localhost:{port}"
    assert (tmp_path / "repos" / "checkout" / ".git").is_dir()
