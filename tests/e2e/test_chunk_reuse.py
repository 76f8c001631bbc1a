"""Retry keeps finished work: a chunked job whose last chunk failed re-encodes that chunk only.

One cluster (SQLite, worker token set) cuts a 12 s source into three chunks of 4 s. The
test plays a worker through the internal API for the probe (reporting what the real ffprobe
says) and for the last chunk, which it reports as failed; a real worker encodes the rest, and
after Retry the retry itself. The tasks' rows say which pieces ran in each attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sqlite3
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.hls_playlists import muxed_segment_path
from tests.conftest import make_clip
from tests.support.fmp4_boxes import fmp4_timescale, fragment_span
from tests.support.manifests import hls_renditions, mpd_renditions
from tests.support.media_facts import single_pass, video_facts
from tests.support.played_worker import AUTH, TOKEN, PlayedWorker
from tests.support.processes import wait_until
from worker.media.probe import probe

from .cluster import kiln_command, running_cluster
from .jobs import create_job, run_to_end

SETTINGS = {
    "KILN_WORKER_TOKEN": TOKEN,
    "KILN_CHUNK_THRESHOLD_SECONDS": "5",
    "KILN_CHUNK_SECONDS": "4",
    # Every chunk 4 s, the HLS output's first too (its short first chunk: test_chunked.py).
    "KILN_FIRST_CHUNK_SECONDS": "0",
}
CHUNKS = 3
H264 = job_pb2.VIDEO_CODEC_H264
CHEAP_AUDIO = job_pb2.AudioSpec(sample_rate=48000, channels=1, bitrate_kbps=64)
FRAME = Fraction(1, 30)


@pytest.fixture(scope="module")
def reuse_cluster(sqlite_backend_url, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("chunk-reuse")
    with running_cluster(sqlite_backend_url, root, media_root, settings=SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def org_key(reuse_cluster) -> str:
    cluster, _ = reuse_cluster
    return cluster.create_key("org_reuse")


@pytest.fixture(scope="module")
def org_auth(org_key):
    return (("authorization", f"Bearer {org_key}"),)


@pytest.fixture(scope="module")
def source12(media_root) -> Path:
    return make_clip(media_root / "reuse12_160x90.mp4", seconds=12, size="160x90")


def hls_spec(bitrate_kbps: int = 0) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[job_pb2.VideoVariant(codec=H264, resolution="160x90", bitrate_kbps=bitrate_kbps)],
        segments=job_pb2.SegmentSpec(duration_seconds=2),
        audio=CHEAP_AUDIO,
    )


def cmaf_spec() -> job_pb2.OutputSpec:
    """fMP4 segments behind both an HLS master and an MPD; one init segment per rendition,
    stored by the first chunk only."""
    spec = hls_spec()
    spec.type = job_pb2.OUTPUT_TYPE_CMAF
    return spec


def mp4_spec() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
        audio=CHEAP_AUDIO,
    )


# --- the played worker ---------------------------------------------------------------------------


class ChunkHolder(PlayedWorker):
    """The played worker, which also holds a chosen task."""

    def __init__(self, server) -> None:
        super().__init__(server)
        # When each held task's lease was last renewed.
        self.heartbeats: dict[str, float] = {}

    def hold(self, task_id: str) -> wpb.Task:
        request = wpb.ClaimTaskRequest(worker_id="played", task_id=task_id)
        task = self.stub.ClaimTask(request, metadata=AUTH).task
        assert task.id == task_id, f"task {task_id} was not handed out"
        return task

    def probe_honestly(self, job_id: str, source: Path) -> None:
        task = self.claim()
        assert task.job_id == job_id and task.kind == wpb.TASK_KIND_PROBE, task
        self.complete(task, input_info=asyncio.run(probe(str(source))))

    def heartbeat(self, task: wpb.Task) -> None:
        """Keep the lease, at most every 2 s (it lasts 30)."""
        if time.monotonic() - self.heartbeats.get(task.id, 0.0) < 2:
            return
        self.heartbeats[task.id] = time.monotonic()
        request = wpb.ReportProgressRequest(
            task_id=task.id, lease_token=task.lease_token, stage=job_pb2.JOB_STAGE_TRANSCODING
        )
        self.stub.ReportProgress(request, metadata=AUTH)


def tasks_of(cluster, job_id: str) -> list[sqlite3.Row]:
    database = cluster.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(
            "SELECT id, output_id, kind, chunk_index, status, attempts, worker_id, reused_from "
            "FROM tasks WHERE job_id = ? ORDER BY created_at, id",
            (job_id,),
        ).fetchall()


def stored_segments(folder: Path) -> dict[str, tuple[str, int]]:
    """{path: (sha256, mtime in ns)} of every segment under an output's folder, MPEG-TS or
    fMP4 with its init segments (the playlists and the MPD are the server's and the merge's
    to rewrite)."""
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in folder.rglob("*")
        if p.suffix in (".ts", ".m4s") or (p.suffix == ".mp4" and p.parent != folder)
    }


def video_packets(segment: Path) -> list[dict]:
    """Each video packet of an MPEG-TS segment: its timestamps, flags and bytes' digest."""
    shown = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", "v", "-show_data_hash", "SHA256"),
            *("-show_entries", "packet=pts,dts,flags,data_hash", "-of", "json", str(segment)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(shown)["packets"]


def fail_last_chunks(cluster, server, auth, source: Path, outputs) -> job_pb2.Job:
    """A job whose audio and first chunks a real worker encodes, and whose last chunks fail
    (the played worker holds them, then reports an encoder error): FAILED."""
    played = ChunkHolder(server)
    job = create_job(server, auth, f"file://{source}", outputs=outputs)
    played.probe_honestly(job.id, source)
    held = [
        played.hold(row["id"])
        for row in tasks_of(cluster, job.id)
        if row["chunk_index"] == CHUNKS - 1
    ]
    assert len(held) == len(outputs)
    # From here on a real worker runs every task (it stays for the retry and later tests).
    cluster.start_worker(server, concurrency=2)

    def others_done() -> bool:
        for task in held:
            played.heartbeat(task)
        pieces = [r for r in tasks_of(cluster, job.id) if r["kind"] in ("CHUNK", "AUDIO")]
        return all(r["status"] == "DONE" for r in pieces if r["id"] not in {t.id for t in held})

    wait_until(others_done, timeout=120)
    for task in held:
        error = job_pb2.JobError(code="ENCODE_FAILED", message="the test's encoder gave up")
        played.complete(task, error=error)
    failed = run_to_end(server, auth, job.id)
    assert failed.status == job_pb2.JOB_STATUS_FAILED, failed
    return failed


def retry(server, auth, job_id: str) -> tuple[job_pb2.Job, list[str]]:
    """Retry, watched to the end: the job, and every note its outputs' Watch events carried."""
    server.job_stub().Retry(job_service_pb2.RetryRequest(id=job_id), metadata=auth)
    watch = job_service_pb2.WatchRequest(id=job_id)
    events = list(server.job_stub().Watch(watch, metadata=auth, timeout=120))
    notes = [note for e in events if e.HasField("output") for note in e.output.output.notes]
    return events[-1].completed.job, notes


def retried_chunks(cluster, job_id: str, output_id: str) -> list[sqlite3.Row]:
    """The output's CHUNK rows of the last attempt (each attempt makes its own rows)."""
    chunks = [
        row
        for row in tasks_of(cluster, job_id)
        if row["kind"] == "CHUNK" and row["output_id"] == output_id
    ]
    return chunks[-CHUNKS:]


# --- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retried(reuse_cluster, org_auth, source12):
    """One job, an HLS, an MP4 and a CMAF output, all failed at their last chunk; the MP4's
    first chunk file then grows in storage (changed after it was recorded); then Retry.
    Returns the HLS and the CMAF output's segments before the retry, and the retried job."""
    cluster, server = reuse_cluster
    outputs = [hls_spec(), mp4_spec(), cmaf_spec()]
    failed = fail_last_chunks(cluster, server, org_auth, source12, outputs)
    hls, mp4, cmaf = (cluster.storage_dir / failed.id / output.id for output in failed.outputs)
    before = stored_segments(hls)
    # The HLS merge copies the video segments with the audio muxed in: their video packets
    # are compared with these bytes.
    video_only = {path: (hls / path).read_bytes() for path in before if path.startswith("v0/")}
    with (mp4 / "chunks" / "chunk_00000.mp4").open("ab") as tampered:
        tampered.write(b"\0" * 16)
    before_cmaf = stored_segments(cmaf)
    done, watched_notes = retry(server, org_auth, failed.id)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED, done
    # Watch's output events carry it too.
    assert {"chunks reused: 2 of 3", "chunks reused: 1 of 3"} <= set(watched_notes)
    return before, done, before_cmaf, video_only


def test_retry_encodes_only_the_failed_chunk(reuse_cluster, org_key, retried, source12, tmp_path):
    cluster, server = reuse_cluster
    before, done, _, video_only = retried
    output = done.outputs[0]
    # The first two chunks' segments (2 of 2 s each) were stored; not the last's.
    assert len([p for p in before if p.startswith("v0/")]) == 4

    # One CHUNK task ran again; the others (and the audio) were kept, run by no worker.
    chunks = retried_chunks(cluster, done.id, output.id)
    ran = [row for row in chunks if row["reused_from"] is None]
    assert [row["chunk_index"] for row in ran] == [CHUNKS - 1]
    assert ran[0]["worker_id"] and ran[0]["attempts"] == 1
    kept = [row for row in chunks if row["reused_from"] is not None]
    assert all(row["status"] == "DONE" and row["attempts"] == 0 for row in kept)
    audio = [
        row
        for row in tasks_of(cluster, done.id)
        if row["kind"] == "AUDIO" and row["output_id"] == output.id
    ]
    assert len(audio) == 2 and audio[-1]["reused_from"] == audio[0]["id"]
    assert "chunks reused: 2 of 3" in output.notes
    shown = subprocess.run(
        kiln_command("jobs", "get", done.id),
        env=cluster.env(KILN_URL=server.http_url, KILN_API_KEY=org_key),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "note: chunks reused: 2 of 3" in shown, shown

    # The kept segments are the same files, never written again; the kept chunks' video is
    # in the merge's muxed segments packet for packet. The output plays whole.
    folder = cluster.storage_dir / done.id / output.id
    after = stored_segments(folder)
    assert {path: after[path] for path in before} == before
    assert sorted(video_only) == [f"v0/seg_0000{n}.ts" for n in range(4)]
    for path, data in video_only.items():
        kept = tmp_path / path.replace("/", "-")
        kept.write_bytes(data)
        muxed = folder / muxed_segment_path(path)
        expected = video_packets(kept)
        assert len(expected) == 60 and video_packets(muxed) == expected, path
    assert sorted(p for p in after if p.startswith("v0/muxed")) == [
        f"v0/muxed_0000{n}.ts" for n in range(6)
    ]
    reference = single_pass(source12, hls_spec(), tmp_path / "single")
    chunked = video_facts(folder / "v0" / "muxed.m3u8", FRAME)
    single = video_facts(reference / "v0" / "index.m3u8", FRAME)
    assert chunked[0] == single[0] == 360
    assert abs(chunked[1] - single[1]) <= FRAME


def test_a_changed_chunk_file_is_encoded_again(reuse_cluster, retried, source12, tmp_path):
    """The MP4's first chunk file grew after it was recorded: it is not trusted."""
    cluster, _ = reuse_cluster
    _, done, _, _ = retried
    output = done.outputs[1]
    chunks = retried_chunks(cluster, done.id, output.id)
    assert sorted(r["chunk_index"] for r in chunks if r["reused_from"] is None) == [0, 2]
    assert "chunks reused: 1 of 3" in output.notes
    joined = cluster.storage_dir / done.id / output.id / "output.mp4"
    reference = single_pass(source12, mp4_spec(), tmp_path / "single") / "output.mp4"
    assert video_facts(joined, FRAME)[0] == video_facts(reference, FRAME)[0] == 360


def test_a_cmaf_retry_keeps_the_first_chunks_and_their_init(reuse_cluster, retried, source12):
    """CMAF: the first chunk alone stores each rendition's init segment. The retry re-encodes
    the last chunk only; the kept chunks' segments and the init segments are the same files,
    and both manifests (the HLS playlists and the MPD) name every stored file."""
    cluster, _ = reuse_cluster
    _, done, before, _ = retried
    output = done.outputs[2]
    chunks = retried_chunks(cluster, done.id, output.id)
    assert [r["chunk_index"] for r in chunks if r["reused_from"] is None] == [CHUNKS - 1]
    assert "chunks reused: 2 of 3" in output.notes
    # The first two chunks' 2 s segments and the init segment, of the variant and the audio.
    assert sorted(p for p in before if p.startswith("v0/")) == [
        "v0/init.mp4",
        "v0/seg_00000.m4s",
        "v0/seg_00001.m4s",
        "v0/seg_00002.m4s",
        "v0/seg_00003.m4s",
    ]
    assert "audio/init.mp4" in before
    folder = cluster.storage_dir / done.id / output.id
    after = stored_segments(folder)
    assert {path: after[path] for path in before} == before
    assert sorted(set(after) - set(before)) == ["v0/seg_00004.m4s", "v0/seg_00005.m4s"]

    seconds = Fraction(12)
    hls_names, hls_view = hls_renditions(folder, seconds)
    mpd_names, mpd_view = mpd_renditions(folder, seconds)
    assert hls_view == mpd_view and sorted(hls_view) == ["audio", "v0"]
    stored = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert stored == hls_names | mpd_names, sorted(stored ^ (hls_names | mpd_names))
    assert {f.path for f in output.files} == stored
    # The retried chunk's segments continue the kept ones' decode times, from the kept init.
    init, segments = hls_view["v0"]
    spans = [fragment_span(segment) for segment in segments]
    assert spans[0][0] == 0
    for (start, length), (following, _) in itertools.pairwise(spans):
        assert following == start + length, (start, length, following)
    assert sum(length for _, length in spans) == 12 * fmp4_timescale(init)


def test_other_spec_or_organization_encodes_every_chunk(reuse_cluster, org_auth, source12):
    """New jobs on the same input (another bitrate; another organization, same spec) keep
    nothing of another job's pieces: every chunk is encoded."""
    cluster, server = reuse_cluster
    other_org = (("authorization", f"Bearer {cluster.create_key('org_reuse_other')}"),)
    jobs = [
        (create_job(server, org_auth, f"file://{source12}", outputs=[hls_spec(300)]), org_auth),
        (create_job(server, other_org, f"file://{source12}", outputs=[hls_spec()]), other_org),
    ]
    if not any(worker.poll() is None for worker in cluster.workers):
        cluster.start_worker(server, concurrency=2)  # this test alone
    for job, auth in jobs:
        done = run_to_end(server, auth, job.id, timeout=120)
        assert done.status == job_pb2.JOB_STATUS_COMPLETED, done
        chunks = [r for r in tasks_of(cluster, job.id) if r["kind"] == "CHUNK"]
        assert len(chunks) == CHUNKS
        assert all(r["reused_from"] is None and r["worker_id"] for r in chunks)
        assert not any("chunks reused" in note for note in done.outputs[0].notes)
