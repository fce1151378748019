"""Outgoing webhooks: add (the secret is in this answer only), list with how deliveries went, remove. Admins only."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from loom_backend.api.deps import Admin, ServiceDep
from loom_backend.api.errors import _errors
from loom_backend.webhooks import Webhook, WebhookCreated, WebhookRequest

router = APIRouter(tags=["webhooks"])
HookId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.post(
    "/webhooks", status_code=201, response_model=WebhookCreated, responses=_errors(400, 401, 403, 404, 413, 422, 503)
)
async def create(body: WebhookRequest, service: ServiceDep, principal: Admin) -> Any:
    return await service.create_webhook(principal, body)


@router.get("/webhooks", response_model=list[Webhook], responses=_errors(401, 403, 503))
async def list_all(service: ServiceDep, principal: Admin) -> Any:
    return await service.list_webhooks(principal)


@router.delete("/webhooks/{hook_id}", status_code=204, responses=_errors(401, 403, 404, 422, 503))
async def remove(hook_id: HookId, service: ServiceDep, principal: Admin) -> None:
    await service.delete_webhook(principal, hook_id)
