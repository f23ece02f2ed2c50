"""Setting types holding lists of networks or origins: comma-separated or a JSON list in the environment.

Both are validated when the settings are read, so a typo stops the process at start instead of
silently trusting or refusing the wrong peers.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

from qortex.security.allowlist import normalise_cidr


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _cidrs(values: list[str]) -> list[str]:
    return [normalise_cidr(value) for value in values]


_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")


def _origin_host(host: str, *, bracketed: bool) -> str | None:
    """The host as browsers serialise it, or None when it is none."""
    if bracketed:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]" if "%" not in host else None
        except ValueError:
            return None
    return host if _HOST_NAME.fullmatch(host) else None


def normalise_origin(origin: str) -> str:
    """`scheme://host[:port]` exactly as browsers send it in `Origin` (no path, no trailing slash, no default port)."""
    text = origin.strip().rstrip("/")
    malformed = ValueError(f"{origin!r} is not an origin such as 'https://app.example.com' or 'http://localhost:3000'")
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise malformed from None
    host = _origin_host(parts.hostname or "", bracketed=parts.netloc.startswith("["))
    if (
        parts.scheme not in _DEFAULT_PORTS
        or host is None
        or "@" in parts.netloc
        or port == 0
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise malformed
    # Browsers leave the scheme's default port out of `Origin`: kept, the origin would never match.
    return (
        f"{parts.scheme}://{host}"
        if port in (None, _DEFAULT_PORTS[parts.scheme])
        else f"{parts.scheme}://{host}:{port}"
    )


def _origins(values: list[str]) -> list[str]:
    return [normalise_origin(value) for value in values]


CidrList = Annotated[list[str], NoDecode, BeforeValidator(_split), AfterValidator(_cidrs)]
OriginList = Annotated[list[str], NoDecode, BeforeValidator(_split), AfterValidator(_origins)]
