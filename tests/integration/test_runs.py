"""Runs on a real Temporal dev server, a real HTTP Migrator and the real SQL store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from starlette.responses import Response

from loom_backend import errors
from loom_backend.domain import (
    Candidate,
    CandidateStatus,
    EventType,
    MigrationManifest,
    StepDefinition,
    StepStatus,
    StepStatusEvent,
)
from tests.harness import eventually
from tests.integration.run_fixtures import *  # noqa: F403  (the fixtures)
from tests.integration.run_fixtures import Loom

CID = "checkout"


def callback(step: str, status: str, candidate_id: str = CID, **metadata: str) -> StepStatusEvent:
    return StepStatusEvent.model_validate(
        {"stepName": step, "candidateId": candidate_id, "status": status, "metadata": metadata}
    )


async def through_review(loom: Loom, run: str) -> None:
    """Take the first two default Steps to success: a merged PR, then an approved review."""
    await loom.dispatched("disable-prune")
    await loom.engine.step_event(run, callback("disable-prune", "merged"))
    await loom.dispatched("review")
    await loom.engine.step_event(run, callback("review", "awaiting_review"))
    await loom.engine.review_step(run, "review", True, "bob", "looks fine")


async def test_happy_path_runs_every_step_and_records_each_result_and_event_once(make_loom) -> None:
    async with make_loom() as loom:
        run = await loom.start(CID, {"image": "v2"})
        first = await loom.dispatched("disable-prune")
        assert first.callback_id == run
        assert first.candidate.metadata == {"team": "payments", "image": "v2"}
        assert first.type == "disable-base-resource-prune"
        assert loom.results(CID)["disable-prune"].status is StepStatus.IN_PROGRESS

        await loom.engine.step_event(run, callback("disable-prune", "open", prUrl="https://git/pr/1"))
        result = loom.results(CID)["disable-prune"]
        assert (result.status, result.pr_url) == (StepStatus.OPEN, "https://git/pr/1")

        await loom.engine.step_event(run, callback("disable-prune", "merged"))
        await loom.dispatched("review")
        await loom.engine.step_event(run, callback("review", "awaiting_review"))
        await loom.engine.review_step(run, "review", True, "bob", "looks fine")
        bump = await loom.dispatched("bump-chart")
        assert bump.config == {"chart": "app"}
        await loom.engine.step_event(run, callback("bump-chart", "completed"))
        await loom.run_finished(CID)

        assert loom.candidate_status(CID) is CandidateStatus.COMPLETED
        results = loom.results(CID)
        assert {name: r.status for name, r in results.items()} == {
            "disable-prune": StepStatus.MERGED,
            "review": StepStatus.COMPLETED,
            "bump-chart": StepStatus.COMPLETED,
        }
        assert results["disable-prune"].pr_url == "https://git/pr/1"
        assert all(r.started_at and r.completed_at and r.completed_at >= r.started_at for r in results.values())
        assert loom.event_kinds(CID) == [
            ("run_started", None, None),
            ("step_dispatched", "disable-prune", "in_progress"),
            ("step_updated", "disable-prune", "open"),
            ("step_completed", "disable-prune", "merged"),
            ("step_dispatched", "review", "in_progress"),
            ("step_updated", "review", "awaiting_review"),
            ("review_approved", "review", None),
            ("step_completed", "review", "completed"),
            ("step_dispatched", "bump-chart", "in_progress"),
            ("step_completed", "bump-chart", "completed"),
            ("run_completed", None, None),
        ]
        events = loom.events(CID)
        approved = next(e for e in events if e.event_type is EventType.REVIEW_APPROVED)
        assert (approved.actor, approved.metadata) == ("bob", {"comment": "looks fine"})
        assert events[0].actor == "alice"
        assert all(e.duration_ms is not None for e in events if e.event_type is EventType.STEP_COMPLETED)
        assert len(loom.migrator.of(loom.migration_id)) == 3
        assert not await loom.engine.is_running(run)


async def test_an_open_step_takes_new_metadata_while_it_waits_and_an_exact_repeat_changes_nothing(make_loom) -> None:
    """A Migrator reports a PR's checks and review as they change, with `open` again; the Step keeps waiting."""
    async with make_loom() as loom:
        run = await loom.start(CID)
        await loom.dispatched("disable-prune")
        await loom.engine.step_event(run, callback("disable-prune", "open", prUrl="https://git/pr/1", checks="pending"))
        await loom.engine.step_event(run, callback("disable-prune", "open", prUrl="https://git/pr/1", checks="pending"))
        await loom.engine.step_event(run, callback("disable-prune", "open", checks="success", review="approved"))

        async def updated() -> bool:
            return loom.results(CID)["disable-prune"].metadata.get("review") == "approved"

        await eventually(updated, 10, "the Step's metadata to show the review")
        result = loom.results(CID)["disable-prune"]
        assert (result.status, result.pr_url) == (StepStatus.OPEN, "https://git/pr/1")
        assert result.metadata == {"prUrl": "https://git/pr/1", "checks": "success", "review": "approved"}
        assert [k for k in loom.event_kinds(CID) if k[0] == "step_updated"] == [
            ("step_updated", "disable-prune", "open"),
            ("step_updated", "disable-prune", "open"),
        ]


