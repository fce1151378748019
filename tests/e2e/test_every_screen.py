"""Every page on a phone, a tablet and a desktop, for admins and viewers, light and dark (issue 17).

Each page is checked for horizontal scrolling and for content leaving its card, photographed at each width into
test-artifacts/, and run through axe-core (from npm, .tools/node_modules) with no serious or critical violation.
The numbered tests follow the issue's list of rough edges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright._impl._api_structures import FloatRect
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.conftest import ARTIFACTS, ROOT, Loom, unique_id
from tests.e2e.harness import OPERATOR_AUTH, wait_for

pytestmark = pytest.mark.e2e

AXE = ROOT / ".tools/node_modules/axe-core/axe.min.js"
WIDTHS = (390, 1024, 1440)
# A review whose instructions are a template with one unbroken 300-character token: it must wrap, not overflow.
LONG_TOKEN = "sha256:" + "0123456789abcdef" * 18
STEPS = [
    {"name": "bump-base-image", "migratorApp": "fake", "description": "Open a PR that bumps the image tag"},
    {
        "name": "review",
        "migratorApp": "fake",
        "type": "manual-review",
        "description": "An operator checks the rollout",
        "instructions": "Check that {id} now runs {targetImage}, digest " + LONG_TOKEN,
    },
    {"name": "rollout", "migratorApp": "fake", "description": "Roll the new image out"},
]
INPUTS = [{"name": "targetImage", "label": "Target image", "description": "The image tag to move to"}]
IMAGE = "registry.acme/base:2.0"
LONG_COMMENT = "x" * 3_000
PR = "https://git.acme/acme/{cid}/pull/7"


@dataclass
class Screens:
    """One Migration with a Candidate in every state a page can show, and one with 10,000 Candidates."""

    mid: str
    big: str
    admin: str
    viewer: str


def _post(loom: Loom, path: str, body: Any = None) -> httpx.Response:
    response = loom.client.post(f"/api/migrations/{path}", json=body, headers=OPERATOR_AUTH)
    assert response.status_code < 300, response.text
    return response


def _started(loom: Loom, mid: str, cid: str) -> None:
    _post(loom, f"{mid}/candidates/{cid}/start", {"inputs": {"targetImage": IMAGE}})
    loom.migrator.wait_dispatch(mid, cid, "bump-base-image")


def _reviewing(loom: Loom, mid: str, cid: str) -> None:
    _started(loom, mid, cid)
    loom.callback(mid, cid, "bump-base-image", "open", prUrl=PR.format(cid=cid))
    loom.callback(mid, cid, "bump-base-image", "merged")
    loom.migrator.wait_dispatch(mid, cid, "review")
    loom.callback(mid, cid, "review", "awaiting_review")


def _candidate(cid: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "kind": "service",
        "metadata": {"team": "payments", "image": f"registry.acme/{cid}:" + "1" * 60},
        "files": [{"name": "chart", "repo": f"acme/{cid}", "files": [{"path": "values.yaml"}]}],
        **extra,
    }


@pytest.fixture(scope="module")
def screens(loom: Loom) -> Screens:
    mid, big = unique_id("screens"), unique_id("big")
    legacy_steps = [s for s in STEPS if s["name"] != "review"]
    loom.announce(
        mid,
        [
            _candidate("checkout"),
            _candidate("ledger"),
            _candidate("billing"),
            _candidate("search"),
            _candidate("legacy", steps=legacy_steps),
            _candidate("orders"),
        ],
        steps=STEPS,
        required_inputs=INPUTS,
    )
    loom.migrator.dry_runs[mid] = {
        "steps": [
            {
                "stepName": "bump-base-image",
                "files": [
                    {
                        "path": "Dockerfile",
                        "repo": "acme/legacy",
                        "status": "modified",
                        "before": "FROM base:1\n",
                        "after": "FROM base:2 # " + LONG_TOKEN + "\n",
                    }
                ],
            },
            {"stepName": "rollout", "skipped": True},
        ]
    }
    _reviewing(loom, mid, "checkout")
    _reviewing(loom, mid, "ledger")
    _post(loom, f"{mid}/candidates/ledger/steps/review/reject", {"comment": LONG_COMMENT})
    _started(loom, mid, "billing")
    loom.callback(mid, "billing", "bump-base-image", "open", prUrl=PR.format(cid="billing"))
    _post(loom, f"{mid}/candidates/billing/cancel")
    _started(loom, mid, "search")
    loom.callback(mid, "search", "bump-base-image", "failed", error="helm upgrade failed: " + LONG_TOKEN)
    _started(loom, mid, "legacy")
    loom.announce(big, [{"id": f"svc-{i:05d}", "kind": "service"} for i in range(10_000)])
    admin, viewer = unique_id("ada"), unique_id("vera")
    loom.add_user(admin, "admin")
    loom.add_user(viewer, "viewer")

    def settled() -> bool:
        steps = loom.client.get(f"/api/migrations/{mid}/candidates/ledger/steps", headers=OPERATOR_AUTH).json()
        return any(s["stepName"] == "review" and s["status"] == "failed" for s in steps.get("steps", []))

    wait_for(settled, 30, "the rejected review of ledger")
    return Screens(mid, big, admin, viewer)


def pages(s: Screens) -> dict[str, tuple[str, str]]:
    """name: (path, the test id that is there once the page has loaded what it shows)."""
    return {
        "migrations": ("/", "migration-card"),
        "board": (f"/migrations/{s.mid}", "candidate-card"),
        "table": (f"/migrations/{s.mid}?view=table&cols=team", "failure-group"),
        "table-big": (f"/migrations/{s.big}?view=table&page=2&sort=-id", "table-row"),
        "candidate": (f"/migrations/{s.mid}/candidates/checkout", "timeline-step"),
        "preview": (f"/migrations/{s.mid}/preview/legacy", "preview-step"),
        "inbox": ("/inbox", "inbox-row"),
        "metrics": ("/metrics", "counter"),
        "login": ("/login", "login-username"),
    }


@pytest.fixture
def context_for(browser: Browser, loom: Loom) -> Iterator[Any]:
    """A browser context signed in as `name` (or no one), at a width, in a colour scheme; closed after the test."""
    opened: list[BrowserContext] = []

    def open_context(name: str | None, width: int = 1440, scheme: str = "light") -> BrowserContext:
        state: Any = {"cookies": [loom.session_cookie(name)] if name else [], "origins": []}
        context = browser.new_context(
            base_url=loom.url,
            viewport={"width": width, "height": 900},
            storage_state=state,
            color_scheme=scheme,  # type: ignore[arg-type]
            reduced_motion="reduce",
        )
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()


def box(locator: Locator) -> FloatRect:
    found = locator.bounding_box()
    assert found is not None, locator
    return found


def visit(page: Page, path: str, ready: str) -> None:
    page.goto(path)
    expect(page.get_by_test_id(ready).first).to_be_visible()


OVERFLOW_JS = """
() => {
  const found = [];
  const cards = document.querySelectorAll('.rt-Card, [data-testid=candidate-card], [data-testid=column]');
  for (const card of cards) {
    const box = card.getBoundingClientRect();
    if (!box.width) continue;
    for (const el of card.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (!r.width || !r.height || getComputedStyle(el).visibility === 'hidden') continue;
      let p = el.parentElement, scroller = false;
      while (p && p !== card) {
        if (['auto', 'scroll'].includes(getComputedStyle(p).overflowX)) { scroller = true; break; }
        p = p.parentElement;
      }
      if (scroller) continue;
      if (r.right > box.right + 1 || r.left < box.left - 1) {
        found.push(`${el.tagName} "${(el.textContent || '').slice(0, 40)}" sticks out of ${card.dataset.testid || card.className}`);
      }
    }
  }
  return found.slice(0, 10);
}
"""


WIDEST_JS = """
() => [...document.querySelectorAll('body *')]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1
    && ![...el.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 5).map((el) => `${el.tagName}.${el.className} "${(el.textContent || '').slice(0, 40)}"`)
