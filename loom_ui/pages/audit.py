"""Audit (`/audit`, and `/migrations/{id}/audit` for one Migration): who did what, when, filterable, as CSV too.

The filter lives in the URL, so a reload or a shared link shows the same events; the CSV link carries it too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import reflex as rx

from loom_ui import format as fmt
from loom_ui.components.layout import breadcrumb, crumb, empty_state, link_button, page, page_header, skeleton_rows
from loom_ui.state import LoomState, error_text, service
from loom_ui.views.audit import (
    EVENT_TYPES,
    PAGE_SIZE,
    AuditFilter,
    AuditRow,
    audit_href,
    audit_query,
    audit_row,
    checked,
    csv_href,
    parse_audit_query,
    service_filters,
    showing,
)

ALL_TYPES = "all"


class AuditState(LoomState):
    loading: bool = True
    rows: list[AuditRow] = []
    total: int = 0
    summary: str = ""
    problems: list[str] = []
    error: str = ""
    download_href: str = "/api/events.csv"
    scope_name: str = ""
    scope_id: str = ""
    # The filter form, as typed; applied (and put in the URL) on Apply.
    event_type: str = ""
    actor: str = ""
    candidate: str = ""
    date_from: str = ""
    date_to: str = ""
    page_number: int = 1
    has_next: bool = False

    def _filter(self) -> AuditFilter:
        return AuditFilter(
            event_type=self.event_type,
            actor=self.actor.strip(),
            candidate=self.candidate.strip(),
            date_from=self.date_from,
            date_to=self.date_to,
            page=self.page_number,
        )

    def _show(self, f: AuditFilter) -> None:
        self.event_type, self.actor, self.candidate = f.event_type, f.actor, f.candidate
        self.date_from, self.date_to, self.page_number = f.date_from, f.date_to, f.page

    async def _reload(self) -> None:
        f, who = self._filter(), self._viewer()
        mid = self.scope_id or None
        try:
            events = await service().list_events(
                who, mid, **service_filters(f), limit=PAGE_SIZE, offset=(f.page - 1) * PAGE_SIZE
            )
        except Exception as exc:
            self.error, self.rows, self.total = error_text(exc), [], 0
            return
        now = datetime.now(UTC)
        self.error = ""
        self.rows = [audit_row(e, now) for e in events.events]
        self.total = events.total
        self.has_next = f.page * PAGE_SIZE < events.total
        self.summary = showing(f, len(self.rows), events.total)
        self.download_href = csv_href(self.scope_id, f)

    def _to_url(self):
        url = audit_href(self.scope_id) + audit_query(self._filter())
        return rx.call_script(f"window.history.pushState(window.history.state, '', {json.dumps(url)})")

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        self.loading = True
        self.scope_id = self.migration_id or ""  # the dynamic route's; "" on /audit
        self.scope_name = ""
        if self.scope_id:
            try:
                m = await service().get_migration(self._viewer(), self.scope_id, with_candidates=False)
                self.scope_name = m.name
            except Exception as exc:
                self.error, self.rows, self.loading = error_text(exc), [], False
                return
        f, self.problems = parse_audit_query(self.router.url.query_parameters)
        self._show(f)
        await self._reload()
        await self._count_needs_me()
        self.loading = False

    @rx.event
    def set_event_type(self, value: str):
        self.event_type = "" if value == ALL_TYPES else value

    @rx.event
    def set_actor(self, value: str):
        self.actor = value

    @rx.event
    def set_candidate(self, value: str):
        self.candidate = value

    @rx.event
    def set_date_from(self, value: str):
        self.date_from = value

    @rx.event
    def set_date_to(self, value: str):
        self.date_to = value

    @rx.event
    async def apply(self, _form: dict | None = None):
        f, self.problems = checked(self._filter())
        self._show(f)
        await self._reload()
        return self._to_url()

    @rx.event
    async def clear(self):
        self._show(AuditFilter())
        self.problems = []
        await self._reload()
        return self._to_url()

    @rx.event
    async def go_to_page(self, number: int):
        self.page_number = max(number, 1)
        await self._reload()
        return self._to_url()


# -- view ---------------------------------------------------------------------------------


def _type_label(value: str) -> str:
    return fmt.event_label(value)


def _filters() -> rx.Component:
    S = AuditState
    return rx.form(
        rx.flex(
            rx.select.root(
                rx.select.trigger(placeholder="Any event", aria_label="Event type", data_testid="audit-type"),
                rx.select.content(
                    rx.select.item("Any event", value=ALL_TYPES),
                    *[rx.select.item(_type_label(t), value=t) for t in EVENT_TYPES],
                ),
                value=rx.cond(S.event_type == "", ALL_TYPES, S.event_type),
                on_change=S.set_event_type,
            ),
            rx.input(
                value=S.actor,
                on_change=S.set_actor,
                placeholder="Actor",
                aria_label="Actor",
                width=["100%", "180px"],
                data_testid="audit-actor",
            ),
            rx.input(
                value=S.candidate,
                on_change=S.set_candidate,
                placeholder="Candidate id",
                aria_label="Candidate",
                width=["100%", "180px"],
                data_testid="audit-candidate",
            ),
            rx.el.label(
                rx.hstack(
                    rx.text("From", size="2"),
                    rx.input(
                        type="date",
                        value=S.date_from,
                        on_change=S.set_date_from,
                        aria_label="From day (UTC)",
                        data_testid="audit-from",
                    ),
                    spacing="2",
                    align="center",
                )
            ),
            rx.el.label(
                rx.hstack(
                    rx.text("To", size="2"),
                    rx.input(
                        type="date",
                        value=S.date_to,
                        on_change=S.set_date_to,
                        aria_label="To day (UTC, included)",
                        data_testid="audit-to",
                    ),
                    spacing="2",
                    align="center",
                )
            ),
            rx.button("Apply", type="submit", data_testid="audit-apply"),
            rx.button("Clear", type="button", variant="ghost", on_click=S.clear, data_testid="audit-clear"),
            gap="8px",
            wrap="wrap",
            align="center",
            width="100%",
        ),
        on_submit=S.apply,
        reset_on_submit=False,
        width="100%",
        margin_bottom="12px",
    )


def _row(r: AuditRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(r.when, title=r.clock, size="2", color=rx.color("gray", 11)), white_space="nowrap"),
        rx.cond(
            AuditState.scope_id == "",
            rx.table.cell(rx.link(r.migration_id, href=r.migration_href, size="2")),
        ),
        rx.table.cell(rx.link(r.candidate_id, href=r.candidate_href, size="2", weight="medium")),
        rx.table.cell(rx.text(r.label, size="2")),
        rx.table.cell(rx.code(r.step, size="1", variant="ghost")),
        rx.table.cell(rx.cond(r.status != "", rx.badge(r.status, color_scheme=r.status_color, variant="soft"))),
        rx.table.cell(rx.text(r.actor, size="2"), data_testid="audit-row-actor"),
        rx.table.cell(rx.text(r.detail, size="1", color=rx.color("gray", 11)), max_width="360px"),
        data_testid="audit-row",
        data_type=r.type,
        data_actor=r.actor,
        data_candidate=r.candidate_id,
    )


def _table() -> rx.Component:
    S = AuditState
    headers = ["When", "Migration", "Candidate", "Event", "Step", "Status", "Actor", "Detail"]
    return rx.vstack(
        rx.box(
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.cond(S.scope_id == "", rx.table.column_header_cell(h))
                            if h == "Migration"
                            else rx.table.column_header_cell(h)
                            for h in headers
                        ]
                    )
                ),
                rx.table.body(rx.foreach(S.rows, _row)),
                size="1",
                variant="surface",
                width="100%",
            ),
            overflow_x="auto",
            width="100%",
        ),
        rx.hstack(
            rx.text(S.summary, size="2", color=rx.color("gray", 11), data_testid="audit-summary"),
            rx.spacer(),
            rx.button(
                "Newer",
                variant="soft",
                size="1",
                disabled=S.page_number <= 1,
                on_click=S.go_to_page(S.page_number - 1),
                data_testid="audit-prev",
            ),
            rx.button(
                "Older",
                variant="soft",
                size="1",
                disabled=~S.has_next,
                on_click=S.go_to_page(S.page_number + 1),
                data_testid="audit-next",
            ),
            width="100%",
            align="center",
        ),
        spacing="3",
        width="100%",
    )


def audit_page() -> rx.Component:
    S = AuditState
    return page(
        rx.cond(
            S.scope_id != "",
            breadcrumb(crumb("Migrations", "/"), crumb(S.scope_name, "/migrations/" + S.scope_id), rx.text("Audit")),
        ),
        page_header(
            rx.cond(S.scope_id != "", "Audit of " + S.scope_name, "Audit"),
            "Every event of the log, newest first: who started, cancelled, retried, approved or changed what, and when "
            "(times in UTC).",
            link_button(
                rx.icon("download", size=14),
                "Download CSV",
                href=S.download_href,
                variant="soft",
                color_scheme="gray",
                white_space="nowrap",
                link_props={
                    # A file from the API, not a page: the browser fetches it rather than the client router.
                    "custom_attrs": {"reloadDocument": True, "download": True},
                    "title": "Every event these filters match (all pages), as CSV",
                    "data_testid": "audit-download-csv",
                },
            ),
        ),
        _filters(),
        rx.foreach(
            S.problems,
            lambda p: rx.callout(p, icon="triangle-alert", color_scheme="amber", size="1", data_testid="audit-problem"),
        ),
        rx.cond(
            S.loading,
            skeleton_rows(6, "36px"),
            rx.cond(
                S.error != "",
                rx.callout(S.error, icon="circle-alert", color_scheme="red", data_testid="audit-error"),
                rx.cond(
                    S.total > 0,
                    _table(),
                    empty_state(
                        "scroll-text",
                        "No events match",
                        rx.text(
                            "Nothing in the log matches these filters. Widen the days or clear the filters.",
                            size="2",
                            color=rx.color("gray", 11),
                        ),
                        rx.button("Clear filters", variant="soft", on_click=S.clear),
                    ),
                ),
            ),
        ),
    )