async def test_rejected_review_fails_the_step_until_it_is_retried(make_loom) -> None:
    async with make_loom() as loom:
        run = await loom.start(CID)
        await loom.dispatched("disable-prune")
        await loom.engine.step_event(run, callback("disable-prune", "completed"))
        await loom.dispatched("review")
        with pytest.raises(errors.StepNotInState, match="awaiting review"):
            await loom.engine.review_step(run, "review", True, "bob", None)
        await loom.engine.step_event(run, callback("review", "awaiting_review"))
        with pytest.raises(errors.StepNotInState, match="operator's review"):
            await loom.engine.step_event(run, callback("review", "completed"))

        await loom.engine.review_step(run, "review", False, "bob", "wrong chart")
        result = loom.results(CID)["review"]
        assert result.status is StepStatus.FAILED
        assert "wrong chart" in result.metadata["error"]
        rejected = [e for e in loom.events(CID) if e.event_type is EventType.REVIEW_REJECTED]
        assert [(e.actor, e.metadata) for e in rejected] == [("bob", {"comment": "wrong chart"})]
        assert loom.candidate_status(CID) is CandidateStatus.RUNNING

        await loom.engine.retry_step(run, "review", "carol")
        await loom.dispatched("review", count=2)
        await loom.engine.step_event(run, callback("review", "awaiting_review"))
        await loom.engine.review_step(run, "review", True, "bob", None)
        await loom.dispatched("bump-chart")


async def test_failed_step_waits_for_retry_and_then_succeeds(make_loom) -> None:
    async with make_loom() as loom:
        run = await loom.start(CID)
        await loom.dispatched("disable-prune")
        with pytest.raises(errors.StepNotInState, match="only a failed Step"):
            await loom.engine.retry_step(run, "disable-prune", "carol")
        await loom.engine.step_event(run, callback("disable-prune", "failed", error="helm lint failed"))
        assert loom.results(CID)["disable-prune"].metadata == {"error": "helm lint failed"}
        with pytest.raises(errors.StepNotInState, match="retry the Step first"):
            await loom.engine.step_event(run, callback("disable-prune", "merged"))

        await loom.engine.retry_step(run, "disable-prune", "carol")
        with pytest.raises(errors.StepNotInState):
            await loom.engine.retry_step(run, "disable-prune", "carol")
        await loom.dispatched("disable-prune", count=2)
        assert loom.results(CID)["disable-prune"].status is StepStatus.IN_PROGRESS
        await loom.engine.step_event(run, callback("disable-prune", "merged"))
        await loom.dispatched("review")

        kinds = loom.event_kinds(CID)
        assert kinds[1:6] == [
            ("step_dispatched", "disable-prune", "in_progress"),
            ("step_completed", "disable-prune", "failed"),
            ("step_retried", "disable-prune", None),
            ("step_dispatched", "disable-prune", "in_progress"),
            ("step_completed", "disable-prune", "merged"),
        ]
        retried = next(e for e in loom.events(CID) if e.event_type is EventType.STEP_RETRIED)
        assert retried.actor == "carol"


