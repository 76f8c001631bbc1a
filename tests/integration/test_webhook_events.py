"""Which webhook events a job's life queues, against real databases.

The use cases run on a real Store with the test playing the worker (as in test_task_races),
so progress reports land exactly where each test puts them; the outbox rows are then read
back. No sender runs here: delivery is test_webhook_sender's and the e2e tests' business.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.store.store import Store
from tests.support import ORG
from tests.support.wiring import Services

HOOK = "https://hooks.example/kiln"
OWN_HOOK = "https://93.184.216.34/own-hook"


async def events_of(store: Store, job_id: str, url: str = HOOK) -> list[tuple[str, dict]]:
    """(type, data) of every queued delivery of the job, oldest first."""
    async with store.transaction() as tx:
        rows = await tx.webhook_deliveries.deliveries_for(job_id)
    ordered = sorted(rows, key=lambda row: (row.created_at, json.loads(row.payload)["timestamp"]))
    found = []
    for row in ordered:
        payload = json.loads(row.payload)
        assert row.event_type == payload["type"]
        assert row.url == url
        found.append((payload["type"], payload["data"]))
    return found


async def report(services: Services, task: wpb.Task, *progress: float) -> None:
    for value in progress:
        await services.tasks.report_progress(
            wpb.ReportProgressRequest(task_id=task.id, lease_token=task.lease_token, progress=value)
        )


async def test_progress_thresholds_fire_once_per_run(store, tmp_path):
    # Every report is logged (no per-second cap), so each one may cross a threshold.
    services = Services(store, tmp_path, lease_seconds=60, progress_events_per_second=0)
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
        await tx.webhook_settings.set_default_webhook_url(ORG, HOOK)
    job, task = await services.probed_transcode()
    # 25 and 50 are crossed once each, however many reports land on either side.
    await report(services, task, 10, 24.9, 25, 26, 49, 50, 50.5, 60)
    await services.tasks.complete_task(
        wpb.CompleteTaskRequest(
            task_id=task.id,
            lease_token=task.lease_token,
            error=job_pb2.JobError(code="ENCODE_FAILED", message="x264 gave up"),
        )
    )
    first_run = await events_of(store, job.id)
    assert [(kind, data.get("progress")) for kind, data in first_run] == [
        ("job.progress", 25),
        ("job.progress", 50),
        ("output.failed", None),
        ("job.failed", None),
    ]
    assert first_run[0][1]["job"]["id"] == job.id and first_run[0][1]["job"]["attempt"] == 1
    assert first_run[2][1]["output"]["status"] == "OUTPUT_STATUS_FAILED"
    assert first_run[2][1]["attempt"] == 1

    # Retry: a new run crosses every threshold again, once; one report may cross several.
    await services.jobs.retry(ORG, job.id)
    probe = await services.claim()
    await services.tasks.complete_task(
        wpb.CompleteTaskRequest(
            task_id=probe.id,
            lease_token=probe.lease_token,
            input_info=job_pb2.InputInfo(
                duration_seconds=2.0,
                streams=[job_pb2.StreamInfo(kind="video", codec="h264", width=640, height=360,
                                            frame_rate=30.0)],
            ),
        )
    )  # fmt: skip
    task = await services.claim()
    await report(services, task, 30, 80, 90)
    await services.tasks.complete_task(services.finished(task))
    second_run = (await events_of(store, job.id))[len(first_run) :]
    assert [(kind, data.get("progress")) for kind, data in second_run] == [
        ("job.progress", 25),
        ("job.progress", 50),
        ("job.progress", 75),
        ("output.completed", None),
        ("job.completed", None),
    ]
    assert {data["job"]["attempt"] for kind, data in second_run if kind.startswith("job.")} == {2}
    assert second_run[-1][1]["job"]["status"] == "JOB_STATUS_COMPLETED"


async def test_own_url_wins_and_awaiting_confirmation_and_cancel_notify(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60)
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
    info = job_pb2.InputInfo(
        duration_seconds=2.0, streams=[job_pb2.StreamInfo(kind="audio", codec="aac")]
    )

    async def delayed_job(webhook_url: str) -> str:
        request = job_service_pb2.CreateRequest(
            input_url=services.input_url,
            outputs=[job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)],
            delayed_start=True,
            webhook_url=webhook_url,
        )
        job = await services.jobs.create(ORG, request, "")
        probe = await services.claim()
        await services.tasks.complete_task(
            wpb.CompleteTaskRequest(
                task_id=probe.id, lease_token=probe.lease_token, input_info=info
            )
        )
        return job.id

    # No URL of its own and no default: the event goes nowhere.
    quiet = await delayed_job("")
    assert await events_of(store, quiet, HOOK) == []
    async with store.transaction() as tx:
        await tx.webhook_settings.set_default_webhook_url(ORG, HOOK)
    # A job's own URL wins over the default (an address literal: nothing to resolve).
    own = await delayed_job(OWN_HOOK)
    await services.jobs.cancel(ORG, own)
    assert [kind for kind, _ in await events_of(store, own, OWN_HOOK)] == [
        "job.awaiting_confirmation",
        "job.canceled",
    ]
    await services.jobs.cancel(ORG, quiet)
    assert [kind for kind, _ in await events_of(store, quiet, HOOK)] == ["job.canceled"]


async def test_rotation_keeps_old_secrets_signing_through_the_overlap(store):
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
        await tx.keys.ensure_organization("org_other")
        # Never rotated: the server-wide secret (None) signs.
        assert await tx.webhook_settings.signing_secrets(ORG, datetime.now(UTC)) == [None]
        first = await tx.webhook_settings.rotate_webhook_secret(ORG, timedelta(hours=1))
        second = await tx.webhook_settings.rotate_webhook_secret(ORG, timedelta(minutes=5))
        settings = await tx.webhook_settings.organization_webhooks(ORG)
        other = await tx.webhook_settings.signing_secrets("org_other", datetime.now(UTC))
    assert first.startswith("whsec_") and second.startswith("whsec_") and first != second
    assert other == [None]  # one organization's rotation is nobody else's
    moment = datetime.now(UTC)
    async with store.transaction() as tx:
        assert await tx.webhook_settings.signing_secrets(ORG, moment) == [second, first, None]
        # The second rotation's shorter overlap ends the older ones' too.
        assert await tx.webhook_settings.signing_secrets(ORG, moment + timedelta(minutes=6)) == [
            second
        ]
    current, *overlapping = settings.signing
    assert current.id.startswith("whk_") and current.expires_at is None
    assert [info.id.startswith("whk_") for info in overlapping] == [True, False]
    assert overlapping[-1].id == "server"
    # Nothing the settings show holds a secret.
    assert first not in repr(settings) and second not in repr(settings)

    # An overlap of 0 (a leaked secret) retires every older secret at once.
    async with store.transaction() as tx:
        third = await tx.webhook_settings.rotate_webhook_secret(ORG, timedelta(0))
        assert await tx.webhook_settings.signing_secrets(ORG, datetime.now(UTC)) == [third]
