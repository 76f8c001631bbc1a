"""Helpers of the fleet tests (server and workers as separate processes on PostgreSQL,
dispatched by Pub/Sub through Google's emulator or by the database queue)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiln.v1 import job_service_pb2
from sqlalchemy import create_engine, text

from common.pubsub import PubSubSettings
from server.store.store import sync_url
from tests.support.processes import wait_until
from tests.support.pubsub_audit import CLIENT_LOG_ENV, Audit, SubscriberCalls, kiln_topics
from tests.support.pubsub_emulator import PubSubEmulator

from .cluster import Cluster, ServerProcess


@contextmanager
def fleet(
    backend_url: str,
    root: Path,
    media_root: Path,
    dispatch: str,
    emulator: PubSubEmulator | None = None,
    **settings: str,
) -> Iterator[tuple[Cluster, ServerProcess, Audit | None]]:
    """A server on `dispatch` (no worker yet); on `pubsub`, through `emulator`, with an
    audit subscription on each of the fleet's topics (none on `db`)."""
    env = {"KILN_DISPATCH": dispatch, "KILN_LEASE_SECONDS": "3", **settings}
    audit = None
    if dispatch == "pubsub":
        assert emulator is not None, "a pubsub fleet needs the module's emulator"
        audit = Audit(emulator.host)
        env |= {
            "PUBSUB_EMULATOR_HOST": emulator.host,
            "KILN_PUBSUB_PROJECT": "kiln-e2e",
            # A prefix of its own per fleet: one database and one emulator per module.
            "KILN_PUBSUB_PREFIX": f"t{uuid.uuid4().hex[:8]}",
            **CLIENT_LOG_ENV,
        }
    cluster = Cluster(backend_url, root, media_root, settings=env)
    try:
        if audit is not None:
            audit.watch(*kiln_topics(PubSubSettings.from_env(env)))
        yield cluster, cluster.start_server(), audit
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        if audit is not None:
            audit.close()


def wait_for_progress(stub, auth, job_id: str, above: float = 5, timeout: float = 60) -> None:
    """Until the job is well into encoding (its FFmpeg runs)."""
    request = job_service_pb2.GetRequest(id=job_id)
    wait_until(lambda: stub.Get(request, metadata=auth).job.progress > above, timeout=timeout)


def pubsub_settings(cluster: Cluster) -> PubSubSettings:
    return PubSubSettings.from_env(cluster.settings)


def worker_calls(cluster: Cluster) -> SubscriberCalls:
    """What the fleet's workers' Pub/Sub clients received, acked and handed back so far."""
    return SubscriberCalls.from_logs(*sorted(cluster.root.glob("worker-*.log")))


def all_acked(cluster: Cluster) -> bool:
    """Every message a worker received was acked, and every ack answered: none is leased."""
    calls = worker_calls(cluster)
    return bool(calls.deliveries) and not calls.unacked() and calls.pending_acks == 0


def task_rows(backend_url: str, job_id: str) -> list[dict]:
    engine = create_engine(sync_url(backend_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, kind, status, attempts, worker_id FROM tasks "
                    "WHERE job_id = :job ORDER BY created_at"
                ),
                {"job": job_id},
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def worker_states(database_url: str) -> list[str]:
    """The state each worker last announced (ACTIVE, DRAINING), as the workers view shows."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT state FROM workers")).scalars())
    finally:
        engine.dispose()


def auth_for(cluster: Cluster, organization: str) -> tuple:
    return (("authorization", f"Bearer {cluster.create_key(organization)}"),)
