"""The demo's sample service repositories: real local git repos generated once under `<data-dir>/repos/`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from examples.demo_migrator import git
from examples.demo_migrator.changes import BASE_IMAGE_REPOSITORY, CI_PATHS, LEGACY_PATHS


@dataclass(frozen=True)
class Service:
    name: str
    team: str
    kind: str  # service | worker | cron-job | frontend
    language: str  # python | go | node | java | rust
    base_tag: str = "2023.04"
    ci: str | None = "github"  # github | gitlab | None
    k8s: bool = True
    legacy: str | None = None  # one of LEGACY_PATHS


CATALOGUE: tuple[Service, ...] = (
    Service("checkout", "payments", "service", "python", legacy="Dockerfile.legacy"),
    Service("billing", "payments", "service", "java", "2022.12", ci="gitlab"),
    Service("invoices", "payments", "worker", "python", "2023.10"),
    Service("fraud-score", "payments", "service", "go", legacy="scripts/build-legacy-image.sh"),
    Service("ledger-reconcile", "payments", "cron-job", "python", ci=None),
    Service("search-api", "discovery", "service", "go", "2023.10"),
    Service("search-indexer", "discovery", "worker", "rust", ci="gitlab"),
    Service("recommendations", "discovery", "service", "python", legacy="Dockerfile.legacy"),
    Service("catalog-sync", "discovery", "cron-job", "node", "2022.12", k8s=False),
    Service("storefront", "web", "frontend", "node", "2023.10"),
    Service("admin-console", "web", "frontend", "node", ci=None, k8s=False),
    Service("image-resizer", "web", "worker", "go", legacy="scripts/build-legacy-image.sh"),
    Service("accounts", "identity", "service", "java"),
    Service("auth-gateway", "identity", "service", "go", "2023.10", ci="gitlab"),
    Service("session-cleanup", "identity", "cron-job", "python", ci=None, legacy="Dockerfile.legacy"),
    Service("notifications", "growth", "service", "node"),
    Service("email-sender", "growth", "worker", "python", "2022.12"),
    Service("campaigns", "growth", "service", "python", ci="gitlab", legacy="Dockerfile.legacy"),
    Service("shipping-rates", "logistics", "service", "java", "2023.10"),
    Service("warehouse-events", "logistics", "worker", "rust"),
    Service("route-planner", "logistics", "service", "go", ci=None),
    Service("inventory", "logistics", "service", "java", legacy="scripts/build-legacy-image.sh"),
    Service("metrics-exporter", "platform", "worker", "go", "2022.12", ci="gitlab"),
    Service("backup-runner", "platform", "cron-job", "python", k8s=False),
    Service("feature-flags", "platform", "service", "rust", "2023.10"),
)

_BUILD_STAGE = {
    "go": ("golang:1.22", "go build -o /out/app ./cmd/app", "/out/app", "/usr/local/bin/app"),
    "rust": ("rust:1.77", "cargo build --release", "/src/target/release/app", "/usr/local/bin/app"),
    "java": ("maven:3.9-eclipse-temurin-21", "mvn -q package", "/src/target/app.jar", "/opt/app/app.jar"),
}
_RUN = {
    "python": ("requirements.txt", "pip install --no-cache-dir -r requirements.txt", '["python", "-m", "app"]'),
    "node": ("package.json", "npm ci --omit=dev", '["node", "server.js"]'),
}
_CMD = {"go": '["app"]', "rust": '["app"]', "java": '["java", "-jar", "/opt/app/app.jar"]'}


def dockerfile(service: Service) -> str:
    base = f"{BASE_IMAGE_REPOSITORY}:{service.base_tag}"
    if service.language in _BUILD_STAGE:
        builder, build, artifact, installed = _BUILD_STAGE[service.language]
        return (
            f"FROM {builder} AS build\nWORKDIR /src\nCOPY . .\nRUN {build}\n\n"
            f"FROM {base}\nCOPY --from=build {artifact} {installed}\nUSER app\n"
            f"CMD {_CMD[service.language]}\n"
        )
    manifest, install, cmd = _RUN[service.language]
    return f"FROM {base}\nWORKDIR /app\nCOPY {manifest} .\nRUN {install}\nCOPY . .\nUSER app\nCMD {cmd}\n"


def ci_file(service: Service) -> tuple[str, str] | None:
    image = f"{BASE_IMAGE_REPOSITORY}:{service.base_tag}"
    if service.ci == "github":
        return CI_PATHS[0], (
            "name: ci\non: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
            f"    container: {image}\n    steps:\n      - uses: actions/checkout@v4\n      - run: make test\n"
            "  image:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
            f"      - run: docker build -t ghcr.io/acme/{service.name}:${{{{ github.sha }}}} .\n"
        )
    if service.ci == "gitlab":
        return CI_PATHS[1], (
            f"image: {image}\n\nstages: [test, build]\n\ntest:\n  stage: test\n  script:\n    - make test\n\n"
            f"build:\n  stage: build\n  script:\n    - docker build -t registry.acme.internal/{service.name}:$CI_COMMIT_SHA .\n"
        )
    return None


def k8s_manifest(service: Service) -> tuple[str, str]:
    workload = "CronJob" if service.kind == "cron-job" else "Deployment"
    path = f"k8s/{workload.lower()}.yaml"
    spec = (
        '  schedule: "0 3 * * *"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n'
        f"          containers:\n            - name: {service.name}\n"
        f"              image: ghcr.io/acme/{service.name}:latest\n          restartPolicy: OnFailure\n"
        if workload == "CronJob"
        else f"  replicas: 2\n  template:\n    spec:\n      containers:\n        - name: {service.name}\n"
        f"          image: ghcr.io/acme/{service.name}:latest\n"
    )
    return path, (
        f"apiVersion: {'batch/v1' if workload == 'CronJob' else 'apps/v1'}\nkind: {workload}\n"
        f"metadata:\n  name: {service.name}\n  labels:\n    team: {service.team}\nspec:\n{spec}"
    )


def files_of(service: Service) -> dict[str, str]:
    files = {
        "service.yaml": (
            f"name: {service.name}\nteam: {service.team}\nkind: {service.kind}\nlanguage: {service.language}\n"
        ),
        "README.md": (
            f"# {service.name}\n\nA {service.language} {service.kind} owned by the {service.team} team.\n\n"
            "Build the image with `docker build .`; the Dockerfile builds on the company base image.\n"
        ),
        "Dockerfile": dockerfile(service),
    }
    if ci := ci_file(service):
        files[ci[0]] = ci[1]
    if service.k8s:
        path, manifest = k8s_manifest(service)
        files[path] = manifest
    if service.legacy == "Dockerfile.legacy":
        files[service.legacy] = "# Superseded by Dockerfile; kept for the old build pipeline.\nFROM centos:7\n"
    elif service.legacy:
        files[service.legacy] = (
            "#!/bin/sh\n# Builds the pre-2022 image. Nothing calls this any more.\ndocker build -f Dockerfile.old .\n"
        )
    return files


def generate(repos_dir: Path, catalogue: tuple[Service, ...] = CATALOGUE) -> list[Path]:
    """Create each sample repository that does not exist yet; existing ones keep their history."""
    repos_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for service in catalogue:
        repo = repos_dir / service.name
        paths.append(repo)
        if (repo / ".git").is_dir():
            continue
        if repo.exists():
            shutil.rmtree(repo)  # a half-made repository from an interrupted start
        staging = repos_dir / f".{service.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for path, content in files_of(service).items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_text(content)
        git.init(staging, f"Initial import of {service.name}")
        staging.rename(repo)
    return paths


def read_service(repo: Path) -> dict[str, str]:
    """The repository's own description (`service.yaml`, flat `key: value` lines) as read from main."""
    text = git.read(repo, "service.yaml") or ""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def find_ci_file(repo: Path) -> str | None:
    return next((path for path in CI_PATHS if git.read(repo, path) is not None), None)


def find_legacy_files(repo: Path, candidates: tuple[str, ...] = LEGACY_PATHS) -> dict[str, str]:
    return {path: text for path in candidates if (text := git.read(repo, path)) is not None}
