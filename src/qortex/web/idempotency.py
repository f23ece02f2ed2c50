"""Reads the `Idempotency-Key` header of a create request, fingerprinting the body it came with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request

from qortex.core.errors import InvalidInput
from qortex.core.idempotency import MAX_KEY_LENGTH, IdempotentRequest


def refuse_a_repeated_key(request: Request) -> None:
    """Which copy of a repeated Idempotency-Key counts depends on who reads it (FastAPI takes the first, a proxy
    may fold the copies into one key, "a, b"), so a retry could be made again instead of replayed."""
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise InvalidInput(
            "Idempotency-Key given more than once; send one key",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "given more than once", "type": "repeated"}],
        )


async def idempotency_key(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        # The length is documented, not checked here: from_header checks it with the key's other rules, in one message.
        Header(
            description="Replays of the same key and body return the first answer",
            json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_LENGTH},
        ),
    ] = None,
) -> IdempotentRequest | None:
    refuse_a_repeated_key(request)
    operation = f"{request.method} {request.url.path}"
    return IdempotentRequest.from_header(idempotency_key, operation=operation, body=await request.body())
