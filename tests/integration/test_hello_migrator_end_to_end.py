"""The README's "Write a Migrator" example, examples/hello_migrator.py as written, against the real Loom app."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loom_backend.execution.dev_server import free_port
from tests.harness import ROOT, LiveLoom, clean_env, eventually, step_result, step_status

MIGRATION = "hello"
RUNS = f"/api/migrations/{MIGRATION}/candidates"
# The module's own code, unmodified; only its `__main__` line's fixed port 8060 is swapped for a free one, so
# parallel test runs cannot collide. LOOM_URL and MIGRATOR_URL are the variables the docs tell users to set.
SERVE = (
    "import sys; from examples.hello_migrator import migrator; migrator.run(port=int(sys.argv[1]), host='127.0.0.1')"
)


@pytest.fixture
async def loom(temporal_address: str, tmp_path: Path) -> AsyncIterator[LiveLoom]:
    async with LiveLoom(temporal_address, tmp_path / "loom") as app:
        yield app


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the SDK installed (`pip install ./loom_migrator`), once per test session.

    Built from a copy of the SDK's folder, so the build leaves nothing in the checkout.
    """
    where = tmp_path_factory.mktemp("sdk-venv")
    source = shutil.copytree(ROOT / "loom_migrator", where / "src" / "loom_migrator", ignore=IGNORED)
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    python = where / "venv" / "bin" / "python"
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source)], env=env, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


IGNORED = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")


def sdk_env(**overrides: str) -> dict[str, str]:
    """The environment of a process in the SDK's virtualenv: nothing of this checkout on its path."""
    env = clean_env(**overrides)
    env.pop("PYTHONPATH", None)
    return env


def test_the_sdk_installs_alone_without_reflex_temporal_or_sqlalchemy(sdk_python: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, json; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in "
        "['loom_migrator', 'loom_migrator.github', 'reflex', 'temporalio', 'sqlalchemy', 'sqlmodel', 'loom_backend']}))"
    )
    found = subprocess.run(
        [str(sdk_python), "-c", probe], cwd=tmp_path, env=sdk_env(), capture_output=True, text=True, check=True
    )
    assert json.loads(found.stdout) == {
        "loom_migrator": True,
        "loom_migrator.github": True,
        "reflex": False,
        "temporalio": False,
        "sqlalchemy": False,
        "sqlmodel": False,
        "loom_backend": False,
    }
    listed = subprocess.run(
        [str(sdk_python), "-m", "pip", "list", "--format=json"], env=sdk_env(), capture_output=True, text=True
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "loom-migrator" in names
    assert not names & {"reflex", "temporalio", "sqlalchemy", "sqlmodel", "alembic", "loom"}


# The same example, run by the shared virtualenv from the checkout, and by the SDK's own virtualenv from
# the examples folder alone (so `loom_backend` could not be imported even by accident).
RUNNERS = ["checkout", "sdk-only"]


@pytest.fixture(params=RUNNERS)
def hello_migrator(request: pytest.FixtureRequest, loom: LiveLoom, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    settings = dict(
        LOOM_URL=loom.url, MIGRATOR_URL=f"http://127.0.0.1:{port}", LOOM_TOKEN=loom.credentials.migrator_token
    )
    if request.param == "checkout":
        command, cwd, env = [sys.executable, "-c", SERVE, str(port)], ROOT, clean_env(**settings)
    else:
        python = request.getfixturevalue("sdk_python")
        serve = SERVE.replace(
            "from examples.hello_migrator", f"sys.path.insert(0, {str(ROOT / 'examples')!r}); from hello_migrator"
        )
        command, cwd, env = [str(python), "-c", serve, str(port)], tmp_path, sdk_env(**settings)
    with open(tmp_path / "hello-migrator.log", "wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def test_the_hello_migrator_from_the_docs_announces_and_runs_a_candidate_to_completed_on_a_real_loom(
    loom: LiveLoom, hello_migrator: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=loom.url, timeout=15, auth=loom.credentials.auth) as api:

        async def migration() -> httpx.Response:
            assert hello_migrator.poll() is None, (tmp_path / "hello-migrator.log").read_text()
            return await api.get(f"/api/migrations/{MIGRATION}")

        announced = (
            await eventually(migration, 30, "the hello Migrator announces", until=lambda r: r.status_code == 200)
        ).json()
        assert [(s["name"], s.get("type")) for s in announced["steps"]] == [
            ("add-greeting", None),
            ("check-readme", "manual-review"),
        ]
        assert [(i["name"], i["label"]) for i in announced["requiredInputs"]] == [("greeting", "Greeting")]
        assert sorted(c["id"] for c in announced["candidates"]) == ["billing", "checkout", "search"]

        async def preview() -> dict[str, Any]:
            response = await api.post(
                f"/api/migrations/{MIGRATION}/dry-run", json={"candidateId": "billing", "inputs": {"greeting": "Hello"}}
            )
            assert response.status_code == 200, response.text
            return next(s for s in response.json()["steps"] if s["stepName"] == "add-greeting")["files"][0]

        before = await preview()
        assert (before["path"], before["before"], before["after"]) == (
            "README.md",
            "# billing\n",
            "# billing\n\nHello!\n",
        )

        refused = await api.post(f"{RUNS}/billing/start", json={"inputs": {}})
        assert refused.status_code == 400 and "greeting" in refused.text, "the required input is enforced"
        started = await api.post(f"{RUNS}/billing/start", json={"inputs": {"greeting": "Hello"}})
        assert started.status_code == 202, started.text

        async def steps() -> dict[str, Any]:
            response = await api.get(f"{RUNS}/billing/steps")
            assert response.status_code == 200, response.text
            return response.json()

        merged = await eventually(
            steps, 30, "add-greeting merges", until=lambda s: step_status(s, "add-greeting") == "merged"
        )
        greeting = step_result(merged, "add-greeting")
        assert (greeting.get("prUrl") or greeting["metadata"]["prUrl"]) == "https://git.example/billing/pull/1"

        review = await eventually(
            steps,
            30,
            "check-readme waits for a review",
            until=lambda s: step_status(s, "check-readme") == "awaiting_review",
        )
        instructions = step_result(review, "check-readme")["metadata"]["instructions"]
        assert instructions == "Read the README of billing: does it say Hello? Then Approve."
        approved = await api.post(f"{RUNS}/billing/steps/check-readme/approve")
        assert approved.status_code == 202, approved.text

        done = await eventually(steps, 30, "the Run completes", until=lambda s: s["status"] == "completed")
        assert {s["stepName"]: s["status"] for s in done["steps"]} == {
            "add-greeting": "merged",
            "check-readme": "completed",
        }
        others = (await api.get(RUNS, params={"status": "not_started"})).json()
        assert sorted(c["id"] for c in others) == ["checkout", "search"]

        after = await preview()
        assert after["before"] == "# billing\n\nHello!\n", (
            "the merge ran in the Migrator: the README now has the greeting"
        )
        events = (await api.get(f"/api/migrations/{MIGRATION}/events", params={"candidateId": "billing"})).json()
        approvals = [e for e in events["events"] if e["eventType"] == "review_approved"]
        assert [(e["stepName"], e["actor"]) for e in approvals] == [("check-readme", loom.credentials.operator)]
