"""The input an operator fills in for a Migration's required input, and a comment box; each says its limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import reflex as rx

from loom_ui.views.common import INPUT_LIMIT_TEXT


def field_error(error: Any, testid: str, id_: Any = None) -> rx.Component:
    return rx.cond(
        error != "",
        rx.text(error, size="1", color=rx.color("red", 11), role="alert", id=id_, data_testid=testid),
    )


def input_field(i: Any, on_change: Callable[[Any], Any], placeholder: str = "", **input_props: Any) -> rx.Component:
    """`i`: an InputField var (name, label, description, value, error); `on_change` gets the new value."""
    return rx.vstack(
        rx.el.label(rx.text(i.label, size="2", weight="medium"), html_for="input-" + i.name),
        rx.input(
            value=i.value,
            on_change=on_change,
            id="input-" + i.name,
            name=i.name,
            width="100%",
            placeholder=placeholder,
            aria_invalid=rx.cond(i.error != "", "true", "false"),
            aria_describedby="input-help-" + i.name,
            color_scheme=rx.cond(i.error != "", "red", "gray"),
            data_testid="input-" + i.name,
            **input_props,
        ),
        rx.text(
            rx.cond(i.description != "", i.description + " ", ""),
            INPUT_LIMIT_TEXT,
            size="1",
            color=rx.color("gray", 11),
            id="input-help-" + i.name,
        ),
        field_error(i.error, "input-error-" + i.name),
        spacing="1",
        width="100%",
    )
