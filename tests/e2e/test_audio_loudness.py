"""Loudness normalization and channel down-mixing through a running server, checked from the
outside with FFmpeg's own meters (ebur128, astats); bad loudness and channel settings refused at
Create. One cluster for the module."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support.violations import violations_from_connect

from .connect_json import ConnectJsonClient
from .jobs import run_to_end

N = job_pb2.LoudnessNormalization
ENCODE = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


# What FFmpeg produces does not depend on the database: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def ffmpeg(*args: str) -> str:
    """Runs ffmpeg; its stderr (where the meters print their summaries)."""
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-y", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr


@pytest.fixture(scope="module")
def loud_and_quiet(media_root) -> Path:
    """4 s: a loud 1 kHz tone (-9 dBFS) for 2 s, then a quiet one (-35 dBFS), with a tiny picture."""
    path = media_root / "loud_and_quiet.mp4"
    tone = "sine=frequency=1000:sample_rate=48000:duration=2"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15:duration=4"),
        *("-f", "lavfi", "-i", f"{tone},volume=2.8"),
        *("-f", "lavfi", "-i", f"{tone},volume=0.14"),
        *("-filter_complex", "[1][2]concat=n=2:v=0:a=1[a]", "-map", "0:v", "-map", "[a]"),
        *ENCODE,
        *("-c:a", "pcm_s16le", "-f", "mov", str(path)),
    )
    return path


@pytest.fixture(scope="module")
def centre_only(media_root) -> Path:
    """2 s of 5.1 whose only sound is a 1 kHz tone on the centre channel."""
    path = media_root / "centre_only.mov"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15:duration=2"),
        *("-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=2,volume=2"),
        *("-filter_complex", "[1]pan=5.1|FC=c0[a]", "-map", "0:v", "-map", "[a]"),
        *ENCODE,
        *("-c:a", "pcm_s16le", str(path)),
    )
    return path


def ebur128(source: str) -> tuple[float, float]:
    """(integrated loudness in LUFS, true peak in dBTP) of the first audio stream."""
    log = ffmpeg("-i", source, "-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-")
    summary = log[log.rindex("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    assert integrated is not None and peak is not None, summary
    return float(integrated.group(1)), float(peak.group(1))


def channel_rms(source: str) -> list[float]:
    """RMS level in dB of each channel of the first audio stream."""
    log = ffmpeg(
        "-i", source, "-map", "0:a:0", "-af", "astats=measure_overall=none", "-f", "null", "-"
    )
    return [float(v) for v in re.findall(r"RMS level dB: (-?[\d.]+|-inf)", log)]


def audio_streams(source: str) -> list[tuple[str, int]]:
    """(codec, channels) of each audio stream."""
    argv = ["ffprobe", "-v", "error", "-select_streams", "a"]
    argv += ["-show_entries", "stream=codec_name,channels", "-of", "csv=p=0", source]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    # E-AC-3 adds a column of side data after the two asked for.
    rows = [line.split(",") for line in out.split()]
    return [(row[0], int(row[1])) for row in rows]


def test_loudness_reaches_the_target_in_an_audio_file_and_a_ladder(server, auth, loud_and_quiet):
    """M4A to the streaming preset and a two-rung MPEG-TS HLS ladder to EBU R128, each measured
    with ebur128 from what the server serves; the figures are on the output."""
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{loud_and_quiet}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_M4A,
                audio=job_pb2.AudioSpec(loudness=job_pb2.LoudnessSpec(preset="streaming")),
            ),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_HLS,
                video=[
                    job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="160x90"),
                    job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="128x72"),
                ],
                audio=job_pb2.AudioSpec(
                    loudness=job_pb2.LoudnessSpec(preset="ebu_r128", true_peak_dbtp=-2)
                ),
            ),
            # A range narrower than the source's (3.4 LU): loudnorm's dynamic mode.
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_M4A,
                audio=job_pb2.AudioSpec(
                    loudness=job_pb2.LoudnessSpec(integrated_lufs=-16, true_peak_dbtp=-1.5, lra=1)
                ),
            ),
        ],
    )
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    m4a, hls, narrow = job.outputs
    assert m4a.loudness.normalization == N.LOUDNESS_NORMALIZATION_LINEAR
    assert narrow.loudness.normalization == N.LOUDNESS_NORMALIZATION_DYNAMIC
    for output, (target, peak), played in (
        (m4a, (-14.0, -1.0), m4a.playback_url),
        # Each variant carries the audio (MPEG-TS): the lowest rung is measured.
        (hls, (-23.0, -2.0), hls.playback_base_url + "v1/index.m3u8"),
        (narrow, (-16.0, -1.5), narrow.playback_url),
    ):
        figures = output.loudness
        assert (figures.target_integrated_lufs, figures.target_true_peak_dbtp) == (target, peak)
        # The source: about -13 LUFS loud part, -39 quiet part, gated together.
        assert -20 < figures.input_integrated_lufs < -8, figures
        assert figures.normalization in (
            N.LOUDNESS_NORMALIZATION_LINEAR,
            N.LOUDNESS_NORMALIZATION_DYNAMIC,
        )
        assert abs(figures.output_integrated_lufs - target) <= 1.0, figures
        integrated, true_peak = ebur128(played)
        print("FIG", figures, integrated, true_peak)
        assert abs(integrated - target) <= 1.0, (output.spec, integrated, figures)
        assert true_peak <= peak, (output.spec, true_peak, figures)


def test_centre_channel_is_kept_in_the_stereo_downmix_and_5_1_when_asked(
    server, auth, centre_only, tmp_path
):
    """A tone only on the centre of a 5.1 source is in both stereo channels at -3 dB; an MP4
    asking for 6 channels in E-AC-3 and an M4A asking for 6 in AAC keep 5.1."""
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{centre_only}",
        outputs=[
            job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A),
            job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A, audio=job_pb2.AudioSpec(channels=6)),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="160x90")],
                audio=job_pb2.AudioSpec(
                    codec=job_pb2.AUDIO_CODEC_EAC3, channels=6, bitrate_kbps=384
                ),
            ),
        ],
    )
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    stereo, surround_aac, surround_eac3 = job.outputs
    centre = channel_rms(str(centre_only))[2]
    left, right = channel_rms(stereo.playback_url)
    assert abs(left - (centre - 3.01)) <= 1.0, (centre, left)
    assert abs(right - (centre - 3.01)) <= 1.0, (centre, right)
    assert audio_streams(stereo.playback_url) == [("aac", 2)]
    assert audio_streams(surround_aac.playback_url) == [("aac", 6)]
    assert audio_streams(surround_eac3.playback_url) == [("eac3", 6)]
    # Kept as 5.1, the tone stays on the centre alone.
    levels = channel_rms(surround_aac.playback_url)
    assert abs(levels[2] - centre) <= 1.0 and max(levels[:2] + levels[3:]) < centre - 40, levels


def job_ids(client: ConnectJsonClient) -> list[str]:
    # Ids only: the jobs' signed links are made afresh on every read.
    status, body = client.call("List", {"page_size": 100})
    assert status == 200, body
    return [job["id"] for job in body.get("jobs", [])]


def _output(audio: dict, kind: str = "OUTPUT_TYPE_M4A") -> dict:
    return {"type": kind, "audio": audio}


@pytest.mark.parametrize(
    ("output", "field", "fragment"),
    [
        (
            _output({"loudness": {"integrated_lufs": -3}}),
            "outputs[0].audio.loudness.integrated_lufs",
            "between -70 and -5",
        ),
        (
            _output({"loudness": {"true_peak_dbtp": 0.5}}),
            "outputs[0].audio.loudness.true_peak_dbtp",
            "between -9 and 0",
        ),
        (
            _output({"loudness": {"preset": "podcast", "lra": 60}}),
            "outputs[0].audio.loudness.lra",
            "between 1 and 50",
        ),
        (
            _output({"loudness": {"preset": "cinema"}}),
            "outputs[0].audio.loudness.preset",
            "unknown loudness preset 'cinema'",
        ),
        (_output({"loudness": {}}), "outputs[0].audio.loudness.preset", "at least one"),
        (
            _output({"disabled": True, "loudness": {"preset": "podcast"}}, "OUTPUT_TYPE_MP4"),
            "outputs[0].audio.loudness",
            "nothing to normalize",
        ),
        (_output({"channels": 4}), "outputs[0].audio.channels", "1, 2 or 6"),
        (_output({"channels": 6}, "OUTPUT_TYPE_MP3"), "outputs[0].audio.channels", "MP3 carries"),
        (
            _output({"codec": "AUDIO_CODEC_EAC3"}, "OUTPUT_TYPE_WEBM"),
            "outputs[0].audio.codec",
            "cannot be used in WEBM",
        ),
    ],
)
def test_bad_loudness_and_channels_are_refused_at_create(
    server, api_key, media_root, output, field, fragment
):
    client = ConnectJsonClient(server.http_url, api_key)
    before = job_ids(client)
    if output["type"] == "OUTPUT_TYPE_MP4":
        output = {**output, "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}]}
    status, error = client.call(
        "Create", {"input_url": f"file://{media_root / 'clip2s.mp4'}", "outputs": [output]}
    )
    assert status == 400
    assert error["code"] == "invalid_argument"
    violations = violations_from_connect(error)
    assert fragment in violations.get(field, ""), violations
    # Nothing was written, and the server still answers.
    assert job_ids(client) == before


def test_loudness_with_concatenated_inputs_is_refused(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    clip = f"file://{media_root / 'clip2s.mp4'}"
    status, error = client.call(
        "Create",
        {
            "input_url": clip,
            "concat_input_urls": [clip],
            "outputs": [_output({"loudness": {"preset": "podcast"}, "channels": 6})],
        },
    )
    assert status == 400
    violations = violations_from_connect(error)
    assert "one input" in violations["outputs[0].audio.loudness"]
    assert "not 5.1" in violations["outputs[0].audio.channels"]
