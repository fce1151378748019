"""`loom`: run the whole thing, a worker, or schema upgrades."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from loom_backend.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loom", description="Loom: the control plane for large migrations.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="Run Loom: Temporal dev server, the board and API on one port, the demo Migrator")
    commands.add_parser("worker", help="Run a Temporal worker for Runs on its own, for scale-out")
    api = commands.add_parser("api", help="Serve only the HTTP API (and an in-process worker), without the board")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    db = commands.add_parser("db", help="Database schema")
    db.add_argument("action", choices=["upgrade"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if args.command == "db":
        from loom_backend.bootstrap import build_store

        build_store(settings)
        print(f"Schema is up to date at {settings.sqlalchemy_url}")
        return 0
    if args.command == "worker":
        asyncio.run(_worker(settings))
        return 0
    if args.command == "api":
        return _serve_api(settings, args.host, args.port)
    return asyncio.run(_up(settings))


async def _worker(settings: Settings) -> None:
    from loom_backend.bootstrap import running

    async with running(settings, run_worker=True):
        await asyncio.Event().wait()


def _serve_api(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from loom_backend.api import create_api
    from loom_backend.bootstrap import current_service, running

    app = create_api(current_service)

    @contextlib.asynccontextmanager
    async def lifespan(_app):  # type: ignore[no-untyped-def]
        async with running(settings):
            yield

    app.router.lifespan_context = lifespan
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


async def _up(settings: Settings) -> int:
    """Start the embedded Temporal server (unless one is configured), the demo Migrator and the app; stop all on exit."""
    from loom_backend.execution.dev_server import embedded_temporal

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    async with contextlib.AsyncExitStack() as stack:
        if settings.temporal_address is None:
            address = await stack.enter_async_context(embedded_temporal(settings))
            env["LOOM_TEMPORAL_ADDRESS"] = address
            print(f"Temporal dev server at {address} (state in {settings.data_dir / 'temporal.db'})")
        port = int(env.get("LOOM_PORT", "3000"))
        children: list[subprocess.Popen[bytes]] = []
        if settings.demo:
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "examples.demo_migrator",
                        "--port",
                        str(settings.demo_port),
                        "--loom-url",
                        f"http://127.0.0.1:{port}",
                        "--data-dir",
                        str(settings.data_dir / "demo"),
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        reflex = [sys.executable, "-m", "reflex", "run", "--env", "prod", "--single-port", "--frontend-port", str(port)]
        children.append(subprocess.Popen(reflex, cwd=ROOT, env=env))
        print(f"Loom is starting: the board will be at http://localhost:{port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set() and all(child.poll() is None for child in children):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        return 0 if stop.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
