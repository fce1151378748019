"""The Candidate table's filters and sorts, failure groups and stuck Steps, over the real routes (ASGI) on SQLite and
PostgreSQL. Runs are seeded through the store's own write path (apply_run_changes), as a Run writes them; the engine
is the hand-written fake (a group's retry on the real Temporal is in test_rollout.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import (
    CandidateStatus,
    EventType,
    RunChange,
    StepEvent,
    StepResult,
    StepStatus,
    StuckRule,
    failure_group_key,
    run_id,
)
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials
from tests.fakes import VIEWER, FakeEngine, FakeNotifier

M = "fleet"
URL = f"/api/migrations/{M}"
NOW = datetime.now(UTC).replace(microsecond=0)
BAD_GATEWAY = "HTTP 502 from https://git.example/api/1 for 'c2'"


def announcement() -> dict:
    return {
        "id": M,
        "name": "Fleet",
        "description": "Candidates in every state",
        "steps": [{"name": "bump", "migratorApp": "demo"}, {"name": "review", "migratorApp": "demo"}],
        "candidates": [
            {"id": f"c{i}", "kind": "worker" if i % 4 == 3 else "service", "metadata": {"team": f"t{i % 3}"}}
            for i in range(8)
        ],
        "migratorUrl": "http://127.0.0.1:9000",
    }


def step(
    name: str,
    status: StepStatus,
    ago: timedelta,
    candidate_id: str,
    metadata: dict[str, str] | None = None,
    pr: str | None = None,
) -> StepResult:
    at = NOW - ago
    done = None if status.waiting else at
    return StepResult(
        step_name=name,
        candidate_id=candidate_id,
        status=status,
        metadata=metadata or {},
        pr_url=pr,
        started_at=at,
        updated_at=at,
        completed_at=done,
    )


def seed_run(store: SqlStore, candidate_id: str, steps: list[StepResult], completed: bool = False) -> None:
    """A Run's writes as the workflow makes them: claim, then each Step's result and its event."""
    assert store.claim_candidate(M, candidate_id, {}) is None
    rid = run_id(M, candidate_id)
    changes: list[RunChange] = []
    for s in steps:
        finished = not s.status.waiting
        event = StepEvent(
            run_id=rid,
            migration_id=M,
            candidate_id=candidate_id,
            step_name=s.step_name,
            event_type=EventType.STEP_COMPLETED if finished else EventType.STEP_UPDATED,
            status=s.status.value,
            duration_ms=3_600_000 if finished else None,
            metadata=s.metadata,
            created_at=s.updated_at or NOW,
        )
        changes += [RunChange(step_result=s), RunChange(event=event, event_key=f"{rid}:{s.step_name}")]
    if completed:
        changes.append(RunChange(candidate_status=CandidateStatus.COMPLETED))
    store.apply_run_changes(rid, M, candidate_id, changes)


def seed(store: SqlStore) -> None:
    """c0 not started; c1 in progress for 4 h (stuck: bump's p95 is 1 h, so 3 h); c2, c3 failed alike; c4 failed
    otherwise; c5 and c6 with open PRs (review's p95 is 1 h too: 3 d is stuck, 10 min is not); c7 done."""
    h = timedelta(hours=1)
    seed_run(store, "c1", [step("bump", StepStatus.IN_PROGRESS, 4 * h, "c1")])
    seed_run(store, "c2", [step("bump", StepStatus.FAILED, 3 * h, "c2", {"error": BAD_GATEWAY})])
    seed_run(store, "c3", [step("bump", StepStatus.FAILED, h, "c3", {"error": "HTTP 503 from https://git/2 for 'c3'"})])
    seed_run(store, "c4", [step("bump", StepStatus.FAILED, h / 2, "c4", {"error": "permission denied"})])
    failing = {"checks": "failing", "review": "changes_requested", "mergeable": "false"}
    seed_run(
        store,
        "c5",
        [
            step("bump", StepStatus.COMPLETED, 80 * h, "c5"),
            step("review", StepStatus.OPEN, 72 * h, "c5", failing, pr="https://git/pr/5"),
        ],
    )
    passing = {"checks": "passing", "review": "approved", "mergeable": "true"}
    seed_run(
        store,
        "c6",
        [
            step("bump", StepStatus.COMPLETED, 20 * h, "c6"),
            step("review", StepStatus.OPEN, timedelta(minutes=10), "c6", passing, pr="https://git/pr/6"),
        ],
    )
    seed_run(
        store,
        "c7",
        [step("bump", StepStatus.COMPLETED, 5 * h, "c7"), step("review", StepStatus.MERGED, 4 * h, "c7")],
        completed=True,
    )


@dataclass
class Api:
    client: httpx.AsyncClient
    engine: FakeEngine
    service: LoomService

    async def ids(self, query: str) -> list[str]:
        response = await self.client.get(f"{URL}/candidates?{query}")
        assert response.status_code == 200, response.text
        assert response.headers["X-Total-Count"] == str(len(response.json()))
        return [c["id"] for c in response.json()]


@pytest.fixture
async def api(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[Api]:
    engine = FakeEngine()
    service = LoomService.over(store, engine, FakeNotifier(), access, stuck_rule=StuckRule(3, 60))
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        assert (await client.post("/api/registry/announce", json=announcement())).status_code == 200
        seed(store)
        yield Api(client, engine, service)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]),
        ("status=running", ["c1", "c2", "c3", "c4", "c5", "c6"]),
        ("kind=worker", ["c3", "c7"]),
        ("q=C5", ["c5"]),
        ("metadata=team:t1", ["c1", "c4", "c7"]),
        ("metadata=team:t1&metadata=team:t2", ["c2", "c5"]),  # the last value of a key wins
        ("needsAttention=true", ["c2", "c3", "c4"]),
        ("step=bump", ["c1", "c2", "c3", "c4"]),
        ("step=review", ["c5", "c6", "c7"]),
        ("stepStatus=failed", ["c2", "c3", "c4"]),
        ("step=review&stepStatus=open", ["c5", "c6"]),
        ("inStatusLongerThan=5400", ["c1", "c2", "c5", "c7"]),
        ("inStatusLongerThan=90m&status=running", ["c1", "c2", "c5"]),
        ("inStatusLongerThan=2d", ["c5"]),
        ("prOlderThan=1d", ["c5"]),
        ("prOlderThan=5m", ["c5", "c6"]),
        ("checks=failing", ["c5"]),
        ("checks=passing", ["c6"]),
        ("review=approved", ["c6"]),
        ("review=changes_requested", ["c5"]),
        ("mergeable=true", ["c6"]),
        ("mergeable=false", ["c5"]),
        ("failure=http 50", ["c2", "c3"]),
        ("failure=denied", ["c4"]),
        (f"failureGroup={failure_group_key('bump', BAD_GATEWAY)}", ["c2", "c3"]),
        ("stuck=true", ["c1", "c5"]),
        ("stuck=false", ["c0", "c2", "c3", "c4", "c6", "c7"]),
        ("stuck=true&kind=worker", []),
    ],
)
async def test_every_filter_of_the_candidate_table_selects_exactly_its_candidates(
    api: Api, query: str, expected: list[str]
) -> None:
    assert await api.ids(query) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("id", ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]),
        ("-id", ["c7", "c6", "c5", "c4", "c3", "c2", "c1", "c0"]),
        ("kind", ["c0", "c1", "c2", "c4", "c5", "c6", "c3", "c7"]),
        ("-kind", ["c3", "c7", "c0", "c1", "c2", "c4", "c5", "c6"]),
        ("step", ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c0"]),
        ("-step", ["c5", "c6", "c7", "c1", "c2", "c3", "c4", "c0"]),
        ("stepStatus", ["c2", "c3", "c4", "c1", "c7", "c5", "c6", "c0"]),
        ("-timeInStatus", ["c5", "c1", "c7", "c2", "c3", "c4", "c6", "c0"]),
        ("timeInStatus", ["c6", "c4", "c3", "c2", "c1", "c7", "c5", "c0"]),
        ("-lastEvent", ["c6", "c4", "c3", "c2", "c1", "c7", "c5", "c0"]),
        ("pr", ["c5", "c6", "c0", "c1", "c2", "c3", "c4", "c7"]),
        ("-metadata.team", ["c2", "c5", "c1", "c4", "c7", "c0", "c3", "c6"]),
        ("metadata.absent", ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]),
    ],
)
async def test_every_sort_orders_with_empty_values_last_and_ties_by_id(
    api: Api, sort: str, expected: list[str]
) -> None:
    assert await api.ids(f"sort={sort}") == expected


