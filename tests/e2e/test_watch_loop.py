"""An open board must not grow the app process: every watch-loop tick once added an entry to `sys.path` (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Loom, unique_id
from tests.e2e.harness import OPERATOR_AUTH

pytestmark = pytest.mark.e2e


def process_figures(loom: Loom) -> dict[str, Any]:
    response = loom.client.get("/api/debug/process", headers=OPERATOR_AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_open_board_ticking_does_not_grow_the_app_process_sys_path(page: Page, loom: Loom) -> None:
    mid = unique_id("ticks")
    services = [f"svc-{i}" for i in range(6)]
    loom.announce(mid, [{"id": s, "kind": "service"} for s in services])
    page.goto(f"/migrations/{mid}")
    running = page.locator('[data-testid="column"][data-status="running"]').get_by_test_id("column-count")
    expect(running).to_have_text("0")
    before = process_figures(loom)
    for n, service in enumerate(services, start=1):
        loom.start(mid, service)
        expect(running).to_have_text(str(n))  # only a watch-loop tick brings the new Run to the open board
    after = process_figures(loom)
    assert after["pid"] == before["pid"]
    assert after["sysPathEntries"] == before["sysPathEntries"]
