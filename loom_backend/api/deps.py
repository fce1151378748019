"""Typed dependencies of the routes: the service, and who is calling, as the service decides it.

The routes only translate: headers and cookies into `Credentials`, the service's answer into a `Principal`.
`Viewer` and `Operator` ask the service's role rule before the body is validated, so a caller who may not call
a route learns that first (403 before 422), as before; the use case asks again.
All async, so FastAPI resolves them on the event loop: a plain function would cost a thread hop per request.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request

from loom_backend.domain import SESSION_COOKIE, Credentials, Principal, Role
from loom_backend.service import LoomService


async def get_service(request: Request) -> LoomService:
    """The service `create_api` was given a provider of, resolved per request."""
    service: LoomService = request.app.state.get_service()
    return service


ServiceDep = Annotated[LoomService, Depends(get_service)]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and 0 < len(token) <= 512 else None


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_source(request: Request) -> str | None:
    """The page a browser says the request came from: its Origin, or without one its Referer."""
    origin = request.headers.get("origin")
    return origin if origin is not None else request.headers.get("referer")


def client_address(request: Request) -> str:
    """The peer's address, as sign-in throttling counts it (a forwarded-for header is anyone's to write)."""
    return request.client.host if request.client else ""


def credentials_of(request: Request, service: LoomService) -> Credentials:
    proxy = service.proxy_header
    return Credentials(
        proxy_user=request.headers.get(proxy) if proxy else None,
        session=request.cookies.get(SESSION_COOKIE),
        bearer=bearer_token(request),
        writes=request.method not in SAFE_METHODS,
        source=request_source(request),
        host=request.headers.get("host"),
    )


async def current_principal(request: Request, service: ServiceDep) -> Principal:
    return await service.authenticate(credentials_of(request, service))


async def migrator_principal(request: Request, service: ServiceDep) -> Principal:
    return await service.authenticate_migrator(bearer_token(request))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
MigratorPrincipal = Annotated[Principal, Depends(migrator_principal)]


def role(needed: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def authorized(principal: CurrentPrincipal) -> Principal:
        LoomService.authorize(principal, needed)
        return principal

    return authorized


Viewer = Annotated[Principal, Depends(role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(role(Role.ADMIN))]
MigrationId = Annotated[str, Path(max_length=128)]
CandidateId = Annotated[str, Path(max_length=128)]
StepName = Annotated[str, Path(max_length=128)]
