"""`loom`: run the whole thing, a worker, schema upgrades, accounts and tokens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from loom_backend.settings import Settings, get_settings

if TYPE_CHECKING:
    from loom_backend.auth import AccessControl

ROOT = Path(__file__).resolve().parents[1]
DEMO_MIGRATOR = "demo-migrator"
# Where `make setup` puts bun; Reflex builds the board with it (the machine's node is often too old).
LOCAL_BUN = ROOT / ".tools/node_modules/bun/bin/bun.exe"


class BoardSetupError(RuntimeError):
    """What the board's build is missing, in words that say what to set."""


def board_env(environ: Mapping[str, str], local_bun: Path = LOCAL_BUN) -> dict[str, str]:
    """The environment Reflex needs to build and serve the board, so `loom up` works without `make`:
    REFLEX_BUN_PATH set to the project's bun when unset, and Reflex's telemetry off."""
    env = dict(environ)
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    given = env.get("REFLEX_BUN_PATH")
    if given:
        if not Path(given).is_file():
            raise BoardSetupError(f"REFLEX_BUN_PATH={given} is not a file; point it at a bun executable (bun >= 1.2)")
        return env
    if local_bun.is_file():
        env["REFLEX_BUN_PATH"] = str(local_bun)
        return env
    if shutil.which("bun", path=env.get("PATH")):
        return env
    raise BoardSetupError(
        "Loom's board is built with bun, and none was found: set REFLEX_BUN_PATH to a bun executable, "
        f"or install one where Loom looks for it (npm install --prefix {ROOT / '.tools'} bun@1.4.4, "
        f"which makes {local_bun})"
    )


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
    user = commands.add_parser("user", help="Built-in operator accounts")
    user_commands = user.add_subparsers(dest="action", required=True)
    add_user = user_commands.add_parser("add", help="Add an account (the password is prompted unless --password)")
    add_user.add_argument("name")
    add_user.add_argument("--role", choices=["viewer", "operator", "admin"], required=True)
    add_user.add_argument("--password", help="Avoid on shared machines: it lands in the shell history")
    token = commands.add_parser("token", help="Migrator and operator API tokens")
    token_commands = token.add_subparsers(dest="action", required=True)
    create_token = token_commands.add_parser(
        "create", help="Create a token and print it once: `loom token create APP` for a Migrator"
    )
    create_token.add_argument("migrator_app", nargs="?", help="The Migrator the token is for")
    create_token.add_argument("--operator", metavar="NAME", help="Create an operator token for NAME instead")
    create_token.add_argument("--role", choices=["viewer", "operator", "admin"], help="Role of an operator token")
    token_commands.add_parser("list", help="List tokens (never their secrets)")
    revoke = token_commands.add_parser("revoke", help="Revoke a token by its id")
    revoke.add_argument("id")
    webhook = commands.add_parser("webhook", help="Outgoing notifications to Slack or any HTTP receiver")
    webhook_commands = webhook.add_subparsers(dest="action", required=True)
    add_hook = webhook_commands.add_parser("add", help="Add a webhook and print its signing secret once")
    add_hook.add_argument("url")
    add_hook.add_argument(
        "--events",
        required=True,
        help="Comma-separated: review_waiting, step_failed, step_stuck, rollout_paused, migration_completed",
    )
    add_hook.add_argument("--migration", metavar="ID", help="Only this Migration's events")
    add_hook.add_argument(
        "--filter", metavar="KEY=VALUE", action="append", default=[], help="Only Candidates with this metadata value"
    )
    webhook_commands.add_parser("list", help="List webhooks and how their deliveries went (never their secrets)")
    remove_hook = webhook_commands.add_parser("remove", help="Remove a webhook by its id")
    remove_hook.add_argument("id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A line per Migrator request (httpx logs each at INFO) drowns what matters and costs CPU on every Step.
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    if args.command == "db":
        from loom_backend.bootstrap import build_store

        build_store(settings)
        print(f"Schema is up to date at {settings.sqlalchemy_url}")
        return 0
    if args.command == "user":
        return _add_user(settings, args.name, args.role, args.password)
    if args.command == "token":
        return _token(settings, args)
    if args.command == "webhook":
        return asyncio.run(_webhook(settings, args))
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


def _access(settings: Settings) -> AccessControl:
    from loom_backend.auth import AccessControl
    from loom_backend.bootstrap import build_auth_store, build_store

    return AccessControl(build_auth_store(settings, build_store(settings)))


def _add_user(settings: Settings, name: str, role: str, password: str | None) -> int:
    from loom_backend.domain import Role
    from loom_backend.errors import InvalidInput

    if password is None:
        password = getpass.getpass(f"Password for {name}: ")
        if password != getpass.getpass("Again: "):
            print("The passwords differ; nothing was changed.", file=sys.stderr)
            return 2
    try:
        _access(settings).add_user(name, Role(role), password)
    except InvalidInput as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"Added {role} {name}.")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from loom_backend.domain import Role, TokenKind
    from loom_backend.errors import InvalidInput

    access = _access(settings)
    if args.action == "list":
        for record in access.store.list_tokens():
            state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "active"
            role = f" ({record.role.value})" if record.role else ""
            print(
                f"{record.id}  {record.kind.value:<8}  {record.name}{role}  created {record.created_at:%Y-%m-%d}  {state}"
            )
        return 0
    if args.action == "revoke":
        from datetime import UTC, datetime

        if not access.store.revoke_token(args.id, datetime.now(UTC)):
            print(f"No active token with id {args.id!r}; see `loom token list`.", file=sys.stderr)
            return 2
        print(f"Revoked token {args.id}.")
        return 0
    if (args.operator is None) == (args.migrator_app is None):
        print(
            "Name either a Migrator app (`loom token create APP`) or an operator (`--operator NAME`).", file=sys.stderr
        )
        return 2
    try:
        if args.operator is not None:
            if args.role is None:
                print("An operator token needs --role viewer|operator|admin.", file=sys.stderr)
                return 2
            record, secret = access.create_token(TokenKind.OPERATOR, args.operator, Role(args.role))
        else:
            record, secret = access.create_token(TokenKind.MIGRATOR, args.migrator_app)
    except InvalidInput as exc:
        print(exc, file=sys.stderr)
        return 2
    print(secret)
    print(
        f"Token {record.id} for {record.kind.value} {record.name}: shown once, Loom keeps only its hash. "
        + ("Give it to the Migrator as LOOM_TOKEN." if record.kind == TokenKind.MIGRATOR else ""),
        file=sys.stderr,
    )
    return 0


