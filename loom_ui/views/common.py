"""Rows more than one page shows: a metadata pair and an input an operator fills in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loom_backend.domain import InputDefinition


@dataclass
class MetaPair:
    key: str
    value: str


@dataclass
class InputField:
    name: str = ""
    label: str = ""
    description: str = ""
    value: str = ""


def input_fields(required: Iterable[InputDefinition], *values: Mapping[str, str]) -> list[InputField]:
    """The Migration's required inputs, each filled from the first of `values` that has it."""
    return [
        InputField(i.name, i.label, i.description or "", next((v[i.name] for v in values if v.get(i.name)), ""))
        for i in required
    ]


def with_value(fields: Iterable[InputField], name: str, value: str) -> list[InputField]:
    """The fields again, with one of them changed: Reflex sees a new list."""
    return [InputField(i.name, i.label, i.description, value if i.name == name else i.value) for i in fields]


def entered(fields: Iterable[InputField]) -> dict[str, str]:
    """The values an operator typed, trimmed; empty ones are left out so saved inputs and metadata apply."""
    return {i.name: i.value.strip() for i in fields if i.value.strip()}
