"""Maps every error that leaves the process to an RFC 9457 `application/problem+json` response."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from qortex.core.errors import PROBLEM_BASE, Overloaded, QortexError, problem_body
from qortex.web.asgi import HttpMiddleware

PROBLEM_JSON = "application/problem+json"


class ProblemDetails(BaseModel):
    """What every error answer holds (RFC 9457), as the OpenAPI document describes it."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


# Every error answer of the API routes is a problem: documented so, instead of FastAPI's own 422 body
# (`{"detail": [...]}` as application/json), which no answer has, so that generated clients can read them.
# One schema that every error refers to (qortex.web.openapi adds it to the document), so clients get one type.
PROBLEM_SCHEMA_NAME = "ProblemDetails"
PROBLEM_CONTENT: dict[str, Any] = {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA_NAME}"}}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {"description": "An RFC 9457 problem (the Errors section of docs/api.md)", "content": PROBLEM_CONTENT}
}
log = structlog.get_logger("qortex.web")

_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    429: ("rate-limited", "Too many requests"),
}


def request_id_of(scope_or_request: Request | dict[str, Any]) -> str | None:
    scope = scope_or_request.scope if isinstance(scope_or_request, Request) else scope_or_request
    value = scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    request_id: str | None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = problem_body(
        type_=PROBLEM_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        instance=request_id,
        errors=errors,
    )
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in error.errors()
    ]


async def on_qortex_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, QortexError)
    return problem_response(
        status=error.status,
        slug=error.slug,
        title=error.title,
        detail=error.detail,
        request_id=request_id_of(request),
        errors=error.errors,
        headers=error.headers,
    )


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = _field_errors(error)
    if any(e["type"] == "json_invalid" for e in errors):
        reasons = [str(e.get("ctx", {}).get("error", "")) for e in error.errors() if e.get("type") == "json_invalid"]
        detail = "the body is not valid JSON (NaN and Infinity are not JSON numbers, keys must not repeat)"
        if any(reasons):
            detail += ": " + "; ".join(r for r in reasons if r)
        return problem_response(
            status=400,
            slug="malformed-body",
            title="Malformed request body",
            detail=detail,
            request_id=request_id_of(request),
            errors=errors,
        )
    fields = ", ".join(".".join(e["loc"]) for e in errors)
    return problem_response(
        status=422,
        slug="invalid-input",
        title="Invalid input",
        detail=f"invalid fields: {fields}",
        request_id=request_id_of(request),
        errors=errors,
    )


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    slug, title = _HTTP_SLUGS.get(error.status_code, ("http-error", "HTTP error"))
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        status=error.status_code,
        slug=slug,
        title=title,
        detail=str(error.detail),
        request_id=request_id_of(request),
        headers=headers,
    )


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route that matched),
    with HEAD wherever GET is served (HeadAsGetMiddleware answers it)."""
    routes = request.app.router.routes
    methods = {
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _on_unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled_error", request_id=request_id_of(request), error_type=type(error).__name__)
    return problem_response(
        status=500,
        slug="internal-error",
        title="Internal server error",
        detail="the server failed to answer this request; it has been logged",
        request_id=request_id_of(request),
    )


class UnexpectedErrorMiddleware(HttpMiddleware):
    """Answers an unhandled error with the 500 problem inside the request-id and security-header layers.

    Starlette's own handler for `Exception` runs in its outermost middleware, whose answer would
    bypass them: a 500 without `X-Request-ID` cannot be matched to its log line. After the response
    has started nothing can be answered any more, so the error goes on to the server.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except asyncio.CancelledError:
            # The server cancels what is still running when its shutdown grace ends: answer that as the
            # retryable 503 it is (the server's own answer would be a bare 500), then let the cancel go on.
            if not started:
                shutting_down = Overloaded(
                    "the server stopped before this request finished; retry (with the same Idempotency-Key, if "
                    "any: the request may have been stored)",
                    retry_after_seconds=1,
                )
                await (await on_qortex_error(Request(scope), shutting_down))(scope, receive, send)
            raise
        except ClientDisconnect:
            # The client went away before its body ended (read outside FastAPI's body parsing, which answers
            # this 400 itself): no bug to log, and the answer goes nowhere.
            if started:
                raise
            gone = problem_response(
                status=400,
                slug="bad-request",
                title="Bad request",
                detail="the client disconnected before the request body ended",
                request_id=request_id_of(Request(scope)),
            )
            await gone(scope, receive, send)
        except Exception as error:
            if started:
                raise
            response = await _on_unexpected_error(Request(scope), error)
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QortexError, on_qortex_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
