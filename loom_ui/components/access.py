"""What a viewer sees of an action: the button, disabled, with the reason on hover."""

from __future__ import annotations

import reflex as rx

from loom_ui.state import VIEWER_NOTICE, VIEWERS_CANT, LoomState

SIGN_OUT_SCRIPT = (
    "fetch('/api/auth/logout', {method: 'POST', credentials: 'same-origin'})"
    ".finally(() => window.location.assign('/login'))"
)


def operator_only(button: rx.Component) -> rx.Component:
    """Operators get the button; viewers a disabled one in a tooltip (a disabled button gets no hover of its own).

    The button must also be `disabled` when `~LoomState.can_operate`: the handlers refuse viewers regardless.
    """
    return rx.cond(
        LoomState.can_operate,
        button,
        rx.tooltip(rx.box(button, display="inline-flex", data_testid="viewer-disabled"), content=VIEWERS_CANT),
    )


def viewer_locked(busy: rx.Var | bool = False) -> rx.Var:
    """`disabled` for an action button: while another action runs, and always for viewers."""
    return ~LoomState.can_operate | busy  # type: ignore[operator]


def user_menu() -> rx.Component:
    """Who is signed in, their role, and the way out (not behind a proxy: the proxy signs people in and out)."""
    return rx.cond(
        LoomState.user_name != "",
        rx.hstack(
            rx.icon("circle-user-round", size=16, color=rx.color("gray", 11), aria_hidden="true"),
            rx.text(
                LoomState.user_name,
                size="2",
                weight="medium",
                data_testid="signed-in-user",
                # A phone has room for the role, not the name.
                display=["none", "none", "block"],
                max_width="160px",
                overflow="hidden",
                text_overflow="ellipsis",
                white_space="nowrap",
            ),
            rx.badge(LoomState.user_role, variant="soft", color_scheme="gray", data_testid="signed-in-role"),
            rx.cond(
                ~LoomState.user_via_proxy,
                rx.button(
                    rx.icon("log-out", size=14),
                    rx.text("Sign out", display=["none", "none", "inline"]),
                    size="1",
                    variant="ghost",
                    color_scheme="gray",
                    on_click=rx.call_script(SIGN_OUT_SCRIPT),
                    aria_label="Sign out",
                    data_testid="sign-out",
                ),
            ),
            spacing="2",
            align="center",
            margin_right="8px",
        ),
    )


def viewer_notice() -> rx.Component:
    """A line that says, without hovering, why the page's actions are disabled for a viewer."""
    return rx.cond(
        LoomState.user_role == "viewer",
        rx.callout(
            VIEWER_NOTICE, icon="eye", color_scheme="gray", size="1", margin_bottom="12px", data_testid="viewer-notice"
        ),
    )
