"""Chunked parallel encoding through the running server: the result against a single pass (MP4,
MPEG-TS HLS, and fMP4 HLS, DASH and CMAF, played past a join by hls.js and dash.js), a worker
lost mid-chunk, uneven frame timing, Cancel, and HLS playable while chunks finish.

One cluster (SQLite: the database kind changes nothing here) with a low chunking threshold,
so a 60 s source of 160x90 is cut into 12 s chunks and every run stays short.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.conftest import make_clip
from tests.http_origins import Origin, hold_on
from tests.support import plain_http
from tests.support.browser import require_browser
from tests.support.cues import cue_times
from tests.support.fmp4_boxes import fmp4_first_presentation, fmp4_timescale, fragment_span
from tests.support.manifests import Renditions, hls_renditions, mpd_renditions, referenced_files
from tests.support.media_facts import (
    audio_span,
    frames_read,
    packets,
    single_pass,
    video_facts,
)
from tests.support.players import other_origin_site, play_cases, recording_relay
from tests.support.processes import ffmpeg_children_of, ffmpeg_pids_writing_to, wait_until

from .chunked_jobs import (
    CHEAP_AUDIO,
    FMP4_CLIP,
    H264,
    SETTINGS,
    fmp4_ladder,
    hls_ladder,
    output_dir,
    tasks_of,
)
from .cluster import running_cluster
from .jobs import create_job, run_to_end


@pytest.fixture(scope="module")
def chunk_cluster(sqlite_backend_url, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("chunked")
    with running_cluster(sqlite_backend_url, root, media_root, settings=SETTINGS) as (
        cluster,
        server,
    ):
        cluster.start_worker(server, concurrency=2)
        yield cluster, server


@pytest.fixture(scope="module")
def auth(chunk_cluster):
    cluster, _ = chunk_cluster
    return (("authorization", f"Bearer {cluster.create_key('org_chunks')}"),)


@pytest.fixture(scope="module")
def source60(media_root) -> Path:
    return make_clip(media_root / "chunk60_160x90.mp4", seconds=60, size="160x90")


@pytest.fixture(scope="module")
def slow_source(media_root) -> Path:
    """Encoded at PREMIUM, its chunks run long enough to be caught running."""
    return make_clip(media_root / "chunk36_320x180.mp4", seconds=36, size="320x180")


def slow_ladder() -> job_pb2.OutputSpec:
    """One PREMIUM rung of 320x180: three chunks of 12 s, each caught running easily."""
    spec = hls_ladder(job_pb2.QUALITY_PREMIUM)
    del spec.video[0]
    spec.video[0].resolution = "320x180"
    return spec


def mp4_spec() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
        audio=CHEAP_AUDIO,
    )


# --- reading media -------------------------------------------------------------------------------


def live_view(folder: Path) -> set[str]:
    """What a chunked MPEG-TS ladder with audio keeps for players that started on its live
    master, which its final master does not name (its variants' playlists are muxed.m3u8,
    the audio in their segments): each rendition's index.m3u8, ended, and its segments."""
    names = set()
    for rendition in sorted(p.parent.name for p in folder.glob("*/index.m3u8")):
        media = m3u8.load(str(folder / rendition / "index.m3u8"))
        assert media.is_endlist and media.playlist_type == "vod", rendition
        names |= {f"{rendition}/index.m3u8", *(f"{rendition}/{s.uri}" for s in media.segments)}
    assert "audio/index.m3u8" in names
    return names


# --- tests ---------------------------------------------------------------------------------------


