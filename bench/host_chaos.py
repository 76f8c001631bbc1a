"""The chaos schedule of the soak across hosts, and the record of what it did when.

Each fault starts when a share of the jobs is terminal (so it lands while work flows at
any --jobs) and ends before the next one starts, so that each rerun can be laid at one
fault's door by time and worker (bench/host_check.py):

1. kill -9 of worker host w1's worker, started again 1 s later;
2. a partition of w2 shorter than the lease (a quarter of it), cut while it encodes;
3. kill -9 of replica a, started again on the same address 2 s later;
4. a partition of w3 longer than the lease (three leases), cut while it encodes;
5. one restart of PostgreSQL (a fast shutdown: sessions are cut, as in a failover).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.host_fleet import HostFleet, Services
from tests.support.processes import ffmpeg_children_of

# (share of the jobs terminal, fault)
SCHEDULE = (
    (0.12, "kill-worker"),
    (0.25, "short-partition"),
    (0.40, "kill-replica"),
    (0.55, "long-partition"),
    (0.70, "postgres-restart"),
)
BUSY_TIMEOUT_SECONDS = 20.0


@dataclass
class Fault:
    kind: str
    target: str  # a process's name, a host's name, or "postgres"
    started_at: float  # the kill, the cut, the stop
    ended_at: float = 0.0  # the restarted process healthy / started, the mend, PG back
    note: str = ""

    def line(self) -> str:
        def at(stamp: float) -> str:
            return f"{datetime.fromtimestamp(stamp, UTC):%H:%M:%S.%f}"[:-3]

        span = at(self.started_at) + (f" to {at(self.ended_at)}" if self.ended_at else "")
        return f"{span} {self.kind} {self.target}" + (f": {self.note}" if self.note else "")


@dataclass
class ChaosRecord:
    faults: list[Fault] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def wait_busy(fleet: HostFleet, host: str) -> bool:
    """Until the host's worker runs FFmpeg on a task (a partition mid-encode); False if it
    stays idle (the fault then lands on an idle worker and says so)."""
    worker = fleet.running("worker", host)
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if ffmpeg_children_of(worker.process.pid):
            return True
        time.sleep(0.02)
    return False


def run_schedule(
    fleet: HostFleet,
    services: Services,
    lease_seconds: int,
    wait_for,
    record: ChaosRecord,
    jobs: int,
) -> None:
    """`wait_for(n)`: blocks until n jobs are terminal (False when the run's time is up)."""
    for share, kind in SCHEDULE:
        if not wait_for(int(jobs * share)):
            record.skipped.append(f"{kind}: the run ended first")
            continue
        if kind == "kill-worker":
            victim = fleet.running("worker", "w1")
            busy = wait_busy(fleet, "w1")
            fleet.kill(victim)
            fault = Fault(kind, victim.name, victim.ended_at)
            time.sleep(1)  # the time the machine's supervisor takes to start it again
            fault.note = ("mid-encode" if busy else "idle") + (
                f", restarted as {fleet.start_worker('w1').name}"
            )
            fault.ended_at = time.time()
        elif kind == "kill-replica":
            victim = fleet.running("server", "a")
            fleet.kill(victim)
            fault = Fault(kind, victim.name, victim.ended_at)
            time.sleep(2)
            restarting = time.time()
            name = fleet.start_server("a").name
            fault.ended_at = time.time()
            fault.note = f"restarted as {name}, healthy {fault.ended_at - restarting:.1f} s later"
        elif kind in ("short-partition", "long-partition"):
            host_name = "w2" if kind == "short-partition" else "w3"
            hold = lease_seconds / 4 if kind == "short-partition" else lease_seconds * 3
            busy = wait_busy(fleet, host_name)
            host = fleet.workers[host_name]
            host.cut()
            fault = Fault(kind, host_name, time.time())
            # The fault's own duration: nothing to wait on, the schedule holds it.
            time.sleep(hold)
            host.mend()
            fault.ended_at = time.time()
            fault.note = f"{hold:.1f} s, " + ("mid-encode" if busy else "worker idle")
        else:
            fault = Fault(kind, "postgres", time.time())
            services.postgres.stop()
            services.postgres.start()
            fault.ended_at = time.time()
            fault.note = "pg_ctl stop -m fast, start"
        record.faults.append(fault)
        print(f"  chaos: {fault.line()}", flush=True)
