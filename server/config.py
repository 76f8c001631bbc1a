"""Settings, read once from the environment.

Every knob is an environment variable (KILN_*) so that Postgres, GCS and Pub/Sub
are switched on by configuration, never by code changes. docs/configuration.md lists them all.
The worker reads its own (worker/settings.py); `kiln up` builds both from one environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from common.pubsub import PubSubSettings
from common.settings_env import comma_list, env_float, env_int, env_port, is_loopback_host

from .domain.pricing_table import PricingTable, PricingTableError, load_pricing_table
from .domain.pricing_table import default_pricing_table as _default_pricing_table


@dataclass(frozen=True)
class Settings:
    """Runtime configuration of the server."""

    data_dir: Path = Path("var")
    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # Base URL used in signed download links; derived from the HTTP listener when empty.
    public_url: str = ""
    storage_dir: Path = Path("var/storage")
    # Secret for signed download URLs; generated into data_dir when empty.
    signing_key: str = ""
    download_url_ttl_seconds: int = 3600
    # Presigned URLs of an organization's origin handed to workers (input reads, uploads).
    origin_url_ttl_seconds: int = 21600
    # AES-GCM key of origins' secrets ("<key id>:<base64url>"); generated into data_dir
    # when empty. Previous keys open secrets sealed before a rotation.
    secrets_key: str = field(default="", repr=False)
    previous_secrets_keys: str = field(default="", repr=False)
    # Playback URLs (/play/{token}/{job}/{output}/…): how long one works at least, earlier
    # signing keys that still verify (rotation), and which sites' players may read them.
    playback_url_ttl_seconds: int = 21600
    previous_signing_keys: list[str] = field(default_factory=list)
    playback_allowed_origins: list[str] = field(default_factory=lambda: ["*"])
    # Key tokens of encrypted outputs (CreatePlaybackGrant): how long one lasts when the
    # caller names no TTL, and the longest a caller may ask for.
    key_token_ttl_seconds: int = 600
    key_token_max_ttl_seconds: int = 86400
    # A CDN or public bucket in front of the output storage: playback URLs become
    # {public_base_url}/{job_id}/{output_id}/… (no token) when set.
    public_base_url: str = ""
    heartbeat_seconds: float = 30.0
    # Roots under which file:// inputs are allowed.
    input_roots: list[str] = field(default_factory=list)
    # Hosts or CIDR ranges that http(s) inputs may reach although they are private.
    input_allow_hosts: list[str] = field(default_factory=list)
    # The WorkerService's own listener: workers only, never the public gRPC port.
    worker_host: str = "127.0.0.1"
    worker_port: int = 50052
    # Gcs buckets gs:// inputs may be read from (none: gs:// inputs are refused).
    gcs_input_buckets: list[str] = field(default_factory=list)
    lease_seconds: float = 30.0
    max_task_attempts: int = 3
    # How ready tasks reach workers: "db" (the tasks table, long-polled) or "pubsub".
    dispatch: str = "db"
    pubsub: PubSubSettings = field(default_factory=PubSubSettings)
    # SIGTERM: Watch streams end at once (UNAVAILABLE, resumable); other calls get this long.
    shutdown_grace_seconds: float = 10.0
    # Shared secret workers present to the WorkerService; required unless it listens on
    # loopback only (the embedded default).
    worker_token: str = ""
    log_level: str = "INFO"
    # Standard Webhooks secret ("whsec_" + base64); generated into data_dir when empty.
    webhook_secret: str = ""
    # Hosts or CIDR ranges webhook URLs may reach although they are private.
    webhook_allow_hosts: list[str] = field(default_factory=list)
    # A failed delivery is retried after 1 s, 2 s, 4 s … (capped) until this long after its
    # event; KILN_WEBHOOK_MAX_ATTEMPTS caps the attempts too (0: no cap but the window).
    webhook_retry_hours: float = 24.0
    webhook_backoff_seconds: float = 1.0
    webhook_max_backoff_seconds: float = 3600.0
    webhook_max_attempts: int = 0
    webhook_timeout_seconds: float = 10.0
    # How long an organization's old secrets keep signing after RotateWebhookSecret.
    webhook_secret_overlap_seconds: float = 86400.0
    # Google Cloud Storage: when a bucket is set, outputs go there by default.
    gcs_bucket: str = ""
    gcs_prefix: str = ""
    # Buckets a job's output_origin may name (the default bucket is always allowed).
    gcs_output_buckets: list[str] = field(default_factory=list)
    # KILN_PRICING_FILE laid over the built-in table (server/domain/pricing_table.toml).
    pricing_file: str = ""
    pricing: PricingTable = field(default_factory=_default_pricing_table)

    # Progress events logged per job per second at most (0: every report); reports between
    # them renew the lease only. Status changes are never held back.
    progress_events_per_second: float = 2.0
    # Chunked encoding: outputs of inputs (clips) longer than this many seconds are cut into
    # chunks of about chunk_seconds that workers encode in parallel (0: never).
    chunk_threshold_seconds: float = 600.0
    chunk_seconds: float = 60.0
    # HLS: the first chunk's length, short so a player can start early (0: like the rest).
    first_chunk_seconds: float = 2.0
    # Chunked MPEG-TS HLS with audio: how long after its job completed the live copies (the
    # video-only segments and audio rendition of the live playlists) stay. None: the larger
    # of 10 minutes and twice the output's duration (server.jobs.live_copies); 0: for ever.
    live_copies_grace_seconds: float | None = None
    # Net allocations between the garbage collector's young passes (server.gc_tuning);
    # 0 keeps Python's defaults.
    gc_gen0_threshold: int = 50_000

    @property
    def default_origin(self) -> str:
        if not self.gcs_bucket:
            return ""
        return f"gs://{self.gcs_bucket}/{self.gcs_prefix.strip('/')}".rstrip("/")

    @property
    def allowed_output_buckets(self) -> list[str]:
        return [*self.gcs_output_buckets, *([self.gcs_bucket] if self.gcs_bucket else [])]

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'kiln.db'}"

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"http://{self.http_host}:{self.http_port}"


class UnsafeConfiguration(Exception):
    """A setting (or combination) the server refuses to start with: it would expose the
    service, or it names something that does not exist."""


def check_worker_listener(settings: Settings) -> None:
    """The WorkerService hands out tasks (input URLs included) and takes results: anywhere
    but loopback it must demand a token."""
    if not is_loopback_host(settings.worker_host) and not settings.worker_token:
        raise UnsafeConfiguration(
            f"KILN_WORKER_HOST={settings.worker_host} is reachable from other machines: "
            "set KILN_WORKER_TOKEN (workers send it as a bearer token) or listen on loopback"
        )


def check_dispatch(settings: Settings) -> None:
    if settings.dispatch not in ("db", "pubsub"):
        raise UnsafeConfiguration(
            f"KILN_DISPATCH={settings.dispatch!r} is not a dispatch backend: use db or pubsub"
        )


def load_pricing(pricing_file: str) -> PricingTable:
    """The pricing table, checked now: a bad file refuses the start, naming the entry."""
    try:
        return load_pricing_table(pricing_file or None)
    except PricingTableError as bad:
        raise UnsafeConfiguration(f"KILN_PRICING_FILE: {bad}") from None


def check_webhooks(settings: Settings) -> None:
    """Retry timings that would make the sender spin, or never retry, are refused."""
    if settings.webhook_backoff_seconds <= 0 or settings.webhook_max_backoff_seconds <= 0:
        raise UnsafeConfiguration(
            "KILN_WEBHOOK_BACKOFF_SECONDS and KILN_WEBHOOK_MAX_BACKOFF_SECONDS must be positive"
        )
    if settings.webhook_retry_hours < 0 or settings.webhook_secret_overlap_seconds < 0:
        raise UnsafeConfiguration(
            "KILN_WEBHOOK_RETRY_HOURS and KILN_WEBHOOK_SECRET_OVERLAP_SECONDS must not be negative"
        )


def _optional_seconds(env: dict[str, str], name: str) -> float | None:
    """A number of seconds, or None when unset or blank: the default depends on more than
    the setting (see its field)."""
    if not env.get(name, "").strip():
        return None
    return env_float(env, name, 0)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read KILN_* variables; anything unset keeps the embedded default."""
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("KILN_DATA_DIR", "var"))
    pricing_file = env.get("KILN_PRICING_FILE", "").strip()
    return Settings(
        data_dir=data_dir,
        database_url=env.get("KILN_DATABASE_URL", ""),
        http_host=env.get("KILN_HTTP_HOST", "127.0.0.1"),
        http_port=env_port(env, "KILN_HTTP_PORT", 8080),
        grpc_host=env.get("KILN_GRPC_HOST", "127.0.0.1"),
        grpc_port=env_port(env, "KILN_GRPC_PORT", 50051),
        public_url=env.get("KILN_PUBLIC_URL", ""),
        storage_dir=Path(env.get("KILN_STORAGE_DIR", str(data_dir / "storage"))),
        signing_key=env.get("KILN_SIGNING_KEY", ""),
        download_url_ttl_seconds=env_int(env, "KILN_DOWNLOAD_URL_TTL_SECONDS", 3600),
        origin_url_ttl_seconds=env_int(env, "KILN_ORIGIN_URL_TTL_SECONDS", 21600, minimum=1),
        secrets_key=env.get("KILN_SECRETS_KEY", ""),
        previous_secrets_keys=env.get("KILN_SECRETS_KEYS_PREVIOUS", ""),
        playback_url_ttl_seconds=env_int(env, "KILN_PLAYBACK_URL_TTL_SECONDS", 21600, minimum=1),
        previous_signing_keys=comma_list(env.get("KILN_SIGNING_KEYS_PREVIOUS", "")),
        playback_allowed_origins=comma_list(env.get("KILN_PLAYBACK_ALLOWED_ORIGINS", "*")) or ["*"],
        key_token_ttl_seconds=env_int(env, "KILN_KEY_TOKEN_TTL_SECONDS", 600, minimum=1),
        key_token_max_ttl_seconds=env_int(env, "KILN_KEY_TOKEN_MAX_TTL_SECONDS", 86400, minimum=1),
        public_base_url=env.get("KILN_PUBLIC_BASE_URL", "").strip().rstrip("/"),
        heartbeat_seconds=env_float(env, "KILN_HEARTBEAT_SECONDS", 30, positive=True),
        input_roots=comma_list(env.get("KILN_INPUT_ROOTS", str(data_dir / "inputs"))),
        input_allow_hosts=comma_list(env.get("KILN_INPUT_ALLOW_HOSTS", "")),
        worker_host=env.get("KILN_WORKER_HOST", "127.0.0.1"),
        worker_port=env_port(env, "KILN_WORKER_PORT", 50052),
        gcs_input_buckets=comma_list(env.get("KILN_GCS_INPUT_BUCKETS", "")),
        lease_seconds=env_float(env, "KILN_LEASE_SECONDS", 30, positive=True),
        max_task_attempts=env_int(env, "KILN_MAX_TASK_ATTEMPTS", 3, minimum=1),
        dispatch=env.get("KILN_DISPATCH", "db").strip().lower() or "db",
        pubsub=PubSubSettings.from_env(env),
        shutdown_grace_seconds=env_float(env, "KILN_SHUTDOWN_GRACE_SECONDS", 10),
        worker_token=env.get("KILN_WORKER_TOKEN", ""),
        log_level=env.get("KILN_LOG_LEVEL", "INFO"),
        webhook_secret=env.get("KILN_WEBHOOK_SECRET", ""),
        webhook_allow_hosts=comma_list(env.get("KILN_WEBHOOK_ALLOW_HOSTS", "")),
        webhook_retry_hours=env_float(env, "KILN_WEBHOOK_RETRY_HOURS", 24),
        webhook_backoff_seconds=env_float(env, "KILN_WEBHOOK_BACKOFF_SECONDS", 1),
        webhook_max_backoff_seconds=env_float(env, "KILN_WEBHOOK_MAX_BACKOFF_SECONDS", 3600),
        webhook_max_attempts=env_int(env, "KILN_WEBHOOK_MAX_ATTEMPTS", 0),
        webhook_timeout_seconds=env_float(env, "KILN_WEBHOOK_TIMEOUT_SECONDS", 10, positive=True),
        webhook_secret_overlap_seconds=env_float(env, "KILN_WEBHOOK_SECRET_OVERLAP_SECONDS", 86400),
        gcs_bucket=env.get("KILN_GCS_BUCKET", ""),
        gcs_prefix=env.get("KILN_GCS_PREFIX", ""),
        gcs_output_buckets=comma_list(env.get("KILN_GCS_OUTPUT_BUCKETS", "")),
        pricing_file=pricing_file,
        pricing=load_pricing(pricing_file),
        progress_events_per_second=env_float(env, "KILN_PROGRESS_EVENTS_PER_SECOND", 2),
        chunk_threshold_seconds=env_float(env, "KILN_CHUNK_THRESHOLD_SECONDS", 600),
        chunk_seconds=env_float(env, "KILN_CHUNK_SECONDS", 60, positive=True),
        first_chunk_seconds=env_float(env, "KILN_FIRST_CHUNK_SECONDS", 2),
        live_copies_grace_seconds=_optional_seconds(env, "KILN_LIVE_COPIES_GRACE_SECONDS"),
        gc_gen0_threshold=env_int(env, "KILN_GC_GEN0_THRESHOLD", 50000),
    )


__all__ = [
    "Settings",
    "UnsafeConfiguration",
    "check_dispatch",
    "check_webhooks",
    "check_worker_listener",
    "load_pricing",
    "load_settings",
]