async def test_cancel_while_waiting_resets_candidate_to_not_started(make_loom) -> None:
    async with make_loom() as loom:
        run = await loom.start(CID)
        await loom.dispatched("disable-prune")
        await loom.engine.step_event(run, callback("disable-prune", "open"))

        await loom.engine.cancel_run(run, "dave")

        assert loom.candidate_status(CID) is CandidateStatus.NOT_STARTED
        cancelled = [e for e in loom.events(CID) if e.event_type is EventType.RUN_CANCELLED]
        assert [e.actor for e in cancelled] == ["dave"]
        assert not await loom.engine.is_running(run)
        with pytest.raises(errors.CandidateNotRunning):
            await loom.engine.cancel_run(run, "dave")
        with pytest.raises(errors.RunNotFound):
            await loom.engine.step_event(run, callback("disable-prune", "merged"))

        # A cancelled Run may start again from the first Step.
        loom.store.reset_run(loom.migration_id, CID)
        await loom.start(CID)
        await loom.dispatched("disable-prune", count=2)


async def test_starting_a_running_candidate_again_is_refused(make_loom) -> None:
    async with make_loom() as loom:
        run = await loom.start(CID)
        await loom.dispatched("disable-prune")
        manifest_candidate = loom.candidates[CID]
        manifest = MigrationManifest(
            migration_id=loom.migration_id,
            migrator_url=loom.migrator.url,
            candidate=manifest_candidate,
            steps=loom.steps,
        )
        with pytest.raises(errors.CandidateAlreadyStarted):
            await loom.engine.start_run(manifest, "alice")
        assert await loom.engine.is_running(run)


async def test_a_candidates_own_steps_replace_the_migrations(make_loom) -> None:
    own = [StepDefinition(name="rename-topic", migrator_app="kafka-migrator", type="rename")]
    candidates = [
        Candidate(id="orders", kind="kafka-topic", steps=own),
        Candidate(id=CID, kind="application"),
    ]
    async with make_loom(candidates=candidates) as loom:
        orders = await loom.start("orders")
        dispatch = await loom.dispatched("rename-topic")
        assert (dispatch.migrator_app, dispatch.type, dispatch.candidate.id) == ("kafka-migrator", "rename", "orders")
        await loom.engine.step_event(orders, callback("rename-topic", "completed", candidate_id="orders"))
        await loom.run_finished("orders")
        assert loom.candidate_status("orders") is CandidateStatus.COMPLETED
        assert list(loom.results("orders")) == ["rename-topic"]

        await loom.start(CID)
        assert (await loom.dispatched("disable-prune")).candidate.id == CID


async def test_inputs_updated_mid_run_reach_the_next_dispatch(make_loom) -> None:
    async with make_loom() as loom:
        run = await loom.start(CID, {"image": "v2"})
        first = await loom.dispatched("disable-prune")
        assert first.candidate.metadata["image"] == "v2"

        await loom.engine.update_inputs(run, {"image": "v3", "channel": "stable"}, "erin")
        await loom.engine.step_event(run, callback("disable-prune", "completed"))
        second = await loom.dispatched("review")
        assert second.candidate.metadata == {"team": "payments", "image": "v3", "channel": "stable"}
        updated = [e for e in loom.events(CID) if e.event_type is EventType.INPUTS_UPDATED]
        assert [(e.actor, e.metadata) for e in updated] == [("erin", {"image": "v3", "channel": "stable"})]


