"""Idempotent Create in the use case over each real database: races, conflicts, old jobs."""

from __future__ import annotations

import asyncio

import pytest
from kiln.v1 import job_service_pb2
from sqlalchemy import func, select

from server.domain.errors import AlreadyExists
from server.store.models import Job
from tests.support import ORG
from tests.support.rows import make_job, make_outputs
from tests.support.specs import mp4_request
from tests.support.wiring import Services


def request(service: Services, **fields) -> job_service_pb2.CreateRequest:
    return mp4_request(service.input_url, **fields)


async def job_count(service: Services) -> int:
    async with service.store.transaction() as tx:
        count = await tx.session.scalar(select(func.count()).select_from(Job))
        assert count is not None  # COUNT(*) always answers one row
        return count


async def test_racing_creates_share_one_job(service):
    """Every Create looks the key up before any inserts, so all but one lose the insert race."""
    answers = await asyncio.gather(
        *(service.jobs.create(ORG, request(service, idempotency_key="k"), "") for _ in range(20))
    )
    assert len({job.id for job in answers}) == 1
    assert await job_count(service) == 1


async def test_header_key_and_field_key_are_one_key(service):
    by_field = await service.jobs.create(ORG, request(service, idempotency_key="k"), "")
    by_header = await service.jobs.create(ORG, request(service), "k")
    assert by_header.id == by_field.id


async def test_different_request_is_already_exists(service):
    first = await service.jobs.create(ORG, request(service, idempotency_key="k"), "")
    with pytest.raises(AlreadyExists) as caught:
        await service.jobs.create(
            ORG, request(service, idempotency_key="k", delayed_start=True), ""
        )
    assert caught.value.message == (
        f"idempotency key 'k' was already used for job {first.id} with a different request"
    )
    assert await job_count(service) == 1


async def test_job_from_before_fingerprints_answers_as_before(service):
    legacy = make_job(ORG, idempotency_key="old-key")
    assert legacy.request_hash is None
    async with service.store.transaction() as tx:
        await tx.jobs.insert_job(legacy, make_outputs(legacy, 1))
    answer = await service.jobs.create(
        ORG, request(service, idempotency_key="old-key", metadata={"any": "thing"}), ""
    )
    assert answer.id == legacy.id
    assert await job_count(service) == 1
