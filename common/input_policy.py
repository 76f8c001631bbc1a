"""Which input URLs a job may read.

file:// only under configured roots (after resolving symlinks and `..`), http(s)://
only to public addresses unless the host is allowlisted, gs:// only from buckets
configured for inputs. Refusing
private, loopback, link-local and metadata addresses keeps a job from being used
to read the service's own network (SSRF).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

ALLOWED_SCHEMES = ("file", "http", "https", "gs")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InputRefused(Exception):
    """The URL may not be read; the message says why in plain words."""


@dataclass(frozen=True)
class InputPolicy:
    roots: tuple[Path, ...]
    allow_hosts: tuple[str, ...] = ()
    # Buckets gs:// inputs may come from; none configured means gs:// inputs are refused.
    gcs_buckets: tuple[str, ...] = ()

    @classmethod
    def from_lists(
        cls, roots: Sequence[str], allow_hosts: Sequence[str], gcs_buckets: Sequence[str] = ()
    ) -> InputPolicy:
        return cls(
            roots=tuple(Path(os.path.realpath(root)) for root in roots),
            allow_hosts=tuple(host.lower() for host in allow_hosts),
            gcs_buckets=tuple(gcs_buckets),
        )

    def check_syntax(self, url: str) -> None:
        """Checks that need no network: scheme, file roots, literal addresses."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise InputRefused(
                f"scheme {scheme or '(none)'!r} is not supported; use one of "
                + ", ".join(f"{s}://" for s in ALLOWED_SCHEMES)
            )
        if scheme == "file":
            self.local_path(url)
        elif scheme in ("http", "https"):
            if not parts.hostname:
                raise InputRefused("URL has no host")
            literal = _as_ip(parts.hostname)
            if literal is not None:
                self._check_address(parts.hostname, literal)
        elif not parts.netloc:
            raise InputRefused("gs:// URL has no bucket")
        elif parts.netloc not in self.gcs_buckets:
            raise InputRefused(
                f"bucket {parts.netloc!r} is not an input bucket; allow it with "
                "KILN_GCS_INPUT_BUCKETS"
            )

    def check_resolved(self, url: str) -> None:
        """Full check: resolves http(s) hosts and refuses private destinations."""
        self.check_syntax(url)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or parts.hostname is None:
            return
        host = parts.hostname
        if _as_ip(host) is not None:
            return
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise InputRefused(f"host {host!r} does not resolve") from exc
        for info in infos:
            self._check_address(host, ipaddress.ip_address(info[4][0]))

    def local_path(self, url: str) -> Path:
        """The filesystem path of a file:// URL, refused unless under a root."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InputRefused("file:// URLs must not name a host")
        path = Path(os.path.realpath(unquote(parts.path)))
        if not self.roots:
            raise InputRefused("file:// inputs are disabled (no KILN_INPUT_ROOTS configured)")
        if not any(path == root or root in path.parents for root in self.roots):
            raise InputRefused("file:// path is outside the allowed input roots")
        return path

    def address_refusal(self, host: str, address: IPAddress) -> str | None:
        """Why `host`, resolved to `address`, may not be reached ("127.0.0.1, a loopback
        address"); None when it may. One address at a time, so a caller that resolves once can
        check exactly the address it will connect to."""
        if _is_public(address) or self._allowlisted(host, address):
            return None
        return f"{address}, {_address_kind(address)}"

    def _check_address(self, host: str, address: IPAddress) -> None:
        refusal = self.address_refusal(host, address)
        if refusal is not None:
            raise InputRefused(
                f"host {host!r} resolves to {refusal}; private or loopback addresses "
                "must be allowlisted (KILN_INPUT_ALLOW_HOSTS)"
            )

    def _allowlisted(self, host: str, address) -> bool:
        for entry in self.allow_hosts:
            if entry == host.lower():
                return True
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


def _as_ip(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address_kind(address: IPAddress) -> str:
    """The plain name of the class an address belongs to, for refusal messages."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind in ("loopback", "link-local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{kind.replace('-', '_')}"):
            return f"a {kind} address"
    return "a non-public address"


def _is_public(address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # is_global also refuses shared address space (100.64.0.0/10, where some clouds keep
    # their metadata service); multicast counts as global, hence the explicit checks too.
    return not (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
