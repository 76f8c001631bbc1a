"""The content keys of encrypted outputs: made once per output and attempt, kept sealed.

Keys are made when an encrypted output's task is first handed to a worker, from the
provider (domain.key_provider), for the job's current attempt (its generation): a retried job
gets new keys, and the previous attempt's are deleted with it. Each key is sealed with the
secrets keyring (server.secrets_keyring, the key that seals origins' credentials), bound to
its output, attempt and key id, so a sealed key copied to another row does not open. A key
is opened for two readers only: the claimed Task that carries it to the worker, and the key
endpoint (delivery.key_server) that hands it to a viewer with a key token.
"""

from __future__ import annotations

import logging
import math

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.content_keys import KEY_BYTES, EncryptionScheme

from ..delivery.key_playlists import key_uri
from ..domain.key_provider import KeyProvider, KeyRequest, RandomKeys
from ..secrets_keyring import SecretsKeyring, SecretUnreadable
from ..store.content_keys import SealedContentKey
from ..store.models import Job, Output
from ..store.store import Store, Tx, now
from .chunk_plan import DEFAULT_SEGMENT_SECONDS, output_seconds

log = logging.getLogger(__name__)

SCHEMES = {
    job_pb2.ENCRYPTION_SCHEME_AES_128: EncryptionScheme.AES_128,
    job_pb2.ENCRYPTION_SCHEME_CENC: EncryptionScheme.CENC,
}
# Keys made beyond the segments the probed duration predicts: the last segment may be cut
# short, and the muxer may start one more.
SPARE_SEGMENTS = 1


def key_count(spec: job_pb2.OutputSpec, info: job_pb2.InputInfo) -> int:
    """One key, or one per rotation period of the segments the output will have."""
    rotation = spec.encryption.rotate_every_segments
    if not rotation:
        return 1
    segment_seconds = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
    seconds = output_seconds(spec, info.duration_seconds)
    segments = math.ceil(seconds / segment_seconds) + SPARE_SEGMENTS
    return max(1, math.ceil(segments / rotation))


def _context(output_id: str, generation: int, key_id: str) -> str:
    return f"content-key:{output_id}:{generation}:{key_id}"


class OutputKeys:
    def __init__(
        self, store: Store, keyring: SecretsKeyring, provider: KeyProvider | None = None
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.provider: KeyProvider = provider or RandomKeys()

    async def task_encryption(
        self, tx: Tx, job: Job, output: Output, spec: job_pb2.OutputSpec, info: job_pb2.InputInfo
    ) -> worker_service_pb2.TaskEncryption:
        """The keys a worker encrypts `output` with: this attempt's, made on first use."""
        generation = job.attempt
        stored = await tx.content_keys.keys_of(output.id, generation)
        if not stored:
            stored = await self._new_keys(tx, job, output, spec, info)
        rotation = spec.encryption.rotate_every_segments
        encryption = worker_service_pb2.TaskEncryption(
            scheme=spec.encryption.scheme, rotate_every_segments=rotation
        )
        for key in stored:
            secret = self._open(key.sealed_key, output.id, generation, key.key_id)
            encryption.keys.add(
                key_id=bytes.fromhex(key.key_id),
                key=secret,
                uri=key_uri(bytes.fromhex(key.key_id)),
                first_segment=key.first_segment,
            )
        return encryption

    async def _new_keys(
        self, tx: Tx, job: Job, output: Output, spec: job_pb2.OutputSpec, info: job_pb2.InputInfo
    ) -> list[SealedContentKey]:
        request = KeyRequest(
            job.id,
            output.id,
            job.attempt,
            SCHEMES[spec.encryption.scheme],
            key_count(spec, info),
        )
        provided = await self.provider.content_keys(request)
        key_ids = {key.key_id for key in provided}
        if len(provided) != request.count or len(key_ids) != request.count:
            raise ValueError(f"the key provider gave {len(provided)} keys for {request.count}")
        if any(len(key.key) != KEY_BYTES or len(key.key_id) != KEY_BYTES for key in provided):
            raise ValueError("the key provider gave a key or key id that is not 16 bytes")
        rotation = spec.encryption.rotate_every_segments
        stored = [
            SealedContentKey(
                key.key_id.hex(),
                position * rotation,
                self.keyring.seal(
                    key.key.hex(), context=_context(output.id, job.attempt, key.key_id.hex())
                ),
            )
            for position, key in enumerate(provided)
        ]
        await tx.content_keys.replace_keys(output.id, job.attempt, stored, now())
        log.info(
            "made %d content key(s) for output %s of job %s (attempt %d)",
            len(stored),
            output.id,
            job.id,
            job.attempt,
        )
        return stored

    async def key(self, job_id: str, output_id: str, generation: int, key_id: str) -> bytes | None:
        """One key for the key endpoint, or None when that attempt of the job's output has
        no such key (or it no longer opens)."""
        async with self.store.reading() as tx:
            sealed = await tx.content_keys.sealed_key(job_id, output_id, generation, key_id)
        if sealed is None:
            return None
        try:
            return self._open(sealed, output_id, generation, key_id)
        except SecretUnreadable as error:
            log.warning("content key %s of output %s does not open: %s", key_id, output_id, error)
            return None

    def _open(self, sealed: str, output_id: str, generation: int, key_id: str) -> bytes:
        return bytes.fromhex(
            self.keyring.open(sealed, context=_context(output_id, generation, key_id))
        )
