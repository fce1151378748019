"""Typed dependencies of the routes: the service, the access rules, and who is calling.

All async, so FastAPI resolves them on the event loop: a plain function would cost a thread hop per request.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request

from loom_backend import errors
from loom_backend.auth import AccessControl, Principal, Role
from loom_backend.service import LoomService

SESSION_COOKIE = "loom_session"


async def get_service(request: Request) -> LoomService:
    """The service `create_api` was given a provider of, resolved per request."""
    service: LoomService = request.app.state.get_service()
    return service


async def get_access(request: Request) -> AccessControl:
    access: AccessControl = request.app.state.get_access()
    return access


ServiceDep = Annotated[LoomService, Depends(get_service)]
AccessDep = Annotated[AccessControl, Depends(get_access)]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and 0 < len(token) <= 512 else None


async def migrator_principal(request: Request, access: AccessDep) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise errors.Unauthenticated(
            "Migrator routes need `Authorization: Bearer <token>`; an admin creates one with "
            "`loom token create <migrator-app>`"
        )
    principal = access.recent_bearer(token) or await asyncio.to_thread(access.bearer, token)
    if principal is None:
        raise errors.Unauthenticated("The bearer token is not valid: unknown or revoked")
    if not principal.is_migrator:
        raise errors.Forbidden("This is an operator token; Migrator routes need a Migrator token")
    return principal


async def current_principal(request: Request, access: AccessDep) -> Principal:
    """Proxy header (when configured), then session cookie, then bearer token."""
    if access.proxy_header and (name := request.headers.get(access.proxy_header)):
        return await asyncio.to_thread(access.proxy_user, name)
    token = bearer_token(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and len(cookie) <= 256:
        principal = await asyncio.to_thread(access.session, cookie)
        if principal is not None:
            return principal
        if token is None:
            raise errors.Unauthenticated("The session has expired or was signed out; sign in again")
    if token is not None:
        principal = access.recent_bearer(token) or await asyncio.to_thread(access.bearer, token)
        if principal is None:
            raise errors.Unauthenticated("The bearer token is not valid: unknown or revoked")
        return principal
    raise errors.Unauthenticated("Sign in (POST /api/auth/login) or send `Authorization: Bearer <operator token>`")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
MigratorPrincipal = Annotated[Principal, Depends(migrator_principal)]


def role(needed: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def authorized(principal: CurrentPrincipal) -> Principal:
        AccessControl.require_role(principal, needed)
        return principal

    return authorized


Viewer = Annotated[Principal, Depends(role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(role(Role.OPERATOR))]


async def actor(principal: Operator) -> str:
    """Who an operator action is recorded as: the authenticated operator's name."""
    return principal.name


Actor = Annotated[str, Depends(actor)]
MigrationId = Annotated[str, Path(max_length=128)]
CandidateId = Annotated[str, Path(max_length=128)]
StepName = Annotated[str, Path(max_length=128)]
