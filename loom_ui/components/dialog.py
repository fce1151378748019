"""Dialogs as every page draws them: a title, a line of what happens, the body, and the buttons at the bottom right."""

from __future__ import annotations

from typing import Any

import reflex as rx


def _footer(close: rx.Component, *actions: rx.Component) -> rx.Component:
    return rx.hstack(close, *actions, justify="end", spacing="3", margin_top="16px")


def _close_button(label: str) -> rx.Component:
    return rx.button(label, variant="soft", color_scheme="gray")


def dialog(
    title: Any,
    description: Any,
    *body: rx.Component,
    actions: tuple[rx.Component, ...] = (),
    close: str = "Cancel",
    open: Any,
    on_open_change: Any,
    trigger: rx.Component | None = None,
    **content_props: Any,
) -> rx.Component:
    """A dialog the page opens and closes through its state; `actions` stand right of the close button."""
    return rx.dialog.root(
        *([rx.dialog.trigger(trigger)] if trigger is not None else []),
        rx.dialog.content(
            rx.dialog.title(title),
            rx.dialog.description(description, size="2", margin_bottom="12px"),
            *body,
            _footer(rx.dialog.close(_close_button(close)), *actions),
            **content_props,
        ),
        open=open,
        on_open_change=on_open_change,
    )


def confirm_dialog(
    title: Any, description: Any, action: rx.Component, *, keep: str, open: Any, on_open_change: Any
) -> rx.Component:
    """Asks before something that cannot be undone; `keep` names the way back."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(title),
            rx.alert_dialog.description(description, size="2"),
            _footer(rx.alert_dialog.cancel(_close_button(keep)), action),
        ),
        open=open,
        on_open_change=on_open_change,
    )
