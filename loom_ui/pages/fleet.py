"""The board's Table view: the Candidate table (sort, filters, paging, chosen metadata columns), its saved views,
and the failure groups with their one-click retry. Its whole view lives in the URL (views/fleet.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime

import reflex as rx

from loom_backend.domain import CandidateFilter, CandidateSort
from loom_backend.rollout import BulkAction, BulkOutcomeKind, BulkRequest, BulkState
from loom_ui import format as fmt
from loom_ui.components.dialog import confirm_dialog
from loom_ui.components.status import pr_state, status_badge, stuck_badge
from loom_ui.state import LoomState, error_text, service
from loom_ui.views.fleet import (
    CHECKS,
    REVIEWS,
    SORTABLE,
    STEP_STATUSES,
    TABLE_PAGE_SIZE,
    FailureGroupView,
    RowView,
    TableQuery,
    candidate_filter,
    failure_group_view,
    next_sort,
    page_count,
    parse_table_query,
    range_text,
    row_view,
    table_params,
    table_query,
)

ANY = "any"  # a select's "no filter" (Radix refuses an empty value)
BULK_POLL_SECONDS = 0.5


class FleetState(LoomState):
    view: str = "columns"
    tq: TableQuery = TableQuery()
    # What the text boxes hold until the filter form is applied (Enter or Apply).
    draft_q: str = ""
    draft_in_status: str = ""
    draft_pr_age: str = ""
    draft_failure: str = ""
    draft_meta: str = ""

    rows: list[RowView] = []
    total: int = 0
    range_label: str = ""
    pages: int = 1
    filter_error: str = ""
    steps: list[str] = []
    meta_keys: list[str] = []
    groups: list[FailureGroupView] = []
    views: list[str] = []
    save_name: str = ""

    retry_open: bool = False
    retry_key: str = ""
    retry_title: str = ""
    retry_count: int = 0
    retry_progress: str = ""
    busy: str = ""

    # -- reading ---------------------------------------------------------------------------------

    async def _reload(self) -> None:
        """The table's page, the failure groups and the saved views' names, as the query says."""
        mid, who = self.migration_id, self._viewer()
        self.groups = [failure_group_view(mid, g) for g in (await service().failure_groups(who, mid)).groups]
        self.views = [v.name for v in await service().list_views(who, mid)]
        try:
            where = candidate_filter(self.tq)
        except ValueError as exc:
            self.filter_error = str(exc)
            self.rows, self.total, self.range_label, self.pages = [], 0, "", 1
            return
        self.filter_error = ""
        sort = CandidateSort.parse(self.tq.sort)
        page = await service().list_candidates(
            who, mid, where, sort=sort, limit=TABLE_PAGE_SIZE, offset=(self.tq.page - 1) * TABLE_PAGE_SIZE
        )
        last = page_count(page.total)
        if self.tq.page > last:  # a URL or a shrunk filter past the end: show the last page
            self.tq = replace(self.tq, page=last)
            page = await service().list_candidates(
                who, mid, where, sort=sort, limit=TABLE_PAGE_SIZE, offset=(last - 1) * TABLE_PAGE_SIZE
            )
        now = datetime.now(UTC)
        self.rows = [row_view(mid, c, now, self.tq.cols) for c in page.candidates]
        self.total, self.pages = page.total, last
        self.range_label = range_text(self.tq.page, page.total)
        keys = {k for c in page.candidates for k in c.metadata}
        self.meta_keys = sorted(keys - set(self.tq.cols))

    def _drafts(self) -> None:
        t = self.tq
        self.draft_q, self.draft_in_status, self.draft_pr_age, self.draft_failure = (
            t.q,
            t.in_status,
            t.pr_age,
            t.failure,
        )
        self.draft_meta = ""

    def url_script(self) -> rx.event.EventSpec:
        """Put the table's view in the address bar, so a reload, the back button or a shared link restores it."""
        url = self.router.url.path + table_query(self.tq)
        return rx.call_script(f"window.history.replaceState(window.history.state, '', {json.dumps(url)})")

    async def open_table(self) -> rx.event.EventSpec:
        self.view = "table"
        await self._reload()
        return self.url_script()

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        params = self.router.url.query_parameters
        self.view = "table" if params.get("view") == "table" else "columns"
        self.tq = parse_table_query(params)
        self._drafts()
        self.retry_open, self.busy, self.retry_progress = False, "", ""
        try:
            migration = await service().get_migration(self._viewer(), self.migration_id, with_candidates=False)
            self.steps = [s.name for s in migration.steps]
            if self.view == "table":
                await self._reload()
        except Exception:
            self.rows, self.groups = [], []  # the board says when the Migration is missing

    async def _apply(self, t: TableQuery):
        self.tq = t
        try:
            await self._reload()
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        return self.url_script()

    # -- sort, filters, paging, columns ------------------------------------------------------------

    @rx.event
    async def sort_by(self, column: str):
        return await self._apply(replace(self.tq, sort=next_sort(self.tq.sort, column), page=1))

    @rx.event
    async def set_filter(self, name: str, value: str):
        """A select's filter (step, stepStatus, checks, review, mergeable) applies at once."""
        return await self._apply(replace(self.tq, **{name: "" if value == ANY else value}, page=1))

    @rx.event
    async def set_stuck(self, value: bool):
        return await self._apply(replace(self.tq, stuck=value, page=1))

    @rx.event
    def set_draft(self, name: str, value: str):
        setattr(self, f"draft_{name}", value)

    @rx.event
    async def apply_filters(self, _form: dict | None = None):
        metadata = dict(self.tq.metadata)
        key, sep, value = self.draft_meta.partition("=")
        if sep and key.strip() and value.strip():
            metadata[key.strip()] = value.strip()
        elif self.draft_meta.strip():
            return rx.toast.error("Write a metadata filter as key=value, e.g. team=payments", duration=6000)
        self.draft_meta = ""
        t = replace(
            self.tq,
            q=self.draft_q.strip(),
            in_status=self.draft_in_status.strip(),
            pr_age=self.draft_pr_age.strip(),
            failure=self.draft_failure.strip(),
            metadata=metadata,
            page=1,
        )
        return await self._apply(t)

    @rx.event
    async def remove_meta(self, key: str):
        return await self._apply(
            replace(self.tq, metadata={k: v for k, v in self.tq.metadata.items() if k != key}, page=1)
        )

    @rx.event
    async def clear_filters(self):
        t = self.tq.cleared()
        self.tq = t
        self._drafts()
        return await self._apply(t)

    @rx.event
    async def go_page(self, delta: int):
        return await self._apply(replace(self.tq, page=max(1, min(self.pages, self.tq.page + delta))))

    @rx.event
    async def add_col(self, key: str):
        if key in self.tq.cols:
            return None
        return await self._apply(replace(self.tq, cols=[*self.tq.cols, key]))

    @rx.event
    async def remove_col(self, key: str):
        sort = "id" if self.tq.sort.lstrip("-") == f"metadata.{key}" else self.tq.sort
        return await self._apply(replace(self.tq, cols=[c for c in self.tq.cols if c != key], sort=sort))

    @rx.event
    async def show_group(self, key: str):
        """The table narrowed to one failure group's Candidates."""
        t = replace(self.tq.cleared(), failure_group=key)
        self.tq = t
        self._drafts()
        return await self._apply(t)

    # -- saved views -----------------------------------------------------------------------------

    @rx.event
    def set_save_name(self, value: str):
        self.save_name = value

    @rx.event
    async def save_view(self, _form: dict | None = None):
        name = self.save_name.strip()
        try:
            await service().save_view(await self._actor(), self.migration_id, name, table_params(self.tq))
            self.views = [v.name for v in await service().list_views(self._viewer(), self.migration_id)]
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        self.save_name = ""
        return rx.toast.success(f"Saved view {name!r}")

    @rx.event
    async def open_view(self, name: str):
        try:
            view = await service().get_view(self._viewer(), self.migration_id, name)
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        t = parse_table_query(view.params)
        self.tq = t
        self._drafts()
        return await self._apply(t)

    @rx.event
    async def delete_view(self, name: str):
        try:
            await service().delete_view(await self._actor(), self.migration_id, name)
            self.views = [v for v in self.views if v != name]
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        return rx.toast.success(f"Deleted view {name!r}")

    # -- retrying a failure group ------------------------------------------------------------------

    def _retry_request(self, key: str, dry_run: bool) -> BulkRequest:
        return BulkRequest(action=BulkAction.RETRY, filter=CandidateFilter(failure_group=key), dry_run=dry_run)

    @rx.event
    async def ask_retry(self, key: str):
        """The confirm dialog, with how many Runs a retry of the group would re-dispatch now (a dry run)."""
        try:
            preview = await service().bulk(await self._actor(), self.migration_id, self._retry_request(key, True))
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        group = next((g for g in self.groups if g.key == key), None)
        self.retry_key = key
        self.retry_count = sum(1 for o in preview.outcomes if o.outcome is BulkOutcomeKind.PENDING)
        self.retry_title = f"{group.step}: {group.message}" if group else key
        self.retry_progress = ""
        self.retry_open = True
        return None

    @rx.event
    def set_retry_open(self, value: bool):
        self.retry_open = value

    @rx.event(background=True)
    async def confirm_retry(self):
        async with self:
            if self.busy:
                return None
            self.busy = "retry"
            key, mid = self.retry_key, self.migration_id
            try:
                who = await self._actor()
            except Exception as exc:
                self.busy = ""
                return rx.toast.error(error_text(exc), duration=8000)
        try:
            op = await service().bulk(who, mid, self._retry_request(key, False))
            while op.state is not BulkState.DONE:
                async with self:
                    self.retry_progress = _progress(op.counts, len(op.outcomes))
                await asyncio.sleep(BULK_POLL_SECONDS)
                op = await service().get_bulk(who, op.id)
        except Exception as exc:
            async with self:
                self.busy, self.retry_open = "", False
            return rx.toast.error(error_text(exc), duration=8000)
        async with self:
            self.busy, self.retry_open, self.retry_progress = "", False, ""
            await self._reload()
        done = op.counts.get(BulkOutcomeKind.DONE.value, 0)
        left = len(op.outcomes) - done
        message = f"Retried {fmt.plural(done, 'Candidate')}" + (f"; {left} skipped or refused" if left else "")
        return (rx.toast.warning if left else rx.toast.success)(message, duration=8000)


