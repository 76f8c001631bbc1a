from pathlib import Path
from typing import Any

import pytest
from kiln.v1 import job_pb2

from worker.media.audio import build_audio_command
from worker.media.commands import build_command
from worker.media.encoders import VIDEO_QUALITY
from worker.media.errors import MediaError, OutputSpecError
from worker.media.images import build_thumbnail_command
from worker.media.plan import CommandPlan
from worker.media.progressive import build_progressive_command

OUT_DIR = Path("/work/out")


def make_info(
    *,
    width: int = 1920,
    height: int = 1080,
    rotation: int = 0,
    duration: float = 10.0,
    audio_streams: tuple[job_pb2.StreamInfo, ...] | None = None,
) -> job_pb2.InputInfo:
    video = job_pb2.StreamInfo(
        index=0,
        kind="video",
        codec="h264",
        width=width,
        height=height,
        rotation=rotation,
        frame_rate=25,
        pixel_format="yuv420p",
        is_default=True,
    )
    if audio_streams is None:
        audio_streams = (
            job_pb2.StreamInfo(
                index=1, kind="audio", codec="aac", channels=2, sample_rate=44100, is_default=True
            ),
        )
    return job_pb2.InputInfo(
        container="mov,mp4,m4a,3gp,3g2,mj2",
        duration_seconds=duration,
        streams=[video, *audio_streams],
    )


def mp4_spec(**variant_fields: Any) -> job_pb2.OutputSpec:
    variant = job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, **variant_fields)
    return job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4, video=[variant])


def build(spec: job_pb2.OutputSpec, info: job_pb2.InputInfo | None = None) -> CommandPlan:
    return build_progressive_command(
        input_path="/in/source.mp4", spec=spec, info=info or make_info(), out_dir=OUT_DIR
    )


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def values_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def scale_of(argv: list[str]) -> str:
    return next(step for step in value_after(argv, "-vf").split(",") if step.startswith("scale="))


def test_standard_h264_mp4_command() -> None:
    plan = build(mp4_spec(resolution="720p"))

    assert plan.argv[:9] == [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-y",
        "-progress",
        "pipe:1",
        "-nostats",
        "-loglevel",
        "error",
    ]
    assert value_after(plan.argv, "-i") == "/in/source.mp4"
    assert values_after(plan.argv, "-map") == ["0:0", "0:1"]
    assert value_after(plan.argv, "-vf") == "scale=1280:720,setsar=1"
    assert value_after(plan.argv, "-c:v") == "libx264"
    assert value_after(plan.argv, "-preset") == "veryfast"
    assert value_after(plan.argv, "-crf") == "23"
    assert value_after(plan.argv, "-maxrate") == "4000k"
    assert value_after(plan.argv, "-bufsize") == "8000k"
    assert value_after(plan.argv, "-pix_fmt") == "yuv420p"
    assert value_after(plan.argv, "-c:a") == "aac"
    assert value_after(plan.argv, "-b:a") == "128k"
    assert value_after(plan.argv, "-ac") == "2"
    assert value_after(plan.argv, "-ar") == "48000"
    assert value_after(plan.argv, "-movflags") == "+faststart"
    assert plan.argv[-3:] == ["-f", "mp4", "/work/out/output.mp4"]
    assert plan.outputs == [OUT_DIR / "output.mp4"]
    assert plan.notes == []
    assert plan.expected_duration == 10.0
    assert "-ss" not in plan.argv
    assert "-t" not in plan.argv


def test_quality_tiers_pick_their_table_row() -> None:
    economy = build(mp4_spec(resolution="1080p", quality=job_pb2.QUALITY_ECONOMY)).argv
    premium = build(mp4_spec(resolution="1080p", quality=job_pb2.QUALITY_PREMIUM)).argv

    assert (value_after(economy, "-preset"), value_after(economy, "-crf")) == ("veryfast", "28")
    assert (value_after(premium, "-preset"), value_after(premium, "-crf")) == ("medium", "20")
    assert int(value_after(economy, "-maxrate")[:-1]) < int(value_after(premium, "-maxrate")[:-1])


def test_every_codec_has_every_quality_tier() -> None:
    tiers = {job_pb2.QUALITY_ECONOMY, job_pb2.QUALITY_STANDARD, job_pb2.QUALITY_PREMIUM}
    for codec in (
        job_pb2.VIDEO_CODEC_H264,
        job_pb2.VIDEO_CODEC_H265,
        job_pb2.VIDEO_CODEC_VP9,
        job_pb2.VIDEO_CODEC_AV1,
    ):
        assert set(VIDEO_QUALITY[codec]) == tiers


