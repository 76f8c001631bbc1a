"""SQLAlchemy 2.0 typed models. Statuses are stored as text mirroring domain.states."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..domain.states import DeliveryStatus, JobStatus, OutputStatus, TaskKind, TaskStatus


class Base(DeclarativeBase):
    pass


def _one_of(column: str, statuses: type[StrEnum]) -> str:
    """A CHECK clause naming every member of a domain status enum."""
    return f"{column} IN ({', '.join(repr(str(status)) for status in statuses)})"


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    # sha256 of the whole key: a leaked database does not leak usable keys.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # NULL keys never collide, so jobs without a key are unconstrained.
        UniqueConstraint("organization_id", "idempotency_key", name="uq_jobs_idempotency"),
        # List: newest first (created_at, id) within an organization, optionally by status.
        Index("ix_jobs_org_created_id", "organization_id", "created_at", "id"),
        Index("ix_jobs_org_status_created_id", "organization_id", "status", "created_at", "id"),
        CheckConstraint(_one_of("status", JobStatus), name="ck_jobs_status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    status: Mapped[str] = mapped_column(String(32))
    stage: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    priority: Mapped[int] = mapped_column(Integer)
    delayed_start: Mapped[bool] = mapped_column(Boolean, default=False)
    input_url: Mapped[str] = mapped_column(Text)
    concat_input_urls: Mapped[list] = mapped_column(JSON, default=list)
    job_metadata: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    webhook_url: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # sha256 of the canonical request: the same key with another request is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    output_origin: Mapped[str] = mapped_column(Text, default="")
    # Origins of the organization (kiln.v1.OriginService), as requested: the input's origin
    # and path (input_url is then empty), and the outputs' default origin and path prefix.
    input_origin_id: Mapped[str] = mapped_column(String(64), default="")
    input_path: Mapped[str] = mapped_column(Text, default="")
    output_origin_id: Mapped[str] = mapped_column(String(64), default="")
    output_path_prefix: Mapped[str] = mapped_column(Text, default="")
    # kiln.v1.QcPolicy as requested (0, unset, means REPORT).
    qc_policy: Mapped[int] = mapped_column(Integer, default=0)
    # kiln.v1.InputInfo, serialized: it is only ever read whole.
    input_info: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # kiln.v1.JobError, serialized; NULL unless FAILED or REJECTED.
    error: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    estimated_cost_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actual_cost_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Last Watch event sequence written for this job; bumped in the same transaction.
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    probed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Output(Base):
    __tablename__ = "outputs"
    __table_args__ = (
        CheckConstraint(_one_of("status", OutputStatus), name="ck_outputs_status"),
        # The periodic sweep's due-removal query (outputs.live_copies_due).
        Index("ix_outputs_live_copies_due_at", "live_copies_due_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    # kiln.v1.OutputSpec as requested (preset reference kept) and as resolved.
    spec: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # kiln.worker.v1.TranscodeResult, serialized: files and notes.
    result: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    estimated_cost_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actual_cost_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # HLS/DASH/CMAF: one entry per video variant (priced height, fps, rate, estimated and
    # actual micros and seconds); the view adds what the spec says (codec, resolution).
    variant_pricing: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # Where the output's files are: "" for the job's output_origin, else an origin of the
    # organization and the job's path prefix ("ori_…" or "ori_…/customers/42").
    origin: Mapped[str] = mapped_column(Text, default="")
    # When the output last moved to PROCESSING (its first task of the attempt leased): the
    # start its ETA's rate is measured from.
    running_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Encrypted outputs: the ids (hex) of the current attempt's content keys, in order of
    # use. Public (the CENC KID is in the MPD); the keys themselves are in content_keys.
    content_key_ids: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # kiln.v1.QcReport as the server judged it, serialized; kept apart from result because
    # an output that QC_POLICY_FAIL failed keeps its report and has no result.
    qc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # A chunked MPEG-TS ladder with audio: when its live copies (the video-only segments and
    # the audio rendition behind the live playlists) may be removed, set as its job completes
    # (jobs.live_copies); NULL when there are none to remove, or once they are gone.
    live_copies_due_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_claim", "status", "priority", "created_at"),
        CheckConstraint(_one_of("status", TaskStatus), name="ck_tasks_status"),
        CheckConstraint(_one_of("kind", TaskKind), name="ck_tasks_kind"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    output_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # domain.states.TaskKind
    status: Mapped[str] = mapped_column(String(16))  # QUEUED | LEASED | DONE | CANCELED
    priority: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Fencing token: bumped on every claim, so a report from an old lease is refused.
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    worker_id: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # W3C traceparent of the request that made the task (Create, Confirm, Retry, or the
    # probe's result); kept across requeues so every attempt joins the same trace.
    traceparent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Chunked outputs (CHUNK, AUDIO): kiln.worker.v1.ChunkRange, serialized, and its position.
    chunk_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chunk: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # kiln.worker.v1.ChunkResult of a finished piece, as the server accepted it: the merge
    # is planned from these.
    result: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # CHUNK and AUDIO: a digest of everything the piece's bytes depend on (jobs.chunk_reuse);
    # a retry of the job keeps a finished piece whose key is unchanged.
    reuse_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A piece that started DONE with the result of this earlier task of its output.
    reused_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # 0-100 of a running piece (an output's progress is the encoded fraction over its chunks).
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobEvent(Base):
    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True)
    # kiln.v1.WatchResponse, serialized once here and replayed as is.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """A signed notification of a job event, retried until the receiver takes it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_due", "status", "next_attempt_at"),
        CheckConstraint(_one_of("status", DeliveryStatus), name="ck_webhook_deliveries_status"),
    )

    # Also the webhook-id header: receivers deduplicate retries by it.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    # Whose secrets sign it (read at each attempt, so a rotation applies to retries).
    organization_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # "job.completed", "output.failed", "job.progress", ... (also in the payload).
    event_type: Mapped[str] = mapped_column(String(64), default="")
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # PENDING | DELIVERED | FAILED
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookSettings(Base):
    """An organization's default webhook URL (for jobs that name none)."""

    __tablename__ = "webhook_settings"

    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    default_url: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookSecret(Base):
    """A Standard Webhooks secret of one organization ("whk_" id).

    Stored as is, unlike API keys: signing needs the secret itself. The current secret has
    no expiry; a rotation gives the ones before it an expiry (the overlap) during which they
    sign too.
    """

    __tablename__ = "webhook_secrets"
    __table_args__ = (Index("ix_webhook_secrets_org", "organization_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    # None: the server-wide secret, signing on through the overlap of a first rotation.
    secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Preset(Base):
    """A saved output spec of one organization ("pst_" + ULID)."""

    __tablename__ = "presets"
    __table_args__ = (Index("ix_presets_org_created", "organization_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # kiln.v1.OutputSpec, serialized.
    spec: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Origin(Base):
    """An organization's own storage ("ori_" + ULID): an S3-compatible or GCS bucket, or a
    read-only HTTP(S) server. Its secret is sealed (server.secrets_keyring), never stored in
    clear; `settings` holds everything else."""

    __tablename__ = "origins"
    __table_args__ = (
        Index("ix_origins_org_created", "organization_id", "created_at", "id"),
        CheckConstraint("kind IN ('s3', 'gcs', 'http')", name="ck_origins_kind"),
        CheckConstraint("use IN ('input', 'output', 'input_and_output')", name="ck_origins_use"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))
    use: Mapped[str] = mapped_column(String(32))
    # The kind's fields but the secret, as JSON (endpoint, region, bucket, prefix, ...).
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    # "v1.<key id>.<nonce>.<ciphertext>", or "" when the origin has no secret.
    sealed_secret: Mapped[str] = mapped_column(Text, default="")
    secret_fingerprint: Mapped[str] = mapped_column(String(200), default="")
    public_base_url: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ContentKey(Base):
    """A key an encrypted output is made with, for one attempt of its job (`generation`).

    The key is sealed with the secrets keyring (server.secrets_keyring), bound to its output,
    generation and key id: never in clear in a column. A retried job gets new keys.
    """

    __tablename__ = "content_keys"
    __table_args__ = (
        UniqueConstraint("output_id", "generation", "key_id", name="uq_content_keys_output_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    output_id: Mapped[str] = mapped_column(ForeignKey("outputs.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer)
    # 32 hex digits: public, the name of the key in key URLs and the CENC KID.
    key_id: Mapped[str] = mapped_column(String(32))
    first_segment: Mapped[int] = mapped_column(Integer)
    sealed_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Worker(Base):
    """What a worker last said of itself (WorkerService/AnnounceWorker); its id is the
    prefix of its slots' task claims ("{id}/{slot}")."""

    __tablename__ = "workers"
    __table_args__ = (CheckConstraint("state IN ('ACTIVE', 'DRAINING')", name="ck_workers_state"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(64))
    capacity: Mapped[int] = mapped_column(Integer)
    task_kinds: Mapped[list[str]] = mapped_column(JSON)
    encoders: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_contact_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # {speed class: realtime factor} of its recent encodes (null before migration 0017).
    speeds: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class TaskOutbox(Base):
    """A ready task not yet published to Pub/Sub (KILN_DISPATCH=pubsub).

    Written in the transaction that made the task ready and deleted by the transaction
    that published it, so a crash between commit and publish loses nothing: the next
    drain (of any server replica) publishes it.
    """

    __tablename__ = "task_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    # W3C trace context of the request that made the task ready ("" when not traced).
    traceparent: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
