"""The SDK's GitHub helper against a fake GitHub that is a real HTTP server the test starts (nothing leaves the host)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from loom_migrator import Backoff, Candidate, Migrator, StepContext, StepStatus, StepStatusEvent, ThreadedServer
from loom_migrator.github import GitHub, GitHubError, review_summary, verify_webhook, webhook_signature
from loom_migrator.testing import FakeLoom

TOKEN = "loom_m_" + "github-helper-token" * 2
GITHUB_TOKEN = "ghp_" + "fake" * 9
SECRET = "webhook-secret"
REPO = "acme/checkout"
CHECKOUT = Candidate(id="checkout", kind="service")
FAST = Backoff(initial=0.01, factor=2, max_delay=0.05)


class FakeGitHub:
    """The few REST routes the helper calls, over pull requests kept in memory; refuses calls without the token."""

    def __init__(self) -> None:
        self.pulls: dict[int, dict[str, Any]] = {}
        self.check_runs: list[dict[str, Any]] = []
        self.reviews: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.failures = 0  # how many more reads of a pull request answer 502
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadedServer(self.app())

    @property
    def url(self) -> str:
        return self.server.url

    def app(self) -> Starlette:
        async def pulls(request: Request) -> JSONResponse:
            if (refusal := self._refuse(request)) is not None:
                return refusal
            if request.method == "GET":
                head = request.query_params["head"].split(":", 1)[1]
                found = [p for p in self.pulls.values() if p["head"]["ref"] == head and p["state"] == "open"]
                return JSONResponse(found)
            fields = await request.json()
            with self._lock:
                number = next(self._numbers)
                self.pulls[number] = {
                    "number": number,
                    "html_url": f"https://github.example/{REPO}/pull/{number}",
                    "head": {"ref": fields["head"], "sha": f"sha-{number}"},
                    "base": {"ref": fields["base"]},
                    "title": fields["title"],
                    "body": fields["body"],
                    "state": "open",
                    "merged": False,
                    "mergeable": None,
                    "merge_commit_sha": None,
                }
            return JSONResponse(self.pulls[number], status_code=201)

        async def pull(request: Request) -> JSONResponse:
            if (refusal := self._refuse(request)) is not None:
                return refusal
            if request.method == "GET" and self.failures > 0:
                self.failures -= 1
                return JSONResponse({"message": "Bad Gateway"}, status_code=502)
            found = self.pulls.get(int(request.path_params["number"]))
            if found is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            if request.method == "PATCH":
                found.update(await request.json())
            return JSONResponse(found)

        async def check_runs(request: Request) -> JSONResponse:
            return JSONResponse({"total_count": len(self.check_runs), "check_runs": self.check_runs})

        async def reviews(request: Request) -> JSONResponse:
            return JSONResponse(self.reviews)

        prefix = "/repos/{owner}/{name}"
        return Starlette(
            routes=[
                Route(f"{prefix}/pulls", pulls, methods=["GET", "POST"]),
                Route(f"{prefix}/pulls/{{number:int}}", pull, methods=["GET", "PATCH"]),
                Route(f"{prefix}/pulls/{{number:int}}/reviews", reviews),
                Route(f"{prefix}/commits/{{sha}}/check-runs", check_runs),
            ]
        )

    def _refuse(self, request: Request) -> JSONResponse | None:
        self.calls.append(f"{request.method} {request.url.path}")
        if request.headers.get("authorization") != f"Bearer {GITHUB_TOKEN}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return None

    def merge(self, number: int) -> None:
        self.pulls[number].update(state="closed", merged=True, mergeable=None, merge_commit_sha="c0ffee")


@pytest.fixture
def github_server() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    with fake.server:
        yield fake


@pytest.fixture
def loom() -> Iterator[FakeLoom]:
    with FakeLoom(token=TOKEN) as fake:
        yield fake


def migrator_with_a_pr_step(loom: FakeLoom, github: GitHub) -> Migrator:
    migrator = Migrator(
        "bump-image", "Bump image", "Bumps the image.", loom_url=loom.url, token=TOKEN, callback_backoff=FAST
    )
    github.install(migrator)

    @migrator.step("bump")
    async def bump(ctx: StepContext) -> None:
        await github.pull_request(ctx, REPO, head=f"loom/{ctx.candidate.id}", base="main", title="Bump the image")

    return migrator


def deliver(migrator: Migrator, event: str, payload: dict[str, Any], secret: str = SECRET) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-Hub-Signature-256": webhook_signature(secret, body)}
    return httpx.post(f"{migrator.migrator_url}/github/webhook", content=body, headers=headers)


def event_where(loom: FakeLoom, status: StepStatus, **metadata: str) -> StepStatusEvent:
    def probe() -> StepStatusEvent | None:
        return next(
            (
                e
                for e in loom.events_for("checkout", "bump")
                if e.status == status and all(e.metadata.get(k) == v for k, v in metadata.items())
            ),
            None,
        )

    return loom.wait_for(probe, 10, f"{status.value} with {metadata}")


def test_a_step_opens_a_pr_reports_checks_and_review_and_learns_of_the_merge_from_the_webhook(
    loom: FakeLoom, github_server: FakeGitHub
) -> None:
    """poll_seconds is an hour: every change after the first look comes from a verified webhook delivery."""
    github = GitHub(GITHUB_TOKEN, api_url=github_server.url, webhook_secret=SECRET, poll_seconds=3600)
    migrator = migrator_with_a_pr_step(loom, github)
    pr_url = f"https://github.example/{REPO}/pull/1"
    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        opened = event_where(loom, StepStatus.OPEN, checks="none", review="none")
        assert opened.metadata == {
            "prUrl": pr_url,
            "prNumber": "1",
            "checks": "none",
            "review": "none",
            "mergeable": "unknown",
        }

        github_server.check_runs.append({"status": "completed", "conclusion": "success"})
        github_server.reviews.append({"user": {"login": "ana"}, "state": "APPROVED"})
        github_server.pulls[1]["mergeable"] = True
        review = {"repository": {"full_name": REPO}, "pull_request": {"number": 1}, "action": "submitted"}
        assert deliver(migrator, "pull_request_review", review).status_code == 202
        event_where(loom, StepStatus.OPEN, checks="success", review="approved", mergeable="true")

        forged = deliver(migrator, "pull_request", review, secret="not-the-secret")
        assert forged.status_code == 401

        github_server.merge(1)
        closed = {"repository": {"full_name": REPO}, "pull_request": {"number": 1}, "action": "closed"}
        assert deliver(migrator, "pull_request", closed).json() == {"status": "accepted", "woken": 1}
        merged = event_where(loom, StepStatus.MERGED)
    assert (merged.metadata["prUrl"], merged.metadata["mergeCommit"]) == (pr_url, "c0ffee")
    assert [e.status for e in loom.events_for("checkout")] == [StepStatus.OPEN] * 3 + [StepStatus.MERGED]
    assert github_server.calls.count(f"POST /repos/{REPO}/pulls") == 1


def test_without_a_webhook_the_helper_polls_and_a_pr_closed_unmerged_fails_the_step(
    loom: FakeLoom, github_server: FakeGitHub
) -> None:
    github = GitHub(GITHUB_TOKEN, api_url=github_server.url, poll_seconds=0.05)
    migrator = migrator_with_a_pr_step(loom, github)
    with migrator.serve_in_thread():
        assert httpx.post(f"{migrator.migrator_url}/github/webhook", content=b"{}").status_code == 404
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        event_where(loom, StepStatus.OPEN, checks="none")
        github_server.pulls[1]["state"] = "closed"
        failed = event_where(loom, StepStatus.FAILED)
    assert (
        failed.metadata["error"]
        == f"The pull request https://github.example/{REPO}/pull/1 was closed without being merged"
    )


def test_github_failing_for_a_while_does_not_fail_a_waiting_step(loom: FakeLoom, github_server: FakeGitHub) -> None:
    github = GitHub(GITHUB_TOKEN, api_url=github_server.url, poll_seconds=0.05)
    migrator = migrator_with_a_pr_step(loom, github)
    with migrator.serve_in_thread():
        loom.dispatch(migrator.migrator_url, migrator.id, migrator.steps[0], CHECKOUT)
        event_where(loom, StepStatus.OPEN, checks="none")
        github_server.failures = 3
        github_server.merge(1)
        merged = event_where(loom, StepStatus.MERGED)
    assert merged.metadata["mergeCommit"] == "c0ffee"
    assert github_server.failures == 0
    assert StepStatus.FAILED not in [e.status for e in loom.events_for("checkout")]


def test_opening_a_pr_for_a_branch_that_has_one_updates_it_instead_of_opening_another(
    github_server: FakeGitHub,
) -> None:
    async def open_twice() -> tuple[int, int]:
        github = GitHub(GITHUB_TOKEN, api_url=github_server.url)
        try:
            first = await github.open_or_update(REPO, head="loom/checkout", base="main", title="Bump")
            again = await github.open_or_update(REPO, head="loom/checkout", base="main", title="Bump, again")
            return first.number, again.number
        finally:
            await github.aclose()

    assert asyncio.run(open_twice()) == (1, 1)
    assert github_server.pulls[1]["title"] == "Bump, again"
    assert len(github_server.pulls) == 1


def test_github_refusing_a_call_says_what_it_answered(github_server: FakeGitHub) -> None:
    async def status_without_a_token() -> None:
        github = GitHub(None, api_url=github_server.url)
        try:
            await github.status(REPO, 1)
        finally:
            await github.aclose()

    with pytest.raises(GitHubError, match="GitHub answered 401 to GET /repos/acme/checkout/pulls/1"):
        asyncio.run(status_without_a_token())


def test_a_webhook_signature_is_githubs_hmac_sha256_of_the_body() -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    signature = webhook_signature(SECRET, body)
    verify_webhook(SECRET, body, signature)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    for wrong in (None, "", webhook_signature("other", body), signature[:-1] + "0"):
        with pytest.raises(Exception, match="X-Hub-Signature-256"):
            verify_webhook(SECRET, body, wrong)


def test_each_reviewers_latest_verdict_counts() -> None:
    ana, bob = {"login": "ana"}, {"login": "bob"}
    assert review_summary([]) == "none"
    assert review_summary([{"user": ana, "state": "COMMENTED"}]) == "pending"
    assert review_summary([{"user": ana, "state": "CHANGES_REQUESTED"}, {"user": ana, "state": "APPROVED"}]) == (
        "approved"
    )
    assert review_summary([{"user": ana, "state": "APPROVED"}, {"user": bob, "state": "CHANGES_REQUESTED"}]) == (
        "changes_requested"
    )
