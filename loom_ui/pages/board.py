"""Board (`/migrations/[migration_id]`): the Migration's Candidates in three columns, filtered from the URL."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import reflex as rx

from loom_backend import errors
from loom_backend.domain import CandidateFilter, CandidatePage, CandidateStatus, Migration, ReadModelChange
from loom_backend.rollout import BulkAction, BulkRequest
from loom_ui import format as fmt
from loom_ui.components.access import operator_only
from loom_ui.components.card import card
from loom_ui.components.dialog import dialog
from loom_ui.components.forms import input_field
from loom_ui.components.layout import breadcrumb, crumb, empty_state, link_button, page, page_header, skeleton_rows
from loom_ui.pages.fleet import FleetState, candidate_table
from loom_ui.pages.metrics import MigrationMetricsState, metrics_panel
from loom_ui.state import LiveMixin, LoomState, error_text, service
from loom_ui.views.board import (
    COLUMNS,
    PAGE_SIZE,
    CardView,
    ColumnView,
    RolloutView,
    StepLine,
    card_view,
    plan_lines,
    rollout_view,
    shared_column_view,
)
from loom_ui.views.common import InputField, MetaPair, entered, has_errors, input_fields, with_error, with_value

# One column under another on a phone or a small tablet; side by side from 1024 px (Radix's md).
BOARD_COLUMNS = rx.breakpoints(initial="1", md="3")


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
    filter_drifted: bool = False
    filter_meta: list[MetaPair] = []

    selected: list[str] = []
    bulk_open: bool = False
    # The bulk start's values are saved for the Migration (asked once), unless the operator unticks it.
    inputs_for_every_candidate: bool = True
    busy: str = ""
    overview_open: bool = False
    rollout: RolloutView = RolloutView()

    _limits: dict[str, int] = {}
    _loaded_for: str = ""

    def _live_scope(self) -> str | None:
        return self.migration_id or None

    @rx.var
    def act_on_matching_href(self) -> str:
        """The rollout page with the board's filter: its bulk actions act on every Candidate that matches."""
        return f"/migrations/{self.migration_id}/rollout" + fmt.board_query(self._filter())

    @rx.var
    def bulk_has_errors(self) -> bool:
        return has_errors(self.required_inputs)

    def _filter(self) -> fmt.BoardFilter:
        return fmt.BoardFilter(
            text=self.filter_text.strip(),
            kind=self.filter_kind,
            attention=self.filter_attention,
            metadata={m.key: m.value for m in self.filter_meta},
            drifted=self.filter_drifted,
        )

    async def _reload_live(self, changes: list[ReadModelChange]) -> None:
        """Only what the changes touched: a card refreshed in place, or the columns a card left and joined
        (the others recount); the whole board only when a change names no Candidate."""
        current: list[ColumnView] = self.get_value("columns")  # plain views: replaced below, never mutated
        if any(c.candidate_id is None for c in changes) or not current:
            await self._reload()
            return
        position = {card.id: i for i, col in enumerate(current) for card in col.cards}
        statuses = [CandidateStatus(col.status) for col in current]
        full: set[int] = set()
        moved = {c.candidate_id for c in changes if c.status is not None}
        for change in changes:
            if change.status is not None:
                full.add(statuses.index(change.status))
                if change.candidate_id in position:
                    full.add(position[change.candidate_id])
        in_place = {c.candidate_id for c in changes if c.candidate_id not in moved} - {None}
        if len(in_place) > PAGE_SIZE // 2:
            full |= {position[cid] for cid in in_place if cid in position}
            in_place = set()
        if self.filter_attention and any(cid not in position for cid in in_place):
            full.add(statuses.index(CandidateStatus.RUNNING))  # a Step that now needs attention joins the filter
        columns = list(current)
        now = datetime.now(UTC)
        for i in full:
            columns[i] = await self._load_column(statuses[i], columns[i].title, now)
        for cid in in_place:
            i = position.get(cid)  # type: ignore[arg-type]
            if i is None or i in full:
                continue
            found = await self._candidates(statuses[i], candidate_id=cid, limit=1)
            if not found.candidates:
                columns[i] = await self._load_column(statuses[i], columns[i].title, now)
                full.add(i)
                continue
            card = card_view(self.migration_id, found.candidates[0], now)
            columns[i] = replace(columns[i], cards=[card if c.id == cid else c for c in columns[i].cards])
        if moved:
            for i, status in enumerate(statuses):
                if i not in full:
                    total = (await self._candidates(status, limit=0)).total
                    more = min(PAGE_SIZE, max(0, total - len(columns[i].cards)))
                    columns[i] = replace(columns[i], total=total, total_text=f"{total:,}", more=more)
        self._show(columns=columns)
        await self._reload_rollout()
        shown = {c.id for col in columns for c in col.cards if c.selectable}
        self._show(selected=[cid for cid in self.selected if cid in shown])

    async def _reload_slow(self) -> None:
        """The metrics panel, the rollout panel and the navigation's count follow the board at most every few
        seconds (a rollout writes its status a moment after the Runs it moved)."""
        await self._refresh_nav()
        await self._reload_rollout()
        panel = await self.get_state(MigrationMetricsState)
        await panel._reload()
        fleet = await self.get_state(FleetState)
        if fleet.view == "table":
            await fleet._reload()

    async def _reload_rollout(self) -> None:
        self._show(rollout=rollout_view(await service().rollout_status(self._viewer(), self.migration_id)))

    async def _candidates(
        self, status: CandidateStatus, *, limit: int, candidate_id: str | None = None
    ) -> CandidatePage:
        f = self._filter()
        return await service().list_candidates(
            self._viewer(),
            self.migration_id,
            CandidateFilter(drifted=True) if f.drifted else None,
            status=status,
            kind=f.kind or None,
            text=f.text or None,
            metadata=f.metadata or None,
            needs_attention=f.attention,
            candidate_id=candidate_id,
            limit=limit,
            offset=0,
        )

    async def _load_column(self, status: CandidateStatus, title: str, now: datetime) -> ColumnView:
        page = await self._candidates(status, limit=self._limits.get(status.value, PAGE_SIZE))
        return shared_column_view(self.migration_id, status, title, page, now)

    async def _reload(self) -> None:
        now = datetime.now(UTC)
        columns = [await self._load_column(status, title, now) for status, title in COLUMNS]
        self._show(columns=columns)
        await self._reload_rollout()
        shown = {c.id for col in columns for c in col.cards if c.selectable}
        self._show(selected=[cid for cid in self.selected if cid in shown])

    async def _refresh_nav(self) -> None:
        await self._count_needs_me()

    def _describe(self, migration: Migration) -> None:
        self.name = migration.name
        self.description = migration.description
        self.overview = list(migration.overview)
        self.plan = plan_lines(migration)
        self.required_inputs = input_fields(migration.required_inputs)

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        mid = self.migration_id
        f = fmt.parse_board_query(self.router.url.query_parameters)
        self.filter_text, self.filter_kind, self.filter_attention = f.text, f.kind, f.attention
        self.filter_drifted = f.drifted
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
    async def set_drifted(self, value: bool):
        self.filter_drifted = value
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def check_drift(self):
        """Re-run the dry run of every completed Candidate (a durable bulk operation); drifted ones get a badge."""
        try:
            who = await self._actor()
            where = CandidateFilter(status=CandidateStatus.COMPLETED)
            op = await service().bulk(who, self.migration_id, BulkRequest(action=BulkAction.DRIFT_CHECK, filter=where))
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        return rx.toast.success(f"Checking {fmt.plural(len(op.outcomes), 'completed Candidate')} for drift")

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
        self.filter_drifted = False
        await self._reload()
        return self._filter_changed()

    @rx.event
    async def set_view(self, value: str | list[str]):
        """Columns or Table; each keeps its own filters in the URL."""
        fleet = await self.get_state(FleetState)
        if value == "table":  # a segmented control answers a list only when it allows several
            try:
                return await fleet.open_table()
            except Exception as exc:
                return rx.toast.error(error_text(exc), duration=8000)
        fleet.view = "columns"
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
        self.required_inputs = with_value(self.required_inputs, name, value)

    @rx.event
    def set_inputs_for_every_candidate(self, value: bool):
        self.inputs_for_every_candidate = value

    @rx.event
    async def open_bulk_start(self):
        """Start at once when the Migration's own inputs cover every required one; else ask for them, once, with
        what the Migration already has filled in."""
        if self.required_inputs:
            try:
                shared = await service().get_migration_inputs(self._viewer(), self.migration_id)
            except errors.LoomError as exc:
                return rx.toast.error(error_text(exc), duration=8000)
            self.required_inputs = [replace(i, value=i.value or shared.get(i.name, "")) for i in self.required_inputs]
            if not all(shared.get(i.name) for i in self.required_inputs):
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
            inputs = entered(self.required_inputs)
            for_all = self.inputs_for_every_candidate and bool(inputs)
        if for_all:
            try:
                await service().update_migration_inputs(who, mid, inputs)
            except errors.LoomError as exc:
                async with self:
                    self.busy = ""
                    shown = with_error(self.required_inputs, getattr(exc, "field", None), str(exc))
                    if shown is not None:
                        self.required_inputs = shown
                        return None
                return rx.toast.error(error_text(exc), duration=8000)
            inputs = {}  # the Migration's values now apply, and a Candidate's own saved inputs still win
        failures: list[str] = []
        for cid in chosen:
            try:
                await service().start_run(who, mid, cid, inputs)
            except errors.InvalidInput as exc:
                async with self:
                    shown = with_error(self.required_inputs, exc.field, str(exc))
                    if shown is not None:
                        self.required_inputs = shown
                        self.busy = ""
                        return None
                failures.append(f"{cid}: {error_text(exc)}")
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

    @rx.event
    async def rollout_act(self, action: str):
        """Pause, resume, promote or stop the Migration's rollout; the answer comes once the panel can show it."""
        if self.busy:
            return None
        self.busy = f"rollout-{action}"
        try:
            await service().rollout_action(await self._actor(), self.migration_id, action)
            await self._reload()
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        finally:
            self.busy = ""
        return None


