"""Subtitles and captions through a running server: a 4 s clip with an embedded SubRip track plus
a French WebVTT and a Spanish SubRip sidecar, made into HLS fMP4 and TS ladders, CMAF (HLS and
DASH over one set of segments) and MP4s (one clipped), checked from what the server serves
(playlists, segments, ffprobe); bad text tracks refused at Create, after probing, or by the
worker, each with its own code and nothing else affected. One cluster for the module. The
players' view of text tracks (hls.js on both HLS ladders, dash.js) is
tests/e2e/test_tracks_in_players.py."""

from __future__ import annotations

import re
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.http_origins import Origin, send
from tests.support.cues import cue_times
from tests.support.fmp4_boxes import fmp4_first_presentation
from tests.support.processes import wait_until
from tests.support.violations import violations_from_connect

from .cluster import Cluster
from .connect_json import ConnectJsonClient
from .jobs import run_to_end

H264 = job_pb2.VIDEO_CODEC_H264
FRAME = 1 / 15
ENGLISH_SRT = """1
00:00:00,400 --> 00:00:01,800
English first line

2
00:00:02,500 --> 00:00:03,600
English at three seconds
"""
FRENCH_VTT = """WEBVTT

intro
00:00:00.200 --> 00:00:01.500
Bonjour &amp; bienvenue

00:02.600 --> 00:03.800 align:start
<v Narrateur>Trois secondes</v>
"""
SPANISH_SRT = """1
00:00:01,000 --> 00:00:02,000
<script>alert("x")</script> & <b>negrita</b>

2
00:00:02,700 --> 00:00:03,900
Tres segundos
"""


@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


# The Spanish sidecar comes from this host over http, through the worker's egress proxy;
# 127.0.0.1 plays an internal service no sidecar may reach.
ALLOWED = "127.0.0.2"


@pytest.fixture(scope="module")
def cluster(backend_url, tmp_path_factory, media_root):
    cluster = Cluster(
        backend_url,
        tmp_path_factory.mktemp("cluster"),
        media_root,
        settings={"KILN_INPUT_ALLOW_HOSTS": ALLOWED},
    )
    try:
        cluster.start_worker(cluster.start_server(), concurrency=2)
        yield cluster
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def serving(host: str, path: str, body: bytes) -> Origin:
    origin = Origin(host)
    origin.routes[path] = lambda handler, _: send(handler, 200, body, "text/plain")
    return origin


@pytest.fixture(scope="module")
def subtitle_host():
    origin = serving(ALLOWED, "/es.srt", SPANISH_SRT.encode())
    yield origin
    origin.close()


@pytest.fixture
def internal():
    """A service behind the trust boundary that would answer: a leak would succeed."""
    origin = serving("127.0.0.1", "/fr.vtt", FRENCH_VTT.encode())
    yield origin
    origin.close()


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def subtitles(media_root) -> Path:
    """The clip and its sidecars, in a folder of the input root."""
    folder = media_root / "subtitles"
    folder.mkdir(exist_ok=True)
    (folder / "en.srt").write_text(ENGLISH_SRT)
    (folder / "fr.vtt").write_text(FRENCH_VTT)
    (folder / "es.srt").write_text(SPANISH_SRT)
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15:duration=4"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4"),
        *("-i", str(folder / "en.srt")),
        *("-map", "0:v", "-map", "1:a", "-map", "2:s", "-metadata:s:s:0", "language=eng"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"),
        *("-c:s", "srt", str(folder / "titled.mkv")),
    )
    return folder


def tracks(folder: Path, spanish_url: str) -> list[job_pb2.TextTrack]:
    return [
        job_pb2.TextTrack(stream_language="eng", language="en", default=True),
        job_pb2.TextTrack(url=f"file://{folder / 'fr.vtt'}", language="fr", name="Français"),
        job_pb2.TextTrack(
            url=spanish_url,
            language="es-419",
            kind=job_pb2.TEXT_TRACK_KIND_CAPTIONS,
        ),
    ]


def ladder(output_type, text_tracks: list[job_pb2.TextTrack], **fields) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution=size, quality=job_pb2.QUALITY_ECONOMY)
            for size in ("160x90", "128x72")
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
        text_tracks=text_tracks,
        **fields,
    )


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def probe(url: str, entries: str, *select: str) -> list[list[str]]:
    argv = ["ffprobe", "-v", "error", *select, "-show_entries", entries, "-of", "csv=p=0", url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split(",") for line in out.split()]


