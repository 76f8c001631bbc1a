"""Integration fixtures: a migrated Store on each real database, the use cases over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from server.store.store import Store
from tests.conftest import migrated
from tests.support import ORG
from tests.support.webhooks import failing_receiver as failing_receiver_url
from tests.support.wiring import Services


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(migrated(database_url))
    yield store
    await store.close()


@pytest.fixture
async def service(store: Store, tmp_path) -> AsyncIterator[Services]:
    """The public job use cases over a real store and a running hub, ORG already known."""
    services = Services(store, tmp_path)
    services.hub.start()
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
    try:
        yield services
    finally:
        await services.hub.stop()


@pytest.fixture
def failing_receiver() -> Iterator[str]:
    """The URL of a loopback webhook receiver that answers 503 to everything."""
    with failing_receiver_url() as url:
        yield url
