"""A day in the life of a fleet, run by a rollout policy: how long it takes, against the ideal, and how many operator
actions it needs. Run by hand:

    .venv/bin/python bench/fleet_day.py [--candidates 1000] [--max-running 50] [--sim-minute 1.0] [--seed 1]

The `loom api` process (in-process worker, its own SQLite) on a Temporal dev server, and a real HTTP fake Migrator
(tests.harness.CallbackMigrator) that answers each dispatch itself after a simulated latency, scaled: one simulated
minute is `--sim-minute` real seconds. Every Candidate runs three Steps: `bump` (a PR whose CI takes 5-40 min before
it is merged), `review` (manual-review: awaiting review after 1 min) and `verify-health` (1-3 min). 5% of Step
dispatches fail the first time, with one of three errors, and succeed on Retry.

The policy: maxRunning, waves [3, "10%", "50%", "100%"] with a manual gate, a breaker (pauseAfterFailures),
autoRetry {attempts: 1} (the rollout retries a failed Step itself) and autoApprove {step: review, fromWave: 2} (the
operator reviews the canary wave by hand, the rollout approves later waves). The operator is a script that looks
every 5 simulated minutes and does only: the Migration's inputs, the policy, the rollout's start, one bulk Approve of
wave 1's reviews once they all wait, a Promote when a gate waits, and a bulk Retry of a failure group (then Resume,
if the breaker paused) only for failures still there at its next look, that is, left after the automatic retries.

Prints the simulated time to 80% and 100% completed, the ideal time for the same latencies under the same caps and
waves (list scheduling with instant gates, approvals and retries), their ratio, the operator actions by kind, the
rollout's automatic retries and approvals (from the event log), and the peak of running Candidates sampled every
100 ms (must not exceed maxRunning).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from loom_backend.domain import DispatchStepRequest  # noqa: E402
from loom_backend.rollout import wave_ends  # noqa: E402
from tests.harness import CallbackMigrator, LiveLoom, temporal_server  # noqa: E402

MIGRATION = "fleet-day"
STEPS = ["bump", "review", "verify-health"]
ERRORS = ["chart lint failed: values.yaml", "CI runner timed out", "merge conflict in Chart.lock"]
WAVES: list[int | str] = [3, "10%", "50%", "100%"]
LOOK_EVERY_MINUTES = 5.0
REVIEW_MINUTES = 1.0


class Fleet:
    """Each Candidate's simulated latencies (minutes), drawn once, so Loom and the ideal see the same ones."""

    def __init__(self, n: int, seed: int, failure_rate: float = 0.05) -> None:
        rng = random.Random(seed)
        self.ids = [f"svc-{i:04d}" for i in range(n)]
        self.minutes = {
            c: {"bump": rng.uniform(5, 40), "review": REVIEW_MINUTES, "verify-health": rng.uniform(1, 3)}
            for c in self.ids
        }
        self.fails = {(c, s): rng.choice(ERRORS) for c in self.ids for s in STEPS if rng.random() < failure_rate}

    def latency(self, d: DispatchStepRequest) -> float:
        if self._fails_now(d):
            return 0.5
        return self.minutes[d.candidate.id][d.step_name]

    def outcome(self, d: DispatchStepRequest) -> str:
        if self._fails_now(d):
            return f"failed:{self.fails[(d.candidate.id, d.step_name)]}"
        return {"bump": "merged", "review": "awaiting_review"}.get(d.step_name, "completed")

    def _fails_now(self, d: DispatchStepRequest) -> bool:
        return (d.candidate.id, d.step_name) in self.fails and (d.dispatch_id or "").endswith(":1")

    def duration(self, c: str) -> float:
        """A Candidate's Run with instant approvals and retries: its Steps' latencies plus each failed attempt."""
        m = self.minutes[c]
        return sum(m.values()) + sum(0.5 for s in STEPS if (c, s) in self.fails)


