"""GET /metrics of a real server and a real worker, before and after two jobs."""

from __future__ import annotations

import pytest
from kiln.v1 import job_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.support import plain_http

from .cluster import free_port, running_cluster
from .jobs import create_job, run_to_end


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = plain_http.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(parsed, name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def metrics_cluster(backend_url, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("metrics")
    # The worker serves its own metrics (the server ignores the setting).
    settings = {"KILN_WORKER_METRICS_PORT": str(free_port())}
    with running_cluster(backend_url, root, media_root, settings=settings, workers=1) as running:
        yield running


def test_metrics_count_a_completed_and_a_rejected_job(metrics_cluster, media_root):
    cluster, server = metrics_cluster
    worker_url = f"http://127.0.0.1:{cluster.settings['KILN_WORKER_METRICS_PORT']}/metrics"
    auth = (("authorization", f"Bearer {cluster.create_key('org_metrics')}"),)
    before = scrape(f"{server.http_url}/metrics")
    for priority in ("premium", "standard", "economy"):
        assert ("kiln_queue_depth", (("priority", priority),)) in before

    (media_root / "notes.txt").write_text("not a video at all\n" * 20)
    completed = run_to_end(
        server, auth, create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}").id
    )
    rejected = run_to_end(
        server, auth, create_job(server, auth, f"file://{media_root / 'notes.txt'}").id
    )
    assert completed.status == job_pb2.JOB_STATUS_COMPLETED
    assert rejected.status == job_pb2.JOB_STATUS_REJECTED

    after = scrape(f"{server.http_url}/metrics")
    for status in ("COMPLETED", "REJECTED"):
        moved = value(after, "kiln_jobs_finished_total", status=status) - value(
            before, "kiln_jobs_finished_total", status=status
        )
        assert moved == 1, status
    assert value(after, "kiln_queue_depth", priority="standard") == 0
    # Two probes and one transcode were leased.
    assert (
        value(after, "kiln_task_wait_seconds_count", kind="PROBE")
        - value(before, "kiln_task_wait_seconds_count", kind="PROBE")
        == 2
    )
    assert value(after, "kiln_task_wait_seconds_count", kind="TRANSCODE") >= 1
    assert ("kiln_watch_streams", ()) in after

    worker = scrape(worker_url)
    assert value(worker, "kiln_worker_tasks_total", kind="transcode", outcome="completed") == 1
    # The text file's probe ends in an error report (INPUT_NOT_MEDIA): "failed".
    assert value(worker, "kiln_worker_tasks_total", kind="probe", outcome="completed") == 1
    assert value(worker, "kiln_worker_tasks_total", kind="probe", outcome="failed") == 1
    assert value(worker, "kiln_encode_realtime_factor_count") == 1
    assert value(worker, "kiln_encode_realtime_factor_sum") > 0
    assert value(worker, "kiln_worker_tasks_in_progress", kind="transcode") == 0
