"""ASGI middleware in front of the routes."""

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom_backend.api.errors import error_body

MAX_BODY_BYTES = 10 * 1024 * 1024
PREFIX = "/api"


class RefuseNulInUrl:
    """A NUL character in the path or the query is refused with 422 before any route: PostgreSQL cannot compare
    with one and no id or filter holds one. (Bodies: every wire model refuses NUL in its fields.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            query = scope.get("query_string", b"").lower()
            where = "path" if "\x00" in scope["path"] else "query" if b"%00" in query or b"\x00" in query else None
            if where is not None:
                message = f"{where}: must not contain NUL characters (\\x00)"
                details = [{"field": where, "rule": "nul_character", "message": message}]
                await JSONResponse(error_body("invalid_request", message, details), status_code=422)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuse bodies over the limit with 413 before they are read into memory.

    A declared Content-Length over the limit is refused at once. A streamed (chunked) body trips the limit while
    the route reads it; FastAPI turns any other exception raised then into "the body could not be parsed" (a 422),
    so the limit raises an HTTPException, which FastAPI passes on to the error handlers as the 413 it is.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:  # read outside a route's body parsing: nothing was answered yet
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(error_body("body_too_large", BodyTooLarge(self.max_bytes).detail), status_code=413)
        await response({"type": "http"}, _no_receive, send)


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request bodies are limited to {max_bytes // (1024 * 1024)} MB")


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