def attributes(line: str) -> dict[str, str]:
    found = re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', line.partition(":")[2])
    return {name: value.strip('"') for name, value in found}


@pytest.fixture(scope="module")
def titled_job(server, auth, subtitles, subtitle_host) -> job_pb2.Job:
    """One job: HLS fMP4, HLS TS, CMAF, an MP4, an MP4 clipped to 1.0-3.5 s, and an MP4 with
    the English track burned in."""
    text_tracks = tracks(subtitles, subtitle_host.url("/es.srt"))
    clipped = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
        clip=job_pb2.ClipSpec(start_seconds=1.0, duration_seconds=2.5),
        text_tracks=text_tracks,
    )
    mp4 = job_pb2.OutputSpec()
    mp4.CopyFrom(clipped)
    mp4.ClearField("clip")
    fmp4 = job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{subtitles / 'titled.mkv'}",
        outputs=[
            ladder(job_pb2.OUTPUT_TYPE_HLS, text_tracks, hls=fmp4),
            ladder(job_pb2.OUTPUT_TYPE_HLS, text_tracks),
            ladder(job_pb2.OUTPUT_TYPE_CMAF, text_tracks),
            mp4,
            clipped,
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=H264, resolution="320x180")],
                text_tracks=[
                    job_pb2.TextTrack(stream_language="eng", language="en", burn_in=True),
                    text_tracks[1],
                ],
            ),
        ],
    )
    started = time.monotonic()
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    print(f"titled job: {time.monotonic() - started:.1f} s")
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, (job.error, [o.error for o in job.outputs])
    return job


def first_video_timestamp(base_url: str, playlist: str, folder: str, scratch: Path) -> float:
    """Where the video's first picture shows on the media's clock as players read it, from the
    first segment of `playlist`: ffprobe's start time for MPEG-TS, the boxes for fMP4 (which
    ffprobe reads a B-frame reordering delay late: docs/playback.md)."""
    text = fetch(base_url + playlist)
    first = next(line for line in text.splitlines() if not line.startswith("#"))
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    segment = base_url + folder + first
    if init:
        head, body = scratch / "init.mp4", scratch / "segment.m4s"
        for url, path in ((base_url + folder + init.group(1), head), (segment, body)):
            with urllib.request.urlopen(url) as answer:
                path.write_bytes(answer.read())
        return fmp4_first_presentation(head, body)
    # MPEG-TS lists its video stream twice (in its program too).
    starts = {row[0] for row in probe(segment, "stream=start_time", "-select_streams", "v")}
    assert len(starts) == 1, (playlist, starts)
    return float(starts.pop())


def test_hls_ladders_carry_subtitle_renditions_aligned_to_the_video(titled_job, tmp_path):
    for output, playlist in zip(
        titled_job.outputs[:3], ("v0/index.m3u8", "v0/index.m3u8", "media_0.m3u8"), strict=True
    ):
        master = fetch(output.playback_url)
        media = [attributes(line) for line in master.splitlines() if "TYPE=SUBTITLES" in line]
        assert [(m["LANGUAGE"], m["NAME"], m["DEFAULT"]) for m in media] == [
            ("en", "English", "YES"),
            ("fr", "Français", "NO"),
            ("es-419", "Spanish (CC)", "NO"),
        ]
        assert "public.accessibility.transcribes-spoken-dialog" in media[2]["CHARACTERISTICS"]
        variants = [attributes(line) for line in master.splitlines() if "STREAM-INF" in line]
        assert len(variants) == 2 and all(v["SUBTITLES"] == "subs" for v in variants)

        # The video's own first timestamp, measured here, is what the map ties LOCAL 0 to.
        folder = playlist.rpartition("/")[0] + "/" if "/" in playlist else ""
        start = first_video_timestamp(output.playback_base_url, playlist, folder, tmp_path)
        french = fetch(output.playback_base_url + media[1]["URI"])
        names = [line for line in french.splitlines() if line.endswith(".vtt")]
        assert len(names) == 4  # the video's four 1 s segments
        third = fetch(output.playback_base_url + "text_1/" + names[3])
        mpegts = re.search(r"X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:00:00:00.000", third)
        assert mpegts is not None, third
        assert abs(int(mpegts.group(1)) - start * 90000) <= 1, (start, third)
        assert "00:00:02.600 --> 00:00:03.800\nTrois secondes" in third
        # Tags in a SubRip cue stay text: escaped, never markup a player interprets.
        spanish = fetch(output.playback_base_url + "text_2/" + names[1])
        assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; <b>negrita</b>' in spanish


