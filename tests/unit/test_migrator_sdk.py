"""The Migrator SDK against a fake Loom that is a real HTTP server (loom_migrator.testing.FakeLoom)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loom_migrator import (
    Backoff,
    Candidate,
    DispatchStepRequest,
    DryRunContext,
    FileDiffStatus,
    LoomClient,
    LoomUnreachable,
    Migrator,
    StepContext,
    StepFailed,
    StepStatus,
    StepStatusEvent,
    file_diff,
)
from loom_migrator.testing import FakeLoom
from tests.harness import wait_for

FAST = Backoff(initial=0.01, factor=2, max_delay=0.05)
CHECKOUT = Candidate(id="checkout", kind="service", metadata={"team": "payments"})
REPO_ROOT = Path(__file__).resolve().parents[2]


# The token `loom token create` would give this Migrator; the fake Loom accepts it and signs with its key.
TOKEN = "loom_m_" + "sdk-test-token" * 3


@pytest.fixture
def loom() -> Iterator[FakeLoom]:
    with FakeLoom(token=TOKEN) as fake:
        yield fake


def make_migrator(loom_url: str, **kwargs: object) -> Migrator:
    migrator = Migrator(
        "bump-image",
        "Bump image",
        "Bumps the image of every service.",
        inputs={"targetImage": "Target base image"},
        loom_url=loom_url,
        token=TOKEN,
        announce_backoff=FAST,
        callback_backoff=FAST.with_max_attempts(5),
        **kwargs,  # type: ignore[arg-type]
    )

    @migrator.discover
    def discover() -> list[Candidate]:
        return [CHECKOUT, Candidate(id="billing", kind="worker")]

    return migrator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_importing_the_sdk_pulls_in_neither_reflex_nor_temporal() -> None:
    code = (
        "import sys, loom_migrator, loom_migrator.testing\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('reflex', 'temporalio', 'sqlmodel'))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_backoff_grows_to_its_cap_and_stops_after_max_attempts() -> None:
    delays = list(Backoff(initial=1, factor=2, max_delay=5, max_attempts=6, jitter=0).delays())
    assert delays == [1, 2, 4, 5, 5]


def test_file_diff_names_new_modified_and_deleted_files_and_ignores_unchanged_ones() -> None:
    assert file_diff("a", None, "x").status == FileDiffStatus.NEW  # type: ignore[union-attr]
    assert file_diff("a", "x", "y").status == FileDiffStatus.MODIFIED  # type: ignore[union-attr]
    deleted = file_diff("a", "x", None, repo="r")
    assert deleted is not None and (deleted.status, deleted.before, deleted.after, deleted.repo) == (
        FileDiffStatus.DELETED,
        "x",
        "",
        "r",
    )
    assert file_diff("a", "same", "same") is None


def test_handlers_must_be_async_functions(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    with pytest.raises(TypeError, match="async def"):
        migrator.step("sync-step")(lambda ctx: None)  # type: ignore[arg-type,return-value]


def test_announces_on_start_up_with_steps_inputs_candidates_and_its_own_url(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url, app_name="image-migrator")

    @migrator.step("bump", description="Bump the FROM line", config={"file": "Dockerfile"})
    async def bump(ctx: StepContext) -> None: ...

    migrator.manual_review("verify", "Check {id}")

    with migrator.serve_in_thread():
        announcement = loom.wait_for_announcement()
    assert announcement.id == "bump-image"
    assert [s.name for s in announcement.steps] == ["bump", "verify"]
    assert announcement.steps[0].config == {"file": "Dockerfile"}
    assert announcement.steps[1].type == "manual-review"
    assert {s.migrator_app for s in announcement.steps} == {"image-migrator"}
    assert [i.name for i in announcement.required_inputs] == ["targetImage"]
    assert [c.id for c in announcement.candidates] == ["checkout", "billing"]
    assert announcement.migrator_url == migrator.migrator_url
    assert migrator.migrator_url.endswith(f":{migrator.port}")


def test_announce_retries_with_backoff_after_5xx_until_loom_accepts(loom: FakeLoom) -> None:
    loom.script("announce", 503, 500, 502)
    migrator = make_migrator(loom.url)
    migrator.step("bump")(_noop)
    with migrator.serve_in_thread():
        loom.wait_for_announcement()
    assert [code for route, code in loom.received.attempts if route == "announce"] == [503, 500, 502, 200]
    assert migrator.announced.is_set()


def test_announce_retries_on_network_errors_until_loom_starts_listening(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    migrator = make_migrator(f"http://127.0.0.1:{port}")
    migrator.step("bump")(_noop)
    with caplog.at_level(logging.WARNING, logger="loom_migrator"), migrator.serve_in_thread():
        wait_for(lambda: "ConnectError" in caplog.text, what="a failed announce to be logged")
        assert not migrator.announced.is_set()
        with FakeLoom(port=port, token=TOKEN) as late_loom:
            late_loom.wait_for_announcement()
    assert "ConnectError" in caplog.text


def test_announce_stops_on_4xx_and_logs_why(loom: FakeLoom, caplog: pytest.LogCaptureFixture) -> None:
    loom.script("announce", 422)
    migrator = make_migrator(loom.url)
    migrator.step("bump")(_noop)
    with caplog.at_level(logging.ERROR, logger="loom_migrator"), migrator.serve_in_thread():
        # Logged as the announce loop returns: nothing can be sent after it.
        loom.wait_for(lambda: "not registered" in caplog.text, what="the refusal to be logged")
    assert loom.received.attempts == [("announce", 422)]
    assert "HTTP 422: scripted HTTP 422" in caplog.text


def test_dispatch_answers_202_at_once_and_runs_the_handler_in_the_background(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    release = threading.Event()

    @migrator.step("slow")
    async def slow(ctx: StepContext) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        await ctx.completed({"done": "yes"})

    with migrator.serve_in_thread():
        started = time.monotonic()
        response = loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        assert response.status_code == 202
        assert time.monotonic() - started < 1.0
        assert loom.events_for("checkout") == []
        release.set()
        event = loom.wait_for_event("slow", StepStatus.COMPLETED)
    assert event.metadata == {"done": "yes"}
    assert loom.received.events[0].callback_id == "bump-image__checkout"


def test_repeated_dispatch_of_a_running_step_does_not_start_it_twice(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    release = threading.Event()
    runs: list[str] = []

    @migrator.step("slow")
    async def slow(ctx: StepContext) -> None:
        runs.append(ctx.candidate.id)
        while not release.is_set():
            await asyncio.sleep(0.01)

    with migrator.serve_in_thread():
        first = loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        second = loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        release.set()
        loom.wait_for_event("slow", StepStatus.COMPLETED)
    assert (first.json()["status"], second.json()["status"]) == ("accepted", "already_running")
    assert runs == ["checkout"]


def test_a_repeated_dispatch_id_is_answered_202_without_running_the_handler_again(loom: FakeLoom) -> None:
    """Loom retries a dispatch whose answer got lost with the same id; a Retry of the Step comes with a new one."""
    migrator = make_migrator(loom.url)
    runs: list[str] = []

    @migrator.step("bump")
    async def bump(ctx: StepContext) -> None:
        runs.append(ctx.request.dispatch_id or "")

    step = migrator.steps[0]
    with migrator.serve_in_thread():
        first = loom.dispatch(migrator.migrator_url, migrator.id, step, CHECKOUT, dispatch_id="run-1:bump:1")
        loom.wait_for_event("bump", StepStatus.COMPLETED)
        repeat = loom.dispatch(migrator.migrator_url, migrator.id, step, CHECKOUT, dispatch_id="run-1:bump:1")
        retry = loom.dispatch(migrator.migrator_url, migrator.id, step, CHECKOUT, dispatch_id="run-1:bump:2")
        loom.wait_for(lambda: len(loom.events_for("checkout")) == 2, what="the Retry's completion")
    assert [r.status_code for r in (first, repeat, retry)] == [202, 202, 202]
    assert [r.json()["status"] for r in (first, repeat, retry)] == ["accepted", "already_accepted", "accepted"]
    assert runs == ["run-1:bump:1", "run-1:bump:2"]


def test_a_migrator_remembers_a_bounded_number_of_dispatch_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("loom_migrator.migrator.REMEMBERED_DISPATCHES", 2)
    migrator = make_migrator("http://127.0.0.1:1")
    requests = [
        DispatchStepRequest(
            migration_id="bump-image",
            step_name="bump",
            candidate=CHECKOUT,
            callback_id="bump-image__checkout",
            event_name="step-bump",
            migrator_app="bump-image",
            migrator_url="http://unused",
            dispatch_id=f"run-1:bump:{n}",
        )
        for n in (1, 2, 3)
    ]
    for request in requests:
        migrator._remember(request.dispatch_id)
    assert [migrator.already_accepted(r) for r in requests] == [False, True, True]
    assert not migrator.already_accepted(requests[0].model_copy(update={"dispatch_id": None}))


def test_a_step_dispatched_again_as_soon_as_it_reported_failed_runs_again(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    attempts: list[int] = []

    @migrator.step("flaky")
    async def flaky(ctx: StepContext) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise StepFailed("first attempt fails")
        await asyncio.sleep(0.05)

    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        loom.wait_for_event("flaky", StepStatus.FAILED)
        retry = loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        loom.wait_for_event("flaky", StepStatus.COMPLETED)
    assert retry.json()["status"] == "accepted"
    assert attempts == [1, 2]


def test_a_handler_that_raises_reports_failed_with_the_error_text(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)

    @migrator.step("explode")
    async def explode(ctx: StepContext) -> None:
        raise RuntimeError(f"the registry refused the push of {ctx.candidate.id}")

    @migrator.step("refuse")
    async def refuse(ctx: StepContext) -> None:
        raise StepFailed("no Dockerfile in this repository")

    @migrator.step("typo")
    async def typo(ctx: StepContext) -> None:
        raise KeyError("dockerfile")

    with migrator.serve_in_thread():
        for step in migrator.steps:
            loom.dispatch(migrator.migrator_url, migrator.id, step, CHECKOUT)
        errors = {
            name: loom.wait_for_event(name, StepStatus.FAILED).metadata["error"]
            for name in ("explode", "refuse", "typo")
        }
    assert errors == {
        "explode": "the registry refused the push of checkout",
        "refuse": "no Dockerfile in this repository",
        "typo": "KeyError: 'dockerfile'",
    }


def test_a_handler_that_reports_nothing_completes_the_step(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    migrator.step("quiet")(_noop)
    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        loom.wait_for_event("quiet", StepStatus.COMPLETED)
    assert [e.status for e in loom.events_for("checkout")] == [StepStatus.COMPLETED]


def test_a_missing_input_fails_the_step_saying_which_input_to_set(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)

    @migrator.step("bump")
    async def bump(ctx: StepContext) -> None:
        ctx.require("targetImage")

    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        error = loom.wait_for_event("bump", StepStatus.FAILED).metadata["error"]
    assert "'targetImage'" in error and "inputs" in error


def test_pull_request_helper_reports_open_with_the_pr_url_then_merged(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)

    @migrator.step("bump")
    async def bump(ctx: StepContext) -> None:
        async def until_merged() -> dict[str, str]:
            return {"mergeCommit": "abc123"}

        target = ctx.require("targetImage")
        await ctx.pull_request(f"https://git.example/{ctx.candidate.id}/pull/1", until_merged, {"image": target})

    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT, {"targetImage": "base:2"})
        merged = loom.wait_for_event("bump", StepStatus.MERGED)
    opened = loom.events_for("checkout")[0]
    assert (opened.status, opened.metadata) == (
        StepStatus.OPEN,
        {"image": "base:2", "prUrl": "https://git.example/checkout/pull/1"},
    )
    assert merged.metadata == {
        "image": "base:2",
        "mergeCommit": "abc123",
        "prUrl": "https://git.example/checkout/pull/1",
    }


def test_manual_review_reports_awaiting_review_with_instructions_filled_per_candidate(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    migrator.manual_review("verify", "Check the staging deploy of {id} (team {team}, {unknown} stays)")
    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        event = loom.wait_for_event("verify", StepStatus.AWAITING_REVIEW)
    assert event.metadata == {"instructions": "Check the staging deploy of checkout (team payments, {unknown} stays)"}


def test_a_step_type_without_handler_is_reported_failed_naming_the_handled_types(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    migrator.step("bump")(_noop)
    stranger = migrator.steps[0].model_copy(update={"name": "other", "type": "rename-chart"})
    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, stranger, CHECKOUT)
        error = loom.wait_for_event("other", StepStatus.FAILED).metadata["error"]
    assert "no handler for Step type 'rename-chart'" in error and "bump" in error


def test_a_callback_retries_on_5xx_until_loom_accepts_it(loom: FakeLoom) -> None:
    loom.script("event", 503, 500)
    migrator = make_migrator(loom.url)
    migrator.step("quiet")(_noop)
    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        loom.wait_for_event("quiet", StepStatus.COMPLETED)
    assert [code for route, code in loom.received.attempts if route == "event"] == [503, 500, 200]


def test_a_callback_refused_with_4xx_is_not_retried_and_stops_the_handler(
    loom: FakeLoom, caplog: pytest.LogCaptureFixture
) -> None:
    loom.script("event", 404)
    migrator = make_migrator(loom.url)
    after_refusal: list[str] = []
    finished = threading.Event()

    @migrator.step("bump")
    async def bump(ctx: StepContext) -> None:
        try:
            await ctx.open("https://git.example/pull/1")
            after_refusal.append("kept going")
        finally:
            finished.set()

    with caplog.at_level(logging.WARNING, logger="loom_migrator"), migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        assert finished.wait(5)  # the handler stopped at the refused callback: nothing is sent after it
    assert [code for route, code in loom.received.attempts if route == "event"] == [404]
    assert after_refusal == []
    assert "HTTP 404" in caplog.text and "not retrying" in caplog.text


async def test_a_callback_gives_up_after_its_attempts_when_loom_is_unreachable() -> None:
    client = LoomClient(f"http://127.0.0.1:{free_port()}", callback_backoff=FAST.with_max_attempts(3))
    event = StepStatusEvent(step_name="bump", candidate_id="checkout", status=StepStatus.COMPLETED)
    with pytest.raises(LoomUnreachable, match="after 3 attempts"):
        await client.post_event("bump-image__checkout", event)
    await client.aclose()


def test_candidates_are_resubmitted_on_demand_and_on_a_schedule(loom: FakeLoom) -> None:
    found = [[CHECKOUT]]
    migrator = make_migrator(loom.url, rediscover_every=0.2)
    migrator.discover(lambda: found[0])
    migrator.step("bump")(_noop)
    with migrator.serve_in_thread():
        loom.wait_for_announcement()
        found[0] = [CHECKOUT, Candidate(id="search", kind="service")]
        assert httpx.post(f"{migrator.migrator_url}/rediscover").status_code == 202
        loom.wait_for(lambda: loom.received.candidate_submissions, what="an on-demand submission")
        loom.wait_for(lambda: len(loom.received.candidate_submissions) >= 2, what="a scheduled submission")
    migration_id, candidates = loom.received.candidate_submissions[0]
    assert (migration_id, [c.id for c in candidates]) == ("bump-image", ["checkout", "search"])


def test_dry_run_returns_each_steps_file_diffs_skips_and_errors(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    migrator.step("bump")(_noop)
    migrator.step("add-ci")(_noop)
    migrator.step("cleanup")(_noop)
    migrator.step("broken")(_noop)
    migrator.manual_review("verify", "Check {id}")

    @migrator.dry_run("bump")
    def bump_preview(ctx: DryRunContext) -> list[object]:
        target = ctx.require("targetImage")
        return [
            file_diff("Dockerfile", "FROM base:1\n", f"FROM {target}\n", repo=ctx.candidate.id),
            file_diff("README.md", "same", "same"),
        ]

    @migrator.dry_run("add-ci")
    async def add_ci_preview(ctx: DryRunContext) -> list[object]:
        return [file_diff(".ci.yml", None, "build: true\n")]

    @migrator.dry_run("cleanup")
    def cleanup_preview(ctx: DryRunContext) -> None:
        ctx.skip()

    @migrator.dry_run("broken")
    def broken_preview(ctx: DryRunContext) -> None:
        raise FileNotFoundError("Dockerfile")

    with migrator.serve_in_thread():
        result = loom.dry_run(migrator.migrator_url, migrator.id, CHECKOUT, migrator.steps, {"targetImage": "base:2"})
        without_input = loom.dry_run(migrator.migrator_url, migrator.id, CHECKOUT, migrator.steps[:1])

    by_name = {s.step_name: s for s in result.steps}
    assert list(by_name) == ["bump", "add-ci", "cleanup", "broken", "verify"]
    [dockerfile] = by_name["bump"].files
    assert dockerfile.model_dump(mode="json") == {
        "path": "Dockerfile",
        "repo": "checkout",
        "before": "FROM base:1\n",
        "after": "FROM base:2\n",
        "status": "modified",
    }
    assert [(f.path, f.status, f.before) for f in by_name["add-ci"].files] == [(".ci.yml", FileDiffStatus.NEW, "")]
    assert (by_name["cleanup"].skipped, by_name["cleanup"].files) == (True, [])
    assert by_name["broken"].error == "FileNotFoundError: Dockerfile"
    assert (by_name["verify"].skipped, by_name["verify"].error, by_name["verify"].files) == (True, None, [])
    assert "'targetImage'" in (without_input.steps[0].error or "")


def test_dry_run_speaks_camel_case_on_the_wire(loom: FakeLoom) -> None:
    migrator = make_migrator(loom.url)
    migrator.step("bump")(_noop)
    migrator.dry_run("bump")(lambda ctx: ctx.skip())
    body = {
        "migrationId": "bump-image",
        "candidate": {"id": "checkout", "kind": "service"},
        "steps": [{"name": "bump", "migratorApp": "bump-image"}],
    }
    with migrator.serve_in_thread():
        response = loom.post_signed(f"{migrator.migrator_url}/dry-run", json.dumps(body).encode())
    assert response.status_code == 200
    assert response.json() == {"steps": [{"stepName": "bump", "skipped": True, "files": []}]}


async def _noop(ctx: StepContext) -> None:
    return None
