"""Use cases of the service on in-memory fakes of its ports (no SQL, no Temporal, no HTTP), authorization included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loom_backend import errors
from loom_backend.auth import AccessControl, SignInThrottle, origin_refusal
from loom_backend.domain import (
    MAX_COMMENT_LENGTH,
    MAX_INPUT_LENGTH,
    Candidate,
    CandidateStatus,
    Credentials,
    DryRunCandidateRequest,
    DryRunResult,
    MigrationAnnouncement,
    Principal,
    Role,
    StepDryRunResult,
    StepResult,
    StepStatus,
    StepStatusEvent,
    TokenKind,
)
from loom_backend.service import LoomService
from tests.fakes import (
    ADMIN,
    OPERATOR,
    VIEWER,
    FakeAuthStore,
    FakeBoard,
    FakeEngine,
    FakeMetrics,
    FakeNotifier,
    FakeRegistry,
    FakeRunStore,
)

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
NOW = datetime(2026, 11, 1, tzinfo=UTC)
EVENT = StepStatusEvent(step_name="bump", candidate_id="a", status=StepStatus.COMPLETED)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def notifier() -> FakeNotifier:
    return FakeNotifier()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def board(registry: FakeRegistry) -> FakeBoard:
    return FakeBoard(registry)


@pytest.fixture
def access(registry: FakeRegistry) -> AccessControl:
    return AccessControl(FakeAuthStore(registry))


def build(
    registry: FakeRegistry,
    access: AccessControl,
    engine: FakeEngine,
    notifier: FakeNotifier,
    board: FakeBoard | None = None,
    **options: Any,
) -> LoomService:
    return LoomService(
        registry=registry,
        runs=FakeRunStore(registry),
        board=board or FakeBoard(registry),
        metrics=FakeMetrics(),
        engine=engine,
        notifier=notifier,
        access=access,
        **options,
    )


def migrator_token(access: AccessControl, name: str = "demo") -> tuple[Principal, str]:
    """A Migrator token's principal, as authentication would find it, and its secret."""
    _, secret = access.create_token(TokenKind.MIGRATOR, name)
    principal = access.bearer(secret)
    assert principal is not None
    return principal, secret


@pytest.fixture
def migrator(access: AccessControl) -> Principal:
    return migrator_token(access)[0]


@pytest.fixture
async def service(
    registry: FakeRegistry,
    access: AccessControl,
    engine: FakeEngine,
    notifier: FakeNotifier,
    board: FakeBoard,
    migrator: Principal,
) -> LoomService:
    service = build(registry, access, engine, notifier, board, clock=lambda: NOW, open_pr_attention_hours=24)
    await service.announce(migrator, ANNOUNCEMENT)
    return service


async def test_start_sends_a_manifest_with_inputs_and_marks_the_candidate_running(
    service: LoomService, engine: FakeEngine
) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "debian:13"})
    manifest = engine.started["base-image__a"]
    assert manifest.inputs == {"targetImage": "debian:13"}
    assert [s.name for s in manifest.steps] == ["bump", "cleanup"]
    assert (await service.get_candidate(VIEWER, "base-image", "a")).status == CandidateStatus.RUNNING


async def test_a_candidates_own_steps_replace_the_migrations(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run(OPERATOR, "base-image", "b", {"targetImage": "x", "team": "t"})
    assert [s.name for s in engine.started["base-image__b"].steps] == ["only-this"]


async def test_start_without_required_inputs_names_the_missing_ones(service: LoomService) -> None:
    with pytest.raises(errors.InvalidInput, match="targetImage"):
        await service.start_run(OPERATOR, "base-image", "b", {"team": "t"})
    assert (await service.get_candidate(VIEWER, "base-image", "b")).status == CandidateStatus.NOT_STARTED


async def test_metadata_prefills_a_required_input(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    assert "base-image__a" in engine.started


async def test_unknown_input_keys_are_refused(service: LoomService) -> None:
    with pytest.raises(errors.InvalidInput, match="Unknown inputs: colour"):
        await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x", "colour": "red"})


async def test_starting_twice_is_a_conflict(service: LoomService) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    with pytest.raises(errors.CandidateAlreadyStarted):
        await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})


async def test_a_failed_engine_start_leaves_the_candidate_not_started(service: LoomService, engine: FakeEngine) -> None:
    engine.fail_start = RuntimeError("Temporal is down")
    with pytest.raises(RuntimeError):
        await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    assert (await service.get_candidate(VIEWER, "base-image", "a")).status == CandidateStatus.NOT_STARTED


