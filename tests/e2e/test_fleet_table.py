"""The board's Candidate table and failure groups in a real browser: sort, filter, saved views, the URL round trip,
and one click that retries a whole failure group."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Loom, unique_id

pytestmark = pytest.mark.e2e


def candidate(cid: str, tier: str) -> dict[str, Any]:
    return {"id": cid, "kind": "service", "metadata": {"team": "payments", "tier": tier}}


def rows(page: Page) -> Locator:
    return page.get_by_test_id("table-row")


def row_ids(page: Page) -> list[str]:
    return [r.get_attribute("data-candidate") or "" for r in rows(page).all()]


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def url_has(page: Page, *pairs: str) -> None:
    """The address bar says so (it follows the table a moment after the rows)."""
    for pair in pairs:
        expect(page).to_have_url(re.compile(r"[?&]" + re.escape(pair) + r"(&|$)"))


def pick(page: Page, testid: str, option: str) -> None:
    page.get_by_test_id(testid).click()
    page.get_by_role("option", name=option, exact=True).click()


def failing_fleet(loom: Loom, prefix: str) -> str:
    """Five Candidates: two failed at bump-image with the same error but for its numbers and host, one with an
    open PR whose checks fail, two not started."""
    mid = unique_id(prefix)
    loom.announce(mid, [candidate(f"svc-{i}", tier=str(i % 2)) for i in range(5)])
    for cid in ("svc-0", "svc-1", "svc-2"):
        loom.start(mid, cid)
        loom.migrator.wait_dispatch(mid, cid, "bump-image")
    loom.callback(mid, "svc-0", "bump-image", "failed", error="timeout after 30s talking to 'git-1.acme'")
    loom.callback(mid, "svc-1", "bump-image", "failed", error="timeout after 45s talking to 'git-7.acme'")
    loom.callback(mid, "svc-2", "bump-image", "open", prUrl="https://git.acme/svc-2/pull/3", checks="failing")
    return mid


def test_the_table_sorts_filters_and_keeps_its_view_in_the_url(page: Page, loom: Loom) -> None:
    mid = failing_fleet(loom, "table")
    page.goto(f"/migrations/{mid}")
    page.get_by_test_id("view-table").click()
    expect(rows(page)).to_have_count(5)
    expect(page).to_have_url(re.compile(r"view=table"))
    expect(page.get_by_test_id("table-range")).to_have_text("1\u20135 of 5")
    assert row_ids(page) == [f"svc-{i}" for i in range(5)]

    page.get_by_test_id("sort-id").click()
    expect(rows(page).first).to_have_attribute("data-candidate", "svc-4")
    header = page.locator("th", has=page.get_by_test_id("sort-id"))
    expect(header).to_have_attribute("aria-sort", "descending")
    url_has(page, "sort=-id")

    pick(page, "table-filter-step-status", "Failed")
    expect(rows(page)).to_have_count(2)
    url_has(page, "stepStatus=failed")
    assert row_ids(page) == ["svc-1", "svc-0"]

    pick(page, "table-filter-step-status", "Any")
    page.get_by_test_id("table-filter-meta").fill("tier=0")
    page.get_by_test_id("table-filter-meta").press("Enter")
    expect(rows(page)).to_have_count(3)
    url_has(page, "m.tier=0")

    pick(page, "table-filter-checks", "Checks failing")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-candidate", "svc-2")
    expect(rows(page).first.get_by_test_id("pr-checks")).to_have_text("\u2717")

    page.get_by_test_id("table-clear").click()
    expect(rows(page)).to_have_count(5)
    expect(page).not_to_have_url(re.compile("m.tier"))
    assert query(page)["sort"] == ["-id"]

    # A shared link opens the same view: filters, sort, chosen columns.
    shared = f"/migrations/{mid}?view=table&stepStatus=failed&sort=id&cols=tier"
    page.goto(shared)
    expect(rows(page)).to_have_count(2)
    assert row_ids(page) == ["svc-0", "svc-1"]
    expect(page.locator("th", has_text="tier")).to_be_visible()
    expect(rows(page).first.locator("td").last).to_have_text("0")
    page.reload()
    expect(rows(page)).to_have_count(2)

    # Headers sort from the keyboard too; a filter nothing matches says so and offers the way back.
    page.get_by_test_id("sort-kind").focus()
    page.keyboard.press("Enter")
    expect(page.locator("th", has=page.get_by_test_id("sort-kind"))).to_have_attribute("aria-sort", "ascending")
    url_has(page, "sort=kind")
    page.get_by_test_id("table-filter-failure").fill("no such failure")
    page.get_by_test_id("table-filter-failure").press("Enter")
    expect(page.get_by_test_id("table-empty")).to_contain_text("No Candidates match these filters")
    page.get_by_test_id("table-empty").get_by_role("button", name="Clear filters").click()
    expect(rows(page)).to_have_count(5)
    page.goto(shared)
    expect(rows(page)).to_have_count(2)

    # Narrowing by text and pressing Enter changes the URL; a row opens its Candidate.
    page.get_by_test_id("table-filter-q").fill("svc-1")
    page.get_by_test_id("table-filter-q").press("Enter")
    expect(rows(page)).to_have_count(1)
    url_has(page, "q=svc-1")
    rows(page).first.get_by_test_id("row-link").click()
    expect(page).to_have_url(re.compile(f"/migrations/{mid}/candidates/svc-1$"))
    page.go_back()
    expect(rows(page)).to_have_count(1)
    expect(page.get_by_test_id("table-filter-q")).to_have_value("svc-1")


def test_the_card_and_the_timeline_show_the_prs_checks_too(page: Page, loom: Loom) -> None:
    mid = failing_fleet(loom, "prstate")
    page.goto(f"/migrations/{mid}")
    card = page.locator('[data-testid="candidate-card"][data-candidate="svc-2"]')
    expect(card.get_by_test_id("pr-checks")).to_have_text("\u2717")
    expect(card.get_by_test_id("pr-checks")).to_have_attribute("title", "Checks failing")
    page.goto(f"/migrations/{mid}/candidates/svc-2")
    step = page.locator('[data-testid="timeline-step"][data-step="bump-image"]')
    expect(step.get_by_test_id("pr-checks")).to_have_text("\u2717")


def open_views_menu(page: Page) -> None:
    """Open the Views menu once the last one is gone: a click while its layer is still there only dismisses it."""
    trigger = page.get_by_test_id("views-menu")
    expect(page.get_by_role("menu")).to_have_count(0)
    trigger.click()
    expect(trigger).to_have_attribute("data-state", "open")


def test_a_saved_view_opens_again_by_name_and_can_be_deleted(page: Page, loom: Loom) -> None:
    mid = failing_fleet(loom, "views")
    page.goto(f"/migrations/{mid}?view=table&stepStatus=failed&sort=-id&cols=tier")
    expect(rows(page)).to_have_count(2)
    page.get_by_test_id("view-name").fill("Failed bumps")
    page.get_by_test_id("save-view").click()
    expect(page.get_by_text("Saved view 'Failed bumps'")).to_be_visible()

    page.goto(f"/migrations/{mid}?view=table")
    expect(rows(page)).to_have_count(5)
    page.get_by_test_id("views-menu").click()
    page.get_by_role("menuitem", name="Failed bumps").click()
    expect(rows(page)).to_have_count(2)
    assert row_ids(page) == ["svc-1", "svc-0"]
    url_has(page, "stepStatus=failed", "cols=tier")

    open_views_menu(page)
    page.get_by_role("menuitem", name="Delete a view").click()
    page.locator('[data-testid="delete-view"][data-view="Failed bumps"]').click()
    expect(page.get_by_text("Deleted view 'Failed bumps'")).to_be_visible()
    open_views_menu(page)
    expect(page.get_by_role("menuitem", name="No saved views yet")).to_be_visible()


def test_one_click_retries_every_candidate_of_a_failure_group(page: Page, loom: Loom) -> None:
    mid = failing_fleet(loom, "groups")
    page.goto(f"/migrations/{mid}?view=table")
    group = page.get_by_test_id("failure-group")
    expect(group).to_have_count(1)
    expect(group).to_contain_text("bump-image")
    expect(group).to_contain_text("2 Candidates")
    expect(group.get_by_test_id("group-example")).to_have_count(2)

    group.get_by_test_id("group-show").click()
    expect(rows(page)).to_have_count(2)
    expect(page).to_have_url(re.compile(r"failureGroup=[0-9a-f]{16}"))

    group.get_by_test_id("group-retry").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Retry 2 failed Steps?")
    dialog.get_by_test_id("group-retry-confirm").click()
    for cid in ("svc-0", "svc-1"):
        loom.migrator.wait_dispatch(mid, cid, "bump-image", count=2)
    expect(page.get_by_text("Retried 2 Candidates")).to_be_visible()
    expect(page.get_by_test_id("failure-group")).to_have_count(0)
