"""Several audio tracks through a running server: a 2 s clip with English and German audio
streams (different tones) plus a French audio-description file, made into an MP4, a fMP4 HLS
ladder and CMAF, checked from what the server serves (ffprobe, master playlists, the MPD); bad
audio tracks refused at Create or after probing, nothing else affected. One cluster for the
module. The players' view of audio tracks (hls.js on fMP4 and MPEG-TS HLS, dash.js) is
tests/e2e/test_tracks_in_players.py."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.http_origins import Origin, send
from tests.support.violations import violations_from_connect

from .connect_json import ConnectJsonClient
from .jobs import run_to_end

H264 = job_pb2.VIDEO_CODEC_H264


@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def tone(frequency: int) -> tuple[str, ...]:
    # Faded in: a tone that starts at full level is a click AAC encodes with a peak 6 dB above
    # the tone's, which a re-encode makes louder still; loudness is about the tone.
    sine = f"sine=frequency={frequency}:sample_rate=48000:duration=2,afade=t=in:d=0.1"
    return ("-f", "lavfi", "-i", sine)


@pytest.fixture(scope="module")
def media(media_root) -> Path:
    """two_languages.mp4 (stream 1: English at 440 Hz, stream 2: German at 880 Hz, both
    stereo) and description_fr.m4a (660 Hz), in a folder of the input root."""
    folder = media_root / "audio_tracks"
    folder.mkdir(exist_ok=True)
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15:duration=2", *tone(440), *tone(880)),
        *("-map", "0:v", "-map", "1:a", "-map", "2:a", "-ac", "2", "-c:a", "aac"),
        *("-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=deu"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
        str(folder / "two_languages.mp4"),
    )
    ffmpeg(*tone(660), "-c:a", "aac", str(folder / "description_fr.m4a"))
    return folder


def audio_tracks(folder: Path) -> list[job_pb2.AudioTrack]:
    return [
        job_pb2.AudioTrack(stream_language="eng", language="en", default=True),
        job_pb2.AudioTrack(stream_index=2, language="de", name="Deutsch", channels=1),
        job_pb2.AudioTrack(
            url=f"file://{folder / 'description_fr.m4a'}",
            language="fr",
            role=job_pb2.AUDIO_TRACK_ROLE_DESCRIPTION,
            bitrate_kbps=64,
        ),
    ]


@pytest.fixture(scope="module")
def dubbed_job(server, auth, media) -> job_pb2.Job:
    """One job: an MP4, a fMP4 HLS ladder of two rungs, CMAF and an MKV normalized to the
    streaming loudness (-14 LUFS, -1 dBTP), each with the three tracks."""
    tracks = audio_tracks(media)

    def ladder(output_type: job_pb2.OutputType, **fields) -> job_pb2.OutputSpec:
        sizes = ("160x90", "128x72")
        return job_pb2.OutputSpec(
            type=output_type,
            video=[
                job_pb2.VideoVariant(codec=H264, resolution=size, quality=job_pb2.QUALITY_ECONOMY)
                for size in sizes
            ],
            segments=job_pb2.SegmentSpec(duration_seconds=1),
            audio_tracks=tracks,
            **fields,
        )

    fmp4 = job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media / 'two_languages.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
                audio_tracks=tracks,
            ),
            ladder(job_pb2.OUTPUT_TYPE_HLS, hls=fmp4),
            ladder(job_pb2.OUTPUT_TYPE_CMAF),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=H264, resolution="64x36")],
                audio=job_pb2.AudioSpec(loudness=job_pb2.LoudnessSpec(preset="streaming")),
                audio_tracks=tracks,
            ),
        ],
    )
    started = time.monotonic()
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    print(f"dubbed job: {time.monotonic() - started:.1f} s")
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, (job.error, [o.error for o in job.outputs])
    return job


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def attributes(line: str) -> dict[str, str]:
    found = re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', line.partition(":")[2])
    return {name: value.strip('"') for name, value in found}


def loudest_frequency(url: str, stream: int) -> int:
    """The tone of audio stream `stream`: which of the three tones used is loudest in it."""
    levels = {}
    for frequency in (440, 660, 880):
        argv = ["ffmpeg", "-hide_banner", "-nostats", "-i", url, "-map", f"0:a:{stream}", "-af"]
        argv += [f"bandpass=f={frequency}:width_type=q:w=8,volumedetect", "-f", "null", "-"]
        err = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
        found = re.search(r"mean_volume: (-?[\d.]+) dB", err)
        assert found is not None, err
        levels[frequency] = float(found.group(1))
    return max(levels, key=lambda frequency: levels[frequency])


def test_the_mp4_carries_every_track_with_its_language(dubbed_job):
    mp4 = dubbed_job.outputs[0]
    argv = ["ffprobe", "-v", "error", "-select_streams", "a", "-of", "csv=p=0", "-show_entries"]
    argv += ["stream=codec_name,channels:stream_tags=language:stream_disposition=default"]
    out = subprocess.run([*argv, mp4.playback_url], capture_output=True, text=True, check=True)
    rows = [line.split(",") for line in out.stdout.split()]
    # codec, channels, default, language (ffprobe's order: entries, then dispositions, tags).
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("aac", "2", "eng"),
        ("aac", "1", "deu"),
        ("aac", "1", "fra"),
    ], rows
    assert [r[2] for r in rows] == ["1", "0", "0"], rows
    # Each track is the stream it names: English 440 Hz, German 880 Hz, the French file 660 Hz.
    tones = [loudest_frequency(mp4.playback_url, n) for n in range(3)]
    assert tones == [440, 880, 660]


def test_ladders_list_one_audio_rendition_per_track(dubbed_job):
    """fMP4 HLS and CMAF: one EXT-X-MEDIA TYPE=AUDIO per track in one group, every variant
    naming it; the CMAF MPD one AdaptationSet per track with lang and Role."""
    for output in dubbed_job.outputs[1:3]:
        master = fetch(output.playback_url)
        media = [attributes(line) for line in master.splitlines() if "TYPE=AUDIO" in line]
        assert [
            (m["LANGUAGE"], m["NAME"], m["DEFAULT"], m["AUTOSELECT"], m["CHANNELS"]) for m in media
        ] == [
            ("en", "English", "YES", "YES", "2"),
            ("de", "Deutsch", "NO", "YES", "1"),
            ("fr", "French (description)", "NO", "NO", "1"),
        ]
        assert media[2]["CHARACTERISTICS"] == "public.accessibility.describes-video"
        assert len({m["GROUP-ID"] for m in media}) == 1
        variants = [attributes(line) for line in master.splitlines() if "STREAM-INF" in line]
        assert len(variants) == 2
        assert all(v["AUDIO"] == media[0]["GROUP-ID"] for v in variants), variants
    mpd = fetch(dubbed_job.outputs[2].playback_base_url + "manifest.mpd")
    sets = re.findall(
        r'<AdaptationSet[^>]*contentType="audio"[^>]*lang="([^"]+)">\s*'
        r'<Role schemeIdUri="urn:mpeg:dash:role:2011" value="([a-z]+)"/>',
        mpd,
    )
    assert sets == [("en", "main"), ("de", "alternate"), ("fr", "description")], mpd


def test_loudness_normalizes_every_track_on_its_own(dubbed_job):
    """Each track of the MKV, measured here with ebur128, is within 1 LU of -14 LUFS with its
    true peak at or below -1 dBTP; the output reports each track's figures once."""
    mkv = dubbed_job.outputs[3]
    reported = [(f.audio_track_index, f.target_integrated_lufs) for f in mkv.track_loudness]
    assert reported == [(0, -14.0), (1, -14.0), (2, -14.0)]
    assert not mkv.HasField("loudness")
    for number, figures in enumerate(mkv.track_loudness):
        argv = ["ffmpeg", "-hide_banner", "-nostats", "-i", mkv.playback_url]
        argv += ["-map", f"0:a:{number}", "-af", "ebur128=peak=true", "-f", "null", "-"]
        err = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
        summary = err[err.rindex("Summary:") :]
        integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
        peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
        assert integrated is not None and peak is not None, summary
        assert abs(float(integrated.group(1)) + 14) <= 1, (number, summary)
        assert float(peak.group(1)) <= -1.0, (number, summary)
        assert abs(figures.output_integrated_lufs + 14) <= 1, figures