async def test_duplicate_and_out_of_order_callbacks_are_answered_without_double_writes(make_loom) -> None:
    async with make_loom() as loom:
        run = await loom.start(CID)
        await loom.dispatched("disable-prune")

        with pytest.raises(errors.StepNotInState, match="not waiting on Step 'review'"):
            await loom.engine.step_event(run, callback("review", "awaiting_review"))
        with pytest.raises(errors.StepNotInState, match="no Step named"):
            await loom.engine.step_event(run, callback("nope", "completed"))
        with pytest.raises(errors.StepNotInState, match="Candidate 'billing'"):
            await loom.engine.step_event(run, callback("disable-prune", "open", candidate_id="billing"))
        with pytest.raises(errors.StepNotInState, match="only a Step with an open PR"):
            await loom.engine.mark_merged(run, "disable-prune", "frank")

        await loom.engine.step_event(run, callback("disable-prune", "open", prUrl="https://git/pr/9"))
        await loom.engine.step_event(run, callback("disable-prune", "open", prUrl="https://git/pr/9"))
        await loom.engine.mark_merged(run, "disable-prune", "frank")
        await loom.engine.step_event(run, callback("disable-prune", "merged"))  # the Migrator saw it too: no-op
        await loom.dispatched("review")
        with pytest.raises(errors.StepNotInState, match="not waiting on Step 'disable-prune'"):
            await loom.engine.step_event(run, callback("disable-prune", "open"))
        await loom.engine.step_event(run, callback("review", "awaiting_review"))
        await loom.engine.step_event(run, callback("review", "awaiting_review"))

        assert loom.event_kinds(CID) == [
            ("run_started", None, None),
            ("step_dispatched", "disable-prune", "in_progress"),
            ("step_updated", "disable-prune", "open"),
            ("step_marked_merged", "disable-prune", None),
            ("step_completed", "disable-prune", "merged"),
            ("step_dispatched", "review", "in_progress"),
            ("step_updated", "review", "awaiting_review"),
        ]
        marked = next(e for e in loom.events(CID) if e.event_type is EventType.STEP_MARKED_MERGED)
        assert marked.actor == "frank"
        assert loom.results(CID)["disable-prune"].pr_url == "https://git/pr/9"
        assert len(loom.migrator.of(loom.migration_id, "disable-prune")) == 1


async def test_a_callback_that_beats_the_dispatch_answer_is_kept(make_loom, migrator) -> None:
    """The Migrator may call back before it answers the dispatch: the Run must keep that callback.

    Each Step's callback is applied exactly once, the Run completes, and the same callback sent
    again after the Run closed is RunNotFound (a 404 for the Migrator), never a server error.
    (This test was flaky: the Run writes run_completed just before its workflow returns, and the
    fixture's teardown checked "running?" then terminated a Run that had closed in between.)
    """
    steps = [StepDefinition(name=f"s{i}", migrator_app="m") for i in range(3)]
    async with make_loom(steps=steps) as loom:
        original = migrator.dispatch_step

        async def call_back_then_answer(request):
            response = await original(request)
            dispatch = migrator.dispatches[-1]
            await loom.engine.step_event(dispatch.callback_id, callback(dispatch.step_name, "completed"))
            return response

        migrator.dispatch_step = call_back_then_answer
        try:
            await loom.start(CID)
            await loom.run_finished(CID)
        finally:
            migrator.dispatch_step = original
        assert loom.candidate_status(CID) is CandidateStatus.COMPLETED
        assert [k for k in loom.event_kinds(CID) if k[0] == "step_completed"] == [
            ("step_completed", f"s{i}", "completed") for i in range(3)
        ]
        assert not await loom.engine.is_running(loom.run_id(CID))
        with pytest.raises(errors.RunNotFound):
            await loom.engine.step_event(loom.run_id(CID), callback("s2", "completed"))
        assert len(loom.migrator.of(loom.migration_id)) == 3


