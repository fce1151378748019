"""Drift in the browser: a completed Candidate whose dry run still changes a file is checked, badged and filtered."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ARTIFACTS, Loom, unique_id
from tests.e2e.harness import OPERATOR_AUTH, wait_for

pytestmark = pytest.mark.e2e

ONE_STEP = [{"name": "bump-image", "migratorApp": "fake", "description": "Open a PR that bumps the image tag"}]
STILL_CHANGES = {
    "steps": [
        {
            "stepName": "bump-image",
            "files": [
                {
                    "path": "Dockerfile",
                    "repo": "checkout",
                    "before": "FROM base:1\n",
                    "after": "FROM base:2\n",
                    "status": "modified",
                }
            ],
        }
    ]
}


def complete(loom: Loom, mid: str, cid: str) -> None:
    loom.start(mid, cid)
    loom.migrator.wait_dispatch(mid, cid, "bump-image")
    loom.callback(mid, cid, "bump-image", "completed")

    def completed() -> bool:
        response = loom.client.get(f"/api/migrations/{mid}/candidates", headers=OPERATOR_AUTH)
        return {c["id"]: c["status"] for c in response.json()}.get(cid) == "completed"

    wait_for(completed, 30, f"{cid} to complete")


def test_a_drift_check_badges_the_candidate_shows_its_diff_and_the_board_filters_it(page: Page, loom: Loom) -> None:
    mid = unique_id("drift")
    loom.announce(mid, [{"id": cid, "kind": "service"} for cid in ("checkout", "billing")], ONE_STEP)
    complete(loom, mid, "checkout")
    complete(loom, mid, "billing")
    loom.migrator.dry_runs[f"{mid}/checkout"] = STILL_CHANGES  # billing's dry run answers no Steps: no changes

    page.goto(f"/migrations/{mid}/candidates/checkout")
    drift = page.get_by_test_id("drift")
    expect(drift.get_by_test_id("drift-summary")).to_contain_text("A merged PR does not prove")
    drift.get_by_test_id("check-drift").click()
    expect(drift.get_by_test_id("drifted-badge")).to_be_visible()
    expect(drift.get_by_test_id("drift-summary")).to_contain_text("still changes 1 file")
    expect(drift.get_by_test_id("diff-file")).to_contain_text("Dockerfile")
    expect(drift.get_by_test_id("diff-file")).to_contain_text("FROM base:2")
    page.screenshot(path=str(ARTIFACTS / "candidate-drifted.png"), full_page=True)

    page.goto(f"/migrations/{mid}/candidates/billing")
    page.get_by_test_id("drift").get_by_test_id("check-drift").click()
    expect(page.get_by_test_id("drift").get_by_test_id("drift-summary")).to_contain_text("changes nothing")

    page.goto(f"/migrations/{mid}?drifted=1")
    cards = page.get_by_test_id("candidate-card")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-candidate", "checkout")
    expect(cards.first.get_by_test_id("drifted-badge")).to_be_visible()
    expect(page.get_by_test_id("filter-drifted")).to_be_checked()