def test_bitrate_replaces_crf() -> None:
    argv = build(mp4_spec(resolution="720p", bitrate_kbps=2500)).argv

    assert "-crf" not in argv
    assert value_after(argv, "-b:v") == "2500k"
    assert value_after(argv, "-maxrate") == "2500k"
    assert value_after(argv, "-bufsize") == "5000k"


def test_fps_and_gop_are_honoured() -> None:
    argv = build(mp4_spec(resolution="720p", fps=30, gop_frames=60)).argv

    assert value_after(argv, "-vf") == "fps=30,scale=1280:720,setsar=1"
    assert value_after(argv, "-g") == "60"


def test_height_resolution_takes_width_from_source_aspect_and_stays_even() -> None:
    # 1000x562 → 480p: 480 * 1000 / 562 = 854.09 → 854.
    plan = build(mp4_spec(resolution="480p"), make_info(width=1000, height=562))

    assert scale_of(plan.argv) == "scale=854:480"


def test_odd_widths_round_to_even() -> None:
    # 4:3 at 250p would be 333.33 wide; H.264 4:2:0 needs even sizes.
    plan = build(mp4_spec(resolution="250p"), make_info(width=640, height=480))

    assert scale_of(plan.argv) == "scale=334:250"


def test_resolution_above_source_is_capped_with_a_note() -> None:
    plan = build(mp4_spec(resolution="1080p"), make_info(width=640, height=360))

    assert scale_of(plan.argv) == "scale=640:360"
    assert plan.notes == ["variant 0: 1080p capped to source 640x360"]


def test_capping_to_an_odd_source_rounds_down_to_even() -> None:
    plan = build(mp4_spec(resolution="720p"), make_info(width=641, height=359))

    assert scale_of(plan.argv) == "scale=640:358"


def test_allow_upscale_goes_above_source() -> None:
    plan = build(mp4_spec(resolution="1080p", allow_upscale=True), make_info(width=640, height=360))

    assert scale_of(plan.argv) == "scale=1920:1080"
    assert plan.notes == []


def test_rotated_source_uses_displayed_size() -> None:
    # Stored 1920x1080 with a 90° rotation displays as 1080x1920 (portrait).
    plan = build(mp4_spec(resolution="720p"), make_info(width=1920, height=1080, rotation=90))

    assert scale_of(plan.argv) == "scale=406:720"


def test_rotated_source_caps_against_displayed_height() -> None:
    plan = build(mp4_spec(resolution="1080p"), make_info(width=640, height=360, rotation=270))

    assert scale_of(plan.argv) == "scale=360:640"
    assert plan.notes == ["variant 0: 1080p capped to source 360x640"]


def test_upside_down_source_keeps_its_size() -> None:
    plan = build(mp4_spec(resolution="720p"), make_info(rotation=180))

    assert scale_of(plan.argv) == "scale=1280:720"


def test_explicit_size_with_source_aspect_is_used_as_is() -> None:
    plan = build(mp4_spec(resolution="1280x720"))

    assert scale_of(plan.argv) == "scale=1280:720"
    assert plan.notes == []


def test_explicit_size_with_other_aspect_is_fitted_inside() -> None:
    plan = build(mp4_spec(resolution="720x720"))

    assert scale_of(plan.argv) == "scale=720:406"
    assert plan.notes == ["variant 0: 720x720 fitted to 720x406 to keep the source aspect ratio"]


def test_explicit_size_above_source_is_capped() -> None:
    plan = build(mp4_spec(resolution="3840x2160"), make_info(width=1280, height=720))

    assert scale_of(plan.argv) == "scale=1280:720"
    assert plan.notes == ["variant 0: 3840x2160 capped to source 1280x720"]


def test_unparseable_resolution_is_refused() -> None:
    with pytest.raises(OutputSpecError) as raised:
        build(mp4_spec(resolution="big"))

    assert (raised.value.code, raised.value.retryable) == ("OUTPUT_SPEC_UNSUPPORTED", False)


def test_input_without_audio_gets_no_audio() -> None:
    argv = build(mp4_spec(resolution="720p"), make_info(audio_streams=())).argv

    assert "-an" in argv
    assert values_after(argv, "-map") == ["0:0"]
    assert "-c:a" not in argv


def test_disabled_audio_gets_no_audio() -> None:
    spec = mp4_spec(resolution="720p")
    spec.audio.disabled = True

    argv = build(spec).argv

    assert "-an" in argv
    assert values_after(argv, "-map") == ["0:0"]


