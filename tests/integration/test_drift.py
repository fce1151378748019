"""Drift checks on SQLite and PostgreSQL against the fake Migrator over HTTP: a completed Candidate whose dry run
still shows changes is flagged drifted (filterable, with its diff); one whose dry run is clean is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import CandidateStatus, Principal, PrincipalKind, Role
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.rollout import BulkAction, BulkOutcomeKind, BulkRequest, CandidateFilter
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials
from tests.fakes import FakeEngine
from tests.harness import FakeMigrator
from tests.integration.test_store import announcement

M = "base-image"
ANA = Principal("ana", PrincipalKind.USER, Role.OPERATOR)
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
CHANGED = {
    "steps": [
        {
            "stepName": "bump",
            "files": [
                {
                    "path": "Dockerfile",
                    "repo": "a",
                    "before": "FROM base:1\n",
                    "after": "FROM base:2\n",
                    "status": "modified",
                }
            ],
        },
        {"stepName": "review", "skipped": True},
    ]
}
CLEAN = {
    "steps": [
        {
            "stepName": "bump",
            "files": [
                {"path": "Dockerfile", "before": "FROM base:2\n", "after": "FROM base:2\n", "status": "modified"}
            ],
        },
        {"stepName": "review", "skipped": True, "files": [{"path": "x", "after": "y", "status": "new"}]},
    ]
}


@dataclass
class Drift:
    store: SqlStore
    service: LoomService
    migrator: FakeMigrator
    api: httpx.AsyncClient


@pytest.fixture
async def drift(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[Drift]:
    """Candidates a and b completed, c running; the Migrator answers a with changes left and b with none."""
    async with FakeMigrator().serving() as migrator:
        store.announce(announcement(["a", "b", "c"], migratorUrl=migrator.url), NOW)
        for cid, status in (("a", "completed"), ("b", "completed"), ("c", "running")):
            store.set_candidate_status(M, cid, CandidateStatus(status))
        migrator.dry_runs[f"{M}/a"] = CHANGED
        migrator.dry_runs[f"{M}/b"] = CLEAN
        notifier = HttpMigratorNotifier(timeout_seconds=5.0)
        service = LoomService.over(store, FakeEngine(), notifier, access, clock=lambda: NOW)
        transport = httpx.ASGITransport(app=create_api(lambda: service))
        async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as api:
            yield Drift(store, service, migrator, api)
        await notifier.aclose()


async def apply(d: Drift, cid: str) -> tuple[BulkOutcomeKind, str | None]:
    return await d.service.bulk_apply("ana", M, cid, BulkAction.DRIFT_CHECK, None, None)


async def test_the_bulk_drift_check_takes_only_completed_candidates(drift: Drift) -> None:
    request = BulkRequest(action="drift_check", candidate_ids=["a", "b", "c"], dry_run=True)
    preview = await drift.service.bulk(ANA, M, request)
    assert {o.candidate_id: o.outcome for o in preview.outcomes} == {
        "a": BulkOutcomeKind.PENDING,
        "b": BulkOutcomeKind.PENDING,
        "c": BulkOutcomeKind.SKIPPED,
    }
    assert preview.outcomes[2].message == "is running, not completed"


async def test_a_dry_run_with_changes_left_flags_drift_and_a_clean_one_does_not(drift: Drift) -> None:
    assert await apply(drift, "a") == (BulkOutcomeKind.DONE, "drifted: the dry run still changes 1 file")
    assert await apply(drift, "b") == (BulkOutcomeKind.DONE, "no changes left: the change landed")
    a = await drift.service.get_drift(ANA, M, "a")
    assert a is not None and (a.drifted, a.changed_files, a.actor, a.checked_at) == (True, 1, "ana", NOW)
    assert a.result.steps[0].files[0].after == "FROM base:2\n"
    b = await drift.service.get_drift(ANA, M, "b")
    assert b is not None and (b.drifted, b.changed_files) == (False, 0)
    page = await drift.service.list_candidates(ANA, M, CandidateFilter(drifted=True))
    assert [c.id for c in page.candidates] == ["a"]
    assert [c.id for c in (await drift.service.list_candidates(ANA, M, CandidateFilter(drifted=False))).candidates] == [
        "b"
    ]
    flags = {c.id: c.drifted for c in (await drift.service.list_candidates(ANA, M)).candidates}
    assert flags == {"a": True, "b": False, "c": None}


async def test_a_check_again_after_the_fix_clears_the_flag(drift: Drift) -> None:
    await apply(drift, "a")
    drift.migrator.dry_runs[f"{M}/a"] = CLEAN
    assert (await apply(drift, "a"))[1] == "no changes left: the change landed"
    assert (await drift.service.list_candidates(ANA, M, CandidateFilter(drifted=True))).total == 0


async def test_a_failed_dry_run_fails_the_check_and_records_nothing(drift: Drift) -> None:
    drift.migrator.dry_runs[f"{M}/a"] = {"steps": [{"stepName": "bump", "error": "repo not found"}]}
    outcome, message = await apply(drift, "a")
    assert outcome is BulkOutcomeKind.FAILED and "repo not found" in (message or "")
    assert await drift.service.get_drift(ANA, M, "a") is None


async def test_the_candidates_route_filters_drifted_and_the_drift_route_answers_the_diff(drift: Drift) -> None:
    checked = await drift.api.post(f"/api/migrations/{M}/candidates/a/drift")
    assert checked.status_code == 200, checked.text
    assert checked.json()["drifted"] is True and checked.json()["changedFiles"] == 1
    await drift.api.post(f"/api/migrations/{M}/candidates/b/drift")
    listed = await drift.api.get(f"/api/migrations/{M}/candidates", params={"drifted": "true"})
    assert [c["id"] for c in listed.json()] == ["a"] and listed.headers["X-Total-Count"] == "1"
    assert listed.json()[0]["drifted"] is True
    body: dict[str, Any] = (await drift.api.get(f"/api/migrations/{M}/candidates/a/drift")).json()
    assert body["result"]["steps"][0]["files"][0]["before"] == "FROM base:1\n"
    assert (await drift.api.get(f"/api/migrations/{M}/candidates", params={"drifted": "maybe"})).status_code == 422
    running = await drift.api.post(f"/api/migrations/{M}/candidates/c/drift")
    assert running.status_code == 409 and running.json()["error"] == "CandidateNotCompleted"
    unchecked = await drift.api.get(f"/api/migrations/{M}/candidates/c/drift")
    assert unchecked.status_code == 404 and unchecked.json()["error"] == "DriftNotChecked"
