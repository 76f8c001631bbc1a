"""Benchmark: time from Create to the first playable segment of a chunked ladder.

Sources: 2, 10 and 60 minutes of 1080p30 (a 32 s testsrc2-with-noise loop, ultrafast, 2 s GOP,
joined by the concat demuxer with -c copy, so a long source takes seconds to make) with a
48 kHz AAC tone, cached in bench/.cache/first_segment. Output: a 1080p / 720p / 480p H.264
ladder (STANDARD: x264 veryfast), 6 s segments, of the --type asked: HLS with MPEG-TS segments
(the default; chunked, its audio a separate rendition while live), HLS with fMP4 segments, DASH
or CMAF.

kiln: a server and W=2 workers (concurrency 1) pinned with taskset to cores 0 and 1, SQLite,
local storage, KILN_CHUNK_THRESHOLD_SECONDS=60 (so the 2 minute source is chunked too),
KILN_CHUNK_SECONDS=60, KILN_FIRST_CHUNK_SECONDS as set (default: the server's, 2 s).
"First playable" is what a player needs: a Get lists the manifest, and from the playback URL,
for HLS (and CMAF) the master and every playlist it names (each variant and the audio), each
listing at least one segment, its init segment (EXT-X-MAP) if any and its first segment; for
DASH (and CMAF) the MPD, and for every Representation its init segment and the first segment
its SegmentTimeline lists, all fetched (200, not empty). Polled every 0.1 s.
Sources up to --total-up-to minutes run to the end (total time); longer ones are canceled
once playable.

The raw FFmpeg reference: kiln's own single-pass command for the same ladder (muxed audio,
as a TS ladder in one pass is), pinned to one core, timed to the moment every variant's first
segment is closed (its second segment file appears); stopped there.

Run: .venv/bin/python bench/first_segment.py [--minutes 2,10,60] [--rounds 1]
     [--type hls-ts|hls-fmp4|dash|cmaf]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import httpx
import m3u8

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from kiln.v1 import job_pb2, job_service_pb2  # noqa: E402

from tests.e2e.cluster import Cluster  # noqa: E402
from worker.media.commands import build_command  # noqa: E402
from worker.media.probe import probe  # noqa: E402

H264 = job_pb2.VIDEO_CODEC_H264
CACHE = REPO / "bench" / ".cache" / "first_segment"
LOOP_SECONDS = 32  # a whole number of 2 s GOPs and of 1/30 s frames
ENDED = (
    job_pb2.JOB_STATUS_COMPLETED,
    job_pb2.JOB_STATUS_FAILED,
    job_pb2.JOB_STATUS_PARTIAL,
    job_pb2.JOB_STATUS_CANCELED,
)


def on_core(core: int) -> Callable[[list[str]], list[str]]:
    """A worker's command run on one core (taskset), for Cluster.start_worker."""

    def wrapped(command: list[str]) -> list[str]:
        return ["taskset", "-c", str(core), *command]

    return wrapped


# --type: the output type, and for HLS its segment container.
OUTPUT_TYPES = {
    "hls-ts": (job_pb2.OUTPUT_TYPE_HLS, job_pb2.HLS_SEGMENT_FORMAT_TS),
    "hls-fmp4": (job_pb2.OUTPUT_TYPE_HLS, job_pb2.HLS_SEGMENT_FORMAT_FMP4),
    "dash": (job_pb2.OUTPUT_TYPE_DASH, job_pb2.HLS_SEGMENT_FORMAT_UNSPECIFIED),
    "cmaf": (job_pb2.OUTPUT_TYPE_CMAF, job_pb2.HLS_SEGMENT_FORMAT_UNSPECIFIED),
}
RESOLUTIONS = ("1080p", "720p", "480p")
MPD = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}
TEMPLATE_FIELD = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth)(?:%0(\d+)d)?\$")


