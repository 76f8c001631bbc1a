"""Assembles one server process: store, hub, JobService, both listeners, background loops."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
import uvicorn

from common.input_policy import InputPolicy
from common.storage.local import LocalStorage
from common.storage.signing import UrlSigner

from .api.auth import Authenticator
from .api.connect_adapter import connect_apps
from .api.grpc_adapter import add_public_services, add_worker_service
from .api.http_routes import HttpApp
from .config import Settings, check_dispatch, check_webhooks, check_worker_listener
from .delivery.bucket_relay import BucketRelay
from .delivery.file_server import OutputFileServer
from .delivery.key_server import KeyServer
from .delivery.links import PlaybackLinks
from .delivery.tokens import KEY_PURPOSE, PlaybackTokens
from .dispatch import Dispatch
from .dispatch.queue import QueueDispatch
from .events.hub import EventHub
from .events.listener import EVENTS_CHANNEL, TASKS_CHANNEL, PostgresListener
from .jobs.chunk_plan import ChunkSettings
from .jobs.content_keys import OutputKeys
from .jobs.lifecycle import Lifecycle
from .jobs.live_copies import LiveCopies
from .jobs.plan import ExplainOutput
from .jobs.playback_grants import GrantSettings
from .jobs.service import JobService
from .jobs.tasks import TaskService
from .metrics import ServerMetrics
from .origins.catalog import OriginCatalog
from .origins.directory import ServerOrigins, check_sealed_secrets
from .secrets_keyring import SecretsKeyring, load_keyring
from .store.migrate import migrate
from .store.outage import log_round_failure
from .store.store import Store
from .tracing import connect_interceptors, grpc_interceptors, setup_tracing
from .webhooks.sender import RetryPolicy, WebhookSender, webhook_secret
from .webhooks.settings import WebhookSettingsService

log = logging.getLogger(__name__)


def signing_secret(settings: Settings) -> bytes:
    """The configured secret, or one generated once and kept in the data dir."""
    if settings.signing_key:
        return settings.signing_key.encode()
    path = settings.data_dir / "signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


@dataclass
class Server:
    settings: Settings
    store: Store
    hub: EventHub
    tasks: TaskService
    webhooks: WebhookSender
    grpc_server: grpc.aio.Server
    worker_server: grpc.aio.Server
    http_server: uvicorn.Server
    listener: PostgresListener | None
    dispatch: Dispatch
    # The public gRPC listener's stop, begun by request_stop().
    _grpc_stopping: asyncio.Future | None = None
    # What GET /metrics shows; `kiln up` includes its embedded worker's registry.
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    keyring: SecretsKeyring | None = None
    # Chunked MPEG-TS ladders' live copies, removed by the sweep once due.
    live_copies: LiveCopies | None = None

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        # Refuse to start with a secrets key that cannot open the stored origin secrets:
        # every job on those origins would fail later, one at a time.
        await check_sealed_secrets(self.store, self.keyring)
        self.hub.start()
        if self.listener:
            await self.listener.start()
        await self.dispatch.start(self.tasks.lost.dead_lettered)
        await self.grpc_server.start()
        await self.worker_server.start()
        reaper = asyncio.create_task(self._sweep(), name="sweeper")
        self.webhooks.start()
        # Start uvicorn in steps (not serve()) so the socket is bound before we say
        # ready, and so signals stay with the CLI's handlers.
        config = self.http_server.config
        if not config.loaded:
            config.load()
        self.http_server.lifespan = config.lifespan_class(config)
        await self.http_server.startup()
        http = asyncio.create_task(self._serve_http(), name="http")
        log.info(
            "kiln server ready: http=%s:%s grpc=%s:%s workers=%s:%s dispatch=%s",
            self.settings.http_host,
            self.settings.http_port,
            self.settings.grpc_host,
            self.settings.grpc_port,
            self.settings.worker_host,
            self.settings.worker_port,
            self.dispatch.name,
        )
        if ready:
            ready.set()
        try:
            await http
        finally:
            # Watch streams have ended (request_stop); unary calls get the grace period.
            # Workers' reports are taken until last, so a finishing task is not redone.
            grace = self.settings.shutdown_grace_seconds
            reaper.cancel()
            await self.webhooks.stop()
            await (self._grpc_stopping or self.grpc_server.stop(grace=grace))
            await self.worker_server.stop(grace=grace)
            await self.dispatch.stop()
            await self.hub.stop()
            if self.listener:
                await self.listener.stop()
            await self.store.close()

    async def _serve_http(self) -> None:
        await self.http_server.main_loop()
        await self.http_server.shutdown()

    def request_stop(self) -> None:
        """SIGTERM: Watch streams end now with UNAVAILABLE and the sequence to resume
        after; the listeners stop taking calls and finish the ones in flight."""
        self.hub.close_all()
        self.http_server.should_exit = True
        # New gRPC calls are refused from now on; calls in flight get the grace period.
        self._grpc_stopping = asyncio.ensure_future(
            self.grpc_server.stop(grace=self.settings.shutdown_grace_seconds)
        )

    async def _sweep(self) -> None:
        """The server's one periodic loop: expired leases taken back, then the live copies
        that are due removed. Every replica sweeps; each step decides under the job's lock
        (and a removal done twice deletes nothing the second time)."""
        interval = max(self.settings.lease_seconds / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tasks.lost.reap_expired_leases()
            except Exception:
                # Logged, never swallowed silently: a reaper that stops reaping strands jobs.
                log_round_failure(log, "lease reaper round failed")
            if self.live_copies is None:
                continue
            try:
                await self.live_copies.remove_due()
            except Exception:
                # The time stays in the store: the next round tries again.
                log_round_failure(log, "live copies round failed")


# grpc core cancels calls that have arrived but that the server has not yet taken up past
# 1,000 (at random) and 3,000 (always): thousands of watchers reconnecting at once after a
# restart would see CANCELLED. Holding them costs a few KiB each; the event loop takes them
# up in arrival order.
PUBLIC_GRPC_OPTIONS = [
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
]


def build_server(
    settings: Settings,
    *,
    explain: ExplainOutput | None = None,
    placeholders: dict[str, str] | None = None,
) -> Server:
    """The server from its settings. explain: the worker's command builders for PlanJob,
    which the composition root (kiln_cli) hands in; without them PlanJob is refused."""
    check_worker_listener(settings)
    check_dispatch(settings)
    check_webhooks(settings)
    migrate(settings.effective_database_url)
    store = Store(settings.effective_database_url)
    traced = setup_tracing(store.engine)
    storage = LocalStorage(settings.storage_dir)
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    signer = UrlSigner(
        signing_secret(settings), settings.effective_public_url, settings.download_url_ttl_seconds
    )

    async def read_events(job_id: str, after: int):
        async with store.transaction() as tx:
            return await tx.events.events_after(job_id, after)

    async def output_origin(job_id: str, output_id: str) -> str | None:
        async with store.reading() as tx:
            return await tx.outputs.output_origin(job_id, output_id)

    hub = EventHub(read_events, settings.heartbeat_seconds)
    metrics = ServerMetrics(lease_seconds=settings.lease_seconds)
    metrics.count_watch_streams(lambda: hub.subscription_count)
    keyring = load_keyring(
        {
            "KILN_SECRETS_KEY": settings.secrets_key,
            "KILN_SECRETS_KEYS_PREVIOUS": settings.previous_secrets_keys,
        },
        settings.data_dir,
    )
    origins = ServerOrigins(
        storage,
        signer,
        allowed_buckets=settings.allowed_output_buckets,
        ttl_seconds=settings.download_url_ttl_seconds,
        store=store,
        keyring=keyring,
        grant_ttl_seconds=settings.origin_url_ttl_seconds,
    )
    tokens = PlaybackTokens(
        signing_secret(settings),
        [key.encode() for key in settings.previous_signing_keys],
        ttl_seconds=settings.playback_url_ttl_seconds,
    )
    # Viewers' key tokens: the same signing keys (and rotation), another purpose.
    key_tokens = PlaybackTokens(
        signing_secret(settings),
        [key.encode() for key in settings.previous_signing_keys],
        ttl_seconds=settings.key_token_ttl_seconds,
        purpose=KEY_PURPOSE,
    )
    output_files = OutputFileServer(
        tokens,
        storage,
        output_origin,
        BucketRelay(origins),
        allowed_origins=settings.playback_allowed_origins,
        key_tokens=key_tokens,
        public_url=settings.effective_public_url,
    )
    content_keys = OutputKeys(store, keyring)
    key_server = KeyServer(key_tokens, content_keys.key, output_files)
    dispatch: Dispatch = QueueDispatch()
    if settings.dispatch == "pubsub":
        # Imported only here: Google's client is a fifth of a server's start (common.pubsub).
        from .dispatch.pubsub import PubSubDispatch

        dispatch = PubSubDispatch(store, settings.pubsub)
    # Set by a commit that queued a webhook delivery; the sender waits on it.
    webhook_queued = asyncio.Event()
    life = Lifecycle(
        store,
        hub,
        dispatch,
        metrics,
        pricing=settings.pricing,
        chunking=ChunkSettings(
            settings.chunk_threshold_seconds,
            settings.chunk_seconds,
            settings.first_chunk_seconds,
        ),
        webhook_queued=webhook_queued,
        live_copies_grace=settings.live_copies_grace_seconds,
    )
    # One policy for webhook destinations: Create checks a job's webhook_url with the one
    # the sender and the settings use.
    webhook_policy = InputPolicy.from_lists([], settings.webhook_allow_hosts)
    jobs = JobService(
        life,
        InputPolicy.from_lists(
            settings.input_roots, settings.input_allow_hosts, settings.gcs_input_buckets
        ),
        file_url=origins.url,
        playback=PlaybackLinks(tokens, settings.effective_public_url, settings.public_base_url),
        remove_output_files=origins.delete_job_files,
        origins=origins,
        default_origin=settings.default_origin,
        webhook_policy=webhook_policy,
        explain=explain,
        placeholders=placeholders,
        grant_settings=GrantSettings(
            key_tokens,
            default_ttl_seconds=settings.key_token_ttl_seconds,
            max_ttl_seconds=settings.key_token_max_ttl_seconds,
        ),
        lease_seconds=settings.lease_seconds,
    )
    webhooks = WebhookSender(
        store,
        webhook_secret(settings.webhook_secret, settings.data_dir),
        webhook_policy,
        retry=RetryPolicy(
            first_backoff=timedelta(seconds=settings.webhook_backoff_seconds),
            max_backoff=timedelta(seconds=settings.webhook_max_backoff_seconds),
            window=timedelta(hours=settings.webhook_retry_hours),
            max_attempts=settings.webhook_max_attempts,
        ),
        timeout_seconds=settings.webhook_timeout_seconds,
        metrics=metrics,
        queued=webhook_queued,
    )
    webhook_settings = WebhookSettingsService(
        store, webhook_policy, overlap_seconds=settings.webhook_secret_overlap_seconds
    )
    tasks = TaskService(
        life,
        lease_seconds=settings.lease_seconds,
        max_task_attempts=settings.max_task_attempts,
        stored_sizes=origins.stored_sizes,
        progress_events_per_second=settings.progress_events_per_second,
        files=origins,
        content_keys=content_keys,
    )
    auth = Authenticator(store)
    origin_catalog = OriginCatalog(
        store,
        keyring,
        InputPolicy.from_lists([], settings.input_allow_hosts),
        origins,
    )

    grpc_server = grpc.aio.server(
        interceptors=grpc_interceptors(traced), options=PUBLIC_GRPC_OPTIONS
    )
    add_public_services(grpc_server, jobs, auth, webhook_settings, origin_catalog)
    grpc_server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    # Workers get their own listener: the public port never serves the WorkerService.
    worker_server = grpc.aio.server(interceptors=grpc_interceptors(traced))
    add_worker_service(worker_server, tasks, settings.worker_token)
    worker_server.add_insecure_port(f"{settings.worker_host}:{settings.worker_port}")

    http_app = HttpApp(
        connect_apps(jobs, auth, connect_interceptors(traced), webhook_settings, origin_catalog),
        signer,
        output_files,
        metrics=lambda: metrics.render(store),
        keys=key_server,
    )
    http_server = uvicorn.Server(
        uvicorn.Config(
            http_app,
            host=settings.http_host,
            port=settings.http_port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(int(settings.shutdown_grace_seconds), 1),
        )
    )
    listener = None
    if store.is_postgres:
        dsn = settings.effective_database_url.replace("postgresql+psycopg://", "postgresql://")
        listener = PostgresListener(
            dsn,
            {EVENTS_CHANNEL: life.on_events_notification, TASKS_CHANNEL: dispatch.on_notification},
        )
    return Server(
        settings,
        store,
        hub,
        tasks,
        webhooks,
        grpc_server,
        worker_server,
        http_server,
        listener,
        dispatch,
        metrics=metrics,
        keyring=keyring,
        live_copies=LiveCopies(store, origins, settings.live_copies_grace_seconds),
    )