def test_chunked_hls_and_mp4_match_a_single_pass(chunk_cluster, auth, source60, tmp_path):
    cluster, server = chunk_cluster
    # The MP4's AUDIO piece also normalizes the loudness, and the merge reports its figures.
    normalized = mp4_spec()
    normalized.audio.loudness.preset = "streaming"
    job = create_job(server, auth, f"file://{source60}", outputs=[hls_ladder(), normalized])
    stages = []
    final = None
    for event in server.job_stub().Watch(
        job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=120
    ):
        if event.WhichOneof("event") == "progress":
            stages.append(event.progress.stage)
        if event.HasField("completed"):
            final = event.completed.job
    assert final is not None and final.status == job_pb2.JOB_STATUS_COMPLETED, final
    # Watch: TRANSCODING with progress, then MERGING, then the terminal status.
    assert job_pb2.JOB_STAGE_TRANSCODING in stages and job_pb2.JOB_STAGE_MERGING in stages
    assert stages.index(job_pb2.JOB_STAGE_MERGING) > stages.index(job_pb2.JOB_STAGE_TRANSCODING)
    kinds = [row["kind"] for row in tasks_of(cluster, job.id)]
    # HLS: a 2 s first chunk, then 12 s chunks (6); the MP4: five 12 s chunks.
    assert kinds.count("CHUNK") == 11 and kinds.count("AUDIO") == 2 and kinds.count("MERGE") == 2
    frame = Fraction(1, 30)

    # HLS: every variant against the same variant of a single pass.
    hls, mp4 = output_dir(cluster, final), cluster.storage_dir / final.id / final.outputs[1].id
    reference = single_pass(source60, hls_ladder(), tmp_path / "hls")
    stored = {p.relative_to(hls).as_posix() for p in hls.rglob("*") if p.is_file()}
    # The final master names the variants alone, the audio muxed into their segments; the
    # live playlists stay, ended, for players that started on the live master.
    assert stored == referenced_files(hls) | live_view(hls), "files named nowhere, or missing"
    assert {f.path for f in final.outputs[0].files} == stored
    master = m3u8.load(str(hls / "master.m3u8"))
    assert not master.media, "an audio rendition in the final master"
    assert [p.uri for p in master.playlists] == ["v0/muxed.m3u8", "v1/muxed.m3u8"]
    audio_alone = audio_span(hls / "audio" / "index.m3u8")
    for variant in master.playlists:
        assert variant.stream_info.codecs.endswith(",mp4a.40.2"), variant.stream_info.codecs
        assert variant.stream_info.average_bandwidth > 0
        name = variant.uri.split("/")[0]
        playlist = hls / variant.uri
        chunked = video_facts(playlist, frame)
        single = video_facts(reference / name / "index.m3u8", frame)
        assert chunked[0] == single[0] == 1800
        assert abs(chunked[1] - single[1]) <= frame
        # The live playlist's video-only segments hold the very same frames.
        assert video_facts(hls / name / "index.m3u8", frame) == chunked
        # Every audio packet of the audio piece, in order, muxed in: together at both ends,
        # decode times rising across every join.
        assert audio_span(playlist) == audio_alone
        audio_start, audio_end = audio_alone
        assert abs(audio_start - chunked[2]) <= frame and abs(audio_end - chunked[3]) <= frame
        audio_dts = [p[1] for p in packets(playlist, "a")]
        assert all(b > a for a, b in itertools.pairwise(audio_dts)), name
        assert len(audio_dts) == len(packets(hls / "audio" / "index.m3u8", "a"))
        for segment in m3u8.load(str(playlist)).segments:
            assert segment.uri.startswith("muxed_"), segment.uri
            media = hls / name / segment.uri
            video, audio = packets(media, "v"), packets(media, "a")
            # Each segment holds the audio of its own span, starting within a frame of its
            # first picture.
            assert audio and abs(audio[0][0] - video[0][0]) <= frame, (name, segment.uri)

    # MP4: one file, joined by stream copy, the audio muxed in.
    assert [f.path for f in final.outputs[1].files] == ["output.mp4"]
    assert [p.name for p in mp4.rglob("*") if p.is_file()] == ["output.mp4"]
    reference_mp4 = single_pass(source60, mp4_spec(), tmp_path / "mp4") / "output.mp4"
    chunked = video_facts(mp4 / "output.mp4", frame)
    single = video_facts(reference_mp4, frame)
    assert chunked[0] == single[0] == 1800
    assert abs(chunked[1] - single[1]) <= frame
    audio_start, audio_end = audio_span(mp4 / "output.mp4")
    assert abs(audio_start - chunked[2]) <= frame and abs(audio_end - chunked[3]) <= frame
    assert abs(final.outputs[1].loudness.output_integrated_lufs + 14) <= 1.0
    assert not final.outputs[0].HasField("loudness")


