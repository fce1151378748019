"""The operator board end to end: a real browser, the built app, a real Temporal server and an HTTP fake Migrator."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import ARTIFACTS, Loom, unique_id
from tests.e2e.harness import OPERATOR_AUTH

pytestmark = pytest.mark.e2e

THREE_STEPS = [
    {"name": "bump-image", "migratorApp": "fake", "description": "Open a PR that bumps the image tag"},
    {
        "name": "review",
        "migratorApp": "fake",
        "type": "manual-review",
        "description": "An operator checks the rollout",
        "instructions": "Check the dashboards, then approve.",
    },
    {"name": "rollout", "migratorApp": "fake", "description": "Roll the new image out"},
]
TARGET_IMAGE = [{"name": "targetImage", "label": "Target image", "description": "The image tag to move to"}]


def candidate(cid: str, **metadata: str) -> dict[str, Any]:
    return {
        "id": cid,
        "kind": "service",
        "metadata": {"team": "payments", **metadata},
        "files": [
            {
                "name": "chart",
                "repo": f"acme/{cid}",
                "files": [{"path": "values.yaml", "url": f"https://github.com/acme/{cid}/blob/main/values.yaml"}],
            }
        ],
    }


def column(page: Page, status: str) -> Locator:
    return page.locator(f'[data-testid="column"][data-status="{status}"]')


def card(scope: Page | Locator, cid: str) -> Locator:
    return scope.locator(f'[data-testid="candidate-card"][data-candidate="{cid}"]')


def step(page: Page, name: str) -> Locator:
    return page.locator(f'[data-testid="timeline-step"][data-step="{name}"]')


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def test_a_candidate_goes_from_not_started_to_completed_live(page: Page, loom: Loom) -> None:
    mid = unique_id("flow")
    loom.announce(
        mid,
        [candidate("checkout"), candidate("billing", team="core"), candidate("search", team="discovery")],
        steps=THREE_STEPS,
        required_inputs=TARGET_IMAGE,
    )
    page.goto(f"/migrations/{mid}")
    expect(column(page, "not_started").get_by_test_id("column-count")).to_have_text("3")
    expect(card(column(page, "not_started"), "checkout")).to_be_visible()
    expect(page.get_by_test_id("needs-me-count")).to_be_visible()

    card(page, "checkout").get_by_test_id("candidate-link").click()
    expect(page).to_have_url(re.compile(f"/migrations/{mid}/candidates/checkout$"))
    page.get_by_test_id("start").click()
    page.get_by_test_id("input-targetImage").fill("registry.acme/base:2.0")
    page.get_by_test_id("start-confirm").click()
    expect(page.get_by_test_id("candidate-status")).to_have_text("Running")
    expect(step(page, "bump-image")).to_have_attribute("data-status", "in_progress")
    dispatch = loom.migrator.wait_dispatch(mid, "checkout", "bump-image")
    assert dispatch.candidate.metadata["targetImage"] == "registry.acme/base:2.0"

    pr = "https://github.com/acme/checkout/pull/7"
    loom.callback(mid, "checkout", "bump-image", "open", prUrl=pr)
    expect(step(page, "bump-image").get_by_test_id("timeline-pr-link")).to_have_attribute("href", pr)

    page.goto(f"/migrations/{mid}")
    running = column(page, "running")
    expect(card(running, "checkout")).to_be_visible()
    expect(column(page, "not_started").get_by_test_id("column-count")).to_have_text("2")
    loom.callback(mid, "checkout", "bump-image", "merged")
    loom.migrator.wait_dispatch(mid, "checkout", "review")
    loom.callback(mid, "checkout", "review", "awaiting_review")
    expect(card(running, "checkout")).to_have_attribute("data-attention", "review")
    expect(card(running, "checkout").get_by_test_id("step-status")).to_have_text("Awaiting review")
    shot(page, "board")  # test-artifacts/board.png; the README's docs/board.png is refreshed from it by hand

    card(page, "checkout").get_by_test_id("candidate-link").click()
    expect(step(page, "review")).to_have_attribute("data-status", "awaiting_review")
    page.get_by_test_id("review-comment").fill("Dashboards are green")
    shot(page, "timeline-review")
    page.get_by_test_id("approve").click()
    expect(step(page, "review")).to_have_attribute("data-status", "completed")
    loom.migrator.wait_dispatch(mid, "checkout", "rollout")
    expect(step(page, "rollout")).to_have_attribute("data-status", "in_progress")
    loom.callback(mid, "checkout", "rollout", "completed")
    expect(page.get_by_test_id("candidate-status")).to_have_text("Completed")
    expect(page.get_by_test_id("event").first).to_be_visible()
    shot(page, "timeline")

    page.goto(f"/migrations/{mid}")
    expect(card(column(page, "completed"), "checkout")).to_be_visible()
    expect(column(page, "completed").get_by_test_id("column-count")).to_have_text("1")


def test_a_failed_step_shows_its_error_in_needs_me_and_retry_dispatches_it_again(page: Page, loom: Loom) -> None:
    mid = unique_id("retry")
    loom.announce(mid, [candidate("orders")])
    page.goto(f"/migrations/{mid}/candidates/orders")
    page.get_by_test_id("start").click()
    loom.migrator.wait_dispatch(mid, "orders", "bump-image")
    loom.callback(mid, "orders", "bump-image", "failed", error="helm template failed: missing value image.tag")
    expect(step(page, "bump-image").get_by_test_id("step-error")).to_contain_text("missing value image.tag")

    page.goto("/inbox")
    row = page.locator('[data-testid="inbox-row"][data-candidate="orders"]')
    expect(row).to_contain_text("Failed")
    expect(page.get_by_test_id("needs-me-count")).not_to_have_text("0")
    shot(page, "needs-me")

    page.goto(f"/migrations/{mid}/candidates/orders")
    step(page, "bump-image").get_by_test_id("retry-step").click()
    expect(step(page, "bump-image")).to_have_attribute("data-status", "in_progress")
    loom.migrator.wait_dispatch(mid, "orders", "bump-image", count=2)


def test_cancel_asks_first_and_returns_the_card_to_not_started(page: Page, loom: Loom) -> None:
    mid = unique_id("cancel")
    loom.announce(mid, [candidate("ledger")])
    page.goto(f"/migrations/{mid}/candidates/ledger")
    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("candidate-status")).to_have_text("Running")
    loom.migrator.wait_dispatch(mid, "ledger", "bump-image")
    page.get_by_test_id("cancel").click()
    expect(page.get_by_role("alertdialog")).to_contain_text("Cancel the Run of ledger?")
    page.get_by_test_id("cancel-confirm").click()
    expect(page.get_by_test_id("candidate-status")).to_have_text("Not started")
    page.goto(f"/migrations/{mid}")
    expect(card(column(page, "not_started"), "ledger")).to_be_visible()
    expect(column(page, "running").get_by_test_id("column-count")).to_have_text("0")


def test_preview_shows_each_steps_diff_and_skipped_steps(page: Page, loom: Loom) -> None:
    mid = unique_id("preview")
    loom.announce(mid, [candidate("checkout")])
    loom.migrator.dry_runs[mid] = {
        "steps": [
            {
                "stepName": "bump-image",
                "files": [
                    {
                        "path": "values.yaml",
                        "repo": "acme/checkout",
                        "before": "image:\n  tag: 1.0\nreplicas: 2\n",
                        "after": "image:\n  tag: 2.0\nreplicas: 2\n",
                        "status": "modified",
                    },
                    {"path": "MIGRATION.md", "after": "Moved to base 2.0\n", "status": "new"},
                ],
            },
            {"stepName": "review", "skipped": True},
        ]
    }
    page.goto(f"/migrations/{mid}/candidates/checkout")
    page.get_by_test_id("preview").click()
    expect(page.get_by_test_id("diff-file").first).to_contain_text("+  tag: 2.0")
    expect(page.get_by_test_id("diff-file").first).to_contain_text("-  tag: 1.0")
    expect(page.get_by_test_id("diff-file")).to_have_count(2)
    expect(page.get_by_test_id("preview-step").nth(1)).to_contain_text("Skipped")
    shot(page, "preview")


def test_bulk_start_starts_every_selected_candidate(page: Page, loom: Loom) -> None:
    mid = unique_id("bulk")
    loom.announce(mid, [candidate(f"svc-{i}") for i in range(4)])
    page.goto(f"/migrations/{mid}")
    for i in range(3):
        card(page, f"svc-{i}").get_by_test_id("select-candidate").click()
    page.get_by_test_id("bulk-start").click()
    expect(column(page, "running").get_by_test_id("column-count")).to_have_text("3")
    expect(column(page, "not_started").get_by_test_id("column-count")).to_have_text("1")
    for i in range(3):
        loom.migrator.wait_dispatch(mid, f"svc-{i}", "bump-image")


def test_bulk_start_asks_for_required_inputs_once_for_the_migration(page: Page, loom: Loom) -> None:
    mid = unique_id("bulk-inputs")
    loom.announce(mid, [candidate(f"svc-{i}") for i in range(3)], required_inputs=TARGET_IMAGE)
    page.goto(f"/migrations/{mid}")
    for i in range(2):
        card(page, f"svc-{i}").get_by_test_id("select-candidate").click()
    page.get_by_test_id("bulk-start").click()
    expect(page.get_by_test_id("inputs-for-every-candidate")).to_be_checked()
    page.get_by_test_id("input-targetImage").fill("base:2.0")
    page.get_by_test_id("bulk-start-confirm").click()
    expect(column(page, "running").get_by_test_id("column-count")).to_have_text("2")
    for i in range(2):
        assert (
            loom.migrator.wait_dispatch(mid, f"svc-{i}", "bump-image").candidate.metadata["targetImage"] == "base:2.0"
        )
    saved = loom.client.get(f"/api/migrations/{mid}/inputs", headers=OPERATOR_AUTH)
    assert saved.json()["inputs"] == {"targetImage": "base:2.0"}

    # Asked once: the next bulk start needs no dialog, the Migration's value applies.
    card(page, "svc-2").get_by_test_id("select-candidate").click()
    page.get_by_test_id("bulk-start").click()
    expect(column(page, "running").get_by_test_id("column-count")).to_have_text("3")
    expect(page.get_by_test_id("bulk-start-confirm")).to_have_count(0)
    assert loom.migrator.wait_dispatch(mid, "svc-2", "bump-image").candidate.metadata["targetImage"] == "base:2.0"


def test_the_filter_lives_in_the_url_and_survives_a_reload(page: Page, loom: Loom) -> None:
    mid = unique_id("filter")
    loom.announce(
        mid, [candidate("payments-api"), candidate("search", team="discovery"), candidate("catalog", team="storefront")]
    )
    page.goto(f"/migrations/{mid}")
    expect(column(page, "not_started").get_by_test_id("column-count")).to_have_text("3")
    card(page, "search").get_by_test_id("meta-chip").first.click()
    expect(page).to_have_url(re.compile(r"\?m\.team=discovery$"))
    expect(column(page, "not_started").get_by_test_id("column-count")).to_have_text("1")
    page.reload()
    expect(page.get_by_test_id("meta-filter")).to_contain_text("discovery")
    expect(column(page, "not_started").get_by_test_id("column-count")).to_have_text("1")

    page.goto(f"/migrations/{mid}")
    page.get_by_test_id("filter-text").fill("pay")
    expect(page).to_have_url(re.compile(r"\?q=pay$"))
    expect(column(page, "not_started").get_by_test_id("column-count")).to_have_text("1")
    page.reload()
    expect(page.get_by_test_id("filter-text")).to_have_value("pay")
    expect(card(page, "payments-api")).to_be_visible()
    expect(card(page, "catalog")).to_have_count(0)


def test_a_refused_action_shows_looms_own_error_text(page: Page, loom: Loom) -> None:
    mid = unique_id("refused")
    loom.announce(mid, [candidate("inventory")], required_inputs=TARGET_IMAGE)
    page.goto(f"/migrations/{mid}/candidates/inventory")
    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("input-targetImage")).to_have_value("")
    page.get_by_test_id("start-confirm").click()
    expect(page.get_by_text("Missing required inputs: targetImage")).to_be_visible()
    expect(page.get_by_test_id("candidate-status")).to_have_text("Not started")


def test_migrations_list_each_migration_with_its_progress_in_light_and_dark(page: Page, loom: Loom) -> None:
    mid = unique_id("list")
    loom.announce(mid, [candidate(f"app-{i}") for i in range(5)])
    loom.start(mid, "app-0")
    page.goto("/")
    card_ = page.get_by_test_id("migration-card").filter(has_text=mid)
    expect(card_).to_contain_text("5 Candidates")
    expect(card_).to_contain_text("Running: 1")
    shot(page, "migrations")
    page.emulate_media(color_scheme="dark")
    page.goto(f"/migrations/{mid}")
    expect(column(page, "running").get_by_test_id("column-count")).to_have_text("1")
    shot(page, "board-dark")


def test_a_rollout_started_by_policy_shows_its_counts_moving_and_pauses_from_the_board(page: Page, loom: Loom) -> None:
    mid = unique_id("rollout")
    loom.announce(mid, [candidate(f"svc-{i}") for i in range(4)], steps=[THREE_STEPS[0]])
    policy = loom.client.put(f"/api/migrations/{mid}/rollout", json={"maxRunning": 2}, headers=OPERATOR_AUTH)
    assert policy.status_code == 200, policy.text
    started = loom.client.post(f"/api/migrations/{mid}/rollout/start", json={}, headers=OPERATOR_AUTH)
    assert started.status_code == 202, started.text
    page.goto(f"/migrations/{mid}")
    panel = page.get_by_test_id("rollout-panel")
    expect(panel.get_by_test_id("rollout-state")).to_have_text("Rolling out")
    expect(panel.get_by_test_id("rollout-counts")).to_contain_text("2 running")
    loom.migrator.wait_dispatch(mid, "svc-0", "bump-image")
    loom.callback(mid, "svc-0", "bump-image", "completed")
    expect(panel.get_by_test_id("rollout-counts")).to_contain_text("1 completed")
    panel.get_by_test_id("rollout-pause").click()
    expect(panel.get_by_test_id("rollout-state")).to_have_text("Paused")
    expect(panel).to_contain_text("paused by")
    shot(page, "rollout-panel")
