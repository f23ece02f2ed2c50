"""Setting types holding lists of networks or origins: comma-separated or a JSON list in the environment.

Both are validated when the settings are read, so a typo stops the process at start instead of
silently trusting or refusing the wrong peers.
"""

from __future__ import annotations

import json
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


def normalise_origin(origin: str) -> str:
    """`scheme://host[:port]` exactly as browsers send it in `Origin` (no path, no trailing slash)."""
    text = origin.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ValueError(f"{origin!r} is not an origin such as 'https://app.example.com' or 'http://localhost:3000'")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _origins(values: list[str]) -> list[str]:
    return [normalise_origin(value) for value in values]


CidrList = Annotated[list[str], NoDecode, BeforeValidator(_split), AfterValidator(_cidrs)]
OriginList = Annotated[list[str], NoDecode, BeforeValidator(_split), AfterValidator(_origins)]
