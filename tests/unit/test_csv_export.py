"""Cells of Loom's CSV exports open as text in a spreadsheet, never as formulas."""

import pytest

from loom_backend.api.csv_export import safe_cell


@pytest.mark.parametrize("value", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_a_cell_that_would_start_a_formula_gets_an_apostrophe(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["", "checkout", "2026-11-01T09:00:00+00:00", "a=b", "run_started", "'quoted"])
def test_an_ordinary_cell_is_left_alone(value: str) -> None:
    assert safe_cell(value) == value
