"""Reads the `Idempotency-Key` header of a create request, fingerprinting the body it came with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request

from qortex.core.idempotency import IdempotentRequest


async def idempotency_key(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(description="Replays of the same key and body return the first answer", max_length=255),
    ] = None,
) -> IdempotentRequest | None:
    operation = f"{request.method} {request.url.path}"
    return IdempotentRequest.from_header(idempotency_key, operation=operation, body=await request.body())
