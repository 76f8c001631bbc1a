"""What a chunked output's video and audio are, read back with ffprobe, against the same
output encoded in one pass by the worker's own command builder."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
from fractions import Fraction
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.commands import build_command
from worker.media.probe import probe


def packets(target: Path, stream: str) -> list[tuple[Fraction, Fraction, Fraction]]:
    """(pts, dts, duration) of every packet of the first `stream` ("v" or "a"), in seconds."""
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", f"{stream}:0", "-show_entries"),
            *("packet=pts,dts,duration:stream=time_base", "-of", "json", str(target)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    parsed = json.loads(result.stdout)
    base = Fraction(parsed["streams"][0]["time_base"])
    return [
        (int(p["pts"]) * base, int(p["dts"]) * base, int(p.get("duration", 0)) * base)
        for p in parsed["packets"]
    ]


def frames_read(target: Path | str, stream: str) -> tuple[str | None, int]:
    """(its `id` tag, frames decoded) of the one stream `stream` ("v:1") of `target`, a file or
    a URL (an MPD), read alone. Alone, because FFmpeg's DASH demuxer (libavformat/dashdec.c,
    dash_read_packet, 5.1 as on master) reads next from the representation with the lowest
    timestamp and ends the whole input as soon as that one runs out: read all at once, the
    renditions that end later lose their last frames (779 of 780, a single pass's MPD too)."""
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames", "-select_streams", stream),
            *("-show_entries", "stream=nb_read_frames:stream_tags=id", "-of", "json"),
            str(target),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    [found] = json.loads(result.stdout)["streams"]
    return found.get("tags", {}).get("id"), int(found["nb_read_frames"])


def video_facts(target: Path, frame: Fraction) -> tuple[int, Fraction, Fraction, Fraction]:
    """(frames, duration, start, end) with DTS strictly increasing and PTS on one grid."""
    video = packets(target, "v")
    dts = [p[1] for p in video]
    assert all(b > a for a, b in itertools.pairwise(dts)), f"DTS not monotonic: {target}"
    pts = sorted(p[0] for p in video)
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert max(steps) - min(steps) <= Fraction(1, 1000), f"PTS jump at a join: {steps}"
    start, end = pts[0], pts[-1] + frame
    return len(video), end - start, start, end


def audio_span(target: Path) -> tuple[Fraction, Fraction]:
    audio = packets(target, "a")
    return audio[0][0], audio[-1][0] + audio[-1][2]


def single_pass(source: Path, spec: job_pb2.OutputSpec, out_dir: Path) -> Path:
    """The same output's video encoded in one pass by the worker's own command builder (the
    comparisons are of video; leaving the audio out saves seconds of AAC encoding)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = job_pb2.OutputSpec.FromString(spec.SerializeToString())
    spec.audio.disabled = True
    info = asyncio.run(probe(str(source)))
    plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)
    subprocess.run(plan.argv, check=True, capture_output=True)
    return out_dir