def test_mp4_carries_mov_text_tracks_and_vtt_sidecars(titled_job):
    mp4 = titled_job.outputs[3]
    streams = probe(
        mp4.playback_url, "stream=codec_name:stream_tags=language", "-select_streams", "s"
    )
    assert streams == [["mov_text", "eng"], ["mov_text", "fra"], ["mov_text", "spa"]]
    assert {f.path for f in mp4.files} >= {"text_1_fr.vtt", "text_2_es-419.vtt", "text_0_en.vtt"}
    sidecar = fetch(mp4.playback_base_url + "text_1_fr.vtt")
    assert "Bonjour &amp; bienvenue" in sidecar and cue_times(sidecar) == [(0.2, 1.5), (2.6, 3.8)]
    # mov_text has no markup: the tags of the Spanish cue are stored as the characters a
    # player draws, and <b> (kept as markup) became a style record ("styl"), not text.
    samples = subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-i", mp4.playback_url, "-map", "0:s:2"),
            *("-c", "copy", "-f", "data", "-"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert b'<script>alert("x")</script> & negrita' in samples and b"styl" in samples
    assert b"&lt;" not in samples and b"<b>" not in samples


def test_a_clipped_output_shifts_and_cuts_its_cues(titled_job, tmp_path):
    """Clipped to 1.0-3.5 s: each cue moves 1 s earlier and is cut at both ends (±1 frame),
    in the sidecar and in the MP4's own track."""
    clipped = titled_job.outputs[4]
    expected = {
        "text_0_en.vtt": [(0.0, 0.8), (1.5, 2.5)],
        "text_1_fr.vtt": [(0.0, 0.5), (1.6, 2.5)],
        "text_2_es-419.vtt": [(0.0, 1.0), (1.7, 2.5)],
    }
    for position, (name, cues) in enumerate(expected.items()):
        inside = tmp_path / f"{position}.vtt"
        # -copyts: the track's own times, on the file's timeline (the video starts at 0).
        ffmpeg("-copyts", "-i", clipped.playback_url, "-map", f"0:s:{position}", str(inside))
        for text in (fetch(clipped.playback_base_url + name), inside.read_text()):
            found = cue_times(text)
            assert len(found) == len(cues), (name, text)
            for (start, end), (want_start, want_end) in zip(found, cues, strict=True):
                assert abs(start - want_start) <= FRAME and abs(end - want_end) <= FRAME, text


def luma(source: str, at: float, *decode: str) -> bytes:
    """The 320x180 grey picture shown at `at` seconds."""
    argv = ["ffmpeg", "-v", "error", "-ss", f"{at}", "-i", source, *decode, "-frames:v", "1"]
    argv += ["-vf", "scale=320:180", "-pix_fmt", "gray", "-f", "rawvideo", "-"]
    return subprocess.run(argv, capture_output=True, check=True).stdout


def test_a_burned_in_track_is_in_the_picture_and_not_a_track(titled_job, subtitles):
    """The burned English cue shows in the bottom of the picture while it is on (3.0 s), not
    before it starts (2.2 s); the top of the picture is the source's either way. The French
    track is still a track; the English one is not."""
    burned = titled_job.outputs[5]
    streams = probe(
        burned.playback_url, "stream=codec_name:stream_tags=language", "-select_streams", "s"
    )
    assert streams == [["mov_text", "fra"]]
    assert {f.path for f in burned.files} == {"output.mp4", "text_1_fr.vtt", "qc.json"}

    def changed(at: float, rows: range) -> int:
        source = luma(str(subtitles / "titled.mkv"), at, "-sn")
        output = luma(burned.playback_url, at)
        width = 320
        return sum(
            abs(source[row * width + column] - output[row * width + column]) > 80
            for row in rows
            for column in range(width)
        )

    top, bottom = range(0, 120), range(135, 180)
    assert changed(3.0, bottom) > 150 and changed(3.0, top) < 40
    assert changed(2.2, bottom) < 40


def test_the_cmaf_mpd_lists_sidecars_timed_like_the_pictures(titled_job, tmp_path):
    """The CMAF output's MPD lists a text/vtt set per track; the sidecar's cues are period
    times, so they are shifted by the time the first picture shows at: 0, as the players read
    its negative composition offsets (ffprobe would say a reordering delay later)."""
    cmaf = titled_job.outputs[2]
    mpd = fetch(cmaf.playback_base_url + "manifest.mpd")
    sets = re.findall(r'<AdaptationSet[^>]*mimeType="text/vtt"[^>]*lang="([^"]+)"', mpd)
    assert sets == ["en", "fr", "es-419"]
    delay = first_video_timestamp(cmaf.playback_base_url, "media_0.m3u8", "", tmp_path)
    assert delay == 0
    french = cue_times(fetch(cmaf.playback_base_url + "text_1_fr.vtt"))
    for (start, end), (want_start, want_end) in zip(french, [(0.2, 1.5), (2.6, 3.8)], strict=True):
        assert abs(start - want_start - delay) < 0.002 and abs(end - want_end - delay) < 0.002


# Bad text tracks.


def job_ids(client: ConnectJsonClient) -> list[str]:
    status, body = client.call("List", {"page_size": 100})
    assert status == 200, body
    return [job["id"] for job in body.get("jobs", [])]


def _mp4(text_tracks: list[dict], kind: str = "OUTPUT_TYPE_MP4") -> dict:
    video = [{"codec": "h264", "resolution": "160x90"}] if kind != "OUTPUT_TYPE_M4A" else []
    return {"type": kind, "video": video, "text_tracks": text_tracks}


SIDECAR = {"url": "file://{root}/subtitles/fr.vtt", "language": "fr"}


@pytest.mark.parametrize(
    ("output", "field", "fragment"),
    [
        (_mp4([SIDECAR] * 17), "outputs[0].text_tracks", "at most 16 text tracks"),
        (
            _mp4([{**SIDECAR, "language": "xx-YY"}]),
            "outputs[0].text_tracks[0].language",
            "'xx-YY' is not a known language",
        ),
        (
            _mp4([{**SIDECAR, "url": "http://169.254.169.254/latest/subs.vtt"}]),
            "outputs[0].text_tracks[0].url",
            "169.254.169.254",
        ),
        (
            _mp4([{**SIDECAR, "url": "http://10.1.2.3/subs/fr.vtt"}]),
            "outputs[0].text_tracks[0].url",
            "10.1.2.3",
        ),
        (
            _mp4([{**SIDECAR, "url": "file:///etc/subs.srt"}]),
            "outputs[0].text_tracks[0].url",
            "outside",
        ),
        (
            _mp4([{**SIDECAR, "url": "file://{root}/subtitles/fr.txt"}]),
            "outputs[0].text_tracks[0].format",
            "set the format",
        ),
        (
            _mp4([{**SIDECAR, "stream_index": 2}]),
            "outputs[0].text_tracks[0]",
            "exactly one of",
        ),
        (
            _mp4([{**SIDECAR, "forced": True, "kind": "captions"}]),
            "outputs[0].text_tracks[0].forced",
            "SUBTITLES",
        ),
        (
            _mp4([{**SIDECAR, "default": True}, {**SIDECAR, "name": "B", "default": True}]),
            "outputs[0].text_tracks",
            "at most one track may be the default",
        ),
        (_mp4([SIDECAR, SIDECAR]), "outputs[0].text_tracks[1].name", "give each its own"),
        (
            _mp4([{**SIDECAR, "burn_in": True}, {**SIDECAR, "name": "B", "burn_in": True}]),
            "outputs[0].text_tracks",
            "at most one track may be burned in",
        ),
        (
            _mp4([{**SIDECAR, "burn_in": True, "default": True}]),
            "outputs[0].text_tracks[0].default",
            "part of the picture",
        ),
        (_mp4([SIDECAR], "OUTPUT_TYPE_M4A"), "outputs[0].text_tracks", "not M4A"),
        ({"preset": "audio_aac", "text_tracks": [SIDECAR]}, "outputs[0].text_tracks", "not M4A"),
        (
            _mp4([{"origin_path": "subs/fr.vtt", "language": "fr"}]),
            "outputs[0].text_tracks[0].origin_path",
            "set input_origin_id",
        ),
    ],
)
def test_bad_text_tracks_are_refused_at_create(
    server, api_key, media_root, output, field, fragment
):
    client = ConnectJsonClient(server.http_url, api_key)
    before = job_ids(client)
    output = {
        **output,
        "text_tracks": [
            {k: v.format(root=media_root) if isinstance(v, str) else v for k, v in track.items()}
            for track in output["text_tracks"]
        ],
    }
    status, error = client.call(
        "Create", {"input_url": f"file://{media_root / 'clip2s.mp4'}", "outputs": [output]}
    )
    assert status == 400, error
    assert error["code"] == "invalid_argument"
    violations = violations_from_connect(error)
    assert fragment in violations.get(field, ""), violations
    assert job_ids(client) == before  # nothing written, and the server still answers


def test_a_stream_the_probe_did_not_find_rejects_the_job(server, auth, subtitles):
    for track, fragment in (
        (job_pb2.TextTrack(stream_index=7, language="en"), "no stream 7"),
        (job_pb2.TextTrack(stream_index=0, language="en"), "stream 0 is video"),
        (job_pb2.TextTrack(stream_language="de", language="de"), "in 'de'"),
    ):
        request = job_service_pb2.CreateRequest(
            input_url=f"file://{subtitles / 'titled.mkv'}",
            outputs=[
                job_pb2.OutputSpec(
                    type=job_pb2.OUTPUT_TYPE_MP4,
                    video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
                    text_tracks=[track],
                )
            ],
        )
        job = server.job_stub().Create(request, metadata=auth).job
        job = run_to_end(server, auth, job.id)
        assert job.status == job_pb2.JOB_STATUS_REJECTED
        assert job.error.code == "INPUT_TEXT_STREAM_NOT_FOUND"
        assert job.error.message.startswith("outputs[0].text_tracks[0]: "), job.error.message
        assert fragment in job.error.message and "2 (subrip, eng)" in job.error.message


def pgs_stream(width: int, height: int) -> bytes:
    """A Blu-ray PGS stream (.sup), written by hand since FFmpeg encodes no PGS: a 20x10 box of
    one colour shown at 1 s (composition, window, palette, object, end) and cleared at 2 s."""

    def segment(kind: int, data: bytes, seconds: int) -> bytes:
        return b"PG" + struct.pack(">IIBH", seconds * 90_000, 0, kind, len(data)) + data

    def display_set(seconds: int, shown: bool) -> bytes:
        state, objects = (0x80, 1) if shown else (0x00, 0)
        composition = struct.pack(">HHBHBBBB", width, height, 0x10, seconds, state, 0, 0, objects)
        if shown:
            composition += struct.pack(">HBBHH", 0, 0, 0, 10, 10)
        parts = [(0x16, composition), (0x17, struct.pack(">BBHHHH", 1, 0, 10, 10, 20, 10))]
        if shown:
            lines = (bytes([1]) * 20 + b"\x00\x00") * 10  # run-length: 20 pixels of colour 1
            picture = (len(lines) + 4).to_bytes(3, "big") + struct.pack(">HH", 20, 10) + lines
            parts += [
                (0x14, bytes([0, 0, 1, 235, 128, 128, 255])),
                (0x15, struct.pack(">HBB", 0, 0, 0xC0) + picture),
            ]
        parts.append((0x80, b""))
        return b"".join(segment(kind, data, seconds) for kind, data in parts)

    return display_set(1, True) + display_set(2, False)


def test_image_subtitles_asked_as_text_reject_the_job(server, auth, subtitles):
    """A PGS stream (English) and a VobSub one (German, re-encoded from it by FFmpeg's dvdsub
    encoder): asked as a text track, by index or by language, or to be burned in, the job is
    REJECTED with INPUT_IMAGE_SUBTITLES naming the track and the stream, never encoded without
    it."""
    (subtitles / "signs.sup").write_bytes(pgs_stream(160, 90))
    ffmpeg(
        *("-i", str(subtitles / "titled.mkv")),
        # Each picture lasts until the next set (the clearing one), as a player shows it.
        *("-fix_sub_duration", "-i", str(subtitles / "signs.sup")),
        *("-map", "0:v", "-map", "1:s", "-map", "1:s", "-c:v", "copy"),
        *("-c:s:0", "copy", "-c:s:1", "dvdsub"),
        *("-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=deu"),
        str(subtitles / "pictures.mkv"),
    )
    codecs = probe(str(subtitles / "pictures.mkv"), "stream=codec_name", "-select_streams", "s")
    assert codecs == [["hdmv_pgs_subtitle"], ["dvd_subtitle"]]
    for track, fragment in (
        (job_pb2.TextTrack(stream_index=1, language="en"), "stream 1 is hdmv_pgs_subtitle"),
        (job_pb2.TextTrack(stream_language="de", language="de"), "stream 2 is dvd_subtitle"),
        (
            job_pb2.TextTrack(stream_index=2, language="de", burn_in=True),
            "stream 2 is dvd_subtitle",
        ),
    ):
        request = job_service_pb2.CreateRequest(
            input_url=f"file://{subtitles / 'pictures.mkv'}",
            outputs=[
                job_pb2.OutputSpec(
                    type=job_pb2.OUTPUT_TYPE_MP4,
                    video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
                    text_tracks=[track],
                )
            ],
        )
        job = server.job_stub().Create(request, metadata=auth).job
        job = run_to_end(server, auth, job.id)
        assert job.status == job_pb2.JOB_STATUS_REJECTED, job
        assert job.error.code == "INPUT_IMAGE_SUBTITLES"
        assert job.error.message.startswith(f"outputs[0].text_tracks[0]: {fragment}, "), job.error
        assert "cannot become a text track" in job.error.message
        assert not job.outputs[0].files


def test_broken_sidecars_fail_their_own_output_only(server, cluster, auth, subtitles, internal):
    """A text file that is no subtitle, SubRip with overlapping, backwards and malformed times,
    a 50 MB file (over the 10 MB limit), a host name that resolves to a private address (which Create does not resolve:
    the worker's egress proxy refuses it, and the service there never hears of it): each output
    fails with its code before encoding; the good output completes."""
    (subtitles / "notes.srt").write_text("Shopping list\nmilk, eggs\n")
    (subtitles / "overlap.srt").write_text(
        "1\n00:00:00,000 --> 00:00:02,000\na\n\n2\n00:00:01,000 --> 00:00:03,000\nb\n"
    )
    (subtitles / "backwards.srt").write_text("1\n00:00:02,000 --> 00:00:01,000\nback\n")
    (subtitles / "broken.srt").write_text(
        "1\n00:00:00,500 --> 00:00:01,000\nfine\n\n2\n00:00:03,000 --> 00:61:00,000\nbad\n"
    )
    # 50 MB: reading stops at the 10 MB limit.
    with (subtitles / "huge.vtt").open("w") as huge:
        huge.write("WEBVTT\n\n")
        huge.write(("00:00:00.000 --> 00:00:01.000\n" + "x" * 990 + "\n\n") * 51_000)
    cases = {
        "notes.srt": ("TEXT_TRACK_INVALID", "is not SubRip: block 1 has no timing line"),
        "overlap.srt": ("TEXT_TRACK_INVALID", "cue 2 starts at 1.000 s, before cue 1 ends"),
        "backwards.srt": ("TEXT_TRACK_INVALID", "cue 1 ends (1.000 s) before it starts"),
        "broken.srt": (
            "TEXT_TRACK_INVALID",
            "block 2 has no timing line (HH:MM:SS,mmm --> HH:MM:SS,mmm), "
            "found '00:00:03,000 --> 00:61:00,000'",
        ),
        "huge.vtt": ("TEXT_TRACK_TOO_LARGE", "larger than 10 MB"),
        f"http://localhost:{internal.port}/fr.vtt": ("INPUT_REFUSED", "input refused: "),
        "fr.vtt": ("", ""),
    }

    def output(name: str) -> job_pb2.OutputSpec:
        url = name if name.startswith("http") else f"file://{subtitles / name}"
        track = job_pb2.TextTrack(url=url, language="fr")
        if name == "fr.vtt":  # the good one: beside a system preset
            return job_pb2.OutputSpec(preset="h264_480p_economy", text_tracks=[track])
        return job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_MP4,
            video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
            text_tracks=[track],
        )

    request = job_service_pb2.CreateRequest(
        input_url=f"file://{subtitles / 'titled.mkv'}", outputs=[output(name) for name in cases]
    )
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    assert job.status == job_pb2.JOB_STATUS_PARTIAL
    for result, (code, fragment) in zip(job.outputs, cases.values(), strict=True):
        if not code:
            assert result.status == job_pb2.OUTPUT_STATUS_COMPLETED
            assert result.spec.text_tracks[0].url.endswith("/fr.vtt")
            assert "text_0_fr.vtt" in {file.path for file in result.files}
            continue
        assert result.status == job_pb2.OUTPUT_STATUS_FAILED
        assert result.error.code == code and fragment in result.error.message, result.error
        if code != "INPUT_REFUSED":
            assert result.error.message.startswith("text_tracks[0]: "), result.error
        assert not result.error.retryable and not result.files
    assert internal.log == []
    # Nothing staged is left: the worker's task folders (and any part of a sidecar read into
    # them) are removed once each failure is reported, which may follow the job's end.
    wait_until(lambda: not list(cluster.scratch_dir.iterdir()), timeout=10)
    assert server.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job.id