def _progress(counts: dict[str, int], total: int) -> str:
    finished = total - counts.get(BulkOutcomeKind.PENDING.value, 0)
    return f"{finished:,} of {total:,} done"


# -- view ---------------------------------------------------------------------------------


def _select(label: str, name: str, value: rx.Var, options: list[tuple[str, str]] | rx.Var, testid: str):
    items = (
        [rx.select.item(text, value=v) for v, text in options]
        if isinstance(options, list)
        else [rx.foreach(options, lambda s: rx.select.item(s, value=s))]
    )
    return rx.vstack(
        rx.text(label, size="1", color=rx.color("gray", 11), as_="label"),
        rx.select.root(
            rx.select.trigger(aria_label=label, data_testid=testid, min_width="130px"),
            rx.select.content(rx.select.item("Any", value=ANY), *items),
            value=rx.cond(value == "", ANY, value),
            on_change=lambda v: FleetState.set_filter(name, v),
            size="2",
        ),
        spacing="1",
    )


def _text(label: str, name: str, value: rx.Var, placeholder: str, width: str = "140px") -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color=rx.color("gray", 11)),
        rx.input(
            value=value,
            on_change=lambda v: FleetState.set_draft(name, v),
            placeholder=placeholder,
            aria_label=label,
            width=width,
            data_testid=f"table-filter-{name}",
        ),
        spacing="1",
    )