async def test_a_sorted_filtered_page_is_paged_with_the_total_and_links(api: Api) -> None:
    response = await api.client.get(f"{URL}/candidates?status=running&sort=-timeInStatus&limit=2&offset=2")
    assert [c["id"] for c in response.json()] == ["c2", "c3"]
    assert response.headers["X-Total-Count"] == "6"
    assert 'rel="next"' in response.headers["Link"] and 'rel="prev"' in response.headers["Link"]
    assert "sort=-timeInStatus" in response.headers["Link"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("stepStatus=nope", "stepStatus"),
        ("sort=colour", "sort"),
        ("sort=-metadata.", "sort"),
        ("inStatusLongerThan=soon", "inStatusLongerThan"),
        ("inStatusLongerThan=-5", "inStatusLongerThan"),
        ("prOlderThan=3y", "prOlderThan"),
        ("checks=green", "checks"),
        ("review=maybe", "review"),
        ("mergeable=perhaps", "mergeable"),
        ("failureGroup=not-a-key", "failureGroup"),
        ("stuck=often", "stuck"),
        ("metadata=team", "metadata"),
    ],
)
async def test_an_invalid_filter_or_sort_is_422_naming_the_parameter(api: Api, query: str, parameter: str) -> None:
    response = await api.client.get(f"{URL}/candidates?{query}")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert [d["field"] for d in body["details"]] == [parameter]