@pytest.mark.parametrize("kind", ["23.976", "vfr"])
def test_odd_frame_rates_keep_frames_and_sync(chunk_cluster, auth, media_root, kind, tmp_path):
    """23.976 fps is chunked exactly; variable frame rate runs in one pass, with a note."""
    cluster, server = chunk_cluster
    source = media_root / f"chunk_{kind}.mp4"
    if kind == "vfr":
        # 15 s at 30 fps then 15 s at 15 fps: frames unevenly spaced over the whole file.
        subprocess.run(
            [
                *[
                    "ffmpeg",
                    "-v",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=160x90:rate=30",
                ],
                *["-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "30", "-vf"],
                "select='lt(t,15)+not(mod(n,2))'",
                *["-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
                str(source),
            ],
            check=True,
        )
        frame = Fraction(1, 30)
    else:
        subprocess.run(
            [
                *[
                    "ffmpeg",
                    "-v",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=160x90:rate=24000/1001",
                ],
                *["-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "30", "-c:v", "libx264"],
                *["-preset", "ultrafast", "-c:a", "aac"],
                str(source),
            ],
            check=True,
        )
        frame = Fraction(1001, 24000)
    job = create_job(server, auth, f"file://{source}", outputs=[mp4_spec()])
    final = run_to_end(server, auth, job.id, timeout=120)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    kinds = [row["kind"] for row in tasks_of(cluster, job.id)]
    output = output_dir(cluster, final) / "output.mp4"
    video = packets(output, "v")
    reference = single_pass(source, mp4_spec(), tmp_path) / "output.mp4"
    assert len(video) == len(packets(reference, "v"))
    start, end = audio_span(output)
    video_end = max(p[0] + p[2] for p in video)
    # The VFR source's last frame lasts 1/15 s; the one-pass MP4 ends on the 1/30 s grid.
    slack = 2 * frame if kind == "vfr" else frame
    assert abs(start - min(p[0] for p in video)) <= frame and abs(end - video_end) <= slack
    if kind == "vfr":
        assert kinds == ["PROBE", "TRANSCODE"]
        assert any("one pass" in note for note in final.outputs[0].notes)
    else:
        assert kinds.count("CHUNK") == 3, kinds  # 12 + 12 + 6 s
        video_facts(output, frame)


@pytest.mark.parametrize("segment_format", ["mpegts", "fmp4"])
def test_playlists_are_playable_while_chunks_run(chunk_cluster, auth, slow_source, segment_format):
    """MPEG-TS or fMP4 segments: an fMP4 playlist names the first chunk's init segment, which
    is stored by then."""
    _, server = chunk_cluster
    stub = server.job_stub()
    spec = slow_ladder()
    if segment_format == "fmp4":
        spec.hls.segment_format = job_pb2.HLS_SEGMENT_FORMAT_FMP4
    job = create_job(server, auth, f"file://{slow_source}", outputs=[spec])
    live = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
        # What a player's page would do: Get until the output lists a master playlist.
        assert current.status in (
            job_pb2.JOB_STATUS_PENDING,
            job_pb2.JOB_STATUS_PROBING,
            job_pb2.JOB_STATUS_PROCESSING,
        ), current
        if "master.m3u8" in {f.path for f in current.outputs[0].files}:
            live = current
            break
        time.sleep(0.05)
    assert live is not None, "no master playlist was published while the job ran"
    files = {f.path: f for f in live.outputs[0].files}
    # A player opens the playback URL and follows relative entries from there.
    base = live.outputs[0].playback_base_url
    assert live.outputs[0].playback_url == base + "master.m3u8"
    answer = plain_http.get(live.outputs[0].playback_url)
    # The playlists grow while the job runs: a CDN must revalidate them every time.
    assert answer.headers["cache-control"] == "no-cache"
    master = m3u8.loads(answer.text)
    assert live.status == job_pb2.JOB_STATUS_PROCESSING
    assert len(master.playlists) == 1
    for uri in [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]:
        media = m3u8.loads(plain_http.get(base + uri).text)
        assert not media.is_endlist and media.playlist_type == "event"
        rendition = uri.rsplit("/", 1)[0]
        listed = [f"{rendition}/{segment.uri}" for segment in media.segments]
        # The playlist may have grown since `live` was read (another chunk published): what
        # it lists must be among the output's files as a Get made after reading it shows.
        now = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
        files = {f.path: f for f in now.outputs[0].files}
        assert listed and all(path in files for path in listed), (listed, sorted(files))
        first = plain_http.get(base + listed[0])
        assert first.status_code == 200 and len(first.content) == files[listed[0]].size_bytes
        if segment_format == "fmp4":
            assert len(media.segment_map) == 1, uri
            init = f"{rendition}/{media.segment_map[0].uri}"
            fetched = plain_http.get(base + init)
            assert fetched.status_code == 200 and len(fetched.content) == files[init].size_bytes
        else:
            assert not media.segment_map
    # ... all of it before the job completed.
    still = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    assert still.status == job_pb2.JOB_STATUS_PROCESSING
    final = run_to_end(server, auth, job.id, timeout=120)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error


def test_the_short_first_chunk_is_live_before_the_later_chunks_finish(
    chunk_cluster, auth, source60
):
    """The first chunk (KILN_FIRST_CHUNK_SECONDS: 2 s, one segment) is published on its own:
    the second chunk's input is held, the chunks after it finish, and the live playlist lists
    the first chunk's segment alone (no gap) until the held chunk is released."""
    cluster, server = chunk_cluster
    origin = Origin()
    # Held from 10 % (6 s) of the file on: the first chunk (0-2 s) reads before the hold, the
    # second (2-14 s) reads across it, the later ones start past it.
    held = hold_on(origin, source60.read_bytes())
    held.hold_at = 0.1
    try:
        spec = hls_ladder()
        del spec.video[0]
        # Without audio the master needs only the video's first segment.
        spec.audio.CopyFrom(job_pb2.AudioSpec(disabled=True))
        job = create_job(server, auth, held.url, outputs=[spec])

        def later_chunks_done() -> bool:
            rows = [r for r in tasks_of(cluster, job.id) if r["kind"] == "CHUNK"]
            return len(rows) == 6 and all(
                r["status"] == "DONE" for r in rows if r["chunk_index"] != 1
            )

        wait_until(later_chunks_done, timeout=90)
        rows = {r["chunk_index"]: r for r in tasks_of(cluster, job.id) if r["kind"] == "CHUNK"}
        assert rows[1]["status"] == "LEASED"
        live = server.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
        base = live.outputs[0].playback_base_url
        master = m3u8.loads(plain_http.get(base + "master.m3u8").text)
        assert [p.uri for p in master.playlists] == ["v0/index.m3u8"]
        media = m3u8.loads(plain_http.get(base + "v0/index.m3u8").text)
        assert media.playlist_type == "event" and not media.is_endlist
        # The first chunk's one 2 s segment, and none of the later chunks' (a gap would stall).
        assert [(s.uri, s.duration) for s in media.segments] == [("seg_00000.ts", 2.0)]
        first = plain_http.get(base + "v0/seg_00000.ts")
        assert first.status_code == 200 and packets_in(first.content) == 60
        held.release()
        final = run_to_end(server, auth, job.id, timeout=120)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        folder = output_dir(cluster, final)
        ended = m3u8.load(str(folder / "v0" / "index.m3u8"))
        # 2 s, then 2 s segments on the grid from there: 30 segments, 60 s, every frame.
        assert len(ended.segments) == 30 and ended.segments[0].duration == 2.0
        assert video_facts(folder / "v0" / "index.m3u8", Fraction(1, 30))[0] == 1800
    finally:
        held.release()
        origin.close()


def test_the_audio_is_live_while_it_encodes(chunk_cluster, auth, source60):
    """The AUDIO piece stores and reports its segments as it makes them: with its input held
    halfway, the live master names the audio rendition, whose EVENT playlist lists the
    segments made so far (each stored), while the AUDIO task is still running."""
    cluster, server = chunk_cluster
    origin = Origin()
    held = hold_on(origin, source60.read_bytes())  # held from 30 s of the 60 on
    try:
        spec = hls_ladder()
        del spec.video[0]
        job = create_job(server, auth, held.url, outputs=[spec])
        stub = server.job_stub()

        def master_listed() -> bool:
            current = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
            return "master.m3u8" in {f.path for f in current.outputs[0].files}

        wait_until(master_listed, timeout=90)
        audio = [r for r in tasks_of(cluster, job.id) if r["kind"] == "AUDIO"]
        assert [r["status"] for r in audio] == ["LEASED"]  # it cannot end before the release
        live = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
        base = live.outputs[0].playback_base_url
        master = m3u8.loads(plain_http.get(base + "master.m3u8").text)
        assert [m.uri for m in master.media] == ["audio/index.m3u8"]
        media = m3u8.loads(plain_http.get(base + "audio/index.m3u8").text)
        assert media.playlist_type == "event" and not media.is_endlist
        names = [s.uri for s in media.segments]
        assert names and names == [f"seg_{n:05d}.ts" for n in range(len(names))]
        # The list may have grown since `live` was read: a Get made after reading it lists
        # every segment it names.
        now = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
        sizes = {f.path: f.size_bytes for f in now.outputs[0].files}
        for name in names:
            answer = plain_http.get(base + "audio/" + name)
            assert answer.status_code == 200 and len(answer.content) == sizes[f"audio/{name}"]
        held.release()
        final = run_to_end(server, auth, job.id, timeout=120)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        ended = m3u8.load(str(output_dir(cluster, final) / "audio" / "index.m3u8"))
        # The live list was the start of the final one: the same segments, the same lengths.
        assert [(s.uri, s.duration) for s in ended.segments[: len(names)]] == [
            (s.uri, s.duration) for s in media.segments
        ]
    finally:
        held.release()
        origin.close()


@pytest.mark.slow
def test_hls_js_plays_chunked_ts_past_its_joins(chunk_cluster, auth, source60, tmp_path):
    """hls.js in headless Chromium plays a chunked TS ladder (video without B-frames in every
    chunk, the audio muxed into every variant by the merge, as one pass does) from its
    playback URL, across the join at 2 s (the end of the short first chunk), without an
    error or a warning."""
    require_browser("player")
    cluster, server = chunk_cluster
    job = create_job(server, auth, f"file://{source60}", outputs=[hls_ladder()])
    final = run_to_end(server, auth, job.id, timeout=120)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    folder = output_dir(cluster, final)
    for variant in ("v0", "v1"):
        # No B-frames: every frame's decode time is its presentation time.
        first = folder / variant / "muxed_00001.ts"
        timing = subprocess.run(
            [
                *("ffprobe", "-v", "error", "-select_streams", "v", "-show_entries"),
                *("packet=pts,dts", "-of", "csv=p=0", str(first)),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        pairs = [line.strip(",").split(",") for line in timing]
        assert pairs and all(pts == dts for pts, dts in pairs), variant
    case = {
        "name": "chunked-ts",
        "player": "hls",
        "url": final.outputs[0].playback_url,
        "bufferFirst": True,
    }
    with other_origin_site(tmp_path / "site") as site:
        report = play_cases(
            {
                "kiln": server.http_url,
                "playSeconds": 4.0,
                # A ceiling, not a wait: loaded shared cores start players slowly.
                "reachSeconds": 45,
                "probeTypes": [],
                "cases": [case],
            },
            tmp_path / "cases.json",
            site,
            timeout=180,
        )
    [entry] = report["results"]
    print(entry["starts"], entry["time"], entry["issues"])
    # Played past the join, audio and video starting together at 0, with nothing to say.
    assert entry["time"] >= 4.0, entry
    assert entry["starts"] == {"video/mp4": 0, "audio/mp4": 0}, entry["starts"]
    assert entry["issues"] == [], entry["issues"]
    # The muxed segments only: the final master names no audio rendition.
    fetched = {response["file"].rsplit("/", 1)[-1] for response in entry["responses"]}
    assert "muxed.m3u8" in fetched and not any(name.startswith("seg_") for name in fetched)


@pytest.mark.slow
def test_hls_js_started_mid_job_plays_through_the_merge(chunk_cluster, auth, media_root, tmp_path):
    """A player that started on the live master (video-only segments, the separate audio
    rendition) while chunks ran: the merge ends the live playlists over the same segments
    (hls.js 1.7 fails fatally on a live playlist whose segment at a media sequence number
    changes its URI) and names the muxed ones in new playlists, so it plays on through the
    end of the output; a player starting after the merge gets the muxed ones."""
    require_browser("player")
    _, server = chunk_cluster
    source = make_clip(media_root / "chunk16_160x90.mp4", seconds=16, size="160x90")
    origin = Origin()
    # Held from 40 % of the file on: the first chunk (0-2 s) and the audio's first segments
    # are made, the second chunk (2-14 s) and the rest of the audio wait for the release.
    held = hold_on(origin, source.read_bytes())
    held.hold_at = 0.4
    result: dict = {}
    try:
        spec = hls_ladder()
        del spec.video[0]
        job = create_job(server, auth, held.url, outputs=[spec])
        stub = server.job_stub()

        def live() -> job_pb2.Job | None:
            current = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
            return current if "master.m3u8" in {f.path for f in current.outputs[0].files} else None

        wait_until(lambda: live() is not None, timeout=90)
        playing = live()
        assert playing is not None and playing.status == job_pb2.JOB_STATUS_PROCESSING
        with (
            recording_relay(server.http_url) as (relay, seen),
            other_origin_site(tmp_path / "site") as site,
        ):
            url = playing.outputs[0].playback_url.replace(server.http_url, relay)
            case = {"name": "mid-job", "player": "hls", "url": url}
            config = {
                "kiln": relay,
                # The whole output, in real time: through the merge's switch to its end.
                "playSeconds": 15.9,
                "reachSeconds": 120,
                "cases": [case],
            }

            def play() -> None:
                result.update(play_cases(config, tmp_path / "cases.json", site, timeout=240))

            player = threading.Thread(target=play)
            player.start()
            # Released once the player has the live playlists and the first chunk's segment.
            wait_until(lambda: any(p.endswith("/v0/seg_00000.ts") for p in seen), timeout=120)
            still = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
            assert still.status == job_pb2.JOB_STATUS_PROCESSING
            held.release()
            final = run_to_end(server, auth, job.id, timeout=120)
            assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
            player.join(timeout=300)
            assert not player.is_alive()
    finally:
        held.release()
        origin.close()
    [entry] = result["results"]
    print(entry["time"], entry["ended"], entry["issues"], [p.rsplit("/", 1)[-1] for p in seen])
    assert entry["ended"] or entry["time"] >= 15.9, entry
    assert not [issue for issue in entry["issues"] if "fatal" in issue["kind"]], entry["issues"]
    # On the live segments from start to end: the last one is the last chunk's.
    names = [path.rsplit("/", 1)[-1] for path in seen]
    assert "seg_00007.ts" in names and not any(n.startswith("muxed") for n in names), names


def packets_in(segment: bytes) -> int:
    """Video frames in an MPEG-TS segment, counted by ffprobe."""
    answer = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", "v", "-count_packets"),
            *("-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", "-"),
        ],
        input=segment,
        capture_output=True,
        check=True,
    )
    # A TS stream is listed under its program and on its own: the same count twice.
    return int(answer.stdout.split()[0])


def test_cancel_stops_every_chunk(chunk_cluster, auth, slow_source):
    cluster, server = chunk_cluster
    stub = server.job_stub()
    job = create_job(server, auth, f"file://{slow_source}", outputs=[slow_ladder()])
    # Both slots of the worker run a chunk.
    wait_until(lambda: len(_chunk_ffmpegs(cluster)) >= 2, timeout=30)
    stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
    took = wait_until(lambda: not _chunk_ffmpegs(cluster), timeout=2.0)
    assert took < 2.0
    final = run_to_end(server, auth, job.id, timeout=30)
    assert final.status == job_pb2.JOB_STATUS_CANCELED
    statuses = {row["status"] for row in tasks_of(cluster, job.id) if row["kind"] == "CHUNK"}
    assert statuses <= {"CANCELED", "DONE"}


@pytest.mark.slow
def test_killed_worker_reruns_only_its_chunk(chunk_cluster, auth, slow_source):
    cluster, server = chunk_cluster
    # This test's own worker: killed while it runs a chunk.
    doomed = cluster.start_worker(server, extra_env={"KILN_LOG_LEVEL": "INFO"})
    # Asking for tasks before the job exists, so it gets a chunk the module's worker can't.
    doomed_log = cluster.root / f"worker-{len(cluster.workers) - 1}.log"
    wait_until(lambda: "takes tasks from" in doomed_log.read_text(), timeout=30)
    job = create_job(server, auth, f"file://{slow_source}", outputs=[slow_ladder()])

    doomed_id = f"{socket.gethostname()}-{doomed.pid}/0"

    def doomed_worker_encoding_a_chunk() -> bool:
        # Which worker gets which piece is up to the scheduler: wait for the doomed one to
        # hold a chunk with its FFmpeg running. Pieces finished by then (often the audio or
        # another chunk) must keep their completion times.
        holds_chunk = any(
            r["kind"] == "CHUNK" and r["status"] == "LEASED" and r["worker_id"] == doomed_id
            for r in tasks_of(cluster, job.id)
        )
        return holds_chunk and bool(ffmpeg_children_of(doomed.pid))

    wait_until(doomed_worker_encoding_a_chunk, timeout=60)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    held = {r["id"] for r in tasks_of(cluster, job.id) if r["worker_id"] == doomed_id}
    before = {r["id"]: r["finished_at"] for r in tasks_of(cluster, job.id) if r["finished_at"]}
    final = run_to_end(server, auth, job.id, timeout=120)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    rows = tasks_of(cluster, job.id)
    # Finished chunks were kept: same completion time, one attempt each.
    for row in rows:
        if row["id"] in before:
            assert row["finished_at"] == before[row["id"]] and row["attempts"] == 1
    rerun = [r for r in rows if r["attempts"] > 1]
    assert len(rerun) == 1 and rerun[0]["kind"] == "CHUNK" and rerun[0]["id"] in held
    folder = output_dir(cluster, final)
    stored = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert stored == referenced_files(folder) | live_view(folder)


def _chunk_ffmpegs(cluster) -> list[int]:
    return ffmpeg_pids_writing_to(cluster.scratch_dir)


# --- fMP4: HLS, DASH and CMAF ---------------------------------------------------------------------

FMP4_KINDS = ("hls-fmp4", "dash", "cmaf")
# FMP4_CLIP's three chunks make two joins per output. The players start at 0 (through the 2 s
# join) and are sent to a second before the join of two whole chunks.
FIRST_JOIN = 14.0


def joined_file(target: Path, init: Path, segments: list[Path]) -> Path:
    """A rendition as one fragmented MP4 (init then segments), for ffprobe."""
    target.write_bytes(init.read_bytes() + b"".join(s.read_bytes() for s in segments))
    return target


def decode_timeline(init: Path, segments: list[Path]) -> tuple[Fraction, Fraction]:
    """(first shown, last decoded end) in seconds, asserting every segment starts where the one
    before it ends (across every join of chunks too)."""
    spans = [fragment_span(segment) for segment in segments]
    for (start, length), (following, _) in itertools.pairwise(spans):
        assert following == start + length, (init.parent.name, start, length, following)
    scale = fmp4_timescale(init)
    end = Fraction(spans[-1][0] + spans[-1][1], scale)
    return Fraction(fmp4_first_presentation(init, segments[0])), end


@pytest.fixture(scope="module")
def fmp4_job(chunk_cluster, auth, source60):
    """One job, an fMP4 HLS, a DASH and a CMAF ladder of source60's first 26 s, each chunked."""
    _, server = chunk_cluster
    outputs = [fmp4_ladder(kind) for kind in FMP4_KINDS]
    job = create_job(server, auth, f"file://{source60}", outputs=outputs)
    final = run_to_end(server, auth, job.id, timeout=120)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, [o.error for o in final.outputs]
    return final


def test_chunked_fmp4_hls_dash_and_cmaf_match_a_single_pass(
    chunk_cluster, fmp4_job, source60, tmp_path
):
    cluster, _ = chunk_cluster
    kinds = [row["kind"] for row in tasks_of(cluster, fmp4_job.id)]
    assert kinds.count("CHUNK") == 9 and kinds.count("AUDIO") == 3, kinds
    assert kinds.count("MERGE") == 3, kinds
    assert not any("one pass" in note for o in fmp4_job.outputs for note in o.notes)
    frame = Fraction(1, 30)
    # Video only, as the one-pass fMP4 HLS encodes it: the same frames whatever the package.
    reference = single_pass(source60, fmp4_ladder("hls-fmp4"), tmp_path / "single")
    seconds = Fraction(FMP4_CLIP)
    for kind, output in zip(FMP4_KINDS, fmp4_job.outputs, strict=True):
        folder = cluster.storage_dir / fmp4_job.id / output.id
        stored = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        referenced: set[str] = set()
        views: list[Renditions] = []
        if kind in ("hls-fmp4", "cmaf"):
            names, found = hls_renditions(folder, seconds)
            referenced |= names
            views.append(found)
            master = (folder / "master.m3u8").read_text()
            assert 'CODECS="avc1.' in master and "AVERAGE-BANDWIDTH=" in master
        if kind in ("dash", "cmaf"):
            names, found = mpd_renditions(folder, seconds)
            referenced |= names
            views.append(found)
        # CMAF: the playlists and the MPD name the very same files.
        assert all(view == views[0] for view in views), kind
        assert stored == referenced, (kind, sorted(stored ^ referenced))
        assert {f.path for f in output.files} == stored, kind
        renditions = views[0]
        assert sorted(renditions) == ["audio", "v0", "v1"], kind
        audio_start, audio_end = decode_timeline(*renditions["audio"])
        for name in ("v0", "v1"):
            init, segments = renditions[name]
            joined = joined_file(tmp_path / f"{kind}-{name}.mp4", init, segments)
            chunked = video_facts(joined, frame)
            single = video_facts(reference / name / "index.m3u8", frame)
            assert chunked[0] == single[0] == FMP4_CLIP * 30, (kind, name)
            assert abs(chunked[1] - single[1]) <= frame, (kind, name)
            # The first picture at 0, as in a single pass; the audio with it at both ends.
            start, end = decode_timeline(init, segments)
            assert start == 0, (kind, name, start)
            assert abs(audio_start - start) <= frame and abs(audio_end - end) <= frame, kind


def test_every_stored_frame_is_reachable_through_the_mpd(
    chunk_cluster, fmp4_job, source60, tmp_path
):
    """ffprobe on the playback URL of a chunked DASH and CMAF output (the MPD; each segment
    fetched from kiln at the URL its SegmentTimeline gives) decodes every frame each video
    rendition stores, as many as through a single pass's MPD, and every stored audio packet."""
    cluster, _ = chunk_cluster
    # The single pass's own MPD and segments (video only, as single_pass encodes them).
    reference = single_pass(source60, fmp4_ladder("dash"), tmp_path / "single") / "manifest.mpd"
    seconds = Fraction(FMP4_CLIP)
    checked = 0
    for kind, output in zip(FMP4_KINDS, fmp4_job.outputs, strict=True):
        if kind == "hls-fmp4":
            continue
        url = output.playback_base_url + "manifest.mpd"
        _, renditions = mpd_renditions(cluster.storage_dir / fmp4_job.id / output.id, seconds)
        for index, name in enumerate(("v0", "v1")):
            joined = joined_file(tmp_path / f"{kind}-{name}.mp4", *renditions[name])
            _, stored = frames_read(joined, "v:0")
            assert frames_read(url, f"v:{index}") == (name, stored), (kind, name)
            assert frames_read(reference, f"v:{index}") == (str(index), stored), (kind, name)
            assert stored == FMP4_CLIP * 30, (kind, name)
            checked += 1
        audio = joined_file(tmp_path / f"{kind}-audio.mp4", *renditions["audio"])
        through = len(packets(url, "a"))
        # AAC: 1024 samples a packet, at 48 kHz; the audio covers the clip.
        assert through == len(packets(audio, "a")) and through * 1024 >= FMP4_CLIP * 48000, kind
    assert checked == 4


def test_chunked_fmp4_outputs_play_past_a_join(chunk_cluster, fmp4_job, tmp_path):
    """hls.js and dash.js play each output from its start, then from a second before the first
    join of chunks to a second after it, without an error or a warning."""
    require_browser("chunked fMP4 player")
    _, server = chunk_cluster
    cases = []
    for kind, output in zip(FMP4_KINDS, fmp4_job.outputs, strict=True):
        players = {"hls-fmp4": ("hls",), "dash": ("dash",), "cmaf": ("hls", "dash")}[kind]
        for player in players:
            entry = "manifest.mpd" if player == "dash" else "master.m3u8"
            cases.append(
                {
                    "name": f"{kind}/{player}",
                    "player": player,
                    "url": output.playback_base_url + entry,
                    "seekTo": FIRST_JOIN - 1,
                }
            )
    with other_origin_site(tmp_path / "site") as site:
        report = play_cases(
            {"kiln": server.http_url, "playSeconds": 2.0, "cases": cases},
            tmp_path / "cases.json",
            site,
        )
    results = {entry["name"]: entry for entry in report["results"]}
    assert list(results) == [case["name"] for case in cases]
    assert {name: entry["issues"] for name, entry in results.items() if entry["issues"]} == {}
    for name, entry in results.items():
        assert entry["seekedTo"] == FIRST_JOIN - 1, (name, entry)
        assert entry["time"] >= FIRST_JOIN + 1.0, (name, entry)
        assert set(entry["starts"]) == {"video/mp4", "audio/mp4"}, (name, entry)
        assert all(abs(start) < 1 / 30 for start in entry["starts"].values()), (name, entry)


# --- text tracks on chunked outputs ---------------------------------------------------------------

# Around the 12 s join of the chunks, and in the second chunk; the clipped output (3-23 s,
# its chunks joined at 15 s of the source) cuts the first French cue at its start.
ENGLISH_SRT = """1
00:00:01,000 --> 00:00:02,500
Before the join

2
00:00:11,400 --> 00:00:12,600
Across the join
"""
FRENCH_VTT = """WEBVTT

00:00:02.000 --> 00:00:04.000
Au début

00:00:11.800 --> 00:00:13.200
À la jointure

00:00:14.600 --> 00:00:15.400
À la jointure du clip

00:00:20.000 --> 00:00:21.000
Dans le second morceau
"""
TEXT_FRAME = 1 / 15
TITLED_CUES = {
    "en": [(1.0, 2.5), (11.4, 12.6)],
    "fr": [(2.0, 4.0), (11.8, 13.2), (14.6, 15.4), (20.0, 21.0)],
}


@pytest.fixture(scope="module")
def titled_source(media_root) -> Path:
    """26 s of 160x90 at 15 fps with an English mov_text track (two 12 s chunks), and a French
    WebVTT sidecar."""
    folder = media_root / "chunked_text"
    folder.mkdir(exist_ok=True)
    (folder / "en.srt").write_text(ENGLISH_SRT)
    (folder / "fr.vtt").write_text(FRENCH_VTT)
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15:duration=26"),
            *("-f", "lavfi", "-i", "sine=sample_rate=48000:duration=26"),
            *("-i", str(folder / "en.srt"), "-map", "0:v", "-map", "1:a", "-map", "2:s"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-c:s", "mov_text"),
            *("-metadata:s:s:0", "language=eng", str(folder / "titled.mp4")),
        ],
        check=True,
    )
    return folder


def titled(spec: job_pb2.OutputSpec, folder: Path) -> job_pb2.OutputSpec:
    del spec.video[1:]
    spec.text_tracks.extend(
        [
            job_pb2.TextTrack(stream_language="eng", language="en", default=True),
            job_pb2.TextTrack(url=f"file://{folder / 'fr.vtt'}", language="fr"),
        ]
    )
    return spec


def assert_cues(found: list[tuple[float, float]], expected: list[tuple[float, float]], what):
    assert len(found) == len(expected), (what, found)
    for (start, end), (want_start, want_end) in zip(found, expected, strict=True):
        assert abs(start - want_start) <= TEXT_FRAME and abs(end - want_end) <= TEXT_FRAME, (
            what,
            found,
        )


def mp4_cues(target: Path, position: int, tmp_path: Path) -> list[tuple[float, float]]:
    """The cue times of the MP4's subtitle track `position`, on the file's own timeline."""
    extracted = tmp_path / f"{target.parent.name}-{position}.vtt"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-y", "-copyts", "-i", str(target)),
            *("-map", f"0:s:{position}", str(extracted)),
        ],
        check=True,
    )
    return cue_times(extracted.read_text())


