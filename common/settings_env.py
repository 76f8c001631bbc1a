"""Reading KILN_* environment values: the helpers both the server's and the worker's
settings use, so that each reads a variable the same way."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping


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


class BadSetting(ValueError):
    """A KILN_* value the variable cannot take: `kiln` exits 2 with this message, before
    anything starts, instead of a traceback."""


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """A whole number at least `minimum`; unset or blank keeps `default`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadSetting(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise BadSetting(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(
    env: Mapping[str, str], name: str, default: float, *, positive: bool = False
) -> float:
    """A finite number, not negative (more than 0 when `positive`); unset or blank keeps
    `default`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadSetting(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise BadSetting(f"{name} must be a finite number, got {raw!r}")
    if positive and value <= 0:
        raise BadSetting(f"{name} must be more than 0, got {raw}")
    if value < 0:
        raise BadSetting(f"{name} must not be negative, got {raw}")
    return value


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port (0 lets the system choose)."""
    port = env_int(env, name, default)
    if port > 65535:
        raise BadSetting(f"{name} must be a port number (0-65535), got {port}")
    return port