def test_default_audio_stream_is_mapped() -> None:
    commentary = job_pb2.StreamInfo(index=1, kind="audio", codec="aac", channels=2)
    main = job_pb2.StreamInfo(index=2, kind="audio", codec="ac3", channels=6, is_default=True)

    argv = build(mp4_spec(resolution="720p"), make_info(audio_streams=(commentary, main))).argv

    assert values_after(argv, "-map") == ["0:0", "0:2"]
    # 5.1 is mixed down to stereo.
    assert value_after(argv, "-ac") == "2"


def test_first_audio_stream_is_mapped_when_none_is_default() -> None:
    first = job_pb2.StreamInfo(index=1, kind="audio", codec="aac", channels=1)
    second = job_pb2.StreamInfo(index=2, kind="audio", codec="aac", channels=2)

    argv = build(mp4_spec(resolution="720p"), make_info(audio_streams=(first, second))).argv

    assert values_after(argv, "-map") == ["0:0", "0:1"]
    assert value_after(argv, "-ac") == "1"


def test_audio_spec_overrides_defaults_and_caps_channels() -> None:
    spec = mp4_spec(resolution="720p")
    spec.audio.CopyFrom(job_pb2.AudioSpec(bitrate_kbps=96, channels=6, sample_rate=44100))

    argv = build(spec).argv

    assert value_after(argv, "-b:a") == "96k"
    assert value_after(argv, "-ac") == "2"
    assert value_after(argv, "-ar") == "44100"


def test_clip_seeks_before_input_and_limits_length() -> None:
    spec = mp4_spec(resolution="720p")
    spec.clip.CopyFrom(job_pb2.ClipSpec(start_seconds=2.5, duration_seconds=3))

    plan = build(spec)

    assert plan.argv.index("-ss") < plan.argv.index("-i")
    assert value_after(plan.argv, "-ss") == "2.5"
    assert plan.argv.index("-t") > plan.argv.index("-i")
    assert value_after(plan.argv, "-t") == "3"
    assert plan.expected_duration == 3.0


def test_clip_without_length_runs_to_the_end() -> None:
    spec = mp4_spec(resolution="720p")
    spec.clip.start_seconds = 4

    plan = build(spec)

    assert value_after(plan.argv, "-ss") == "4"
    assert "-t" not in plan.argv
    assert plan.expected_duration == 6.0


def test_clip_longer_than_the_rest_is_shortened_in_expected_duration() -> None:
    spec = mp4_spec(resolution="720p")
    spec.clip.CopyFrom(job_pb2.ClipSpec(start_seconds=8, duration_seconds=5))

    assert build(spec).expected_duration == 2.0


def test_clip_starting_after_the_end_is_refused() -> None:
    spec = mp4_spec(resolution="720p")
    spec.clip.start_seconds = 12

    with pytest.raises(MediaError) as raised:
        build(spec)

    assert raised.value.code == "INPUT_ZERO_DURATION"


def test_input_without_video_is_refused() -> None:
    info = make_info()
    del info.streams[0]

    with pytest.raises(MediaError) as raised:
        build(mp4_spec(resolution="720p"), info)

    assert raised.value.code == "INPUT_NO_VIDEO"


def test_progressive_output_needs_exactly_one_variant() -> None:
    spec = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4)

    with pytest.raises(OutputSpecError):
        build(spec)


def test_h265_in_mov_is_tagged_for_apple_players() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MOV,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H265, resolution="720p")],
    )

    argv = build(spec).argv

    assert value_after(argv, "-c:v") == "libx265"
    assert value_after(argv, "-tag:v") == "hvc1"
    assert argv[-3:] == ["-f", "mov", "/work/out/output.mov"]


def test_h265_in_mkv_is_not_tagged() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MKV,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H265, resolution="720p")],
    )

    argv = build(spec).argv

    assert "-tag:v" not in argv
    assert "-movflags" not in argv
    assert argv[-3:] == ["-f", "matroska", "/work/out/output.mkv"]


def test_webm_defaults_to_vp9_and_opus() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_WEBM, video=[job_pb2.VideoVariant(resolution="720p")]
    )

    argv = build(spec).argv

    assert value_after(argv, "-c:v") == "libvpx-vp9"
    assert value_after(argv, "-row-mt") == "1"
    assert value_after(argv, "-deadline") == "good"
    assert value_after(argv, "-cpu-used") == "4"
    # Constrained quality: VP9 takes the cap as -b:v next to -crf.
    assert value_after(argv, "-crf") == "33"
    assert value_after(argv, "-b:v") == value_after(argv, "-maxrate")
    assert value_after(argv, "-c:a") == "libopus"
    assert argv[-3:] == ["-f", "webm", "/work/out/output.webm"]


