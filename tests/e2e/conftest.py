"""One running cluster (server + worker processes) per backend per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import create_postgres_database, drop_postgres_database, make_clip, migrated
from tests.http_origins import HeldMedia, Origin, hold_on

from .cluster import Cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the logs of the clusters it used: a server that
    stalled or a worker that crashed says so there, which the test's assertion cannot."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for cluster in _clusters_of(item):
        report.sections.append((f"kiln logs ({cluster.root.name})", cluster.logs()))


def _clusters_of(item) -> list[Cluster]:
    found: list[Cluster] = []
    for value in getattr(item, "funcargs", {}).values():
        candidates = value if isinstance(value, tuple) else (value,)
        found.extend(c for c in candidates if isinstance(c, Cluster) and c not in found)
    return found


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield migrated(f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'kiln.db'}")
        return
    request.getfixturevalue("postgres_available")
    url = create_postgres_database()
    try:
        yield migrated(url)
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module")
def sqlite_backend_url(tmp_path_factory):
    """For modules whose checks do not depend on the database kind (request screening at the
    edge, the worker's input policy, media output): they override `backend_url` with this
    one, which keeps `make test` under its time budget."""
    return migrated(f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'kiln.db'}")


@pytest.fixture(scope="module")
def cluster(backend_url, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(backend_url, root, media_root)
    server = cluster.start_server()
    cluster.start_worker(server, concurrency=2)
    try:
        yield cluster
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def server(cluster):
    return cluster.servers[0]


@pytest.fixture(scope="module")
def api_key(cluster):
    return cluster.create_key("org_alpha")


@pytest.fixture(scope="module")
def other_api_key(cluster):
    return cluster.create_key("org_beta")


@pytest.fixture(scope="session")
def long_clip(media_root):
    """20 s of 720p: long enough that an encode is still running when a test interrupts it."""
    return make_clip(media_root / "clip20s_720p.mp4", seconds=20, size="1280x720")


@pytest.fixture(scope="session")
def held_clip(media_root) -> bytes:
    """4 s of 480p, for `held_input`."""
    return make_clip(media_root / "held4s_480p.mp4", seconds=4, size="854x480").read_bytes()


@pytest.fixture(scope="module")
def media_origin() -> Iterator[Origin]:
    origin = Origin()
    yield origin
    origin.close()


@pytest.fixture
def held_input(media_origin, held_clip) -> Iterator[HeldMedia]:
    """A short clip an origin serves halfway, then holds until the test calls `release()`
    (tests/http_origins.py): a transcode of it is mid-encode, with progress reported, for
    as long as the test needs, where a long clip only made that likely and cost its whole
    encode. Read at `.url` by a cluster with LOOPBACK_INPUTS; released at teardown."""
    held = hold_on(media_origin, held_clip)
    yield held
    held.release()
