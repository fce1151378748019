"""The metrics page and the board's metrics panel, drawn from Runs driven through the API against the built app."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from loom_ui import format as fmt
from tests.e2e.conftest import ARTIFACTS, Loom, unique_id
from tests.e2e.harness import OPERATOR_AUTH, wait_for

pytestmark = pytest.mark.e2e

TWO_STEPS = [
    {"name": "bump-image", "migratorApp": "fake", "description": "Open a PR that bumps the image tag"},
    {"name": "rollout", "migratorApp": "fake", "description": "Roll the new image out"},
]
ERROR = "helm upgrade timed out after 5m0s"


def overview(loom: Loom, migration_id: str | None = None) -> dict[str, Any]:
    params = {"migrationId": migration_id} if migration_id else {}
    response = loom.client.get("/api/metrics/overview", params=params, headers=OPERATOR_AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def counter(scope, key: str):
    return scope.locator(f'[data-testid="counter"][data-counter="{key}"]').get_by_test_id("counter-value")


def drive_runs(loom: Loom, mid: str) -> None:
    """One Run completed, one with a failed Step, one cancelled, one Candidate never started."""
    loom.announce(
        mid, [{"id": cid, "kind": "service"} for cid in ("checkout", "billing", "search", "ledger")], TWO_STEPS
    )
    for cid in ("checkout", "billing", "search"):
        loom.start(mid, cid)
    for cid in ("checkout", "billing"):
        loom.migrator.wait_dispatch(mid, cid, "bump-image")
        loom.callback(mid, cid, "bump-image", "completed")
        loom.migrator.wait_dispatch(mid, cid, "rollout")
    loom.callback(mid, "checkout", "rollout", "completed")
    loom.callback(mid, "billing", "rollout", "failed", error=ERROR)
    loom.migrator.wait_dispatch(mid, "search", "bump-image")
    response = loom.client.post(f"/api/migrations/{mid}/candidates/search/cancel", headers=OPERATOR_AUTH)
    assert response.status_code == 204, response.text

    def settled() -> bool:
        o = overview(loom, mid)
        return (o["runsStarted"], o["runsCompleted"], o["runsCancelled"], o["stepsFailed"]) == (3, 1, 1, 1)

    wait_for(settled, 30, "the three Runs to reach the metrics")


def test_the_metrics_page_draws_counters_charts_burndown_and_failures_from_real_runs(page: Page, loom: Loom) -> None:
    mid = unique_id("metrics")
    drive_runs(loom, mid)
    everything = overview(loom)

    page.goto("/")
    page.get_by_test_id("nav-metrics").click()
    expect(page).to_have_url(re.compile(r"/metrics$"))
    expected = {
        "migrations": f"{everything['migrations']:,}",
        **{f"candidates-{s}": f"{n:,}" for s, n in everything["candidates"].items()},
        "runs-started": f"{everything['runsStarted']:,}",
        "runs-completed": f"{everything['runsCompleted']:,}",
        "runs-cancelled": f"{everything['runsCancelled']:,}",
        "steps-failed": f"{everything['stepsFailed']:,}",
        "reviews-waiting": f"{everything['reviewsWaiting']:,}",
        "median-run": fmt.millis(everything["medianRunDurationMs"]),
    }
    for key, value in expected.items():
        expect(counter(page, key)).to_have_text(value)

    activity = page.get_by_test_id("activity")
    expect(activity.locator("svg.recharts-surface").first).to_be_visible()
    expect(activity.locator(".recharts-bar-rectangle").first).to_be_visible()
    expect(activity.locator(".recharts-line")).to_have_count(2)
    durations = page.get_by_test_id("step-durations")
    expect(durations.locator("svg.recharts-surface").first).to_be_visible()
    expect(durations.get_by_test_id("chart")).to_contain_text("bump-image")
    expect(durations.get_by_test_id("chart")).to_contain_text("rollout")
    expect(durations.locator(".recharts-bar-rectangle").first).to_be_visible()

    burndown = page.locator(f'[data-testid="burndown"][data-migration="{mid}"]')
    expect(burndown.get_by_test_id("burndown-summary")).to_contain_text("3 of 4 Candidates left")
    expect(burndown.get_by_test_id("burndown-summary")).to_contain_text("done by")
    # The pace counts the one Run completed minutes ago, over the last 24 h (the Migration's first hour).
    expect(burndown.get_by_test_id("burndown-summary")).to_contain_text("(1 Run completed in the last 24 h)")
    # Stacked by state: failed, running, not started, completed.
    expect(burndown.locator(".recharts-area")).to_have_count(4)
    expect(burndown.get_by_test_id("chart")).to_contain_text("Not started")

    failure = page.locator('[data-testid="failure"][data-candidate="billing"]').first
    expect(failure).to_contain_text(ERROR)
    expect(failure).to_contain_text("rollout")
    link = failure.get_by_test_id("failure-candidate-link")
    expect(link).to_have_attribute("href", f"/migrations/{mid}/candidates/billing")

    page.get_by_test_id("step-durations").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    page.set_viewport_size({"width": 1440, "height": 1300})
    page.wait_for_timeout(600)  # the charts' entry animation
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "metrics.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "metrics-dark.png"), full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})

    link.click()
    expect(page).to_have_url(re.compile(f"/migrations/{mid}/candidates/billing$"))
    history = page.get_by_test_id("history")
    failed = history.locator('[data-testid="event"][data-type="step_completed"]').filter(has_text="Step failed")
    expect(failed).to_contain_text(ERROR)
    started = history.locator('[data-testid="event"][data-type="run_started"]')
    expect(started.get_by_test_id("event-label")).to_have_text("Run started")
    expect(started.get_by_test_id("event-actor")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "candidate-history.png"), full_page=True)


def test_the_board_shows_its_migrations_figures_and_downloads_its_candidates_as_csv(page: Page, loom: Loom) -> None:
    mid = unique_id("panel")
    drive_runs(loom, mid)
    page.goto(f"/migrations/{mid}")
    panel = page.get_by_test_id("metrics-panel")
    for key, value in {"runs-started": "3", "runs-completed": "1", "runs-cancelled": "1", "steps-failed": "1"}.items():
        expect(counter(panel, key)).to_have_text(value)
    expect(panel.get_by_test_id("burndown-summary")).to_contain_text("3 of 4 Candidates left")
    expect(panel.locator(".recharts-area")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "board-metrics.png"))

    link = page.get_by_test_id("download-csv")
    href = f"/api/migrations/{mid}/candidates.csv"
    expect(link).to_have_attribute("href", href)
    expect(link).to_have_attribute("download", "")
    # What the link fetches, with the browser's own session cookie.
    response = page.request.get(href)
    assert response.status == 200, response.text()
    assert f'filename="{mid}-candidates.csv"' in response.headers["content-disposition"]
    lines = response.text().strip().splitlines()
    assert lines[0].startswith("id,kind,status")
    assert {line.split(",")[0] for line in lines[1:]} == {"checkout", "billing", "search", "ledger"}


def test_the_candidate_history_pages_with_show_more(page: Page, loom: Loom) -> None:
    mid = unique_id("history")
    loom.announce(mid, [{"id": "orders", "kind": "service"}], TWO_STEPS)
    loom.start(mid, "orders")
    loom.migrator.wait_dispatch(mid, "orders", "bump-image")
    for n in range(20):  # each round logs three events: the failure, the retry and the new dispatch
        loom.callback(mid, "orders", "bump-image", "failed", error=f"attempt {n + 1} timed out")
        response = loom.client.post(
            f"/api/migrations/{mid}/candidates/orders/retry-step",
            json={"stepName": "bump-image"},
            headers=OPERATOR_AUTH,
        )
        assert response.status_code == 202, response.text
        loom.migrator.wait_dispatch(mid, "orders", "bump-image", count=n + 2)

    def logged() -> bool:
        response = loom.client.get(f"/api/migrations/{mid}/events", params={"limit": 1}, headers=OPERATOR_AUTH)
        return response.status_code == 200 and response.json()["total"] >= 62

    wait_for(logged, 30, "sixty failures and retries in the event log")
    page.goto(f"/migrations/{mid}/candidates/orders")
    history = page.get_by_test_id("history")
    expect(history.get_by_test_id("event")).to_have_count(50)
    expect(history).to_contain_text("Showing 50 of")
    history.get_by_test_id("show-more-events").click()
    expect(history.get_by_test_id("show-more-events")).to_have_count(0)
    assert history.get_by_test_id("event").count() >= 62


def test_the_boards_metrics_panel_follows_runs_without_a_reload(page: Page, loom: Loom) -> None:
    mid = unique_id("live-panel")
    loom.announce(mid, [{"id": "checkout", "kind": "service"}], TWO_STEPS)
    page.goto(f"/migrations/{mid}")
    panel = page.get_by_test_id("metrics-panel")
    expect(counter(panel, "runs-started")).to_have_text("0")
    loom.start(mid, "checkout")
    expect(counter(panel, "runs-started")).to_have_text("1", timeout=5_000)
