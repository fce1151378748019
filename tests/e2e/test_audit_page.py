"""The audit page against the built app: filters by actor and type, keeps them in the URL, downloads the same rows."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ARTIFACTS, Loom, unique_id
from tests.e2e.harness import OPERATOR_AUTH, TEMPORAL_UI_URL, wait_for

pytestmark = pytest.mark.e2e

CANDIDATES = ("checkout", "billing", "search")


def events(loom: Loom, mid: str, **params: str) -> list[dict]:
    response = loom.client.get(f"/api/migrations/{mid}/events", params={"limit": 1000, **params}, headers=OPERATOR_AUTH)
    assert response.status_code == 200, response.text
    return response.json()["events"]


def drive(loom: Loom, mid: str) -> str:
    """Three Runs started by the operator's token, the last one cancelled; the starter's name as the log has it."""
    loom.announce(mid, [{"id": cid, "kind": "service"} for cid in CANDIDATES])
    for cid in CANDIDATES:
        loom.start(mid, cid)
    loom.migrator.wait_dispatch(mid, "search", "bump-image")
    response = loom.client.post(f"/api/migrations/{mid}/candidates/search/cancel", headers=OPERATOR_AUTH)
    assert response.status_code == 204, response.text
    wait_for(lambda: len(events(loom, mid, type="run_cancelled")) == 1, 30, "the cancel to reach the log")
    (starter,) = {e["actor"] for e in events(loom, mid, type="run_started")}
    assert starter
    return starter


def test_the_audit_filters_by_actor_and_type_in_the_url_and_downloads_the_same_rows(page: Page, loom: Loom) -> None:
    mid = unique_id("audit")
    actor = drive(loom, mid)
    everything = events(loom, mid)
    assert {e["eventType"] for e in everything} >= {"run_started", "run_cancelled", "step_dispatched"}

    page.goto(f"/migrations/{mid}")
    page.get_by_test_id("audit-link").click()
    expect(page).to_have_url(re.compile(rf"/migrations/{mid}/audit$"))
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(len(everything))

    page.get_by_test_id("audit-actor").fill(actor)
    page.get_by_test_id("audit-type").click()
    page.get_by_role("option", name="Run started", exact=True).click()
    page.get_by_test_id("audit-apply").click()

    expect(rows).to_have_count(3)
    for i in range(3):
        expect(rows.nth(i)).to_have_attribute("data-type", "run_started")
        expect(rows.nth(i)).to_have_attribute("data-actor", actor)
    assert {rows.nth(i).get_attribute("data-candidate") for i in range(3)} == set(CANDIDATES)
    expect(page.get_by_test_id("audit-summary")).to_have_text("Events 1 to 3 of 3")
    expect(page).to_have_url(re.compile(r"\?"))
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"type": ["run_started"], "actor": [actor]}
    page.screenshot(path=str(ARTIFACTS / "audit-filtered.png"), full_page=True)

    page.reload()  # the URL alone brings the same filter back
    expect(rows).to_have_count(3)
    expect(page.get_by_test_id("audit-actor")).to_have_value(actor)

    link = page.get_by_test_id("audit-download-csv")
    href = link.get_attribute("href") or ""
    assert urlsplit(href).path == f"/api/migrations/{mid}/events.csv"
    assert parse_qs(urlsplit(href).query) == {"type": ["run_started"], "actor": [actor]}
    response = page.request.get(href)  # with the browser's own session cookie
    assert response.status == 200, response.text()
    assert f'filename="{mid}-events.csv"' in response.headers["content-disposition"]
    downloaded = list(csv.DictReader(io.StringIO(response.text())))
    assert {(r["eventType"], r["actor"], r["candidateId"]) for r in downloaded} == {
        ("run_started", actor, cid) for cid in CANDIDATES
    }

    # Across every Migration, the Candidate filter narrows it to this Migration's cancel.
    page.goto(f"/audit?type=run_cancelled&candidate=search&actor={actor}")
    expect(page.locator(f'[data-testid="audit-row"] a[href="/migrations/{mid}"]')).to_have_count(1)

    page.goto(f"/migrations/{mid}/audit?actor=nobody-at-all")
    expect(rows).to_have_count(0)
    expect(page.get_by_text("No events match")).to_be_visible()


def test_the_candidate_page_names_the_runs_workflow_and_links_it_in_the_temporal_ui(page: Page, loom: Loom) -> None:
    mid = unique_id("workflow")
    loom.announce(mid, [{"id": "checkout", "kind": "service"}])
    loom.start(mid, "checkout")
    page.goto(f"/migrations/{mid}/candidates/checkout")
    expect(page.get_by_test_id("workflow-id")).to_have_text(f"{mid}__checkout")
    expect(page.get_by_test_id("workflow-link")).to_have_attribute(
        "href", f"{TEMPORAL_UI_URL.rstrip('/')}/namespaces/default/workflows/{mid}__checkout"
    )
