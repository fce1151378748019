"""The httpx MigratorNotifier against a real HTTP Migrator: what it sends, and how each failure reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loom_backend import errors
from loom_backend.domain import Candidate, DispatchStepRequest, DryRunRequest, StepDefinition
from loom_backend.execution.dev_server import free_port
from loom_backend.migrator_client import DispatchFailed, DispatchRejected, HttpMigratorNotifier
from tests.harness import eventually, serve

CANDIDATE = Candidate(id="checkout", kind="application", metadata={"team": "payments"})
DISPATCH = DispatchStepRequest(
    migration_id="chart-upgrade",
    step_name="bump",
    candidate=CANDIDATE,
    config={"chart": "app"},
    callback_id="chart-upgrade__checkout",
    event_name="step-completed:bump:checkout",
    migrator_app="chart-migrator",
    migrator_url="http://unused",
)
DRY_RUN = DryRunRequest(
    migration_id="chart-upgrade", candidate=CANDIDATE, steps=[StepDefinition(name="bump", migrator_app="m")]
)


class Script:
    """What the Migrator answers next, and what it received."""

    def __init__(self) -> None:
        self.status = 200
        self.body: object = {"steps": [{"stepName": "bump", "files": []}]}
        self.received: list[dict] = []

    async def handle(self, request: Request) -> Response:
        self.received.append(await request.json())
        if isinstance(self.body, str):
            return Response(self.body, status_code=self.status)
        return JSONResponse(self.body, status_code=self.status)


@pytest.fixture
async def migrator() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    port = free_port()
    app = Starlette(
        routes=[
            Route("/dispatch-step", script.handle, methods=["POST"]),
            Route("/dry-run", script.handle, methods=["POST"]),
        ]
    )
    async with serve(app, port):
        yield f"http://127.0.0.1:{port}", script


@pytest.fixture
async def notifier() -> AsyncIterator[HttpMigratorNotifier]:
    client = HttpMigratorNotifier(timeout_seconds=2.0)
    yield client
    await client.aclose()


async def test_dispatch_posts_the_request_in_camel_case(migrator, notifier) -> None:
    url, script = migrator
    script.status = 202
    await notifier.dispatch_step(DISPATCH.model_copy(update={"migrator_url": url}))
    sent = script.received[0]
    assert sent["callbackId"] == "chart-upgrade__checkout"
    assert sent["candidate"]["metadata"] == {"team": "payments"}
    assert sent["migratorApp"] == "chart-migrator"


async def test_dispatch_answered_5xx_is_worth_retrying_and_4xx_is_not(migrator, notifier) -> None:
    url, script = migrator
    request = DISPATCH.model_copy(update={"migrator_url": url})
    script.status, script.body = 503, "restarting"
    with pytest.raises(DispatchFailed, match="503: restarting"):
        await notifier.dispatch_step(request)
    script.status, script.body = 422, "unknown step type"
    with pytest.raises(DispatchRejected, match="422: unknown step type"):
        await notifier.dispatch_step(request)


async def test_a_migrator_saying_not_now_with_429_or_408_is_worth_retrying(migrator, notifier) -> None:
    url, script = migrator
    request = DISPATCH.model_copy(update={"migrator_url": url})
    for status in (429, 408):
        script.status, script.body = status, "slow down"
        with pytest.raises(DispatchFailed, match=f"{status}: slow down"):
            await notifier.dispatch_step(request)


async def test_dispatch_to_a_migrator_that_is_down_is_worth_retrying(notifier) -> None:
    with pytest.raises(DispatchFailed, match="could not be reached"):
        await notifier.dispatch_step(DISPATCH.model_copy(update={"migrator_url": f"http://127.0.0.1:{free_port()}"}))


async def test_dry_run_returns_the_migrators_result(migrator, notifier) -> None:
    url, script = migrator
    result = await notifier.dry_run(url, DRY_RUN)
    assert [s.step_name for s in result.steps] == ["bump"]
    assert script.received[0]["migrationId"] == "chart-upgrade"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [(500, "boom", "answered 500"), (200, "not json", "cannot read"), (200, {"steps": "x"}, "cannot read")],
)
async def test_dry_run_failures_say_the_migrator_is_unavailable(migrator, notifier, status, body, reason) -> None:
    url, script = migrator
    script.status, script.body = status, body
    with pytest.raises(errors.MigratorUnavailable, match=reason):
        await notifier.dry_run(url, DRY_RUN)


async def test_dry_run_against_a_migrator_that_is_down_says_so(notifier) -> None:
    with pytest.raises(errors.MigratorUnavailable, match="could not be reached"):
        await notifier.dry_run(f"http://127.0.0.1:{free_port()}", DRY_RUN)


async def answer(request: Request) -> Response:
    return Response(status_code=202)


async def test_requests_past_max_in_flight_wait_for_a_free_turn() -> None:
    """While two requests are held, a third to the same Migrator waits, though one to another Migrator goes through."""
    release, received = asyncio.Event(), 0

    async def hold(request: Request) -> Response:
        nonlocal received
        received += 1
        await release.wait()
        return Response(status_code=202)

    port, quick_port = free_port(), free_port()
    dispatch = DISPATCH.model_copy(update={"migrator_url": f"http://127.0.0.1:{port}"})
    quick = DISPATCH.model_copy(update={"migrator_url": f"http://127.0.0.1:{quick_port}"})
    async with (
        serve(Starlette(routes=[Route("/dispatch-step", hold, methods=["POST"])]), port),
        serve(Starlette(routes=[Route("/dispatch-step", answer, methods=["POST"])]), quick_port),
    ):
        notifier = HttpMigratorNotifier(timeout_seconds=5.0, max_in_flight=2)
        try:
            sending = [asyncio.ensure_future(notifier.dispatch_step(dispatch)) for _ in range(3)]
            await eventually(lambda: received == 2, what="two held requests")
            await asyncio.wait_for(notifier.dispatch_step(quick), 2.0)  # a whole round trip meanwhile
            assert received == 2  # the third waits for a turn, not for a connection in httpx's pool
            release.set()
            await asyncio.gather(*sending)
            assert received == 3
        finally:
            release.set()
            await notifier.aclose()


async def test_a_migrator_holding_all_its_turns_does_not_hold_up_another() -> None:
    release, received = asyncio.Event(), 0

    async def hold(request: Request) -> Response:
        nonlocal received
        received += 1
        await release.wait()
        return Response(status_code=202)

    slow_port, quick_port = free_port(), free_port()
    slow = DISPATCH.model_copy(update={"migrator_url": f"http://127.0.0.1:{slow_port}"})
    quick = DISPATCH.model_copy(update={"migrator_url": f"http://127.0.0.1:{quick_port}"})
    async with (
        serve(Starlette(routes=[Route("/dispatch-step", hold, methods=["POST"])]), slow_port),
        serve(Starlette(routes=[Route("/dispatch-step", answer, methods=["POST"])]), quick_port),
    ):
        notifier = HttpMigratorNotifier(timeout_seconds=5.0, max_in_flight=2)
        try:
            held = [asyncio.ensure_future(notifier.dispatch_step(slow)) for _ in range(2)]
            await eventually(lambda: received == 2, what="both turns held")
            await asyncio.wait_for(notifier.dispatch_step(quick), 2.0)
            assert not any(h.done() for h in held)
            release.set()
            await asyncio.gather(*held)
        finally:
            release.set()
            await notifier.aclose()