async def test_migrator_down_is_retried_then_fails_the_step_and_a_retry_succeeds(make_loom, migrator) -> None:
    async with make_loom() as loom:
        migrator.answer, migrator.answer_text = 503, "migrator restarting"
        run = await loom.start(CID)
        await eventually(
            lambda: (
                loom.results(CID).get("disable-prune") is not None
                and loom.results(CID)["disable-prune"].status is StepStatus.FAILED
            )
        )
        assert migrator.attempts == 3
        error = loom.results(CID)["disable-prune"].metadata["error"]
        assert "503" in error and "migrator restarting" in error and "3 attempt" in error

        migrator.answer = 202
        await loom.engine.retry_step(run, "disable-prune", "carol")
        await loom.dispatched("disable-prune")
        await loom.engine.step_event(run, callback("disable-prune", "merged"))
        await loom.dispatched("review")
        assert loom.results(CID)["disable-prune"].status is StepStatus.MERGED


async def test_a_migrator_that_refuses_the_dispatch_fails_the_step_at_once(make_loom, migrator) -> None:
    async with make_loom() as loom:
        migrator.answer, migrator.answer_text = 422, "unknown step type"
        await loom.start(CID)
        await eventually(
            lambda: (
                "disable-prune" in loom.results(CID) and loom.results(CID)["disable-prune"].status is StepStatus.FAILED
            )
        )
        assert migrator.attempts == 1
        assert "unknown step type" in loom.results(CID)["disable-prune"].metadata["error"]


async def test_actions_on_a_run_that_does_not_exist_raise_run_not_found(make_loom) -> None:
    async with make_loom() as loom:
        missing = loom.run_id("ghost")
        with pytest.raises(errors.RunNotFound):
            await loom.engine.step_event(missing, callback("disable-prune", "completed", candidate_id="ghost"))
        with pytest.raises(errors.RunNotFound):
            await loom.engine.retry_step(missing, "disable-prune", "carol")
        with pytest.raises(errors.CandidateNotRunning):
            await loom.engine.cancel_run(missing, "dave")
        assert not await loom.engine.is_running(missing)


# -- the writes a dispatch carries to the read model -----------------------------------------------------


@contextlib.asynccontextmanager
async def dispatches_held(migrator) -> AsyncIterator[asyncio.Event]:
    """The Migrator holds every dispatch until the event is set, then answers as usual."""
    original, release = migrator.dispatch_step, asyncio.Event()

    async def hold(request):
        await release.wait()
        return await original(request)

    migrator.dispatch_step = hold
    try:
        yield release
    finally:
        release.set()
        migrator.dispatch_step = original


async def test_cancel_while_the_migrator_holds_the_dispatch_writes_the_cleanup_last(make_loom, migrator) -> None:
    """The dispatch activity writes the Step's in_progress before it POSTs: the cleanup must not come first."""
    async with make_loom() as loom, dispatches_held(migrator) as release:
        run = await loom.start(CID)
        await eventually(lambda: loom.has_event(CID, EventType.STEP_DISPATCHED))
        cancelling = asyncio.ensure_future(loom.engine.cancel_run(run, "dave"))
        await loom.dispatch_cancel_requested(CID)
        assert not cancelling.done()  # the cleanup waits for the attempt in flight
        assert not loom.has_event(CID, EventType.RUN_CANCELLED)
        release.set()
        await cancelling
        assert loom.candidate_status(CID) is CandidateStatus.NOT_STARTED
        assert loom.event_kinds(CID) == [
            ("run_started", None, None),
            ("step_dispatched", "disable-prune", "in_progress"),
            ("run_cancelled", None, None),
        ]


async def test_a_dispatch_that_failed_after_the_migrator_called_back_is_not_retried_nor_undoes_the_callback(
    make_loom, migrator
) -> None:
    """Attempt 1 reaches the Migrator, which calls back `open` and then answers 503: the Migrator has the
    Step, so the Run sends no second attempt, and nothing writes the Step's in_progress over the open PR."""
    async with make_loom() as loom:
        original = migrator.dispatch_step

        async def open_then_fail_once(request):
            if migrator.attempts == 0:
                migrator.attempts += 1
                await loom.engine.step_event(
                    loom.run_id(CID), callback("disable-prune", "open", prUrl="https://git/pr/3")
                )
                return Response("restarting", status_code=503)
            return await original(request)

        migrator.dispatch_step = open_then_fail_once
        try:
            run = await loom.start(CID)
            await eventually(lambda: loom.has_event(CID, EventType.STEP_UPDATED))
            await loom.engine.step_event(run, callback("disable-prune", "merged"))
            await loom.dispatched("review")
        finally:
            migrator.dispatch_step = original
        assert loom.migrator.of(loom.migration_id, "disable-prune") == []  # no second attempt reached it
        result = loom.results(CID)["disable-prune"]
        assert (result.status, result.pr_url) == (StepStatus.MERGED, "https://git/pr/3")
        assert loom.event_kinds(CID) == [
            ("run_started", None, None),
            ("step_dispatched", "disable-prune", "in_progress"),
            ("step_updated", "disable-prune", "open"),
            ("step_completed", "disable-prune", "merged"),
            ("step_dispatched", "review", "in_progress"),
        ]


