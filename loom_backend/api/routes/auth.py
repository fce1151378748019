"""Signing in and out: built-in accounts get a `loom_session` cookie; GET /auth/me says who is calling."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from loom_backend import errors
from loom_backend.api.deps import CurrentPrincipal, ServiceDep, client_address, request_source
from loom_backend.api.errors import _errors
from loom_backend.domain import SESSION_COOKIE, Identity, LoginRequest, local_path
from loom_backend.service import LoomService

router = APIRouter(tags=["auth"])
NO_NUL = r"^[^\x00]*$"


def refuse_other_sites(request: Request, service: LoomService) -> None:
    """A page of another site must not sign a browser in (login CSRF): the rule cookie-authenticated writes obey.

    Without Origin or Referer the request is no browser's (a script signing in), so it is let through here.
    """
    service.check_origin(request_source(request), request.headers.get("host"), required=False)


def _set_session_cookie(response: Response, service: LoomService, secret: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=service.session_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=service.secure_cookie,
    )


@router.post("/auth/login", response_model=Identity, responses=_errors(401, 403, 413, 422, 429))
async def login(request: Request, body: LoginRequest, service: ServiceDep) -> Any:
    """Check a built-in account's password; answer with who signed in and set the `loom_session` cookie."""
    refuse_other_sites(request, service)
    secret, principal = await service.login(body.username, body.password, client_address(request))
    response = JSONResponse(Identity.of(principal).model_dump(mode="json"))
    _set_session_cookie(response, service, secret)
    return response


@router.post(
    "/auth/login-form",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "To `next` when signed in; back to /login?failed=1 when not"},
        **_errors(403, 413, 422, 429),
    },
)
async def login_form(
    request: Request,
    service: ServiceDep,
    username: Annotated[str, Form(max_length=128, pattern=NO_NUL)] = "",
    password: Annotated[str, Form(max_length=1024, pattern=NO_NUL)] = "",
    next_: Annotated[str, Form(alias="next", max_length=2048, pattern=NO_NUL)] = "/",
) -> Response:
    """The sign-in page's plain HTML form: the browser posts it and follows the redirect, cookie set."""
    refuse_other_sites(request, service)
    target = local_path(next_)
    try:
        secret, _ = await service.login(username, password, client_address(request))
    except errors.Unauthenticated:
        query = urlencode({"failed": "1", "username": username, "next": target})
        return RedirectResponse(f"/login?{query}", status_code=303)
    response = RedirectResponse(target, status_code=303)
    _set_session_cookie(response, service, secret)
    return response


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, service: ServiceDep) -> Response:
    """End this browser's session (if any) and clear its cookie."""
    await service.logout(request.cookies.get(SESSION_COOKIE) or "")
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=service.secure_cookie)
    return response


@router.get("/auth/me", response_model=Identity, responses=_errors(401))
async def me(principal: CurrentPrincipal) -> Any:
    return Identity.of(principal)
