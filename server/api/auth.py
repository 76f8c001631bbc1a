"""API keys: `Authorization: Bearer kiln_sk_...`, scoped to one organization."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ..domain.errors import PermissionDenied, Unauthenticated
from ..store.store import API_KEY_PREFIX, Store

# How long a found key is trusted without asking the database again: `kiln keys revoke`
# deletes a key in the database, and every server stops accepting it within this time.
KEY_CACHE_SECONDS = 2.0


class Authenticator:
    def __init__(self, store: Store, cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        # key -> (organization, monotonic time it was read).
        self._known: dict[str, tuple[str, float]] = {}

    async def organization(self, header: Callable[[str], str | None]) -> str:
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
                found = await tx.organization_for_key(key.strip())
            if found is None:
                self._known.pop(key, None)
                raise Unauthenticated("unknown API key")
            organization = found
            self._known[key] = (organization, time.monotonic())
        claimed = header("x-organization-id")
        if claimed and claimed != organization:
            raise PermissionDenied("X-Organization-ID does not match the API key's organization")
        return organization


def header_reader(pairs: Mapping[str, str] | list[tuple[str, str]]) -> Callable[[str], str | None]:
    if isinstance(pairs, Mapping):
        return pairs.get
    lowered = {key.lower(): value for key, value in pairs}
    return lowered.get
