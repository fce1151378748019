"""The board's Table view at depth: `.venv/bin/python bench/table_pages.py [--candidates 10000] [--samples 20]
[--postgres URL]`.

Seeds the same Migration as bench/table.py (10,000 Candidates in every state, 100,000 events) and times what one
table reload of the page does (loom_ui/pages/fleet.py): the URL query read into the service's filter and sort, one
page of 50 at page 1, 100 and 200, the failure groups, the saved views' names, and the rows built. Prints p50/p95 per
URL; target: every one under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loom_backend.auth import AccessControl
from loom_backend.domain import CandidateSort, Principal, PrincipalKind, Role
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.saved_views import SqlSavedViews
from loom_backend.store.sql_store import SqlStore
from loom_ui.views.fleet import TABLE_PAGE_SIZE, candidate_filter, failure_group_view, parse_table_query, row_view
from tests.fakes import FakeEngine, FakeNotifier
from tests.postgres import fresh_database

# The seeding of bench/table.py, so both benches measure the same Migration.
_spec = importlib.util.spec_from_file_location("bench_table", Path(__file__).with_name("table.py"))
assert _spec and _spec.loader
seeding = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seeding)

URLS = [
    "view=table",
    "view=table&page=100",
    "view=table&page=200",
    "view=table&sort=-timeInStatus&page=200",
    "view=table&sort=metadata.team&page=100&cols=team",
    "view=table&stepStatus=failed&sort=-lastEvent&page=20",
    "view=table&stuck=1&sort=-timeInStatus&page=50",
]


async def reload(service: LoomService, who: Principal, url: str) -> int:
    """What FleetState._reload asks and builds for one URL; the number of rows."""
    mid = seeding.M
    t = parse_table_query(dict(parse_qsl(url)))
    groups = [failure_group_view(mid, g) for g in (await service.failure_groups(who, mid)).groups]
    await service.list_views(who, mid)
    page = await service.list_candidates(
        who,
        mid,
        candidate_filter(t),
        sort=CandidateSort.parse(t.sort),
        limit=TABLE_PAGE_SIZE,
        offset=(t.page - 1) * TABLE_PAGE_SIZE,
    )
    now = datetime.now(UTC)
    rows = [row_view(mid, c, now, t.cols) for c in page.candidates]
    assert groups, "the seeded Migration has failure groups"
    return len(rows)


async def measure(store: SqlStore, samples: int) -> list[tuple[str, float, float, int]]:
    access = AccessControl(SqlAuthStore(store.engine))
    service = LoomService.over(store, FakeEngine(), FakeNotifier(), access, views=SqlSavedViews(store.engine))
    who = Principal("bench", PrincipalKind.USER, Role.VIEWER)
    figures = []
    for url in URLS:
        timings, rows = [], 0
        for _ in range(samples + 2):
            began = time.perf_counter()
            rows = await reload(service, who, url)
            timings.append((time.perf_counter() - began) * 1000)
        timings = sorted(timings[2:])  # the first two warm caches and compile statements
        p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
        figures.append((url, statistics.median(timings), p95, rows))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--postgres", default=os.environ.get("LOOM_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        databases = {"SQLite": f"sqlite:///{folder}/loom.db"}
        if args.postgres:
            databases["PostgreSQL"] = stack.enter_context(fresh_database(args.postgres, "loom_bench_pages"))
        for name, url in databases.items():
            store = SqlStore(url)
            store.upgrade_schema()
            seeding.seed(store, args.candidates, args.events)
            print(f"\n{name}: one table reload ({args.candidates:,} Candidates), ms")
            print(f"  {'URL query':58} {'p50':>7} {'p95':>7} {'rows':>5}")
            for query, p50, p95, rows in asyncio.run(measure(store, args.samples)):
                flag = "" if p95 < 300 else "  OVER 300 ms"
                print(f"  {query:58} {p50:7.1f} {p95:7.1f} {rows:5}{flag}")
            store.engine.dispose()


if __name__ == "__main__":
    main()
