"""A representative job's event log, as Watch replays it, against a recorded one.

The proof that a change to the server's insides changed no behaviour a client sees: a job with
a probe, an MP4, a 2-rung HLS ladder and a thumbnail runs through a real server and worker, and
its whole log (Watch from sequence 0) must equal tests/data/event_log.json in its event types,
their order, every payload's field names and the values that do not vary from run to run
(statuses, stages, output types, codecs, error codes, file names and dimensions).

What varies is normalised away before comparing, so the test never flakes:
- ids, times, URLs, sizes, durations, costs and progress values become placeholders (their
  field names stay); an ETA, present or not as timing has it, is dropped;
- the job's own events (status changes, progress, completed) and each output's events are
  compared as separate sequences, since two workers' slots interleave outputs freely;
- runs of equal events (progress ticks, once their values are placeholders) are collapsed into
  one, since how many ticks FFmpeg reports is a matter of timing; whether the job ticks at all
  while it is PROCESSING is timing too (a short encode can end before the first report), so
  its ticks there are left out.

To record the file again after an intended change to what clients see, run this test with
KILN_RECORD_EVENT_LOG=1 and commit the file with the change; review its diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from kiln.v1 import job_pb2, job_service_pb2

from .jobs import create_job

RECORDED = Path(__file__).resolve().parents[1] / "data" / "event_log.json"
RECORD = os.environ.get("KILN_RECORD_EVENT_LOG") == "1"

# Fields whose values change from run to run; the field stays, its value becomes "<field>".
# So does every field named "…Time", "…Url" or "…Cost" (moments, signed links, money).
VOLATILE_FIELDS = {
    "id",
    "sequence",
    "url",
    "sizeBytes",
    "bitrate",
    "durationSeconds",
    "progress",
    "ssim",
    "psnrDb",
    # A quality-control check's measurements (docs/qc.md); its name, threshold and verdict stay.
    "value",
    "sourceValue",
    "detail",
}
VOLATILE_ENDINGS = ("Time", "Url", "Cost")
# Fields whose very presence depends on timing: an ETA appears only once an output has run
# past 3 % and 2 s, which a short encode on a loaded machine may or may not reach.
TIMED_FIELDS = {"etaSeconds"}
# Ids the server makes ("job_01J…", "out_…"), wherever they appear in a string.
GENERATED_ID = re.compile(r"\b(job|out|tsk|evt)_[0-9A-Za-z]{10,}")


@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    # The log is written by the same code on either database (the store's tests cover both).
    return sqlite_backend_url


def representative_outputs() -> list[job_pb2.OutputSpec]:
    h264 = job_pb2.VIDEO_CODEC_H264
    return [
        job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_MP4,
            video=[job_pb2.VideoVariant(codec=h264, resolution="240p")],
        ),
        job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_HLS,
            video=[
                job_pb2.VideoVariant(codec=h264, resolution="240p"),
                job_pb2.VideoVariant(codec=h264, resolution="320x180"),
            ],
        ),
        job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_JPG,
            thumbnail=job_pb2.ThumbnailSpec(time_seconds=1, width=160),
        ),
    ]


def normalised(value: Any, field: str = "") -> Any:
    if field in VOLATILE_FIELDS or field.endswith(VOLATILE_ENDINGS):
        return f"<{field}>"
    if isinstance(value, dict):
        return {
            key: normalised(item, key)
            for key, item in sorted(value.items())
            if key not in TIMED_FIELDS
        }
    if isinstance(value, list):
        return [normalised(item) for item in value]
    if isinstance(value, str):
        return GENERATED_ID.sub(lambda found: f"<{found.group(1)}_id>", value)
    return value


def collapsed(events: list[Any]) -> list[Any]:
    """Runs of equal events become one."""
    kept: list[Any] = []
    for event in events:
        if not kept or kept[-1] != event:
            kept.append(event)
    return kept


def log_shape(replay: list[job_service_pb2.WatchResponse], positions: dict[str, str]) -> dict:
    """The job's own sequence and each output's, normalised and collapsed."""
    job_events: list[Any] = []
    output_events: dict[str, list[Any]] = {name: [] for name in positions.values()}
    status = job_pb2.JOB_STATUS_PENDING
    for event in replay:
        kind = event.WhichOneof("event")
        payload = normalised(
            MessageToDict(getattr(event, kind), always_print_fields_with_no_presence=True)
        )
        if kind == "output":
            output_events[positions[event.output.output.id]].append(payload)
            continue
        if kind == "status_change":
            status = event.status_change.to_status
        elif kind == "progress" and status == job_pb2.JOB_STATUS_PROCESSING:
            # Whether the job ticks at all while it processes is timing too: on a quiet machine
            # the 2 s clip's encodes can end before a worker's first report (every 0.5 s), and
            # the job goes from PROCESSING to COMPLETED with no tick between (seen in CI).
            continue
        job_events.append([kind, payload])
    return {
        "job": collapsed(job_events),
        "outputs": {name: collapsed(events) for name, events in output_events.items()},
    }


def test_a_representative_jobs_log_is_the_recorded_one(server, api_key, media_root):
    auth = (("authorization", f"Bearer {api_key}"),)
    job = create_job(
        server, auth, f"file://{media_root / 'clip2s.mp4'}", outputs=representative_outputs()
    )
    stub = server.job_stub()
    live = list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60))
    assert live[-1].completed.job.status == job_pb2.JOB_STATUS_COMPLETED
    replay = list(
        stub.Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth, timeout=30
        )
    )
    # The replay is the whole log, gapless, ending with the job's end.
    assert [event.sequence for event in replay] == list(range(1, len(replay) + 1))
    assert replay[-1].WhichOneof("event") == "completed"
    positions = {
        output.id: f"{position}:{job_pb2.OutputType.Name(output.spec.type)}"
        for position, output in enumerate(job.outputs)
    }
    shape = log_shape(replay, positions)
    if RECORD:
        RECORDED.parent.mkdir(exist_ok=True)
        RECORDED.write_text(json.dumps(shape, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(RECORDED.read_text())
    assert shape["job"] == recorded["job"]
    assert shape["outputs"] == recorded["outputs"]