async def _webhook(settings: Settings, args: argparse.Namespace) -> int:
    """`loom webhook add|list|remove`, on the database as `loom token` is (the machine's admin needs no sign-in)."""
    from pydantic import ValidationError

    from loom_backend.bootstrap import build_store, build_webhooks
    from loom_backend.errors import LoomError
    from loom_backend.notifications import WebhookAdmin
    from loom_backend.webhooks import WebhookRequest

    store = await asyncio.to_thread(build_store, settings)
    hooks = build_webhooks(settings, store)
    assert hooks is not None
    admin = WebhookAdmin(*hooks)
    try:
        if args.action == "list":
            for hook in await admin.list():
                scope = f" migration={hook.migration_id}" if hook.migration_id else ""
                scope += "".join(f" {k}={v}" for k, v in hook.filter.items())
                state = f"delivered {hook.delivered}, failed {hook.failed}"
                if hook.pending:
                    state += f", pending (attempt {hook.attempts})"
                if hook.last_status is not None or hook.last_error:
                    state += f", last {hook.last_status or 'no answer'}"
                    state += f": {hook.last_error}" if hook.last_error else ""
                print(f"{hook.id}  {hook.url}  {','.join(hook.events)}{scope}  {state}")
            return 0
        if args.action == "remove":
            await admin.remove(args.id)
            print(f"Removed webhook {args.id}.")
            return 0
        pairs = [f.split("=", 1) for f in args.filter]
        if any(len(p) != 2 for p in pairs):
            print("--filter takes KEY=VALUE, e.g. --filter owner=team-a", file=sys.stderr)
            return 2
        if args.migration and await asyncio.to_thread(store.get_migration, args.migration, False) is None:
            print(f"No Migration {args.migration!r}; see GET /api/migrations.", file=sys.stderr)
            return 2
        request = WebhookRequest(
            url=args.url,
            events=[e.strip() for e in args.events.split(",") if e.strip()],
            migration_id=args.migration,
            filter=dict(pairs),
        )
        created = await admin.create(f"cli:{getpass.getuser()}", request)
    except ValidationError as exc:
        print("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), file=sys.stderr)
        return 2
    except LoomError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        await hooks[1].aclose()
    print(created.secret)
    print(
        f"Webhook {created.id} posts to {created.url}: the secret above is shown once; the receiver verifies "
        "X-Loom-Signature with it (loom_migrator.signing, as Migrators do).",
        file=sys.stderr,
    )
    return 0


WEB_DIR = ROOT / ".web"
BUILD_STAMP = WEB_DIR / "loom-build.json"
BUILD_LOCK = ROOT / ".web-build.lock"


def board_fingerprint(env: Mapping[str, str]) -> str:
    """What the built board depends on: its sources, Reflex's version and the URL its pages call back (baked in)."""
    import hashlib
    from importlib.metadata import version

    port = env.get("LOOM_PORT", "3000")
    digest = hashlib.sha256()
    digest.update(f"reflex {version('reflex')}\n{env.get('LOOM_PUBLIC_URL', f'http://localhost:{port}')}\n".encode())
    sources = [ROOT / "rxconfig.py", *sorted((ROOT / "loom_ui").rglob("*.py")), *sorted((ROOT / "assets").rglob("*"))]
    for path in sources:
        if path.is_file():
            digest.update(f"{path.relative_to(ROOT)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_board_built(env: Mapping[str, str]) -> bool:
    """Build the board's frontend unless this installation already has the build for these sources.

    Replicas started from one installation share `.web`: the first builds under a file lock, the others wait for
    it and reuse the build. Replicas must share LOOM_PUBLIC_URL (their load balancer's), since the pages hold it.
    """
    import fcntl
    import json

    fingerprint = board_fingerprint(env)
    with open(BUILD_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(BUILD_STAMP.read_text()) == {"fingerprint": fingerprint, "build": _build_identity()}:
                print("The board is built already (.web); reusing it")
                return True
        print("Building the board (once per installation and version)...")
        command = [sys.executable, "-m", "reflex", "export", "--frontend-only", "--no-zip", "--env", "prod"]
        if subprocess.run(command, cwd=ROOT, env=dict(env)).returncode != 0:
            print("Building the board failed; see the output above.", file=sys.stderr)
            return False
        BUILD_STAMP.write_text(json.dumps({"fingerprint": fingerprint, "build": _build_identity()}))
        return True


def _build_identity() -> int:
    """When the build directory was made: a build by other means (`reflex run`) replaces it, and the stamp with it."""
    return (WEB_DIR / "build/client").stat().st_mtime_ns


def board_command(port: int, host: str = "0.0.0.0") -> list[str]:
    """One process serving the built board, its websocket and /api on one port (what `reflex run --env prod` runs,
    without rebuilding the frontend first)."""
    factory = ["--factory", "loom_ui.loom_ui:app"]
    return [sys.executable, "-m", "uvicorn", *factory, "--host", host, "--port", str(port), "--log-level", "warning"]


def serve_env(env: Mapping[str, str]) -> dict[str, str]:
    """Reflex's own switches for a production backend that serves the compiled frontend and compiles nothing."""
    return {
        **env,
        "REFLEX_ENV_MODE": "prod",
        "__REFLEX_SKIP_COMPILE": "true",
        "__REFLEX_MOUNT_FRONTEND_COMPILED_APP": "true",
    }


def _prepare_access(settings: Settings) -> str | None:
    """First start: an admin account (its password printed once); every start: a fresh token for the demo Migrator.

    The demo's previous token is revoked, so the new one takes over the demo Migration when it announces.
    """
    from datetime import UTC, datetime

    from loom_backend.domain import TokenKind

    access = _access(settings)
    password = access.ensure_first_admin("admin")
    if password is not None:
        print(f"Created the admin account: sign in as admin with password {password} (shown once)")
    if not settings.demo:
        return None
    access.store.revoke_tokens_named(TokenKind.MIGRATOR, DEMO_MIGRATOR, datetime.now(UTC))
    _, secret = access.create_token(TokenKind.MIGRATOR, DEMO_MIGRATOR)
    return secret


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


async def _answers(url: str) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def _start_demo(settings: Settings, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "examples.demo_migrator",
        "--port",
        str(settings.demo_port),
        "--loom-url",
        f"http://127.0.0.1:{port}",
        "--data-dir",
        str(settings.data_dir / "demo"),
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env)


async def _up(settings: Settings) -> int:
    """Start the embedded Temporal server (unless one is configured), the demo Migrator and the app; stop all on exit."""
    from loom_backend.execution.dev_server import embedded_temporal

    try:
        env = board_env(os.environ)
    except BoardSetupError as exc:
        print(exc, file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    demo_token = await asyncio.to_thread(_prepare_access, settings)
    async with contextlib.AsyncExitStack() as stack:
        if settings.temporal_address is None:
            address = await stack.enter_async_context(embedded_temporal(settings))
            env["LOOM_TEMPORAL_ADDRESS"] = address
            print(f"Temporal dev server at {address} (state in {settings.data_dir / 'temporal.db'})")
        port = int(env.get("LOOM_PORT", "3000"))
        print(f"Loom is starting; it will be at http://localhost:{port}")
        if not await asyncio.to_thread(ensure_board_built, env):
            return 1
        children: list[subprocess.Popen[bytes]] = [subprocess.Popen(board_command(port), cwd=ROOT, env=serve_env(env))]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready = False
        while not stop.is_set() and all(child.poll() is None for child in children):
            if not ready and await _answers(f"http://127.0.0.1:{port}/api/healthz"):
                ready = True
                print(f"Loom is ready: http://localhost:{port}")
                if settings.demo and demo_token is not None:
                    # Started once Loom answers, so its first announcement lands instead of retrying.
                    children.append(_start_demo(settings, port, {**env, "LOOM_TOKEN": demo_token}))
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
