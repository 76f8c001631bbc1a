"""The worker's own settings, the warning about local outputs on a fleet, and how
`kiln up` derives its embedded worker's settings from the same environment."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from common.settings_env import BadSetting
from kiln_cli.main import embedded_worker_settings, worker_listener_address
from server.config import load_settings
from worker.loop import Worker
from worker.settings import (
    DEFAULT_SERVER_ADDRESS,
    WorkerSettings,
    channel_target,
    load_worker_settings,
    local_storage_warning,
)

REMOTE = "kiln-server.internal:50052"


def test_defaults_match_the_embedded_server() -> None:
    settings = load_worker_settings({})
    server = load_settings({})
    assert settings.server_address == DEFAULT_SERVER_ADDRESS == "127.0.0.1:50052"
    assert settings.server_address == f"{server.worker_host}:{server.worker_port}"
    assert settings.storage_dir == server.storage_dir == Path("var/storage")
    assert settings.scratch_dir == Path("var/scratch")
    assert settings.input_roots == server.input_roots == ["var/inputs"]
    assert settings.lease_seconds == server.lease_seconds == 30.0
    assert settings.concurrency == 1
    assert settings.progress_interval_seconds == 0.5
    assert settings.token == settings.worker_id == settings.gcs_bucket == ""
    assert settings.log_level == "INFO"


def test_reads_the_worker_variables() -> None:
    settings = load_worker_settings(
        {
            "KILN_SERVER_ADDRESS": REMOTE,
            "KILN_WORKER_TOKEN": "secret",
            "KILN_WORKER_ID": "w1",
            "KILN_WORKER_CONCURRENCY": "4",
            "KILN_DATA_DIR": "/srv/kiln",
            "KILN_SCRATCH_DIR": "/tmp/kiln",
            "KILN_GCS_BUCKET": "outputs",
            "KILN_INPUT_ALLOW_HOSTS": "10.0.0.0/8, media.internal,",
            "KILN_GCS_INPUT_BUCKETS": "uploads",
            "KILN_PROGRESS_INTERVAL_SECONDS": "1.5",
            "KILN_LEASE_SECONDS": "60",
            "KILN_LOG_LEVEL": "DEBUG",
        }
    )
    assert settings == WorkerSettings(
        server_address=REMOTE,
        token="secret",
        worker_id="w1",
        concurrency=4,
        scratch_dir=Path("/tmp/kiln"),
        storage_dir=Path("/srv/kiln/storage"),
        gcs_bucket="outputs",
        input_roots=["/srv/kiln/inputs"],
        input_allow_hosts=["10.0.0.0/8", "media.internal"],
        gcs_input_buckets=["uploads"],
        progress_interval_seconds=1.5,
        lease_seconds=60.0,
        log_level="DEBUG",
    )


def test_needs_no_database_settings() -> None:
    field_names = set(WorkerSettings.__dataclass_fields__)
    assert not any("database" in name for name in field_names)
    # An unparseable database URL is none of the worker's business.
    load_worker_settings({"KILN_DATABASE_URL": "not a url"})


@pytest.mark.parametrize(
    ("address", "bucket", "warns"),
    [
        (REMOTE, "", True),
        ("10.1.2.3:50052", "", True),
        ("dns:///kiln-server:50052", "", True),
        (REMOTE, "outputs", False),
        ("127.0.0.1:50052", "", False),
        ("localhost:50052", "", False),
        ("[::1]:50052", "", False),
    ],
)
def test_local_storage_warning(address: str, bucket: str, warns: bool) -> None:
    settings = WorkerSettings(server_address=address, gcs_bucket=bucket)
    assert (local_storage_warning(settings) is not None) == warns


async def test_a_remote_worker_with_local_storage_warns_at_start(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings = WorkerSettings(server_address=REMOTE, storage_dir=tmp_path / "storage")
    stop = asyncio.Event()
    stop.set()  # start, then stop at once: no task is ever claimed
    with caplog.at_level(logging.WARNING, logger="worker"):
        await Worker(settings).run(stop)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "local disk" in message
    assert str(tmp_path / "storage") in message
    assert "shares that disk" in message
    assert "KILN_GCS_BUCKET" in message


async def test_a_loopback_worker_starts_quietly(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    stop.set()
    with caplog.at_level(logging.WARNING, logger="worker"):
        await Worker(WorkerSettings(storage_dir=tmp_path)).run(stop)
    # The worker's own loggers only: grpc's aio poller can log "Event loop is closed" on the
    # asyncio logger here for a channel an earlier test of this process left on its own loop.
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("worker")
    ]


def test_kiln_up_points_its_worker_at_its_own_listener() -> None:
    env = {
        "KILN_WORKER_PORT": "50062",
        "KILN_SERVER_ADDRESS": REMOTE,  # meant for lone workers; `up` uses its own listener
        "KILN_WORKER_CONCURRENCY": "1",
    }
    settings = load_settings(env)
    worker = embedded_worker_settings(settings, load_worker_settings(env), workers=2)
    assert worker.server_address == "127.0.0.1:50062"
    assert worker.concurrency == 2
    assert local_storage_warning(worker) is None


def test_kiln_up_keeps_a_larger_configured_concurrency() -> None:
    env = {"KILN_WORKER_CONCURRENCY": "6"}
    worker = embedded_worker_settings(load_settings(env), load_worker_settings(env), workers=2)
    assert worker.concurrency == 6


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1:50052"),
        ("0.0.0.0", "127.0.0.1:50052"),
        ("::", "[::1]:50052"),
        ("::1", "[::1]:50052"),
        ("10.0.0.5", "10.0.0.5:50052"),
    ],
)
def test_worker_listener_address(host: str, address: str) -> None:
    settings = load_settings({"KILN_WORKER_HOST": host, "KILN_WORKER_TOKEN": "t"})
    assert worker_listener_address(settings) == address


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("10.0.0.5:50052", "10.0.0.5:50052"),
        ("dns:///kiln-workers.internal:50052", "dns:///kiln-workers.internal:50052"),
        ("10.0.0.5:50052, 10.0.0.6:50052", "ipv4:10.0.0.5:50052,10.0.0.6:50052"),
        ("[fd00::5]:50052,[fd00::6]:50052", "ipv6:[fd00::5]:50052,[fd00::6]:50052"),
        ("ipv4:10.0.0.5:50052,10.0.0.6:50052", "ipv4:10.0.0.5:50052,10.0.0.6:50052"),
    ],
)
def test_a_list_of_replicas_is_one_channel_target(address: str, target: str) -> None:
    assert channel_target(address) == target
    assert load_worker_settings({"KILN_SERVER_ADDRESS": address}).server_address == address


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("server-a:50052,server-b:50052", "is not IP:port"),
        ("10.0.0.5:50052,10.0.0.6", "is not IP:port"),
        ("10.0.0.5:50052,10.0.0.6:99999", "is not IP:port"),
        ("10.0.0.5:50052,[fd00::6]:50052", "not both"),
    ],
)
def test_a_bad_list_of_replicas_is_refused_at_start(address: str, why: str) -> None:
    with pytest.raises(BadSetting, match=why):
        load_worker_settings({"KILN_SERVER_ADDRESS": address})


def test_a_worker_on_a_list_of_loopback_replicas_sees_no_storage_warning() -> None:
    settings = load_worker_settings({"KILN_SERVER_ADDRESS": "127.0.0.1:1,127.0.0.1:2"})
    assert local_storage_warning(settings) is None
