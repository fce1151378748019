"""The input an operator fills in for a Migration's required input, on the candidate page and the board."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import reflex as rx


def input_field(i: Any, on_change: Callable[[Any], Any], placeholder: str = "") -> rx.Component:
    """`i`: an InputField var (name, label, description, value); `on_change` gets the new value."""
    return rx.vstack(
        rx.el.label(rx.text(i.label, size="2", weight="medium"), html_for="input-" + i.name),
        rx.input(
            value=i.value,
            on_change=on_change,
            id="input-" + i.name,
            name=i.name,
            width="100%",
            placeholder=placeholder,
            data_testid="input-" + i.name,
        ),
        rx.cond(i.description != "", rx.text(i.description, size="1", color=rx.color("gray", 10))),
        spacing="1",
        width="100%",
    )