async def test_the_table_row_shows_the_steps_status_since_pr_state_failure_and_stuck(api: Api) -> None:
    rows = {c["id"]: c for c in (await api.client.get(f"{URL}/candidates")).json()}
    c5 = rows["c5"]
    assert (c5["currentStep"], c5["currentStepStatus"], c5["prUrl"]) == ("review", "open", "https://git/pr/5")
    assert (c5["checks"], c5["review"], c5["mergeable"], c5["stuck"]) == ("failing", "changes_requested", False, True)
    assert datetime.fromisoformat(c5["statusSince"]) == NOW - timedelta(hours=72)
    assert datetime.fromisoformat(c5["prOpenedAt"]) == NOW - timedelta(hours=72)
    assert datetime.fromisoformat(c5["lastEventAt"]) == NOW - timedelta(hours=72)
    c2 = rows["c2"]
    assert (c2["failureMessage"], c2["failureGroup"]) == (BAD_GATEWAY, failure_group_key("bump", BAD_GATEWAY))
    assert c2["stuck"] is False, "a failed Step waits for a Retry: it is failed, not stuck"
    assert rows["c6"]["stuck"] is False and rows["c6"]["mergeable"] is True
    assert rows["c0"]["statusSince"] is None and rows["c0"]["stuck"] is False


async def test_failure_groups_gather_failed_steps_by_step_and_normalised_message_largest_first(api: Api) -> None:
    response = await api.client.get(f"{URL}/failure-groups")
    assert response.status_code == 200, response.text
    groups = response.json()["groups"]
    assert [(g["stepName"], g["message"], g["count"], g["examples"]) for g in groups] == [
        ("bump", "HTTP <n> from <url> for <value>", 2, ["c2", "c3"]),
        ("bump", "permission denied", 1, ["c4"]),
    ]
    assert groups[0]["key"] == failure_group_key("bump", BAD_GATEWAY)
    assert datetime.fromisoformat(groups[0]["firstSeen"]) == NOW - timedelta(hours=3)
    assert datetime.fromisoformat(groups[0]["lastSeen"]) == NOW - timedelta(hours=1)
    assert (await api.client.get("/api/migrations/nope/failure-groups")).status_code == 404


async def test_a_bulk_retry_of_a_failure_group_selects_only_that_groups_candidates(api: Api) -> None:
    key = failure_group_key("bump", BAD_GATEWAY)
    body = {"action": "retry", "filter": {"failureGroup": key}, "dryRun": True}
    response = await api.client.post(f"{URL}/bulk", json=body)
    assert response.status_code == 200, response.text
    assert [(o["candidateId"], o["outcome"]) for o in response.json()["outcomes"]] == [
        ("c2", "pending"),
        ("c3", "pending"),
    ]
    legacy = {"action": "retry", "filter": {"stepName": "bump", "stepStatus": "failed"}, "dryRun": True}
    outcomes = (await api.client.post(f"{URL}/bulk", json=legacy)).json()["outcomes"]
    assert [o["candidateId"] for o in outcomes] == ["c2", "c3", "c4"], "stepName/stepStatus are no longer dropped"
    bad = await api.client.post(f"{URL}/bulk", json={"action": "retry", "filter": {"failureGroup": "x"}})
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "filter.failureGroup"


async def test_stuck_steps_are_counted_in_the_metrics_and_prometheus_and_listed_in_needs_me(api: Api) -> None:
    overview = (await api.client.get(f"/api/metrics/overview?migrationId={M}")).json()
    assert overview["stuckSteps"] == 2
    text = (await api.client.get("/api/prometheus")).text
    assert f'loom_stuck_steps{{migration="{M}"}} 2.0' in text
    waiting = await api.service.needs_me(VIEWER)
    stuck = sorted((w.step.candidate_id, w.reason) for w in waiting if w.stuck)
    assert stuck == [("c1", "stuck"), ("c5", "open_pr")]
    assert {w.step.candidate_id for w in waiting if not w.stuck} == {"c2", "c3", "c4"}


async def test_a_restarted_run_starts_its_progress_afresh(api: Api, store: SqlStore) -> None:
    store.set_candidate_status(M, "c2", CandidateStatus.NOT_STARTED)
    store.reset_run(M, "c2")
    assert "c2" not in await api.ids("stepStatus=failed")
    row = next(c for c in (await api.client.get(f"{URL}/candidates?q=c2")).json())
    assert (row["currentStep"], row["failureGroup"], row["statusSince"]) == (None, None, None)
