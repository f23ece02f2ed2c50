"""Pure ASGI middleware: request ids, a body size limit enforced while the body streams in, HEAD as GET."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qortex.web.asgi import HttpMiddleware
from qortex.web.problems import problem_response

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware(HttpMiddleware):
    """Gives every request an id (the client's, if well-formed) and echoes it as `X-Request-ID`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        offered = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = offered if offered and _CLIENT_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class _BodyTooLarge(HTTPException):
    # An HTTPException, because FastAPI turns any other error raised while reading a body into a 400.
    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_too_large_detail(max_bytes))


def _too_large_detail(max_bytes: int) -> str:
    return f"the request body exceeds the limit of {max_bytes} bytes"


class BodySizeLimitMiddleware(HttpMiddleware):
    """Refuses bodies above `max_bytes` with 413: at once from Content-Length, else as chunks arrive."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            # RFC 9110: digits only; int() would also take signs, spaces and underscores.
            if not declared.isdigit():
                await self._refuse(scope, receive, send, status=400, detail="Content-Length is not a number")
                return
            # Compared as digits first: int() refuses strings of more than 4,300 digits.
            significant = declared.lstrip(b"0")
            if len(significant) > len(str(self.max_bytes)) or int(significant or b"0") > self.max_bytes:
                await self._refuse(scope, receive, send, status=413, detail=_too_large_detail(self.max_bytes))
                return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await self._refuse(scope, receive, send, status=413, detail=_too_large_detail(self.max_bytes))

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, status: int, detail: str) -> None:
        slug, title = (
            ("payload-too-large", "Request body too large") if status == 413 else ("bad-request", "Bad request")
        )
        request_id = scope.get("state", {}).get("request_id")
        response = problem_response(
            status=status,
            slug=slug,
            title=title,
            detail=detail,
            request_id=request_id,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


ORIGINAL_METHOD = "qortex.original_method"


class HeadAsGetMiddleware(HttpMiddleware):
    """HEAD is answered wherever GET is (RFC 9110, 9.3.2): the GET route runs and its body is dropped.

    FastAPI routes declare GET only, and load balancers often probe health with HEAD.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET", ORIGINAL_METHOD: "HEAD"}, receive, send_headers_only)


def request_method(scope: Scope) -> str:
    """The method the client sent (HEAD stays HEAD for signatures and audit records)."""
    return str(scope.get(ORIGINAL_METHOD, scope["method"]))
