"""Prometheus text exposition of a PrometheusSnapshot, in a registry of its own."""

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from loom_backend.domain import PrometheusSnapshot


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: PrometheusSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        in_flight = GaugeMetricFamily(
            "loom_runs_in_flight", "Runs in progress (Candidates running), per Migration", labels=["migration"]
        )
        for migration_id, n in sorted(s.runs_in_flight.items()):
            in_flight.add_metric([migration_id], n)
        yield in_flight
        stuck = GaugeMetricFamily(
            "loom_stuck_steps",
            "Runs whose current Step is in one status longer than LOOM_STUCK_FACTOR x its p95 duration, per Migration",
            labels=["migration"],
        )
        for migration_id, n in sorted(s.stuck_steps.items()):
            stuck.add_metric([migration_id], n)
        yield stuck
        outcomes = CounterMetricFamily(
            "loom_step_outcomes", "Steps that reached a terminal status, from the event log", labels=["status"]
        )
        for status_, n in sorted(s.step_outcomes.items()):
            outcomes.add_metric([status_], n)
        yield outcomes
        yield CounterMetricFamily(
            "loom_dispatch_errors",
            "Steps failed because dispatching them to the Migrator failed after every attempt",
            value=s.dispatch_errors,
        )
        latency = s.callback_latency
        yield HistogramMetricFamily(
            "loom_callback_latency_seconds",
            "Seconds from a Step's dispatch to the Migrator's first callback, over the latest dispatches",
            buckets=[
                *((str(b), c) for b, c in zip(latency.buckets, latency.counts, strict=True)),
                ("+Inf", latency.count),
            ],
            sum_value=latency.sum_seconds,
        )


def prometheus_text(snapshot: PrometheusSnapshot) -> bytes:
    """Render a snapshot in its own registry: nothing is shared with prometheus_client's global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
