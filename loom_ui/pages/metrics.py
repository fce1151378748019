"""Metrics (`/metrics`) and the board's metrics panel: counters, burndowns, Step durations, activity, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import reflex as rx

from loom_backend.domain import Principal
from loom_ui import format as fmt
from loom_ui.components.charts import (
    activity_chart,
    axis_width,
    burndown_chart,
    chart_card,
    counter_tile,
    state_burndown_chart,
    step_duration_chart,
)
from loom_ui.components.layout import empty_state, page, page_header, skeleton_rows
from loom_ui.state import LiveMixin, LoomState, service

TIMELINE_DAYS = 30
FAILURES_SHOWN = 20
# A short burndown marks each day, or a single day would draw nothing at all.
DOTTED_DAYS = 31
# The board's panel: Candidates by status are its columns already, so it shows the Run and Step figures.
# A Step's name up to this wide on the durations chart; a longer one is cut by the chart, whole in the tooltip.
MAX_LABEL_WIDTH = 240
PANEL_COUNTERS = (
    "runs-started",
    "runs-completed",
    "runs-cancelled",
    "steps-failed",
    "reviews-waiting",
    "stuck-steps",
    "median-run",
)


@dataclass
class CounterView:
    key: str = ""
    label: str = ""
    value: str = ""
    hint: str = ""
    color: str = "gray"


@dataclass
class BurndownView:
    migration_id: str = ""
    name: str = ""
    href: str = ""
    summary: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    dots: bool = False
    y_width: int = 36
    state_rows: list[dict[str, Any]] = field(default_factory=list)
    by_hour: bool = False


@dataclass
class FailureView:
    migration_id: str = ""
    migration_name: str = ""
    candidate_id: str = ""
    href: str = ""
    step: str = ""
    error: str = ""
    when: str = ""
    clock: str = ""


def _counters(overview, keys: tuple[str, ...] | None = None) -> list[CounterView]:
    return [
        CounterView(c.key, c.label, c.value, c.hint, c.color)
        for c in fmt.overview_counters(overview)
        if keys is None or c.key in keys
    ]


async def _burndown(who: Principal, migration_id: str, name: str) -> BurndownView:
    b = await service().burndown(who, migration_id)
    rows = fmt.burndown_rows(b)
    widest = max((len(str(r.get(k) or 0)) for r in rows for k in ("remaining", "projected")), default=1)
    now = datetime.now(UTC)
    return BurndownView(
        y_width=axis_width(max(widest, len(str(b.total)))),
        migration_id=migration_id,
        name=name,
        href=f"/migrations/{migration_id}",
        summary=fmt.burndown_summary(b, now.date(), now),
        rows=rows,
        dots=len(b.days) <= DOTTED_DAYS,
        state_rows=fmt.state_rows(b),
        by_hour=b.bucket == "hour",
    )


class MetricsState(LiveMixin, LoomState):
    """Every Migration at once; reloads whenever anything in Loom moves."""

    counters: list[CounterView] = []
    activity: list[dict[str, Any]] = []
    has_activity: bool = False
    durations: list[dict[str, Any]] = []
    duration_unit: str = "s"
    duration_label_width: int = 110
    burndowns: list[BurndownView] = []
    failures: list[FailureView] = []
    migrations: int = 0

    async def _reload(self) -> None:
        now = datetime.now(UTC)
        who = self._viewer()
        migrations = await service().list_migrations(who)
        overview = await service().metrics_overview(who)
        steps = await service().step_metrics(who)
        timeline = await service().metrics_timeline(who, TIMELINE_DAYS)
        failures = await service().recent_failures(who, FAILURES_SHOWN)
        names = {m.id: m.name for m in migrations}
        self.migrations = len(migrations)
        self.counters = _counters(overview)
        self.activity = fmt.timeline_rows(timeline.days)
        self.has_activity = fmt.has_activity(self.activity)
        self.duration_unit, self.durations = fmt.step_duration_rows(steps.steps)
        longest = max((len(str(r["step"])) for r in self.durations), default=8)
        self.duration_label_width = min(axis_width(longest), MAX_LABEL_WIDTH)
        self.burndowns = [await _burndown(who, m.id, m.name) for m in migrations]
        self.failures = [FailureView(**vars(fmt.failure_row(f, names, now))) for f in failures.failures]

    async def _refresh_nav(self) -> None:
        await self._count_needs_me()

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        await self._reload()
        await self._count_needs_me()
        self.loading = False


class MigrationMetricsState(LiveMixin, LoomState):
    """The board's panel: one Migration's Run and Step figures and its burndown."""

    panel_counters: list[CounterView] = []
    panel_burndown: BurndownView = BurndownView()

    def _live_scope(self) -> str | None:
        return self.migration_id or None

    async def _reload(self) -> None:
        mid, who = self.migration_id, self._viewer()
        migration = await service().get_migration(who, mid, with_candidates=False)
        self.panel_counters = _counters(await service().metrics_overview(who, mid), PANEL_COUNTERS)
        self.panel_burndown = await _burndown(who, mid, migration.name)

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        self.loading = True
        try:
            await self._reload()
        except Exception:
            # The board says when the Migration is missing; the panel just stays empty.
            self.panel_counters = []
            self.panel_burndown = BurndownView()
        self.loading = False


# -- view ---------------------------------------------------------------------------------


def _burndown_card(b: BurndownView) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading(rx.link(b.name, href=b.href, color=rx.color("gray", 12)), size="3", as_="h3"),
                rx.spacer(),
                rx.link(
                    rx.hstack(rx.text("Board", size="1"), rx.icon("arrow-right", size=12), spacing="1", align="center"),
                    href=b.href,
                    size="1",
                    aria_label="Board of " + b.name,
                ),
                width="100%",
                align="center",
            ),
            rx.text(b.summary, size="1", color=rx.color("gray", 11), data_testid="burndown-summary"),
            rx.cond(
                b.state_rows.length() > 0,
                rx.box(
                    state_burndown_chart(b.state_rows, height=190, y_width=b.y_width),
                    rx.text(
                        rx.cond(
                            b.by_hour,
                            "Candidates by state at the end of each hour",
                            "Candidates by state at the end of each UTC day",
                        ),
                        "; the dashed line is the projection at the recent pace.",
                        size="1",
                        color=rx.color("gray", 10),
                    ),
                    width="100%",
                    role="img",
                    aria_label="Burndown by state of " + b.name + ": " + b.summary,
                    data_testid="chart",
                ),
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
        data_testid="burndown",
        data_migration=b.migration_id,
    )


def _failure_row(f: FailureView) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(f.when, title=f.clock, size="2", color=rx.color("gray", 11)), white_space="nowrap"),
        rx.table.cell(rx.link(f.migration_name, href="/migrations/" + f.migration_id, size="2")),
        rx.table.cell(
            rx.link(f.candidate_id, href=f.href, weight="medium", size="2", data_testid="failure-candidate-link")
        ),
        rx.table.cell(rx.code(f.step, size="1", variant="ghost")),
        rx.table.cell(rx.text(f.error, size="2", color=rx.color("red", 11)), max_width="480px"),
        data_testid="failure",
        data_candidate=f.candidate_id,
    )


def failures_table(rows) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.vstack(
                rx.heading("Recent failures", size="3", as_="h2"),
                rx.text(
                    "The newest failed Steps, with the error the Run recorded.", size="1", color=rx.color("gray", 11)
                ),
                spacing="1",
            ),
            rx.cond(
                rows.length() > 0,
                rx.box(
                    rx.table.root(
                        rx.table.header(
                            rx.table.row(
                                *[
                                    rx.table.column_header_cell(h)
                                    for h in ("When", "Migration", "Candidate", "Step", "Error")
                                ]
                            )
                        ),
                        rx.table.body(rx.foreach(rows, _failure_row)),
                        size="1",
                        variant="ghost",
                        width="100%",
                    ),
                    # On a phone the table scrolls inside its card, not the page.
                    overflow_x="auto",
                    width="100%",
                ),
                rx.hstack(
                    rx.icon("circle-check", size=16, color=rx.color("green", 10)),
                    rx.text("No Step has failed.", size="2", color=rx.color("gray", 11)),
                    align="center",
                    spacing="2",
                    padding_y="8px",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        data_testid="failures",
    )


def metrics_panel() -> rx.Component:
    """The compact panel on a Migration's board."""
    S = MigrationMetricsState
    b = S.panel_burndown
    return rx.cond(
        S.panel_counters.length() > 0,
        rx.card(
            rx.grid(
                rx.vstack(
                    rx.hstack(
                        rx.heading("Runs and Steps", size="2", as_="h2"),
                        rx.spacer(),
                        rx.link(
                            rx.hstack(
                                rx.text("All metrics", size="1"),
                                rx.icon("arrow-right", size=12),
                                spacing="1",
                                align="center",
                            ),
                            href="/metrics",
                            size="1",
                            aria_label="All metrics",
                        ),
                        width="100%",
                        align="center",
                    ),
                    rx.grid(
                        rx.foreach(S.panel_counters, lambda c: counter_tile(c, compact=True)),
                        columns=rx.breakpoints(initial="2", sm="3"),
                        spacing="2",
                        width="100%",
                    ),
                    spacing="2",
                    width="100%",
                ),
                rx.vstack(
                    rx.heading("Burndown", size="2", as_="h2"),
                    rx.text(b.summary, size="1", color=rx.color("gray", 11), data_testid="burndown-summary"),
                    rx.cond(
                        b.rows.length() > 0,
                        rx.box(
                            burndown_chart(b.rows, b.dots, height=110, legend=False, y_width=b.y_width),
                            width="100%",
                            role="img",
                            aria_label="Burndown: " + b.summary,
                            data_testid="chart",
                        ),
                    ),
                    spacing="2",
                    width="100%",
                ),
                columns=rx.breakpoints(initial="1", md="minmax(0, 3fr) minmax(0, 2fr)"),
                spacing="5",
                width="100%",
            ),
            width="100%",
            margin_bottom="16px",
            data_testid="metrics-panel",
        ),
    )


