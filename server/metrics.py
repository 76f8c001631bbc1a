"""The server's Prometheus metrics, on a registry of this process's own (never the global one).

Counters and histograms move where things happen (a job's terminal transition, once its
transaction committed; a claim; a lease taken back; a webhook attempt). The queue depth, the
oldest queued task's wait and the fleet (what each worker announced, what it runs, when it
was last heard from) are read from the database when scraped: `render` reads them in the
event loop and only then generates the text, so no collector ever blocks on the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta

from kiln.v1 import job_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .domain.states import TERMINAL, TaskKind
from .jobs.fleet import FleetMember, judged
from .store.database import aware, now
from .store.store import Store

# Seconds a task waited for a worker: dispatch takes milliseconds, a busy fleet minutes.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

WEBHOOK_OUTCOMES = ("delivered", "retried", "failed")
LEASE_OUTCOMES = ("requeued", "failed")

# A worker silent this long leaves /metrics (its row stays: `kiln workers list` still shows
# it). A worker's default id is "{host}-{pid}", so every restart is a new worker: without a
# limit, the series of an autoscaled fleet's retired workers would only ever grow. An hour
# keeps a lost worker in view long enough to be noticed and alerted on.
WORKER_FORGOTTEN_AFTER = timedelta(hours=1)
# KILN_LEASE_SECONDS's default; the server passes its setting.
DEFAULT_LEASE_SECONDS = 30.0


def priority_label(priority: int) -> str:
    """`premium`, `standard`, `economy` (the stored number is the kiln.v1.Priority value)."""
    try:
        return job_pb2.Priority.Name(priority).removeprefix("PRIORITY_").lower()
    except ValueError:
        return str(priority)


PRIORITIES = tuple(
    priority_label(value)
    for value in job_pb2.Priority.values()
    if value != job_pb2.PRIORITY_UNSPECIFIED
)


class QueueDepthCollector(Collector):
    """`kiln_queue_depth{priority}` and `kiln_queue_oldest_seconds{priority}` from what the
    scrape handler read just before.

    The oldest task's wait is what an autoscaler scales workers on: depth alone says
    nothing of whether the fleet keeps up (ten tasks taken within a second are no backlog;
    one task waiting ten minutes is).
    """

    def __init__(self) -> None:
        self.depth: dict[str, int] = {}
        self.oldest_seconds: dict[str, float] = {}

    def describe(self) -> Iterable[Metric]:
        return self._families({}, {})

    def collect(self) -> Iterable[Metric]:
        return self._families(self.depth, self.oldest_seconds)

    @staticmethod
    def _families(depth: Mapping[str, int], oldest: Mapping[str, float]) -> list[Metric]:
        depth_family = GaugeMetricFamily(
            "kiln_queue_depth",
            "Tasks queued (ready, not leased) by job priority, read when scraped.",
            labels=["priority"],
        )
        oldest_family = GaugeMetricFamily(
            "kiln_queue_oldest_seconds",
            "How long the longest-waiting queued task has waited for a worker, by job "
            "priority (0 when none waits), read when scraped.",
            labels=["priority"],
        )
        for priority in (*PRIORITIES, *sorted(set(depth) - set(PRIORITIES))):
            depth_family.add_metric([priority], depth.get(priority, 0))
            oldest_family.add_metric([priority], oldest.get(priority, 0.0))
        return [depth_family, oldest_family]


class FleetCollector(Collector):
    """`kiln_worker_info`, `kiln_worker_capacity`, `kiln_worker_running_tasks` and
    `kiln_worker_last_contact_seconds`, one series each per worker heard from within
    WORKER_FORGOTTEN_AFTER, from what the scrape handler read just before.

    These are the whole service's, like the queue depth: they go out where /metrics goes and
    nowhere else. Host and version are what the worker said of itself; the exposition
    escapes them (backslash, quote, newline), so no announcement can forge a series.
    """

    def __init__(self) -> None:
        self.members: list[FleetMember] = []
        self.moment: datetime | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families([], None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.members, self.moment)

    @staticmethod
    def _families(members: list[FleetMember], moment: datetime | None) -> list[Metric]:
        info = GaugeMetricFamily(
            "kiln_worker_info",
            "1 per worker, with what it announced and its state: ACTIVE or DRAINING as it "
            "said, LOST once silent for a whole lease.",
            labels=["worker_id", "host", "version", "state", "task_kinds"],
        )
        capacity = GaugeMetricFamily(
            "kiln_worker_capacity", "Task slots the worker announced.", labels=["worker_id"]
        )
        running = GaugeMetricFamily(
            "kiln_worker_running_tasks",
            "Tasks the worker's slots hold leases on now.",
            labels=["worker_id"],
        )
        silent = GaugeMetricFamily(
            "kiln_worker_last_contact_seconds",
            "Seconds since the worker's last announcement (made every third of a lease).",
            labels=["worker_id"],
        )
        for member in members:
            record = member.record
            kinds = ",".join(record.task_kinds)
            info.add_metric([record.id, record.host, record.version, member.state, kinds], 1)
            capacity.add_metric([record.id], record.capacity)
            running.add_metric([record.id], record.running_tasks)
            since = (moment - record.last_contact_at).total_seconds() if moment else 0.0
            silent.add_metric([record.id], max(since, 0.0))
        return [info, capacity, running, silent]


class ServerMetrics:
    """Every metric of one server process, and the text of `GET /metrics`."""

    def __init__(
        self,
        clock: Callable[[], datetime] = now,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        # What a task's wait and a worker's silence are measured to; tests pass their own
        # instead of sleeping.
        self.clock = clock
        # A worker silent this long is LOST (as `kiln workers list` judges it).
        self.lease_seconds = lease_seconds
        self.registry = CollectorRegistry(auto_describe=True)
        # Registries of others in this process (`kiln up`: its embedded worker) shown too.
        self.included: list[CollectorRegistry] = []
        self.jobs_finished = Counter(
            "kiln_jobs_finished",
            "Jobs that reached a terminal status, counted once per terminal transition.",
            ["status"],
            registry=self.registry,
        )
        self.task_wait = Histogram(
            "kiln_task_wait_seconds",
            "Time a task waited between being queued (created or requeued) and its lease.",
            ["kind"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.watch_streams = Gauge(
            "kiln_watch_streams",
            "Watch streams open on this server.",
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "kiln_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered (2xx), retried (will be sent "
            "again), failed (given up).",
            ["outcome"],
            registry=self.registry,
        )
        self.lease_expiries = Counter(
            "kiln_lease_expiries",
            "Leases the reaper took back from silent workers: requeued, or failed after the "
            "last attempt.",
            ["outcome"],
            registry=self.registry,
        )
        self.queue_depth = QueueDepthCollector()
        self.registry.register(self.queue_depth)
        self.fleet = FleetCollector()
        self.registry.register(self.fleet)
        # Every label value present from the start, so rate() sees the first increment.
        for status in sorted(TERMINAL):
            self.jobs_finished.labels(status=str(status))
        for kind in TaskKind:
            self.task_wait.labels(kind=str(kind))
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome=outcome)
        for outcome in LEASE_OUTCOMES:
            self.lease_expiries.labels(outcome=outcome)

    def count_watch_streams(self, count: Callable[[], int]) -> None:
        self.watch_streams.set_function(lambda: float(count()))

    def job_finished(self, status: str) -> None:
        self.jobs_finished.labels(status=str(status)).inc()

    def task_leased(self, kind: str, ready_since: datetime | None) -> None:
        if ready_since is None:
            return
        moment = self.clock()
        waited = (moment - (aware(ready_since) or moment)).total_seconds()
        self.task_wait.labels(kind=str(kind)).observe(max(waited, 0.0))

    def webhook_attempted(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome=outcome).inc()

    def lease_expired(self, outcome: str) -> None:
        self.lease_expiries.labels(outcome=outcome).inc()

    def include(self, registry: CollectorRegistry) -> None:
        self.included.append(registry)

    async def render(self, store: Store) -> bytes:
        """The exposition text; the queue and the fleet are read first, in this event loop."""
        async with store.transaction() as tx:
            queued = await tx.tasks.queued_by_priority()
            workers = await tx.workers.list_workers()
        moment = self.clock()
        self.fleet.moment = moment
        self.fleet.members = [
            member
            for member in judged(workers, self.lease_seconds, moment)
            if moment - member.record.last_contact_at <= WORKER_FORGOTTEN_AFTER
        ]
        self.queue_depth.depth = {
            priority_label(priority): tasks.count for priority, tasks in queued.items()
        }
        self.queue_depth.oldest_seconds = {
            priority_label(priority): max(
                (moment - (tasks.oldest_ready_since or moment)).total_seconds(), 0.0
            )
            for priority, tasks in queued.items()
        }
        return b"".join(generate_latest(registry) for registry in self._registries())

    def _registries(self) -> Iterator[CollectorRegistry]:
        yield self.registry
        yield from self.included