async def test_inputs_changed_while_the_first_dispatch_is_held_are_logged_after_it(make_loom, migrator) -> None:
    async with make_loom() as loom, dispatches_held(migrator) as release:
        run = await loom.start(CID, {"image": "v2"})
        await eventually(lambda: loom.has_event(CID, EventType.STEP_DISPATCHED))
        await loom.engine.update_inputs(run, {"image": "v3"}, "erin")  # answers while the Migrator holds
        release.set()
        await loom.dispatched("disable-prune")
        await eventually(lambda: loom.has_event(CID, EventType.INPUTS_UPDATED))
        assert [k[0] for k in loom.event_kinds(CID)] == ["run_started", "step_dispatched", "inputs_updated"]


async def test_cancel_after_an_open_callback_keeps_the_open_pr_though_the_dispatch_then_fails(
    make_loom, migrator
) -> None:
    async with make_loom() as loom:
        original, release = migrator.dispatch_step, asyncio.Event()

        async def open_hold_then_fail(request):
            await loom.engine.step_event(loom.run_id(CID), callback("disable-prune", "open", prUrl="https://git/pr/5"))
            await release.wait()
            return Response("restarting", status_code=503)

        migrator.dispatch_step = open_hold_then_fail
        try:
            run = await loom.start(CID)
            await eventually(lambda: loom.has_event(CID, EventType.STEP_UPDATED))
            cancelling = asyncio.ensure_future(loom.engine.cancel_run(run, "dave"))
            await loom.dispatch_cancel_requested(CID)
            release.set()
            await cancelling
        finally:
            release.set()
            migrator.dispatch_step = original
        result = loom.results(CID)["disable-prune"]
        assert (result.status, result.pr_url) == (StepStatus.OPEN, "https://git/pr/5")
        assert loom.candidate_status(CID) is CandidateStatus.NOT_STARTED
        assert [k[0] for k in loom.event_kinds(CID)] == [
            "run_started",
            "step_dispatched",
            "step_updated",
            "run_cancelled",
        ]


async def test_a_dispatch_retried_by_the_engine_keeps_its_id_and_a_retry_of_the_step_gets_a_new_one(
    make_loom, migrator
) -> None:
    """Dispatch is at-least-once: the id is what lets a Migrator tell a repeat from a new attempt."""
    async with make_loom() as loom:
        original, sent = migrator.dispatch_step, []

        async def refuse_the_first(request):
            sent.append((await request.json())["dispatchId"])
            if len(sent) == 1:
                return Response("restarting", status_code=503)
            return await original(request)

        migrator.dispatch_step = refuse_the_first
        try:
            run = await loom.start(CID)
            first = await loom.dispatched("disable-prune")
        finally:
            migrator.dispatch_step = original
        assert sent == [first.dispatch_id, first.dispatch_id]
        await loom.engine.step_event(run, callback("disable-prune", "failed"))
        await loom.engine.retry_step(run, "disable-prune", "carol")
        second = await loom.dispatched("disable-prune", count=2)
        assert first.dispatch_id and first.dispatch_id.endswith(":disable-prune:1")
        assert second.dispatch_id and second.dispatch_id.endswith(":disable-prune:2")
        assert first.dispatch_id.split(":")[0] == second.dispatch_id.split(":")[0]  # the same Run