# Bad audio tracks.


def job_ids(client: ConnectJsonClient) -> list[str]:
    status, body = client.call("List", {"page_size": 100})
    assert status == 200, body
    return [job["id"] for job in body.get("jobs", [])]


STREAM = {"stream_index": 1, "language": "en"}
FILE = {"url": "file://{root}/audio_tracks/description_fr.m4a", "language": "fr"}


def _output(tracks: list[dict], kind: str = "OUTPUT_TYPE_MP4", **fields) -> dict:
    video = [{"codec": "h264", "resolution": "160x90"}] if kind != "OUTPUT_TYPE_M4A" else []
    return {"type": kind, "video": video, "audio_tracks": tracks, **fields}


@pytest.mark.parametrize(
    ("output", "field", "fragment"),
    [
        (
            _output([{**STREAM, "name": f"T{n}"} for n in range(9)]),
            "outputs[0].audio_tracks",
            "at most 8 audio tracks",
        ),
        (
            _output([{**STREAM, "language": "xx-YY"}]),
            "outputs[0].audio_tracks[0].language",
            "'xx-YY' is not a known language",
        ),
        (
            _output([{**STREAM, "default": True}, {**FILE, "default": True}]),
            "outputs[0].audio_tracks",
            "at most one track may be the default",
        ),
        (
            _output([{**FILE, "url": "http://169.254.169.254/latest/dub.m4a"}]),
            "outputs[0].audio_tracks[0].url",
            "169.254.169.254",
        ),
        (
            _output([{**FILE, "url": "file:///etc/dub.m4a"}]),
            "outputs[0].audio_tracks[0].url",
            "outside",
        ),
        (_output([{**STREAM, "url": FILE["url"]}]), "outputs[0].audio_tracks[0]", "exactly one"),
        (_output([STREAM, STREAM]), "outputs[0].audio_tracks[1].name", "give each its own"),
        (
            _output([{**STREAM, "channels": 3}]),
            "outputs[0].audio_tracks[0].channels",
            "must be 1, 2 or 6",
        ),
        (
            _output([STREAM], audio={"disabled": True}),
            "outputs[0].audio_tracks",
            "audio is disabled",
        ),
        (_output([STREAM], "OUTPUT_TYPE_M4A"), "outputs[0].audio_tracks", "not M4A"),
    ],
)
def test_bad_audio_tracks_are_refused_at_create(
    server, api_key, media_root, media, output, field, fragment
):
    client = ConnectJsonClient(server.http_url, api_key)
    before = job_ids(client)
    output = {
        **output,
        "audio_tracks": [
            {k: v.format(root=media_root) if isinstance(v, str) else v for k, v in track.items()}
            for track in output["audio_tracks"]
        ],
    }
    status, error = client.call(
        "Create", {"input_url": f"file://{media / 'two_languages.mp4'}", "outputs": [output]}
    )
    assert status == 400, error
    assert error["code"] == "invalid_argument"
    violations = violations_from_connect(error)
    assert fragment in violations.get(field, ""), violations
    assert job_ids(client) == before  # nothing written, and the server still answers


