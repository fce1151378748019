"""The command palette's rows: the pages, the Migrations and the Candidates whose names match what was typed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from loom_backend.domain import CandidateView, MigrationSummary

PAGES = [("Migrations", "/"), ("Needs me", "/inbox"), ("Metrics", "/metrics")]
SHOWN = 12


@dataclass
class PaletteItem:
    label: str = ""
    hint: str = ""
    href: str = ""
    key: str = ""


def _matches(query: str, *texts: str) -> bool:
    q = query.strip().lower()
    return not q or any(q in t.lower() for t in texts)


def palette_items(
    query: str, migrations: Iterable[MigrationSummary], candidates: Iterable[tuple[str, CandidateView]]
) -> list[PaletteItem]:
    """Pages first, then Migrations, then Candidates (`(migration id, candidate)` pairs), at most SHOWN rows."""
    items = [PaletteItem(label, "Page", href, f"page:{href}") for label, href in PAGES if _matches(query, label)]
    items += [
        PaletteItem(m.name, "Migration", f"/migrations/{m.id}", f"migration:{m.id}")
        for m in migrations
        if _matches(query, m.name, m.id)
    ]
    items += [
        PaletteItem(c.id, f"Candidate of {mid}", f"/migrations/{mid}/candidates/{c.id}", f"candidate:{mid}/{c.id}")
        for mid, c in candidates
    ]
    return items[:SHOWN]
