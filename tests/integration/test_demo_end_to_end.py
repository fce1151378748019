"""The demo Migrator against the real Loom app and the real Temporal server: one Run from start to merged main."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.demo_migrator import MIGRATION_ID, build_demo_migrator, repos
from examples.demo_migrator.changes import CI_PATHS, branch_for, fails_first_attempt
from loom_migrator import Backoff
from tests.harness import LiveLoom, eventually, step_result, step_status

TARGET = "ghcr.io/acme/base:2024.10"
FAST = Backoff(initial=0.01, max_delay=0.1)
STEPS = ["bump-base-image", "verify-staging", "update-ci", "cleanup"]
RUNS = f"/api/migrations/{MIGRATION_ID}/candidates"


def flaky_candidate_with_every_step() -> repos.Service:
    """A sample service whose `update-ci` fails its first attempt (the demo's own rule) and that runs all four Steps:
    it has a CI file (else `update-ci` is left out of its plan) and a legacy build file for `cleanup` to remove."""
    return next(s for s in repos.CATALOGUE if s.ci and s.legacy and fails_first_attempt(s.name))


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
async def loom(temporal_address: str, tmp_path: Path) -> AsyncIterator[LiveLoom]:
    async with LiveLoom(temporal_address, tmp_path / "loom", operators=("alice", "bob", "carol")) as app:
        yield app


async def test_a_flaky_candidate_runs_from_start_through_review_and_retry_to_a_merged_main_branch(
    loom: LiveLoom, tmp_path: Path
) -> None:
    service = flaky_candidate_with_every_step()
    cid = service.name
    repo = tmp_path / "demo" / "repos" / cid
    ci_path = CI_PATHS[0] if service.ci == "github" else CI_PATHS[1]
    demo = build_demo_migrator(
        port=0,
        loom_url=loom.url,
        token=loom.credentials.migrator_token,
        data_dir=tmp_path / "demo",
        merge_delay=0.2,
        announce_backoff=FAST,
        callback_backoff=FAST.with_max_attempts(10),
        rediscover_every=None,
    )
    with demo.serve_in_thread():
        async with httpx.AsyncClient(base_url=loom.url, timeout=15, auth=loom.credentials.auth) as api:

            async def migration() -> httpx.Response:
                return await api.get(f"/api/migrations/{MIGRATION_ID}")

            announced = (
                await eventually(migration, 30, "the demo announces", until=lambda r: r.status_code == 200)
            ).json()
            assert [s["name"] for s in announced["steps"]] == STEPS
            assert [i["name"] for i in announced["requiredInputs"]] == ["targetImage"]
            assert len(announced["candidates"]) == len(repos.CATALOGUE)
            chosen = next(c for c in announced["candidates"] if c["id"] == cid)
            assert "steps" not in chosen, "the Candidate runs the Migration's four Steps"
            assert chosen["status"] == "not_started"

            started = await api.post(
                f"{RUNS}/{cid}/start", json={"inputs": {"targetImage": TARGET}}, headers=loom.as_operator("carol")
            )
            assert started.status_code == 202, started.text

            async def steps() -> dict[str, Any]:
                response = await api.get(f"{RUNS}/{cid}/steps")
                assert response.status_code == 200, response.text
                return response.json()

            async def step_is(name: str, status: str, what: str) -> dict[str, Any]:
                return await eventually(steps, 30, what, until=lambda s: step_status(s, name) == status)

            bumped = step_result(
                await step_is("bump-base-image", "merged", "bump-base-image merges"), "bump-base-image"
            )
            pr_url = bumped.get("prUrl") or bumped["metadata"].get("prUrl")
            assert pr_url and pr_url.startswith(demo.migrator_url), bumped
            assert "Merged" in (await api.get(pr_url)).text

            review = await step_is("verify-staging", "awaiting_review", "verify-staging waits for a review")
            instructions = step_result(review, "verify-staging")["metadata"]["instructions"]
            assert cid in instructions and TARGET in instructions
            assert step_status(review, "update-ci") is None, "nothing after the review starts before the approval"
            approved = await api.post(
                f"{RUNS}/{cid}/steps/verify-staging/approve",
                json={"comment": "staging is green"},
                headers=loom.as_operator("alice"),
            )
            assert approved.status_code == 202, approved.text

            failed = step_result(await step_is("update-ci", "failed", "update-ci fails its first attempt"), "update-ci")
            assert "Retry the Step" in failed["metadata"]["error"]
            assert TARGET not in (git(repo, "show", f"main:{ci_path}").stdout), "the failed attempt changed nothing"
            running = (await api.get(RUNS, params={"status": "running"})).json()
            assert [c["id"] for c in running] == [cid], "a failed Step leaves the Run running"

            retried = await api.post(
                f"{RUNS}/{cid}/retry-step", json={"stepName": "update-ci"}, headers=loom.as_operator("bob")
            )
            assert retried.status_code == 202, retried.text

            done = await eventually(steps, 30, "the Candidate completes", until=lambda s: s["status"] == "completed")
            assert {s["stepName"]: s["status"] for s in done["steps"]} == {
                "bump-base-image": "merged",
                "verify-staging": "completed",
                "update-ci": "completed",
                "cleanup": "completed",
            }
            completed = (await api.get(RUNS, params={"status": "completed"})).json()
            assert [c["id"] for c in completed] == [cid]

            page = (await api.get(f"/api/migrations/{MIGRATION_ID}/events", params={"candidateId": cid})).json()
            events = page["events"]

    def one(event_type: str) -> dict[str, Any]:
        matching = [e for e in events if e["eventType"] == event_type]
        assert len(matching) == 1, (event_type, events)
        return matching[0]

    assert (one("review_approved")["stepName"], one("review_approved")["actor"]) == ("verify-staging", "alice")
    assert (one("step_retried")["stepName"], one("step_retried")["actor"]) == ("update-ci", "bob")
    assert one("run_started")["actor"] == "carol"
    assert one("run_completed")
    assert {e["candidateId"] for e in events} == {cid}

    dockerfile = git(repo, "show", "main:Dockerfile").stdout
    assert f"FROM {TARGET}\n" in dockerfile and "ghcr.io/acme/base:2023" not in dockerfile
    branch = branch_for(TARGET)
    assert git(repo, "merge-base", "--is-ancestor", branch, "main").returncode == 0, "the pull request is merged"
    assert f"Merge branch '{branch}'" in git(repo, "log", "--merges", "--format=%s", "main").stdout
    assert f": {TARGET}\n" in git(repo, "show", f"main:{ci_path}").stdout, "CI builds on the target image"
    tracked = git(repo, "ls-tree", "-r", "--name-only", "main").stdout.splitlines()
    assert service.legacy not in tracked and "Dockerfile" in tracked, "cleanup removed the legacy build file"
    subjects = git(repo, "log", "--format=%s", "main").stdout.splitlines()
    assert subjects[:2] == ["Remove legacy build files", f"CI: build on {TARGET}"], subjects
    assert git(repo, "status", "--porcelain").stdout == ""
