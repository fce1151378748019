"""Status badges and the segmented progress bar."""

from __future__ import annotations

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
