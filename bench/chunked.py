"""Benchmark: chunked parallel encoding of a ladder, 1 worker against 2, and single pass.

Source: 120 s of 1080p30 synthetic video (testsrc2 with noise, 2 s GOP) and a tone. Output: HLS
1080p / 720p / 480p H.264 (STANDARD: x264 veryfast), 6 s segments, MPEG-TS. --type hls-fmp4 or
dash encodes the same ladder as fMP4 HLS or DASH; --size and --resolutions make the source and
the ladder smaller (a quicker run).

Measured (Create -> Watch `completed`, server and workers as real processes, SQLite, local
storage, KILN_CHUNK_THRESHOLD_SECONDS=30, KILN_CHUNK_SECONDS=30 by default):
  (a) single pass: kiln's own one-process command for the same output, pinned to one core with
      taskset (the reference);
  (b) chunked, W=1: one worker (concurrency 1) pinned to core 0;
  (c) chunked, W=2: two workers (concurrency 1), pinned to cores 0 and 1.
Also the time to the first playable segment (a Get lists master.m3u8, or for DASH the dynamic
manifest.mpd) against the total, and each chunked run's task timeline (where W=2 sits idle).
Prints `chunked … speedup X.XX` (b/c) and the W=1 cost of chunking (b/a).

(a) is ffmpeg alone, (b) and (c) the whole service: the probe task, each chunk's claim, its
ffmpeg run (seeking to the chunk: -ss before -i decodes from the keyframe at or before the
start), the ffprobe of each rendition's first segment and the store, the AUDIO task (which
demuxes the whole source) and the merge (playlists only). A chunked output gets no QC read-back;
a single pass through kiln does (bench/ladder_after.py), so (a) is the fair reference here.
CPU time besides wall: of ffmpeg for (a) (os.wait4), and of the worker processes with the
children they reaped plus the server's, from /proc/<pid>/stat, for (b) and (c). With --rounds
above 1, (a) and (b) alternate which goes first and the medians are quoted.

Run: .venv/bin/python bench/chunked.py [--seconds 120] [--chunk-seconds 30] [--rounds 1]
     [--type hls-ts|hls-fmp4|dash] [--size 1920x1080] [--resolutions 1080p,720p,480p]
     [--skip-two-workers | --workers 1|2] [--threshold 30] [--unpinned]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from kiln.v1 import job_pb2, job_service_pb2  # noqa: E402

from server.domain.output_validation import NAMED_RESOLUTIONS  # noqa: E402
from tests.e2e.cluster import Cluster  # noqa: E402
from worker.media.commands import build_command  # noqa: E402
from worker.media.probe import probe  # noqa: E402

H264 = job_pb2.VIDEO_CODEC_H264
# --type: the output type, and for HLS the segment container.
OUTPUT_TYPES = {
    "hls-ts": job_pb2.OUTPUT_TYPE_HLS,
    "hls-fmp4": job_pb2.OUTPUT_TYPE_HLS,
    "dash": job_pb2.OUTPUT_TYPE_DASH,
}
FRAME_SIZE = re.compile(r"^[1-9]\d{1,4}x[1-9]\d{1,4}$")


def on_core(core: int | None) -> Callable[[list[str]], list[str]]:
    """A worker's command run on one core (taskset), for Cluster.start_worker."""

    def wrapped(command: list[str]) -> list[str]:
        return [*pinned(core), *command]

    return wrapped


def frame_size(text: str) -> str:
    """--size: WIDTHxHEIGHT, as testsrc2 takes it."""
    if not FRAME_SIZE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    return text


def resolution_list(text: str) -> list[str]:
    """--resolutions: comma-separated named rungs; refused here rather than by Create after the
    single pass has already run."""
    rungs = [rung.strip() for rung in text.split(",")]
    unknown = [rung for rung in rungs if rung not in NAMED_RESOLUTIONS]
    if unknown:
        known = ", ".join(sorted(NAMED_RESOLUTIONS, key=lambda name: int(name[:-1])))
        raise argparse.ArgumentTypeError(f"unknown resolution(s) {unknown}; known: {known}")
    return rungs


def ladder(output_type: str, resolutions: list[str]) -> job_pb2.OutputSpec:
    spec = job_pb2.OutputSpec(
        type=OUTPUT_TYPES[output_type],
        video=[job_pb2.VideoVariant(codec=H264, resolution=r) for r in resolutions],
        segments=job_pb2.SegmentSpec(duration_seconds=6),
    )
    if output_type == "hls-fmp4":
        spec.hls.segment_format = job_pb2.HLS_SEGMENT_FORMAT_FMP4
    return spec


