"""Who is calling: an API key (`Authorization: Bearer kiln_sk_...`, scoped to one
organization) on the public services, the worker token on the WorkerService."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping

from ..domain.errors import PermissionDenied, Unauthenticated
from ..store.store import API_KEY_PREFIX, Store

# How long a found key is trusted without asking the database again: `kiln keys revoke`
# deletes a key in the database, and every server stops accepting it within this time.
KEY_CACHE_SECONDS = 2.0

# A request header by its lower-case name: None when the request has none.
Header = Callable[[str], str | None]


class Authenticator:
    def __init__(self, store: Store, cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        # key -> (organization, monotonic time it was read).
        self._known: dict[str, tuple[str, float]] = {}

    async def organization(self, header: Header) -> str:
        """The caller's organization id, from the request headers."""
        authorization = header("authorization") or ""
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.startswith(API_KEY_PREFIX):
            raise Unauthenticated("send 'Authorization: Bearer kiln_sk_...'")
        known = self._known.get(key)
        if known is not None and time.monotonic() - known[1] < self.cache_seconds:
            organization = known[0]
        else:
            async with self.store.transaction() as tx:
                found = await tx.keys.organization_for_key(key.strip())
            if found is None:
                self._known.pop(key, None)
                raise Unauthenticated("unknown API key")
            organization = found
            self._known[key] = (organization, time.monotonic())
        claimed = header("x-organization-id")
        if claimed and claimed != organization:
            raise PermissionDenied("X-Organization-ID does not match the API key's organization")
        return organization


class WorkerToken:
    """The WorkerService's one secret (its own listener, never the public gRPC port).

    With a token configured, every call must present it (compared in constant time);
    without one the listener must be loopback-only (config.check_worker_listener).
    """

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}" if token else ""

    def check(self, header: Header) -> None:
        if not self.expected:
            return
        presented = header("authorization") or ""
        if not hmac.compare_digest(presented.encode(), self.expected.encode()):
            raise Unauthenticated("worker token missing or wrong")


def header_reader(pairs: Mapping[str, str] | list[tuple[str, str]]) -> Header:
    if isinstance(pairs, Mapping):
        return pairs.get
    lowered = {key.lower(): value for key, value in pairs}
    return lowered.get