def test_a_stream_the_probe_did_not_find_rejects_the_job(server, auth, media):
    for track, fragment in (
        (job_pb2.AudioTrack(stream_index=7, language="en"), "no stream 7"),
        (job_pb2.AudioTrack(stream_index=0, language="en"), "stream 0 is video"),
        (job_pb2.AudioTrack(stream_language="ita", language="it"), "in 'ita'"),
    ):
        request = job_service_pb2.CreateRequest(
            input_url=f"file://{media / 'two_languages.mp4'}",
            outputs=[
                job_pb2.OutputSpec(
                    type=job_pb2.OUTPUT_TYPE_MP4,
                    video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
                    audio_tracks=[track],
                )
            ],
        )
        job = server.job_stub().Create(request, metadata=auth).job
        job = run_to_end(server, auth, job.id)
        assert job.status == job_pb2.JOB_STATUS_REJECTED
        assert job.error.code == "INPUT_AUDIO_STREAM_NOT_FOUND"
        assert job.error.message.startswith("outputs[0].audio_tracks[0]: "), job.error.message
        assert fragment in job.error.message and "2 (aac, deu)" in job.error.message


@pytest.fixture
def internal(media):
    """A service behind the trust boundary that would answer: a leak would succeed."""
    origin = Origin("127.0.0.1")
    body = (media / "description_fr.m4a").read_bytes()
    origin.routes["/dub.m4a"] = lambda handler, _: send(handler, 200, body, "audio/mp4")
    yield origin
    origin.close()


def test_the_worker_refuses_what_create_could_not_judge(server, auth, media, internal):
    """An extra file without audio fails its output with AUDIO_TRACK_INVALID; a host name that
    resolves to a private address (Create does not resolve it) is refused by the worker's
    egress proxy, and the service there never hears of it; the good output completes."""
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=64x36:rate=15:duration=1"),
        *("-c:v", "libx264", "-preset", "ultrafast", str(media / "silent.mp4")),
    )
    cases = {
        f"file://{media / 'silent.mp4'}": ("AUDIO_TRACK_INVALID", "has no audio stream"),
        f"http://localhost:{internal.port}/dub.m4a": ("INPUT_REFUSED", "input refused: "),
        f"file://{media / 'description_fr.m4a'}": ("", ""),
    }
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media / 'two_languages.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
                audio_tracks=[
                    job_pb2.AudioTrack(stream_index=1, language="en"),
                    job_pb2.AudioTrack(url=url, language="fr"),
                ],
            )
            for url in cases
        ],
    )
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    assert job.status == job_pb2.JOB_STATUS_PARTIAL
    for result, (code, fragment) in zip(job.outputs, cases.values(), strict=True):
        if not code:
            assert result.status == job_pb2.OUTPUT_STATUS_COMPLETED
            continue
        assert result.status == job_pb2.OUTPUT_STATUS_FAILED
        assert result.error.code == code and fragment in result.error.message, result.error
        assert not result.error.retryable and not result.files
    assert internal.log == []
