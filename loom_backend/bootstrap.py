"""The composition root: the one place that builds Loom's adapters and wires the service.

Tests pass their own store, engine or notifier; everything left out gets the real adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loom_backend import tracing
from loom_backend.auth import AccessControl, SignInThrottle, parse_provisioned_tokens
from loom_backend.domain import StuckRule
from loom_backend.live import ChangeHub
from loom_backend.notifications import WebhookAdmin
from loom_backend.ports import (
    AuthStore,
    ExecutionEngine,
    MigrationStore,
    MigratorNotifier,
    SavedViews,
    WebhookSender,
    WebhookStore,
)
from loom_backend.service import LoomService
from loom_backend.settings import Settings, get_settings

if TYPE_CHECKING:
    from loom_backend.webhook_client import HttpWebhookSender

log = logging.getLogger("loom")


@dataclass
class Loom:
    settings: Settings
    store: MigrationStore
    notifier: MigratorNotifier
    engine: ExecutionEngine
    service: LoomService
    access: AccessControl
    background: list[asyncio.Task[None]] = field(default_factory=list)


_current: Loom | None = None


def current() -> Loom:
    """The running Loom of this process; the app module and the API resolve its service per call."""
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


def build_auth_store(settings: Settings, store: MigrationStore | None = None) -> AuthStore:
    """Accounts and tokens live in the same database as the read model, on the same engine when there is one."""
    from loom_backend.store.auth_store import SqlAuthStore
    from loom_backend.store.sql_store import SqlStore, create_db_engine

    engine = store.engine if isinstance(store, SqlStore) else create_db_engine(settings.sqlalchemy_url)
    return SqlAuthStore(engine)


def build_saved_views(store: MigrationStore) -> SavedViews | None:
    """Saved table views live beside the read model, on its engine; a store that is not SQL has none."""
    from loom_backend.store.saved_views import SqlSavedViews
    from loom_backend.store.sql_store import SqlStore

    return SqlSavedViews(store.engine) if isinstance(store, SqlStore) else None


def build_webhooks(settings: Settings, store: MigrationStore) -> tuple[WebhookStore, HttpWebhookSender] | None:
    """The hooks' store (beside the read model, on its engine) and the signed sender; None without a SQL store."""
    from loom_backend.store.sql_store import SqlStore
    from loom_backend.store.webhook_store import SqlWebhookStore
    from loom_backend.url_allow import MigratorUrlPolicy
    from loom_backend.webhook_client import HttpWebhookSender

    if not isinstance(store, SqlStore):
        return None
    policy = MigratorUrlPolicy(settings.webhook_url_allow, setting="LOOM_WEBHOOK_URL_ALLOW")
    return SqlWebhookStore(store), HttpWebhookSender(policy, settings.webhook_timeout_seconds)


def build_deliverer(settings: Settings, store: MigrationStore, webhooks: WebhookStore, sender: WebhookSender) -> Any:
    """The webhook deliverer of a worker process, under the installation's one lease."""
    from loom_backend.notifications import WebhookDeliverer
    from loom_backend.store.lease import DatabaseLease
    from loom_backend.store.sql_store import SqlStore

    assert isinstance(store, SqlStore)
    return WebhookDeliverer(
        webhooks,
        sender,
        DatabaseLease(store.engine),
        public_url=settings.public_url,
        digest_seconds=settings.webhook_digest_seconds,
        max_lines=settings.webhook_digest_max_lines,
        retry_seconds=settings.webhook_retry_seconds,
        backoff_max_seconds=settings.webhook_backoff_max_seconds,
        stuck_rule=StuckRule(settings.stuck_factor, settings.stuck_floor_seconds),
    )


def build_access(settings: Settings, auth_store: AuthStore) -> AccessControl:
    """AccessControl as the settings say, with the tokens of LOOM_BOOTSTRAP_TOKENS made valid."""
    access = AccessControl(
        auth_store,
        session_hours=settings.session_hours,
        proxy_header=settings.auth_proxy_header,
        proxy_role=settings.auth_proxy_default_role,
        secure_cookie=settings.secure_cookies,
        remember_seconds=settings.auth_remember_seconds,
    )
    if settings.bootstrap_tokens is not None:
        provisioned = parse_provisioned_tokens(settings.bootstrap_tokens.get_secret_value())
        for token in provisioned:
            access.provision_token(token)
        log.warning(
            "LOOM_BOOTSTRAP_TOKENS made %d token(s) valid: %s",
            len(provisioned),
            ", ".join(f"{t.kind.value}:{t.name}" for t in provisioned),
        )
    if settings.auth_proxy_header:
        log.warning(
            "Trusting the %s header as the operator's name: Loom must be reachable only through that proxy",
            settings.auth_proxy_header,
        )
    return access