def make_source(path: Path, seconds: int, size: str) -> None:
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"),
            f"testsrc2=size={size}:rate=30,noise=alls=12:allf=t",
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)),
            *("-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-b:v", "16M"),
            *("-pix_fmt", "yuv420p", "-c:a", "aac", str(path)),
        ],
        check=True,
    )


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of the children it has reaped (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def pinned(core: int | None) -> list[str]:
    """taskset in front of a command, or nothing when runs are not pinned (--unpinned)."""
    return [] if core is None else ["taskset", "-c", str(core)]


def single_pass(
    source: Path, spec: job_pb2.OutputSpec, out_dir: Path, core: int | None = 0
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of kiln's one-process command, pinned to `core`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = asyncio.run(probe(str(source)))
    plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)
    started = time.monotonic()
    process = subprocess.Popen([*pinned(core), *plan.argv], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg exited {process.returncode}")
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime


def chunked(
    source: Path,
    spec: job_pb2.OutputSpec,
    root: Path,
    cores: list[int | None],
    chunk_seconds: float,
    threshold_seconds: float = 30,
) -> tuple[float, float | None, float]:
    """(total seconds, seconds to the first playable segment, CPU seconds of the workers and
    the server) with one worker per core. The first playable segment: when a Get first lists
    the manifest (bench/first_segment.py also fetches what a player needs)."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        f"sqlite:///{root / 'kiln.db'}",
        root,
        source.parent,
        settings={
            "KILN_CHUNK_THRESHOLD_SECONDS": f"{threshold_seconds:g}",
            "KILN_CHUNK_SECONDS": str(chunk_seconds),
            "KILN_LEASE_SECONDS": "30",
        },
    )
    try:
        server = cluster.start_server()
        for core in cores:
            cluster.start_worker(
                server,
                # INFO: the worker logs each task it claims (the timeline's start times).
                extra_env={
                    "KILN_SCRATCH_DIR": str(root / f"scratch-{core}"),
                    "KILN_LOG_LEVEL": "INFO",
                },
                inside=on_core(core),
            )
        auth = (("authorization", f"Bearer {cluster.create_key('org_bench')}"),)
        stub = server.job_stub()
        pids = [server.process.pid, *(worker.pid for worker in cluster.workers)]
        cpu = sum(process_cpu_seconds(pid) for pid in pids)
        started = time.monotonic()
        job = stub.Create(
            job_service_pb2.CreateRequest(input_url=f"file://{source}", outputs=[spec]),
            metadata=auth,
        ).job
        # The manifest a player opens: published (live) once every rendition has a segment.
        manifest = "manifest.mpd" if spec.type == job_pb2.OUTPUT_TYPE_DASH else "master.m3u8"
        first_playable: float | None = None
        while True:
            current = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
            if first_playable is None and any(f.path == manifest for f in current.outputs[0].files):
                first_playable = time.monotonic() - started
            if current.status in (
                job_pb2.JOB_STATUS_COMPLETED,
                job_pb2.JOB_STATUS_FAILED,
                job_pb2.JOB_STATUS_PARTIAL,
                job_pb2.JOB_STATUS_CANCELED,
            ):
                break
            time.sleep(0.2)
        total = time.monotonic() - started
        cpu = sum(process_cpu_seconds(pid) for pid in pids) - cpu
        if current.status != job_pb2.JOB_STATUS_COMPLETED:
            raise RuntimeError(f"job ended {current.status}: {current.error}")
        print(timeline(root, job.id, total), flush=True)
        return total, first_playable, cpu
    finally:
        cluster.stop()


CLAIM_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO worker\.loop: task (tsk_\w+) \((\w+)\)"
)


def timeline(root: Path, job_id: str, total: float) -> str:
    """Each worker's tasks from claim (its log) to finish (the store), in seconds after
    Create, and how long each worker sat idle before the job's end: where a W=2 run loses
    to twice W=1's speed."""
    with sqlite3.connect(root / "kiln.db") as db:
        (created_at,) = db.execute("SELECT created_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        rows = db.execute(
            "SELECT id, kind, chunk_index, finished_at FROM tasks WHERE job_id = ?", (job_id,)
        ).fetchall()
    created = _utc(created_at)
    finished = {
        task_id: (kind, index, _utc(end)) for task_id, kind, index, end in rows if end is not None
    }
    lines = [f"  task timeline (s after Create; job done at {total:.1f}):"]
    for log in sorted(root.glob("worker-*.log")):
        spans, busy = [], 0.0
        for line in log.read_text().splitlines():
            match = CLAIM_LINE.match(line)
            if not match or match.group(2) not in finished:
                continue
            kind, index, end = finished[match.group(2)]
            claimed = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            start, stop = (claimed - created).total_seconds(), (end - created).total_seconds()
            busy += stop - start
            spans.append(f"{kind.lower()}{'' if index is None else index} {start:.1f}-{stop:.1f}")
        lines.append(f"  {log.stem}: {', '.join(spans)}; idle {total - busy:.1f} s")
    return "\n".join(lines)


def _utc(value: str) -> datetime:
    """A datetime as the SQLite store keeps it (ISO text, UTC), aware."""
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def first_playable_text(seconds: float | None) -> str:
    if seconds is None:
        return "no manifest listed before the end"
    return f"first playable segment after {seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--chunk-seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--type", choices=list(OUTPUT_TYPES), default="hls-ts")
    parser.add_argument("--size", type=frame_size, default="1920x1080")
    parser.add_argument("--resolutions", type=resolution_list, default="1080p,720p,480p")
    # --workers 1 is the spelling the 2026-12-07 fMP4/DASH entries in bench/RESULTS.md quote.
    workers = parser.add_mutually_exclusive_group()
    workers.add_argument("--skip-two-workers", action="store_true")
    workers.add_argument("--workers", type=int, choices=(1, 2), default=2)
    # A shorter source (a quicker run on a busy machine) needs a lower threshold to be chunked.
    parser.add_argument("--threshold", type=float, default=30.0)
    # Under heavy load from other work a pinned run waits for its one core; the CPU figures
    # compare the same work either way.
    parser.add_argument("--unpinned", action="store_true")
    args = parser.parse_args()
    spec = ladder(args.type, args.resolutions)
    load_before = os.getloadavg()
    # (wall, CPU) of each single pass; (wall, first playable, CPU) of each chunked run.
    singles: list[tuple[float, float]] = []
    ones: list[tuple[float, float | None, float]] = []
    twos: list[tuple[float, float | None, float]] = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-chunked-") as folder:
        root = Path(folder)
        source = root / "media" / "source.mp4"
        source.parent.mkdir()
        make_source(source, args.seconds, args.size)
        core = None if args.unpinned else 0
        for index in range(args.rounds):
            single_first = index % 2 == 0
            if single_first:
                singles.append(single_pass(source, spec, root / f"single-{index}", core))
            ones.append(
                chunked(
                    source, spec, root / f"w1-{index}", [core], args.chunk_seconds, args.threshold
                )
            )
            if not single_first:
                singles.append(single_pass(source, spec, root / f"single-{index}", core))
            print(
                f"round {index + 1}: single pass {singles[-1][0]:.1f} s ({singles[-1][1]:.1f} s "
                f"CPU), W=1 {ones[-1][0]:.1f} s ({ones[-1][2]:.1f} s CPU)",
                flush=True,
            )
        if not args.skip_two_workers and args.workers == 2:
            cores: list[int | None] = [None, None] if args.unpinned else [0, 1]
            twos.append(
                chunked(source, spec, root / "w2", cores, args.chunk_seconds, args.threshold)
            )
    load_after = os.getloadavg()
    single_wall = statistics.median(run[0] for run in singles)
    single_cpu = statistics.median(run[1] for run in singles)
    one_wall = statistics.median(run[0] for run in ones)
    firsts = [run[1] for run in ones if run[1] is not None]
    one_first = statistics.median(firsts) if firsts else None
    one_cpu = statistics.median(run[2] for run in ones)
    # Paired: each round's W=1 against that round's single pass.
    paired_wall = statistics.median(o[0] / s[0] for o, s in zip(ones, singles, strict=True))
    paired_cpu = statistics.median(o[2] / s[1] for o, s in zip(ones, singles, strict=True))
    one_core, two_cores = ("unpinned", "unpinned") if args.unpinned else ("1 core", "2 cores")
    lines = [
        f"single pass, {one_core}: {single_wall:.1f} s, {single_cpu:.1f} s CPU",
        f"chunked W=1 ({one_core}): {one_wall:.1f} s, {one_cpu:.1f} s CPU, "
        f"{first_playable_text(one_first)}",
    ]
    if twos:
        two_wall, two_first, two_cpu = twos[0]
        lines += [
            f"chunked W=2 ({two_cores}): {two_wall:.1f} s, {two_cpu:.1f} s CPU, "
            f"{first_playable_text(two_first)}",
            f"chunked 2 workers vs 1 worker speedup {one_wall / two_wall:.2f}",
        ]
    lines += [
        f"chunked W=1 vs single pass {one_wall / single_wall:.2f}x wall, "
        f"{one_cpu / single_cpu:.2f}x CPU (cost of chunking; paired by round "
        f"{paired_wall:.2f}x wall, {paired_cpu:.2f}x CPU; {len(ones)} rounds)",
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}",
    ]
    print("\n".join(lines))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node() or 'vm'}, {os.cpu_count()} cores, {platform.machine()}"
    with (REPO / "bench" / "RESULTS.md").open("a") as results:
        results.write(
            f"\n## chunked — {stamp}\n\nMachine: {machine}, Python {platform.python_version()}. "
            f"{args.seconds} s {args.size} 30 fps source, {args.type} "
            f"{'/'.join(args.resolutions)} x264 veryfast, 6 s segments, "
            f"{args.chunk_seconds:g} s chunks"
            + (", unpinned" if args.unpinned else "")
            + ".\n\n"
            + "\n".join(f"- {line}" for line in lines)
            + "\n"
        )


if __name__ == "__main__":
    main()