def ideal_times(fleet: Fleet, max_running: int) -> tuple[float, float]:
    """Exact 80% and 100% of the ideal schedule, from every Candidate's finishing time."""
    ends = wave_ends(WAVES, len(fleet.ids))
    finish: list[float] = []
    now, begin = 0.0, 0
    for end in ends:
        slots: list[float] = []
        for c in fleet.ids[begin:end]:
            start = heapq.heappop(slots) if len(slots) >= max_running else now
            t = start + fleet.duration(c)
            heapq.heappush(slots, t)
            finish.append(t)
        now = max(slots) if slots else now
        begin = end
    finish.sort()
    return finish[int(0.8 * len(finish)) - 1], finish[-1]


class Operator:
    """Looks every few simulated minutes and acts only in bulk; counts every action."""

    def __init__(self, api: httpx.AsyncClient, canary: int) -> None:
        self.api = api
        self.canary = canary  # wave 1's size: its reviews are the operator's
        self.canary_approved = False
        self.failing_before: set[str] = set()  # Candidates whose Step was failed at the last look
        self.actions: Counter[str] = Counter()

    async def act(self, kind: str, method: str, path: str, body: Any = None) -> httpx.Response:
        response = await self.api.request(method, path, json=body)
        assert response.status_code < 300, f"{kind}: {response.status_code} {response.text}"
        self.actions[kind] += 1
        return response

    async def reviews_waiting(self) -> int:
        body = {"action": "approve", "dryRun": True, "filter": {"status": "running", "stepStatus": "awaiting_review"}}
        preview = (await self.api.post(f"/api/migrations/{MIGRATION}/bulk", json=body)).json()
        return int(preview["counts"].get("pending", 0))

    async def look(self) -> dict[str, Any]:
        status: dict[str, Any] = (await self.api.get(f"/api/migrations/{MIGRATION}/rollout")).json()
        if not self.canary_approved and await self.reviews_waiting() >= self.canary:
            body = {"action": "approve", "filter": {"status": "running", "stepStatus": "awaiting_review"}}
            await self.act("bulk approve", "POST", f"/api/migrations/{MIGRATION}/bulk", body)
            self.canary_approved = True
        params = {"status": "running", "stepStatus": "failed"}
        failed = (await self.api.get(f"/api/migrations/{MIGRATION}/candidates", params=params)).json()
        failing = {c["id"]: c["failureGroup"] for c in failed}
        # Failed at the last look too: the automatic retry (within a poll) did not fix it. One retry per group.
        for key in sorted({g for c, g in failing.items() if c in self.failing_before and g}):
            body = {"action": "retry", "filter": {"status": "running", "failureGroup": key}}
            await self.act("group retry", "POST", f"/api/migrations/{MIGRATION}/bulk", body)
        self.failing_before = set(failing)
        if status["state"] == "paused" and not failing:
            await self.act("resume", "POST", f"/api/migrations/{MIGRATION}/rollout/resume")
        if status["state"] == "waiting_for_promotion" and status["gateWaiting"]:
            await self.act("promote", "POST", f"/api/migrations/{MIGRATION}/rollout/promote")
        return status


