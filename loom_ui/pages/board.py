"""Board (`/migrations/[migration_id]`): the Migration's Candidates in three columns, filtered from the URL."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import reflex as rx

from loom_backend import errors
from loom_backend.domain import CandidateStatus, CandidateView, Migration
from loom_ui import format as fmt
from loom_ui.components.layout import breadcrumb, crumb, empty_state, page, skeleton_rows
from loom_ui.components.status import status_badge
from loom_ui.pages.metrics import MigrationMetricsState, metrics_panel
from loom_ui.state import LiveMixin, LoomState, MetaPair, error_text, service

PAGE_SIZE = 50
COLUMNS = [
    (CandidateStatus.NOT_STARTED, "Not started"),
    (CandidateStatus.RUNNING, "Running"),
    (CandidateStatus.COMPLETED, "Completed"),
]
SHOWN_METADATA = 3


@dataclass
class CardView:
    id: str = ""
    kind: str = ""
    href: str = ""
    status: str = ""
    meta: list[MetaPair] = field(default_factory=list)
    step: str = ""
    step_label: str = ""
    step_color: str = "gray"
    pr_url: str = ""
    attention: str = ""
    selectable: bool = False


@dataclass
class ColumnView:
    status: str = ""
    title: str = ""
    total: int = 0
    total_text: str = "0"
    cards: list[CardView] = field(default_factory=list)
    more: int = 0


@dataclass
class StepLine:
    number: int = 0
    name: str = ""
    description: str = ""
    type: str = ""


@dataclass
class InputField:
    name: str = ""
    label: str = ""
    description: str = ""
    value: str = ""


def card_view(migration_id: str, c: CandidateView) -> CardView:
    status = c.current_step_status.value if c.current_step_status else ""
    return CardView(
        id=c.id,
        kind=c.kind,
        href=f"/migrations/{migration_id}/candidates/{c.id}",
        status=c.status.value,
        meta=[MetaPair(k, v) for k, v in list(c.metadata.items())[:SHOWN_METADATA]],
        step=c.current_step or "",
        step_label=fmt.status_label(status) if c.current_step else "",
        step_color=fmt.status_color(status),
        pr_url=c.pr_url or "",
        attention=fmt.attention_level(status) if c.needs_attention else "",
        selectable=c.status == CandidateStatus.NOT_STARTED,
    )


class BoardState(LiveMixin, LoomState):
    name: str = ""
    description: str = ""
    overview: list[str] = []
    plan: list[StepLine] = []
    required_inputs: list[InputField] = []
    columns: list[ColumnView] = []
    kinds: list[str] = []
    not_found: str = ""

    filter_text: str = ""
    filter_kind: str = ""
    filter_attention: bool = False
    filter_meta: list[MetaPair] = []

    selected: list[str] = []
    bulk_open: bool = False
    busy: str = ""
    overview_open: bool = False

    _limits: dict[str, int] = {}
    _loaded_for: str = ""

    def _live_scope(self) -> str | None:
        return self.migration_id or None

    def _filter(self) -> fmt.BoardFilter:
        return fmt.BoardFilter(
            text=self.filter_text.strip(),
            kind=self.filter_kind,
            attention=self.filter_attention,
            metadata={m.key: m.value for m in self.filter_meta},
        )

    async def _reload_live(self) -> None:
        """One watch loop for the board and its metrics panel: both follow the same Migration."""
        await self._reload()
        panel = await self.get_state(MigrationMetricsState)
        await panel._reload()

    async def _reload(self) -> None:
        mid = self.migration_id
        f = self._filter()
        columns = []
        for status, title in COLUMNS:
            limit = self._limits.get(status.value, PAGE_SIZE)
            result = await service().list_candidates(
                self._viewer(),
                mid,
                status=status,
                kind=f.kind or None,
                text=f.text or None,
                metadata=f.metadata or None,
                needs_attention=f.attention,
                limit=limit,
                offset=0,
            )
            columns.append(
                ColumnView(
                    status=status.value,
                    title=title,
                    total=result.total,
                    total_text=f"{result.total:,}",
                    cards=[card_view(mid, c) for c in result.candidates],
                    more=min(PAGE_SIZE, max(0, result.total - len(result.candidates))),
                )
            )
        self.columns = columns
        shown = {c.id for col in columns for c in col.cards if c.selectable}
        self.selected = [cid for cid in self.selected if cid in shown]

    async def _refresh_nav(self) -> None:
        await self._count_needs_me()

    def _describe(self, migration: Migration) -> None:
        self.name = migration.name
        self.description = migration.description
        self.overview = list(migration.overview)
        self.plan = [StepLine(i + 1, s.name, s.description or "", s.type or "") for i, s in enumerate(migration.steps)]
        self.required_inputs = [InputField(i.name, i.label, i.description or "", "") for i in migration.required_inputs]

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        mid = self.migration_id
        f = fmt.parse_board_query(self.router.url.query_parameters)
        self.filter_text, self.filter_kind, self.filter_attention = f.text, f.kind, f.attention
        self.filter_meta = [MetaPair(k, v) for k, v in f.metadata.items()]
        if self._loaded_for != mid:
            self.loading = True
            self.columns = []
            self.selected = []
            self._limits = {}
            self._loaded_for = mid
        self.not_found = ""
        try:
            self._describe(await service().get_migration(self._viewer(), mid, with_candidates=False))
            self.kinds = await service().candidate_kinds(self._viewer(), mid)
            await self._reload()
            await self._count_needs_me()
        except Exception as exc:
            self.not_found = error_text(exc)
        self.loading = False

    # -- filters (kept in the URL so a reload or a shared link shows the same board) ----------

    def _filter_changed(self):
        self._limits = {}
        return rx.call_script(
            f"window.history.replaceState(window.history.state, '', {json.dumps(self.router.url.path + fmt.board_query(self._filter()))})"
        )

    @rx.event
    async def set_text(self, value: str):
        self.filter_text = value
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def set_kind(self, value: str):
        self.filter_kind = "" if value == "all" else value
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def set_attention(self, value: bool):
        self.filter_attention = value
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def add_meta(self, key: str, value: str):
        self.filter_meta = [m for m in self.filter_meta if m.key != key] + [MetaPair(key, value)]
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def remove_meta(self, key: str):
        self.filter_meta = [m for m in self.filter_meta if m.key != key]
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def clear_filters(self):
        self.filter_text, self.filter_kind, self.filter_attention, self.filter_meta = "", "", False, []
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def show_more(self, status: str):
        self._limits[status] = self._limits.get(status, PAGE_SIZE) + PAGE_SIZE
        await self._reload()

    # -- selection and bulk Start ----------------------------------------------------------

    @rx.event
    def toggle(self, candidate_id: str, checked: bool):
        if checked and candidate_id not in self.selected:
            self.selected = [*self.selected, candidate_id]
        elif not checked:
            self.selected = [c for c in self.selected if c != candidate_id]

    @rx.event
    def clear_selection(self):
        self.selected = []

    @rx.event
    def set_bulk_open(self, value: bool):
        self.bulk_open = value

    @rx.event
    def set_overview_open(self, value: bool):
        self.overview_open = value

    @rx.event
    def set_bulk_input(self, name: str, value: str):
        self.required_inputs = [
            InputField(i.name, i.label, i.description, value if i.name == name else i.value)
            for i in self.required_inputs
        ]

    @rx.event
    def open_bulk_start(self):
        if self.required_inputs:
            self.bulk_open = True
            return None
        return BoardState.start_selected

    @rx.event(background=True)
    async def start_selected(self):
        async with self:
            if self.busy or not self.selected:
                return None
            try:
                who = await self._actor()
            except errors.LoomError as exc:
                return rx.toast.error(error_text(exc), duration=8000)
            self.busy = "bulk-start"
            mid = self.migration_id
            chosen = list(self.selected)
            inputs = {i.name: i.value.strip() for i in self.required_inputs if i.value.strip()}
        failures: list[str] = []
        for cid in chosen:
            try:
                await service().start_run(who, mid, cid, inputs)
            except Exception as exc:
                failures.append(f"{cid}: {error_text(exc)}")
        async with self:
            self.busy = ""
            self.bulk_open = False
            self.selected = []
            await self._reload()
        started = len(chosen) - len(failures)
        if failures:
            return rx.toast.error(
                f"Started {fmt.plural(started, 'Candidate')}; {len(failures)} could not start. "
                + " · ".join(failures[:3]),
                duration=10000,
            )
        return rx.toast.success(f"Started {fmt.plural(started, 'Candidate')}")


# -- view ---------------------------------------------------------------------------------


def _meta_chip(m: MetaPair) -> rx.Component:
    return rx.button(
        rx.text(m.key, color=rx.color("gray", 10)),
        rx.text(m.value),
        size="1",
        variant="soft",
        color_scheme="gray",
        on_click=BoardState.add_meta(m.key, m.value).stop_propagation,
        title="Show only Candidates with " + m.key + " = " + m.value,
        data_testid="meta-chip",
        style={"gap": "4px", "height": "20px", "padding": "0 6px"},
    )


def _attention_mark(c: CardView) -> rx.Component:
    return rx.match(
        c.attention,
        ("failed", rx.badge(rx.icon("circle-x", size=12), "Failed", color_scheme="red", variant="solid")),
        ("review", rx.badge(rx.icon("eye", size=12), "Needs review", color_scheme="amber", variant="solid")),
        rx.fragment(),
    )


def candidate_card(c: CardView) -> rx.Component:
    return rx.box(
        rx.vstack(
            rx.hstack(
                rx.cond(
                    c.selectable & LoomState.can_operate,
                    rx.checkbox(
                        checked=BoardState.selected.contains(c.id),
                        on_change=lambda v: BoardState.toggle(c.id, v),
                        aria_label="Select " + c.id,
                        data_testid="select-candidate",
                    ),
                ),
                rx.link(
                    c.id,
                    href=c.href,
                    weight="bold",
                    size="2",
                    color=rx.color("gray", 12),
                    data_testid="candidate-link",
                    trim="both",
                ),
                rx.spacer(),
                _attention_mark(c),
                rx.badge(c.kind, variant="outline", color_scheme="gray", size="1"),
                width="100%",
                align="center",
                spacing="2",
            ),
            rx.cond(
                c.meta.length() > 0,
                rx.hstack(rx.foreach(c.meta, _meta_chip), spacing="1", wrap="wrap"),
            ),
            rx.cond(
                c.step != "",
                rx.hstack(
                    rx.icon("git-commit-horizontal", size=14, color=rx.color("gray", 10)),
                    rx.text(c.step, size="1", weight="medium", trim="both"),
                    status_badge(c.step_label, c.step_color, data_testid="step-status"),
                    rx.spacer(),
                    rx.cond(
                        c.pr_url != "",
                        rx.link(
                            rx.hstack(
                                rx.icon("git-pull-request", size=13),
                                rx.text("PR", size="1"),
                                spacing="1",
                                align="center",
                            ),
                            href=c.pr_url,
                            is_external=True,
                            size="1",
                            data_testid="pr-link",
                        ),
                    ),
                    width="100%",
                    align="center",
                    spacing="2",
                ),
            ),
            spacing="2",
            width="100%",
        ),
        padding="10px 12px",
        background=rx.color("gray", 1),
        border=f"1px solid {rx.color('gray', 5)}",
        border_left=rx.match(
            c.attention,
            ("failed", f"4px solid {rx.color('red', 9)}"),
            ("review", f"4px solid {rx.color('amber', 9)}"),
            f"1px solid {rx.color('gray', 5)}",
        ),
        border_radius="var(--radius-3)",
        width="100%",
        data_testid="candidate-card",
        data_candidate=c.id,
        data_attention=c.attention,
        _hover={"border_color": rx.color("accent", 7)},
    )


def _column(col: ColumnView) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text(col.title, weight="bold", size="3"),
            rx.badge(col.total_text, variant="soft", radius="full", data_testid="column-count"),
            rx.spacer(),
            align="center",
            width="100%",
            padding_x="4px",
        ),
        rx.cond(
            col.total > 0,
            rx.vstack(rx.foreach(col.cards, candidate_card), spacing="2", width="100%"),
            rx.center(
                rx.text("No Candidates here", size="2", color=rx.color("gray", 10)),
                padding="24px",
                width="100%",
                border=f"1px dashed {rx.color('gray', 6)}",
                border_radius="var(--radius-3)",
            ),
        ),
        rx.cond(
            col.more > 0,
            rx.button(
                "Show ",
                col.more,
                " more",
                variant="soft",
                color_scheme="gray",
                width="100%",
                on_click=BoardState.show_more(col.status),
                data_testid="show-more",
            ),
        ),
        spacing="3",
        padding="10px",
        background=rx.color("gray", 3),
        border_radius="var(--radius-4)",
        min_width="0",
        data_testid="column",
        data_status=col.status,
    )


def _filters() -> rx.Component:
    return rx.hstack(
        rx.input(
            rx.input.slot(rx.icon("search", size=14)),
            value=BoardState.filter_text,
            on_change=BoardState.set_text,
            placeholder="Filter by id or metadata…",
            width="280px",
            aria_label="Filter Candidates",
            data_testid="filter-text",
        ),
        rx.select.root(
            rx.select.trigger(placeholder="Any kind", aria_label="Filter by kind"),
            rx.select.content(
                rx.select.item("Any kind", value="all"),
                rx.foreach(BoardState.kinds, lambda k: rx.select.item(k, value=k)),
            ),
            value=rx.cond(BoardState.filter_kind == "", "all", BoardState.filter_kind),
            on_change=BoardState.set_kind,
        ),
        rx.el.label(
            rx.hstack(
                rx.switch(
                    checked=BoardState.filter_attention,
                    on_change=BoardState.set_attention,
                    color_scheme="red",
                    data_testid="filter-attention",
                ),
                rx.text("Needs attention", size="2"),
                spacing="2",
                align="center",
            ),
        ),
        rx.foreach(
            BoardState.filter_meta,
            lambda m: rx.badge(
                m.key,
                " = ",
                m.value,
                rx.icon_button(
                    rx.icon("x", size=10),
                    size="1",
                    variant="ghost",
                    on_click=BoardState.remove_meta(m.key),
                    aria_label="Remove filter " + m.key,
                ),
                variant="surface",
                size="2",
                data_testid="meta-filter",
            ),
        ),
        rx.cond(
            BoardState.filter_text
            | (BoardState.filter_kind != "")
            | BoardState.filter_attention
            | (BoardState.filter_meta.length() > 0),
            rx.button("Clear filters", variant="ghost", size="2", on_click=BoardState.clear_filters),
        ),
        rx.spacer(),
        rx.cond(
            BoardState.selected.length() > 0,
            rx.hstack(
                rx.text(BoardState.selected.length(), " selected", size="2"),
                rx.button("Clear", variant="ghost", size="2", on_click=BoardState.clear_selection),
                rx.button(
                    rx.icon("play", size=14),
                    "Start ",
                    BoardState.selected.length(),
                    on_click=BoardState.open_bulk_start,
                    loading=BoardState.busy == "bulk-start",
                    disabled=BoardState.busy != "",
                    data_testid="bulk-start",
                ),
                align="center",
                spacing="2",
            ),
        ),
        spacing="3",
        align="center",
        wrap="wrap",
        width="100%",
        margin_bottom="14px",
    )


def _input_field(i: InputField) -> rx.Component:
    return rx.vstack(
        rx.text(i.label, size="2", weight="medium"),
        rx.input(
            value=i.value,
            on_change=lambda v: BoardState.set_bulk_input(i.name, v),
            width="100%",
            placeholder="From each Candidate's metadata",
            name=i.name,
        ),
        rx.cond(i.description != "", rx.text(i.description, size="1", color=rx.color("gray", 10))),
        spacing="1",
        width="100%",
    )


def _bulk_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Start ", BoardState.selected.length(), " Candidates"),
            rx.dialog.description(
                "Inputs you leave empty come from each Candidate's saved inputs or metadata.",
                size="2",
                margin_bottom="12px",
            ),
            rx.vstack(rx.foreach(BoardState.required_inputs, _input_field), spacing="3"),
            rx.hstack(
                rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.button(
                    "Start",
                    on_click=BoardState.start_selected,
                    loading=BoardState.busy == "bulk-start",
                    disabled=BoardState.busy != "",
                    data_testid="bulk-start-confirm",
                ),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
        ),
        open=BoardState.bulk_open,
        on_open_change=BoardState.set_bulk_open,
    )


def _overview_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.button(rx.icon("list-ordered", size=14), "Overview", variant="soft", data_testid="overview-button")
        ),
        rx.dialog.content(
            rx.dialog.title(BoardState.name),
            rx.dialog.description(BoardState.description, size="2", margin_bottom="12px"),
            rx.cond(
                BoardState.overview.length() > 0,
                rx.vstack(
                    rx.heading("Phases", size="3"),
                    rx.ordered_list(rx.foreach(BoardState.overview, lambda o: rx.list_item(rx.text(o, size="2")))),
                    spacing="2",
                    margin_bottom="12px",
                ),
            ),
            rx.heading("Steps", size="3", margin_bottom="8px"),
            rx.vstack(
                rx.foreach(
                    BoardState.plan,
                    lambda s: rx.hstack(
                        rx.badge(s.number, radius="full", variant="soft"),
                        rx.vstack(
                            rx.hstack(
                                rx.text(s.name, weight="bold", size="2"),
                                rx.cond(s.type != "", rx.code(s.type, size="1")),
                                spacing="2",
                            ),
                            rx.cond(s.description != "", rx.text(s.description, size="2", color=rx.color("gray", 11))),
                            spacing="1",
                        ),
                        align="start",
                        spacing="3",
                    ),
                ),
                spacing="3",
            ),
            rx.hstack(
                rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray")),
                justify="end",
                margin_top="16px",
            ),
            max_width="640px",
        ),
        open=BoardState.overview_open,
        on_open_change=BoardState.set_overview_open,
    )


def board_page() -> rx.Component:
    return page(
        breadcrumb(crumb("Migrations", "/"), rx.text(BoardState.name, size="2", weight="medium")),
        rx.cond(
            BoardState.not_found != "",
            empty_state(
                "circle-help",
                "This Migration is not here",
                rx.text(BoardState.not_found, size="2"),
                rx.link("Back to Migrations", href="/"),
            ),
            rx.fragment(
                rx.hstack(
                    rx.vstack(
                        rx.heading(BoardState.name, size="7", data_testid="migration-name"),
                        rx.text(BoardState.description, size="2", color=rx.color("gray", 11)),
                        spacing="1",
                        flex="1",
                        min_width="0",
                    ),
                    rx.link(
                        rx.button(
                            rx.icon("download", size=14),
                            "Download CSV",
                            variant="soft",
                            color_scheme="gray",
                            white_space="nowrap",
                        ),
                        href="/api/migrations/" + BoardState.migration_id + "/candidates.csv",
                        # A file from the API, not a page: the browser fetches it rather than the client router.
                        custom_attrs={"reloadDocument": True, "download": True},
                        title="Every Candidate with its current Step, PR link and metadata, as CSV",
                        data_testid="download-csv",
                    ),
                    _overview_dialog(),
                    align="end",
                    width="100%",
                    margin_bottom="16px",
                ),
                metrics_panel(),
                _filters(),
                rx.cond(
                    BoardState.loading,
                    rx.grid(*[skeleton_rows(4, "84px") for _ in COLUMNS], columns="3", spacing="4", width="100%"),
                    rx.grid(
                        rx.foreach(BoardState.columns, _column),
                        columns="3",
                        spacing="4",
                        width="100%",
                        align_items="start",
                    ),
                ),
                _bulk_dialog(),
            ),
        ),
    )
