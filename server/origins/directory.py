"""The server's view of origins in use: jobs name an origin by id, this turns the id into
a connection with the origin's credentials, and hands out only URLs.

Everything that touches stored files goes through `ServerOrigins`, the server's `Origins`:
an output's origin reference is "" (local storage), "gs://bucket/prefix" (the server's own
GCS buckets) or "ori_…[/path prefix]" (an organization's origin). Connections are cached a
short while and loaded with `ensure` before any synchronous use, so the hot paths (download
links, playback relays) read memory; a change on another replica is seen within
CACHE_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from common.storage.grants import TransferGrant
from common.storage.keys import safe_relative_path
from common.storage.local import UnsafeKey
from common.storage.origins import Backend, Origins

from ..store.models import Origin
from . import connections
from .connections import Connection, OriginUnusable
from .kinds import settings_from_row

if TYPE_CHECKING:
    from ..secrets_keyring import SecretsKeyring
    from ..store.store import Store

CACHE_SECONDS = 30.0
ORIGIN_PREFIX = "ori_"


def origin_reference(origin_id: str, path_prefix: str) -> str:
    """What an output row stores: the origin and the job's path prefix under it."""
    return f"{origin_id}/{path_prefix}" if path_prefix else origin_id


def output_origin_of(job, output) -> str:
    """Where an output's files are: its own origin reference, else the job's origin."""
    return output.origin or job.output_origin


def split_reference(reference: str) -> tuple[str, str]:
    origin_id, _, path_prefix = reference.partition("/")
    return origin_id, path_prefix


def is_origin_reference(reference: str) -> bool:
    return reference.startswith(ORIGIN_PREFIX)


def secret_context(origin_id: str, organization_id: str) -> str:
    """What a sealed secret is bound to: copied to another row or organization, it fails."""
    return f"origin:{origin_id}:{organization_id}"


async def check_sealed_secrets(store: Store, keyring: SecretsKeyring | None) -> None:
    """Open every stored origin secret once: a server whose KILN_SECRETS_KEY (or previous
    keys) cannot open them refuses to start (SecretsKeyError), naming the origin, never the
    secret."""
    if keyring is None:
        return
    from ..secrets_keyring import SecretsKeyError, SecretUnreadable

    async with store.reading() as tx:
        sealed = await tx.origins.all_sealed_secrets()
    for origin_id, organization_id, token in sealed:
        try:
            keyring.open(token, context=secret_context(origin_id, organization_id))
        except SecretUnreadable as error:
            raise SecretsKeyError(
                f"the secret of origin {origin_id} cannot be opened with KILN_SECRETS_KEY or "
                f"KILN_SECRETS_KEYS_PREVIOUS ({error})"
            ) from None


@dataclass
class _Entry:
    origin: Origin
    connection: Connection
    loaded_at: float
    storages: dict[str, connections.BucketStorage] = field(default_factory=dict)


