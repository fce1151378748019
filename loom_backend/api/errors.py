"""Error envelopes: the one shape every error answer has, and the mapping of typed errors to status codes."""

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from loom_backend import errors

WWW_AUTHENTICATE = 'Bearer realm="loom"'

_ERROR_STATUS: list[tuple[type[errors.LoomError], int]] = [
    (errors.NotFound, status.HTTP_404_NOT_FOUND),
    (errors.Conflict, status.HTTP_409_CONFLICT),
    (errors.InvalidPolicy, 422),
    (errors.InvalidInput, status.HTTP_400_BAD_REQUEST),
    (errors.MigratorUnavailable, status.HTTP_502_BAD_GATEWAY),
    (errors.Unauthenticated, status.HTTP_401_UNAUTHORIZED),
    (errors.Forbidden, status.HTTP_403_FORBIDDEN),
    (errors.ServiceUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (errors.TooManySignIns, status.HTTP_429_TOO_MANY_REQUESTS),
]


class ErrorDetail(BaseModel):
    field: str
    message: str
    rule: str | None = None


class ErrorBody(BaseModel):
    """The shape of every error Loom answers."""

    error: str
    message: str
    details: list[ErrorDetail] | None = None


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Declare a route's error answers in its OpenAPI, so clients (and the schema fuzz test) know every one."""
    described = {
        400: "The request breaks a rule; `details` names the field",
        401: "No valid session cookie or bearer token",
        403: "Authenticated, but not allowed: a role too low, another token's Migration, or a cookie-authenticated "
        "write from a page that is not Loom's (error `CrossSiteRequest`)",
        404: "Not found",
        409: "The Run or Candidate is not in a state that allows this",
        413: "The body is too large",
        422: "The request is malformed; `details` names each field",
        429: "Too many failed sign-ins for this account or address; try again after `Retry-After` seconds",
        502: "The Migrator could not be reached or answered something Loom cannot read",
        503: "Something Loom needs (Temporal, its database) is down; try again after `Retry-After` seconds",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in codes}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every error Loom answers has this shape: a stable code, a sentence, and per-field details."""
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return body


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": _field(tuple(e["loc"])), "rule": e["type"], "message": e["msg"]} for e in exc.errors()]
        too_many = any(d["rule"] == "too_long" and d["field"] == "candidates" for d in details)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse(
            error_body("too_many_candidates" if too_many else "invalid_request", summary, details),
            status_code=413 if too_many else 422,
        )

    @app.exception_handler(errors.LoomError)
    async def _domain_error(_: Request, exc: errors.LoomError) -> JSONResponse:
        code = next((c for kind, c in _ERROR_STATUS if isinstance(exc, kind)), 500)
        details = (
            [{"field": exc.field, "message": str(exc)}] if isinstance(exc, errors.InvalidInput) and exc.field else None
        )
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if isinstance(exc, errors.Unauthenticated) else None
        if isinstance(exc, errors.ServiceUnavailable | errors.TooManySignIns):
            headers = {"Retry-After": str(exc.retry_after_seconds)}
        return JSONResponse(error_body(type(exc).__name__, str(exc), details), status_code=code, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            message = "body: the request body is not valid UTF-8 JSON"
            details = [{"field": "body", "rule": "json_invalid", "message": message}]
            return JSONResponse(error_body("invalid_request", message, details), status_code=422)
        code = "body_too_large" if exc.status_code == 413 else "http_error"
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            error_body(
                "internal_error", "Loom hit an unexpected error; the request was not applied. See the server log."
            ),
            status_code=500,
        )
