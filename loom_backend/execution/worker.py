"""The Temporal worker that executes Runs: in the app process by default, or alone via `loom worker`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from loom_backend.execution.activities import RunActivities
from loom_backend.execution.rollout_activities import RolloutActivities
from loom_backend.execution.rollout_workflow import BulkWorkflow, RolloutWorkflow
from loom_backend.execution.workflow import RunWorkflow


def _activities(runs: RunActivities, rollout: RolloutActivities | None) -> list[Callable[..., Any]]:
    extra: list[Callable[..., Any]] = []
    if rollout is not None:
        extra = [
            rollout.observe,
            rollout.publish,
            rollout.start,
            rollout.start_many,
            rollout.act,
            rollout.bulk_apply,
            rollout.bulk_finish,
        ]
    return [runs.persist, runs.dispatch_step, *extra]


def build_worker(
    client: Client,
    task_queue: str,
    activities: RunActivities,
    *,
    rollout: RolloutActivities | None = None,
    max_concurrent_activities: int = 200,
    max_concurrent_workflow_tasks: int = 100,
) -> Worker:
    """A worker for the Run workflow and its activities; with `rollout`, also for rollouts and bulk operations.

    The activities are async (the store is called through asyncio.to_thread), so no activity
    executor is needed. Workflow tasks run on one thread: they do no I/O, so more threads only
    fight over the GIL (bench/runs.py with 200 Runs at once: 63-74 Steps/s with 4, 71-77 with 1).

    The Run runs outside Temporal's workflow sandbox: re-importing modules for each Run and
    entering the sandbox for every payload took a third of the app's CPU per Step (bench/runs.py).
    Determinism is still checked: the Run tests replay every history they make in the sandbox.
    """
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RunWorkflow, RolloutWorkflow, BulkWorkflow] if rollout else [RunWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
        activities=_activities(activities, rollout),
        workflow_task_executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-workflow"),
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_local_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=2),
    )


async def run_worker(
    client: Client,
    task_queue: str,
    activities: RunActivities,
    stop: asyncio.Event | None = None,
    rollout: RolloutActivities | None = None,
) -> None:
    """Run the worker until `stop` is set or the task is cancelled (e.g. an app lifespan task).

    Either way the worker shuts down before this returns: in-flight activities get a short grace
    period and are otherwise retried by the next worker, since every Run's state is in Temporal.
    """
    async with build_worker(client, task_queue, activities, rollout=rollout):
        await (stop.wait() if stop is not None else asyncio.Future())