def _filters() -> rx.Component:
    t = FleetState.tq
    return rx.el.form(
        rx.flex(
            _text("Text", "q", FleetState.draft_q, "id or metadata…", "180px"),
            _select("Step", "step", t.step, FleetState.steps, "table-filter-step"),
            _select(
                "Step status",
                "step_status",
                t.step_status,
                [(s, fmt.status_label(s)) for s in STEP_STATUSES],
                "table-filter-step-status",
            ),
            _text("In status longer than", "in_status", FleetState.draft_in_status, "e.g. 4h"),
            _text("PR older than", "pr_age", FleetState.draft_pr_age, "e.g. 3d"),
            _select("Checks", "checks", t.checks, CHECKS, "table-filter-checks"),
            _select("Review", "review", t.review, REVIEWS, "table-filter-review"),
            _select(
                "Mergeable",
                "mergeable",
                t.mergeable,
                [("true", "Mergeable"), ("false", "Conflicts")],
                "table-filter-mergeable",
            ),
            _text("Metadata", "meta", FleetState.draft_meta, "key=value"),
            _text("Failure message", "failure", FleetState.draft_failure, "contains…", "180px"),
            rx.el.label(
                rx.hstack(
                    rx.switch(checked=t.stuck, on_change=FleetState.set_stuck, data_testid="table-filter-stuck"),
                    rx.text("Stuck only", size="2"),
                    spacing="2",
                    align="center",
                ),
                align_self="end",
                padding_bottom="6px",
            ),
            rx.button("Apply", type="submit", variant="soft", align_self="end", data_testid="table-apply"),
            rx.cond(
                FleetState.tq.q
                | (t.step != "")
                | (t.step_status != "")
                | (t.in_status != "")
                | (t.pr_age != "")
                | (t.checks != "")
                | (t.review != "")
                | (t.mergeable != "")
                | (t.failure != "")
                | (t.failure_group != "")
                | t.stuck
                | (t.metadata.length() > 0),
                rx.button(
                    "Clear filters",
                    type="button",
                    variant="ghost",
                    align_self="end",
                    on_click=FleetState.clear_filters,
                    data_testid="table-clear",
                ),
            ),
            spacing="3",
            wrap="wrap",
            align="end",
        ),
        rx.hstack(
            rx.foreach(
                t.metadata,
                lambda kv: rx.badge(
                    kv[0],
                    " = ",
                    kv[1],
                    rx.icon_button(
                        rx.icon("x", size=10),
                        type="button",
                        size="1",
                        variant="ghost",
                        on_click=FleetState.remove_meta(kv[0]),
                        aria_label="Remove filter " + kv[0],
                    ),
                    variant="surface",
                    size="2",
                    data_testid="table-meta-filter",
                ),
            ),
            rx.cond(
                t.failure_group != "",
                rx.badge(
                    "Failure group ",
                    t.failure_group,
                    rx.icon_button(
                        rx.icon("x", size=10),
                        type="button",
                        size="1",
                        variant="ghost",
                        on_click=FleetState.set_filter("failure_group", ANY),
                        aria_label="Remove the failure group filter",
                    ),
                    variant="surface",
                    color_scheme="red",
                    size="2",
                    data_testid="table-group-filter",
                ),
            ),
            spacing="2",
            wrap="wrap",
            margin_top="8px",
        ),
        on_submit=FleetState.apply_filters,
        width="100%",
        margin_bottom="12px",
    )