async def test_unknown_migration_and_candidate_are_not_found(service: LoomService) -> None:
    with pytest.raises(errors.MigrationNotFound):
        await service.start_run(OPERATOR, "nope", "a", {})
    with pytest.raises(errors.CandidateNotFound):
        await service.start_run(OPERATOR, "base-image", "nope", {})


async def test_run_actions_need_a_running_candidate(service: LoomService) -> None:
    for action in (
        service.cancel_run(OPERATOR, "base-image", "a"),
        service.retry_step(OPERATOR, "base-image", "a", "bump"),
        service.review_step(OPERATOR, "base-image", "a", "bump", True),
        service.mark_merged(OPERATOR, "base-image", "a", "bump"),
    ):
        with pytest.raises(errors.CandidateNotRunning):
            await action


async def test_input_updates_reach_a_running_run(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    await service.update_inputs(OPERATOR, "base-image", "a", {"targetImage": "y"})
    assert engine.actions[-1] == ("inputs", "base-image__a", ("targetImage", "y"))
    assert await service.get_inputs(VIEWER, "base-image", "a") == {"targetImage": "y"}


async def test_steps_of_a_candidate_without_a_run_are_not_found(service: LoomService) -> None:
    with pytest.raises(errors.RunNotFound):
        await service.candidate_steps(VIEWER, "base-image", "a")


async def test_dry_run_sends_the_candidate_with_inputs_merged(service: LoomService, notifier: FakeNotifier) -> None:
    notifier.dry_run_result = DryRunResult(steps=[StepDryRunResult(step_name="bump", skipped=True)])
    result = await service.dry_run(
        OPERATOR, "base-image", DryRunCandidateRequest(candidate_id="a", inputs={"targetImage": "z"})
    )
    assert result.steps[0].skipped
    assert notifier.dry_runs[0].candidate.metadata == {"team": "payments", "targetImage": "z"}


async def test_dry_run_reports_an_unreachable_migrator(service: LoomService) -> None:
    with pytest.raises(errors.MigratorUnavailable):
        await service.dry_run(OPERATOR, "base-image", DryRunCandidateRequest(candidate_id="a"))


# -- who may do what ------------------------------------------------------------------------------


async def test_a_viewer_reads_and_previews_but_may_not_drive_runs(service: LoomService, notifier: FakeNotifier) -> None:
    assert (await service.get_migration(VIEWER, "base-image")).name == "Upgrade base image"
    with pytest.raises(errors.Forbidden, match="vera is a viewer; this needs the operator role"):
        await service.start_run(VIEWER, "base-image", "a", {"targetImage": "x"})
    notifier.dry_run_result = DryRunResult(steps=[])
    assert (await service.dry_run(VIEWER, "base-image", DryRunCandidateRequest(candidate_id="a"))).steps == []
    assert (await service.get_candidate(VIEWER, "base-image", "a")).status == CandidateStatus.NOT_STARTED


async def test_an_admin_may_do_what_an_operator_may(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run(ADMIN, "base-image", "a", {"targetImage": "x"})
    assert engine.actions[-1] == ("start", "base-image__a", "root")


async def test_the_actor_recorded_is_the_principals_name(service: LoomService, engine: FakeEngine) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    await service.retry_step(OPERATOR, "base-image", "a", "bump")
    await service.cancel_run(OPERATOR, "base-image", "a")
    assert [a[-1] for a in engine.actions] == ["ana", "ana", "ana"]


async def test_a_migrator_token_may_not_read_or_drive_runs(service: LoomService, migrator: Principal) -> None:
    with pytest.raises(errors.Forbidden, match="Migrator tokens may only call the Migrator routes"):
        await service.list_migrations(migrator)
    with pytest.raises(errors.Forbidden):
        await service.start_run(migrator, "base-image", "a", {"targetImage": "x"})


async def test_an_operator_may_not_announce(service: LoomService) -> None:
    with pytest.raises(errors.Forbidden, match="operator token"):
        await service.announce(OPERATOR, ANNOUNCEMENT)


async def test_an_operators_callback_is_a_manual_override_recorded_with_the_operator_as_actor(
    service: LoomService, engine: FakeEngine
) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    await service.step_event(ADMIN, "base-image", "base-image__a", EVENT)
    await service.step_event(OPERATOR, "base-image", "base-image__a", EVENT)
    assert engine.actions[-2:] == [
        ("event", "base-image__a", "bump", "completed", "root"),
        ("event", "base-image__a", "bump", "completed", "ana"),
    ]


async def test_a_viewer_may_not_override_a_step_and_nobody_overrides_a_candidate_without_a_run(
    service: LoomService,
) -> None:
    with pytest.raises(errors.CandidateNotRunning):
        await service.step_event(OPERATOR, "base-image", "base-image__a", EVENT)
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    with pytest.raises(errors.Forbidden, match="vera is a viewer; this needs the operator role"):
        await service.step_event(VIEWER, "base-image", "base-image__a", EVENT)


async def test_a_starts_inputs_show_in_the_candidates_metadata(service: LoomService) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "debian:13"})
    candidate = await service.get_candidate(VIEWER, "base-image", "a")
    assert candidate.metadata == {"team": "payments", "targetImage": "debian:13"}


