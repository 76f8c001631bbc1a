"""A task's encryption (Task.encryption) as the media layer's OutputEncryption.

The keys arrive over the worker's authenticated channel and stay in this process's memory:
nothing here writes, logs or traces them.
"""

from __future__ import annotations

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.content_keys import ContentKey, EncryptionScheme, OutputEncryption

from ..media.errors import OutputSpecError

_SCHEMES = {
    job_pb2.ENCRYPTION_SCHEME_AES_128: EncryptionScheme.AES_128,
    job_pb2.ENCRYPTION_SCHEME_CENC: EncryptionScheme.CENC,
}


def task_encryption(task: wpb.Task) -> OutputEncryption | None:
    """None for a clear output; OutputSpecError for keys a worker cannot use (the server
    makes them, so this is a gap on its side, never retried)."""
    if not task.HasField("encryption"):
        return None
    message = task.encryption
    scheme = _SCHEMES.get(message.scheme)
    if scheme is None:
        raise OutputSpecError(f"encryption.scheme: {message.scheme} is not a scheme")
    keys = []
    for position, key in enumerate(message.keys):
        try:
            keys.append(ContentKey(key.key_id, key.key, key.uri, key.first_segment))
        except ValueError as error:
            raise OutputSpecError(f"encryption.keys[{position}]: {error}") from None
    return OutputEncryption(scheme, tuple(keys), message.rotate_every_segments)
