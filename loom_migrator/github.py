"""A code-host helper for GitHub: a Step's pull request, opened or updated from a branch, reported while it waits.

    github = GitHub(token=os.environ["GITHUB_TOKEN"], webhook_secret=os.environ.get("GITHUB_WEBHOOK_SECRET"))
    github.install(migrator)  # POST /github/webhook: GitHub tells of merges, checks and reviews

    @migrator.step("bump-image")
    async def bump(ctx: StepContext) -> None:
        ...  # push the change to branch f"loom/{ctx.candidate.id}"
        await github.pull_request(ctx, "acme/checkout", head=f"loom/{ctx.candidate.id}", base="main", title="...")

While the pull request is open the Step is `open`, its metadata `prUrl`, `prNumber`, `checks`
(none|pending|success|failure), `review` (none|pending|approved|changes_requested) and `mergeable`
(true|false|unknown), reported again whenever one changes; merged, the Step is `merged`; closed unmerged, `failed`.
A verified webhook (X-Hub-Signature-256) wakes the wait at once; without one it polls every `poll_seconds`.

A thin client of GitHub's REST API over httpx, which the SDK already has: the `github` extra adds nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from loom_migrator.context import StepContext
from loom_migrator.migrator import StepFailed

if TYPE_CHECKING:
    from loom_migrator.migrator import Migrator

log = logging.getLogger("loom_migrator.github")

API_URL = "https://api.github.com"
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
WEBHOOK_PATH = "/github/webhook"


class GitHubError(Exception):
    """GitHub refused a call or could not be reached; the message says which and why."""


class WebhookRejected(Exception):
    """A webhook delivery that GitHub did not sign with this secret."""


@dataclass(frozen=True)
class PullRequest:
    repo: str  # "owner/name"
    number: int
    url: str  # the page a person opens
    head_sha: str
    state: str  # open | closed
    merged: bool
    mergeable: bool | None  # None while GitHub is still computing it
    merge_commit_sha: str | None = None

    @classmethod
    def of(cls, repo: str, data: dict[str, Any]) -> PullRequest:
        return cls(
            repo=repo,
            number=int(data["number"]),
            url=str(data["html_url"]),
            head_sha=str(data["head"]["sha"]),
            state=str(data["state"]),
            merged=bool(data.get("merged") or data.get("merged_at")),
            mergeable=data.get("mergeable"),
            merge_commit_sha=data.get("merge_commit_sha"),
        )


@dataclass(frozen=True)
class PullRequestStatus:
    """A pull request with the state of its checks and reviews: what the Step shows while it waits."""

    pr: PullRequest
    checks: str
    review: str

    def metadata(self) -> dict[str, str]:
        mergeable = "unknown" if self.pr.mergeable is None else str(self.pr.mergeable).lower()
        return {
            "prUrl": self.pr.url,
            "prNumber": str(self.pr.number),
            "checks": self.checks,
            "review": self.review,
            "mergeable": mergeable,
        }


def webhook_signature(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends with a delivery of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_webhook(secret: str, body: bytes, signature: str | None) -> None:
    """Raise WebhookRejected unless `signature` is GitHub's for this body and secret (compared in constant time)."""
    if not signature:
        raise WebhookRejected(f"the delivery has no {SIGNATURE_HEADER} header")
    if not hmac.compare_digest(signature.encode(), webhook_signature(secret, body).encode()):
        raise WebhookRejected(f"{SIGNATURE_HEADER} does not match: not signed with this webhook secret")


def checks_summary(check_runs: list[dict[str, Any]]) -> str:
    """none, pending (any not completed), failure (any completed unsuccessfully) or success."""
    if not check_runs:
        return "none"
    if any(run.get("status") != "completed" for run in check_runs):
        return "pending"
    passed = {"success", "neutral", "skipped"}
    return "success" if all(run.get("conclusion") in passed for run in check_runs) else "failure"


def review_summary(reviews: list[dict[str, Any]]) -> str:
    """Each reviewer's latest verdict counts: changes_requested wins, then approved; pending when only comments."""
    latest: dict[str, str] = {}
    for review in reviews:
        state = str(review.get("state", "")).lower()
        if state in ("approved", "changes_requested", "dismissed"):
            latest[str((review.get("user") or {}).get("login", ""))] = state
    verdicts = set(latest.values())
    if "changes_requested" in verdicts:
        return "changes_requested"
    if "approved" in verdicts:
        return "approved"
    return "pending" if reviews else "none"


