"""What a use case hands the store to write: a new job, its outputs and tasks, as plain values.

The use cases (server/jobs) decide what is made; the store's repositories turn these values
into rows (`tx.jobs.new_job_rows`, `tx.tasks.insert_new_tasks`). The columns every new row
starts with (a job PENDING at attempt 1, an output PENDING, a task QUEUED and never leased,
progress 0) are the repositories' to set: a use case cannot start a row anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .states import TaskKind


@dataclass(frozen=True, slots=True)
class NewOutput:
    id: str
    position: int
    # kiln.v1.OutputSpec with its presets resolved, serialized.
    spec: bytes
    # Where its files go ("ori_…" for an organization's origin, else empty or the job's).
    origin: str


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    organization_id: str
    priority: int
    delayed_start: bool
    input_url: str
    concat_input_urls: tuple[str, ...]
    metadata: Mapping[str, str]
    webhook_url: str
    idempotency_key: str | None
    # The request's fingerprint, kept with a keyed job to tell a replay from a reuse.
    request_hash: str | None
    output_origin: str
    input_origin_id: str
    input_path: str
    output_origin_id: str
    output_path_prefix: str
    created_at: datetime
    # kiln.v1.QcPolicy as requested.
    qc_policy: int
    outputs: tuple[NewOutput, ...]


@dataclass(frozen=True, slots=True)
class KeptPiece:
    task_id: str
    result: bytes


@dataclass(frozen=True, slots=True)
class NewTask:
    id: str
    job_id: str
    kind: TaskKind
    priority: int
    created_at: datetime
    output_id: str | None = None
    # CHUNK and AUDIO tasks: their kiln.worker.v1.ChunkRange (serialized) and its position.
    chunk_index: int | None = None
    chunk: bytes | None = field(default=None, repr=False)
    # CHUNK and AUDIO tasks: what their bytes depend on (jobs.chunk_reuse.piece_key).
    reuse_key: str | None = None
    # A piece kept from an earlier attempt: that task's id and its accepted result (a
    # kiln.worker.v1.ChunkResult); the task starts DONE with it and is never queued.
    kept: KeptPiece | None = field(default=None, repr=False)
    # The W3C traceparent of the request that made it (tracing.stamp_tasks).
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class NewPreset:
    id: str
    organization_id: str
    name: str
    description: str
    # kiln.v1.OutputSpec, serialized.
    spec: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewOrigin:
    id: str
    organization_id: str
    name: str
    kind: str
    use: str
    settings: Mapping[str, object]
    # The credentials, sealed by the keyring (empty when it has none).
    sealed_secret: str
    secret_fingerprint: str
    public_base_url: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewWebhookDelivery:
    """One event for one URL, due at once (the store starts it PENDING, never attempted)."""

    # Also the webhook-id header: the same on every retry of this event.
    id: str
    job_id: str
    organization_id: str | None
    event_type: str
    url: str
    # The signed body, as sent.
    payload: str
    created_at: datetime
