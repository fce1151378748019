"""The SQL store on real SQLite and PostgreSQL: merge rules, read model, event log, schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from loom_backend.domain import (
    Candidate,
    CandidateFilter,
    CandidateStatus,
    EventType,
    MigrationAnnouncement,
    RunChange,
    StepEvent,
    StepResult,
    StepStatus,
)
from loom_backend.store.sql_store import SqlStore

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def announcement(candidate_ids: list[str], **overrides) -> MigrationAnnouncement:
    data = {
        "id": "base-image",
        "name": "Upgrade base image",
        "description": "Move every service to the new base image",
        "overview": ["Bump", "Verify"],
        "requiredInputs": [{"name": "targetImage", "label": "Target image"}],
        "steps": [
            {"name": "bump", "migratorApp": "demo"},
            {"name": "review", "migratorApp": "demo", "type": "manual-review"},
        ],
        "candidates": [
            {
                "id": cid,
                "kind": "service",
                "metadata": {"team": "payments"},
                "files": [
                    {"name": "app", "repo": cid, "files": [{"path": "Dockerfile", "url": "http://x/Dockerfile"}]}
                ],
            }
            for cid in candidate_ids
        ],
        "migratorUrl": "http://127.0.0.1:9000",
    }
    data.update(overrides)
    return MigrationAnnouncement.model_validate(data)


def test_schema_from_alembic_matches_the_tables_exactly(store: SqlStore) -> None:
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []


def test_upgrading_twice_changes_nothing(store: SqlStore) -> None:
    store.upgrade_schema()
    store.announce(announcement(["a"]), NOW)
    store.upgrade_schema()
    assert store.get_migration("base-image") is not None


def test_announce_stores_the_migration_with_its_candidates_in_order(store: SqlStore) -> None:
    store.announce(announcement(["b", "a", "c"]), NOW)
    migration = store.get_migration("base-image")
    assert migration is not None
    assert [c.id for c in migration.candidates] == ["b", "a", "c"]
    assert migration.required_inputs[0].name == "targetImage"
    assert migration.steps[1].type == "manual-review"
    assert migration.candidates[0].files[0].files[0].path == "Dockerfile"
    assert migration.created_at == NOW


def test_announcing_again_updates_in_place_and_keeps_created_at(store: SqlStore) -> None:
    store.announce(announcement(["a"]), NOW)
    store.announce(announcement(["a"], name="Renamed"), NOW + timedelta(hours=1))
    migration = store.get_migration("base-image")
    assert migration is not None
    assert migration.name == "Renamed"
    assert migration.created_at == NOW
    assert len(store.list_migrations()) == 1


def test_rediscovery_replaces_not_started_and_keeps_candidates_with_a_run(store: SqlStore) -> None:
    store.announce(announcement(["running", "done", "stale", "kept"]), NOW)
    assert store.claim_candidate("base-image", "running", {"targetImage": "v2"}) is None
    store.set_candidate_status("base-image", "done", CandidateStatus.COMPLETED)
    fresh = [
        Candidate(id="kept", kind="worker"),
        Candidate(id="new", kind="service"),
        Candidate(id="running", kind="changed"),
    ]
    store.submit_candidates("base-image", fresh, NOW)
    migration = store.get_migration("base-image")
    assert migration is not None
    by_id = {c.id: c for c in migration.candidates}
    assert set(by_id) == {"running", "done", "kept", "new"}
    assert by_id["kept"].kind == "worker"
    assert by_id["running"].kind == "service"
    assert by_id["running"].status == CandidateStatus.RUNNING
    assert by_id["done"].status == CandidateStatus.COMPLETED


def test_claiming_a_candidate_twice_fails_the_second_time(store: SqlStore) -> None:
    store.announce(announcement(["a"]), NOW)
    assert store.claim_candidate("base-image", "a", {"targetImage": "v2"}) is None
    assert store.claim_candidate("base-image", "a", {}) == CandidateStatus.RUNNING
    assert store.get_inputs("base-image", "a") == {"targetImage": "v2"}


def test_candidates_filter_by_status_kind_text_and_metadata_with_exact_totals(store: SqlStore) -> None:
    ann = announcement([f"svc-{i:03d}" for i in range(30)])
    ann.candidates[0].kind = "worker"
    ann.candidates[1].metadata = {"team": "search"}
    store.announce(ann, NOW)
    store.claim_candidate("base-image", "svc-002", {})
    assert store.list_candidates("base-image", limit=10).total == 30
    assert len(store.list_candidates("base-image", limit=10).candidates) == 10
    assert store.list_candidates("base-image", limit=10, offset=25).candidates[0].id == "svc-025"
    assert store.list_candidates("base-image", CandidateFilter(status=CandidateStatus.RUNNING)).total == 1
    assert store.list_candidates("base-image", CandidateFilter(kind="worker")).total == 1
    assert store.list_candidates("base-image", CandidateFilter(q="SVC-01")).total == 10
    assert store.list_candidates("base-image", CandidateFilter(q="search")).total == 1
    assert (
        store.list_candidates("base-image", CandidateFilter(metadata={"team": "search"})).candidates[0].id == "svc-001"
    )


def test_the_text_filter_takes_percent_and_underscore_literally(store: SqlStore) -> None:
    ann = announcement(["svc_one", "svc-two", "svc-three"])
    ann.candidates[2].metadata = {"note": "50% done"}
    store.announce(ann, NOW)

    def found(text: str) -> list[str]:
        return sorted(c.id for c in store.list_candidates("base-image", CandidateFilter(q=text)).candidates)

    assert found("%") == ["svc-three"]
    assert found("_") == ["svc_one"]
    assert found("svc_") == ["svc_one"]
    assert found("\\") == []
    assert found("svc") == ["svc-three", "svc-two", "svc_one"]


def test_board_view_shows_current_step_pr_link_and_attention(store: SqlStore) -> None:
    store.announce(announcement(["a", "b"]), NOW)
    store.claim_candidate("base-image", "a", {})
    run = "base-image__a"
    store.save_step_result(
        run,
        "base-image",
        StepResult(
            step_name="bump",
            candidate_id="a",
            status=StepStatus.MERGED,
            pr_url="http://pr/1",
            started_at=NOW,
            updated_at=NOW,
        ),
    )
    store.save_step_result(
        run,
        "base-image",
        StepResult(
            step_name="review",
            candidate_id="a",
            status=StepStatus.AWAITING_REVIEW,
            started_at=NOW + timedelta(seconds=1),
            updated_at=NOW,
        ),
    )
    view = store.list_candidates("base-image", candidate_id="a").candidates[0]
    assert (view.current_step, view.current_step_status, view.pr_url) == (
        "review",
        StepStatus.AWAITING_REVIEW,
        "http://pr/1",
    )
    assert view.needs_attention
    assert store.list_candidates("base-image", CandidateFilter(needs_attention=True)).total == 1
    summary = store.list_migrations()[0]
    assert summary.needs_attention == 1
    assert summary.candidate_counts == {
        CandidateStatus.NOT_STARTED: 1,
        CandidateStatus.RUNNING: 1,
        CandidateStatus.COMPLETED: 0,
    }


def test_step_results_upsert_by_step_and_reset_forgets_them(store: SqlStore) -> None:
    store.announce(announcement(["a"]), NOW)
    for status in (StepStatus.IN_PROGRESS, StepStatus.OPEN):
        store.save_step_result(
            "base-image__a", "base-image", StepResult(step_name="bump", candidate_id="a", status=status, started_at=NOW)
        )
    assert [r.status for r in store.step_results("base-image__a")] == [StepStatus.OPEN]
    store.reset_run("base-image", "a")
    assert store.step_results("base-image__a") == []


def test_reset_run_never_reaches_another_migrations_run_of_the_same_id(store: SqlStore) -> None:
    """`acme` / `svc__api` and a Migration `acme__svc` stored before ids were checked share a Run id."""
    result = StepResult(step_name="bump", candidate_id="svc__api", status=StepStatus.OPEN, started_at=NOW)
    store.save_step_result("acme__svc__api", "acme", result)
    store.reset_run("acme__svc", "api")
    assert [r.status for r in store.step_results("acme__svc__api")] == [StepStatus.OPEN]
    store.reset_run("acme", "svc__api")
    assert store.step_results("acme__svc__api") == []


def test_a_retried_batch_of_run_changes_writes_each_row_once(store: SqlStore) -> None:
    store.announce(announcement(["a"]), NOW)
    run = "base-image__a"

    def event(event_type: EventType, at: datetime, **fields) -> StepEvent:
        return StepEvent(
            run_id=run, migration_id="base-image", candidate_id="a", event_type=event_type, created_at=at, **fields
        )

    done = NOW + timedelta(seconds=30)
    first = [
        RunChange(candidate_status=CandidateStatus.RUNNING),
        RunChange(event=event(EventType.RUN_STARTED, NOW, actor="ana"), event_key="w:1"),
        RunChange(step_result=StepResult(step_name="bump", candidate_id="a", status=StepStatus.IN_PROGRESS)),
        RunChange(event=event(EventType.STEP_DISPATCHED, NOW, step_name="bump"), event_key="w:2"),
    ]
    merged = StepResult(
        step_name="bump", candidate_id="a", status=StepStatus.MERGED, pr_url="http://x/pr/1", completed_at=done
    )
    last = [
        RunChange(step_result=merged),
        RunChange(
            event=event(EventType.STEP_COMPLETED, done, step_name="bump", status="merged", duration_ms=30_000),
            event_key="w:3",
        ),
        RunChange(candidate_status=CandidateStatus.COMPLETED),
        RunChange(event=event(EventType.RUN_COMPLETED, done), event_key="w:4"),
    ]
    for batch in (first, first, last, last):
        store.apply_run_changes(run, "base-image", "a", batch)
    assert store.get_candidate("base-image", "a").status == CandidateStatus.COMPLETED
    assert store.step_results(run) == [merged]
    assert store.list_events("base-image").total == 4
    overview = store.metrics_overview("base-image")
    assert (overview.runs_started, overview.runs_completed, overview.median_run_duration_ms) == (1, 1, 30_000)
    [bump] = store.step_metrics("base-image").steps
    assert (bump.count, bump.succeeded, bump.p50_duration_ms) == (1, 1, 30_000)


def test_event_log_appends_each_key_once_and_pages_newest_first(store: SqlStore) -> None:
    store.announce(announcement(["a"]), NOW)
    for i in range(5):
        event = StepEvent(
            run_id="base-image__a",
            migration_id="base-image",
            candidate_id="a",
            step_name="bump",
            event_type=EventType.STEP_DISPATCHED,
            actor="ana" if i % 2 else None,
            created_at=NOW + timedelta(seconds=i),
        )
        assert store.append_event(event, key=f"k{i}")
    assert not store.append_event(event, key="k4")
    page = store.list_events("base-image", limit=2)
    assert page.total == 5
    assert [e.created_at for e in page.events] == [NOW + timedelta(seconds=4), NOW + timedelta(seconds=3)]
    assert store.list_events("base-image", actor="ana").total == 2
    assert store.list_events("base-image", event_type=EventType.RUN_STARTED).total == 0


def test_rollout_progress_shows_the_failed_step_its_failures_the_review_waiting_and_rejections(
    store: SqlStore,
) -> None:
    store.announce(announcement(["a", "b"]), NOW)
    for cid in ("a", "b"):
        store.claim_candidate("base-image", cid, {})

    def event(cid: str, step: str, event_type: EventType, at: int, status: StepStatus | None = None) -> None:
        e = StepEvent(
            run_id=f"base-image__{cid}",
            migration_id="base-image",
            candidate_id=cid,
            step_name=step,
            event_type=event_type,
            status=status,
            created_at=NOW + timedelta(seconds=at),
        )
        store.append_event(e, key=f"{cid}-{step}-{event_type}-{at}")

    event("a", "bump", EventType.STEP_COMPLETED, -10, StepStatus.FAILED)  # before the rollout: not counted
    event("a", "bump", EventType.STEP_COMPLETED, 1, StepStatus.FAILED)
    event("a", "bump", EventType.STEP_COMPLETED, 2, StepStatus.FAILED)
    failed_at = NOW + timedelta(seconds=2)
    store.save_step_result(
        "base-image__a",
        "base-image",
        StepResult(step_name="bump", candidate_id="a", status=StepStatus.FAILED, started_at=NOW, updated_at=failed_at),
    )
    event("b", "review", EventType.REVIEW_REJECTED, 1)
    event("b", "review", EventType.STEP_COMPLETED, 1, StepStatus.FAILED)
    store.save_step_result(
        "base-image__b",
        "base-image",
        StepResult(step_name="review", candidate_id="b", status=StepStatus.AWAITING_REVIEW, started_at=NOW),
    )
    seen = store.rollout_progress("base-image", ["a", "b"], None, NOW).members
    a, b = seen["a"], seen["b"]
    assert (a.failing, a.failed_step, a.step_failures, a.failures, a.failed_at) == (True, "bump", 2, 2, failed_at)
    assert (a.review_step, a.rejected) == (None, [])
    assert (b.failing, b.failed_step, b.review_step, b.rejected) == (False, None, "review", ["review"])
