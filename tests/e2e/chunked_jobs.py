"""The chunked tests' shared setup: the cluster settings that make a short clip chunked, the
ladders they encode, and where to read what a job stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kiln.v1 import job_pb2

from .cluster import LOOPBACK_INPUTS

SETTINGS = {
    "KILN_CHUNK_THRESHOLD_SECONDS": "10",
    "KILN_CHUNK_SECONDS": "12",
    # The clusters' own 10 s lease (tests/e2e/cluster.py): a 3 s one was lost by workers
    # starved of CPU on a loaded machine, and their chunks ran twice.
    # The first chunk's test reads its source from a held origin on this machine.
    **LOOPBACK_INPUTS,
}
H264 = job_pb2.VIDEO_CODEC_H264
# 48 kHz: AAC priming (1024 samples, 21 ms) stays within a frame of the video's start.
CHEAP_AUDIO = job_pb2.AudioSpec(sample_rate=48000, channels=1, bitrate_kbps=64)


def hls_ladder(quality: job_pb2.Quality = job_pb2.QUALITY_STANDARD) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution="96x54", quality=quality),
            job_pb2.VideoVariant(codec=H264, resolution="160x90", quality=quality),
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=2),
        audio=CHEAP_AUDIO,
    )


# The first 26 s of source60: three chunks (the short first chunk of 2 s, then 12 s and 12 s).
FMP4_CLIP = 26


def fmp4_ladder(kind: str) -> job_pb2.OutputSpec:
    spec = hls_ladder()
    spec.clip.duration_seconds = FMP4_CLIP
    if kind == "hls-fmp4":
        spec.hls.segment_format = job_pb2.HLS_SEGMENT_FORMAT_FMP4
    else:
        spec.type = job_pb2.OUTPUT_TYPE_DASH if kind == "dash" else job_pb2.OUTPUT_TYPE_CMAF
    return spec


def output_dir(cluster, job: job_pb2.Job) -> Path:
    return cluster.storage_dir / job.id / job.outputs[0].id


def tasks_of(cluster, job_id: str) -> list[sqlite3.Row]:
    database = cluster.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(
            "SELECT id, kind, chunk_index, status, attempts, finished_at, worker_id FROM tasks "
            "WHERE job_id = ? ORDER BY kind, chunk_index",
            (job_id,),
        ).fetchall()
