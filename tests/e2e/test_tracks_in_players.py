"""Every kind of track at once, played: one 4 s source with English stereo and German 5.1 audio
and an embedded English SubRip track, plus a French WebVTT and a Spanish SubRip sidecar, made
into a fMP4 HLS ladder, a MPEG-TS HLS ladder, a DASH ladder and an MP4 through a running
server. hls.js (both HLS ladders) and dash.js in Chromium list the audio and text tracks with
their languages and names, switch to each audio track and back, and show the source's cue at
3 s for each text track, with no error or warning; the MP4 carries every track. The separate
track modules (test_audio_tracks.py, test_text_tracks.py) check the manifests and the bad
inputs; this one is the players' view of all of it."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support.browser import require_browser
from tests.support.players import other_origin_site, play_cases

from .jobs import run_to_end

H264 = job_pb2.VIDEO_CODEC_H264


def srt(lines: tuple[str, str, str]) -> str:
    """A SubRip file whose cue at 3 s lasts 2.9-3.1 s, between two others: a track shown
    100 ms early or late shows a neighbour's text (or none) at 3 s instead."""
    before, at_three, after = lines
    return (
        f"1\n00:00:01,000 --> 00:00:02,850\n{before}\n\n"
        f"2\n00:00:02,900 --> 00:00:03,100\n{at_three}\n\n"
        f"3\n00:00:03,150 --> 00:00:03,900\n{after}\n"
    )


ENGLISH = ("English before", "English at three seconds", "English after")
FRENCH_VTT = """WEBVTT

00:01.000 --> 00:02.850
Avant

00:02.900 --> 00:03.100
Trois secondes

00:03.150 --> 00:03.900
Après
"""
SPANISH = ("Antes", "Tres segundos", "Después")


@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def source(media_root) -> Path:
    """tracks/source.mkv (stream 1: English stereo, 440 Hz; stream 2: German 5.1, 880 Hz;
    stream 3: English SubRip) and its fr.vtt and es.srt sidecars."""
    folder = media_root / "tracks"
    folder.mkdir(exist_ok=True)
    (folder / "en.srt").write_text(srt(ENGLISH))
    (folder / "fr.vtt").write_text(FRENCH_VTT)
    (folder / "es.srt").write_text(srt(SPANISH))
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15:duration=4"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4"),
        *("-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000:duration=4"),
        *("-i", str(folder / "en.srt")),
        *("-filter_complex", "[2:a]pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0[surround]"),
        *("-map", "0:v", "-map", "1:a", "-map", "[surround]", "-map", "3:s", "-ac:a:0", "2"),
        *("-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=deu"),
        *("-metadata:s:s:0", "language=eng", "-c:a", "aac", "-c:s", "srt"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
        str(folder / "source.mkv"),
    )
    return folder


def tracked(output_type: job_pb2.OutputType, folder: Path, **fields) -> job_pb2.OutputSpec:
    """An output of `output_type` with both audio tracks (German kept 5.1) and the three text
    tracks; a ladder of two rungs of 1 s segments, a file of one size."""
    sizes = ("160x90",) if output_type == job_pb2.OUTPUT_TYPE_MP4 else ("160x90", "128x72")
    return job_pb2.OutputSpec(
        type=output_type,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution=size, quality=job_pb2.QUALITY_ECONOMY)
            for size in sizes
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
        audio_tracks=[
            job_pb2.AudioTrack(stream_language="eng", language="en", default=True),
            job_pb2.AudioTrack(stream_language="deu", language="de", name="Deutsch", channels=6),
        ],
        text_tracks=[
            job_pb2.TextTrack(stream_language="eng", language="en", default=True),
            job_pb2.TextTrack(url=f"file://{folder / 'fr.vtt'}", language="fr", name="Français"),
            job_pb2.TextTrack(url=f"file://{folder / 'es.srt'}", language="es"),
        ],
        **fields,
    )


@pytest.fixture(scope="module")
def tracked_job(server, auth, source) -> job_pb2.Job:
    """fMP4 HLS, MPEG-TS HLS, DASH and MP4, each with every track."""
    fmp4 = job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{source / 'source.mkv'}",
        outputs=[
            tracked(job_pb2.OUTPUT_TYPE_HLS, source, hls=fmp4),
            tracked(job_pb2.OUTPUT_TYPE_HLS, source),
            tracked(job_pb2.OUTPUT_TYPE_DASH, source),
            tracked(job_pb2.OUTPUT_TYPE_MP4, source),
        ],
    )
    started = time.monotonic()
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id, timeout=120)
    print(f"tracked job: {time.monotonic() - started:.1f} s")
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, (job.error, [o.error for o in job.outputs])
    return job


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def attributes(line: str) -> dict[str, str]:
    found = re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', line.partition(":")[2])
    return {name: value.strip('"') for name, value in found}


