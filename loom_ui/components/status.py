"""Status badges and the segmented progress bar."""

from __future__ import annotations

from typing import Any

import reflex as rx


def status_badge(label, color, **props) -> rx.Component:
    # High contrast: amber and red soft badges read below 4.5:1 in the light theme otherwise.
    return rx.badge(label, color_scheme=color, variant="soft", radius="full", high_contrast=True, **props)


def progress_bar(segments) -> rx.Component:
    """`segments`: a list var of rows with `percent_css`, `color_css` and `title`."""
    return rx.hstack(
        rx.foreach(
            segments,
            lambda s: rx.box(width=s.percent_css, background=s.color_css, height="100%", title=s.title),
        ),
        spacing="0",
        width="100%",
        height="8px",
        border_radius="999px",
        overflow="hidden",
        background=rx.color("gray", 4),
    )


def legend_dot(color_css, label, count) -> rx.Component:
    return rx.hstack(
        rx.box(width="8px", height="8px", border_radius="999px", background=color_css),
        rx.text(label, size="1", color=rx.color("gray", 11)),
        rx.text(count, size="1", weight="bold"),
        spacing="1",
        align="center",
    )


def pr_state(pr: Any) -> rx.Component:
    """A PR's checks (✓ ✗ …), review and mergeable, as small badges; the card, table and timeline share it."""
    return rx.hstack(
        rx.cond(
            pr.checks != "",
            rx.badge(
                pr.checks,
                color_scheme=pr.checks_color,
                variant="soft",
                high_contrast=True,
                title=pr.checks_label,
                aria_label=pr.checks_label,
                data_testid="pr-checks",
            ),
        ),
        rx.cond(
            pr.review != "",
            rx.badge(
                pr.review, color_scheme=pr.review_color, variant="soft", high_contrast=True, data_testid="pr-review"
            ),
        ),
        rx.cond(
            pr.mergeable != "",
            rx.badge(
                pr.mergeable,
                color_scheme=pr.mergeable_color,
                variant="soft",
                high_contrast=True,
                data_testid="pr-mergeable",
            ),
        ),
        spacing="1",
        wrap="wrap",
    )


def stuck_badge(shown: Any) -> rx.Component:
    return rx.cond(
        shown,
        rx.badge(
            rx.icon("hourglass", size=12, aria_hidden="true"),
            "Stuck",
            color_scheme="orange",
            variant="solid",
            high_contrast=True,
            title="In this status much longer than this Step usually takes",
            data_testid="stuck",
        ),
    )
