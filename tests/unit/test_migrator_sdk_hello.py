"""The hello Migrator from docs/write-a-migrator.md runs as documented, against a fake Loom."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from loom_migrator import FileDiffStatus, StepStatus
from loom_migrator.testing import FakeLoom

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def loom() -> Iterator[FakeLoom]:
    with FakeLoom() as fake:
        yield fake


@pytest.fixture
def hello(loom: FakeLoom, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("LOOM_URL", loom.url)
    monkeypatch.setenv("LOOM_TOKEN", loom.token)
    import examples.hello_migrator

    return importlib.reload(examples.hello_migrator)


@pytest.mark.parametrize("page", ["docs/write-a-migrator.md", "README.md"])
def test_the_docs_include_the_hello_migrator_verbatim_in_under_40_lines(page: str) -> None:
    source = (REPO_ROOT / "examples" / "hello_migrator.py").read_text()
    docs = (REPO_ROOT / page).read_text()
    included = docs.split("<!-- hello-migrator:start -->\n```python\n", 1)[1].split("```\n<!-- hello-migrator:end -->")[
        0
    ]
    assert included == source
    assert len(source.splitlines()) < 40


def test_the_hello_migrator_announces_its_candidates_then_greets_a_readme_through_a_pull_request(
    hello: ModuleType, loom: FakeLoom
) -> None:
    migrator = hello.migrator
    with migrator.serve_in_thread():
        announcement = loom.wait_for_announcement()
        assert [c.id for c in announcement.candidates] == ["checkout", "billing", "search"]
        assert [s.name for s in announcement.steps] == ["add-greeting", "check-readme"]
        add_greeting, check_readme = announcement.steps
        checkout = announcement.candidates[0]

        loom.dispatch(migrator.migrator_url, migrator.id, add_greeting, checkout, {"greeting": "Hello"})
        merged = loom.wait_for_event("add-greeting", StepStatus.MERGED, "checkout")
        loom.dispatch(migrator.migrator_url, migrator.id, check_readme, checkout, {"greeting": "Hello"})
        review = loom.wait_for_event("check-readme", StepStatus.AWAITING_REVIEW, "checkout")

    assert [e.status for e in loom.events_for("checkout", "add-greeting")] == [StepStatus.OPEN, StepStatus.MERGED]
    assert merged.metadata["prUrl"] == "https://git.example/checkout/pull/1"
    assert hello.READMES["checkout"] == "# checkout\n\nHello!\n"
    assert review.metadata["instructions"] == "Read the README of checkout: does it say Hello? Then Approve."


def test_the_hello_migrator_previews_the_readme_change_without_making_it(hello: ModuleType, loom: FakeLoom) -> None:
    migrator = hello.migrator
    with migrator.serve_in_thread():
        announcement = loom.wait_for_announcement()
        result = loom.dry_run(
            migrator.migrator_url, migrator.id, announcement.candidates[1], announcement.steps, {"greeting": "Hi"}
        )
    [readme] = result.steps[0].files
    assert (readme.path, readme.repo, readme.status) == ("README.md", "billing", FileDiffStatus.MODIFIED)
    assert (readme.before, readme.after) == ("# billing\n", "# billing\n\nHi!\n")
    assert hello.READMES["billing"] == "# billing\n"
    assert result.steps[1].files == []
