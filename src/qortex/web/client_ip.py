"""The client's address: the TCP peer, or what trusted proxies say in `X-Forwarded-For`.

`X-Forwarded-For` is believed only when the direct peer is a configured trusted proxy. The list is
then walked from the right (the hop nearest to us) to the left, skipping trusted proxies; the first
address that is not one is the client. Entries left of it were written by the client itself and
are never believed. The result is stored in the scope's state for audit records and allow-lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from qortex.security.allowlist import IPNetwork, contains, parse_address, parse_networks

STATE_KEY = "client_ip"


def forwarded_chain(header_values: Iterable[str]) -> list[str]:
    """Every `X-Forwarded-For` header, in order, split into its entries (several headers join as one list)."""
    return [entry.strip() for value in header_values for entry in value.split(",") if entry.strip()]


def resolve_client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str | None:
    """The client address for a request from `peer` carrying the `X-Forwarded-For` entries `forwarded_for`."""
    peer_address = parse_address(peer) if peer else None
    if peer_address is None:
        return None
    client = peer_address
    if not contains(trusted, client):
        return str(client)
    for entry in reversed(forwarded_for):
        hop = parse_address(entry)
        if hop is None:
            # A trusted proxy writes well-formed addresses, so garbage came from beyond the last one we trust.
            break
        client = hop
        if not contains(trusted, hop):
            break
    return str(client)


class ClientIpMiddleware:
    """Resolves the client's address once per request and stores it in `scope["state"]["client_ip"]`."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: Sequence[str]) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            forwarded = (
                forwarded_chain(v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for")
                if self.trusted
                else []
            )
            ip = resolve_client_ip(peer[0] if peer else None, forwarded, self.trusted)
            scope.setdefault("state", {})[STATE_KEY] = ip
        await self.app(scope, receive, send)


def client_ip(request: Request) -> str | None:
    """The resolved client address of a request (the peer's, when the middleware did not run)."""
    state = request.scope.get("state", {})
    if STATE_KEY in state:
        value = state[STATE_KEY]
        return str(value) if value is not None else None
    peer = request.client
    address = parse_address(peer.host) if peer else None
    return str(address) if address is not None else None
