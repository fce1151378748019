"""What the demo's Steps do to a repository's files, as pure functions: the Steps and the dry-run share them."""

from __future__ import annotations

import hashlib
import re

BASE_IMAGE_REPOSITORY = "ghcr.io/acme/base"
CI_PATHS = (".github/workflows/ci.yml", ".gitlab-ci.yml")
LEGACY_PATHS = ("Dockerfile.legacy", "scripts/build-legacy-image.sh")

_FROM = re.compile(r"^(?P<head>\s*FROM\s+(?:--\S+\s+)*)(?P<image>\S+)(?P<tail>.*)$", re.IGNORECASE)
_CI_IMAGE = re.compile(r"^(?P<head>\s*(?:image|container):\s*)(?P<image>\S+)(?P<tail>\s*)$")


def image_repository(image: str) -> str:
    """`ghcr.io/acme/base:2023.04` → `ghcr.io/acme/base` (a registry port is not a tag)."""
    image = image.split("@", 1)[0]
    name, _, tag = image.rpartition(":")
    return name if name and "/" not in tag else image


def _replace_images(text: str, pattern: re.Pattern[str], target: str, only_last: bool) -> str:
    lines = text.splitlines(keepends=True)
    matches = [(i, m) for i, line in enumerate(lines) if (m := pattern.match(line.rstrip("\n")))]
    same_repository = [(i, m) for i, m in matches if image_repository(m["image"]) == image_repository(target)]
    chosen = same_repository or (matches[-1:] if only_last else matches)
    for i, m in chosen:
        ending = "\n" if lines[i].endswith("\n") else ""
        lines[i] = f"{m['head']}{target}{m['tail']}{ending}"
    return "".join(lines)


def bump_base_image(dockerfile: str, target: str) -> str:
    """Point every FROM line of the target's image repository at `target`; if none, the final stage's FROM."""
    if not any(_FROM.match(line) for line in dockerfile.splitlines()):
        raise ValueError("the Dockerfile has no FROM line")
    return _replace_images(dockerfile, _FROM, target, only_last=True)


def update_ci_image(ci_config: str, target: str) -> str:
    """Build in CI on the target image too: the `image:` (GitLab) or `container:` (GitHub) lines."""
    return _replace_images(ci_config, _CI_IMAGE, target, only_last=False)


def fails_first_attempt(candidate_id: str) -> bool:
    """About one Candidate in five fails `update-ci` once, decided by a stable hash so demos repeat."""
    return int(hashlib.sha256(f"loom-demo:{candidate_id}".encode()).hexdigest(), 16) % 5 == 0


def branch_for(target: str) -> str:
    tag = target.rsplit(":", 1)[-1] if ":" in target.rsplit("/", 1)[-1] else "latest"
    return "loom/bump-base-image-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", tag).strip("-.") or "latest")