async def test_another_tokens_migration_is_refused(service: LoomService, access: AccessControl) -> None:
    other, _ = migrator_token(access, "other")
    with pytest.raises(errors.Forbidden, match="belongs to another Migrator token"):
        await service.announce(other, ANNOUNCEMENT)
    with pytest.raises(errors.Forbidden):
        await service.submit_candidates(other, "base-image", [])
    with pytest.raises(errors.Forbidden):
        await service.step_event(other, "base-image", "base-image__a", EVENT)


async def test_the_owners_callbacks_reach_the_run(
    service: LoomService, engine: FakeEngine, migrator: Principal
) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    await service.step_event(migrator, "base-image", "base-image__a", EVENT)
    await service.step_event(migrator, "base-image", "base-image__a", EVENT)  # the remembered answer
    assert engine.actions[-1] == ("event", "base-image__a", "bump", "completed")


async def test_a_failed_announce_releases_the_claim_so_another_token_may_announce(
    service: LoomService, access: AccessControl, notifier: FakeNotifier
) -> None:
    first, _ = migrator_token(access, "first")
    second, _ = migrator_token(access, "second")
    refused = ANNOUNCEMENT.model_copy(update={"id": "new-one", "migrator_url": "http://refused"})
    notifier.refused_urls.add("http://refused")
    with pytest.raises(errors.InvalidInput):
        await service.announce(first, refused)
    await service.announce(second, refused.model_copy(update={"migrator_url": "http://127.0.0.1:9"}))
    assert (await service.get_migration(VIEWER, "new-one")).migrator_url == "http://127.0.0.1:9"


async def test_authentication_asks_the_proxy_then_the_session_then_the_bearer_token(
    registry: FakeRegistry, engine: FakeEngine, notifier: FakeNotifier
) -> None:
    access = AccessControl(FakeAuthStore(registry), proxy_header="X-User")
    service = build(registry, access, engine, notifier)
    access.add_user("alice", Role.OPERATOR, "correct horse battery")
    session, _ = await service.login("alice", "correct horse battery")
    _, token = access.create_token(TokenKind.OPERATOR, "ci", Role.VIEWER)

    assert (await service.authenticate(Credentials(proxy_user="pat", session=session, bearer=token))).name == "pat"
    assert (await service.authenticate(Credentials(session=session, bearer=token))).name == "alice"
    await service.logout(session)
    assert (await service.authenticate(Credentials(session=session, bearer=token))).name == "ci"
    with pytest.raises(errors.Unauthenticated, match="session has expired"):
        await service.authenticate(Credentials(session=session))
    with pytest.raises(errors.Unauthenticated, match="Sign in"):
        await service.authenticate(Credentials())


async def test_migrator_authentication_wants_a_migrator_token(service: LoomService, access: AccessControl) -> None:
    _, operator_token = access.create_token(TokenKind.OPERATOR, "ci", Role.ADMIN)
    _, secret = migrator_token(access, "fresh")
    assert (await service.authenticate_migrator(secret)).name == "fresh"
    with pytest.raises(errors.Forbidden, match="operator token"):
        await service.authenticate_migrator(operator_token)
    with pytest.raises(errors.Unauthenticated, match="Migrator routes need"):
        await service.authenticate_migrator(None)
    with pytest.raises(errors.Unauthenticated, match="not valid"):
        await service.authenticate_migrator("loom_m_unknown")


