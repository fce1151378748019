"""Reflex's npm registry probe (issue 17, item 13): rxconfig.py names the registry, so `make run` probes none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import rxconfig
from reflex.utils import net, registry
def refuse(*args, **kwargs):
    raise AssertionError("probed " + str(args))
net.get = refuse
print(registry.get_npm_registry())
"""


def test_reflex_uses_the_npm_registry_rxconfig_names_without_probing_the_mirror() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NPM_CONFIG_REGISTRY"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "https://registry.npmjs.org"
    assert "npmmirror" not in done.stdout + done.stderr