def _header(key: str, label: str) -> rx.Component:
    return rx.table.column_header_cell(
        rx.button(
            label,
            rx.match(
                aria_sort_var(key),
                ("ascending", rx.icon("arrow-up", size=12, aria_hidden="true")),
                ("descending", rx.icon("arrow-down", size=12, aria_hidden="true")),
                rx.icon("arrow-up-down", size=12, color=rx.color("gray", 9), aria_hidden="true"),
            ),
            variant="ghost",
            size="1",
            color_scheme="gray",
            high_contrast=True,
            on_click=FleetState.sort_by(key),
            data_testid=f"sort-{key}",
        ),
        custom_attrs={"aria-sort": aria_sort_var(key)},
        white_space="nowrap",
    )


def aria_sort_var(key: str) -> rx.Var:
    sort = FleetState.tq.sort
    return rx.cond(sort == key, "ascending", rx.cond(sort == "-" + key, "descending", "none"))


def _meta_header(key: rx.Var) -> rx.Component:
    sort_key = "metadata." + key
    state = rx.cond(
        FleetState.tq.sort == sort_key, "ascending", rx.cond(FleetState.tq.sort == "-" + sort_key, "descending", "none")
    )
    return rx.table.column_header_cell(
        rx.hstack(
            rx.button(
                key,
                rx.match(
                    state,
                    ("ascending", rx.icon("arrow-up", size=12, aria_hidden="true")),
                    ("descending", rx.icon("arrow-down", size=12, aria_hidden="true")),
                    rx.icon("arrow-up-down", size=12, color=rx.color("gray", 9), aria_hidden="true"),
                ),
                variant="ghost",
                size="1",
                color_scheme="gray",
                high_contrast=True,
                on_click=FleetState.sort_by(sort_key),
                data_testid="sort-meta",
            ),
            rx.icon_button(
                rx.icon("x", size=10),
                size="1",
                variant="ghost",
                color_scheme="gray",
                on_click=FleetState.remove_col(key),
                aria_label="Remove column " + key,
            ),
            spacing="1",
            align="center",
        ),
        custom_attrs={"aria-sort": state},
        white_space="nowrap",
    )