# -- reading -------------------------------------------------------------------------------------


async def test_re_discovery_keeps_a_candidate_with_a_run_and_drops_an_unstarted_one(
    service: LoomService, migrator: Principal
) -> None:
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    await service.submit_candidates(migrator, "base-image", [Candidate(id="c", kind="service")])
    page = await service.list_candidates(VIEWER, "base-image")
    assert {c.id: c.status for c in page.candidates} == {"c": CandidateStatus.NOT_STARTED, "a": CandidateStatus.RUNNING}


async def test_reads_of_an_unknown_migration_are_not_found(service: LoomService) -> None:
    with pytest.raises(errors.MigrationNotFound):
        await service.list_candidates(VIEWER, "nope")
    with pytest.raises(errors.MigrationNotFound):
        await service.metrics_timeline(VIEWER, 30, "nope")


async def test_the_timeline_is_limited_to_a_year(service: LoomService) -> None:
    with pytest.raises(errors.InvalidInput, match="between 1 and 365"):
        await service.metrics_timeline(VIEWER, 366)
    assert (await service.metrics_timeline(VIEWER, 7, "base-image")).migration_id == "base-image"


async def test_the_activity_marker_moves_when_a_run_starts(service: LoomService) -> None:
    before = await service.activity_marker(VIEWER, "base-image")
    await service.start_run(OPERATOR, "base-image", "a", {"targetImage": "x"})
    assert await service.activity_marker(VIEWER, "base-image") != before


async def test_needs_me_lists_prs_open_longer_than_the_configured_hours(service: LoomService, board: FakeBoard) -> None:
    def open_pr(cid: str, hours: float) -> tuple[str, StepResult]:
        step = StepResult(
            step_name="bump", candidate_id=cid, status=StepStatus.OPEN, updated_at=NOW - timedelta(hours=hours)
        )
        return ("base-image", step)

    board.waiting = [open_pr("a", 30), open_pr("b", 2)]
    waiting = await service.needs_me(VIEWER)
    assert [(w.step.candidate_id, w.reason, w.migration_name) for w in waiting] == [
        ("a", "open_pr", "Upgrade base image")
    ]


async def test_the_csv_export_starts_with_the_columns_and_needs_a_known_migration(service: LoomService) -> None:
    with pytest.raises(errors.MigrationNotFound):
        await anext(service.export_candidates(VIEWER, "nope"))


# -- what an operator types ---------------------------------------------------------------------


async def test_an_input_longer_than_the_limit_or_only_spaces_is_refused_on_the_field_and_nothing_is_saved(
    service: LoomService, registry: FakeRegistry
) -> None:
    for value, words in (("x" * (MAX_INPUT_LENGTH + 1), "at most 1,000"), ("   ", "only spaces")):
        for call in (
            service.update_inputs(OPERATOR, "base-image", "a", {"targetImage": value}),
            service.start_run(OPERATOR, "base-image", "a", {"targetImage": value}),
            service.dry_run(OPERATOR, "base-image", DryRunCandidateRequest(candidate_id="a", inputs={"team": value})),
        ):
            with pytest.raises(errors.InvalidInput, match=words) as refused:
                await call
            assert refused.value.field in ("inputs.targetImage", "inputs.team")
    assert await service.get_inputs(OPERATOR, "base-image", "a") == {}
    await service.update_inputs(OPERATOR, "base-image", "a", {"targetImage": "x" * MAX_INPUT_LENGTH})


async def test_a_review_comment_longer_than_the_limit_or_only_spaces_is_refused(
    service: LoomService, engine: FakeEngine
) -> None:
    for comment in ("c" * (MAX_COMMENT_LENGTH + 1), " \n "):
        with pytest.raises(errors.InvalidInput) as refused:
            await service.review_step(OPERATOR, "base-image", "a", "bump", True, comment)
        assert refused.value.field == "comment"
    assert engine.actions == []


# -- cross-site requests and sign-in throttling ------------------------------------------------


