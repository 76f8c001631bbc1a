"""Reading KILN_* environment values: the helpers both the server's and the worker's
settings use, so that each reads a variable the same way."""

from __future__ import annotations

import ipaddress


def comma_list(value: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`: blanks and empty items are dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def is_loopback_host(host: str) -> bool:
    """True for a listener address no other machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_address(address: str) -> bool:
    """True when a gRPC target (`host:port`, `[v6]:port`, `dns:///host:port`, `unix:path`)
    names this machine only."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if address.startswith(scheme):
            address = address.removeprefix(scheme)
            break
    if address.startswith("["):
        host = address[1:].partition("]")[0]
    elif address.count(":") == 1:
        host = address.partition(":")[0]
    else:
        host = address  # a bare host, or a bare IPv6 address
    return is_loopback_host(host)