def _row(r: RowView) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.link(r.id, href=r.href, weight="bold", data_testid="row-link"),
        ),
        rx.table.cell(r.kind),
        rx.table.cell(rx.hstack(rx.text(r.step, size="2"), stuck_badge(r.stuck), spacing="2", align="center")),
        rx.table.cell(
            rx.cond(
                r.step_label != "",
                rx.vstack(
                    status_badge(r.step_label, r.step_color, data_testid="row-step-status"),
                    rx.cond(
                        r.failure != "",
                        rx.text(
                            r.failure,
                            size="1",
                            color=rx.color("red", 11),
                            max_width="280px",
                            overflow_wrap="anywhere",
                            title=r.failure_full,
                        ),
                    ),
                    spacing="1",
                ),
            )
        ),
        rx.table.cell(r.in_status, white_space="nowrap"),
        rx.table.cell(
            rx.cond(
                r.pr_url != "",
                rx.vstack(
                    rx.hstack(
                        rx.link(
                            rx.icon("git-pull-request", size=13, aria_hidden="true"),
                            "PR",
                            href=r.pr_url,
                            is_external=True,
                            aria_label="PR of " + r.id,
                        ),
                        rx.text(r.pr_age, size="1", color=rx.color("gray", 11)),
                        spacing="2",
                        align="center",
                    ),
                    pr_state(r.pr),
                    spacing="1",
                ),
            )
        ),
        rx.table.cell(r.last_event, white_space="nowrap"),
        rx.foreach(r.meta, lambda v: rx.table.cell(v)),
        data_testid="table-row",
        data_candidate=r.id,
    )


def _columns_picker() -> rx.Component:
    return rx.cond(
        FleetState.meta_keys.length() > 0,
        rx.menu.root(
            rx.menu.trigger(
                rx.button(
                    rx.icon("columns-3", size=14),
                    "Add a column",
                    variant="soft",
                    color_scheme="gray",
                    data_testid="add-column",
                ),
            ),
            rx.menu.content(
                rx.foreach(
                    FleetState.meta_keys,
                    lambda k: rx.menu.item(k, on_click=FleetState.add_col(k), data_testid="add-column-key"),
                )
            ),
        ),
    )


