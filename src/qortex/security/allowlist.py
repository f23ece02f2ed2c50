"""IP allow-lists: CIDR blocks (IPv4 and IPv6) a tenant's requests must come from, and trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_ENTRIES = 100


def normalise_cidr(entry: str) -> str:
    """Returns the canonical form of a CIDR block (a bare address is a /32 or /128); ValueError names the entry."""
    text = entry.strip()
    if "%" in text:
        # Client addresses are compared without their zone, so an entry with one would never match.
        raise ValueError(f"{entry!r} names an IPv6 zone; give the address or block without '%zone'")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IPv4 or IPv6 address or CIDR block") from None
        # A typo such as 10.1.2.3/8 usually means something narrower than what it would allow.
        raise ValueError(f"{entry!r} has host bits set; did you mean {loose.with_prefixlen!r}?") from None
    return _as_compared(network).with_prefixlen


def _as_compared(network: IPNetwork) -> IPNetwork:
    """Clients are compared as the IPv4 address a mapped one carries (parse_address), so a block of IPv4-mapped
    addresses means the IPv4 block; as written it would never match anyone."""
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def normalise_allowlist(entries: Iterable[str]) -> list[str]:
    """Validates, canonicalises and de-duplicates entries, keeping their order."""
    seen: dict[str, None] = {}
    for entry in entries:
        seen.setdefault(normalise_cidr(entry), None)
    if len(seen) > MAX_ENTRIES:
        raise ValueError(f"an allow-list holds at most {MAX_ENTRIES} entries, not {len(seen)}")
    return list(seen)


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    # Entries stored before mapped blocks were normalised on saving are normalised here too.
    return tuple(_as_compared(ipaddress.ip_network(entry.strip(), strict=False)) for entry in entries)


def _parse_written(text: str) -> IPAddress | None:
    value = text.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "192.0.2.1:443"
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value.partition("%")[0])
    except ValueError:
        return None


def parse_address(text: str) -> IPAddress | None:
    """An address as written in a header or ASGI scope; IPv4-mapped IPv6 becomes IPv4. None if malformed."""
    address = _parse_written(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def contains(networks: Iterable[IPNetwork], address: IPAddress | str | None) -> bool:
    """Whether an address lies in any of the networks; an unknown or malformed address lies in none.

    An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) matches as the IPv4 address it carries and as
    written; a plain IPv4 address never matches an IPv6 block.
    """
    written = _parse_written(address) if isinstance(address, str) else address
    if written is None:
        return False
    forms = [written]
    if isinstance(written, ipaddress.IPv6Address) and written.ipv4_mapped is not None:
        forms.append(written.ipv4_mapped)
    return any(form.version == network.version and form in network for network in networks for form in forms)
