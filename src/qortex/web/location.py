"""The `Location` of a resource a request created, as a path under the app's root (RFC 9110 §10.2.2)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

LOCATION_HEADER = "Location"


def location_of(request: Request, route_name: str, **path_params: Any) -> str:
    """The path that reads the created resource back; a path, not a URL, so no Host header is echoed."""
    path = request.app.url_path_for(route_name, **{name: str(value) for name, value in path_params.items()})
    return f"{request.scope.get('root_path', '')}{path}"