async def automatic(api: httpx.AsyncClient, event_type: str) -> int:
    """How many actions of one kind the rollout made by itself, from the event log."""
    params = {"type": event_type, "limit": 1}
    page = (await api.get(f"/api/migrations/{MIGRATION}/events", params=params)).json()
    return int(page["total"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--max-running", type=int, default=50)
    parser.add_argument("--sim-minute", type=float, default=1.0, help="real seconds per simulated minute")
    parser.add_argument("--pause-after-failures", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fleet = Fleet(args.candidates, args.seed)
    scale = args.sim_minute

    tmp = tempfile.mkdtemp(prefix="loom-rollout-bench-")  # kept: the Loom log is there if something fails
    print(f"data and logs in {tmp}", flush=True)
    with temporal_server(Path(tmp)) as address:
        loom = LiveLoom(address, Path(tmp) / "loom")
        loom.env["LOOM_ROLLOUT_POLL_SECONDS"] = str(min(1.0, max(0.05, scale / 4)))
        migrator = CallbackMigrator(delay=lambda d: fleet.latency(d) * scale, outcome=fleet.outcome)
        async with migrator.serving(), loom:
            migrator.loom_url, migrator.token = loom.url, loom.credentials.migrator_token
            async with httpx.AsyncClient(base_url=loom.url, timeout=60, auth=loom.credentials.auth) as api:
                announce = {
                    "id": MIGRATION,
                    "name": "Fleet day",
                    "description": "Chart upgrade across the fleet",
                    "requiredInputs": [{"name": "chartVersion", "label": "Chart version"}],
                    "steps": [
                        {"name": "bump", "migratorApp": "chart"},
                        {"name": "review", "migratorApp": "chart", "type": "manual-review"},
                        {"name": "verify-health", "migratorApp": "chart"},
                    ],
                    "candidates": [{"id": c, "kind": "service"} for c in fleet.ids],
                    "migratorUrl": migrator.url,
                }
                assert (await api.post("/api/registry/announce", json=announce)).status_code == 200
                operator = Operator(api, canary=wave_ends(WAVES, len(fleet.ids))[0])
                inputs = {"inputs": {"chartVersion": "2.0.0"}}
                await operator.act("migration inputs", "PATCH", f"/api/migrations/{MIGRATION}/inputs", inputs)
                policy = {
                    "maxRunning": args.max_running,
                    "waves": WAVES,
                    "gate": "manual",
                    "pauseAfterFailures": args.pause_after_failures,
                    "autoRetry": {"attempts": 1},
                    "autoApprove": {"step": "review", "fromWave": 2},
                }
                await operator.act("policy set", "PUT", f"/api/migrations/{MIGRATION}/rollout", policy)
                peak = 0
                stop = asyncio.Event()

                async def sample() -> None:
                    nonlocal peak
                    while not stop.is_set():
                        page = await api.get(
                            f"/api/migrations/{MIGRATION}/candidates", params={"status": "running", "limit": 1}
                        )
                        peak = max(peak, int(page.headers["x-total-count"]))
                        await asyncio.sleep(0.1)

                sampler = asyncio.create_task(sample())
                began = time.monotonic()
                await operator.act("rollout start", "POST", f"/api/migrations/{MIGRATION}/rollout/start")
                at_80: float | None = None
                while True:
                    status = await operator.look()
                    completed = status["counts"]["completed"]
                    if at_80 is None and completed >= 0.8 * args.candidates:
                        at_80 = time.monotonic() - began
                    if status["state"] == "completed":
                        break
                    await asyncio.sleep(LOOK_EVERY_MINUTES * scale)
                at_100 = time.monotonic() - began
                stop.set()
                await sampler
                retried = await automatic(api, "rollout_step_retried")
                approved = await automatic(api, "rollout_step_approved")

    ideal_80, ideal_100 = ideal_times(fleet, args.max_running)
    sim_80, sim_100 = (at_80 or at_100) / scale, at_100 / scale
    total_actions = sum(operator.actions.values())
    print(f"candidates={args.candidates} maxRunning={args.max_running} waves={WAVES} gate=manual")
    print(f"pauseAfterFailures={args.pause_after_failures} autoRetry=1 autoApprove=review from wave 2")
    print(f"failing first dispatches={len(fleet.fails)}; the rollout retried {retried}, approved {approved}")
    print(f"one simulated minute = {scale} s real; operator looks every {LOOK_EVERY_MINUTES:.0f} simulated min")
    print(f"to 80% completed:  {sim_80:8.1f} sim min   ideal {ideal_80:8.1f}   ratio {sim_80 / ideal_80:.2f}")
    print(f"to 100% completed: {sim_100:8.1f} sim min   ideal {ideal_100:8.1f}   ratio {sim_100 / ideal_100:.2f}")
    print(f"operator actions: {total_actions} ({', '.join(f'{k} {v}' for k, v in sorted(operator.actions.items()))})")
    print(f"peak running (sampled every 100 ms): {peak} (cap {args.max_running})")


if __name__ == "__main__":
    asyncio.run(main())
