"""`loom up` finds what Reflex needs by itself, so a deployment runs the `loom` command without `make`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loom_backend.cli import BoardSetupError, board_env
from tests.harness import ROOT, clean_env


def test_the_project_local_bun_is_used_when_reflex_bun_path_is_unset(tmp_path: Path) -> None:
    bun = tmp_path / "bun.exe"
    bun.write_text("")
    env = board_env({"PATH": ""}, local_bun=bun)
    assert env["REFLEX_BUN_PATH"] == str(bun)
    assert env["REFLEX_TELEMETRY_ENABLED"] == "false"


def test_a_reflex_bun_path_that_is_set_wins(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.write_text("")
    env = board_env({"REFLEX_BUN_PATH": str(mine), "REFLEX_TELEMETRY_ENABLED": "true"}, local_bun=tmp_path / "x")
    assert env["REFLEX_BUN_PATH"] == str(mine)
    assert env["REFLEX_TELEMETRY_ENABLED"] == "true"


def test_without_any_bun_the_error_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(BoardSetupError, match="set REFLEX_BUN_PATH"):
        board_env({"PATH": str(tmp_path)}, local_bun=tmp_path / "missing")


def test_loom_up_in_a_clean_environment_names_a_wrong_bun_path_and_exits(tmp_path: Path) -> None:
    env = {k: v for k, v in clean_env(LOOM_DATA_DIR=str(tmp_path)).items() if not k.startswith("REFLEX_")}
    env.update(PYTHONPATH=str(ROOT), REFLEX_BUN_PATH=str(tmp_path / "no-bun"))
    result = subprocess.run(
        [sys.executable, "-m", "loom_backend.cli", "up"], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert b"REFLEX_BUN_PATH=" in result.stderr and b"is not a file" in result.stderr
