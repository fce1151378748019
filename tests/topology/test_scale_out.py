"""Scale out, proven with real processes: a board on one replica follows changes made through the other, and
crashing a worker and a web replica midway through 50 Runs loses nothing."""

from __future__ import annotations

import collections
import itertools
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import create_engine, text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from loom_backend.domain import DispatchStepRequest
from tests.harness import ARTIFACTS, wait_for
from tests.topology.conftest import START_TIMEOUT, Topology

pytestmark = pytest.mark.e2e
STEPS = [{"name": "bump", "migratorApp": "fake"}, {"name": "rollout", "migratorApp": "fake"}]


def record(name: str, value: float) -> None:
    """Figures for the README's limits, in test-artifacts/topology-figures.json."""
    path = ARTIFACTS / "topology-figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**figures, name: round(value, 3)}, indent=2))


def announce(topology: Topology, via: str, migration_id: str, candidates: list[str]) -> None:
    body = {
        "id": migration_id,
        "name": f"Topology {migration_id}",
        "description": "Scale-out acceptance",
        "steps": STEPS,
        "candidates": [{"id": c, "kind": "service"} for c in candidates],
        "migratorUrl": topology.migrator.url,
    }
    response = httpx.post(f"{via}/api/registry/announce", json=body, headers=topology.migrator_auth, timeout=30)
    assert response.status_code == 200, response.text


def start(topology: Topology, via: str, migration_id: str, candidate_id: str) -> None:
    url = f"{via}/api/migrations/{migration_id}/candidates/{candidate_id}/start"
    response = httpx.post(url, json={}, headers=topology.operator_auth, timeout=30)
    assert response.status_code == 202, response.text


def callback(topology: Topology, via: str, migration_id: str, candidate_id: str, step: str, status: str) -> int:
    response = httpx.post(
        f"{via}/api/event/{migration_id}__{candidate_id}",
        json={"stepName": step, "candidateId": candidate_id, "status": status},
        headers=topology.migrator_auth,
        timeout=10,
    )
    return response.status_code


def test_a_board_on_replica_a_shows_a_callback_posted_to_replica_b_within_a_second(
    topology: Topology, browser: Browser
) -> None:
    a, b = (r.url for r in topology.replicas)
    mid = f"follow-{uuid.uuid4().hex[:6]}"
    announce(topology, b, mid, ["checkout", "billing"])
    start(topology, b, mid, "checkout")
    topology.migrator.wait_dispatch(mid, "checkout", "bump", timeout=60)
    context = browser.new_context(base_url=a, storage_state={"cookies": [topology.session_cookie()], "origins": []})
    page = context.new_page()
    page.goto(f"/migrations/{mid}")
    running = page.locator('[data-testid="column"][data-status="running"]')
    card = running.locator('[data-testid="candidate-card"][data-candidate="checkout"]')
    expect(card.get_by_test_id("step-status")).to_have_text("In progress", timeout=30_000)
    posted = time.monotonic()
    assert callback(topology, b, mid, "checkout", "bump", "open") == 202
    expect(card.get_by_test_id("step-status")).to_have_text("PR open", timeout=5_000)
    seconds = time.monotonic() - posted
    record("callback_on_b_to_board_on_a_seconds", seconds)
    assert seconds < 1.0
    context.close()


class AutoMigrator:
    """Answers every dispatch by posting `completed` to a web replica, round-robin, trying the next one while a
    replica is down (as a load balancer would); records each callback Loom accepted.

    Several callbacks are in flight at once, as from a real Migrator: right after a worker dies, a callback to a Run
    that worker had cached waits for Temporal to move the Run's next task to the other worker (the sticky queue's
    timeout), and one sender in a row would queue those waits end to end."""

    SENDERS = 8

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.todo: queue.Queue[DispatchStepRequest | None] = queue.Queue()
        self.accepted: list[tuple[str, str]] = []
        self.turns = itertools.count()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.SENDERS)]

    async def dispatch_step(self, request: Request) -> Response:
        self.todo.put(DispatchStepRequest.model_validate(await request.json()))
        return JSONResponse({"accepted": True}, status_code=202)

    def _run(self) -> None:
        while (dispatch := self.todo.get()) is not None:
            while True:
                replica = self.topology.replicas[next(self.turns) % 2]
                try:
                    code = callback(
                        self.topology,
                        replica.url,
                        dispatch.migration_id,
                        dispatch.candidate.id,
                        dispatch.step_name,
                        "completed",
                    )
                except httpx.HTTPError:
                    continue
                if code == 202:
                    self.accepted.append((dispatch.candidate.id, dispatch.step_name))
                    break
                if code in (404, 409):  # a repeated dispatch of a Step Loom already has the result of
                    break

    def __enter__(self) -> AutoMigrator:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        for _thread in self.threads:
            self.todo.put(None)
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def auto_migrator(topology: Topology) -> Iterator[AutoMigrator]:
    with AutoMigrator(topology) as migrator:
        topology.migrator.dispatch_step = migrator.dispatch_step  # type: ignore[method-assign]
        try:
            yield migrator
        finally:
            del topology.migrator.dispatch_step


def test_killing_a_worker_and_a_web_replica_midway_through_50_runs_loses_nothing(
    topology: Topology, auto_migrator: AutoMigrator
) -> None:
    a, b = topology.replicas
    mid = f"crash-{uuid.uuid4().hex[:6]}"
    candidates = [f"svc-{i:02d}" for i in range(50)]
    announce(topology, a.url, mid, candidates)
    for i, cid in enumerate(candidates):
        start(topology, (a if i % 2 else b).url, mid, cid)
    wait_for(lambda: len(auto_migrator.accepted) >= 40, 120, "a third of the Steps to complete")
    topology.workers[0].kill()
    b.kill()
    killed = time.monotonic()

    seen: dict[str, object] = {}

    def completed() -> bool:
        page = httpx.get(
            f"{a.url}/api/migrations/{mid}/candidates",
            headers=topology.operator_auth,
            params={"limit": 500},
            timeout=30,
        ).json()
        seen.update(statuses=collections.Counter(c["status"] for c in page), callbacks=len(auto_migrator.accepted))
        return sum(c["status"] == "completed" for c in page) == len(candidates)

    try:
        wait_for(completed, 180, "all 50 Runs to complete", interval=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; Candidates by status and callbacks accepted: {seen}") from None
    record("rest_of_50_runs_after_the_kills_seconds", time.monotonic() - killed)
    engine = create_engine(topology.database_url)
    with engine.connect() as connection:
        results = connection.execute(
            text("SELECT run_id, step_name, count(*) FROM step_results WHERE migration_id = :m GROUP BY 1, 2"),
            {"m": mid},
        ).all()
        completions = connection.execute(
            text(
                "SELECT run_id, step_name, count(*) FROM step_events WHERE migration_id = :m "
                "AND event_type = 'step_completed' GROUP BY 1, 2"
            ),
            {"m": mid},
        ).all()
    engine.dispose()
    assert len(results) == 100 and all(n == 1 for *_, n in results)
    assert len(completions) == 100 and all(n == 1 for *_, n in completions), "a Step result was recorded twice"

    restarted = time.monotonic()
    b.start().wait_serving(START_TIMEOUT)
    record("killed_replica_serving_again_seconds", time.monotonic() - restarted)
    assert httpx.get(f"{b.url}/api/readyz", timeout=10).json()["ready"]
    assert httpx.get(f"{b.url}/migrations/{mid}", timeout=10).status_code == 200
    topology.workers[0].start()
