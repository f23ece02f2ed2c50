"""Allow-list entries: canonical CIDR blocks, typos named, IPv4 and IPv6 kept apart."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qortex.security.allowlist import MAX_ENTRIES, contains, normalise_allowlist, normalise_cidr, parse_networks


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.7", "192.0.2.7/32"),
        (" 2001:DB8::/32 ", "2001:db8::/32"),
        # Clients are compared as IPv4, so IPv4-mapped blocks become the IPv4 blocks they mean.
        ("::ffff:192.0.2.7", "192.0.2.7/32"),
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::/64", "::/64"),
    ],
)
def test_entries_are_canonicalised(entry: str, canonical: str) -> None:
    assert normalise_cidr(entry) == canonical


@pytest.mark.parametrize("entry", ["", "10.0.0.300/8", "10.0.0.0/33", "example.com", "10.0.0.0/8/8"])
def test_invalid_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match="not an IPv4 or IPv6"):
        normalise_cidr(entry)


@pytest.mark.parametrize("entry", ["fe80::1%eth0", "fe80::1%eth0/128"])
def test_an_ipv6_zone_is_refused_since_no_client_address_carries_one(entry: str) -> None:
    with pytest.raises(ValueError, match="zone"):
        normalise_cidr(entry)


def test_host_bits_are_refused_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"did you mean '10\.0\.0\.0/8'"):
        normalise_cidr("10.1.2.3/8")


def test_lists_are_deduplicated_in_order_and_bounded() -> None:
    assert normalise_allowlist(["10.0.0.1", "10.0.0.0/8", "10.0.0.1/32"]) == ["10.0.0.1/32", "10.0.0.0/8"]
    assert len(normalise_allowlist([f"10.0.{n}.0/24" for n in range(MAX_ENTRIES)])) == MAX_ENTRIES
    with pytest.raises(ValueError, match="at most 100"):
        normalise_allowlist([f"10.0.{n}.0/24" for n in range(MAX_ENTRIES + 1)])


def test_membership_keeps_families_apart_and_unknown_addresses_out() -> None:
    networks = parse_networks(["192.0.2.0/24", "2001:db8::/32"])
    assert contains(networks, "192.0.2.9") and contains(networks, "2001:db8::9")
    assert contains(networks, "::ffff:192.0.2.9")
    assert not contains(networks, "198.51.100.1") and not contains(networks, "2001:db9::1")
    assert not contains(networks, None) and not contains(networks, "garbage")


@given(address=st.ip_addresses(), prefix=st.integers(0, 128))
def test_an_address_is_inside_every_block_made_from_it(address: ipaddress._BaseAddress, prefix: int) -> None:
    prefix = min(prefix, address.max_prefixlen)
    block = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert contains(parse_networks([normalise_cidr(block.with_prefixlen)]), str(address))


def test_a_mapped_block_stored_before_normalisation_matches_the_ipv4_clients_it_names() -> None:
    networks = parse_networks(["::ffff:192.0.2.0/120"])
    assert contains(networks, "192.0.2.9") and not contains(networks, "192.0.3.9")
