"""Query strings read one way only: a parameter given twice is refused, never resolved to one copy, and one the
route does not take is refused, never ignored."""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from qortex.core.errors import InvalidInput


def _declared(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, its dependencies' included (a walk over a handful of nodes)."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


async def refuse_repeated_parameters(request: Request) -> None:
    """Every query parameter of the API takes one value. Which copy of a repeated one wins depends on who reads it
    (FastAPI takes the last, a proxy or a log filter may take the first), and a client repeating `direction` may
    mean "either": answering for one copy would list something else than was asked for.

    Nor is a parameter the route does not take dropped: `?outcome=failure` on a list without that filter, or a
    misspelt `?Direction=up`, would list everything while looking like an answer to what was asked.
    """
    query_string: bytes = request.scope["query_string"]
    if query_string and not _utf_8(query_string):
        # Starlette puts U+FFFD in place of what it cannot decode: `source=caf%E9` would list another source.
        raise InvalidInput(
            "the query string is not percent-encoded UTF-8 (raw bytes beyond ASCII, or escapes of another encoding); "
            "percent-encode its text as UTF-8",
            errors=[{"loc": ["query"], "msg": "not percent-encoded UTF-8", "type": "encoding"}],
        )
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise InvalidInput(
            f"query parameter {', '.join(repeated)} given more than once; give each once",
            errors=[{"loc": ["query", name], "msg": "given more than once", "type": "repeated"} for name in repeated],
        )
    route = request.scope.get("route")
    if counts and isinstance(route, APIRoute):  # most requests carry no query: nothing to walk
        declared = _declared(route.dependant)
        unknown = sorted(name for name in counts if name not in declared)
        if unknown:
            raise InvalidInput(
                f"unknown query parameter {', '.join(unknown)}; this route takes "
                f"{', '.join(sorted(declared)) or 'none'}",
                errors=[
                    {"loc": ["query", name], "msg": "unknown query parameter", "type": "unknown"} for name in unknown
                ],
            )


def _utf_8(query_string: bytes) -> bool:
    """Whether the query is ASCII (as it must be sent) and its percent-encoded bytes are UTF-8."""
    try:
        parse_qsl(query_string.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return False
    return True