def _views_menu() -> rx.Component:
    return rx.hstack(
        rx.menu.root(
            rx.menu.trigger(
                rx.button(rx.icon("bookmark", size=14), "Views", variant="soft", data_testid="views-menu"),
            ),
            rx.menu.content(
                rx.cond(
                    FleetState.views.length() > 0,
                    rx.foreach(
                        FleetState.views,
                        lambda name: rx.menu.item(
                            name, on_click=FleetState.open_view(name), data_testid="open-view", data_view=name
                        ),
                    ),
                    rx.menu.item("No saved views yet", disabled=True),
                ),
                rx.cond(
                    (FleetState.views.length() > 0) & LoomState.can_operate,
                    rx.fragment(
                        rx.menu.separator(),
                        rx.menu.sub(
                            rx.menu.sub_trigger("Delete a view"),
                            rx.menu.sub_content(
                                rx.foreach(
                                    FleetState.views,
                                    lambda name: rx.menu.item(
                                        name,
                                        color="red",
                                        on_click=FleetState.delete_view(name),
                                        data_testid="delete-view",
                                        data_view=name,
                                    ),
                                )
                            ),
                        ),
                    ),
                ),
            ),
        ),
        rx.cond(
            LoomState.can_operate,
            rx.el.form(
                rx.hstack(
                    rx.input(
                        value=FleetState.save_name,
                        on_change=FleetState.set_save_name,
                        placeholder="View name",
                        aria_label="Name of the view to save",
                        max_length=64,
                        width="160px",
                        data_testid="view-name",
                    ),
                    rx.button(
                        "Save view",
                        type="submit",
                        variant="soft",
                        disabled=FleetState.save_name.strip() == "",
                        data_testid="save-view",
                    ),
                    spacing="2",
                ),
                on_submit=FleetState.save_view,
            ),
        ),
        spacing="2",
        align="center",
        wrap="wrap",
    )


def _group(g: FailureGroupView) -> rx.Component:
    return rx.box(
        rx.flex(
            rx.vstack(
                rx.hstack(
                    rx.code(g.step, size="2"),
                    rx.badge(g.count_text, color_scheme="red", variant="soft", high_contrast=True),
                    spacing="2",
                    align="center",
                ),
                rx.text(g.message, size="2", overflow_wrap="anywhere", data_testid="group-message"),
                rx.hstack(
                    rx.foreach(g.examples, lambda e: rx.link(e.id, href=e.href, size="1", data_testid="group-example")),
                    rx.cond(g.more != "", rx.text(g.more, size="1", color=rx.color("gray", 11))),
                    spacing="2",
                    wrap="wrap",
                ),
                spacing="1",
                min_width="0",
                flex="1 1 320px",
            ),
            rx.hstack(
                rx.button(
                    "Show",
                    variant="soft",
                    color_scheme="gray",
                    on_click=FleetState.show_group(g.key),
                    aria_label="Show the Candidates of this failure group in the table",
                    data_testid="group-show",
                ),
                rx.cond(
                    LoomState.can_operate,
                    rx.button(
                        rx.icon("rotate-ccw", size=14),
                        "Retry ",
                        g.count,
                        color_scheme="red",
                        high_contrast=True,
                        on_click=FleetState.ask_retry(g.key),
                        disabled=FleetState.busy != "",
                        aria_label="Retry the failed Step of these " + g.count.to_string() + " Candidates",
                        data_testid="group-retry",
                    ),
                ),
                spacing="2",
            ),
            gap="12px",
            wrap="wrap",
            align="center",
        ),
        padding="10px 12px",
        border=f"1px solid {rx.color('red', 6)}",
        border_radius="var(--radius-3)",
        background=rx.color("red", 2),
        data_testid="failure-group",
        data_group=g.key,
    )


