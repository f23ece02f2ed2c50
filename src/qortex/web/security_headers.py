"""Security headers on every response, problems and 404s included (pure ASGI), and CORS.

The API answers JSON only, so its Content-Security-Policy allows nothing. The interactive docs
(`/docs`, `/redoc`) are HTML pages that load Swagger UI and ReDoc from cdn.jsdelivr.net: they get a
policy allowing exactly those scripts, plus their one inline script by its SHA-256 (computed from
the page as served, so it cannot drift from what FastAPI renders), inline styles, which both UIs
inject at run time, ReDoc's fonts and web worker, and fetching the OpenAPI document from this
origin. A header a route set itself is left as it is.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qortex.web.asgi import HttpMiddleware
from qortex.web.middleware import ORIGINAL_METHOD
from qortex.web.openapi import HEADERS as RESPONSE_HEADERS
from qortex.web.problems import problem_response

API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
_CDN = "https://cdn.jsdelivr.net"
_FAVICON = "https://fastapi.tiangolo.com"

COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_csp(html: bytes) -> str:
    """The policy for a docs page: its CDN assets and the exact inline scripts it contains."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_CDN} {hashes}".rstrip(),
            f"style-src {_CDN} https://fonts.googleapis.com 'unsafe-inline'",
            f"img-src 'self' data: {_CDN} {_FAVICON}",
            "font-src https://fonts.gstatic.com",
            "worker-src blob:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _with_headers(message: Message, extra: list[tuple[bytes, bytes]]) -> Message:
    headers = list(message.get("headers", []))
    present = {name.lower() for name, _ in headers}
    headers.extend((name, value) for name, value in extra if name not in present)
    return {**message, "headers": headers}


class SecurityHeadersMiddleware(HttpMiddleware):
    """Adds HSTS, nosniff, frame denial, CSP, no-referrer and `Cache-Control: no-store` to every response."""

    def __init__(self, app: ASGIApp, *, docs_paths: frozenset[str] = DOCS_PATHS) -> None:
        super().__init__(app)
        self.docs_paths = docs_paths

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in self.docs_paths:
            await self._docs_page(scope, receive, send)
            return
        api_headers = [*COMMON_HEADERS, (b"content-security-policy", API_CSP.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, api_headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The page is small and its policy depends on its content, so hold it until it is complete. A HEAD
        # is rendered as a GET here, so that it gets the same policy, and its body dropped on the way out.
        head = scope["method"] == "HEAD"
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffering_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            html = b"".join(chunks)
            csp = docs_csp(html).encode()
            await send(_with_headers(start, [*COMMON_HEADERS, (b"content-security-policy", csp)]))
            await send({"type": "http.response.body", "body": b"" if head else html, "more_body": False})

        await self.app({**scope, "method": "GET", ORIGINAL_METHOD: "HEAD"} if head else scope, receive, buffering_send)


# HEAD as well: it is answered wherever GET is, and a browser asks before sending it with a credential.
CORS_ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-ID",
    "X-Qortex-Timestamp",
    "X-Qortex-Signature",
)
# Every response header the OpenAPI document declares for clients: a browser client acts on them too.
CORS_EXPOSE_HEADERS = tuple(RESPONSE_HEADERS)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, except that a refused preflight is an RFC 9457 problem, like every other error answer
    (Starlette answers it with a plain-text 400)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        if (
            headers is None
            or scope["method"] != "OPTIONS"
            or "origin" not in headers
            or "access-control-request-method" not in headers
        ):
            await super().__call__(scope, receive, send)
            return
        response = self.preflight_response(request_headers=headers)
        if response.status_code == 400:
            # "Disallowed CORS origin, method": what the browser asked for that is not allowed.
            refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
            kept = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
            response = problem_response(
                status=400,
                slug="cors-not-allowed",
                title="Cross-origin request not allowed",
                detail=f"this cross-origin request is not allowed: disallowed {refused}",
                request_id=scope.get("state", {}).get("request_id"),
                headers=kept,
            )
        await response(scope, receive, send)


def add_cors(app: Starlette, origins: list[str]) -> None:
    """CORS for exactly the configured origins; with none, no CORS headers are ever sent.

    Credentials (cookies) are not allowed: the API authenticates with the Authorization header.
    """
    if not origins:
        return
    app.add_middleware(
        ProblemCORSMiddleware,
        allow_origins=origins,
        allow_methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        allow_credentials=False,
        max_age=600,
    )