def probe(url: str, select: str, entries: str) -> list[list[str]]:
    argv = ["ffprobe", "-v", "error", "-select_streams", select, "-show_entries", entries]
    out = subprocess.run([*argv, "-of", "csv=p=0", url], capture_output=True, text=True, check=True)
    return [line.split(",") for line in out.stdout.split()]


def test_the_ts_ladder_muxes_the_default_audio_and_carries_the_other_as_a_rendition(
    tracked_job,
):
    """RFC 8216 4.3.4.1: an AUDIO rendition without a URI is in the variants' own segments."""
    ts = tracked_job.outputs[1]
    master = fetch(ts.playback_url)
    media = [attributes(line) for line in master.splitlines() if "TYPE=AUDIO" in line]
    assert [(m["NAME"], m["LANGUAGE"], m["DEFAULT"], m["CHANNELS"]) for m in media] == [
        ("English", "en", "YES", "2"),
        ("Deutsch", "de", "NO", "6"),
    ]
    assert "URI" not in media[0] and media[1]["URI"] == "audio_1/index.m3u8"
    variants = [attributes(line) for line in master.splitlines() if "STREAM-INF" in line]
    assert len(variants) == 2
    for variant in variants:
        assert variant["AUDIO"] == media[0]["GROUP-ID"]
        assert variant["CODECS"].count("mp4a") == 1, variant  # the muxed audio, named once
    # The variant's segments hold video and the English stereo; the rendition's the German.
    # (ffprobe lists a TS stream twice, in its program too: rows are told apart by index.)
    segment = ts.playback_base_url + "v0/seg_00000.ts"
    assert {tuple(row) for row in probe(segment, "a", "stream=index,channels")} == {("1", "2")}
    rendition = ts.playback_base_url + "audio_1/seg_00000.ts"
    assert {tuple(row) for row in probe(rendition, "a", "stream=index,channels")} == {("0", "6")}


def test_the_mp4_carries_every_track(tracked_job):
    mp4 = tracked_job.outputs[3]
    audio = probe(mp4.playback_url, "a", "stream=codec_name,channels:stream_tags=language")
    assert audio == [["aac", "2", "eng"], ["aac", "6", "deu"]]
    text = probe(mp4.playback_url, "s", "stream=codec_name:stream_tags=language")
    assert text == [["mov_text", "eng"], ["mov_text", "fra"], ["mov_text", "spa"]]


@pytest.mark.slow
def test_players_list_switch_and_show_every_track(tracked_job, server, tmp_path):
    """Each player switches to German and back to English, then shows each text track's cue
    at the source's 3 s, read at exactly 3 s of the player's clock. Every ladder's first
    picture is shown at the player's 0 (each SourceBuffer starts there, asserted below): MPEG-TS
    has no B-frames, and the fMP4 ladders' negative composition offsets show the first picture
    at its decode time. The cues need no compensation, so none is made: a track mapped to
    ffprobe's reading of those segments (a reordering delay, 133 ms, later) would show its
    2.9-3.1 s cue from 3.03 s and miss 3 s."""
    require_browser("tracks in players")
    fmp4, ts, dash = (output.playback_base_url for output in tracked_job.outputs[:3])
    cases = [
        {"name": "hls-fmp4", "player": "hls", "url": fmp4 + "master.m3u8", "textAt": 3.0},
        {"name": "hls-ts", "player": "hls", "url": ts + "master.m3u8", "textAt": 3.0},
        {"name": "dash", "player": "dash", "url": dash + "manifest.mpd", "textAt": 3.0},
    ]
    for case in cases:
        case["audioSwitch"] = True
    with other_origin_site(tmp_path / "site") as site:
        report = play_cases(
            {"kiln": server.http_url, "playSeconds": 0.5, "cases": cases},
            tmp_path / "cases.json",
            site,
        )
    for entry in report["results"]:
        print(entry["name"], entry["audioTracks"], entry["audioBack"])
        print(entry["name"], entry["textTracks"])
    for entry in report["results"]:
        assert entry["issues"] == [], entry
        assert set(entry["starts"]) == {"video/mp4", "audio/mp4"}, entry
        assert all(abs(start) < 0.021 for start in entry["starts"].values()), entry["starts"]
        audio = [(t["lang"], t["name"], t["switched"], t["buffered"]) for t in entry["audioTracks"]]
        assert audio == [("en", "English", True, True), ("de", "Deutsch", True, True)], entry
        back = entry["audioBack"]
        assert (back["lang"], back["switched"], back["buffered"], back["played"]) == (
            "en",
            True,
            True,
            True,
        ), entry
        text = [(t["lang"], t["name"], t["text"]) for t in entry["textTracks"]]
        assert text == [
            ("en", "English", ENGLISH[1]),
            ("fr", "Français", "Trois secondes"),
            ("es", "Spanish", SPANISH[1]),
        ], entry