def test_av1_fixed_bitrate_has_no_peak() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_WEBM,
        video=[
            job_pb2.VideoVariant(
                codec=job_pb2.VIDEO_CODEC_AV1, resolution="720p", bitrate_kbps=1500
            )
        ],
    )

    argv = build(spec).argv

    assert value_after(argv, "-c:v") == "libsvtav1"
    assert value_after(argv, "-b:v") == "1500k"
    assert "-maxrate" not in argv


def test_h264_in_webm_is_refused() -> None:
    with pytest.raises(OutputSpecError):
        build(
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_WEBM,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="720p")],
            )
        )


def test_opus_sample_rate_falls_back_to_48k_with_a_note() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_OPUS, audio=job_pb2.AudioSpec(sample_rate=44100)
    )

    plan = build_audio_command(
        input_path="/in/source.mp4", spec=spec, info=make_info(), out_dir=OUT_DIR
    )

    assert value_after(plan.argv, "-ar") == "48000"
    assert plan.notes == ["audio: 44100 Hz is not possible with libopus, using 48000 Hz"]


@pytest.mark.parametrize(
    ("output_type", "encoder", "muxer", "file_name"),
    [
        (job_pb2.OUTPUT_TYPE_MP3, "libmp3lame", "mp3", "output.mp3"),
        (job_pb2.OUTPUT_TYPE_M4A, "aac", "ipod", "output.m4a"),
        (job_pb2.OUTPUT_TYPE_OPUS, "libopus", "opus", "output.opus"),
        (job_pb2.OUTPUT_TYPE_WAV, "pcm_s16le", "wav", "output.wav"),
    ],
)
def test_audio_only_outputs(
    output_type: job_pb2.OutputType, encoder: str, muxer: str, file_name: str
) -> None:
    plan = build_command(
        input_path="/in/source.mp4",
        spec=job_pb2.OutputSpec(type=output_type),
        info=make_info(),
        out_dir=OUT_DIR,
    )

    assert values_after(plan.argv, "-map") == ["0:1"]
    assert "-c:v" not in plan.argv
    assert value_after(plan.argv, "-c:a") == encoder
    assert ("-b:a" in plan.argv) is (encoder != "pcm_s16le")
    assert plan.argv[-3:] == ["-f", muxer, f"/work/out/{file_name}"]


def test_audio_output_of_silent_input_is_refused() -> None:
    with pytest.raises(MediaError) as raised:
        build_audio_command(
            input_path="/in/source.mp4",
            spec=job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3),
            info=make_info(audio_streams=()),
            out_dir=OUT_DIR,
        )

    assert raised.value.code == "INPUT_NO_AUDIO"


def test_thumbnail_takes_one_frame_at_the_asked_time() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_JPG, thumbnail=job_pb2.ThumbnailSpec(time_seconds=3, width=320)
    )

    plan = build_thumbnail_command(
        input_path="/in/source.mp4", spec=spec, info=make_info(), out_dir=OUT_DIR
    )

    assert value_after(plan.argv, "-ss") == "3"
    assert plan.argv.index("-ss") < plan.argv.index("-i")
    assert value_after(plan.argv, "-frames:v") == "1"
    assert value_after(plan.argv, "-vf") == "scale=320:180,setsar=1"
    assert value_after(plan.argv, "-c:v") == "mjpeg"
    assert plan.argv[-3:] == ["-f", "image2", "/work/out/output.jpg"]


def test_thumbnail_past_the_end_moves_to_the_last_frame() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_WEBP, thumbnail=job_pb2.ThumbnailSpec(time_seconds=60)
    )

    plan = build_thumbnail_command(
        input_path="/in/source.mp4", spec=spec, info=make_info(), out_dir=OUT_DIR
    )

    # Half a frame (25 fps) before the last frame at 9.96 s: seeking onto it can yield nothing.
    assert value_after(plan.argv, "-ss") == "9.94"
    assert plan.notes == ["thumbnail at 60 s moved to 9.94 s, the last frame"]
    assert value_after(plan.argv, "-vf") == "scale=1920:1080,setsar=1"


def test_thumbnail_of_rotated_source_uses_displayed_size() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_PNG, thumbnail=job_pb2.ThumbnailSpec(width=360)
    )

    plan = build_thumbnail_command(
        input_path="/in/source.mp4", spec=spec, info=make_info(rotation=90), out_dir=OUT_DIR
    )

    assert value_after(plan.argv, "-vf") == "scale=360:640,setsar=1"
    assert "-ss" not in plan.argv
