"""Rows more than one page shows: a metadata pair and an input an operator fills in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from loom_backend.domain import MAX_INPUT_LENGTH, InputDefinition, text_refusal

INPUT_LIMIT_TEXT = f"At most {MAX_INPUT_LENGTH:,} characters."


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
    error: str = ""


def input_fields(required: Iterable[InputDefinition], *values: Mapping[str, str]) -> list[InputField]:
    """The Migration's required inputs, each filled from the first of `values` that has it."""
    return [
        InputField(i.name, i.label, i.description or "", next((v[i.name] for v in values if v.get(i.name)), ""))
        for i in required
    ]


def with_value(fields: Iterable[InputField], name: str, value: str) -> list[InputField]:
    """The fields again, with one of them changed and checked as the service will check it: Reflex sees a new list."""
    return [
        replace(i, value=value, error=text_refusal(i.label, value, MAX_INPUT_LENGTH) or "") if i.name == name else i
        for i in fields
    ]


def with_error(fields: Iterable[InputField], field: str | None, message: str) -> list[InputField] | None:
    """The fields with the service's refusal shown on the one it names (`inputs.<name>`); None when it names none."""
    name = (field or "").removeprefix("inputs.")
    fields = list(fields)
    if not any(i.name == name for i in fields):
        return None
    return [replace(i, error=message) if i.name == name else i for i in fields]


def has_errors(fields: Iterable[InputField]) -> bool:
    return any(i.error for i in fields)


def entered(fields: Iterable[InputField]) -> dict[str, str]:
    """The values an operator typed, trimmed; empty ones are left out so saved inputs and metadata apply."""
    return {i.name: i.value.strip() for i in fields if i.value.strip()}
