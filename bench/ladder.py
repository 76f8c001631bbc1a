"""Benchmark: an HLS H.264 ladder through kiln against raw FFmpeg doing the same work.

Source: 60 s of 1080p30 synthetic video with motion and noise (about 16 Mb/s, 2 s GOP) and a
tone. Ladder: 1080p / 720p / 480p, x264 veryfast (kiln's STANDARD tier), 6 s fMP4 segments.

Measured in one run, interleaved (the order rotates each round), at least 3 rounds:
  (a) kiln: Create -> the Watch `completed` event, server and worker as real processes. This
      holds the probe task, the encode and what the transcode task runs after ffmpeg exits:
      finalize (playlists from the segments), the quality-control read-back, describe and the
      store (bench/ladder_after.py prices each);
  (b) raw: the single FFmpeg command with split + var_stream_map producing the same ladder
      (kiln's own command builder prints it, so both encode with identical settings);
  (c) three separate FFmpeg processes, one per rendition (each decodes the source again).
Wall time and CPU time (user + system): of the ffmpeg children for (b) and (c) (os.wait4), and
of the `kiln up` process with the children it reaped (ffmpeg, ffprobe) for (a), read from
/proc/<pid>/stat before and after the job. On a shared machine the CPU figures are the steadier.
Prints medians and the ratios kiln/raw (target <= 1.05) and three-process/kiln (target >= 1.3),
and appends them to bench/RESULTS.md. For (a) it also splits the wall time where its watcher
first saw each stage: before the encode (probe task, dispatch), the encode, and after it.
With --baseline another checkout of kiln (say main's, before a change) runs as (a') in the
same rounds, so a change is measured against what it replaces under the same load.

Run: .venv/bin/python bench/ladder.py [--rounds 3] [--seconds 60] [--only kiln,raw]
     [--kiln-env KILN_PROGRESS_INTERVAL_SECONDS=1]  (settings for `kiln up`, repeatable)
     [--baseline /path/to/another/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import grpc  # noqa: E402
import httpx  # noqa: E402
from kiln.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc  # noqa: E402

from worker.media.commands import build_command  # noqa: E402
from worker.media.probe import probe  # noqa: E402

WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "RESULTS.md"
RUNGS = ("1080p", "720p", "480p")


def make_source(seconds: int) -> Path:
    source = WORK / f"source_1080p30_{seconds}s.mp4"
    if source.exists():
        return source
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"making the {seconds} s 1080p30 source (once) ...", flush=True)
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            # Temporal noise keeps the encoder honest: testsrc2 alone compresses too well.
            "-vf",
            "noise=alls=12:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            "16M",
            "-maxrate",
            "16M",
            "-bufsize",
            "32M",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            str(source),
        ],
        check=True,
    )
    return source


def ladder_spec(rungs=RUNGS) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(
                codec=job_pb2.VIDEO_CODEC_H264, resolution=r, quality=job_pb2.QUALITY_STANDARD
            )
            for r in rungs
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=6),
        hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4),
    )


def raw_argv(source: Path, info, out_dir: Path, rungs=RUNGS) -> list[str]:
    plan = build_command(
        input_path=str(source), spec=ladder_spec(rungs), info=info, out_dir=out_dir
    )
    return plan.argv


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process) of one run."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg exited {process.returncode}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def process_cpu_split(pid: int) -> tuple[float, float]:
    """(CPU seconds of a process itself, of the children it has reaped), user + system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime..cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + stime) / tick, (cutime + cstime) / tick


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of the children it has reaped."""
    return sum(process_cpu_split(pid))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Kiln:
    """`kiln up` (server + one worker slot) in a scratch folder, on SQLite."""

    def __init__(
        self,
        root: Path,
        media: Path,
        settings: dict[str, str] | None = None,
        repo: Path = REPO,
    ) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            # Ahead of this checkout's editable install: `repo` may be another checkout.
            PYTHONPATH=f"{repo}{os.pathsep}{repo / 'gen'}",
            KILN_DATA_DIR=str(root / "var"),
            KILN_INPUT_ROOTS=str(media),
            KILN_HTTP_PORT=str(self.http_port),
            KILN_GRPC_PORT=str(self.grpc_port),
            KILN_WORKER_PORT=str(free_port()),
            KILN_LOG_LEVEL="WARNING",
        )
        env.update(settings or {})
        root.mkdir(parents=True, exist_ok=True)
        self.log = (root / "kiln.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kiln_cli", "up", "--workers", "1"],
            cwd=root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        # Generous: on a shared 2-core machine at load 20+ the imports alone take a minute.
        deadline = time.monotonic() + 300
        while True:
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"kiln did not start (log: {root / 'kiln.log'})") from None
            time.sleep(0.2)
        key_file = root / "var" / "dev_api_key"
        while not key_file.exists():
            time.sleep(0.1)
        self.own_cpu: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.auth = (("authorization", f"Bearer {key_file.read_text().strip()}"),)
        self.stub = job_service_pb2_grpc.JobServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        )

    def run_ladder(self, source: Path) -> tuple[float, float]:
        own, children = process_cpu_split(self.process.pid)
        start = time.perf_counter()
        job = self.stub.Create(
            job_service_pb2.CreateRequest(input_url=f"file://{source}", outputs=[ladder_spec()]),
            metadata=self.auth,
        ).job
        # When the watcher first saw each stage (progress is reported every 0.5 s by default,
        # so each is late by up to that much): where the job's wall time goes.
        seen: dict[str, float] = {}
        for event in self.stub.Watch(
            job_service_pb2.WatchRequest(id=job.id), metadata=self.auth, timeout=3600
        ):
            if event.HasField("progress"):
                stage = job_pb2.JobStage.Name(event.progress.stage)
                seen.setdefault(stage, time.perf_counter() - start)
                # The stage's change alone is no progress event, and a running job's progress
                # stops at 99 % (server.jobs.tasks.RUNNING_PROGRESS_CAP): the encode's end is
                # the first report at that cap (ffmpeg past 99 % of the clip).
                if event.progress.progress >= 99.0:
                    seen.setdefault("encoded", time.perf_counter() - start)
            if event.HasField("completed"):
                elapsed = time.perf_counter() - start
                self.phases.append(phases(seen, elapsed))
                if event.completed.job.status != job_pb2.JOB_STATUS_COMPLETED:
                    raise RuntimeError(f"kiln job ended {event.completed.job}")
                # The worker stores and reports before `completed`; its children are reaped.
                own_after, children_after = process_cpu_split(self.process.pid)
                # kiln's own Python (server and worker) apart from ffmpeg and ffprobe.
                self.own_cpu.append(own_after - own)
                return elapsed, own_after - own + children_after - children
        raise RuntimeError("stream closed without completed")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


PHASES = ("before the encode", "encode", "after the encode")


def phases(seen: dict[str, float], elapsed: float) -> dict[str, float]:
    """A kiln run's wall time in three: Create to the first transcoding report (the probe
    task, two dispatches, reading the input), to the first report of 99 % (the encode), and
    to `completed` (finalize, the read-backs, describe, store, the result's report). Reports
    come every KILN_PROGRESS_INTERVAL_SECONDS (0.5 s): each boundary is late by up to that."""
    encoding = seen.get("JOB_STAGE_TRANSCODING", 0.0)
    encoded = seen.get("encoded", seen.get("JOB_STAGE_PACKAGING", elapsed))
    return dict(zip(PHASES, (encoding, encoded - encoding, elapsed - encoded), strict=True))


RUNS = {
    "kiln": "(a) kiln, Create → completed",
    "base": "(a') kiln at --baseline, Create → completed",
    "raw": "(b) raw FFmpeg, one process",
    "three": "(c) three FFmpeg processes",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--only", default=",".join(RUNS), help="runs to make, e.g. kiln,raw")
    parser.add_argument(
        "--kiln-env", action="append", default=[], help="KEY=VALUE for kiln up (repeatable)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of kiln (e.g. main's worktree) run as (a') in the same rounds",
    )
    args = parser.parse_args()
    names = [name for name in RUNS if name in args.only.split(",")]
    if args.baseline is not None and "base" not in names:
        names.insert(1, "base")
    if args.baseline is None and "base" in names:
        parser.error("--only base needs --baseline")

    source = make_source(args.seconds)
    info = asyncio.run(probe(str(source)))
    # (wall seconds, CPU seconds) of each run.
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        root = Path(tmp)
        settings = dict(setting.split("=", 1) for setting in args.kiln_env)
        kiln = Kiln(root / "kiln", source.parent, settings)
        base = (
            Kiln(root / "base", source.parent, settings, args.baseline) if "base" in names else None
        )
        try:

            def run_kiln() -> tuple[float, float]:
                return kiln.run_ladder(source)

            def run_base() -> tuple[float, float]:
                assert base is not None
                return base.run_ladder(source)

            def run_raw() -> tuple[float, float]:
                out = root / "raw"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                return timed(raw_argv(source, info, out))

            def run_three() -> tuple[float, float]:
                wall = cpu = 0.0
                for rung in RUNGS:
                    out = root / f"single_{rung}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    one_wall, one_cpu = timed(raw_argv(source, info, out, (rung,)))
                    wall, cpu = wall + one_wall, cpu + one_cpu
                return wall, cpu

            print("raw command:", " ".join(raw_argv(source, info, root / "raw")), flush=True)
            runs = {"kiln": run_kiln, "base": run_base, "raw": run_raw, "three": run_three}
            order = [(name, runs[name]) for name in names]
            for round_index in range(args.rounds):
                shift = round_index % len(order)
                for name, run in order[shift:] + order[:shift]:
                    wall, cpu = run()
                    results[name].append((wall, cpu))
                    print(
                        f"round {round_index + 1} {name:5s} {wall:7.2f} s ({cpu:.2f} s CPU)",
                        flush=True,
                    )
        finally:
            kiln.stop()
            if base is not None:
                base.stop()

    medians = {
        name: tuple(statistics.median(run[i] for run in values) for i in (0, 1))
        for name, values in results.items()
    }
    ratios = []
    kilns = {"kiln": kiln, "base": base}
    for name in ("kiln", "base"):
        if name not in medians or "raw" not in medians:
            continue
        # Paired: each round's kiln against that round's raw, then the median of the rounds.
        paired = [
            statistics.median(
                k[i] / r[i] for k, r in zip(results[name], results["raw"], strict=True)
            )
            for i in (0, 1)
        ]
        ratios.append(
            f"{name}/raw = {medians[name][0] / medians['raw'][0]:.2f} wall, "
            f"{medians[name][1] / medians['raw'][1]:.2f} CPU "
            f"(paired by round: {paired[0]:.2f} wall, {paired[1]:.2f} CPU)"
        )
    if "kiln" in medians and "three" in medians:
        ratios.append(
            f"three-process/kiln = {medians['three'][0] / medians['kiln'][0]:.2f} wall, "
            f"{medians['three'][1] / medians['kiln'][1]:.2f} CPU"
        )
    for name, each in kilns.items():
        if each is None or not each.own_cpu:
            continue
        ratios.append(
            f"of {name}'s CPU, its own Python (server and worker, not ffmpeg or ffprobe): median "
            f"{statistics.median(each.own_cpu):.2f} s ("
            + " / ".join(f"{value:.2f}" for value in each.own_cpu)
            + ")"
        )
        ratios.append(
            f"{name}'s wall by phase, as its watcher saw the stages (medians, s): "
            + ", ".join(
                f"{phase} {statistics.median(run[phase] for run in each.phases):.2f}"
                for phase in PHASES
            )
            + " (after the encode per round: "
            + " / ".join(f"{run[PHASES[2]]:.2f}" for run in each.phases)
            + ")"
        )
    for name, (wall, cpu) in medians.items():
        print(f"median {name}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print("\n".join(ratios))
    record(args, medians, results, ratios)


def record(args, medians, results, ratios) -> None:
    ffmpeg_version = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        "",
        f"## ladder — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, {ffmpeg_version}; load average at the end {load}.",
        f"Source {args.seconds} s 1080p30 (~16 Mb/s, 2 s GOP, noise); HLS fMP4 ladder "
        "1080p/720p/480p, x264 veryfast, 6 s segments; "
        f"{args.rounds} interleaved rounds"
        + (f"; kiln up with {', '.join(args.kiln_env)}" if args.kiln_env else "")
        + (f"; (a') is the checkout at {args.baseline}" if args.baseline else "")
        + ".",
        "",
        "| run | median wall (s) | median CPU (s) | all runs: wall s (CPU s) |",
        "|---|---|---|---|",
    ]
    for name, (wall, cpu) in medians.items():
        runs = " / ".join(f"{w:.2f} ({c:.2f})" for w, c in results[name])
        lines.append(f"| {RUNS[name]} | {wall:.2f} | {cpu:.2f} | {runs} |")
    lines += ["", *(f"{ratio}\n" for ratio in ratios)]
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
