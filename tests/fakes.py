"""Small hand-written fakes for what the service needs, so use cases are tested without Temporal or HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field

from loom_backend import errors
from loom_backend.domain import (
    DispatchStepRequest,
    DryRunRequest,
    DryRunResult,
    MigrationManifest,
    Principal,
    PrincipalKind,
    Role,
    StepStatusEvent,
    StringMap,
)

VIEWER = Principal("vera", PrincipalKind.USER, Role.VIEWER)
OPERATOR = Principal("ana", PrincipalKind.USER, Role.OPERATOR)
ADMIN = Principal("root", PrincipalKind.USER, Role.ADMIN)


@dataclass
class FakeEngine:
    """Records what the service asked of the engine; a Run 'exists' once started until cancelled."""

    started: dict[str, MigrationManifest] = field(default_factory=dict)
    actions: list[tuple[str, ...]] = field(default_factory=list)
    fail_start: Exception | None = None

    async def start_run(self, manifest: MigrationManifest, actor: str) -> None:
        if self.fail_start:
            raise self.fail_start
        self.started[manifest.run_id] = manifest
        self.actions.append(("start", manifest.run_id, actor))

    async def cancel_run(self, run_id: str, actor: str) -> None:
        self.started.pop(run_id, None)
        self.actions.append(("cancel", run_id, actor))

    async def step_event(self, run_id: str, event: StepStatusEvent) -> None:
        if run_id not in self.started:
            raise errors.RunNotFound(run_id)
        self.actions.append(("event", run_id, event.step_name, event.status.value))

    async def retry_step(self, run_id: str, step_name: str, actor: str) -> None:
        self.actions.append(("retry", run_id, step_name, actor))

    async def review_step(self, run_id: str, step_name: str, approved: bool, actor: str, comment: str | None) -> None:
        self.actions.append(("approve" if approved else "reject", run_id, step_name, actor))

    async def mark_merged(self, run_id: str, step_name: str, actor: str) -> None:
        self.actions.append(("mark_merged", run_id, step_name, actor))

    async def update_inputs(self, run_id: str, inputs: StringMap, actor: str) -> None:
        self.actions.append(("inputs", run_id, *sorted(inputs.items())))  # type: ignore[arg-type]

    async def is_running(self, run_id: str) -> bool:
        return run_id in self.started


@dataclass
class FakeNotifier:
    dispatched: list[DispatchStepRequest] = field(default_factory=list)
    dry_runs: list[DryRunRequest] = field(default_factory=list)
    dry_run_result: DryRunResult | None = None

    refused_urls: set[str] = field(default_factory=set)

    async def check_url(self, migrator_url: str) -> None:
        if migrator_url in self.refused_urls:
            raise errors.InvalidInput(f"migratorUrl {migrator_url!r} is refused", field="migratorUrl")

    async def dispatch_step(self, request: DispatchStepRequest) -> None:
        self.dispatched.append(request)

    async def dry_run(self, migrator_url: str, request: DryRunRequest) -> DryRunResult:
        self.dry_runs.append(request)
        if self.dry_run_result is None:
            raise errors.MigratorUnavailable(f"Migrator at {migrator_url} did not answer")
        return self.dry_run_result
