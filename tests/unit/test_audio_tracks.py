"""Audio tracks in the command builders: which streams are mapped from which input, each
stream's own encoder options and labels, the ladders' rendition maps, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from common.loudness import resolve_target
from server.domain.loudness_reports import track_loudness_problems
from worker.media.audio_tracks import (
    PreparedAudio,
    audio_renditions,
    for_audio_stream,
    label_hls_audio,
)
from worker.media.commands import build_command
from worker.media.errors import MediaError, OutputSpecError
from worker.media.loudness import SecondPass

H264 = job_pb2.VIDEO_CODEC_H264
R = job_pb2.AudioTrackRole


def stream(index: int, channels: int = 2) -> job_pb2.StreamInfo:
    return job_pb2.StreamInfo(
        index=index, kind="audio", codec="aac", channels=channels, sample_rate=48000
    )


INFO = job_pb2.InputInfo(
    duration_seconds=10,
    streams=[
        job_pb2.StreamInfo(
            index=0, kind="video", codec="h264", width=640, height=360, frame_rate=25
        ),
        stream(1),
        stream(2, channels=6),
    ],
)
TRACKS = [
    PreparedAudio(0, None, stream(1), "en", "English", True, R.AUDIO_TRACK_ROLE_MAIN, job_pb2.AudioSpec()),
    PreparedAudio(
        1, None, stream(2, 6), "de", "Deutsch", False, R.AUDIO_TRACK_ROLE_ALTERNATE,
        job_pb2.AudioSpec(channels=6, bitrate_kbps=256),
    ),
    PreparedAudio(
        2, "/in/ad.m4a", stream(0), "fr", "Français", False, R.AUDIO_TRACK_ROLE_DESCRIPTION,
        job_pb2.AudioSpec(bitrate_kbps=64),
    ),
]  # fmt: skip


def build(spec: job_pb2.OutputSpec, **options) -> list[str]:
    return build_command(
        input_path="/in/source.mkv",
        spec=spec,
        info=INFO,
        out_dir=Path("/work/out"),
        audio_tracks=TRACKS,
        **options,
    ).argv


def pairs(argv: list[str], prefix: str) -> list[tuple[str, str]]:
    return [(flag, argv[i + 1]) for i, flag in enumerate(argv) if flag.startswith(prefix)]


def progressive(output_type: job_pb2.OutputType, **fields) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type, video=[job_pb2.VideoVariant(codec=H264, resolution="320x180")], **fields
    )


def test_a_progressive_file_maps_every_track_and_encodes_each_with_its_own_options() -> None:
    argv = build(progressive(job_pb2.OUTPUT_TYPE_MP4))
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-i"] == [
        "/in/source.mkv",
        "/in/ad.m4a",
    ]
    assert pairs(argv, "-map") == [
        ("-map", "0:0"),
        ("-map", "0:1"),
        ("-map", "0:2"),
        ("-map", "1:0"),
    ]
    assert pairs(argv, "-c:a") == [("-c:a:0", "aac"), ("-c:a:1", "aac"), ("-c:a:2", "aac")]
    assert pairs(argv, "-b:a") == [("-b:a:0", "128k"), ("-b:a:1", "256k"), ("-b:a:2", "64k")]
    assert pairs(argv, "-ac") == [("-ac:a:0", "2"), ("-ac:a:1", "6"), ("-ac:a:2", "2")]
    assert ("-metadata:s:a:1", "language=deu") in pairs(argv, "-metadata")
    assert ("-metadata:s:a:2", "title=Français") in pairs(argv, "-metadata")
    assert pairs(argv, "-disposition") == [
        ("-disposition:a:0", "default"),
        ("-disposition:a:1", "0"),
        ("-disposition:a:2", "visual_impaired+descriptions"),
    ]
    assert "-an" not in argv and "-af" not in argv  # every option is bound to its stream


def test_mov_takes_bibliographic_language_codes() -> None:
    argv = build(progressive(job_pb2.OUTPUT_TYPE_MOV))
    assert ("-metadata:s:a:1", "language=ger") in pairs(argv, "-metadata")


def test_a_clip_cuts_an_extra_file_where_it_cuts_the_input() -> None:
    argv = build(progressive(job_pb2.OUTPUT_TYPE_MKV, clip=job_pb2.ClipSpec(start_seconds=3)))
    first, second = (i for i, a in enumerate(argv) if a == "-i")
    assert argv[first - 2 : first + 2] == ["-ss", "3", "-i", "/in/source.mkv"]
    assert argv[second - 2 : second + 2] == ["-ss", "3", "-i", "/in/ad.m4a"]


def test_fmp4_hls_makes_one_rendition_per_track_in_the_variants_group() -> None:
    spec = progressive(
        job_pb2.OUTPUT_TYPE_HLS, hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
    )
    argv = build(spec)
    assert argv[argv.index("-var_stream_map") + 1] == (
        "v:0,agroup:audio,name:v0 a:0,agroup:audio,name:audio_0,default:yes "
        "a:1,agroup:audio,name:audio_1 a:2,agroup:audio,name:audio_2"
    )
    # Each rendition starts at 0 like the video.
    assert [flag for flag, _ in pairs(argv, "-filter:a")] == [
        "-filter:a:0",
        "-filter:a:1",
        "-filter:a:2",
    ]


def test_dash_and_cmaf_make_one_adaptation_set_per_track() -> None:
    for output_type in (job_pb2.OUTPUT_TYPE_DASH, job_pb2.OUTPUT_TYPE_CMAF):
        argv = build(progressive(output_type))
        assert argv[argv.index("-adaptation_sets") + 1] == (
            "id=0,streams=v id=1,streams=1 id=2,streams=2 id=3,streams=3"
        )


def test_ts_hls_muxes_the_default_into_every_variant_and_makes_the_others_renditions() -> None:
    spec = progressive(job_pb2.OUTPUT_TYPE_HLS)
    spec.video.append(job_pb2.VideoVariant(codec=H264, resolution="160x90"))
    plan = build_command(
        input_path="/in/source.mkv",
        spec=spec,
        info=INFO,
        out_dir=Path("/work/out"),
        audio_tracks=TRACKS,
    )
    argv = plan.argv
    assert argv[argv.index("-var_stream_map") + 1] == (
        "v:0,a:0,agroup:audio,name:v0 v:1,a:1,agroup:audio,name:v1 "
        "a:2,agroup:audio,name:audio_1,default:no a:3,agroup:audio,name:audio_2,default:no"
    )
    # Output audio streams: English (the default) once per variant, German, the extra file.
    assert [argv[i + 1] for i, flag in enumerate(argv) if flag == "-map"][2:] == [
        "0:1",
        "0:1",
        "0:2",
        "1:0",
    ]
    channels = [("-ac:a:0", "2"), ("-ac:a:1", "2"), ("-ac:a:2", "6"), ("-ac:a:3", "2")]
    assert pairs(argv, "-ac:a") == channels
    languages = [value for flag, value in pairs(argv, "-metadata:s:a") if "language" in value]
    assert languages == ["language=eng", "language=eng", "language=deu", "language=fra"]
    # No rendition folder for the muxed default.
    folders = {path.parent.name for path in plan.outputs}
    assert {"audio_1", "audio_2"} <= folders and "audio_0" not in folders


def test_the_outputs_one_loudness_pass_is_refused_with_audio_tracks() -> None:
    # With audio tracks each track carries its own second pass, never the output's one.
    second = SecondPass(
        resolve_target(job_pb2.LoudnessSpec(preset="ebu_r128")), -20.0, -3.0, 5.0, -30.0, 0.0
    )
    with pytest.raises(OutputSpecError, match="normalized on its own"):
        build(progressive(job_pb2.OUTPUT_TYPE_MP4), loudness=second)


def test_an_option_without_a_per_stream_form_is_refused() -> None:
    with pytest.raises(ValueError, match="-strict"):
        for_audio_stream(["-strict", "experimental"], 0)


def test_the_server_takes_per_track_figures_only_for_tracks_the_spec_has() -> None:
    target = resolve_target(job_pb2.LoudnessSpec(preset="streaming"))
    spec = job_pb2.OutputSpec(
        audio=job_pb2.AudioSpec(loudness=job_pb2.LoudnessSpec(preset="streaming")),
        audio_tracks=[job_pb2.AudioTrack(stream_index=1, language="en")] * 2,
    )

    def figures(index: int) -> job_pb2.AudioLoudness:
        return job_pb2.AudioLoudness(
            target_integrated_lufs=target.integrated_lufs,
            target_true_peak_dbtp=target.true_peak_dbtp,
            target_lra=target.lra,
            normalization=job_pb2.LOUDNESS_NORMALIZATION_LINEAR,
            audio_track_index=index,
        )

    assert track_loudness_problems([figures(0), figures(1)], spec) == []
    assert track_loudness_problems([figures(1), figures(1)], spec)
    assert track_loudness_problems([figures(2)], spec)
    assert track_loudness_problems([figures(0)], job_pb2.OutputSpec(audio=spec.audio))


FFMPEG_MASTERS = {
    # fMP4 HLS: one rendition folder per track.
    "fmp4": (
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_audio",NAME="audio_0",DEFAULT=YES,'
        'URI="audio_0/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_audio",NAME="audio_1",DEFAULT=NO,'
        'URI="audio_1/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_audio",NAME="audio_2",DEFAULT=NO,'
        'URI="audio_2/index.m3u8"',
    ),
    # CMAF: the dash muxer's flat playlist names.
    "cmaf": tuple(
        f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_A1",NAME="audio_{n}",URI="media_{n + 1}.m3u8"'
        for n in range(3)
    ),
    # MPEG-TS: the default muxed into the variants, a rendition for each other track.
    "ts": (
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_audio",NAME="audio_3",DEFAULT=NO,'
        'URI="audio_1/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_audio",NAME="audio_4",DEFAULT=NO,'
        'URI="audio_2/index.m3u8"',
    ),
}


@pytest.mark.parametrize("shape", FFMPEG_MASTERS)
async def test_the_master_lists_every_track_in_order_with_its_own_rendition(
    shape: str, tmp_path: Path
) -> None:
    master = tmp_path / "master.m3u8"
    variant = '#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="avc1.64000c,mp4a.40.2"'
    master.write_text("\n".join(["#EXTM3U", *FFMPEG_MASTERS[shape], variant, "v0.m3u8"]) + "\n")
    await label_hls_audio(master, TRACKS, "group_audio")
    lines = master.read_text().splitlines()
    media = [audio_renditions(line)[0] for line in lines if "TYPE=AUDIO" in line]
    uris = [m.get("URI") for m in media]
    assert [(m["NAME"], m["DEFAULT"]) for m in media] == [
        ("English", "YES"),
        ("Deutsch", "NO"),
        ("Français", "NO"),
    ]
    if shape == "cmaf":
        assert uris == ["media_1.m3u8", "media_2.m3u8", "media_3.m3u8"]
    else:
        first = None if shape == "ts" else "audio_0/index.m3u8"
        assert uris == [first, "audio_1/index.m3u8", "audio_2/index.m3u8"]
    group = media[0]["GROUP-ID"]
    assert all(m["GROUP-ID"] == group for m in media)
    assert lines[-2].endswith(f'AUDIO="{group}"') and lines[-1] == "v0.m3u8"


async def test_a_master_with_renditions_missing_is_refused(tmp_path: Path) -> None:
    master = tmp_path / "master.m3u8"
    master.write_text("#EXTM3U\n" + FFMPEG_MASTERS["ts"][0] + "\n")
    with pytest.raises(MediaError, match="1 audio renditions for 3"):
        await label_hls_audio(master, TRACKS, "group_audio")
