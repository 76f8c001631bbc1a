"""A worker's Prometheus metrics, on a registry of this process's own (never the global one).

Served on `KILN_WORKER_METRICS_HOST:KILN_WORKER_METRICS_PORT` when the port is set (0, the
default, serves nothing: several workers on one machine would otherwise fight over one
port). `kiln up` also shows its embedded worker's registry on the server's /metrics.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

KINDS = ("probe", "transcode")
# What became of a task this worker ran.
OUTCOMES = ("completed", "failed", "canceled", "released", "refused", "error")
# Media seconds encoded per wall-clock second: below 1 is slower than real time.
REALTIME_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks = Counter(
            "kiln_worker_tasks",
            "Tasks this worker ran, by kind and outcome: completed, failed (error reported), "
            "canceled (stopped by the server: job canceled or lease lost), released (given "
            "back while draining), refused (the server refused the report), error (the "
            "worker failed unexpectedly).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "kiln_worker_tasks_in_progress",
            "Tasks this worker is running now.",
            ["kind"],
            registry=self.registry,
        )
        self.realtime_factor = Histogram(
            "kiln_encode_realtime_factor",
            "Media seconds per wall-clock second of each FFmpeg encode.",
            buckets=REALTIME_BUCKETS,
            registry=self.registry,
        )
        for kind in KINDS:
            self.in_progress.labels(kind=kind)
            for outcome in OUTCOMES:
                self.tasks.labels(kind=kind, outcome=outcome)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def task_started(self, kind: str) -> None:
        self.in_progress.labels(kind=kind).inc()

    def task_ended(self, kind: str, outcome: str) -> None:
        self.in_progress.labels(kind=kind).dec()
        self.tasks.labels(kind=kind, outcome=outcome).inc()

    def encoded(self, media_seconds: float, wall_seconds: float) -> None:
        if media_seconds > 0 and wall_seconds > 0:
            self.realtime_factor.observe(media_seconds / wall_seconds)

    def serve(self, host: str, port: int) -> None:
        """Serve GET /metrics on host:port from a thread (port 0: not at all)."""
        if not port:
            return
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        log.info("worker metrics on http://%s:%s/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