def ladder(kind: str) -> job_pb2.OutputSpec:
    output_type, segment_format = OUTPUT_TYPES[kind]
    spec = job_pb2.OutputSpec(
        type=output_type,
        video=[job_pb2.VideoVariant(codec=H264, resolution=r) for r in RESOLUTIONS],
        segments=job_pb2.SegmentSpec(duration_seconds=6),
    )
    if segment_format:
        spec.hls.segment_format = segment_format
    return spec


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def source(minutes: int) -> Path:
    """The cached source of `minutes`, made by concat-copying the cached loop."""
    CACHE.mkdir(parents=True, exist_ok=True)
    loop = CACHE / "loop_1080p30.mp4"
    if not loop.exists():
        ffmpeg(
            *("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t"),
            *("-t", str(LOOP_SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60"),
            *("-b:v", "6M", "-pix_fmt", "yuv420p", str(loop)),
        )
    target = CACHE / f"source_{minutes}min.mp4"
    if not target.exists():
        seconds = minutes * 60
        listing = CACHE / f"loops_{minutes}.txt"
        copies = -(-seconds // LOOP_SECONDS)
        listing.write_text(f"file '{loop}'\n" * copies)
        partial = target.with_suffix(".partial.mp4")
        ffmpeg(
            *("-f", "concat", "-safe", "0", "-i", str(listing)),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
            *("-t", str(seconds), "-map", "0:v", "-map", "1:a", "-c:v", "copy"),
            *("-c:a", "aac", "-b:a", "128k", str(partial)),
        )
        partial.rename(target)
    return target


def fetched(client: httpx.Client, url: str) -> bool:
    answer = client.get(url)
    return answer.status_code == 200 and bool(answer.content)


def playable(kind: str, base: str, client: httpx.Client) -> bool:
    """Whether a player could start on the output's manifest(s) at the playback URL."""
    if kind in ("dash", "cmaf") and not mpd_playable(base, client):
        return False
    return kind == "dash" or hls_playable(base, client)


def hls_playable(base: str, client: httpx.Client) -> bool:
    """The master, every playlist it names, each one's init segment and first segment."""
    answer = client.get(base + "master.m3u8")
    if answer.status_code != 200:
        return False
    master = m3u8.loads(answer.text)
    uris = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    if not master.playlists:
        return False
    for uri in uris:
        listing = client.get(base + uri)
        if listing.status_code != 200:
            return False
        media = m3u8.loads(listing.text)
        if not media.segments:
            return False
        folder = uri.rsplit("/", 1)[0] + "/" if "/" in uri else ""
        first = media.segments[0]
        if first.init_section is not None and not fetched(
            client, f"{base}{folder}{first.init_section.uri}"
        ):
            return False
        if not fetched(client, f"{base}{folder}{first.uri}"):
            return False
    return True


def mpd_playable(base: str, client: httpx.Client) -> bool:
    """The MPD, and per Representation its init segment and the first segment listed."""
    answer = client.get(base + "manifest.mpd")
    if answer.status_code != 200:
        return False
    root = ElementTree.fromstring(answer.text)
    representations = 0
    for adaptation_set in root.iterfind(".//mpd:AdaptationSet", MPD):
        shared = adaptation_set.find("mpd:SegmentTemplate", MPD)
        for representation in adaptation_set.iterfind("mpd:Representation", MPD):
            template = representation.find("mpd:SegmentTemplate", MPD)
            template = template if template is not None else shared
            if template is None:
                return False
            first = template.find("mpd:SegmentTimeline/mpd:S", MPD)
            if first is None:
                return False  # nothing listed yet
            values = {
                "RepresentationID": representation.get("id", ""),
                "Bandwidth": representation.get("bandwidth", ""),
                "Number": template.get("startNumber", "1"),
                "Time": first.get("t", "0"),
            }
            init = expand(template.get("initialization", ""), values)
            media = expand(template.get("media", ""), values)
            if not (fetched(client, base + init) and fetched(client, base + media)):
                return False
            representations += 1
    return representations > 0


def expand(template: str, values: dict[str, str]) -> str:
    """A SegmentTemplate URL with its $Identifier$ fields (and %0Nd widths) filled in."""

    def field(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return value.zfill(int(match.group(2))) if match.group(2) else value

    return TEMPLATE_FIELD.sub(field, template)


def through_kiln(
    kind: str, path: Path, root: Path, settings: dict[str, str], run_to_end: bool
) -> tuple[float, float | None]:
    """(seconds to first playable, total seconds or None) for one job on W=2 pinned workers."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(f"sqlite:///{root / 'kiln.db'}", root, path.parent, settings=settings)
    try:
        server = cluster.start_server()
        for core in (0, 1):
            cluster.start_worker(
                server,
                extra_env={"KILN_SCRATCH_DIR": str(root / f"scratch-{core}")},
                inside=on_core(core),
            )
        auth = (("authorization", f"Bearer {cluster.create_key('org_bench')}"),)
        stub = server.job_stub()
        with httpx.Client(timeout=10) as client:
            started = time.monotonic()
            job = stub.Create(
                job_service_pb2.CreateRequest(input_url=f"file://{path}", outputs=[ladder(kind)]),
                metadata=auth,
            ).job
            first = None
            while True:
                current = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
                if current.status in ENDED:
                    break
                output = current.outputs[0]
                manifest = "manifest.mpd" if kind == "dash" else "master.m3u8"
                listed = any(f.path == manifest for f in output.files)
                if first is None and listed and playable(kind, output.playback_base_url, client):
                    first = time.monotonic() - started
                    if not run_to_end:
                        stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
                        return first, None
                time.sleep(0.1)
            total = time.monotonic() - started
        if current.status != job_pb2.JOB_STATUS_COMPLETED or first is None:
            raise RuntimeError(f"job ended {current.status} (first {first}): {current.error}")
        return first, total
    finally:
        cluster.stop()


def second_segments(kind: str, out_dir: Path) -> list[Path]:
    """The files whose existence says every variant's first segment is closed, as each muxer
    opens the next segment's file only after closing the one before: the hls muxer numbers
    from 0 in v<n>/, the dash muxer (DASH, CMAF) from 1 beside its manifest."""
    variants = range(len(RESOLUTIONS))
    if kind in ("dash", "cmaf"):
        return [out_dir / f"seg-{n}-00002.m4s" for n in variants]
    extension = "ts" if kind == "hls-ts" else "m4s"
    return [out_dir / f"v{n}" / f"seg_00001.{extension}" for n in variants]


def raw_first_segment(kind: str, path: Path, out_dir: Path) -> float:
    """Seconds until kiln's single-pass command (one core) has closed every variant's first
    segment; the process is stopped then."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = asyncio.run(probe(str(path)))
    plan = build_command(input_path=str(path), spec=ladder(kind), info=info, out_dir=out_dir)
    started = time.monotonic()
    process = subprocess.Popen(
        ["taskset", "-c", "0", *plan.argv], stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while process.poll() is None:
            if all(p.exists() for p in second_segments(kind, out_dir)):
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"ffmpeg ended ({process.returncode}) before a first segment")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="2,10,60")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--total-up-to", type=int, default=2, help="minutes run to the end")
    parser.add_argument("--first-chunk-seconds", default="", help="KILN_FIRST_CHUNK_SECONDS")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw FFmpeg reference")
    parser.add_argument("--note", default="", help="what this run is, for RESULTS.md")
    parser.add_argument("--type", choices=list(OUTPUT_TYPES), default="hls-ts")
    args = parser.parse_args()
    settings = {
        "KILN_CHUNK_THRESHOLD_SECONDS": "60",
        "KILN_CHUNK_SECONDS": "60",
        "KILN_LEASE_SECONDS": "30",
    }
    if args.first_chunk_seconds:
        settings["KILN_FIRST_CHUNK_SECONDS"] = args.first_chunk_seconds
    load_before = os.getloadavg()
    lines = []
    for minutes in [int(m) for m in args.minutes.split(",")]:
        made = time.monotonic()
        path = source(minutes)
        print(f"{minutes} min source ready in {time.monotonic() - made:.1f} s", flush=True)
        firsts, totals, raws = [], [], []
        for round_ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="kiln-bench-first-") as folder:
                root = Path(folder)
                first, total = through_kiln(
                    args.type, path, root / "kiln", settings, run_to_end=minutes <= args.total_up_to
                )
                firsts.append(first)
                if total is not None:
                    totals.append(total)
                if not args.no_raw:
                    raws.append(raw_first_segment(args.type, path, root / "raw"))
            print(
                f"{minutes} min round {round_ + 1}: first playable {first:.1f} s"
                + (f", total {total:.1f} s" if total is not None else "")
                + (f", raw ffmpeg first segment {raws[-1]:.1f} s" if raws else ""),
                flush=True,
            )
        line = f"{minutes} min: first playable median {statistics.median(firsts):.1f} s"
        if totals:
            line += f", total median {statistics.median(totals):.1f} s"
        if raws:
            ratio = statistics.median(firsts) / statistics.median(raws)
            line += (
                f"; raw FFmpeg single pass (1 core) first segment median "
                f"{statistics.median(raws):.1f} s, kiln/raw {ratio:.2f}"
            )
        line += f" ({args.rounds} round{'s' if args.rounds > 1 else ''})"
        lines.append(line)
    load_after = os.getloadavg()
    lines.append(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print("\n".join(lines))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node() or 'vm'}, {os.cpu_count()} cores, {platform.machine()}"
    first_chunk = args.first_chunk_seconds or "default (2)"
    with (REPO / "bench" / "RESULTS.md").open("a") as results:
        results.write(
            f"\n## first_segment — {stamp}{' — ' + args.note if args.note else ''}\n\n"
            f"Machine: {machine}, Python {platform.python_version()}. 1080p30 sources, "
            f"{args.type} 1080/720/480 x264 veryfast, 6 s segments, 60 s chunks, first chunk "
            f"{first_chunk} s, W=2 workers pinned one core each.\n\n"
            + "\n".join(f"- {line}" for line in lines)
            + "\n"
        )


if __name__ == "__main__":
    main()