@contextlib.asynccontextmanager
async def running(
    settings: Settings | None = None,
    *,
    store: MigrationStore | None = None,
    notifier: MigratorNotifier | None = None,
    engine: ExecutionEngine | None = None,
    access: AccessControl | None = None,
    run_worker: bool | None = None,
) -> AsyncIterator[Loom]:
    """Start Loom in this process: schema upgrade, Temporal connection (embedded server if none is configured), worker."""
    global _current
    settings = settings or get_settings()
    tracing.configure()
    from loom_backend.execution.activities import RunActivities
    from loom_backend.execution.dev_server import embedded_temporal
    from loom_backend.execution.engine import TemporalEngine, connect, dispatch_policy
    from loom_backend.execution.rollout_activities import RolloutActivities
    from loom_backend.execution.worker import run_worker as worker_loop
    from loom_backend.migrator_client import HttpMigratorNotifier
    from loom_backend.probes import RedisProbe
    from loom_backend.url_allow import MigratorUrlPolicy

    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await asyncio.to_thread(build_store, settings)
        auth_store = access.store if access is not None else build_auth_store(settings, store)
        if access is None:
            access = await asyncio.to_thread(build_access, settings, auth_store)
        if notifier is None:
            known = access

            async def signing_key(migration_id: str) -> bytes | None:
                return known.recent_signing_key(migration_id) or await asyncio.to_thread(
                    known.signing_key, migration_id
                )

            notifier = HttpMigratorNotifier(
                timeout_seconds=settings.dispatch_timeout_seconds,
                url_policy=MigratorUrlPolicy(settings.migrator_url_allow),
                signing_keys=signing_key,
            )
            stack.push_async_callback(notifier.aclose)
        temporal: TemporalEngine | None = None
        if engine is None:
            if settings.temporal_address is None:
                address = await stack.enter_async_context(embedded_temporal(settings))
                settings = settings.model_copy(update={"temporal_address": address})
            client = await connect(settings)
            temporal = TemporalEngine(
                client,
                settings.temporal_task_queue,
                dispatch_policy(settings),
                rollout_poll_seconds=settings.rollout_poll_seconds,
            )
            engine = temporal
            # Routes that need Temporal answer 503 at once while it is down, not after the client's retries.
            stack.push_async_callback(_stop, asyncio.create_task(temporal.watch()))
        probes = []
        if settings.redis_url:
            redis = RedisProbe(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            probes.append(redis)
        hooks = build_webhooks(settings, store)
        if hooks is not None:
            stack.push_async_callback(hooks[1].aclose)
        changes = ChangeHub()
        source = _change_source(store, changes)
        if source is not None:
            stack.push_async_callback(_stop, asyncio.create_task(source))
        service = LoomService.over(
            store,
            engine,
            notifier,
            access,
            open_pr_attention_hours=settings.open_pr_attention_hours,
            stuck_rule=StuckRule(settings.stuck_factor, settings.stuck_floor_seconds),
            public_url=settings.public_url,
            temporal_ui_url=settings.temporal_ui_url,
            temporal_namespace=settings.temporal_namespace,
            sign_in_throttle=SignInThrottle(
                settings.sign_in_failures_per_account,
                settings.sign_in_failures_per_client,
                settings.sign_in_window_seconds,
            ),
            concurrent_sign_ins=settings.sign_in_concurrency,
            changes=changes,
            probes=probes,
            views=build_saved_views(store),
            webhooks=WebhookAdmin(*hooks) if hooks is not None else None,
        )
        if temporal is not None and (settings.run_worker if run_worker is None else run_worker):
            # Rollouts and bulk operations act through the service, as the operator who started them.
            worker = asyncio.create_task(
                worker_loop(
                    temporal.client,
                    settings.temporal_task_queue,
                    RunActivities(store, notifier),
                    rollout=RolloutActivities(service, store, store, store),
                )
            )
            stack.push_async_callback(_stop, worker)
            if hooks is not None:
                # Only worker processes deliver, and of them only the one holding the lease.
                deliverer = build_deliverer(settings, store, *hooks)
                stack.push_async_callback(_stop, asyncio.create_task(deliverer.run()))
        stack.push_async_callback(_stop, asyncio.create_task(_watch_database(store)))
        loom = Loom(settings, store, notifier, engine, service, access)
        _current = loom
        try:
            yield loom
        finally:
            _current = None


def _change_source(store: MigrationStore, hub: ChangeHub) -> Coroutine[Any, Any, None] | None:
    """The one change source of this process: PostgreSQL's NOTIFY, or the SQLite store's own writes."""
    from loom_backend.store.change_feed import follow_sqlite, listen_postgres
    from loom_backend.store.sql_store import SqlStore

    if not isinstance(store, SqlStore):
        return None
    if store.engine.dialect.name == "postgresql":
        return listen_postgres(store.url, hub.publish)
    return follow_sqlite(store, hub.publish)


async def _watch_database(store: MigrationStore, every_seconds: float = 10.0) -> None:
    """Say loudly, and keep saying, when the database stops taking writes (a SQLite file deleted under Loom, a
    read-only or full disk): Runs wait meanwhile instead of failing, so the log and /api/readyz are where it shows."""
    broken = False
    while True:
        try:
            await asyncio.to_thread(store.check_writable)
            if broken:
                log.warning("Loom's database takes writes again; Runs go on")
            broken = False
        except Exception as exc:
            broken = True
            log.error("Loom's database does not take writes: %s. Runs wait until it does.", exc)
        await asyncio.sleep(every_seconds)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