def failure_groups_panel() -> rx.Component:
    return rx.cond(
        FleetState.groups.length() > 0,
        rx.vstack(
            rx.heading("Failures", size="3", as_="h2"),
            rx.foreach(FleetState.groups, _group),
            spacing="2",
            width="100%",
            margin_bottom="16px",
            data_testid="failure-groups",
        ),
    )


def _retry_dialog() -> rx.Component:
    return confirm_dialog(
        rx.fragment("Retry ", FleetState.retry_count, " failed Steps?"),
        rx.fragment(
            "Loom re-dispatches the failed Step of the ",
            FleetState.retry_count,
            " Candidates in this group now (",
            FleetState.retry_title,
            ").",
            rx.cond(FleetState.retry_progress != "", rx.fragment(" ", FleetState.retry_progress, ".")),
        ),
        rx.button(
            "Retry ",
            FleetState.retry_count,
            color_scheme="red",
            high_contrast=True,
            on_click=FleetState.confirm_retry,
            loading=FleetState.busy == "retry",
            disabled=(FleetState.busy != "") | (FleetState.retry_count == 0),
            data_testid="group-retry-confirm",
        ),
        keep="Keep them failed",
        open=FleetState.retry_open,
        on_open_change=FleetState.set_retry_open,
    )


def _pager() -> rx.Component:
    return rx.hstack(
        rx.text(FleetState.range_label, size="2", data_testid="table-range", aria_live="polite"),
        rx.spacer(),
        rx.button(
            rx.icon("chevron-left", size=14),
            "Previous",
            variant="soft",
            color_scheme="gray",
            on_click=FleetState.go_page(-1),
            disabled=FleetState.tq.page <= 1,
            data_testid="page-prev",
        ),
        rx.text("Page ", FleetState.tq.page, " of ", FleetState.pages, size="2"),
        rx.button(
            "Next",
            rx.icon("chevron-right", size=14),
            variant="soft",
            color_scheme="gray",
            on_click=FleetState.go_page(1),
            disabled=FleetState.tq.page >= FleetState.pages,
            data_testid="page-next",
        ),
        align="center",
        spacing="3",
        width="100%",
        margin_top="10px",
    )


def candidate_table() -> rx.Component:
    return rx.vstack(
        failure_groups_panel(),
        rx.flex(
            _views_menu(),
            rx.spacer(),
            _columns_picker(),
            gap="12px",
            wrap="wrap",
            align="center",
            width="100%",
        ),
        _filters(),
        rx.cond(
            FleetState.filter_error != "",
            rx.callout(FleetState.filter_error, icon="triangle-alert", color_scheme="red", data_testid="filter-error"),
        ),
        rx.cond(
            FleetState.total > 0,
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *[_header(key, label) for key, label in SORTABLE],
                            rx.foreach(FleetState.tq.cols, _meta_header),
                        )
                    ),
                    rx.table.body(rx.foreach(FleetState.rows, _row)),
                    variant="surface",
                    size="1",
                    width="100%",
                    aria_label="Candidates",
                    data_testid="candidate-table",
                ),
                overflow_x="auto",
                width="100%",
            ),
            rx.center(
                rx.vstack(
                    rx.text("No Candidates match these filters", size="3", weight="medium"),
                    rx.button("Clear filters", variant="soft", on_click=FleetState.clear_filters),
                    align="center",
                    spacing="3",
                ),
                padding="32px",
                width="100%",
                border=f"1px dashed {rx.color('gray', 6)}",
                border_radius="var(--radius-3)",
                data_testid="table-empty",
            ),
        ),
        rx.cond(FleetState.total > 0, _pager()),
        _retry_dialog(),
        spacing="3",
        width="100%",
        data_testid="table-view",
    )
