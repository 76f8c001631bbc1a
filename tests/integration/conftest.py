"""Integration fixtures: a migrated Store on each real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from common.input_policy import InputPolicy
from common.storage.local import LocalStorage
from common.storage.origins import Origins
from common.storage.signing import UrlSigner
from server.dispatch.queue import QueueDispatch
from server.events.hub import EventHub
from server.jobs.lifecycle import Lifecycle
from server.jobs.service import JobService
from server.store.migrate import migrate
from server.store.store import Store

# The organization the `service` fixture's store knows.
ORG = "org_service"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    migrate(database_url)
    store = Store(database_url)
    yield store
    await store.close()


@dataclass
class Service:
    """The public job use cases over a real store and hub, as one server process wires them."""

    jobs: JobService
    life: Lifecycle
    store: Store
    input_url: str


@pytest.fixture
async def service(store: Store, tmp_path) -> AsyncIterator[Service]:
    async def read_events(job_id: str, after: int):
        async with store.transaction() as tx:
            return await tx.events_after(job_id, after)

    hub = EventHub(read_events, heartbeat_seconds=3600)
    hub.start()
    storage = LocalStorage(tmp_path / "storage")
    origins = Origins(storage, UrlSigner(b"secret", "http://127.0.0.1:1", 60), ttl_seconds=60)
    life = Lifecycle(store, hub, QueueDispatch())
    roots = tmp_path / "inputs"
    roots.mkdir()
    (roots / "in.mp4").write_bytes(b"not needed: nothing probes it")
    jobs = JobService(life, InputPolicy.from_lists([str(roots)], []), file_url=origins.url)
    async with store.transaction() as tx:
        await tx.ensure_organization(ORG)
    try:
        yield Service(jobs, life, store, f"file://{roots / 'in.mp4'}")
    finally:
        await hub.stop()
