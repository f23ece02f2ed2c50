"""The client address: X-Forwarded-For counts only through trusted proxies, walked from the right."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from qortex.security.allowlist import parse_networks
from qortex.web.client_ip import ClientIpMiddleware, client_ip, forwarded_chain, resolve_client_ip

TRUSTED = parse_networks(["10.0.0.0/8", "fd00::/8"])

ipv4 = st.ip_addresses(v=4).map(str)
public_ipv4 = st.ip_addresses(v=4, network="198.18.0.0/15").map(str)
trusted_ipv4 = st.ip_addresses(v=4, network="10.0.0.0/8").map(str)
junk = st.text(alphabet="abc:.,[]% 0123456789", max_size=20)


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert resolve_client_ip("203.0.113.5", ["198.51.100.1"], ()) == "203.0.113.5"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert resolve_client_ip("203.0.113.5", ["198.51.100.1"], TRUSTED) == "203.0.113.5"


def test_a_trusted_proxy_names_the_client() -> None:
    assert resolve_client_ip("10.0.0.2", ["198.51.100.1"], TRUSTED) == "198.51.100.1"


def test_trusted_hops_are_skipped_and_entries_the_client_wrote_are_not_believed() -> None:
    chain = ["1.1.1.1", "198.51.100.1", "10.3.3.3", "10.2.2.2"]
    assert resolve_client_ip("10.0.0.2", chain, TRUSTED) == "198.51.100.1"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    assert resolve_client_ip("10.0.0.2", ["10.9.9.9", "10.8.8.8"], TRUSTED) == "10.9.9.9"


def test_a_malformed_entry_stops_the_walk_at_the_last_trusted_hop() -> None:
    assert resolve_client_ip("10.0.0.2", ["198.51.100.1", "unknown", "10.4.4.4"], TRUSTED) == "10.4.4.4"
    assert resolve_client_ip("10.0.0.2", ["not-an-ip"], TRUSTED) == "10.0.0.2"


def test_ipv6_ports_brackets_and_mapped_addresses_are_normalised() -> None:
    assert resolve_client_ip("fd00::1", ["[2001:DB8::1]:443"], TRUSTED) == "2001:db8::1"
    assert resolve_client_ip("10.0.0.2", ["198.51.100.1:5555"], TRUSTED) == "198.51.100.1"
    assert resolve_client_ip("::ffff:10.0.0.2", ["198.51.100.1"], TRUSTED) == "198.51.100.1"
    assert resolve_client_ip("::ffff:203.0.113.5", [], TRUSTED) == "203.0.113.5"


def test_an_unknown_peer_has_no_address() -> None:
    assert resolve_client_ip(None, ["198.51.100.1"], TRUSTED) is None
    assert resolve_client_ip("testclient", [], TRUSTED) is None


def test_several_forwarded_for_headers_form_one_list() -> None:
    assert forwarded_chain(["1.1.1.1, 2.2.2.2", " 3.3.3.3 ,,", ""]) == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]


@given(peer=public_ipv4, chain=st.lists(st.one_of(ipv4, junk), max_size=6))
def test_an_untrusted_peer_is_always_the_client_whatever_it_forwards(peer: str, chain: list[str]) -> None:
    assert resolve_client_ip(peer, chain, TRUSTED) == peer


@given(
    peer=trusted_ipv4,
    forged=st.lists(st.one_of(ipv4, junk), max_size=4),
    client=public_ipv4,
    hops=st.lists(trusted_ipv4, max_size=4),
)
def test_behind_trusted_proxies_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str, forged: list[str], client: str, hops: list[str]
) -> None:
    assert resolve_client_ip(peer, [*forged, client, *hops], TRUSTED) == client


@given(peer=trusted_ipv4, chain=st.lists(st.one_of(ipv4, trusted_ipv4, junk), max_size=6))
def test_the_result_is_the_peer_or_an_entry_reached_only_through_trusted_hops(peer: str, chain: list[str]) -> None:
    result = resolve_client_ip(peer, chain, TRUSTED)
    assert result is not None
    if result == peer:
        return
    normalised = [str(ipaddress.ip_address(e)) if _is_ip(e) else None for e in chain]
    index = max(i for i, value in enumerate(normalised) if value == result)
    assert all(value is not None and ipaddress.ip_address(value) in TRUSTED[0] for value in normalised[index + 1 :])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{client_ip(request)}|{request.state.client_ip}")


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [("10.1.1.1", "198.51.100.9", "198.51.100.9"), ("203.0.113.1", "198.51.100.9", "203.0.113.1")],
)
async def test_the_middleware_stores_the_address_for_the_request(peer: str, header: str, expected: str) -> None:
    app = ClientIpMiddleware(Starlette(routes=[Route("/", _echo)]), trusted_proxies=["10.0.0.0/8"])
    transport = httpx.ASGITransport(app=app, client=(peer, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/", headers={"X-Forwarded-For": header})
    assert response.text == f"{expected}|{expected}"


async def test_without_the_middleware_the_peer_is_used() -> None:
    transport = httpx.ASGITransport(app=Starlette(routes=[Route("/", _peer)]), client=("192.0.2.8", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/", headers={"X-Forwarded-For": "1.1.1.1"})).text == "192.0.2.8"


async def _peer(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(client_ip(request)))
