"""For whoever runs Loom: a health check, and Prometheus metrics read from SQL at scrape time."""

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from loom_backend.api.deps import ServiceDep, Viewer
from loom_backend.api.errors import _errors
from loom_backend.api.prometheus import prometheus_text

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/prometheus",
    response_class=Response,
    responses=_errors(401, 403, 404, 422),
)
async def prometheus(service: ServiceDep, principal: Viewer) -> Response:
    """Prometheus text exposition, read from SQL at scrape time so every process answers the same."""
    snapshot = await service.prometheus_snapshot(principal)
    return Response(prometheus_text(snapshot), media_type=CONTENT_TYPE_LATEST)
