"""What makes two Creates with one idempotency key "the same request"."""

from __future__ import annotations

import hashlib

from kiln.v1 import job_service_pb2

from .errors import AlreadyExists


def request_fingerprint(request: job_service_pb2.CreateRequest) -> str:
    """sha256 (hex) of the request as decoded, without its idempotency key.

    Deterministic serialization orders map entries, so the same request sent as JSON with
    its fields in another order, or as binary, has the same fingerprint. The key is left out
    because it may arrive as a header instead, and unknown fields because an older server
    would not see them either.
    """
    canonical = job_service_pb2.CreateRequest()
    canonical.CopyFrom(request)
    canonical.ClearField("idempotency_key")
    canonical.DiscardUnknownFields()
    return hashlib.sha256(canonical.SerializeToString(deterministic=True)).hexdigest()


def check_replay(key: str, job_id: str, stored: str | None, fingerprint: str) -> None:
    """A repeated key must repeat the request; jobs from before fingerprints (None) pass."""
    if stored is not None and stored != fingerprint:
        raise AlreadyExists(
            f"idempotency key {key!r} was already used for job {job_id} with a different request"
        )
