"""Signing in to the board: the sign-in page, sign-out, roles on every action, and who the event log names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import ARTIFACTS, Loom, unique_id
from tests.e2e.harness import E2E_OPERATOR, E2E_PASSWORD, OPERATOR_AUTH, wait_for

pytestmark = pytest.mark.e2e

REVIEWED = [
    {"name": "review", "migratorApp": "fake", "type": "manual-review", "description": "An operator checks it"},
]


@pytest.fixture
def signed_out(browser: Browser, loom: Loom) -> Iterator[Page]:
    """A browser with no session cookie, unlike the `page` every other test gets."""
    context = browser.new_context(base_url=loom.url, viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def context_as(browser: Browser, loom: Loom, name: str) -> BrowserContext:
    state: Any = {"cookies": [loom.session_cookie(name)], "origins": []}
    return browser.new_context(base_url=loom.url, viewport={"width": 1280, "height": 800}, storage_state=state)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def sign_in(page: Page, name: str, password: str) -> None:
    page.get_by_test_id("login-username").fill(name)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()


def awaiting_review(loom: Loom, mid: str, cid: str, *others: str) -> None:
    loom.announce(mid, [{"id": c, "kind": "service"} for c in (cid, *others)], steps=REVIEWED)
    loom.start(mid, cid)
    loom.migrator.wait_dispatch(mid, cid, "review")
    loom.callback(mid, cid, "review", "awaiting_review")


def test_an_unauthenticated_visit_goes_to_sign_in_and_comes_back_after_it(signed_out: Page, loom: Loom) -> None:
    page, name, mid = signed_out, unique_id("olivia"), unique_id("signin")
    loom.add_user(name, "operator")
    loom.announce(mid, [{"id": "checkout", "kind": "service"}])
    page.goto(f"/migrations/{mid}?q=check")
    expect(page).to_have_url(re.compile(r"/login\?next=" + re.escape(quote(f"/migrations/{mid}?q=check", safe=""))))
    expect(page.get_by_test_id("login-username")).to_be_focused()
    shot(page, "sign-in")
    sign_in(page, name, E2E_PASSWORD)
    expect(page).to_have_url(re.compile(re.escape(f"/migrations/{mid}?q=check") + "$"))
    expect(page.get_by_test_id("signed-in-user")).to_have_text(name)
    expect(page.get_by_test_id("signed-in-role")).to_have_text("operator")
    expect(page.get_by_test_id("filter-text")).to_have_value("check")
    shot(page, "signed-in-board")


def test_a_wrong_password_says_so_on_the_page_and_keeps_the_username(signed_out: Page, loom: Loom) -> None:
    page, name = signed_out, unique_id("wanda")
    loom.add_user(name, "operator")
    page.goto("/login?next=%2Finbox")
    sign_in(page, name, "not the password")
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong username or password. Check both and try again.")
    expect(page.get_by_test_id("login-username")).to_have_value(name)
    assert page.context.cookies() == []
    shot(page, "sign-in-wrong-password")
    sign_in(page, name, E2E_PASSWORD)
    expect(page).to_have_url(re.compile(r"/inbox/?$"))


def test_sign_out_ends_the_session_and_the_next_page_asks_again(signed_out: Page, loom: Loom) -> None:
    page, name = signed_out, unique_id("simon")
    loom.add_user(name, "admin")
    page.goto("/login")
    sign_in(page, name, E2E_PASSWORD)
    expect(page.get_by_test_id("signed-in-user")).to_have_text(name)
    expect(page.get_by_test_id("signed-in-role")).to_have_text("admin")
    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/login/?$"))
    assert page.request.get("/api/auth/me").status == 401
    page.goto("/metrics")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmetrics(%2F)?$"))


def test_a_viewer_sees_every_action_disabled_and_cannot_start_a_run(browser: Browser, loom: Loom) -> None:
    name, mid = unique_id("vera"), unique_id("viewer")
    loom.add_user(name, "viewer")
    awaiting_review(loom, mid, "orders", "ledger")
    context = context_as(browser, loom, name)
    page = context.new_page()
    try:
        page.goto(f"/migrations/{mid}")
        expect(page.get_by_test_id("signed-in-role")).to_have_text("viewer")
        expect(page.locator('[data-candidate="ledger"]')).to_be_visible()
        expect(page.get_by_test_id("select-candidate")).to_have_count(0)

        page.goto(f"/migrations/{mid}/candidates/orders")
        for action in ("approve", "reject", "cancel"):
            expect(page.get_by_test_id(action)).to_be_disabled()
        expect(page.get_by_test_id("preview")).to_be_enabled()  # a dry run changes nothing
        expect(page.get_by_test_id("review-comment")).to_be_disabled()
        page.get_by_test_id("viewer-disabled").filter(has=page.get_by_test_id("approve")).hover()
        expect(page.get_by_role("tooltip")).to_have_text("Viewers can't change Runs")
        shot(page, "viewer-candidate")

        page.goto(f"/migrations/{mid}/candidates/ledger")
        expect(page.get_by_test_id("start")).to_be_disabled()
        refused = page.request.post(f"/api/migrations/{mid}/candidates/ledger/start", data={})
        assert refused.status == 403, refused.text()
        expect(page.get_by_test_id("candidate-status")).to_have_text("Not started")

        page.goto("/inbox")
        row = page.locator('[data-testid="inbox-row"][data-candidate="orders"]').filter(has_text=mid)
        expect(row.get_by_test_id("inbox-approve")).to_be_disabled()
    finally:
        context.close()
    assert loom.migrator.dispatched(mid, "ledger") == []


def test_an_operators_approval_is_recorded_under_their_name(page: Page, loom: Loom) -> None:
    mid = unique_id("approve")
    awaiting_review(loom, mid, "billing")
    page.goto(f"/migrations/{mid}/candidates/billing")
    expect(page.get_by_test_id("signed-in-user")).to_have_text(E2E_OPERATOR)
    page.get_by_test_id("review-comment").fill("Dashboards are green")
    page.get_by_test_id("approve").click()
    expect(page.locator('[data-testid="timeline-step"][data-step="review"]')).to_have_attribute(
        "data-status", "completed"
    )

    def approval() -> dict[str, Any] | None:
        response = loom.client.get(
            f"/api/migrations/{mid}/events", params={"type": "review_approved"}, headers=OPERATOR_AUTH
        )
        events = response.json()["events"]
        return events[0] if events else None

    event = wait_for(approval, 20, "the approval in the event log")
    assert (event["actor"], event["metadata"]["comment"]) == (E2E_OPERATOR, "Dashboards are green")
    expect(page.get_by_test_id("event-actor").first).to_contain_text(E2E_OPERATOR)


def test_a_page_left_open_after_its_session_ended_cannot_start_a_run(browser: Browser, loom: Loom) -> None:
    name, mid = unique_id("otto"), unique_id("ended")
    loom.add_user(name, "operator")
    loom.announce(mid, [{"id": "search", "kind": "service"}], steps=REVIEWED)
    context = context_as(browser, loom, name)
    page = context.new_page()
    try:
        page.goto(f"/migrations/{mid}/candidates/search")
        expect(page.get_by_test_id("start")).to_be_enabled()
        cookie = next(c["value"] for c in context.cookies() if c["name"] == "loom_session")
        httpx.post(f"{loom.url}/api/auth/logout", cookies={"loom_session": cookie}).raise_for_status()
        page.get_by_test_id("start").click()
        expect(page.get_by_text("Your sign-in has ended")).to_be_visible()
        expect(page.get_by_test_id("candidate-status")).to_have_text("Not started")
    finally:
        context.close()
    assert loom.migrator.dispatched(mid) == []
