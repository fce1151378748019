"""What the pages show, built from domain objects without Reflex: the Step timeline, board cards, Needs me rows."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from loom_backend.domain import (
    MAX_INPUT_LENGTH,
    CandidatePage,
    CandidateStatus,
    CandidateView,
    DispatchRetry,
    EventType,
    InputDefinition,
    MigrationSummary,
    StepDefinition,
    StepEvent,
    StepResult,
    StepStatus,
)
from loom_backend.service import WaitingStep
from loom_ui.views.board import PAGE_SIZE, card_view, column_view, shared_column_view
from loom_ui.views.candidate import left_open_prs, step_views
from loom_ui.views.common import InputField, entered, has_errors, input_fields, with_error, with_value
from loom_ui.views.inbox import waiting_row
from loom_ui.views.palette import PAGES, palette_items

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PLAN = [
    StepDefinition(name="bump", migrator_app="m", description="Bump the tag"),
    StepDefinition(name="review", migrator_app="m", type="manual-review", instructions="Check the dashboards"),
]
RETRY = DispatchRetry(
    attempt=2, error="503 Service Unavailable: restarting", next_attempt_at=NOW + timedelta(seconds=40)
)


def result(step: str, status: StepStatus, **metadata: str) -> StepResult:
    return StepResult(
        step_name=step, candidate_id="c", status=status, metadata=metadata, started_at=NOW - timedelta(minutes=2)
    )


def test_a_failed_step_of_a_running_candidate_offers_retry_and_shows_its_error_apart_from_metadata() -> None:
    steps = step_views(
        PLAN, [result("bump", StepStatus.FAILED, error="helm failed", attempt="1")], CandidateStatus.RUNNING, NOW
    )
    bump, review = steps
    assert (bump.can_retry, bump.can_review, bump.can_mark_merged) == (True, False, False)
    assert bump.error == "helm failed"
    assert [(m.key, m.value) for m in bump.meta] == [("attempt", "1")]
    assert (review.status_label, review.can_retry, review.number) == ("Not reached", False, 2)


def test_no_step_action_is_offered_once_the_run_is_not_running() -> None:
    results = [result("bump", StepStatus.FAILED, error="x"), result("review", StepStatus.AWAITING_REVIEW)]
    for status in (CandidateStatus.NOT_STARTED, CandidateStatus.COMPLETED):
        assert not any(s.can_retry or s.can_review or s.can_mark_merged for s in step_views(PLAN, results, status, NOW))


def test_a_review_step_offers_approval_with_its_instructions_and_an_open_pr_offers_mark_merged() -> None:
    results = [result("bump", StepStatus.OPEN), result("review", StepStatus.AWAITING_REVIEW)]
    bump, review = step_views(PLAN, results, CandidateStatus.RUNNING, NOW)
    assert bump.can_mark_merged and not bump.can_review
    assert review.can_review and review.instructions == "Check the dashboards"
    assert bump.instructions == ""


def test_steps_the_run_recorded_beyond_the_plan_follow_it_in_order() -> None:
    steps = step_views(PLAN, [result("hotfix", StepStatus.MERGED)], CandidateStatus.RUNNING, NOW)
    assert [(s.number, s.name) for s in steps] == [(1, "bump"), (2, "review"), (3, "hotfix")]


def test_a_step_waiting_for_an_unreachable_migrator_shows_the_retry_notice_and_not_its_raw_keys() -> None:
    (bump, _) = step_views(
        PLAN, [result("bump", StepStatus.IN_PROGRESS, **RETRY.metadata())], CandidateStatus.RUNNING, NOW
    )
    assert bump.retrying == "Migrator unreachable, retrying — attempt 2, next in 40 s"
    assert bump.retry_error == "503 Service Unavailable: restarting"
    assert bump.meta == [] and bump.error == ""


def candidate(status: CandidateStatus = CandidateStatus.RUNNING, **progress: object) -> CandidateView:
    return CandidateView(id="orders", kind="service", status=status, metadata={"team": "a", "tier": "1"}, **progress)


def test_a_board_card_marks_a_candidate_whose_migrator_is_unreachable() -> None:
    card = card_view(
        "m1", candidate(current_step="bump", current_step_status=StepStatus.IN_PROGRESS, dispatch_retry=RETRY), NOW
    )
    assert card.retrying.startswith("Migrator unreachable, retrying — attempt 2, next in 40 s")
    assert RETRY.error in card.retrying
    assert (card.step_label, card.attention, card.href) == ("In progress", "", "/migrations/m1/candidates/orders")
    assert (
        card_view("m1", candidate(current_step="bump", current_step_status=StepStatus.IN_PROGRESS), NOW).retrying == ""
    )


def test_a_card_needs_attention_when_its_step_failed_and_only_not_started_cards_are_selectable() -> None:
    failed = card_view("m1", candidate(current_step="bump", current_step_status=StepStatus.FAILED), NOW)
    assert (failed.attention, failed.selectable) == ("failed", False)
    assert card_view("m1", candidate(CandidateStatus.NOT_STARTED), NOW).selectable


def test_a_column_offers_at_most_one_page_more_of_what_it_does_not_show() -> None:
    page = CandidatePage(candidates=[candidate(CandidateStatus.NOT_STARTED)], total=5_000, limit=50, offset=0)
    column = column_view("m1", CandidateStatus.NOT_STARTED, "Not started", page, NOW)
    assert (column.total_text, column.more, len(column.cards)) == ("5,000", PAGE_SIZE, 1)


def test_tabs_given_the_same_shared_page_share_its_column_view_and_a_new_page_gets_its_own() -> None:
    page = CandidatePage(candidates=[candidate(CandidateStatus.RUNNING)], total=1, limit=50, offset=0)
    first = shared_column_view("m1", CandidateStatus.RUNNING, "Running", page, NOW)
    assert shared_column_view("m1", CandidateStatus.RUNNING, "Running", page, NOW + timedelta(seconds=1)) is first
    again = page.model_copy(deep=True)  # the next change's read: equal, yet read anew
    assert shared_column_view("m1", CandidateStatus.RUNNING, "Running", again, NOW) is not first
    assert shared_column_view("m1", CandidateStatus.RUNNING, "Running", again, NOW) == first


def test_inputs_are_filled_from_saved_inputs_before_metadata_and_only_typed_values_are_sent() -> None:
    required = [InputDefinition(name="image", label="Image"), InputDefinition(name="team", label="Team")]
    fields = input_fields(required, {"image": "base:2"}, {"image": "base:1", "team": "a"})
    assert [(f.name, f.value) for f in fields] == [("image", "base:2"), ("team", "a")]
    assert entered(with_value(fields, "team", "  ")) == {"image": "base:2"}
    assert input_fields(required) == [InputField("image", "Image"), InputField("team", "Team")]


def test_needs_me_offers_the_one_action_each_waiting_step_allows() -> None:
    def row(status: StepStatus, reason: str) -> tuple[bool, bool, bool]:
        r = waiting_row(WaitingStep("m1", "M", result("bump", status, error="boom"), reason, NOW), NOW)
        return r.can_approve, r.can_retry, r.can_mark_merged

    assert row(StepStatus.AWAITING_REVIEW, "review") == (True, False, False)
    assert row(StepStatus.FAILED, "failed") == (False, True, False)
    assert row(StepStatus.OPEN, "open_pr") == (False, False, True)


def test_the_view_builders_import_no_reflex() -> None:
    code = "import sys, loom_ui.views.board, loom_ui.views.candidate, loom_ui.views.inbox, loom_ui.views.preview; "
    code += "sys.exit('reflex' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- issue 17: the rough edges a new operator hit -------------------------------------------------


def test_review_instructions_show_once_filled_in_from_the_candidate_and_its_inputs() -> None:
    """Item 3: the yellow box holds the filled-in text; no grey chip repeats it."""
    plan = [StepDefinition(name="review", migrator_app="m", instructions="Check {id} runs {targetImage} ({nope})")]
    (review,) = step_views(
        plan,
        [result("review", StepStatus.AWAITING_REVIEW)],
        CandidateStatus.RUNNING,
        NOW,
        values={"id": "checkout", "targetImage": "base:2"},
    )
    assert review.instructions == "Check checkout runs base:2 ({nope})"
    (sent,) = step_views(
        plan,
        [result("review", StepStatus.AWAITING_REVIEW, instructions="From the Migrator")],
        CandidateStatus.RUNNING,
        NOW,
    )
    assert (sent.instructions, sent.meta) == ("From the Migrator", [])


def test_a_step_the_candidates_own_plan_leaves_out_stays_in_place_marked_skipped() -> None:
    """Item 6: the numbers do not shift once a Run starts, and the skipped Step says so."""
    migration_plan = [*PLAN, StepDefinition(name="rollout", migrator_app="m")]
    own = [PLAN[0], migration_plan[2]]
    steps = step_views(
        own, [result("bump", StepStatus.COMPLETED)], CandidateStatus.RUNNING, NOW, migration_plan=migration_plan
    )
    assert [(s.number, s.name, s.status, s.skipped) for s in steps] == [
        (1, "bump", "completed", False),
        (2, "review", "skipped", True),
        (3, "rollout", "", False),
    ]
    assert steps[1].status_label == "Skipped" and not steps[1].can_review


def event(
    kind: EventType, step: str | None = None, status: str | None = None, minute: int = 0, **meta: str
) -> StepEvent:
    return StepEvent(
        run_id="m1__c",
        migration_id="m1",
        candidate_id="c",
        step_name=step,
        event_type=kind,
        status=status,
        metadata=meta,
        created_at=NOW + timedelta(minutes=minute),
    )


def test_a_cancelled_run_leaves_behind_the_prs_it_opened_that_never_merged() -> None:
    """Item 9: read from the event log, since the Run's Steps reset when it is cancelled."""
    history = [
        event(EventType.RUN_STARTED, minute=0),
        event(EventType.STEP_UPDATED, "bump", "open", 1, prUrl="https://git/pr/1"),
        event(EventType.STEP_UPDATED, "bump", "merged", 2),
        event(EventType.STEP_UPDATED, "chart", "open", 3, prUrl="https://git/pr/2"),
        event(EventType.RUN_CANCELLED, minute=4),
    ]
    assert [(p.step, p.pr_url) for p in left_open_prs(list(reversed(history)))] == [("chart", "https://git/pr/2")]
    assert left_open_prs([*history, event(EventType.RUN_STARTED, minute=5)]) == []
    assert left_open_prs(history[:-1]) == []


