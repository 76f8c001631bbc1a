"""Integration fixtures: a migrated Store on each real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.store.migrate import migrate
from server.store.store import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    migrate(database_url)
    store = Store(database_url)
    yield store
    await store.close()
