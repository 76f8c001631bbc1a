"""The chaos schedule of the soak across hosts, and the record of what it did when.

Each fault starts when a share of the jobs is terminal (so it lands while work flows at
any --jobs) and ends before the next one starts, so that each rerun can be laid at one
fault's door by time and worker (bench/host_check.py):

1. kill -9 of worker host w1's worker, started again 1 s later;
2. a partition of w2 shorter than the lease (a quarter of it), cut while it encodes;
3. kill -9 of replica a, started again on the same address 2 s later;
4. a partition of w3 longer than the lease (three leases), cut while it encodes;
5. one restart of PostgreSQL (a fast shutdown: sessions are cut, as in a failover; if that
   has not ended in FAST_STOP_SECONDS, an immediate one, as in a crash, and the report says
   who was still connected).
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
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
# A fast stop waits for every connection's process to end. Seen once under load: a
# connection that never sent its startup packet held the postmaster for the whole
# authentication_timeout (60 s) after the shutdown checkpoint.
FAST_STOP_SECONDS = 15


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


def stop_postgres(fleet: HostFleet, services: Services) -> str:
    """A fast stop, as `pg_ctlcluster restart` does; if it has not ended in
    FAST_STOP_SECONDS, who is still connected, and an immediate stop (a crash)."""
    try:
        services.postgres.stop(wait_seconds=FAST_STOP_SECONDS)
        return "pg_ctl stop -m fast, start"
    except subprocess.CalledProcessError:
        held = connected_to(services.postgres.port, fleet)
        services.postgres.stop(mode="immediate")
        return (
            f"pg_ctl stop -m fast not done in {FAST_STOP_SECONDS} s (TCP connections still "
            f"open from: {held or 'none'}): stop -m immediate, start"
        )


def connected_to(port: int, fleet: HostFleet) -> str:
    """The hosts with TCP connections open to `port` here, by host name and count."""
    lines = subprocess.run(
        ["ss", "-tnH", "state", "all", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    names = {host.address: name for name, host in {**fleet.servers, **fleet.workers}.items()}
    peers: Counter = Counter()
    for line in lines:
        fields = line.split()
        if len(fields) >= 5 and fields[0] not in ("LISTEN", "TIME-WAIT"):
            address = fields[4].rsplit(":", 1)[0]
            peers[f"{names.get(address, address)} ({fields[0]})"] += 1
    return ", ".join(f"{peer} x{count}" for peer, count in sorted(peers.items()))


def run_schedule(
    fleet: HostFleet,
    services: Services,
    lease_seconds: int,
    wait_for,
    record: ChaosRecord,
    jobs: int,
) -> None:
    """`wait_for(n)`: blocks until n jobs are terminal (False when the run's time is up).
    A fault that fails is recorded as such and the schedule goes on: every fault undoes
    itself (the link mended, the process or the database started again) whatever happens."""
    for share, kind in SCHEDULE:
        if not wait_for(int(jobs * share)):
            record.skipped.append(f"{kind}: the run ended first")
            continue
        try:
            fault = inflict(kind, fleet, services, lease_seconds)
        except Exception as error:
            record.skipped.append(f"{kind}: failed: {error!r}"[:300])
            print(f"  chaos: {kind} failed: {error!r}", flush=True)
            continue
        record.faults.append(fault)
        print(f"  chaos: {fault.line()}", flush=True)


def inflict(kind: str, fleet: HostFleet, services: Services, lease_seconds: int) -> Fault:
    """One fault of the schedule, from its start to its undoing."""
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
        try:
            # The fault's own duration: nothing to wait on, the schedule holds it.
            time.sleep(hold)
        finally:
            host.mend()
        fault.ended_at = time.time()
        fault.note = f"{hold:.1f} s, " + ("mid-encode" if busy else "worker idle")
    else:
        fault = Fault(kind, "postgres", time.time())
        try:
            fault.note = stop_postgres(fleet, services)
        finally:
            services.postgres.start()
        fault.ended_at = time.time()
    return fault