def test_chunked_outputs_keep_their_cue_times(chunk_cluster, auth, titled_source, tmp_path):
    """An HLS TS ladder and an MP4 clipped to 3-23 s, each chunked, with an embedded and a
    sidecar text track: the merge adds the tracks to the joined output, every cue within a
    frame of the source's (HLS: in segments cut like the video's and mapped to its first
    timestamp; MP4: in its mov_text tracks, beside its audio, and in its .vtt sidecars)."""
    cluster, server = chunk_cluster
    hls_spec = titled(hls_ladder(), titled_source)
    hls_spec.video[0].resolution = "160x90"
    clipped = titled(mp4_spec(), titled_source)
    clipped.clip.start_seconds, clipped.clip.duration_seconds = 3.0, 20.0
    # Audio only where the merge muxes it beside the text (the MP4): one piece fewer.
    hls_spec.audio.CopyFrom(job_pb2.AudioSpec(disabled=True))
    job = create_job(
        server,
        auth,
        f"file://{titled_source / 'titled.mp4'}",
        outputs=[hls_spec, clipped],
    )
    final = run_to_end(server, auth, job.id, timeout=120)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, [o.error for o in final.outputs]
    kinds = [row["kind"] for row in tasks_of(cluster, job.id)]
    # HLS: its 2 s first chunk (the English cue at 1-2.5 s crosses its join), then 12 s
    # chunks from 2 s on (3); the MP4: two.
    assert kinds.count("CHUNK") == 5 and kinds.count("MERGE") == 2, kinds
    assert kinds.count("AUDIO") == 1, kinds
    assert not any("one pass" in note for o in final.outputs for note in o.notes)

    # HLS: a subtitle rendition per track, every file named by a playlist and listed.
    hls = output_dir(cluster, final)
    stored = {p.relative_to(hls).as_posix() for p in hls.rglob("*") if p.is_file()}
    assert stored == referenced_files(hls)
    assert {f.path for f in final.outputs[0].files} == stored
    master = m3u8.load(str(hls / "master.m3u8"))
    subtitles = [m for m in master.media if m.type == "SUBTITLES"]
    assert [(m.language, m.default) for m in subtitles] == [("en", "YES"), ("fr", "NO")]
    assert 'SUBTITLES="subs"' in (hls / "master.m3u8").read_text()
    video = m3u8.load(str(hls / "v0" / "index.m3u8"))
    start = float(packets(hls / "v0" / video.segments[0].uri, "v")[0][0])
    assert 11 < start < 12  # the chunks' 10 s lead plus the MPEG-TS muxer's delay
    for rendition, language in zip(subtitles, ("en", "fr"), strict=True):
        playlist = m3u8.load(str(hls / rendition.uri))
        # Cut like the video: as many segments, as long.
        assert [s.duration for s in playlist.segments] == pytest.approx(
            [s.duration for s in video.segments], abs=1e-3
        )
        found: list[tuple[float, float]] = []
        for segment in playlist.segments:
            text = (hls / rendition.uri).parent.joinpath(segment.uri).read_text()
            assert f"X-TIMESTAMP-MAP=MPEGTS:{round(start * 90000)},LOCAL:00:00:00.000" in text
            # A cue across a segment boundary is in both segments; players drop the repeat.
            found += [cue for cue in cue_times(text) if cue not in found]
        assert_cues(found, TITLED_CUES[language], ("hls", language))

    # The MP4: mov_text tracks and sidecars, the cues 3 s earlier and cut at the clip's start.
    expected = {
        language: [(max(0.0, a - 3.0), b - 3.0) for a, b in cues if b > 3.0]
        for language, cues in TITLED_CUES.items()
    }
    for output in final.outputs[1:]:
        folder = cluster.storage_dir / final.id / output.id
        assert {f.path for f in output.files} == {"output.mp4", "text_0_en.vtt", "text_1_fr.vtt"}
        target = folder / "output.mp4"
        video_start = min(p[0] for p in packets(target, "v"))
        assert abs(video_start) <= Fraction(1, 1000)  # the cues' 0 is the first picture
        languages = subprocess.run(
            [
                *("ffprobe", "-v", "error", "-select_streams", "s", "-show_entries"),
                *("stream=codec_name:stream_tags=language", "-of", "csv=p=0", str(target)),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert languages == ["mov_text,eng", "mov_text,fra"]
        for position, language in enumerate(("en", "fr")):
            assert_cues(mp4_cues(target, position, tmp_path), expected[language], language)
            sidecar = (folder / f"text_{position}_{language}.vtt").read_text()
            assert_cues(cue_times(sidecar), expected[language], (language, "sidecar"))
