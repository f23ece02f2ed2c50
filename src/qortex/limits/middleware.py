"""Puts a request's RateLimit-* headers on its response, and frees its concurrency slot when it is done."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from qortex.limits.service import STATE_KEY, Admission
from qortex.web.asgi import HttpMiddleware


def _admission(scope: Scope) -> Admission | None:
    admission = scope.get("state", {}).get(STATE_KEY)
    return admission if isinstance(admission, Admission) else None


class RateLimitMiddleware(HttpMiddleware):
    """Authentication admits the request (`RateLimits.admit`); this finishes it, whatever the outcome."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                admission = _admission(scope)
                if admission is not None and admission.headers:
                    extra = [(k.lower().encode(), v.encode()) for k, v in admission.headers.items()]
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            admission = _admission(scope)
            if admission is not None:
                await admission.finish()