def metrics_page() -> rx.Component:
    S = MetricsState
    return page(
        page_header(
            "Metrics", "How every Migration is going: Candidates, Runs, Step durations and what failed lately."
        ),
        rx.cond(
            S.loading,
            skeleton_rows(4, "120px"),
            rx.cond(
                S.migrations > 0,
                rx.vstack(
                    rx.grid(
                        rx.foreach(S.counters, lambda c: counter_tile(c)),
                        columns=rx.breakpoints(initial="2", sm="3", lg="5"),
                        spacing="3",
                        width="100%",
                        data_testid="counters",
                    ),
                    rx.grid(
                        chart_card(
                            "Daily activity",
                            f"The last {TIMELINE_DAYS} days, by UTC day",
                            activity_chart(S.activity),
                            S.has_activity,
                            f"Nothing happened in the last {TIMELINE_DAYS} days.",
                            data_testid="activity",
                        ),
                        chart_card(
                            "Step durations",
                            "p50 and p95 of each Step's successful runs, in " + S.duration_unit,
                            step_duration_chart(S.durations, S.duration_unit, label_width=S.duration_label_width),
                            S.durations.length() > 0,
                            "No Step has completed yet.",
                            data_testid="step-durations",
                        ),
                        columns=rx.breakpoints(initial="1", lg="2"),
                        spacing="4",
                        width="100%",
                    ),
                    rx.heading("Burndown", size="4", as_="h2", margin_top="8px"),
                    rx.grid(
                        rx.foreach(S.burndowns, _burndown_card),
                        columns=rx.breakpoints(initial="1", md="2", xl="3"),
                        spacing="4",
                        width="100%",
                    ),
                    failures_table(S.failures),
                    spacing="4",
                    width="100%",
                ),
                empty_state(
                    "chart-no-axes-column",
                    "No metrics yet",
                    rx.text(
                        "Metrics appear once a Migrator announces a Migration and its Runs start.",
                        size="2",
                        color=rx.color("gray", 11),
                    ),
                    rx.link("Back to Migrations", href="/"),
                ),
            ),
        ),
    )
