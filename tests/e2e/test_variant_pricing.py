"""Per-variant costs of adaptive outputs through a running server priced with a custom
KILN_PRICING_FILE: estimates checked by hand against that table, variants adding up to
their output exactly, and actuals once encoded.

PostgreSQL only: the pricing is the same on both stores, and the JSON column it is kept
in is exercised on SQLite by the dashboard and CLI tests' ladders.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from kiln_cli.job_display import show_job
from server.store.store import Store
from tests.conftest import create_postgres_database, drop_postgres_database, make_clip

from .cluster import running_cluster
from .connect_json import ConnectJsonClient
from .jobs import create_job, run_to_end

# The configured table the estimates are checked against (micros per minute by height).
PRICING_TOML = """
[video]
H264 = { 90 = 30000, 180 = 60000, 2160 = 600000 }
[quality]
PREMIUM = 2.0
[priority]
ECONOMY = 0.5
"""
RATE = {90: 30_000, 180: 60_000}
QUALITY = {job_pb2.QUALITY_STANDARD: Decimal("1.0"), job_pb2.QUALITY_PREMIUM: Decimal("2.0")}
PRIORITY = {job_pb2.PRIORITY_STANDARD: Decimal("1.0"), job_pb2.PRIORITY_ECONOMY: Decimal("0.5")}


@pytest.fixture(scope="module")
def clip(media_root) -> str:
    """1 s of 320x180: a ladder of it encodes in a fraction of a second."""
    return f"file://{make_clip(media_root / 'clip1s_180p.mp4', seconds=1, size='320x180')}"


@pytest.fixture(scope="module")
def priced(tmp_path_factory, media_root, postgres_available):
    root = tmp_path_factory.mktemp("pricing")
    table = root / "pricing.toml"
    table.write_text(PRICING_TOML)
    url = create_postgres_database()
    try:
        with running_cluster(
            url, root, media_root, settings={"KILN_PRICING_FILE": str(table)}, workers=1
        ) as running:
            yield running
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module")
def api_key(priced):
    """Made in process on the server's database (the CLI's subprocess takes seconds)."""
    cluster, _ = priced

    async def new_key() -> str:
        store = Store(cluster.database_url)
        try:
            async with store.transaction() as tx:
                await tx.keys.ensure_organization("org_pricing")
                return await tx.keys.create_api_key("org_pricing", "")
        finally:
            await store.close()

    return asyncio.run(new_key())


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def by_hand(
    height: int,
    seconds: float,
    fps: float,
    quality: job_pb2.Quality,
    priority: job_pb2.Priority,
) -> int:
    """rate(height) x minutes x fps/30 x quality x priority, rounded half to even."""
    exact = (
        RATE[height]
        * Decimal(repr(seconds))
        / 60
        * Decimal(repr(fps))
        / 30
        * QUALITY[quality]
        * PRIORITY[priority]
    )
    return round(exact)


def ladder(kind: job_pb2.OutputType, *variants: tuple[str, job_pb2.Quality]) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=kind,
        video=[
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution=r, quality=q)
            for r, q in variants
        ],
    )


def wait_for_confirmation(server, auth, job_id: str) -> job_pb2.Job:
    stub = server.job_stub()
    for event in stub.Watch(job_service_pb2.WatchRequest(id=job_id), metadata=auth, timeout=60):
        kind = event.WhichOneof("event")
        if (
            kind == "snapshot"
            and event.snapshot.job.status == job_pb2.JOB_STATUS_AWAITING_CONFIRMATION
        ) or (
            kind == "status_change"
            and event.status_change.to_status == job_pb2.JOB_STATUS_AWAITING_CONFIRMATION
        ):
            return stub.Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job
    raise AssertionError("the job ended without awaiting confirmation")


def test_ladder_variant_costs_add_up_in_get_and_cli(priced, api_key, auth, clip, capsys):
    _, server = priced
    job = create_job(
        server,
        auth,
        clip,
        outputs=[
            ladder(
                job_pb2.OUTPUT_TYPE_HLS,
                ("320x180", job_pb2.QUALITY_STANDARD),
                ("160x90", job_pb2.QUALITY_STANDARD),
            )
        ],
    )
    assert run_to_end(server, auth, job.id).status == job_pb2.JOB_STATUS_COMPLETED
    # Get as curl would: Connect JSON.
    got = ConnectJsonClient(server.http_url, api_key).call_service(
        "kiln.v1.JobService", "Get", {"id": job.id}
    )["job"]
    output = got["outputs"][0]
    variants = output["variantPricing"]
    assert [v["name"] for v in variants] == ["v0", "v1"]
    assert [v["pricedHeight"] for v in variants] == [180, 90]
    assert [v["ratePerMinute"]["micros"] for v in variants] == ["60000", "30000"]
    for field in ("estimatedCost", "actualCost"):
        assert sum(int(v[field]["micros"]) for v in variants) == int(output[field]["micros"])
        assert int(output[field]["micros"]) == int(got[field]["micros"]) > 0
    for v in variants:
        assert int(v["actualCost"]["micros"]) == by_hand(
            v["pricedHeight"],
            v["billedSeconds"],
            v["fps"],
            job_pb2.QUALITY_STANDARD,
            job_pb2.PRIORITY_STANDARD,
        )

    # `kiln jobs get` renders the same answer (in process: the CLI's subprocess start-up
    # would double this test's time and prove nothing more).
    show_job(server.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job)
    shown = capsys.readouterr().out
    actual = int(output["actualCost"]["micros"])
    assert f"actual {actual / 1e6:.6f} USD; per variant:" in shown
    for v in variants:
        micros = int(v["actualCost"]["micros"])
        assert f"variant {v['name']} {v['resolution']} h264 standard" in shown
        assert f"actual {micros / 1e6:.6f} USD for {v['billedSeconds']:.2f}s" in shown


def test_delayed_start_ladder_estimate_by_hand(priced, auth, clip):
    _, server = priced
    stub = server.job_stub()
    job = create_job(
        server,
        auth,
        clip,
        outputs=[
            ladder(
                job_pb2.OUTPUT_TYPE_CMAF,
                ("320x180", job_pb2.QUALITY_PREMIUM),
                ("720p", job_pb2.QUALITY_STANDARD),  # above the 180p source: dropped
                ("160x90", job_pb2.QUALITY_STANDARD),
            )
        ],
        delayed_start=True,
        priority=job_pb2.PRIORITY_ECONOMY,
    )
    assert not job.outputs[0].variant_pricing  # nothing to price before the probe
    waiting = wait_for_confirmation(server, auth, job.id)
    seconds = waiting.input_info.duration_seconds
    fps = next(s.frame_rate for s in waiting.input_info.streams if s.kind == "video")
    economy = job_pb2.PRIORITY_ECONOMY
    expected = [
        by_hand(180, seconds, fps, job_pb2.QUALITY_PREMIUM, economy),
        0,
        by_hand(90, seconds, fps, job_pb2.QUALITY_STANDARD, economy),
    ]
    output = waiting.outputs[0]
    variants = output.variant_pricing
    assert [v.estimated_cost.micros for v in variants] == expected
    assert [(v.name, v.dropped) for v in variants] == [("v0", False), ("", True), ("v1", False)]
    assert all(v.estimated_seconds == seconds for v in variants)
    assert not any(v.HasField("actual_cost") for v in variants)
    assert output.estimated_cost.micros == sum(expected) == waiting.estimated_cost.micros

    confirmed = stub.Confirm(job_service_pb2.ConfirmRequest(id=job.id), metadata=auth).job
    assert list(confirmed.outputs[0].variant_pricing) == list(variants)

    final = run_to_end(server, auth, job.id)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED
    done = final.outputs[0]
    # The worker dropped the same variant the price left out.
    assert any("variant 1" in note and "dropped" in note for note in done.notes)
    assert [v.estimated_cost.micros for v in done.variant_pricing] == expected
    assert sum(v.actual_cost.micros for v in done.variant_pricing) == done.actual_cost.micros
    assert done.variant_pricing[1].actual_cost.micros == 0
    assert final.actual_cost.micros == done.actual_cost.micros > 0
