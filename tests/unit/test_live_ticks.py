"""Live pages reload on the process's one clock, so tabs woken apart still reload together and share their reads."""

from __future__ import annotations

from loom_ui.state import _tick

EVERY = 0.25


def test_pages_reloading_within_one_interval_share_its_start() -> None:
    assert _tick(100.0, EVERY) == _tick(100.1, EVERY) == _tick(100.2, EVERY) == 100.0
    assert _tick(100.25, EVERY) == _tick(100.4, EVERY) == 100.25


def test_the_first_change_after_a_quiet_spell_reloads_at_once_and_the_next_waits_for_the_next_interval() -> None:
    last_reload = 100.05
    assert last_reload < _tick(103.1, EVERY)  # a change after a quiet spell: at once
    assert not last_reload < _tick(100.2, EVERY)  # another in the same interval waits ...
    assert last_reload < _tick(100.25, EVERY)  # ... until the next one starts
