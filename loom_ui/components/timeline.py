"""The candidate page's timeline: a Step with its status and notices, and an entry of the history.

Each takes a StepView or EventView var (loom_ui.views.candidate); the page passes the Step's action buttons in.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from loom_ui.components.status import pr_state, status_badge, stuck_badge


def retry_notice(s: Any) -> rx.Component:
    """The Migrator cannot be reached yet: Loom retries by itself; says when, and what the Migrator answered."""
    return rx.callout.root(
        rx.callout.icon(rx.icon("cloud-off")),
        rx.vstack(
            rx.callout.text(s.retrying, weight="medium"),
            rx.callout.text(s.retry_error, size="1"),
            spacing="1",
        ),
        color_scheme="amber",
        size="1",
        width="100%",
        data_testid="dispatch-retry",
    )


def timeline_step(s: Any, actions: rx.Component) -> rx.Component:
    """One Step on the timeline: number, name, status, timing, PR, error or retry notice, metadata, `actions`."""
    return rx.hstack(
        rx.vstack(
            rx.center(
                rx.text(s.number, size="1", weight="bold"),
                width="26px",
                height="26px",
                border_radius="999px",
                background=rx.color(s.status_color, 4),
                color=rx.color(s.status_color, 11),
                border=rx.cond(s.skipped, f"1px dashed {rx.color('gray', 8)}", f"1px solid {rx.color('gray', 6)}"),
                flex_shrink="0",
            ),
            rx.box(width="2px", flex_grow="1", background=rx.color("gray", 5)),
            align="center",
            spacing="1",
            align_self="stretch",
        ),
        rx.vstack(
            rx.hstack(
                rx.heading(s.name, size="3", as_="h3"),
                rx.cond(s.type != "", rx.code(s.type, size="1", variant="ghost")),
                status_badge(s.status_label, s.status_color, data_testid="timeline-status"),
                stuck_badge(s.stuck),
                rx.spacer(),
                rx.cond(s.started != "", rx.text(s.started, size="1", color=rx.color("gray", 11))),
                rx.cond(
                    s.duration != "",
                    rx.badge(rx.icon("timer", size=11), s.duration, variant="outline", color_scheme="gray"),
                ),
                width="100%",
                align="center",
                spacing="2",
                wrap="wrap",
            ),
            rx.cond(s.description != "", rx.text(s.description, size="2", color=rx.color("gray", 11))),
            rx.cond(
                s.skipped,
                rx.text(
                    "Skipped: this Candidate's own plan leaves this Step out.",
                    size="1",
                    color=rx.color("gray", 11),
                    data_testid="step-skipped",
                ),
            ),
            rx.cond(
                s.pr_url != "",
                rx.link(
                    rx.hstack(
                        rx.icon("git-pull-request", size=14), rx.text(s.pr_url, size="2"), spacing="1", align="center"
                    ),
                    href=s.pr_url,
                    is_external=True,
                    data_testid="timeline-pr-link",
                ),
            ),
            rx.cond(s.pr_url != "", pr_state(s.pr)),
            rx.cond(
                s.error != "",
                rx.callout(
                    s.error, icon="circle-x", color_scheme="red", size="1", width="100%", data_testid="step-error"
                ),
            ),
            rx.cond(s.retrying != "", retry_notice(s)),
            rx.cond(
                s.instructions != "",
                rx.callout(s.instructions, icon="clipboard-check", color_scheme="amber", size="1", width="100%"),
            ),
            rx.cond(
                s.meta.length() > 0,
                rx.hstack(
                    rx.foreach(
                        s.meta, lambda m: rx.badge(m.key, ": ", m.value, variant="surface", color_scheme="gray")
                    ),
                    wrap="wrap",
                    spacing="1",
                ),
            ),
            actions,
            spacing="2",
            width="100%",
            min_width="0",
            padding_bottom="18px",
        ),
        spacing="3",
        width="100%",
        data_testid="timeline-step",
        data_step=s.name,
        data_status=s.status,
    )


def event_row(e: Any) -> rx.Component:
    """One entry of a Candidate's history: what happened, to which Step, by whom, when."""
    return rx.hstack(
        rx.box(
            width="8px",
            height="8px",
            border_radius="999px",
            background=rx.color(e.status_color, 9),
            margin_top="7px",
            flex_shrink="0",
        ),
        rx.vstack(
            rx.hstack(
                rx.text(e.label, size="2", weight="medium", data_testid="event-label"),
                rx.cond(e.step != "", rx.code(e.step, size="1", variant="ghost")),
                rx.cond(e.status != "", status_badge(e.status, e.status_color, size="1")),
                rx.spacer(),
                rx.text(e.when, size="1", color=rx.color("gray", 11), white_space="nowrap"),
                spacing="2",
                wrap="wrap",
                align="center",
                width="100%",
            ),
            rx.hstack(
                rx.cond(
                    e.actor != "",
                    rx.text(
                        "by ", rx.text.strong(e.actor), size="1", color=rx.color("gray", 11), data_testid="event-actor"
                    ),
                ),
                rx.text(e.clock, size="1", color=rx.color("gray", 11)),
                spacing="2",
            ),
            rx.cond(
                e.comment != "",
                rx.blockquote(e.comment, size="2", color=rx.color("gray", 12), data_testid="event-comment"),
            ),
            rx.cond(e.detail != "", rx.text(e.detail, size="1", color=rx.color("gray", 11))),
            spacing="1",
            width="100%",
            min_width="0",
        ),
        spacing="2",
        align="start",
        width="100%",
        data_testid="event",
        data_type=e.type,
    )
