"""The rollout page end to end: an operator sets a policy, starts a rollout and pauses it; Needs me shows the paused
rollout and resumes it; a bulk action over a filter is previewed, then run, with its progress read back."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Loom, unique_id
from tests.e2e.harness import OPERATOR_AUTH
from tests.e2e.test_board import TARGET_IMAGE, THREE_STEPS, candidate, shot

pytestmark = pytest.mark.e2e


def test_an_operator_sets_a_policy_starts_the_rollout_watches_it_and_pauses_and_resumes_it(
    page: Page, loom: Loom
) -> None:
    mid = unique_id("rollout-page")
    loom.announce(mid, [candidate(f"svc-{i}") for i in range(5)], steps=[THREE_STEPS[0]])
    page.goto(f"/migrations/{mid}")
    page.get_by_test_id("open-rollout").click()
    expect(page).to_have_url(f"{loom.url}/migrations/{mid}/rollout")
    expect(page.get_by_test_id("rollout-start")).to_be_disabled()  # no policy yet

    page.get_by_test_id("policy-max_running").fill("0")
    page.get_by_test_id("policy-save").click()
    expect(page.get_by_test_id("policy-error-max_running")).to_be_visible()
    page.get_by_test_id("policy-max_running").fill("2")
    page.get_by_test_id("policy-group_key").fill("team")
    page.get_by_test_id("policy-group_max").fill("nine")
    page.get_by_test_id("policy-save").click()
    expect(page.get_by_test_id("policy-error-group_max")).to_be_visible()
    page.get_by_test_id("policy-group_key").fill("")
    page.get_by_test_id("policy-group_max").fill("")
    page.get_by_test_id("policy-approve_step").fill("bump-image")
    page.get_by_test_id("policy-save").click()
    expect(page.get_by_test_id("policy-error-approve_step")).to_contain_text("not a manual-review Step")
    page.get_by_test_id("policy-approve_step").fill("")
    page.get_by_test_id("policy-retry_attempts").fill("1")
    page.get_by_test_id("policy-save").click()
    expect(page.get_by_text("Rollout policy saved")).to_be_visible()
    saved = loom.client.get(f"/api/migrations/{mid}/rollout", headers=OPERATOR_AUTH).json()["policy"]
    assert saved["autoRetry"] == {"attempts": 1, "afterMinutes": 0} and saved["autoApprove"] is None, saved

    page.get_by_test_id("rollout-start").click()
    expect(page.get_by_test_id("rollout-page-state")).to_have_text("Rolling out")
    expect(page.get_by_test_id("rollout-page-counts")).to_contain_text("2 running")
    loom.migrator.wait_dispatch(mid, "svc-0", "bump-image")
    loom.callback(mid, "svc-0", "bump-image", "completed")
    expect(page.get_by_test_id("rollout-page-counts")).to_contain_text("1 completed")
    page.get_by_test_id("rollout-page-pause").click()
    expect(page.get_by_test_id("rollout-page-state")).to_have_text("Paused")
    shot(page, "rollout-page")

    page.goto("/inbox")
    row = page.locator(f'[data-testid="inbox-rollout"][data-migration="{mid}"]')
    expect(row).to_contain_text("Rollout paused")
    expect(row.get_by_test_id("inbox-rollout-reason")).to_contain_text("paused by")
    row.get_by_test_id("inbox-rollout-resume").click()
    expect(row).to_have_count(0)
    status = loom.client.get(f"/api/migrations/{mid}/rollout", headers=OPERATOR_AUTH).json()
    assert status["state"] == "running", status


def test_a_bulk_start_over_a_filter_is_previewed_with_its_skips_then_runs_and_reports_progress(
    page: Page, loom: Loom
) -> None:
    mid = unique_id("bulk-page")
    candidates = [candidate(f"pay-{i}") for i in range(3)] + [candidate("web-0", team="web")]
    loom.announce(mid, candidates, steps=[THREE_STEPS[0]], required_inputs=TARGET_IMAGE)
    started = loom.client.post(
        f"/api/migrations/{mid}/candidates/pay-0/start",
        json={"inputs": {"targetImage": "base:1"}},
        headers=OPERATOR_AUTH,
    )
    assert started.status_code == 202, started.text
    page.goto(f"/migrations/{mid}/rollout?m.team=payments")
    expect(page.get_by_test_id("selection-filter_meta")).to_have_value("team=payments")

    page.get_by_test_id("bulk-preview").click()
    expect(page.get_by_test_id("bulk-impact")).to_contain_text("starts 0")
    expect(page.get_by_test_id("bulk-impact")).to_contain_text("targetImage")
    page.get_by_test_id("input-targetImage").fill("base:2")
    page.get_by_test_id("inputs-save").click()
    expect(page.get_by_text("Inputs saved for every Candidate")).to_be_visible()

    page.get_by_test_id("bulk-preview").click()
    impact = page.get_by_test_id("bulk-impact")
    expect(impact).to_contain_text("starts 2")
    expect(impact).to_contain_text("skips 1")
    page.get_by_test_id("bulk-run").click()
    expect(page.get_by_test_id("bulk-progress")).to_have_text("Done: 2 of 2 Candidates · 1 skipped")
    for cid in ("pay-1", "pay-2"):
        loom.migrator.wait_dispatch(mid, cid, "bump-image")
    listed = loom.client.get(f"/api/migrations/{mid}/candidates", headers=OPERATOR_AUTH).json()
    assert {c["id"]: c["status"] for c in listed}["web-0"] == "not_started", "the filter left web-0 out"