def test_an_input_over_the_limit_or_only_spaces_gets_an_error_on_its_field_before_submit() -> None:
    """Item 8: the form checks what the service will check, and shows the service's refusal on the field it names."""
    fields = input_fields([InputDefinition(name="image", label="Image")])
    too_long = with_value(fields, "image", "x" * (MAX_INPUT_LENGTH + 1))
    assert "at most 1,000" in too_long[0].error and has_errors(too_long)
    assert "only spaces" in with_value(fields, "image", "   ")[0].error
    assert not has_errors(with_value(too_long, "image", "base:2"))
    shown = with_error(fields, "inputs.image", "Image is refused")
    assert shown is not None and shown[0].error == "Image is refused"
    assert with_error(fields, "comment", "no") is None


def test_the_palette_matches_pages_migrations_and_candidates_by_what_was_typed() -> None:
    """Item 14: every page with nothing typed; typing narrows to what contains it."""
    migrations = [
        MigrationSummary(id=mid, name=name, description="", steps=[], migrator_url="http://m", created_at=NOW)
        for mid, name in (("base-image", "Upgrade base image"), ("helm", "Helm 3"))
    ]
    everything = palette_items("", migrations, [])
    assert [i.label for i in everything] == [label for label, _ in PAGES] + ["Upgrade base image", "Helm 3"]
    found = palette_items("base", migrations, [("base-image", candidate(CandidateStatus.RUNNING))])
    assert [(i.hint, i.href) for i in found] == [
        ("Migration", "/migrations/base-image"),
        ("Candidate of base-image", "/migrations/base-image/candidates/orders"),
    ]