# -- view ---------------------------------------------------------------------------------


CHIP_TEXT = {"overflow": "hidden", "text_overflow": "ellipsis", "white_space": "nowrap"}


def _rollout_button(label: str, icon: str, action: str, shown: rx.Var[bool]) -> rx.Component:
    return rx.cond(
        shown & LoomState.can_operate,
        rx.button(
            rx.icon(icon, size=14),
            label,
            size="2",
            variant="soft",
            on_click=BoardState.rollout_act(action),
            loading=BoardState.busy == f"rollout-{action}",
            disabled=BoardState.busy != "",
            data_testid=f"rollout-{action}",
        ),
    )


def _rollout_panel() -> rx.Component:
    r = BoardState.rollout
    return rx.cond(
        r.shown,
        rx.card(
            rx.hstack(
                rx.vstack(
                    rx.hstack(
                        rx.badge(r.state_label, color_scheme=r.color, data_testid="rollout-state"),
                        rx.text(r.wave, size="2", weight="medium", data_testid="rollout-wave"),
                        spacing="2",
                        align="center",
                        wrap="wrap",
                    ),
                    rx.text(r.counts, size="2", data_testid="rollout-counts"),
                    rx.text(r.policy, size="1", color=rx.color("gray", 11)),
                    rx.cond(r.reason != "", rx.text(r.reason, size="2", color=rx.color("red", 11))),
                    spacing="1",
                    min_width="0",
                ),
                rx.spacer(),
                rx.hstack(
                    _rollout_button("Promote", "chevrons-right", "promote", r.can_promote),
                    _rollout_button("Pause", "pause", "pause", r.can_pause),
                    _rollout_button("Resume", "play", "resume", r.can_resume),
                    _rollout_button("Stop", "square", "stop", r.can_stop),
                    spacing="2",
                    wrap="wrap",
                ),
                align="center",
                wrap="wrap",
                width="100%",
            ),
            width="100%",
            margin_bottom="14px",
            data_testid="rollout-panel",
        ),
    )


