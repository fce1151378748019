"""A Migrator that answers 503: the candidate page and the board say Loom is retrying, live, and stop once it answers."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from loom_backend.execution.dev_server import free_port
from tests.e2e.conftest import ARTIFACTS, Loom, unique_id
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e
# The card's mark carries the whole notice on hover: attempt, when the next one comes, what the Migrator answered.
NOTICE = re.compile(
    r"Migrator unreachable, retrying — attempt \d+, (next in \d+ s|retrying now): .*503.*migrator restarting"
)


class AwayMigrator:
    """A Migrator being redeployed: 503 until the test brings it back."""

    def __init__(self) -> None:
        self.back = threading.Event()
        self.attempts = 0

    async def dispatch_step(self, request: Request) -> Response:
        await request.body()
        self.attempts += 1
        if self.back.is_set():
            return JSONResponse({"accepted": True}, status_code=202)
        return PlainTextResponse("migrator restarting", status_code=503)


@pytest.fixture
def away_migrator() -> Iterator[tuple[AwayMigrator, str]]:
    migrator, port = AwayMigrator(), free_port()
    app = Starlette(routes=[Route("/dispatch-step", migrator.dispatch_step, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the away Migrator")
    try:
        yield migrator, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def test_a_step_whose_migrator_answers_503_shows_the_retry_on_the_timeline_and_the_board_without_reload(
    page: Page, loom: Loom, away_migrator: tuple[AwayMigrator, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    migrator, url = away_migrator
    mid, cid = unique_id("away"), "orders"
    monkeypatch.setattr(loom.migrator, "url", url)  # this Migration's Migrator is the away one
    loom.announce(mid, [{"id": cid, "kind": "service"}])
    page.goto(f"/migrations/{mid}")
    card = page.locator(f'[data-testid="candidate-card"][data-candidate="{cid}"]')
    expect(card).to_be_visible()
    timeline = page.context.new_page()
    timeline.goto(f"/migrations/{mid}/candidates/{cid}")
    expect(timeline.get_by_test_id("candidate-status")).to_have_text("Not started")

    loom.start(mid, cid)

    step = timeline.locator('[data-testid="timeline-step"][data-step="bump-image"]')
    notice = step.get_by_test_id("dispatch-retry")
    expect(notice).to_contain_text("Migrator unreachable, retrying — attempt ", timeout=20_000)
    expect(notice).to_contain_text("503")
    expect(notice).to_contain_text("migrator restarting")
    expect(step.get_by_test_id("timeline-status")).to_have_text("In progress")
    mark = card.get_by_test_id("dispatch-retry")
    expect(mark).to_have_text("Retrying")
    expect(mark).to_have_attribute("title", NOTICE)
    assert migrator.attempts >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    timeline.screenshot(path=str(ARTIFACTS / "timeline-dispatch-retry.png"))
    page.screenshot(path=str(ARTIFACTS / "board-dispatch-retry.png"))

    migrator.back.set()
    expect(notice).to_have_count(0, timeout=15_000)
    expect(mark).to_have_count(0, timeout=15_000)
    expect(step.get_by_test_id("timeline-status")).to_have_text("In progress")
    timeline.close()