class GitHub:
    """Pull requests for Steps on GitHub (or GitHub Enterprise: `api_url`), and the webhook that tells of them."""

    def __init__(
        self,
        token: str | None = None,
        *,
        api_url: str = API_URL,
        webhook_secret: str | None = None,
        poll_seconds: float = 60.0,
        timeout_seconds: float = 30.0,
    ) -> None:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout_seconds)
        self.webhook_secret = webhook_secret
        self.poll_seconds = poll_seconds
        self._wakeups: dict[tuple[str, int], asyncio.Event] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub could not be reached for {method} {path}: {exc!r}") from exc
        if not response.is_success:
            raise GitHubError(f"GitHub answered {response.status_code} to {method} {path}: {response.text[:300]}")
        return response.json()

    # ---- pull requests -----------------------------------------------------------------------

    async def open_or_update(self, repo: str, *, head: str, base: str, title: str, body: str = "") -> PullRequest:
        """The open pull request from `head` into `base`, with this title and body: opened, or updated when one is
        already open (a retried Step does not open a second)."""
        owner = repo.split("/", 1)[0]
        existing = await self._call("GET", f"/repos/{repo}/pulls", params={"head": f"{owner}:{head}", "state": "open"})
        if existing:
            number = existing[0]["number"]
            data = await self._call("PATCH", f"/repos/{repo}/pulls/{number}", json={"title": title, "body": body})
        else:
            fields = {"title": title, "head": head, "base": base, "body": body}
            data = await self._call("POST", f"/repos/{repo}/pulls", json=fields)
        return PullRequest.of(repo, data)

    async def status(self, repo: str, number: int) -> PullRequestStatus:
        pr = PullRequest.of(repo, await self._call("GET", f"/repos/{repo}/pulls/{number}"))
        runs = await self._call("GET", f"/repos/{repo}/commits/{pr.head_sha}/check-runs")
        reviews = await self._call("GET", f"/repos/{repo}/pulls/{number}/reviews")
        return PullRequestStatus(pr, checks_summary(runs.get("check_runs", [])), review_summary(reviews))

    async def until_merged(self, ctx: StepContext, pr: PullRequest) -> dict[str, str]:
        """Report the pull request's state to Loom (`open`, with its metadata) whenever it changes, until it merges;
        the metadata to report `merged` with. A pull request closed unmerged fails the Step."""
        reported: dict[str, str] = {"prUrl": pr.url}
        wakeup = self._wakeups.setdefault((pr.repo, pr.number), asyncio.Event())
        try:
            while True:
                wakeup.clear()
                try:
                    status = await self.status(pr.repo, pr.number)
                except GitHubError as exc:  # GitHub down for a while must not fail a Step that waits for days
                    log.warning("Reading %s failed, trying again in %s s: %s", pr.url, self.poll_seconds, exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), self.poll_seconds)
                    continue
                if status.pr.merged:
                    return {**status.metadata(), "mergeCommit": status.pr.merge_commit_sha or ""}
                if status.pr.state == "closed":
                    raise StepFailed(f"The pull request {status.pr.url} was closed without being merged")
                if status.metadata() != reported:
                    reported = status.metadata()
                    await ctx.open(status.pr.url, reported)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self.poll_seconds)
        finally:
            self._wakeups.pop((pr.repo, pr.number), None)

    async def pull_request(
        self, ctx: StepContext, repo: str, *, head: str, base: str, title: str, body: str = ""
    ) -> PullRequest:
        """The whole Step: open or update the pull request, report it while it waits, report `merged` once merged."""
        pr = await self.open_or_update(repo, head=head, base=base, title=title, body=body)
        await ctx.pull_request(pr.url, lambda: self.until_merged(ctx, pr), {"prNumber": str(pr.number)})
        return pr

    # ---- the webhook -------------------------------------------------------------------------

    def install(self, migrator: Migrator, path: str = WEBHOOK_PATH) -> None:
        """Serve GitHub's webhook on the Migrator's app (point the repository's webhook at `{migratorUrl}{path}`)."""
        if not self.webhook_secret:
            log.warning("No webhook secret: %s stays off and every open pull request is polled", path)
            return
        migrator.app.add_api_route(path, self.webhook, methods=["POST"], include_in_schema=False)

    async def webhook(self, request: Request) -> JSONResponse:
        """A verified delivery about a pull request, its checks or its reviews wakes the Steps that wait on it."""
        body = await request.body()
        try:
            verify_webhook(self.webhook_secret or "", body, request.headers.get(SIGNATURE_HEADER))
        except WebhookRejected as exc:
            log.warning("Refused a GitHub webhook delivery: %s", exc)
            return JSONResponse({"error": "unauthorized", "message": str(exc)}, status_code=401)
        woken = self.wake(request.headers.get(EVENT_HEADER, ""), json.loads(body or b"{}"))
        return JSONResponse({"status": "accepted", "woken": woken}, status_code=202)

    def wake(self, event: str, payload: dict[str, Any]) -> int:
        """Wake the waits on the pull requests a delivery names; how many were waiting."""
        repo = str((payload.get("repository") or {}).get("full_name", ""))
        numbers: list[int] = []
        if event in ("pull_request", "pull_request_review") and "pull_request" in payload:
            numbers.append(int(payload["pull_request"]["number"]))
        elif event in ("check_run", "check_suite"):
            numbers.extend(int(pr["number"]) for pr in (payload.get(event) or {}).get("pull_requests", []))
        woken = 0
        for number in numbers:
            wakeup = self._wakeups.get((repo, number))
            if wakeup is not None:
                wakeup.set()
                woken += 1
        return woken