@pytest.mark.parametrize(
    ("source", "required", "refused"),
    [
        ("http://loom.example:3000", True, False),  # the Host the request went to
        ("https://loom.example:3000", True, False),  # behind a TLS proxy the scheme differs
        ("https://public.example", True, False),  # LOOM_PUBLIC_URL
        ("https://public.example/migrations/x?y=1", True, False),  # a Referer of Loom's own page
        ("http://evil.example", True, True),
        ("http://loom.example:3000.evil.example", True, True),
        ("null", True, True),
        ("javascript:alert(1)", True, True),
        (None, True, True),
        (None, False, False),  # a script signing in names no page
        ("null", False, True),
    ],
)
def test_only_looms_own_pages_count_as_the_source_of_a_write(source: str | None, required: bool, refused: bool) -> None:
    refusal = origin_refusal(source, "loom.example:3000", "https://public.example", required=required)
    assert (refusal is not None) == refused


async def test_a_session_write_is_checked_for_its_source_and_a_read_or_a_bearer_token_is_not(
    service: LoomService, access: AccessControl
) -> None:
    access.add_user("alice", Role.OPERATOR, "correct horse battery")
    session, _ = await service.login("alice", "correct horse battery")
    _, token = access.create_token(TokenKind.OPERATOR, "ci", Role.OPERATOR)
    evil = {"source": "http://evil.example", "host": "loom"}
    with pytest.raises(errors.CrossSiteRequest):
        await service.authenticate(Credentials(session=session, writes=True, **evil))
    assert (await service.authenticate(Credentials(session=session, **evil))).name == "alice"
    assert (await service.authenticate(Credentials(bearer=token, writes=True, **evil))).name == "ci"
    own = Credentials(session=session, writes=True, source="http://loom", host="loom")
    assert (await service.authenticate(own)).name == "alice"


def test_failed_sign_ins_count_in_a_sliding_window_per_account_and_per_address() -> None:
    now = [NOW]
    throttle = SignInThrottle(per_account=2, per_client=3, window_seconds=60, clock=lambda: now[0])
    throttle.failed("Alice", "10.0.0.1")
    now[0] += timedelta(seconds=20)
    throttle.failed("alice", "10.0.0.2")
    assert throttle.retry_after("ALICE", "10.0.0.9") == 40  # names are counted case-blind
    assert throttle.retry_after("bob", "10.0.0.1") is None
    throttle.failed("bob", "10.0.0.1")
    throttle.failed("carol", "10.0.0.1")
    assert throttle.retry_after("dave", "10.0.0.1") == 40
    now[0] += timedelta(seconds=40)
    assert throttle.retry_after("alice", "10.0.0.1") is None  # the first failure left the window


def test_the_throttle_forgets_old_keys_rather_than_grow_without_bound() -> None:
    now = [NOW]
    throttle = SignInThrottle(window_seconds=60, clock=lambda: now[0], max_keys=10)
    for i in range(100):
        now[0] += timedelta(seconds=61)
        throttle.failed(f"user-{i}", f"10.0.0.{i}")
    assert len(throttle._failures) <= 12


async def test_too_many_failed_sign_ins_refuse_even_the_right_password_for_a_while(
    registry: FakeRegistry, access: AccessControl, engine: FakeEngine, notifier: FakeNotifier
) -> None:
    now = [NOW]
    throttle = SignInThrottle(per_account=2, window_seconds=60, clock=lambda: now[0])
    service = build(registry, access, engine, notifier, sign_in_throttle=throttle)
    access.add_user("alice", Role.OPERATOR, "correct horse battery")
    for _ in range(2):
        with pytest.raises(errors.Unauthenticated):
            await service.login("alice", "wrong password", "10.0.0.1")
    with pytest.raises(errors.TooManySignIns) as refused:
        await service.login("alice", "correct horse battery", "10.0.0.2")
    assert refused.value.retry_after_seconds == 60
    now[0] += timedelta(seconds=60)
    assert (await service.login("alice", "correct horse battery", "10.0.0.2"))[1].name == "alice"


def test_the_service_links_a_run_only_when_a_temporal_ui_is_configured(
    registry: FakeRegistry, access: AccessControl, engine: FakeEngine, notifier: FakeNotifier
) -> None:
    from loom_backend.settings import Settings

    assert Settings(temporal_ui_url="http://localhost:8233").temporal_ui_url == "http://localhost:8233"
    with pytest.raises(ValueError):
        Settings(temporal_ui_url="javascript:alert(1)")
    plain = build(registry, access, engine, notifier)
    linked = build(registry, access, engine, notifier, temporal_ui_url="http://t:8233", temporal_namespace="prod")
    assert plain.workflow_url("m__c") is None
    assert linked.workflow_url("m__c") == "http://t:8233/namespaces/prod/workflows/m__c"
