"""A Candidate's card on the board: its id, marks for what needs a person, its current Step and PR."""

from __future__ import annotations

from typing import Any

import reflex as rx

from loom_ui.components.status import pr_state, status_badge, stuck_badge


def _attention_mark(c: Any) -> rx.Component:
    return rx.match(
        c.attention,
        (
            "failed",
            rx.badge(rx.icon("circle-x", size=12), "Failed", color_scheme="red", variant="solid", high_contrast=True),
        ),
        ("review", rx.badge(rx.icon("eye", size=12), "Needs review", color_scheme="amber", variant="solid")),
        rx.fragment(),
    )


def _retry_mark(c: Any) -> rx.Component:
    """The Migrator cannot be reached yet; the whole notice on hover."""
    return rx.cond(
        c.retrying != "",
        rx.badge(
            rx.icon("cloud-off", size=12),
            "Retrying",
            color_scheme="amber",
            variant="soft",
            title=c.retrying,
            data_testid="dispatch-retry",
        ),
    )


def _current_step(c: Any) -> rx.Component:
    return rx.cond(
        c.step != "",
        rx.hstack(
            rx.icon("git-commit-horizontal", size=14, color=rx.color("gray", 11), aria_hidden="true"),
            rx.text(c.step, size="1", weight="medium", trim="both"),
            status_badge(c.step_label, c.step_color, data_testid="step-status"),
            rx.spacer(),
            rx.cond(
                c.pr_url != "",
                rx.link(
                    rx.hstack(
                        rx.icon("git-pull-request", size=13), rx.text("PR", size="1"), spacing="1", align="center"
                    ),
                    href=c.pr_url,
                    is_external=True,
                    size="1",
                    aria_label="PR of " + c.id,
                    data_testid="pr-link",
                ),
            ),
            rx.cond(c.pr_url != "", pr_state(c.pr)),
            width="100%",
            align="center",
            spacing="2",
            wrap="wrap",
        ),
    )


def card(c: Any, select: rx.Component, metadata: rx.Component) -> rx.Component:
    """`c`: a CardView var; `select` stands before the id, `metadata` under it (the page binds both to its state)."""
    return rx.box(
        rx.vstack(
            rx.hstack(
                select,
                rx.link(
                    c.id,
                    href=c.href,
                    weight="bold",
                    size="2",
                    color=rx.color("gray", 12),
                    data_testid="candidate-link",
                    trim="both",
                ),
                rx.spacer(),
                _attention_mark(c),
                stuck_badge(c.stuck),
                _retry_mark(c),
                rx.cond(
                    c.drifted,
                    rx.badge(
                        rx.icon("git-compare-arrows", size=12),
                        "Drifted",
                        color_scheme="orange",
                        variant="soft",
                        title="Completed, but its dry run still shows changes: see the Candidate page",
                        data_testid="drifted-badge",
                    ),
                ),
                rx.badge(c.kind, variant="outline", color_scheme="gray", size="1"),
                width="100%",
                align="center",
                spacing="2",
                wrap="wrap",
            ),
            metadata,
            _current_step(c),
            spacing="2",
            width="100%",
        ),
        padding="10px 12px",
        background=rx.color("gray", 1),
        border=f"1px solid {rx.color('gray', 5)}",
        border_left=rx.match(
            c.attention,
            ("failed", f"4px solid {rx.color('red', 9)}"),
            ("review", f"4px solid {rx.color('amber', 9)}"),
            f"1px solid {rx.color('gray', 5)}",
        ),
        border_radius="var(--radius-3)",
        width="100%",
        data_testid="candidate-card",
        data_candidate=c.id,
        data_attention=c.attention,
        _hover={"border_color": rx.color("accent", 7)},
    )
