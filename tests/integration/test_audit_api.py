"""The audit routes over ASGI on SQLite and PostgreSQL: the event log filtered by time, across Migrations, as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx
import pytest

from loom_backend.auth import AccessControl
from loom_backend.domain import EventType
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.fakes import VIEWER, FakeEngine, FakeNotifier
from tests.integration.test_metrics import MIGRATION, T0, event, seconds
from tests.integration.test_metrics import history as history  # the fixture
from tests.integration.test_metrics_api import api as api  # the fixture
from tests.integration.test_store import announcement

OTHER = "log-shipper"
EVENTS = f"/api/migrations/{MIGRATION}/events"


@pytest.fixture
def two_migrations(history: SqlStore) -> SqlStore:
    """The metrics history (21 events of base-image over days 0-2) plus a second Migration ana works on."""
    history.announce(announcement(["x"], id=OTHER), T0)
    event(history, EventType.RUN_STARTED, T0 + seconds(5), candidate="x", migration=OTHER, actor="ana")
    event(history, EventType.INPUTS_UPDATED, T0 + seconds(6), candidate="x", migration=OTHER, actor="ana")
    event(history, EventType.REVIEW_APPROVED, T0 + seconds(170), candidate="a", step="review", actor="ana")
    return history


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_since_is_inclusive_and_until_exclusive(api: httpx.AsyncClient) -> None:
    day1 = T0 + timedelta(days=1)
    page = (await api.get(EVENTS, params={"since": day1.isoformat(), "until": (day1 + seconds(30)).isoformat()})).json()
    assert [e["eventType"] for e in page["events"]] == ["step_completed", "step_dispatched", "run_started"]
    assert page["total"] == 3


async def test_times_with_an_offset_or_none_mean_the_same_instant(api: httpx.AsyncClient) -> None:
    utc = (await api.get(EVENTS, params={"since": "2026-11-03T09:00:00Z"})).json()
    paris = (await api.get(EVENTS, params={"since": "2026-11-03T10:00:00+01:00"})).json()
    naive = (await api.get(EVENTS, params={"since": "2026-11-03T09:00:00"})).json()
    assert utc["total"] == paris["total"] == naive["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "until"),
        ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-02T00:00:00Z"}, "until"),
        ({"type": "exploded"}, "type"),
    ],
)
async def test_a_bad_filter_is_422_naming_the_field_on_every_audit_route(
    api: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    for path in (EVENTS, f"{EVENTS}.csv", "/api/events", "/api/events.csv"):
        response = await api.get(path, params=params)
        assert response.status_code == 422, path
        assert response.json()["details"][0]["field"] == field, path


async def test_the_log_across_migrations_filters_by_actor_and_migration(
    api: httpx.AsyncClient, two_migrations: SqlStore
) -> None:
    everything = (await api.get("/api/events", params={"limit": 1000})).json()
    assert everything["total"] == 24
    assert {e["migrationId"] for e in everything["events"]} == {MIGRATION, OTHER}
    by_ana = (await api.get("/api/events", params={"actor": "ana"})).json()["events"]
    assert [(e["migrationId"], e["eventType"]) for e in by_ana] == [
        (MIGRATION, "review_approved"),
        (OTHER, "inputs_updated"),
        (OTHER, "run_started"),
    ]
    only_other = (await api.get("/api/events", params={"actor": "ana", "migrationId": OTHER})).json()
    assert only_other["total"] == 2
    assert (await api.get(EVENTS, params={"actor": "ana"})).json()["total"] == 1
    typed = await api.get("/api/events", params={"actor": "ana", "type": "run_started", "candidateId": "x"})
    assert [e["candidateId"] for e in typed.json()["events"]] == ["x"]


async def test_an_unknown_migration_is_404_on_every_audit_route(api: httpx.AsyncClient) -> None:
    for path, params in (
        ("/api/migrations/nope/events", {}),
        ("/api/migrations/nope/events.csv", {}),
        ("/api/events", {"migrationId": "nope"}),
        ("/api/events.csv", {"migrationId": "nope"}),
    ):
        response = await api.get(path, params=params)
        assert response.status_code == 404, path
        assert response.json()["error"] == "MigrationNotFound"


async def test_csv_holds_every_matching_event_not_one_page(api: httpx.AsyncClient, two_migrations: SqlStore) -> None:
    rows = csv_rows(await api.get("/api/events.csv"))
    assert len(rows) == 24
    page = (await api.get("/api/events", params={"limit": 1000})).json()["events"]
    assert [int(r["id"]) for r in rows] == [e["id"] for e in page]
    assert list(rows[0]) == [
        "id",
        "createdAt",
        "migrationId",
        "candidateId",
        "runId",
        "eventType",
        "stepName",
        "status",
        "actor",
        "durationMs",
        "metadata",
    ]


async def test_csv_applies_the_same_filters_as_the_page(api: httpx.AsyncClient, two_migrations: SqlStore) -> None:
    params = {"actor": "ana", "since": T0.isoformat(), "until": (T0 + seconds(100)).isoformat()}
    rows = csv_rows(await api.get("/api/events.csv", params=params))
    assert [(r["migrationId"], r["eventType"], r["actor"]) for r in rows] == [
        (OTHER, "inputs_updated", "ana"),
        (OTHER, "run_started", "ana"),
    ]
    failed = csv_rows(await api.get(f"{EVENTS}.csv", params={"type": "step_completed", "candidateId": "b"}))
    assert [(r["status"], r["durationMs"], r["metadata"]) for r in failed] == [
        ("completed", "3000", ""),
        ("failed", "1000", '{"error": "boom"}'),
    ]
    assert failed[0]["createdAt"] == (T0 + timedelta(days=1) + seconds(33)).isoformat()


async def test_csv_quotes_per_rfc_4180_and_defuses_formulas(api: httpx.AsyncClient, history: SqlStore) -> None:
    event(
        history,
        EventType.INPUTS_UPDATED,
        T0 + timedelta(days=5),
        candidate="a",
        actor='=HYPERLINK("http://evil")',
        metadata={"note": 'line one\nline "two", three'},
    )
    response = await api.get(f"{EVENTS}.csv", params={"type": "inputs_updated"})
    assert response.text.startswith("id,createdAt,")
    assert response.text.count("\r\n") == 2  # header and one row; the newline inside the quoted cell stays "\n"
    assert '"=HYPERLINK' not in response.text and '"\'=HYPERLINK(""http://evil"")"' in response.text
    (row,) = csv_rows(response)
    assert row["actor"] == '\'=HYPERLINK("http://evil")'
    assert row["metadata"] == '{"note": "line one\\nline \\"two\\", three"}'


async def test_the_export_walks_every_page_even_as_events_arrive(two_migrations: SqlStore) -> None:
    service = LoomService.over(
        two_migrations, FakeEngine(), FakeNotifier(), AccessControl(SqlAuthStore(two_migrations.engine))
    )
    rows = service.export_events(VIEWER, None, page_size=5)
    header = await anext(rows)
    first = [await anext(rows) for _ in range(5)]
    event(two_migrations, EventType.RUN_STARTED, T0 + timedelta(days=9), candidate="late")
    rest = [row async for row in rows]
    ids = [int(r[0]) for r in first + rest]
    assert header[0] == "id" and len(ids) == 24 == len(set(ids))
    assert "late" not in {r[3] for r in first + rest}