class ServerOrigins(Origins):
    """Origins as the server sees them: also an organization's origins, by reference."""

    def __init__(
        self,
        *args,
        store: Store,
        keyring: SecretsKeyring,
        grant_ttl_seconds: int,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.store = store
        self.keyring = keyring
        self.grant_ttl_seconds = grant_ttl_seconds
        self._entries: dict[str, _Entry] = {}

    # Loading

    async def ensure(self, references: Iterable[str]) -> None:
        """Load the connections of the origins `references` name (cached ones kept)."""
        now = time.monotonic()
        wanted = {
            split_reference(reference)[0]
            for reference in references
            if is_origin_reference(reference)
        }
        stale = [
            origin_id
            for origin_id in wanted
            if (entry := self._entries.get(origin_id)) is None
            or now - entry.loaded_at > CACHE_SECONDS
        ]
        if not stale:
            return
        async with self.store.reading() as tx:
            rows = await tx.origins.origins_by_id(stale)
        for row in rows:
            self.remember(row)
        for origin_id in set(stale) - {row.id for row in rows}:
            self._entries.pop(origin_id, None)

    def remember(self, row: Origin) -> Connection:
        """Keep a row just read or written (its secret opened once, here)."""
        secret = ""
        if row.sealed_secret:
            secret = self.keyring.open(
                row.sealed_secret, context=secret_context(row.id, row.organization_id)
            )
        connection = Connection(settings_from_row(row.kind, row.settings), secret)
        self._entries[row.id] = _Entry(row, connection, time.monotonic())
        return connection

    def forget(self, origin_id: str) -> None:
        self._entries.pop(origin_id, None)

    def connection(self, origin_id: str) -> Connection:
        return self._entry(origin_id).connection

    def _entry(self, origin_id: str) -> _Entry:
        entry = self._entries.get(origin_id)
        if entry is None:
            # A deleted origin, or one nobody ensured: the caller's file is unreachable.
            raise FileNotFoundError(f"origin {origin_id} is not available")
        return entry

    # The Origins interface, for references to an organization's origins

    def check(self, origin: str) -> None:
        if is_origin_reference(origin):
            return  # checked by the job's admission against the organization's origins
        super().check(origin)

    def backend(self, origin: str) -> Backend:
        if not is_origin_reference(origin):
            return super().backend(origin)
        return self.bucket_storage(origin)

    def bucket_storage(self, origin: str):
        if not is_origin_reference(origin):
            return super().bucket_storage(origin)
        origin_id, path_prefix = split_reference(origin)
        entry = self._entry(origin_id)
        storage = entry.storages.get(path_prefix)
        if storage is None:
            storage = entry.storages[path_prefix] = entry.connection.storage(path_prefix)
        return storage

    def url(self, origin: str, job_id: str, output_id: str, path: str) -> tuple[str, datetime]:
        if not is_origin_reference(origin):
            return super().url(origin, job_id, output_id, path)
        if not safe_relative_path(path):
            raise UnsafeKey(f"{job_id}/{output_id}/{path}")
        key = f"{job_id}/{output_id}/{path}"
        grant = connections.download_grant(self.bucket_storage(origin), key, path, self.ttl_seconds)
        return grant.url, connections.grant_expiry(self.ttl_seconds)

    def public_base_url(self, origin: str) -> str:
        """The origin's CDN / public URL of the folder its job files are under, or ""."""
        if not is_origin_reference(origin):
            return ""
        origin_id, path_prefix = split_reference(origin)
        entry = self._entries.get(origin_id)
        if entry is None or not entry.origin.public_base_url:
            return ""
        settings = entry.connection.settings
        prefix = "/".join(p for p in (getattr(settings, "prefix", ""), path_prefix) if p)
        base = entry.origin.public_base_url
        return f"{base}/{prefix}" if prefix else base

    # What workers get instead of credentials

    def input_url(self, origin_id: str, path: str) -> str:
        return self.connection(origin_id).input_url(path, self.grant_ttl_seconds)

    def grants(
        self, origin: str, key_prefix: str, put_paths: Sequence[str], get_paths: Sequence[str]
    ) -> tuple[list[TransferGrant], list[TransferGrant], datetime]:
        """Presigned writes and reads of files under one output's prefix: nothing else."""
        storage = self.bucket_storage(origin)
        ttl = self.grant_ttl_seconds
        puts = [
            connections.upload_grant(storage, f"{key_prefix}/{path}", path, ttl)
            for path in put_paths
        ]
        gets = [
            connections.download_grant(storage, f"{key_prefix}/{path}", path, ttl)
            for path in get_paths
        ]
        return puts, gets, connections.grant_expiry(ttl)


__all__ = [
    "OriginUnusable",
    "ServerOrigins",
    "check_sealed_secrets",
    "is_origin_reference",
    "origin_reference",
    "output_origin_of",
    "secret_context",
    "split_reference",
]
