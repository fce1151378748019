"""The metrics, history and Prometheus routes over ASGI, on a real database with a known event log."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import CandidateStatus, EventType, StepResult, StepStatus
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.credentials import new_credentials
from tests.fakes import VIEWER, FakeEngine, FakeNotifier
from tests.integration.test_metrics import DAY0, MIGRATION, T0, event, seconds
from tests.integration.test_metrics import history as history  # the fixture

NOW = T0 + timedelta(days=3)


@pytest.fixture
async def api(history: SqlStore) -> AsyncIterator[httpx.AsyncClient]:
    access = AccessControl(SqlAuthStore(history.engine))
    service = LoomService.over(history, FakeEngine(), FakeNotifier(), access, clock=lambda: NOW)
    credentials = new_credentials().grant(access)
    app = create_api(lambda: service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        yield client


async def test_overview_answers_camel_case_figures(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/metrics/overview")).json()
    assert body["migrations"] == 1
    assert body["candidates"] == {"not_started": 1, "running": 1, "completed": 2}
    assert (body["runsStarted"], body["runsCompleted"], body["runsCancelled"], body["stepsFailed"]) == (4, 2, 1, 2)
    assert body["medianRunDurationMs"] == 60_000
    assert (await api.get("/api/metrics/overview", params={"migrationId": MIGRATION})).json()["runsStarted"] == 4


async def test_steps_are_listed_per_step_name(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/metrics/steps", params={"migrationId": MIGRATION})).json()
    bump = body["steps"][0]
    assert (bump["stepName"], bump["successRate"], bump["retries"], bump["p95DurationMs"]) == ("bump", 0.5, 1, 60_000)
    assert body["steps"][1]["avgReviewWaitMs"] == 100_000


async def test_timeline_ends_today_by_the_service_clock(api: httpx.AsyncClient) -> None:
    days = (await api.get("/api/metrics/timeline", params={"days": 4})).json()["days"]
    assert [d["date"] for d in days] == [str(DAY0 + timedelta(days=i)) for i in range(4)]
    assert [d["runsStarted"] for d in days] == [1, 1, 2, 0]
    assert len((await api.get("/api/metrics/timeline")).json()["days"]) == 30


@pytest.mark.parametrize("days", ["0", "366", "-1", "many"])
async def test_a_bad_number_of_days_is_422_naming_days(api: httpx.AsyncClient, days: str) -> None:
    response = await api.get("/api/metrics/timeline", params={"days": days})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "days"


@pytest.mark.parametrize("limit", ["0", "501", "x"])
async def test_a_bad_failure_limit_is_422_naming_limit(api: httpx.AsyncClient, limit: str) -> None:
    response = await api.get("/api/metrics/failures", params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "limit"


async def test_failures_name_the_candidate_error_and_time(api: httpx.AsyncClient) -> None:
    failures = (await api.get("/api/metrics/failures", params={"limit": 1})).json()["failures"]
    assert len(failures) == 1
    assert failures[0]["candidateId"] == "c"
    assert failures[0]["error"].startswith("Dispatch to the Migrator failed")
    assert failures[0]["failedAt"].startswith(str(DAY0 + timedelta(days=2)))


async def test_burndown_reports_remaining_and_projection(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/metrics/burndown", params={"migrationId": MIGRATION})).json()
    assert (body["total"], body["remaining"]) == (4, 2)
    assert body["days"][-1] == {"date": str(NOW.date()), "remaining": 2}
    assert body["days"][0]["remaining"] == 4
    # d completed 23 h before now, the one completion in the last 24 hours: one a day, so two more take two days.
    assert (body["pacePerDay"], body["paceWindowHours"], body["paceCompletions"]) == (1, 24, 1)
    assert body["projectedCompletion"] == str(NOW.date() + timedelta(days=2))
    assert body["bucket"] == "day" and len(body["states"]) == 4
    # Day 0: a completed; day 1: b cancelled; day 2: c waits on a failed Step, d completed.
    by_day = [(s["notStarted"], s["running"], s["failed"], s["completed"]) for s in body["states"]]
    assert by_day == [(3, 0, 0, 1), (3, 0, 0, 1), (1, 0, 1, 2), (1, 0, 1, 2)]


async def test_metrics_of_an_unknown_migration_are_404(api: httpx.AsyncClient) -> None:
    for path in ("overview", "steps", "timeline", "failures", "burndown"):
        response = await api.get(f"/api/metrics/{path}", params={"migrationId": "nope"})
        assert response.status_code == 404, path
        assert response.json()["error"] == "MigrationNotFound"


async def test_prometheus_exposition_parses_with_the_values_of_the_event_log(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/prometheus")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("loom_runs_in_flight", (("migration", MIGRATION),))] == 1
    assert samples[("loom_step_outcomes_total", (("status", "failed"),))] == 2
    assert samples[("loom_step_outcomes_total", (("status", "completed"),))] == 2
    assert samples[("loom_dispatch_errors_total", ())] == 1
    assert families["loom_callback_latency_seconds"].type == "histogram"
    assert samples[("loom_callback_latency_seconds_count", ())] == 5
    assert samples[("loom_callback_latency_seconds_bucket", (("le", "5.0"),))] == 3
    assert samples[("loom_callback_latency_seconds_bucket", (("le", "+Inf"),))] == 5


async def test_candidates_export_as_csv_with_current_step_pr_and_metadata(
    api: httpx.AsyncClient, history: SqlStore
) -> None:
    history.save_step_result(
        f"{MIGRATION}__c",
        MIGRATION,
        StepResult(
            step_name="bump",
            candidate_id="c",
            status=StepStatus.FAILED,
            pr_url="http://pr/7",
            started_at=T0,
            updated_at=T0,
        ),
    )
    response = await api.get(f"/api/migrations/{MIGRATION}/candidates.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    c = rows[2]
    assert (c["status"], c["currentStep"], c["stepStatus"], c["prUrl"], c["metadata.team"]) == (
        "running",
        "bump",
        "failed",
        "http://pr/7",
        "payments",
    )
    assert rows[1]["currentStep"] == "" and rows[1]["status"] == "not_started"


async def test_csv_export_pages_through_every_candidate(history: SqlStore) -> None:
    service = LoomService.over(history, FakeEngine(), FakeNotifier(), AccessControl(SqlAuthStore(history.engine)))
    rows = [row async for row in service.export_candidates(VIEWER, MIGRATION, page_size=3)]
    assert rows[0][:3] == ["id", "kind", "status"]
    assert [r[0] for r in rows[1:]] == ["a", "b", "c", "d"]


async def test_csv_export_of_an_unknown_migration_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/migrations/nope/candidates.csv")
    assert response.status_code == 404
    assert response.json()["error"] == "MigrationNotFound"


# -- history: the event log route ----------------------------------------------------------------


async def test_events_page_newest_first_with_exact_totals(api: httpx.AsyncClient) -> None:
    page = (await api.get(f"/api/migrations/{MIGRATION}/events", params={"limit": 3})).json()
    assert page["total"] == 21
    assert [e["eventType"] for e in page["events"]] == ["run_completed", "run_started", "step_completed"]
    assert [e["candidateId"] for e in page["events"]] == ["d", "d", "c"]
    second = (await api.get(f"/api/migrations/{MIGRATION}/events", params={"limit": 3, "offset": 3})).json()
    assert [e["eventType"] for e in second["events"]] == ["step_dispatched", "run_started", "run_cancelled"]


async def test_events_filter_by_candidate_type_and_actor(api: httpx.AsyncClient, history: SqlStore) -> None:
    event(history, EventType.INPUTS_UPDATED, NOW, candidate="c", metadata={"targetImage": "v3"})
    event(history, EventType.REVIEW_APPROVED, NOW + seconds(1), candidate="c", step="review", actor="ana")
    path = f"/api/migrations/{MIGRATION}/events"
    assert (await api.get(path, params={"candidateId": "b"})).json()["total"] == 7
    failed = (await api.get(path, params={"type": "step_completed", "candidateId": "b"})).json()["events"]
    assert [e["status"] for e in failed] == ["completed", "failed"]
    assert failed[1]["metadata"] == {"error": "boom"} and failed[1]["durationMs"] == 1_000
    by_ana = (await api.get(path, params={"actor": "ana"})).json()
    assert by_ana["total"] == 1 and by_ana["events"][0]["eventType"] == "review_approved"
    assert (await api.get(path, params={"type": "inputs_updated"})).json()["events"][0]["metadata"] == {
        "targetImage": "v3"
    }


async def test_events_refuse_an_unknown_type_and_an_unknown_migration(api: httpx.AsyncClient) -> None:
    bad = await api.get(f"/api/migrations/{MIGRATION}/events", params={"type": "exploded"})
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "type"
    too_many = await api.get(f"/api/migrations/{MIGRATION}/events", params={"limit": 1001})
    assert too_many.status_code == 422
    assert (await api.get("/api/migrations/nope/events")).status_code == 404


async def test_a_candidate_status_change_shows_in_the_overview_at_once(
    api: httpx.AsyncClient, history: SqlStore
) -> None:
    history.set_candidate_status(MIGRATION, "b", CandidateStatus.RUNNING)
    assert (await api.get("/api/metrics/overview")).json()["candidates"]["running"] == 2