def _meta_chip(m: MetaPair) -> rx.Component:
    return rx.button(
        # A button does not wrap: a long key or value is cut with an ellipsis (whole in the title), so a chip
        # fits a card on a phone.
        rx.text(m.key, color=rx.color("gray", 11), **CHIP_TEXT, max_width="90px"),
        rx.text(m.value, **CHIP_TEXT, max_width="160px"),
        size="1",
        variant="soft",
        color_scheme="gray",
        on_click=BoardState.add_meta(m.key, m.value).stop_propagation,
        title="Show only Candidates with " + m.key + " = " + m.value,
        data_testid="meta-chip",
        # The filter box does what a chip does: a card keeps its Tab stops to the checkbox, its link and its PR.
        tab_index=-1,
        style={"gap": "4px", "height": "20px", "padding": "0 6px", "max_width": "100%", "min_width": "0"},
    )


@rx.memo
def board_card(c: rx.Var[CardView], checked: rx.Var[bool], can_operate: rx.Var[bool]) -> rx.Component:
    """A card drawn again only when its own props change: a live reload re-sends every card, and the browser keeps
    each unchanged one as it was (`applyDelta`), so one Step moving redraws one card, not the whole board. Reads no
    state itself: a memo that did would be redrawn on every change to the board's state."""
    return card(
        c,
        rx.cond(
            c.selectable & can_operate,
            rx.checkbox(
                checked=checked,
                on_change=lambda v: BoardState.toggle(c.id, v),
                aria_label="Select " + c.id,
                data_testid="select-candidate",
            ),
        ),
        rx.cond(c.meta.length() > 0, rx.hstack(rx.foreach(c.meta, _meta_chip), spacing="1", wrap="wrap")),
    )


