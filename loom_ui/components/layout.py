"""The page frame: a header with the navigation, the Needs me count and who is signed in; the page's main column."""

from __future__ import annotations

from typing import Any

import reflex as rx

from loom_ui.components.access import user_menu, viewer_notice
from loom_ui.components.palette import palette
from loom_ui.state import LoomState

# Phone, tablet, desktop (Reflex's breakpoints: 0, 30em, 48em, ...): the frame tightens on small screens.
PADDING_X = ["12px", "16px", "24px"]


def _nav_link(label: str, href: str, *extra: rx.Component, **props) -> rx.Component:
    return rx.link(
        rx.hstack(rx.text(label, size="2", weight="medium"), *extra, spacing="2", align="center"),
        href=href,
        color=rx.color("gray", 12),
        underline="none",
        padding_x=["8px", "10px"],
        padding_y="6px",
        border_radius="var(--radius-2)",
        white_space="nowrap",
        _hover={"background": rx.color("gray", 4)},
        **props,
    )


def navbar() -> rx.Component:
    """On a phone the links take a row of their own under the logo and the account."""
    return rx.el.header(
        rx.hstack(
            rx.link(
                rx.hstack(
                    rx.icon("waypoints", size=20, color=rx.color("accent", 10)),
                    rx.text("Loom", size="4", weight="bold"),
                    spacing="2",
                    align="center",
                ),
                href="/",
                underline="none",
                color=rx.color("gray", 12),
                aria_label="Loom: Migrations",
            ),
            rx.el.nav(
                rx.hstack(
                    _nav_link("Migrations", "/", data_testid="nav-migrations"),
                    _nav_link(
                        "Needs me",
                        "/inbox",
                        rx.badge(
                            LoomState.needs_me_count,
                            color_scheme=rx.cond(LoomState.needs_me_count > 0, "red", "gray"),
                            variant=rx.cond(LoomState.needs_me_count > 0, "solid", "soft"),
                            high_contrast=True,
                            radius="full",
                            data_testid="needs-me-count",
                        ),
                        data_testid="nav-needs-me",
                    ),
                    _nav_link("Metrics", "/metrics", data_testid="nav-metrics"),
                    _nav_link("Audit", "/audit", data_testid="nav-audit"),
                    spacing="1",
                ),
                aria_label="Main",
                order=["3", "3", "0"],
                width=["100%", "100%", "auto"],
                margin_left=["0", "0", "24px"],
            ),
            rx.spacer(),
            palette(),
            user_menu(),
            rx.color_mode.button(size="2", variant="ghost", aria_label="Switch light or dark mode"),
            align="center",
            wrap="wrap",
            row_gap="4px",
            max_width="1440px",
            margin="0 auto",
            padding_x=PADDING_X,
            padding_y="8px",
            min_height="52px",
        ),
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
        position="sticky",
        top="0",
        z_index="10",
    )


def page(*children: rx.Component) -> rx.Component:
    return rx.box(
        rx.el.a("Skip to content", href="#main", class_name="loom-skip-link"),
        navbar(),
        rx.el.main(
            viewer_notice(),
            *children,
            id="main",
            max_width="1440px",
            margin="0 auto",
            padding_x=PADDING_X,
            padding_y="20px",
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def breadcrumb(*parts: rx.Component) -> rx.Component:
    items: list[rx.Component] = []
    for i, part in enumerate(parts):
        if i:
            items.append(rx.icon("chevron-right", size=14, color=rx.color("gray", 11), aria_hidden="true"))
        items.append(part)
    return rx.el.nav(
        rx.hstack(*items, spacing="1", align="center", wrap="wrap", margin_bottom="6px"), aria_label="Breadcrumb"
    )


def crumb(label, href: str | rx.Var) -> rx.Component:
    return rx.link(label, href=href, size="2", color=rx.color("gray", 11))


def empty_state(icon: str, title: str | rx.Var, *body: rx.Component) -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon(icon, size=32, color=rx.color("gray", 9)),
            rx.heading(title, size="4", as_="h2"),
            *body,
            align="center",
            spacing="3",
            max_width="640px",
            width="100%",
            text_align="center",
        ),
        padding=["24px", "48px"],
        border=f"1px dashed {rx.color('gray', 6)}",
        border_radius="var(--radius-4)",
        background=rx.color("gray", 1),
        width="100%",
    )


def skeleton_rows(n: int = 3, height: str = "72px") -> rx.Component:
    return rx.vstack(*[rx.skeleton(height=height, width="100%") for _ in range(n)], spacing="3", width="100%")


def page_header(title: Any, subtitle: Any = None, *actions: rx.Component, **props: Any) -> rx.Component:
    """A page's title row: the h1 (text, or a component of its own), a line of what it shows, its actions.

    The actions wrap under the title when the screen is too narrow for both.
    """
    heading = title if isinstance(title, rx.Component) else rx.heading(title, size="7", as_="h1")
    return rx.flex(
        rx.vstack(
            heading,
            *([rx.text(subtitle, size="2", color=rx.color("gray", 11))] if subtitle is not None else []),
            spacing="1",
            flex="1 1 320px",
            min_width="0",
        ),
        *[rx.box(a, flex_shrink="0", max_width="100%") for a in actions],
        **{"align": "end", "wrap": "wrap", "gap": "12px", "width": "100%", "margin_bottom": "20px", **props},
    )


def link_button(*children: Any, href: Any, **props: Any) -> rx.Component:
    """A link that looks like a button: one element, one Tab stop (a button inside a link is two)."""
    external = props.pop("link_props", {})
    return rx.button(rx.link(*children, href=href, underline="none", **external), as_child=True, **props)
