"""Which network a client address counts under, for every per-address limit (connections, shares, quotas).

One subscriber gets a whole IPv6 /64 (often a /56), so counting IPv6
addresses one by one lets a single visitor look like millions. Every limit
that is "per address" counts the address's network instead: an IPv4 address
as it is (a NAT'd room shares one anyway), an IPv6 address by its /64 (or the
prefix the operator sets). IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``,
what a dual-stack socket reports) count as the IPv4 address they carry.
"""

from __future__ import annotations

import functools
import ipaddress

V6_PREFIX = 64  # bits of an IPv6 address that name one subscriber


@functools.lru_cache(maxsize=4096)
def network_of(address: str, v6_prefix: int = V6_PREFIX) -> str:
    """The key an address is counted under: '192.0.2.7', or '2001:db8:1:2::/64'.

    Anything that is not an IP address (a unix socket's peer, '') is its own key.
    """
    try:
        addr = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        if v6_prefix < 128:
            return str(ipaddress.ip_network(f"{addr}/{v6_prefix}", strict=False))
    return str(addr)
