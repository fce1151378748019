"""Use cases of the service against small hand-written fakes (no Temporal, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loom_backend import errors
from loom_backend.domain import (
    CandidateStatus,
    DryRunCandidateRequest,
    DryRunResult,
    MigrationAnnouncement,
    StepDryRunResult,
)
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.fakes import FakeEngine, FakeNotifier

ANNOUNCEMENT = MigrationAnnouncement.model_validate(
    {
        "id": "base-image",
        "name": "Upgrade base image",
        "description": "d",
        "requiredInputs": [{"name": "targetImage", "label": "Target image"}, {"name": "team", "label": "Team"}],
        "steps": [{"name": "bump", "migratorApp": "demo"}, {"name": "cleanup", "migratorApp": "demo"}],
        "candidates": [
            {"id": "a", "kind": "service", "metadata": {"team": "payments"}},
            {"id": "b", "kind": "service", "steps": [{"name": "only-this", "migratorApp": "demo"}]},
        ],
        "migratorUrl": "http://127.0.0.1:9",
    }
)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def notifier() -> FakeNotifier:
    return FakeNotifier()


@pytest.fixture
async def service(tmp_path, engine: FakeEngine, notifier: FakeNotifier) -> LoomService:
    store = SqlStore(f"sqlite:///{tmp_path / 'loom.db'}")
    store.upgrade_schema()
    service = LoomService(store, engine, notifier, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    await service.announce(ANNOUNCEMENT)
    return service


async def test_start_sends_a_manifest_with_inputs_and_marks_the_candidate_running(
    service: LoomService, engine: FakeEngine
) -> None:
    await service.start_run("base-image", "a", {"targetImage": "debian:13"}, actor="ana")
    manifest = engine.started["base-image__a"]
    assert manifest.inputs == {"targetImage": "debian:13"}
    assert [s.name for s in manifest.steps] == ["bump", "cleanup"]
    assert (await service.get_candidate("base-image", "a")).status == CandidateStatus.RUNNING


async def test_a_candidates_own_steps_replace_the_migrations(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run("base-image", "b", {"targetImage": "x", "team": "t"}, actor="ana")
    assert [s.name for s in engine.started["base-image__b"].steps] == ["only-this"]


async def test_start_without_required_inputs_names_the_missing_ones(service: LoomService) -> None:
    with pytest.raises(errors.InvalidInput, match="targetImage"):
        await service.start_run("base-image", "b", {"team": "t"}, actor="ana")
    assert (await service.get_candidate("base-image", "b")).status == CandidateStatus.NOT_STARTED


async def test_metadata_prefills_a_required_input(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run("base-image", "a", {"targetImage": "x"}, actor="ana")
    assert "base-image__a" in engine.started


async def test_unknown_input_keys_are_refused(service: LoomService) -> None:
    with pytest.raises(errors.InvalidInput, match="Unknown inputs: colour"):
        await service.start_run("base-image", "a", {"targetImage": "x", "colour": "red"}, actor="ana")


async def test_starting_twice_is_a_conflict(service: LoomService) -> None:
    await service.start_run("base-image", "a", {"targetImage": "x"}, actor="ana")
    with pytest.raises(errors.CandidateAlreadyStarted):
        await service.start_run("base-image", "a", {"targetImage": "x"}, actor="ana")


async def test_a_failed_engine_start_leaves_the_candidate_not_started(service: LoomService, engine: FakeEngine) -> None:
    engine.fail_start = RuntimeError("Temporal is down")
    with pytest.raises(RuntimeError):
        await service.start_run("base-image", "a", {"targetImage": "x"}, actor="ana")
    assert (await service.get_candidate("base-image", "a")).status == CandidateStatus.NOT_STARTED


async def test_unknown_migration_and_candidate_are_not_found(service: LoomService) -> None:
    with pytest.raises(errors.MigrationNotFound):
        await service.start_run("nope", "a", {}, actor="ana")
    with pytest.raises(errors.CandidateNotFound):
        await service.start_run("base-image", "nope", {}, actor="ana")


async def test_run_actions_need_a_running_candidate(service: LoomService) -> None:
    for action in (
        service.cancel_run("base-image", "a", "ana"),
        service.retry_step("base-image", "a", "bump", "ana"),
        service.review_step("base-image", "a", "bump", True, "ana", None),
        service.mark_merged("base-image", "a", "bump", "ana"),
    ):
        with pytest.raises(errors.CandidateNotRunning):
            await action


async def test_input_updates_reach_a_running_run(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run("base-image", "a", {"targetImage": "x"}, actor="ana")
    await service.update_inputs("base-image", "a", {"targetImage": "y"}, actor="ana")
    assert engine.actions[-1] == ("inputs", "base-image__a", ("targetImage", "y"))
    assert await service.get_inputs("base-image", "a") == {"targetImage": "y"}


async def test_steps_of_a_candidate_without_a_run_are_not_found(service: LoomService) -> None:
    with pytest.raises(errors.RunNotFound):
        await service.candidate_steps("base-image", "a")


async def test_dry_run_sends_the_candidate_with_inputs_merged(service: LoomService, notifier: FakeNotifier) -> None:
    notifier.dry_run_result = DryRunResult(steps=[StepDryRunResult(step_name="bump", skipped=True)])
    result = await service.dry_run("base-image", DryRunCandidateRequest(candidate_id="a", inputs={"targetImage": "z"}))
    assert result.steps[0].skipped
    assert notifier.dry_runs[0].candidate.metadata == {"team": "payments", "targetImage": "z"}


async def test_dry_run_reports_an_unreachable_migrator(service: LoomService) -> None:
    with pytest.raises(errors.MigratorUnavailable):
        await service.dry_run("base-image", DryRunCandidateRequest(candidate_id="a"))
