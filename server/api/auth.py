"""API keys: `Authorization: Bearer kiln_sk_...`, scoped to one organization."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..domain.errors import PermissionDenied, Unauthenticated
from ..store.store import API_KEY_PREFIX, Store


class Authenticator:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Keys are never revoked in this release, so a found key may be cached.
        self._known: dict[str, str] = {}

    async def organization(self, header: Callable[[str], str | None]) -> str:
        """The caller's organization id, from the request headers."""
        authorization = header("authorization") or ""
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.startswith(API_KEY_PREFIX):
            raise Unauthenticated("send 'Authorization: Bearer kiln_sk_...'")
        organization = self._known.get(key)
        if organization is None:
            async with self.store.transaction() as tx:
                organization = await tx.organization_for_key(key.strip())
            if organization is None:
                raise Unauthenticated("unknown API key")
            self._known[key] = organization
        claimed = header("x-organization-id")
        if claimed and claimed != organization:
            raise PermissionDenied("X-Organization-ID does not match the API key's organization")
        return organization


def header_reader(pairs: Mapping[str, str] | list[tuple[str, str]]) -> Callable[[str], str | None]:
    if isinstance(pairs, Mapping):
        return pairs.get
    lowered = {key.lower(): value for key, value in pairs}
    return lowered.get
