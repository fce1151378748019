"""The demo Migrator: upgrade the base image of every sample service's Dockerfile, with real git commits."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import HTMLResponse, PlainTextResponse

from examples.demo_migrator import git, pages, repos
from examples.demo_migrator.changes import (
    BASE_IMAGE_REPOSITORY,
    LEGACY_PATHS,
    branch_for,
    bump_base_image,
    fails_first_attempt,
    update_ci_image,
)
from loom_migrator import Backoff, DryRunContext, FileDiff, Migrator, StepContext, StepFailed, file_diff
from loom_migrator.backoff import ANNOUNCE_BACKOFF, CALLBACK_BACKOFF
from loom_migrator.wire import Candidate, FileGroup, FileRef, InputDefinition

MIGRATION_ID = "upgrade-base-image"
APP_NAME = "demo-migrator"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def build_demo_migrator(
    *,
    port: int = 8050,
    loom_url: str = "http://localhost:3000",
    token: str | None = None,
    data_dir: str | Path = "data/demo",
    merge_delay: float = 5.0,
    public_url: str | None = None,
    announce_backoff: Backoff = ANNOUNCE_BACKOFF,
    callback_backoff: Backoff = CALLBACK_BACKOFF,
    rediscover_every: float | None = 300.0,
) -> Migrator:
    """Generate the sample repositories (once) and build the Migrator; start it with `.run(port)`.

    `port=0` suits tests: `.serve_in_thread()` then picks a free port, and URLs follow it.
    `public_url` is where Loom and browsers reach this Migrator (default http://localhost:{port}).
    `token` is its Loom token (default $LOOM_TOKEN, which `loom up` sets).
    """
    data = Path(data_dir)
    repos_dir = data / "repos"
    state_dir = data / "state"
    repos.generate(repos_dir)
    migrator = Migrator(
        MIGRATION_ID,
        "Upgrade the base image",
        "Move every service's Dockerfile to the new company base image, check it on staging, "
        "build CI on it too, and remove the legacy build files.",
        overview=[
            f"Each sample service builds FROM {BASE_IMAGE_REPOSITORY}:<tag>. The first Step opens a pull "
            "request that bumps the Dockerfile and merges it after a short delay.",
            "Someone then checks the staging deploy and approves the Step in Loom.",
            "CI is moved to the same image (about one service in five fails once here: use Retry), and "
            "legacy build files are deleted.",
            "Services without a CI file skip the CI Step; the repositories live under " + repos_dir.as_posix() + ".",
        ],
        inputs=[
            InputDefinition(
                name="targetImage",
                label="Target base image",
                description=f"The full image reference to build FROM, e.g. {BASE_IMAGE_REPOSITORY}:2024.10",
            )
        ],
        app_name=APP_NAME,
        loom_url=loom_url,
        token=token,
        migrator_url=public_url or (f"http://localhost:{port}" if port else None),
        announce_backoff=announce_backoff,
        callback_backoff=callback_backoff,
        rediscover_every=rediscover_every,
    )
    migrator.port = port or None
    locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def repo_of(candidate_id: str) -> Path:
        repo = repos_dir / candidate_id
        if not _NAME.match(candidate_id) or not (repo / ".git").is_dir():
            raise StepFailed(f"no repository for {candidate_id!r} under {repos_dir}")
        return repo

    def base_url() -> str:
        return migrator.migrator_url

    # ---- discovery ---------------------------------------------------------------------------

    @migrator.discover
    def discover() -> list[Candidate]:
        found = []
        for repo in sorted(p for p in repos_dir.iterdir() if (p / ".git").is_dir()):
            about = repos.read_service(repo)
            ci = repos.find_ci_file(repo)
            legacy = repos.find_legacy_files(repo)
            dockerfile = git.read(repo, "Dockerfile") or ""
            images = [line.split()[1] for line in dockerfile.splitlines() if line.upper().startswith("FROM ")]
            paths = ["Dockerfile", *([ci] if ci else []), *legacy]
            found.append(
                Candidate(
                    id=repo.name,
                    kind=about.get("kind", "service"),
                    metadata={
                        "team": about.get("team", "unknown"),
                        "language": about.get("language", "unknown"),
                        "currentImage": images[-1] if images else "",
                        "ciFile": ci or "",
                        "repoPath": repo.resolve().as_posix(),
                        "repoUrl": f"{base_url()}/repos/{repo.name}",
                    },
                    files=[
                        FileGroup(
                            name="build",
                            repo=repo.name,
                            files=[FileRef(path=p, url=f"{base_url()}/repos/{repo.name}/files/{p}") for p in paths],
                        )
                    ],
                    # Without a CI file there is nothing for `update-ci` to do: the Candidate's own plan skips it.
                    steps=None if ci else [s for s in migrator.steps if s.name != "update-ci"],
                )
            )
        return found

    # ---- the Steps, in order ---------------------------------------------------------------------

    @migrator.step(
        "bump-base-image",
        description="Open a pull request that points the Dockerfile's FROM line at the target image; merge it.",
        config={"file": "Dockerfile"},
    )
    async def bump(ctx: StepContext) -> None:
        target = ctx.require("targetImage")
        repo = repo_of(ctx.candidate.id)
        path = ctx.config.get("file", "Dockerfile")
        branch = branch_for(target)
        async with locks[ctx.candidate.id]:
            before = await asyncio.to_thread(git.read, repo, path)
            if before is None:
                raise StepFailed(f"{ctx.candidate.id} has no {path} on main")
            after = bump_base_image(before, target)
            if after == before:
                await ctx.completed({"note": f"{path} already builds FROM {target}"})
                return
            sha = await asyncio.to_thread(
                git.commit, repo, {path: after}, f"Bump base image to {target}\n\nOpened by Loom.", branch
            )

        async def until_merged() -> dict[str, str]:
            await asyncio.sleep(merge_delay)
            async with locks[ctx.candidate.id]:
                merge_sha = await asyncio.to_thread(git.merge, repo, branch, f"Merge branch '{branch}'")
            return {"mergeCommit": merge_sha}

        pr_url = f"{base_url()}/prs/{ctx.candidate.id}/{branch}"
        await ctx.pull_request(pr_url, until_merged, {"branch": branch, "commit": sha or ""})

    @migrator.dry_run("bump-base-image")
    def bump_preview(ctx: DryRunContext) -> list[FileDiff | None]:
        target = ctx.require("targetImage")
        path = ctx.config.get("file", "Dockerfile")
        before = git.read(repo_of(ctx.candidate.id), path)
        if before is None:
            raise StepFailed(f"{ctx.candidate.id} has no {path} on main")
        return [file_diff(path, before, bump_base_image(before, target), repo=ctx.candidate.id)]

    migrator.manual_review(
        "verify-staging",
        "Check the staging deploy of {id} at https://staging.acme.example/{id}: it should run on "
        "{targetImage} and its health checks should be green. Approve to continue, or Reject to fail the Step.",
        description="Someone checks the staging deploy before CI moves too.",
    )

    @migrator.step("update-ci", description="Run CI on the target image as well (commits to main).")
    async def update_ci(ctx: StepContext) -> None:
        target = ctx.require("targetImage")
        repo = repo_of(ctx.candidate.id)
        marker = state_dir / "update-ci-failed-once" / ctx.candidate.id
        if fails_first_attempt(ctx.candidate.id) and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("the first attempt failed on purpose\n")
            raise StepFailed(
                f"The CI runner lost its connection while pulling {target} (a simulated flaky failure "
                "that happens once for about one service in five): Retry the Step."
            )
        async with locks[ctx.candidate.id]:
            ci = await asyncio.to_thread(repos.find_ci_file, repo)
            if ci is None:
                await ctx.completed({"note": "no CI file: nothing to update"})
                return
            before = await asyncio.to_thread(git.read, repo, ci) or ""
            sha = await asyncio.to_thread(
                git.commit, repo, {ci: update_ci_image(before, target)}, f"CI: build on {target}"
            )
        if sha is None:
            await ctx.completed({"note": f"{ci} already uses {target}"})
        else:
            await ctx.completed({"commit": sha, "commitUrl": f"{base_url()}/commits/{ctx.candidate.id}/{sha}"})

    @migrator.dry_run("update-ci")
    def update_ci_preview(ctx: DryRunContext) -> list[FileDiff | None]:
        target = ctx.require("targetImage")
        repo = repo_of(ctx.candidate.id)
        ci = repos.find_ci_file(repo)
        if ci is None:
            ctx.skip()
        before = git.read(repo, ci) or ""
        return [file_diff(ci, before, update_ci_image(before, target), repo=ctx.candidate.id)]

    @migrator.step(
        "cleanup",
        description="Delete the legacy build files (commits to main).",
        config={"paths": ",".join(LEGACY_PATHS)},
    )
    async def cleanup(ctx: StepContext) -> None:
        repo = repo_of(ctx.candidate.id)
        async with locks[ctx.candidate.id]:
            legacy = await asyncio.to_thread(repos.find_legacy_files, repo, _paths(ctx.config))
            if not legacy:
                await ctx.completed({"note": "no legacy build files: nothing to remove"})
                return
            sha = await asyncio.to_thread(
                git.commit, repo, dict.fromkeys(legacy), "Remove legacy build files\n\n" + "\n".join(sorted(legacy))
            )
        await ctx.completed(
            {
                "removed": ", ".join(sorted(legacy)),
                "commit": sha or "",
                "commitUrl": f"{base_url()}/commits/{ctx.candidate.id}/{sha}",
            }
        )

    @migrator.dry_run("cleanup")
    def cleanup_preview(ctx: DryRunContext) -> list[FileDiff | None]:
        legacy = repos.find_legacy_files(repo_of(ctx.candidate.id), _paths(ctx.config))
        if not legacy:
            ctx.skip()
        return [file_diff(path, text, None, repo=ctx.candidate.id) for path, text in sorted(legacy.items())]

    # ---- the code host's pages ---------------------------------------------------------------

    def page_repo(candidate: str) -> Path:
        try:
            return repo_of(candidate)
        except StepFailed as exc:
            raise HTTPException(404, str(exc)) from None

    @migrator.app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        names = sorted(p.name for p in repos_dir.iterdir() if (p / ".git").is_dir())
        return pages.index_page(names, base_url())

    @migrator.app.get("/repos/{candidate}", response_class=HTMLResponse)
    async def repository(candidate: str) -> str:
        repo = page_repo(candidate)
        commits, listing = await asyncio.gather(asyncio.to_thread(git.log, repo), asyncio.to_thread(git.files, repo))
        return pages.repository_page(candidate, commits, listing, base_url())

    @migrator.app.get("/repos/{candidate}/files/{path:path}", response_class=PlainTextResponse)
    async def repository_file(candidate: str, path: str) -> str:
        text = await asyncio.to_thread(git.read, page_repo(candidate), path)
        if text is None:
            raise HTTPException(404, f"{candidate} has no {path} on main")
        return text

    @migrator.app.get("/prs/{candidate}/{branch:path}", response_class=HTMLResponse)
    async def pull_request(candidate: str, branch: str) -> str:
        repo = page_repo(candidate)
        if not branch.startswith("loom/") or not await asyncio.to_thread(git.branch_exists, repo, branch):
            raise HTTPException(404, f"{candidate} has no pull request from {branch}")
        merged = await asyncio.to_thread(git.is_merged, repo, branch)
        patch = await asyncio.to_thread(git.show, repo, branch)
        return pages.pull_request_page(candidate, branch, merged, patch, f"{base_url()}/repos/{candidate}")

    @migrator.app.get("/commits/{candidate}/{sha}", response_class=HTMLResponse)
    async def commit(candidate: str, sha: str) -> str:
        repo = page_repo(candidate)
        if not re.fullmatch(r"[0-9a-f]{7,40}", sha):
            raise HTTPException(404, f"{sha!r} is not a commit id")
        try:
            patch = await asyncio.to_thread(git.show, repo, sha)
        except git.GitError:
            raise HTTPException(404, f"{candidate} has no commit {sha}") from None
        return pages.commit_page(candidate, sha, patch, f"{base_url()}/repos/{candidate}")

    return migrator


def _paths(config: dict[str, str]) -> tuple[str, ...]:
    return tuple(p.strip() for p in config.get("paths", ",".join(LEGACY_PATHS)).split(",") if p.strip())