def _card(c: CardView) -> rx.Component:
    return board_card(c=c, checked=BoardState.selected.contains(c.id), can_operate=LoomState.can_operate)


def _column(col: ColumnView) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading(col.title, size="3", as_="h2"),
            rx.badge(col.total_text, variant="soft", radius="full", data_testid="column-count"),
            rx.spacer(),
            align="center",
            width="100%",
            padding_x="4px",
        ),
        rx.cond(
            col.total > 0,
            rx.vstack(rx.foreach(col.cards, _card), spacing="2", width="100%"),
            rx.center(
                rx.text("No Candidates here", size="2", color=rx.color("gray", 11)),
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
            width=["100%", "280px"],
            aria_label="Filter Candidates",
            data_testid="filter-text",
        ),
        rx.select.root(
            rx.select.trigger(placeholder="Any kind", aria_label="Filter by kind", data_testid="filter-kind"),
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
        rx.el.label(
            rx.hstack(
                rx.switch(
                    checked=BoardState.filter_drifted,
                    on_change=BoardState.set_drifted,
                    color_scheme="orange",
                    data_testid="filter-drifted",
                ),
                rx.text("Drifted", size="2"),
                spacing="2",
                align="center",
            ),
            title="Completed Candidates whose last drift check found changes left",
        ),
        rx.cond(
            BoardState.filter_text
            | (BoardState.filter_kind != "")
            | BoardState.filter_drifted
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
                    aria_label="Start " + BoardState.selected.length().to_string() + " selected Candidates",
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


def _bulk_dialog() -> rx.Component:
    return dialog(
        rx.fragment("Start ", BoardState.selected.length(), " Candidates"),
        "Inputs you leave empty come from each Candidate's saved inputs or metadata.",
        rx.vstack(
            rx.foreach(
                BoardState.required_inputs,
                lambda i: input_field(
                    i, lambda v: BoardState.set_bulk_input(i.name, v), "From each Candidate's metadata"
                ),
            ),
            rx.checkbox(
                "Use these values for every Candidate of this Migration (a Candidate's own inputs still win)",
                checked=BoardState.inputs_for_every_candidate,
                on_change=BoardState.set_inputs_for_every_candidate,
                data_testid="inputs-for-every-candidate",
                size="2",
            ),
            spacing="3",
        ),
        actions=(
            rx.button(
                "Start",
                on_click=BoardState.start_selected,
                loading=BoardState.busy == "bulk-start",
                disabled=(BoardState.busy != "") | BoardState.bulk_has_errors,
                data_testid="bulk-start-confirm",
            ),
        ),
        open=BoardState.bulk_open,
        on_open_change=BoardState.set_bulk_open,
    )


def _plan_step(s: StepLine) -> rx.Component:
    return rx.hstack(
        rx.badge(s.number, radius="full", variant="soft", flex_shrink="0"),
        rx.vstack(
            rx.hstack(
                rx.heading(s.name, size="2", as_="h4"),
                rx.cond(s.type != "", rx.code(s.type, size="1")),
                spacing="2",
            ),
            rx.cond(s.description != "", rx.text(s.description, size="2", color=rx.color("gray", 11))),
            spacing="1",
            min_width="0",
        ),
        align="start",
        spacing="3",
    )


def _overview_dialog() -> rx.Component:
    return dialog(
        BoardState.name,
        BoardState.description,
        rx.cond(
            BoardState.overview.length() > 0,
            rx.vstack(
                rx.heading("Phases", size="3", as_="h3"),
                rx.ordered_list(rx.foreach(BoardState.overview, lambda o: rx.list_item(rx.text(o, size="2")))),
                spacing="2",
                margin_bottom="12px",
            ),
        ),
        rx.heading("Steps", size="3", as_="h3", margin_bottom="8px"),
        rx.vstack(rx.foreach(BoardState.plan, _plan_step), spacing="3"),
        close="Close",
        trigger=rx.button(rx.icon("list-ordered", size=14), "Overview", variant="soft", data_testid="overview-button"),
        open=BoardState.overview_open,
        on_open_change=BoardState.set_overview_open,
        max_width="640px",
    )


def _view_switch() -> rx.Component:
    return rx.segmented_control.root(
        rx.segmented_control.item("Columns", value="columns", data_testid="view-columns"),
        rx.segmented_control.item("Table", value="table", data_testid="view-table"),
        value=FleetState.view,
        on_change=BoardState.set_view,
        aria_label="Show the Candidates as columns or as a table",
        margin_bottom="14px",
        data_testid="view-switch",
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
                page_header(
                    rx.heading(
                        BoardState.name,
                        size=rx.breakpoints(initial="6", sm="7"),
                        as_="h1",
                        data_testid="migration-name",
                    ),
                    BoardState.description,
                    rx.hstack(
                        link_button(
                            rx.icon("download", size=14),
                            "Download CSV",
                            href="/api/migrations/" + BoardState.migration_id + "/candidates.csv",
                            variant="soft",
                            color_scheme="gray",
                            white_space="nowrap",
                            link_props={
                                # A file from the API, not a page: the browser fetches it rather than the client router.
                                "custom_attrs": {"reloadDocument": True, "download": True},
                                "title": "Every Candidate with its current Step, PR link and metadata, as CSV",
                                "data_testid": "download-csv",
                            },
                        ),
                        link_button(
                            rx.icon("list-checks", size=14),
                            "Rollout & bulk actions",
                            href=BoardState.act_on_matching_href,
                            variant="soft",
                            white_space="nowrap",
                            link_props={
                                "title": "Roll out by policy, or act on every Candidate matching this board's filter",
                                "data_testid": "open-rollout",
                            },
                        ),
                        operator_only(
                            rx.button(
                                rx.icon("git-compare-arrows", size=14),
                                "Check drift",
                                variant="soft",
                                color_scheme="gray",
                                on_click=BoardState.check_drift,
                                title="Run the dry run of every completed Candidate again; changes left mark it Drifted",
                                data_testid="check-drift",
                            )
                        ),
                        link_button(
                            rx.icon("scroll-text", size=14),
                            "Audit",
                            href="/migrations/" + BoardState.migration_id + "/audit",
                            variant="soft",
                            color_scheme="gray",
                            link_props={"data_testid": "audit-link", "title": "The event log of this Migration"},
                        ),
                        _overview_dialog(),
                        spacing="2",
                        wrap="wrap",
                    ),
                    margin_bottom="16px",
                ),
                metrics_panel(),
                _rollout_panel(),
                _view_switch(),
                rx.cond(
                    FleetState.view == "table",
                    candidate_table(),
                    rx.fragment(
                        _filters(),
                        rx.cond(
                            BoardState.loading,
                            rx.grid(
                                *[skeleton_rows(4, "84px") for _ in COLUMNS],
                                columns=BOARD_COLUMNS,
                                spacing="4",
                                width="100%",
                            ),
                            rx.grid(
                                rx.foreach(BoardState.columns, _column),
                                columns=BOARD_COLUMNS,
                                spacing="4",
                                width="100%",
                                align_items="start",
                            ),
                        ),
                    ),
                ),
                _bulk_dialog(),
            ),
        ),
    )
