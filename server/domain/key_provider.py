"""Where content keys come from: the seam between kiln and a DRM key service.

kiln asks a KeyProvider for the keys of one output and attempt, then keeps them itself
(sealed, server.jobs.content_keys) and serves them to the viewers it authorised. The
built-in provider, RandomKeys, makes them from the operating system's random source.

A provider backed by a DRM service would implement the same Protocol without changing
anything else: for a CPIX / SPEKE (v2) service, `content_keys` would POST a CPIX document
(`<cpix:CPIX contentId="{output_id}">` with one `<cpix:ContentKey kid="…">` per period,
key ids chosen by kiln or left to the service) to the service's endpoint, authenticated as
the service requires, and read the keys back from the answer's `<pskc:PlainValue>` (or
decrypt them when the document asks for encrypted delivery). What such a service adds — its
own DRM systems' PSSH boxes and license servers — would reach the packager through new
fields of Task.encryption; kiln's own key endpoint serves AES-128 and Clear Key only.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from common.content_keys import KEY_BYTES, EncryptionScheme


@dataclass(frozen=True)
class KeyRequest:
    job_id: str
    output_id: str
    # The job's attempt: a retried job gets new keys.
    generation: int
    scheme: EncryptionScheme
    # How many keys: one, or one per rotation period.
    count: int


@dataclass(frozen=True, repr=False)
class ProvidedKey:
    key_id: bytes  # 16 bytes
    key: bytes  # 16 bytes, secret

    def __repr__(self) -> str:  # never the key, even in a traceback
        return f"ProvidedKey(key_id={self.key_id.hex()})"


class KeyProvider(Protocol):
    async def content_keys(self, request: KeyRequest) -> Sequence[ProvidedKey]:
        """Exactly `request.count` keys with distinct key ids, in order of use."""
        ...


class RandomKeys:
    """Fresh random keys and key ids (the key ids random too: they reveal nothing)."""

    async def content_keys(self, request: KeyRequest) -> Sequence[ProvidedKey]:
        return [
            ProvidedKey(secrets.token_bytes(KEY_BYTES), secrets.token_bytes(KEY_BYTES))
            for _ in range(request.count)
        ]
