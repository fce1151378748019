"""Migrations (`/`): a card per Migration with its progress, and how a Migrator announces itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import reflex as rx

from loom_backend.domain import MigrationSummary
from loom_ui import format as fmt
from loom_ui.components.layout import empty_state, page, page_header, skeleton_rows
from loom_ui.components.status import legend_dot, progress_bar
from loom_ui.state import LiveMixin, LoomState, service


@dataclass
class SegmentView:
    status: str = ""
    count: int = 0
    percent_css: str = "0%"
    color_css: str = ""
    title: str = ""


@dataclass
class MigrationCard:
    id: str = ""
    name: str = ""
    description: str = ""
    href: str = ""
    total: str = ""
    steps: str = ""
    needs_attention: int = 0
    attention_text: str = ""
    last_activity: str = ""
    segments: list[SegmentView] = field(default_factory=list)


def migration_card_view(m: MigrationSummary, now: datetime) -> MigrationCard:
    counts = {str(k): v for k, v in m.candidate_counts.items()}
    return MigrationCard(
        id=m.id,
        name=m.name,
        description=m.description,
        href=f"/migrations/{m.id}",
        total=fmt.plural(sum(counts.values()), "Candidate"),
        steps=fmt.plural(len(m.steps), "Step"),
        needs_attention=m.needs_attention,
        attention_text=f"{m.needs_attention:,} need attention",
        last_activity=fmt.relative_time(m.last_activity_at, now),
        segments=[
            SegmentView(s.status, s.count, f"{s.percent}%", f"var(--{s.color}-9)", f"{s.label}: {s.count:,}")
            for s in fmt.progress_segments(counts)
        ],
    )


class MigrationsState(LiveMixin, LoomState):
    migrations: list[MigrationCard] = []
    announce_curl: str = ""

    async def _reload(self) -> None:
        now = datetime.now(UTC)
        self.migrations = [migration_card_view(m, now) for m in await service().list_migrations(self._viewer())]
        await self._count_needs_me()

    async def _refresh_nav(self) -> None:
        await self._count_needs_me()

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        self.announce_curl = fmt.announce_curl(service().public_url)
        try:
            await self._reload()
        except Exception as exc:  # the page still renders; the toast says why it is empty
            from loom_ui.state import error_text

            yield rx.toast.error(error_text(exc))
        self.loading = False


def _card(m: MigrationCard) -> rx.Component:
    return rx.link(
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.heading(m.name, size="4", weight="bold", as_="h2"),
                    rx.spacer(),
                    rx.cond(
                        m.needs_attention > 0,
                        rx.badge(rx.icon("triangle-alert", size=12), m.attention_text, color_scheme="red"),
                    ),
                    width="100%",
                    align="center",
                    wrap="wrap",
                ),
                rx.text(m.description, size="2", color=rx.color("gray", 11), trim="both"),
                progress_bar(m.segments),
                rx.hstack(
                    rx.foreach(m.segments, lambda s: legend_dot(s.color_css, s.title, "")),
                    spacing="4",
                    wrap="wrap",
                ),
                rx.hstack(
                    rx.text(m.total, size="1", color=rx.color("gray", 11)),
                    rx.text("·", size="1", color=rx.color("gray", 11), aria_hidden="true"),
                    rx.text(m.steps, size="1", color=rx.color("gray", 11)),
                    rx.spacer(),
                    rx.text("Last activity ", m.last_activity, size="1", color=rx.color("gray", 11)),
                    width="100%",
                    wrap="wrap",
                ),
                spacing="3",
                width="100%",
            ),
            size="3",
            width="100%",
            _hover={"box_shadow": f"0 0 0 1px {rx.color('accent', 8)}"},
        ),
        href=m.href,
        underline="none",
        color="inherit",
        width="100%",
        data_testid="migration-card",
    )


def _empty() -> rx.Component:
    return empty_state(
        "radio-tower",
        "No Migrations yet",
        rx.text(
            "A Migrator announces its Migration, with the Candidates it discovered, when it starts. "
            "Start one, or announce one by hand:",
            size="2",
            color=rx.color("gray", 11),
        ),
        rx.code_block(MigrationsState.announce_curl, language="bash", wrap_long_lines=True, width="100%"),
        rx.text("The board updates by itself as soon as the Migration arrives.", size="1", color=rx.color("gray", 11)),
    )


def migrations_page() -> rx.Component:
    return page(
        page_header("Migrations", "Every Migration its Migrators announced, with how far its Candidates got."),
        rx.cond(
            MigrationsState.loading,
            skeleton_rows(3, "140px"),
            rx.cond(
                MigrationsState.migrations.length() > 0,
                rx.grid(
                    rx.foreach(MigrationsState.migrations, _card),
                    columns=rx.breakpoints(initial="1", md="2"),
                    spacing="4",
                    width="100%",
                ),
                _empty(),
            ),
        ),
    )
