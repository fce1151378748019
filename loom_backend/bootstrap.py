"""The composition root: the one place that builds Loom's adapters and wires the service.

Tests pass their own store, engine or notifier; everything left out gets the real adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from loom_backend.ports import ExecutionEngine, MigrationStore, MigratorNotifier
from loom_backend.service import LoomService
from loom_backend.settings import Settings, get_settings

log = logging.getLogger("loom")


@dataclass
class Loom:
    settings: Settings
    store: MigrationStore
    notifier: MigratorNotifier
    engine: ExecutionEngine
    service: LoomService
    background: list[asyncio.Task[None]] = field(default_factory=list)


_current: Loom | None = None


def current() -> Loom:
    """The running Loom of this process; the board's state handlers and the API resolve it per call."""
    if _current is None:
        raise RuntimeError("Loom has not started yet in this process")
    return _current


def current_service() -> LoomService:
    return current().service


def build_store(settings: Settings) -> MigrationStore:
    from loom_backend.store.sql_store import SqlStore

    store = SqlStore(settings.sqlalchemy_url)
    store.upgrade_schema()
    return store


@contextlib.asynccontextmanager
async def running(
    settings: Settings | None = None,
    *,
    store: MigrationStore | None = None,
    notifier: MigratorNotifier | None = None,
    engine: ExecutionEngine | None = None,
    run_worker: bool | None = None,
) -> AsyncIterator[Loom]:
    """Start Loom in this process: schema upgrade, Temporal connection (embedded server if none is configured), worker."""
    global _current
    settings = settings or get_settings()
    from loom_backend.execution.activities import RunActivities
    from loom_backend.execution.dev_server import embedded_temporal
    from loom_backend.execution.engine import TemporalEngine, connect, dispatch_policy
    from loom_backend.execution.worker import run_worker as worker_loop
    from loom_backend.migrator_client import HttpMigratorNotifier

    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await asyncio.to_thread(build_store, settings)
        if notifier is None:
            notifier = HttpMigratorNotifier(timeout_seconds=settings.dispatch_timeout_seconds)
            stack.push_async_callback(notifier.aclose)
        if engine is None:
            if settings.temporal_address is None:
                address = await stack.enter_async_context(embedded_temporal(settings))
                settings = settings.model_copy(update={"temporal_address": address})
            client = await connect(settings)
            engine = TemporalEngine(client, settings.temporal_task_queue, dispatch_policy(settings))
            if settings.run_worker if run_worker is None else run_worker:
                activities = RunActivities(store, notifier)
                worker = asyncio.create_task(worker_loop(client, settings.temporal_task_queue, activities))
                stack.push_async_callback(_stop, worker)
        loom = Loom(settings, store, notifier, engine, LoomService(store, engine, notifier))
        _current = loom
        try:
            yield loom
        finally:
            _current = None


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
