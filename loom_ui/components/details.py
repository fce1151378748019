"""The candidate page's side panels: titled cards, key-value lists, the files a Migrator discovered."""

from __future__ import annotations

from typing import Any

import reflex as rx


def section(title: str, *children: rx.Component, **props: Any) -> rx.Component:
    """A titled card of the candidate page."""
    return rx.card(
        rx.vstack(rx.heading(title, size="3", as_="h2"), *children, spacing="3", width="100%"), width="100%", **props
    )


def key_values(pairs: Any, code: bool = False) -> rx.Component:
    """A MetaPair list var as a data list; `code` sets the values in monospace."""
    return rx.data_list.root(
        rx.foreach(
            pairs,
            lambda m: rx.data_list.item(
                rx.data_list.label(m.key), rx.data_list.value(rx.code(m.value) if code else m.value)
            ),
        ),
        size="1",
    )


def _file(f: Any) -> rx.Component:
    return rx.cond(
        f.url != "",
        rx.link(f.path, href=f.url, is_external=True, size="1", padding_left="20px"),
        rx.text(f.path, size="1", padding_left="20px"),
    )


def _file_group(g: Any) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.icon("folder-git-2", size=14, aria_hidden="true"),
            rx.text(g.name, weight="medium", size="2"),
            rx.cond(g.repo != "", rx.code(g.repo, size="1")),
            align="center",
            spacing="2",
            wrap="wrap",
        ),
        rx.foreach(g.files, _file),
        spacing="1",
    )


def file_list(groups: Any, empty_text: str) -> rx.Component:
    """A FileGroupView list var, one group per repository; `empty_text` when there is none."""
    return rx.cond(
        groups.length() > 0,
        rx.vstack(rx.foreach(groups, _file_group), spacing="3"),
        rx.text(empty_text, size="2", color=rx.color("gray", 11)),
    )
