"""The ETA end to end: absent until it can be told, then shrinking, gone at the end.

Run from test_outputs on its cluster (one database kind is enough: the ETA is arithmetic
on what the store already holds)."""

from __future__ import annotations

from itertools import pairwise

from kiln.v1 import job_pb2, job_service_pb2

from .jobs import create_job, mp4_output


def test_a_running_job_tells_its_time_left_and_stops_when_done(server, api_key, long_clip):
    auth = (("authorization", f"Bearer {api_key}"),)
    stub = server.job_stub()
    # 20 s of 720p to 720p: an encode of several seconds, long enough for several estimates.
    job = create_job(server, auth, f"file://{long_clip}", [mp4_output("720p")])
    job_etas: list[float] = []
    output_etas: list[float] = []
    got_while_running = None
    events = []
    for event in stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=90):
        events.append(event)
        kind = event.WhichOneof("event")
        if kind == "progress" and event.progress.HasField("eta_seconds"):
            job_etas.append(event.progress.eta_seconds)
            if got_while_running is None:
                got_while_running = stub.Get(
                    job_service_pb2.GetRequest(id=job.id), metadata=auth
                ).job
        elif kind == "output" and event.output.output.HasField("eta_seconds"):
            output_etas.append(event.output.output.eta_seconds)
    # Unknown before the encode starts: absent, not 0.
    snapshot = events[0].snapshot.job
    assert snapshot.status != job_pb2.JOB_STATUS_PROCESSING or snapshot.progress < 3
    assert not snapshot.HasField("eta_seconds")
    assert all(
        not event.progress.HasField("eta_seconds")
        for event in events
        if event.WhichOneof("event") == "progress" and event.progress.progress < 3
    )
    assert len(job_etas) >= 2, f"too few estimates: {job_etas}"
    assert len(output_etas) >= 2, f"too few output estimates: {output_etas}"
    # Shrinking: an estimate from the speed so far may rise a little when the machine slows
    # (47.2 s then 52.8 s was seen at load average 20), never by much, and by the end it has
    # fallen well below where it started.
    for earlier, later in pairwise(job_etas):
        assert later <= earlier * 1.25 + 1.0, f"the ETA went up: {job_etas}"
    assert job_etas[-1] < job_etas[0] / 2, f"the ETA did not shrink: {job_etas}"
    assert all(eta >= 0 for eta in job_etas + output_etas)
    # Get tells it too while the job runs (the job's is its one output's).
    assert got_while_running is not None
    assert got_while_running.HasField("eta_seconds")
    assert got_while_running.outputs[0].HasField("eta_seconds")
    done = events[-1].completed.job
    assert done.status == job_pb2.JOB_STATUS_COMPLETED
    assert not done.HasField("eta_seconds")
    assert not done.outputs[0].HasField("eta_seconds")
    final = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    assert not final.HasField("eta_seconds") and not final.outputs[0].HasField("eta_seconds")
