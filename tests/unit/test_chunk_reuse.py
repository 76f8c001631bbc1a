"""The reuse key of a chunked output's piece: equal only when everything its bytes depend on is."""

from __future__ import annotations

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.domain.states import TaskKind
from server.jobs.chunk_reuse import piece_key, reuse_note
from server.store.models import Job

SPEC = job_pb2.OutputSpec(
    type=job_pb2.OUTPUT_TYPE_MP4,
    video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="160x90")],
)
INFO = job_pb2.InputInfo(duration_seconds=30, size_bytes=1000, container="mov")
CHUNK = wpb.ChunkRange(index=1, count=3, start_seconds=12, end_seconds=24)


def job(organization: str = "org_a", url: str = "file:///media/a.mp4") -> Job:
    return Job(organization_id=organization, input_url=url, input_origin_id="", input_path="")


def key(**changes) -> str:
    return piece_key(
        changes.get("job", job()),
        changes.get("info", INFO),
        changes.get("spec", SPEC).SerializeToString(),
        changes.get("kind", TaskKind.CHUNK),
        changes.get("chunk", CHUNK),
    )


def test_the_same_piece_has_the_same_key():
    assert key() == key()
    assert len(key()) == 64


def test_each_thing_the_bytes_depend_on_changes_the_key():
    other_spec = job_pb2.OutputSpec()
    other_spec.CopyFrom(SPEC)
    other_spec.video[0].bitrate_kbps = 300
    resized = job_pb2.InputInfo()
    resized.CopyFrom(INFO)
    resized.size_bytes += 1
    moved = wpb.ChunkRange()
    moved.CopyFrom(CHUNK)
    moved.end_seconds += 1
    keys = {
        key(),
        key(job=job(organization="org_b")),
        key(job=job(url="file:///media/b.mp4")),
        key(info=resized),
        key(spec=other_spec),
        key(kind=TaskKind.AUDIO),
        key(chunk=moved),
    }
    assert len(keys) == 7


def test_the_note_counts_kept_chunks():
    assert reuse_note(2, 3) == "chunks reused: 2 of 3"