"""


def assert_fits(page: Page, where: str) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], (
        f"{where}: the page is {widths[0]} px wide in a {widths[1]} px window: {page.evaluate(WIDEST_JS)}"
    )
    assert page.evaluate(OVERFLOW_JS) == [], where


def test_every_page_fits_a_phone_a_tablet_and_a_desktop_without_sideways_scrolling(
    screens: Screens, context_for: Any
) -> None:
    """Items 1 and 2: nothing wider than the window, nothing out of its card; a screenshot of each page at each width."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        signed_in = context_for(screens.admin, width).new_page()
        signed_out = context_for(None, width).new_page()
        for name, (path, ready) in pages(screens).items():
            page = signed_out if name == "login" else signed_in
            visit(page, path, ready)
            assert_fits(page, f"{name} at {width} px")
            page.screenshot(path=str(ARTIFACTS / f"screen-{name}-{width}.png"), full_page=True)
        ledger = f"/migrations/{screens.mid}/candidates/ledger"
        visit(signed_in, ledger, "event-comment")
        assert_fits(signed_in, f"the rejected review's long comment at {width} px")
    board = context_for(screens.admin, 1440).new_page()
    visit(board, f"/migrations/{screens.mid}", "candidate-card")
    board.screenshot(path=str(ARTIFACTS / "readme-board-desktop.png"))
    phone = context_for(screens.admin, 390).new_page()
    visit(phone, f"/migrations/{screens.mid}", "candidate-card")
    phone.screenshot(path=str(ARTIFACTS / "readme-board-phone.png"))


