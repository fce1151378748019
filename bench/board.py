"""Board benchmark, run by hand: `.venv/bin/python bench/board.py`.

Starts a Temporal dev server, the built app and a fake Migrator, then measures in Chromium:
- callback → DOM: from a Migrator's POST /api/event/{runId} to the board showing it (target p95 < 1 s);
- first render of a board with 5,000 Candidates: from navigation to exact counts and cards on screen (target < 2 s).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    E2E_OPERATOR,
    OPERATOR_AUTH,
    Loom,
    fake_migrator_server,
    loom_app,
    temporal_server,
    wait_for,
)

CALLBACK_SAMPLES = 30
LARGE_BOARD = 5_000
RENDER_SAMPLES = 5


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def candidates(n: int, prefix: str) -> list[dict]:
    teams = ["payments", "search", "core", "growth", "platform"]
    return [
        {"id": f"{prefix}-{i:05d}", "kind": "service" if i % 3 else "application", "metadata": {"team": teams[i % 5]}}
        for i in range(n)
    ]


# One observer per page, the last probe's: an earlier one, its link still shown, would stamp the next probe early.
OBSERVE = """(selector) => {
  window.__loomSeen = 0;
  window.__loomObserver?.disconnect();
  const stamp = () => { if (!window.__loomSeen && document.querySelector(selector)) window.__loomSeen = Date.now(); };
  window.__loomObserver = new MutationObserver(stamp);
  window.__loomObserver.observe(document.body, {subtree: true, childList: true, attributes: true});
}"""
POSTED: list[float] = []
STORED: list[float] = []


def _stored(loom: Loom, mid: str, cid: str, step: str) -> bool:
    steps = loom.client.get(f"/api/migrations/{mid}/candidates/{cid}/steps", headers=OPERATOR_AUTH).json()["steps"]
    return any(s["stepName"] == step and s["status"] == "open" for s in steps)


def callback_latency(loom: Loom, page) -> list[float]:
    mid = "bench-live"
    steps = [{"name": f"step-{i}", "migratorApp": "bench"} for i in range(CALLBACK_SAMPLES + 1)]
    loom.announce(mid, candidates(5, "live"), steps=steps)
    cid = "live-00000"
    loom.start(mid, cid)
    page.goto(f"{loom.url}/migrations/{mid}")
    card = f'[data-testid="candidate-card"][data-candidate="{cid}"]'
    page.wait_for_selector(f'[data-testid="column"][data-status="running"] {card}')
    samples = []
    for i in range(CALLBACK_SAMPLES):
        step = f"step-{i}"
        loom.migrator.wait_dispatch(mid, cid, step)
        page.wait_for_selector(f"{card} >> text={step}")
        link = f'{card} [data-testid="pr-link"][href="https://example.test/pr/{i}"]'
        # Playwright's own selector polling backs off to 500 ms; a MutationObserver stamps the moment the DOM changed.
        page.evaluate(OBSERVE, link)
        start = time.time()
        loom.callback(mid, cid, step, "open", prUrl=f"https://example.test/pr/{i}")
        POSTED.append(time.time() - start)
        if i % 2:
            wait_for(lambda step=step: _stored(loom, mid, cid, step), 10, "the read model", interval=0.005)
            STORED.append(time.time() - start)
        page.wait_for_selector(link, timeout=10_000)
        samples.append(page.evaluate("window.__loomSeen") / 1000 - start)
        loom.callback(mid, cid, step, "merged")
    return samples


def large_board_render(loom: Loom, page) -> list[float]:
    mid = "bench-large"
    started = time.perf_counter()
    loom.announce(mid, candidates(LARGE_BOARD, "c"))
    print(f"announce of {LARGE_BOARD:,} Candidates: {time.perf_counter() - started:.2f} s")
    for cid in (f"c-{i:05d}" for i in range(0, 60)):
        loom.start(mid, cid)
    samples = []
    for _ in range(RENDER_SAMPLES):
        page.goto(f"{loom.url}/")
        page.wait_for_selector('[data-testid="migration-card"]')
        start = time.perf_counter()
        page.goto(f"{loom.url}/migrations/{mid}")
        page.wait_for_selector(
            f'[data-testid="column"][data-status="not_started"] [data-testid="column-count"]:text-is("{LARGE_BOARD - 60:,}")'
        )
        page.wait_for_selector('[data-testid="column"][data-status="not_started"] [data-testid="candidate-card"]')
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp,
        temporal_server(Path(tmp)) as address,
        fake_migrator_server() as migrator,
        loom_app(Path(tmp), address, migrator, log_name="bench-app.log") as loom,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        wait_for(lambda: loom.client.get("/api/healthz").status_code == 200, 10, "the app")
        loom.add_user(E2E_OPERATOR, "operator")  # the board asks for a sign-in
        signed_in = {"cookies": [loom.session_cookie(E2E_OPERATOR)], "origins": []}
        page = browser.new_context(viewport={"width": 1280, "height": 800}, storage_state=signed_in).new_page()

        live = callback_latency(loom, page)
        print(
            f"callback → board DOM ({len(live)} samples): p50 {statistics.median(live) * 1000:.0f} ms, "
            f"p95 {percentile(live, 95) * 1000:.0f} ms, max {max(live) * 1000:.0f} ms (target p95 < 1000 ms)"
        )
        print(
            f"  of which: callback POST answered p50 {statistics.median(POSTED) * 1000:.0f} ms; "
            f"step in the read model p50 {statistics.median(STORED) * 1000:.0f} ms"
        )
        render = large_board_render(loom, page)
        print(
            f"first render of a {LARGE_BOARD:,}-Candidate board ({len(render)} samples): "
            f"median {statistics.median(render) * 1000:.0f} ms, max {max(render) * 1000:.0f} ms (target < 2000 ms)"
        )
        browser.close()


if __name__ == "__main__":
    main()