def test_the_rollout_panel_says_the_policy_the_wave_and_what_an_operator_can_do() -> None:
    from loom_backend.rollout import RolloutCounts, RolloutPhase, RolloutPolicy, RolloutStatus, WaveView
    from loom_ui.views.board import rollout_view

    assert not rollout_view(RolloutStatus(state=RolloutPhase.IDLE, policy=RolloutPolicy(max_running=2))).shown
    policy = RolloutPolicy(max_running=5, waves=[3, "100%"], pause_after_failures=3)
    waiting = rollout_view(
        RolloutStatus(
            state=RolloutPhase.WAITING_FOR_PROMOTION,
            policy=policy,
            wave=WaveView(index=0, count=2, size=3, completed=3),
            counts=RolloutCounts(queued=57, completed=3),
            gate_waiting=True,
        )
    )
    assert waiting.policy == "at most 5 running · waves 3, 100% (manual gate) · pauses after 3 failed"
    assert waiting.wave == "Wave 1 of 2: 3 of 3 completed"
    assert waiting.counts == "57 queued · 0 running · 3 completed · 0 failed"
    assert (waiting.can_promote, waiting.can_pause, waiting.can_resume) == (True, True, False)
    paused = rollout_view(RolloutStatus(state=RolloutPhase.PAUSED, policy=policy, paused_reason="paused by ana"))
    assert paused.reason == "paused by ana" and paused.can_resume and not paused.can_promote


def test_a_drift_check_reads_as_who_checked_when_and_what_is_left() -> None:
    from loom_backend.domain import DriftCheck, DryRunResult
    from loom_ui.views.candidate import drift_summary

    now = datetime(2026, 12, 1, 9, 5, tzinfo=UTC)
    check = DriftCheck(
        migration_id="m",
        candidate_id="c",
        drifted=True,
        changed_files=2,
        checked_at=datetime(2026, 12, 1, 9, 2, tzinfo=UTC),
        actor="ana",
        result=DryRunResult(steps=[]),
    )
    assert drift_summary(check, now) == "Checked 3 min ago by ana: the dry run still changes 2 files."
    clean = check.model_copy(update={"drifted": False, "changed_files": 0})
    assert drift_summary(clean, now).endswith("the dry run changes nothing: the change landed.")


def test_the_board_keeps_the_drifted_filter_in_its_url() -> None:
    from loom_ui.format import BoardFilter, board_query, parse_board_query

    assert board_query(BoardFilter(drifted=True)) == "?drifted=1"
    assert parse_board_query({"drifted": "1"}) == BoardFilter(drifted=True)
    assert BoardFilter(drifted=True).active
