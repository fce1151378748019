"""One trace across the processes' boundaries: an operator's Start, the Run in Temporal, the dispatch to the
Migrator (which gets `traceparent`) and the Migrator's callback carrying it back."""

from __future__ import annotations

import uuid

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import Request
from starlette.responses import Response
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter

from loom_backend.api import create_api
from loom_backend.execution.activities import RunActivities
from loom_backend.execution.engine import TemporalEngine
from loom_backend.execution.worker import build_worker
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.service import LoomService
from tests.harness import FakeMigrator, eventually

EXPORTER = InMemorySpanExporter()


def _install_provider() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)


async def test_a_start_its_dispatch_and_the_migrators_callback_are_one_trace(
    temporal_address: str, store, access, credentials
) -> None:
    _install_provider()
    client = await Client.connect(
        temporal_address, data_converter=pydantic_data_converter, interceptors=[TracingInterceptor()]
    )
    migrator = FakeMigrator()
    parents: list[str] = []
    plain = migrator.dispatch_step

    async def dispatch_step(request: Request) -> Response:
        parents.append(request.headers.get("traceparent", ""))
        return await plain(request)

    migrator.dispatch_step = dispatch_step  # type: ignore[method-assign]
    queue = f"trace-{uuid.uuid4().hex[:8]}"
    notifier = HttpMigratorNotifier(timeout_seconds=5)
    service = LoomService.over(store, TemporalEngine(client, queue), notifier, access)
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    async with (
        migrator.serving(),
        build_worker(client, queue, RunActivities(store, notifier)),
        httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as api,
    ):
        body = {
            "id": "traced",
            "name": "Traced",
            "description": "One trace",
            "steps": [{"name": "bump", "migratorApp": "fake"}],
            "candidates": [{"id": "svc", "kind": "service"}],
            "migratorUrl": migrator.url,
        }
        assert (await api.post("/api/registry/announce", json=body)).status_code == 200
        EXPORTER.clear()
        assert (await api.post("/api/migrations/traced/candidates/svc/start", json={})).status_code == 202
        await eventually(lambda: bool(parents), 20, "the dispatch to reach the Migrator")
        callback = {"stepName": "bump", "candidateId": "svc", "status": "completed"}
        response = await api.post("/api/event/traced__svc", json=callback, headers={"traceparent": parents[0]})
        assert response.status_code == 202
    await notifier.aclose()

    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    start = spans["POST /api/migrations/{migration_id}/candidates/{candidate_id}/start"]
    trace_id = start.context.trace_id
    assert start.parent is None
    assert parents[0].split("-")[1] == f"{trace_id:032x}"
    in_trace = {name for name, s in spans.items() if s.context.trace_id == trace_id}
    assert in_trace == set(spans), f"outside the Start's trace: {sorted(set(spans) - in_trace)}"
    assert {
        "StartWorkflow:LoomRun",
        "RunActivity:loom_dispatch_step",
        "migrator POST /dispatch-step",
        "POST /api/event/{run_id}",
        "HandleUpdate:step_event",
    } <= in_trace
