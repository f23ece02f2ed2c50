"""Query strings read one way only: a parameter given twice is refused, never resolved to one copy."""

from __future__ import annotations

from collections import Counter

from fastapi import Request

from qortex.core.errors import InvalidInput


async def refuse_repeated_parameters(request: Request) -> None:
    """Every query parameter of the API takes one value. Which copy of a repeated one wins depends on who reads it
    (FastAPI takes the last, a proxy or a log filter may take the first), and a client repeating `direction` may
    mean "either": answering for one copy would list something else than was asked for."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise InvalidInput(
            f"query parameter {', '.join(repeated)} given more than once; give each once",
            errors=[{"loc": ["query", name], "msg": "given more than once", "type": "repeated"} for name in repeated],
        )
