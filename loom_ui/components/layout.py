"""The page frame: navigation with the Needs me count and who is signed in, and a centred content column."""

from __future__ import annotations

from typing import Any

import reflex as rx

from loom_ui.components.access import user_menu
from loom_ui.state import LoomState


def _nav_link(label: str, href: str, *extra: rx.Component, **props) -> rx.Component:
    return rx.link(
        rx.hstack(rx.text(label, size="2", weight="medium"), *extra, spacing="2", align="center"),
        href=href,
        color=rx.color("gray", 12),
        underline="none",
        padding_x="10px",
        padding_y="6px",
        border_radius="var(--radius-2)",
        _hover={"background": rx.color("gray", 4)},
        **props,
    )


def navbar() -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.link(
                rx.hstack(
                    rx.icon("waypoints", size=20, color=rx.color("accent", 10)),
                    rx.heading("Loom", size="4", weight="bold"),
                    spacing="2",
                    align="center",
                ),
                href="/",
                underline="none",
                color=rx.color("gray", 12),
            ),
            rx.hstack(
                _nav_link("Migrations", "/", data_testid="nav-migrations"),
                _nav_link(
                    "Needs me",
                    "/inbox",
                    rx.badge(
                        LoomState.needs_me_count,
                        color_scheme=rx.cond(LoomState.needs_me_count > 0, "red", "gray"),
                        variant=rx.cond(LoomState.needs_me_count > 0, "solid", "soft"),
                        radius="full",
                        data_testid="needs-me-count",
                    ),
                    data_testid="nav-needs-me",
                ),
                _nav_link("Metrics", "/metrics", data_testid="nav-metrics"),
                spacing="1",
                margin_left="24px",
            ),
            rx.spacer(),
            user_menu(),
            rx.color_mode.button(size="2", variant="ghost", aria_label="Switch light or dark mode"),
            align="center",
            max_width="1440px",
            margin="0 auto",
            padding_x="24px",
            height="52px",
        ),
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
        position="sticky",
        top="0",
        z_index="10",
    )


def page(*children: rx.Component) -> rx.Component:
    return rx.box(
        navbar(),
        rx.box(
            *children,
            max_width="1440px",
            margin="0 auto",
            padding_x="24px",
            padding_y="20px",
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def breadcrumb(*parts: rx.Component) -> rx.Component:
    items: list[rx.Component] = []
    for i, part in enumerate(parts):
        if i:
            items.append(rx.icon("chevron-right", size=14, color=rx.color("gray", 9)))
        items.append(part)
    return rx.hstack(*items, spacing="1", align="center", margin_bottom="6px")


def crumb(label, href: str | rx.Var) -> rx.Component:
    return rx.link(label, href=href, size="2", color=rx.color("gray", 11))


def empty_state(icon: str, title: str | rx.Var, *body: rx.Component) -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon(icon, size=32, color=rx.color("gray", 9)),
            rx.heading(title, size="4"),
            *body,
            align="center",
            spacing="3",
            max_width="640px",
            text_align="center",
        ),
        padding="48px",
        border=f"1px dashed {rx.color('gray', 6)}",
        border_radius="var(--radius-4)",
        background=rx.color("gray", 1),
        width="100%",
    )


def skeleton_rows(n: int = 3, height: str = "72px") -> rx.Component:
    return rx.vstack(*[rx.skeleton(height=height, width="100%") for _ in range(n)], spacing="3", width="100%")


def page_header(title: Any, subtitle: Any = None, *actions: rx.Component, **props: Any) -> rx.Component:
    """A page's title row: the heading (text, or a component of its own), a line of what it shows, its actions."""
    heading = title if isinstance(title, rx.Component) else rx.heading(title, size="7")
    return rx.hstack(
        rx.vstack(
            heading,
            *([rx.text(subtitle, size="2", color=rx.color("gray", 11))] if subtitle is not None else []),
            spacing="1",
            flex="1",
            min_width="0",
        ),
        *actions,
        **{"align": "end", "width": "100%", "margin_bottom": "20px", **props},
    )
