"""The command palette (Ctrl+K or ⌘K): type, move with ↑↓, Enter opens the page, Esc closes."""

from __future__ import annotations

import reflex as rx

from loom_backend.domain import CandidateView, MigrationSummary
from loom_ui.state import LoomState, service
from loom_ui.views.palette import PaletteItem, palette_items

CANDIDATES_PER_MIGRATION = 5
# One listener for the whole app: the shortcut clicks the header's palette button.
SHORTCUT_SCRIPT = """
document.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'k') {
    e.preventDefault();
    document.getElementById('palette-trigger')?.click();
  }
});
"""


class PaletteState(LoomState):
    palette_open: bool = False
    query: str = ""
    items: list[PaletteItem] = []
    active: int = 0
    _migrations: list[MigrationSummary] = []

    async def _search(self) -> None:
        who = self._viewer()
        found: list[tuple[str, CandidateView]] = []
        if self.query.strip():
            for m in self._migrations:
                page = await service().list_candidates(
                    who, m.id, text=self.query.strip(), limit=CANDIDATES_PER_MIGRATION
                )
                found += [(m.id, c) for c in page.candidates]
        self.items = palette_items(self.query, self._migrations, found)
        self.active = 0

    @rx.event
    async def open_palette(self):
        if not await self._signed_in():
            return
        self.palette_open, self.query = True, ""
        self._migrations = await service().list_migrations(self._viewer())
        await self._search()

    @rx.event
    def set_palette_open(self, value: bool):
        self.palette_open = value

    @rx.event
    async def set_query(self, value: str):
        self.query = value
        await self._search()

    @rx.event
    def key(self, key: str):
        if key == "ArrowDown" and self.items:
            self.active = (self.active + 1) % len(self.items)
        elif key == "ArrowUp" and self.items:
            self.active = (self.active - 1) % len(self.items)
        elif key == "Enter" and self.items:
            return self.go(self.items[self.active].href)
        return None

    @rx.event
    def go(self, href: str):
        self.palette_open = False
        return rx.redirect(href)


def _item(item: PaletteItem, index: int) -> rx.Component:
    active = PaletteState.active == index
    return rx.el.li(
        rx.hstack(
            rx.text(item.label, size="2", weight="medium", trim="both"),
            rx.spacer(),
            rx.text(item.hint, size="1", color=rx.color("gray", 11)),
            align="center",
            width="100%",
        ),
        id="palette-item-" + index.to_string(),
        role="option",
        aria_selected=rx.cond(active, "true", "false"),
        on_click=PaletteState.go(item.href),
        padding="8px 10px",
        border_radius="var(--radius-2)",
        cursor="pointer",
        background=rx.cond(active, rx.color("accent", 4), "transparent"),
        data_testid="palette-item",
        data_href=item.href,
    )


def palette() -> rx.Component:
    return rx.fragment(
        rx.script(SHORTCUT_SCRIPT),
        rx.icon_button(
            rx.icon("search", size=16),
            id="palette-trigger",
            size="2",
            variant="ghost",
            color_scheme="gray",
            aria_label="Go to… (Ctrl+K)",
            title="Go to a page, Migration or Candidate (Ctrl+K or ⌘K)",
            on_click=PaletteState.open_palette,
            data_testid="palette-trigger",
        ),
        rx.dialog.root(
            rx.dialog.content(
                rx.dialog.title("Go to", size="3"),
                rx.dialog.description(
                    "A page, a Migration or a Candidate: type, ↑↓ to choose, Enter to open, Esc to close.",
                    size="1",
                    color=rx.color("gray", 11),
                    margin_bottom="8px",
                ),
                rx.input(
                    value=PaletteState.query,
                    on_change=PaletteState.set_query,
                    debounce_timeout=150,
                    on_key_down=PaletteState.key,
                    placeholder="Type a name…",
                    auto_focus=True,
                    aria_label="Go to",
                    role="combobox",
                    aria_expanded="true",
                    aria_controls="palette-list",
                    aria_activedescendant="palette-item-" + PaletteState.active.to_string(),
                    data_testid="palette-input",
                ),
                rx.el.ul(
                    rx.foreach(PaletteState.items, _item),
                    id="palette-list",
                    role="listbox",
                    aria_label="Matches",
                    list_style="none",
                    padding="0",
                    margin="8px 0 0 0",
                ),
                rx.cond(
                    PaletteState.items.length() == 0,
                    rx.text("Nothing matches.", size="2", color=rx.color("gray", 11), padding="8px 10px"),
                ),
                max_width="560px",
                data_testid="palette",
            ),
            open=PaletteState.palette_open,
            on_open_change=PaletteState.set_palette_open,
        ),
    )
