"""The ETA end to end: absent until it can be told, then shrinking, gone at the end; told
for queued outputs too once the fleet has measured their kind of output.

Run from test_outputs on its cluster (one database kind is enough: the ETA is arithmetic
on what the store already holds). Its one worker has two slots."""

from __future__ import annotations

from itertools import pairwise

from kiln.v1 import job_pb2, job_service_pb2

from .jobs import create_job, mp4_output

# The kind of output (common/speed_classes.py "h264/480") no other test of the module makes:
# unmeasured until the queued-work test's first job finishes one.
QUEUED_KIND = "480p"


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
    # Unknown before the probe: absent, not 0. (Before the output's own rate is known the
    # fleet's speed may tell it, when another test measured 720p H.264 first: see below.)
    snapshot = events[0].snapshot.job
    assert snapshot.status != job_pb2.JOB_STATUS_PROCESSING or snapshot.progress < 3
    assert not snapshot.HasField("eta_seconds")
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


# A progress event, with each output's (status, progress) as the events so far left them.
Seen = tuple[job_service_pb2.ProgressEvent, dict[str, tuple[int, float]]]


def watch_three_outputs(server, auth, source: str) -> tuple[list[Seen], job_pb2.Job]:
    """A job of three 3 s outputs of QUEUED_KIND on two slots, so one waits, watched to its
    end: each progress event with the outputs as the events so far left them, and the
    job as Get told it at the first progress event."""
    stub = server.job_stub()
    clip = job_pb2.ClipSpec(duration_seconds=3)
    outputs = [mp4_output(QUEUED_KIND) for _ in range(3)]
    for output in outputs:
        output.clip.CopyFrom(clip)
    job = create_job(server, auth, source, outputs)
    statuses = {output.id: (output.status, output.progress) for output in job.outputs}
    seen: list[Seen] = []
    got = None
    for event in stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=90):
        kind = event.WhichOneof("event")
        if kind == "output":
            output = event.output.output
            statuses[output.id] = (output.status, output.progress)
        elif kind == "progress":
            if got is None:
                got = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
            seen.append((event.progress, dict(statuses)))
        elif kind == "completed":
            assert event.completed.job.status == job_pb2.JOB_STATUS_COMPLETED
            assert not event.completed.job.HasField("eta_seconds")
    assert got is not None, "no progress event"
    return seen, got


def test_queued_outputs_are_told_from_the_fleets_speed_once_it_is_known(server, api_key, long_clip):
    auth = (("authorization", f"Bearer {api_key}"),)
    pending = job_pb2.OUTPUT_STATUS_PENDING

    # 1. Nobody has measured this kind yet: an output that waits has no estimate, so
    # neither has its job, in progress events and in Get alike (absent, not 0). Only events
    # before any output neared its end count: its worker announces its speed at the end.
    first, got = watch_three_outputs(server, auth, f"file://{long_clip}")
    early = [
        (progress, outputs)
        for progress, outputs in first
        if any(status == pending for status, _ in outputs.values())
        and all(done < 90 for _, done in outputs.values())
    ]
    assert early, "no progress event while an output waited"
    assert all(not progress.HasField("eta_seconds") for progress, _ in early)
    assert not got.HasField("eta_seconds")
    waiting = [o for o in got.outputs if o.status == pending]
    assert waiting and all(not o.HasField("eta_seconds") for o in waiting)

    # 2. That job's encodes measured it: now every progress event tells the job's time
    # left while an output still waits, and Get tells each waiting output's, later than the
    # first of the running ones can end (it waits for that slot).
    second, got = watch_three_outputs(server, auth, f"file://{long_clip}")
    queued = [
        progress
        for progress, outputs in second
        if any(status == pending for status, _ in outputs.values())
    ]
    assert queued, "no progress event while an output waited"
    assert all(progress.HasField("eta_seconds") for progress in queued), queued
    assert all(progress.eta_seconds > 0 for progress in queued)
    assert got.HasField("eta_seconds")
    waiting = [o for o in got.outputs if o.status == pending]
    running = [o for o in got.outputs if o.status == job_pb2.OUTPUT_STATUS_PROCESSING]
    assert waiting and running, got
    assert all(o.HasField("eta_seconds") for o in got.outputs)
    assert min(o.eta_seconds for o in waiting) > min(o.eta_seconds for o in running)
    assert got.eta_seconds == max(o.eta_seconds for o in got.outputs)
