"""OpenTelemetry tracing, opt-in through the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT and friends).

Off, every span below is the API's no-op. On: a span per /api request (FastAPI's own, joining a caller's
`traceparent`), Temporal's own interceptor for Runs and their activities, a span per call to a Migrator with
`traceparent` sent along, so a Migrator's callback lands in the trace of the Start that caused it.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import propagate, trace

tracer = trace.get_tracer("loom")
_configured = False


def enabled() -> bool:
    """Whether this process exports traces: an OTLP endpoint is set and the SDK is not disabled."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return bool(endpoint) and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"


def configure() -> bool:
    """Install the OTLP exporter as the global tracer provider, once per process, when `enabled()`."""
    global _configured
    if _configured or not enabled():
        return _configured
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "loom")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def temporal_interceptors() -> list[Any]:
    """Temporal's OpenTelemetry interceptor for the client (the worker inherits it) while tracing is on."""
    if not _configured:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def outgoing_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, for a request to a Migrator."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
