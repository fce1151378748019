"""For whoever runs Loom: liveness, readiness, process figures, and Prometheus metrics read from SQL at scrape time."""

import gc
import os
import re
import resource
import sys
import threading
import time
from typing import Any, Self

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import event
from sqlalchemy.engine import Engine

from loom_backend.api.deps import Admin, ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.api.prometheus import prometheus_text
from loom_backend.domain import Readiness, WireModel

router = APIRouter(tags=["ops"])
_STARTED = time.monotonic()


class _Statements:
    """SQL statements this process has sent, on every engine (read model and accounts): what a bench divides by
    time for queries per second, so per-viewer queries show up as they grow."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def sent(self, *_: Any) -> None:
        with self._lock:
            self.count += 1


_STATEMENTS = _Statements()
event.listen(Engine, "before_cursor_execute", _STATEMENTS.sent)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Whether it can do its work is /readyz."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something Loom needs is down; `checks` names it"}},
)
async def readyz(service: ServiceDep) -> Any:
    """Readiness: the database takes a write, Temporal answers with the namespace, and a worker polls the Runs."""
    readiness = await service.readiness()
    return JSONResponse(readiness.model_dump(mode="json"), status_code=200 if readiness.ready else 503)


class ProcessFigures(WireModel):
    """What grows when a process leaks: memory, threads, `sys.path` (every failed import walks it), gc counts."""

    pid: int
    uptime_seconds: float
    rss_bytes: int
    threads: int
    thread_groups: dict[str, int]  # Python threads by name (numbers dropped); `native`: the others (Temporal's core)
    sys_path_entries: int
    gc_counts: list[int]
    sql_statements: int

    @classmethod
    def now(cls) -> Self:
        return cls(
            pid=os.getpid(),
            uptime_seconds=round(time.monotonic() - _STARTED, 3),
            rss_bytes=_rss_bytes(),
            threads=(threads := _os_threads()),
            thread_groups=_thread_groups(threads),
            sys_path_entries=len(sys.path),
            gc_counts=list(gc.get_count()),
            sql_statements=_STATEMENTS.count,
        )


def _rss_bytes() -> int:
    """Resident memory now, from /proc on Linux; elsewhere the peak, which is what `resource` offers."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _thread_groups(os_threads: int) -> dict[str, int]:
    """Which threads there are: a pool that keeps growing shows up by its name."""
    groups: dict[str, int] = {}
    python_threads = threading.enumerate()
    for thread in python_threads:
        name = re.sub(r"[-_ ]?\(?\d+\)?", "", thread.name.split(" (")[0]).strip("-_ ") or "unnamed"
        groups[name] = groups.get(name, 0) + 1
    groups["native"] = max(0, os_threads - len(python_threads))
    return dict(sorted(groups.items(), key=lambda item: -item[1]))


def _os_threads() -> int:
    """Every thread of the process (Temporal's Rust core and thread pools too), not only Python's."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    except (OSError, StopIteration):
        return threading.active_count()


@router.get("/debug/process", response_model=ProcessFigures, responses=_errors(401, 403))
async def debug_process(_: Admin) -> Any:
    """This process's size for admins, so a soak (or an operator) sees growth that should not be there."""
    return ProcessFigures.now()


@router.get(
    "/prometheus",
    response_class=Response,
    responses=_errors(401, 403, 404, 422),
)
async def prometheus(service: ServiceDep, principal: Viewer) -> Response:
    """Prometheus text exposition, read from SQL at scrape time so every process answers the same."""
    snapshot = await service.prometheus_snapshot(principal)
    return Response(prometheus_text(snapshot), media_type=CONTENT_TYPE_LATEST)