def axe_violations(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + json.dumps([n["target"] for n in v["nodes"][:3]])
        + f" and {max(0, len(v['nodes']) - 3)} more"
        for v in results
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_nothing_serious_on_any_page_for_admins_and_viewers_in_light_and_dark(
    screens: Screens, context_for: Any
) -> None:
    """Items 11 and 12: landmarks, names, contrast and the rest axe-core checks, with no serious or critical finding."""
    assert AXE.exists(), "axe-core is installed by `make setup` (npm install --prefix .tools axe-core)"
    found: dict[str, list[str]] = {}
    for scheme in ("light", "dark"):
        for who in (screens.admin, screens.viewer, None):
            page = context_for(who, 1440, scheme).new_page()
            for name, (path, ready) in pages(screens).items():
                if (name == "login") != (who is None):
                    continue
                visit(page, path, ready)
                expect(page.locator("html")).to_have_class(re.compile(scheme))
                violations = axe_violations(page)
                if violations:
                    found[f"{name} as {who or 'nobody'} in {scheme}"] = violations
    assert found == {}, json.dumps(found, indent=1)


# -- the numbered rough edges ---------------------------------------------------------------------


def test_1_on_a_phone_the_header_fits_and_the_candidate_page_is_one_column(screens: Screens, context_for: Any) -> None:
    page = context_for(screens.admin, 390).new_page()
    visit(page, f"/migrations/{screens.mid}/candidates/checkout", "timeline-step")
    for control in (
        page.get_by_test_id("nav-metrics"),
        page.get_by_test_id("sign-out"),
        page.get_by_role("button", name="Switch light or dark mode"),
    ):
        assert box(control)["x"] + box(control)["width"] <= 390, control
    steps, metadata = box(page.get_by_test_id("timeline")), box(page.get_by_role("heading", name="Metadata"))
    assert metadata["y"] > steps["y"] + steps["height"] - 1
    assert box(page.get_by_role("heading", level=1))["height"] < 60  # one line, not a word per line
    visit(page, "/inbox", "inbox-row")
    row = page.locator('[data-testid="inbox-row"][data-candidate="checkout"]').filter(has_text=screens.mid)
    a = box(row.get_by_role("link", name="checkout", exact=True))
    b = box(row.get_by_test_id("inbox-approve"))
    assert b["y"] >= a["y"] + a["height"] or b["x"] >= a["x"] + a["width"], "Approve covers the row's text"


def test_2_a_long_instructions_token_wraps_inside_the_step_at_desktop_widths(
    screens: Screens, context_for: Any
) -> None:
    for width in (1024, 1440):
        page = context_for(screens.admin, width).new_page()
        visit(page, f"/migrations/{screens.mid}/candidates/checkout", "review-comment")
        assert_fits(page, f"candidate at {width}")
        step = box(page.locator('[data-testid="timeline-step"][data-step="review"]'))
        comment = box(page.get_by_test_id("review-comment"))
        assert comment["x"] + comment["width"] <= step["x"] + step["width"] + 1


def test_3_review_instructions_show_once_with_the_candidate_and_inputs_filled_in(
    screens: Screens, context_for: Any
) -> None:
    page = context_for(screens.admin).new_page()
    visit(page, f"/migrations/{screens.mid}/candidates/checkout", "review-comment")
    step = page.locator('[data-testid="timeline-step"][data-step="review"]')
    expect(step).to_contain_text(f"Check that checkout now runs {IMAGE}")
    expect(step).not_to_contain_text("{id}")
    expect(step).not_to_contain_text("{targetImage}")
    expect(step.get_by_text(LONG_TOKEN, exact=False)).to_have_count(1)


def test_4_and_14_the_preview_takes_inputs_and_reruns_by_itself_while_one_is_edited(
    screens: Screens, loom: Loom, context_for: Any
) -> None:
    mid = unique_id("inputs")
    loom.announce(mid, [_candidate("orders")], steps=STEPS[:1], required_inputs=INPUTS)
    seen: list[dict[str, Any]] = []

    async def dry_run(request: Any) -> Any:
        from starlette.responses import JSONResponse

        body = await request.json()
        seen.append(body)
        image = body["candidate"]["metadata"].get("targetImage")
        if not image:
            return JSONResponse({"steps": [{"stepName": "bump-base-image", "error": "give targetImage as an input"}]})
        file = {"path": "Dockerfile", "status": "modified", "before": "FROM base:1\n", "after": f"FROM {image}\n"}
        return JSONResponse({"steps": [{"stepName": "bump-base-image", "files": [file]}]})

    loom.migrator.dry_run = dry_run  # type: ignore[method-assign]
    try:
        page = context_for(screens.admin).new_page()
        visit(page, f"/migrations/{mid}/preview/orders", "preview-step")
        expect(page.get_by_test_id("preview-step")).to_contain_text("give targetImage as an input")
        assert not page.get_by_role("button", name=re.compile("preview", re.I)).count()
        page.get_by_test_id("input-targetImage").press_sequentially("base:3", delay=40)
        expect(page.get_by_test_id("diff-file")).to_contain_text("FROM base:3")
        images = [b["candidate"]["metadata"].get("targetImage") for b in seen]
        assert [i for i in images if i] == ["base:3"], images  # debounced: one dry run, not one per keystroke
    finally:
        del loom.migrator.dry_run


def test_5_a_viewer_previews_and_the_breadcrumb_names_the_migration(screens: Screens, context_for: Any) -> None:
    page = context_for(screens.viewer).new_page()
    visit(page, f"/migrations/{screens.mid}/preview/legacy", "diff-file")
    expect(page.get_by_test_id("preview-error")).to_have_count(0)
    crumb = page.get_by_role("navigation", name="Breadcrumb").get_by_role("link").nth(1)
    expect(crumb).to_have_text(re.compile(r"Upgrade base image"))


def test_6_a_step_the_candidates_plan_leaves_out_stays_numbered_and_marked_skipped(
    screens: Screens, context_for: Any
) -> None:
    page = context_for(screens.admin).new_page()
    visit(page, f"/migrations/{screens.mid}/candidates/legacy", "timeline-step")
    steps = page.get_by_test_id("timeline-step")
    expect(steps).to_have_count(3)
    expect(steps.nth(1)).to_have_attribute("data-status", "skipped")
    expect(steps.nth(1)).to_contain_text("Skipped")
    expect(steps.nth(2)).to_contain_text("3")


# Every label of every chart, with whether it starts left of its chart (cut off by the SVG's edge).
CHART_LABELS_JS = """
() => [...document.querySelectorAll('[data-testid=chart] svg text')].map((t) => {
  const svg = t.closest('svg').getBoundingClientRect(), r = t.getBoundingClientRect();
  return [t.textContent, r.left < svg.left - 0.5];
})
"""


def test_7_no_chart_label_is_cut_off(screens: Screens, context_for: Any) -> None:
    page = context_for(screens.admin).new_page()
    visit(page, "/metrics", "counter")
    big = page.locator(f'[data-testid="burndown"][data-migration="{screens.big}"]')
    expect(big.get_by_test_id("chart")).to_contain_text("10000")
    expect(page.get_by_test_id("step-durations").get_by_test_id("chart")).to_contain_text("bump-base-image")
    labels = page.evaluate(CHART_LABELS_JS)
    assert {"10000", "bump-base-image"} <= {text for text, _ in labels}
    assert [text for text, cut in labels if cut] == []


def test_8_limits_are_said_before_submit_and_refused_on_the_field(
    screens: Screens, loom: Loom, context_for: Any
) -> None:
    page = context_for(screens.admin).new_page()
    visit(page, f"/migrations/{screens.mid}/candidates/orders", "timeline-step")
    page.get_by_test_id("start").click()
    expect(page.get_by_role("dialog")).to_contain_text("At most 1,000 characters")
    field = page.get_by_test_id("input-targetImage")
    field.fill("x" * 1_001)
    expect(page.get_by_test_id("input-error-targetImage")).to_contain_text("at most 1,000")
    expect(page.get_by_test_id("start-confirm")).to_be_disabled()
    field.fill("   ")
    expect(page.get_by_test_id("input-error-targetImage")).to_contain_text("only spaces")
    expect(page.get_by_test_id("start-confirm")).to_be_disabled()
    page.keyboard.press("Escape")
    assert loom.migrator.dispatched(screens.mid, "orders") == []
    refused = page.request.patch(  # as the page's own script would send it: with Loom's Origin (the CSRF rule)
        f"/api/migrations/{screens.mid}/candidates/orders/inputs",
        data={"inputs": {"targetImage": "y" * 1_001}},
        headers={"Origin": loom.url},
    )
    assert refused.status == 400 and "at most 1,000" in refused.text(), refused.text()

    visit(page, f"/migrations/{screens.mid}/candidates/checkout", "review-comment")
    expect(page.get_by_text("at most 4,000 characters")).to_be_visible()
    page.get_by_test_id("review-comment").fill("c" * 4_001)
    expect(page.get_by_test_id("comment-error")).to_contain_text("at most 4,000")
    expect(page.get_by_test_id("approve")).to_be_disabled()
    page.get_by_test_id("review-comment").fill("  ")
    expect(page.get_by_test_id("comment-error")).to_contain_text("only spaces")
    page.get_by_test_id("review-comment").fill("")
    expect(page.get_by_test_id("approve")).to_be_enabled()


def test_9_a_cancelled_runs_open_pr_shows_on_the_candidate_page_and_in_needs_me(
    screens: Screens, context_for: Any
) -> None:
    page = context_for(screens.admin).new_page()
    visit(page, f"/migrations/{screens.mid}/candidates/billing", "timeline-step")
    expect(page.get_by_test_id("left-behind-pr")).to_have_attribute("href", PR.format(cid="billing"))
    visit(page, "/inbox", "inbox-row")
    row = page.locator('[data-testid="left-behind-row"][data-candidate="billing"]').filter(has_text="bump-base-image")
    expect(row.get_by_test_id("left-behind-pr")).to_have_attribute("href", PR.format(cid="billing"))


def test_10_a_viewer_reads_why_the_actions_are_disabled_without_hovering(screens: Screens, context_for: Any) -> None:
    page = context_for(screens.viewer).new_page()
    for path, ready in ((f"/migrations/{screens.mid}/candidates/checkout", "approve"), ("/inbox", "inbox-row")):
        visit(page, path, ready)
        expect(page.get_by_test_id("viewer-notice")).to_contain_text("need the operator role")
    expect(page.get_by_test_id("inbox-approve").first).to_be_disabled()


def test_11_landmarks_one_h1_no_button_in_a_link_named_approvals_and_few_tab_stops_per_card(
    screens: Screens, context_for: Any
) -> None:
    page = context_for(screens.admin).new_page()
    for name, (path, ready) in pages(screens).items():
        if name == "login":
            continue
        visit(page, path, ready)
        for landmark in ("banner", "navigation", "main"):
            expect(page.get_by_role(landmark).first).to_be_attached()
        expect(page.locator("h1")).to_have_count(1)
        assert page.locator("a button, a [role=button], button a").count() == 0, name
        assert page.locator(".recharts-surface[tabindex='0']").count() == 0, name
    visit(page, "/inbox", "inbox-approve")
    names = [b.get_attribute("aria-label") for b in page.get_by_test_id("inbox-approve").all()]
    assert len(names) == len(set(names)) and all("Approve " in (n or "") for n in names), names
    visit(page, f"/migrations/{screens.mid}", "candidate-card")
    card = page.locator('[data-testid="candidate-card"][data-candidate="orders"]')
    tab_stops = card.locator("a[href], button:not([disabled]):not([tabindex='-1']), input:not([type=hidden])")
    assert tab_stops.count() <= 3


def test_12_the_board_passes_axes_colour_contrast_in_both_schemes(screens: Screens, context_for: Any) -> None:
    for scheme in ("light", "dark"):
        page = context_for(screens.admin, 1440, scheme).new_page()
        visit(page, f"/migrations/{screens.mid}", "candidate-card")
        assert [v for v in axe_violations(page) if v.startswith("color-contrast")] == []


def test_14_the_command_palette_opens_a_migration_by_keyboard_alone(screens: Screens, context_for: Any) -> None:
    page = context_for(screens.admin).new_page()
    visit(page, "/metrics", "counter")
    page.keyboard.press("Control+k")
    expect(page.get_by_test_id("palette-input")).to_be_focused()
    items = page.get_by_test_id("palette-item")
    expect(items.first).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowUp")
    expect(items.first).to_have_attribute("aria-selected", "true")
    page.keyboard.type(screens.mid)
    expect(items.first).to_have_attribute("data-href", f"/migrations/{screens.mid}")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/migrations/{screens.mid}$"))
    page.keyboard.press("Control+k")
    expect(page.get_by_test_id("palette-input")).to_be_focused()
    page.keyboard.type("ledger")  # other tests' Migrations may have a `ledger` too: this one's is listed
    expect(
        page.locator(f'[data-testid="palette-item"][data-href="/migrations/{screens.mid}/candidates/ledger"]')
    ).to_have_count(1)
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("palette")).to_have_count(0)
