"""Pure builders of ladders, image series, GIFs and concatenation: decisions read off the argv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kiln.v1 import job_pb2

from worker.media.codec_strings import codec_string, extradata_bytes, hevc_codec_string
from worker.media.commands import build_command
from worker.media.errors import INPUT_NO_AUDIO, MediaError, OutputSpecError
from worker.media.hls_master import parse_attributes, tidy_cmaf_media_playlist
from worker.media.images import sprite_vtt, vtt_timestamp
from worker.media.ladder import for_video_stream, var_stream_map
from worker.media.plan import CommandPlan, LadderPackaging, SpriteSheet

OUT_DIR = Path("/work/out")
H264, H265, VP9, AV1 = (
    job_pb2.VIDEO_CODEC_H264,
    job_pb2.VIDEO_CODEC_H265,
    job_pb2.VIDEO_CODEC_VP9,
    job_pb2.VIDEO_CODEC_AV1,
)


def make_info(
    *,
    width: int = 640,
    height: int = 360,
    frame_rate: float = 30,
    duration: float = 8.0,
    with_audio: bool = True,
) -> job_pb2.InputInfo:
    streams = [
        job_pb2.StreamInfo(
            index=0,
            kind="video",
            codec="h264",
            width=width,
            height=height,
            frame_rate=frame_rate,
            is_default=True,
        )
    ]
    if with_audio:
        streams.append(
            job_pb2.StreamInfo(
                index=1, kind="audio", codec="aac", channels=2, sample_rate=48000, is_default=True
            )
        )
    return job_pb2.InputInfo(duration_seconds=duration, streams=streams)


def ladder_spec(
    output_type: job_pb2.OutputType = job_pb2.OUTPUT_TYPE_HLS,
    variants: tuple[tuple[job_pb2.VideoCodec, str], ...] = (
        (H264, "360p"),
        (H265, "240p"),
        (H264, "320x180"),
    ),
    segment_seconds: float = 2,
    **fields: Any,
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[job_pb2.VideoVariant(codec=codec, resolution=size) for codec, size in variants],
        segments=job_pb2.SegmentSpec(duration_seconds=segment_seconds),
        **fields,
    )


def build(
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo | None = None,
    extra_inputs: tuple[tuple[str, job_pb2.InputInfo], ...] = (),
) -> CommandPlan:
    return build_command(
        input_path="/in/source.mp4",
        spec=spec,
        info=info or make_info(),
        out_dir=OUT_DIR,
        extra_inputs=extra_inputs,
    )


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def values_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def flags_starting(argv: list[str], prefix: str) -> list[str]:
    return [arg for arg in argv if arg.startswith(prefix)]


# --- Ladders -------------------------------------------------------------------------------------


def test_hls_ladder_is_one_process_that_decodes_once_and_splits() -> None:
    plan = build(ladder_spec())

    graph = value_after(plan.argv, "-filter_complex")
    assert plan.argv.count("-i") == 1
    assert graph.startswith("[0:0]split=3[split0][split1][split2];")
    assert "[split0]fps=30:start_time=0,scale=640:360,setdar=16/9[v0]" in graph
    assert "[split1]fps=30:start_time=0,scale=426:240,setdar=16/9[v1]" in graph
    assert "[split2]fps=30:start_time=0,scale=320:180,setdar=16/9[v2]" in graph
    assert values_after(plan.argv, "-map") == ["[v0]", "[v1]", "[v2]", "0:1", "0:1", "0:1"]
    assert plan.notes == []


def test_every_variant_has_a_fixed_gop_of_one_segment_without_scene_cuts() -> None:
    plan = build(ladder_spec())

    for stream in range(3):
        assert value_after(plan.argv, f"-g:v:{stream}") == "60"  # 2 s x 30 fps
        assert value_after(plan.argv, f"-keyint_min:v:{stream}") == "60"
        assert value_after(plan.argv, f"-forced-idr:v:{stream}") == "1"
    # x264 takes -sc_threshold; x265 ignores it and gets scenecut=0 in its own parameters.
    assert value_after(plan.argv, "-sc_threshold:v:0") == "0"
    assert value_after(plan.argv, "-sc_threshold:v:2") == "0"
    assert "scenecut=0" in value_after(plan.argv, "-x265-params:v:1").split(":")
    assert value_after(plan.argv, "-force_key_frames:v") == "expr:gte(t,n_forced*2)"
    # Nothing may apply to all video streams at once except what is meant to.
    assert "-g" not in plan.argv
    assert "-crf" not in plan.argv


def test_each_variant_gets_its_own_encoder_and_rate_control_from_the_quality_table() -> None:
    plan = build(ladder_spec())

    assert value_after(plan.argv, "-c:v:0") == "libx264"
    assert value_after(plan.argv, "-c:v:1") == "libx265"
    assert value_after(plan.argv, "-c:v:2") == "libx264"
    # Capped VBR per resolution class, so BANDWIDTH has a ceiling.
    assert value_after(plan.argv, "-maxrate:v:0") == "1000k"
    assert value_after(plan.argv, "-bufsize:v:0") == "2000k"
    assert value_after(plan.argv, "-crf:v:2") == "23"


def test_x265_keyframe_parameters_join_its_existing_parameter_list() -> None:
    plan = build(ladder_spec())

    assert flags_starting(plan.argv, "-x265-params") == ["-x265-params:v:1"]
    assert value_after(plan.argv, "-x265-params:v:1") == "log-level=error:scenecut=0:open-gop=0"


def test_audio_is_encoded_once_for_the_whole_fmp4_ladder() -> None:
    plan = build(ladder_spec(hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)))

    assert flags_starting(plan.argv, "-c:a") == ["-c:a"]
    assert value_after(plan.argv, "-c:a") == "aac"
    assert values_after(plan.argv, "-map").count("0:1") == 1


def test_audio_and_video_of_a_ladder_start_at_zero() -> None:
    plan = build(ladder_spec(job_pb2.OUTPUT_TYPE_DASH))

    # The AAC encoder stamps its first packet 1024 samples early (priming): the source is
    # trimmed by as much, so that packet is at 0; the video is padded or trimmed to start at 0.
    assert value_after(plan.argv, "-af") == "aresample=48000:first_pts=1024"
    assert "[split0]fps=30:start_time=0," in value_after(plan.argv, "-filter_complex")
    # Negative composition offsets put the first picture at 0 despite the B-frame delay.
    assert value_after(plan.argv, "-format_options") == "movflags=+negative_cts_offsets"


def test_opus_priming_is_counted_at_48_khz() -> None:
    spec = ladder_spec(
        job_pb2.OUTPUT_TYPE_DASH,
        audio=job_pb2.AudioSpec(codec=job_pb2.AUDIO_CODEC_OPUS, sample_rate=24000),
    )

    assert value_after(build(spec).argv, "-af") == "aresample=24000:first_pts=156"


def test_ts_hls_muxes_audio_into_every_variant_and_encodes_without_b_frames() -> None:
    plan = build(ladder_spec())

    # hls.js starts a TS timeline at the video's first decode time: no reordering delay.
    for stream in range(3):
        assert value_after(plan.argv, f"-bf:v:{stream}") == "0"
    assert values_after(plan.argv, "-map").count("0:1") == 3
    assert value_after(plan.argv, "-var_stream_map") == (
        "v:0,a:0,name:v0 v:1,a:1,name:v1 v:2,a:2,name:v2"
    )
    assert OUT_DIR / "audio" / "index.m3u8" not in plan.outputs
    assert "-avoid_negative_ts" not in plan.argv


def test_av1_goes_into_fmp4_hls_but_not_into_ts() -> None:
    variants = ((AV1, "360p"), (AV1, "240p"))
    fmp4 = build(
        ladder_spec(
            variants=variants, hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
        )
    )

    assert value_after(fmp4.argv, "-c:v:0") == "libsvtav1"
    assert "-bf:v:0" not in fmp4.argv
    with pytest.raises(OutputSpecError, match="AV1"):
        build(ladder_spec(variants=variants))


def test_hls_muxer_writes_a_master_and_one_folder_per_rendition() -> None:
    plan = build(ladder_spec(hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)))

    argv = plan.argv
    assert value_after(argv, "-f") == "hls"
    assert value_after(argv, "-hls_time") == "2"
    assert value_after(argv, "-hls_playlist_type") == "vod"
    assert value_after(argv, "-hls_segment_type") == "fmp4"
    assert value_after(argv, "-master_pl_name") == "master.m3u8"
    assert value_after(argv, "-hls_segment_filename") == "/work/out/%v/seg_%05d.m4s"
    assert value_after(argv, "-hls_segment_options") == "movflags=+negative_cts_offsets"
    assert value_after(argv, "-avoid_negative_ts") == "disabled"
    assert value_after(argv, "-var_stream_map") == (
        "v:0,agroup:audio,name:v0 v:1,agroup:audio,name:v1 v:2,agroup:audio,name:v2 "
        "a:0,agroup:audio,name:audio,default:yes"
    )
    assert argv[-1] == "/work/out/%v/index.m3u8"
    assert plan.finalize == LadderPackaging(hls_master=OUT_DIR / "master.m3u8")
    assert OUT_DIR / "audio" / "index.m3u8" in plan.outputs


def test_fmp4_hls_tags_hevc_for_apple_players() -> None:
    spec = ladder_spec(
        hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4),
    )

    plan = build(spec)

    assert value_after(plan.argv, "-hls_segment_type") == "fmp4"
    assert value_after(plan.argv, "-hls_fmp4_init_filename") == "init.mp4"
    assert value_after(plan.argv, "-hls_segment_filename").endswith("seg_%05d.m4s")
    assert value_after(plan.argv, "-tag:v:1") == "hvc1"


def test_ts_hls_leaves_hevc_untagged() -> None:
    assert not flags_starting(build(ladder_spec()).argv, "-tag")


def test_var_stream_map_without_audio_has_no_rendition_group() -> None:
    assert var_stream_map(2, has_audio=False) == "v:0,name:v0 v:1,name:v1"


def test_ladder_of_a_silent_input_maps_and_encodes_no_audio() -> None:
    plan = build(ladder_spec(), make_info(with_audio=False))

    assert not flags_starting(plan.argv, "-c:a")
    assert "agroup" not in value_after(plan.argv, "-var_stream_map")
    assert OUT_DIR / "audio" / "index.m3u8" not in plan.outputs


def test_disabled_audio_gives_a_video_only_ladder() -> None:
    plan = build(ladder_spec(audio=job_pb2.AudioSpec(disabled=True)))

    assert not flags_starting(plan.argv, "-c:a")


def test_dash_ladder_takes_vp9_and_av1_with_their_keyframe_options() -> None:
    spec = ladder_spec(
        job_pb2.OUTPUT_TYPE_DASH, variants=((H264, "360p"), (VP9, "240p"), (AV1, "180p"))
    )

    argv = build(spec).argv

    assert value_after(argv, "-c:v:1") == "libvpx-vp9"
    assert value_after(argv, "-g:v:1") == value_after(argv, "-keyint_min:v:1") == "60"
    assert "-sc_threshold:v:1" not in argv
    assert value_after(argv, "-c:v:2") == "libsvtav1"
    assert value_after(argv, "-g:v:2") == "60"
    assert "-keyint_min:v:2" not in argv
    assert value_after(argv, "-f") == "dash"
    assert value_after(argv, "-seg_duration") == "2"
    assert value_after(argv, "-adaptation_sets") == "id=0,streams=v id=1,streams=a"
    assert argv[-1] == "/work/out/manifest.mpd"
    assert "-hls_playlist" not in argv


def test_cmaf_is_a_dash_muxer_that_also_writes_hls_playlists() -> None:
    plan = build(ladder_spec(job_pb2.OUTPUT_TYPE_CMAF))

    assert value_after(plan.argv, "-f") == "dash"
    assert value_after(plan.argv, "-hls_playlist") == "1"
    assert value_after(plan.argv, "-hls_master_name") == "master.m3u8"
    # The last -format_options wins: CMAF branding and negative composition offsets.
    assert values_after(plan.argv, "-format_options")[-1] == "movflags=+cmaf+negative_cts_offsets"
    assert plan.finalize == LadderPackaging(
        hls_master=OUT_DIR / "master.m3u8", dash_manifest=OUT_DIR / "manifest.mpd"
    )
    assert OUT_DIR / "media_3.m3u8" in plan.outputs  # three variants and the audio


@pytest.mark.parametrize("output_type", [job_pb2.OUTPUT_TYPE_HLS, job_pb2.OUTPUT_TYPE_CMAF])
def test_vp9_is_refused_where_apple_players_must_play_it(
    output_type: job_pb2.OutputType,
) -> None:
    with pytest.raises(OutputSpecError):
        build(ladder_spec(output_type, variants=((VP9, "360p"),)))


def test_variants_above_the_source_are_dropped_when_the_source_size_is_covered() -> None:
    spec = ladder_spec(variants=((H264, "1080p"), (H264, "360p"), (H264, "720p"), (H264, "240p")))

    plan = build(spec)

    assert plan.notes == [
        "variant 0: 1080p above source 640x360, dropped",
        "variant 2: 720p above source 640x360, dropped",
    ]
    assert value_after(plan.argv, "-var_stream_map").count("v:") == 2
    assert "scale=640:360" in value_after(plan.argv, "-filter_complex")
    assert "scale=426:240" in value_after(plan.argv, "-filter_complex")


def test_first_variant_above_the_source_is_capped_when_nothing_covers_it() -> None:
    spec = ladder_spec(variants=((H264, "1080p"), (H264, "720p"), (H264, "240p")))

    plan = build(spec)

    assert plan.notes == [
        "variant 0: 1080p capped to source 640x360",
        "variant 1: 720p above source 640x360, dropped",
    ]
    graph = value_after(plan.argv, "-filter_complex")
    assert "[split0]fps=30:start_time=0,scale=640:360" in graph
    assert "[split1]fps=30:start_time=0,scale=426:240" in graph


def test_gop_rounds_up_for_ntsc_rates_so_forced_keyframes_come_first() -> None:
    plan = build(ladder_spec(segment_seconds=6), make_info(frame_rate=30000 / 1001))

    assert value_after(plan.argv, "-g:v:0") == "180"  # 179.82 frames per segment


def test_variant_frame_rate_sets_its_own_gop_and_filter() -> None:
    spec = ladder_spec()
    spec.video[2].fps = 15

    plan = build(spec)

    assert value_after(plan.argv, "-g:v:2") == "30"
    assert "[split2]fps=15:start_time=0,scale=320:180" in value_after(plan.argv, "-filter_complex")


def test_av1_notes_when_segments_are_not_whole_frames() -> None:
    spec = ladder_spec(job_pb2.OUTPUT_TYPE_DASH, variants=((AV1, "360p"),), segment_seconds=6)

    plan = build(spec, make_info(frame_rate=30000 / 1001))

    assert len(plan.notes) == 1
    assert "may not align" in plan.notes[0]


def test_requested_gop_is_kept_only_when_it_divides_a_segment() -> None:
    spec = ladder_spec(variants=((H264, "360p"), (H264, "240p")))
    spec.video[0].gop_frames = 30
    spec.video[1].gop_frames = 45

    plan = build(spec)

    assert value_after(plan.argv, "-g:v:0") == "30"
    assert value_after(plan.argv, "-g:v:1") == "60"
    assert plan.notes == [
        "variant 1: gop_frames 45 ignored; keyframes every 60 frames keep the 2 s segments aligned"
    ]


def test_clip_seeks_the_input_and_limits_the_ladder() -> None:
    plan = build(ladder_spec(clip=job_pb2.ClipSpec(start_seconds=1, duration_seconds=4)))

    assert plan.argv[plan.argv.index("-i") - 2 : plan.argv.index("-i")] == ["-ss", "1"]
    assert value_after(plan.argv, "-t") == "4"
    assert plan.expected_duration == 4


def test_too_many_variants_are_refused() -> None:
    with pytest.raises(OutputSpecError):
        build(ladder_spec(variants=((H264, "240p"),) * 9))


def test_for_video_stream_binds_every_flag() -> None:
    assert for_video_stream(["-c:v", "libx264", "-crf", "23", "-b:v", "1k"], 2) == [
        "-c:v:2",
        "libx264",
        "-crf:v:2",
        "23",
        "-b:v:2",
        "1k",
    ]


# --- Images --------------------------------------------------------------------------------------


def thumbnail_spec(
    output_type: job_pb2.OutputType = job_pb2.OUTPUT_TYPE_JPG, **fields: Any
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(type=output_type, thumbnail=job_pb2.ThumbnailSpec(**fields))


def test_interval_thumbnails_sample_the_frame_shown_at_each_interval() -> None:
    spec = thumbnail_spec(mode=job_pb2.THUMBNAIL_MODE_INTERVAL, interval_seconds=2.5, width=160)

    plan = build(spec)

    assert value_after(plan.argv, "-vf") == "fps=2/5:round=up,scale=160:90,setsar=1"
    assert value_after(plan.argv, "-frames:v") == "4"  # 0, 2.5, 5, 7.5 of 8 s
    assert plan.argv[-1] == "/work/out/thumb_%04d.jpg"
    assert plan.outputs == [OUT_DIR / f"thumb_000{n}.jpg" for n in range(1, 5)]


def test_timestamp_thumbnails_seek_one_input_per_time_in_one_process() -> None:
    spec = thumbnail_spec(
        job_pb2.OUTPUT_TYPE_PNG,
        mode=job_pb2.THUMBNAIL_MODE_TIMESTAMPS,
        timestamps_seconds=[1, 3.5, 30],
        width=320,
    )

    plan = build(spec)

    assert values_after(plan.argv, "-ss") == ["1", "3.5", "7.95"]
    assert values_after(plan.argv, "-map") == ["0:0", "1:0", "2:0"]
    assert plan.outputs == [OUT_DIR / f"thumb_000{n}.png" for n in (1, 2, 3)]
    assert plan.notes == ["thumbnail 3 at 30 s moved to 7.95 s, the last frame"]
    assert set(values_after(plan.argv, "-vf")) == {"scale=320:180,setsar=1"}


def test_sprite_tiles_frames_into_a_grid_and_plans_its_vtt() -> None:
    spec = thumbnail_spec(mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=1, columns=3)

    plan = build(spec)

    assert value_after(plan.argv, "-vf") == (
        "fps=1/1:round=up,scale=160:90,setsar=1,tile=3x3"  # 8 tiles
    )
    assert plan.finalize == SpriteSheet(
        image=OUT_DIR / "sprite.jpg",
        vtt=OUT_DIR / "sprite.vtt",
        tile_width=160,
        tile_height=90,
        columns=3,
        tile_count=8,
        interval_seconds=1,
        duration_seconds=8,
    )


def test_sprite_interval_grows_when_the_sheet_would_be_too_tall() -> None:
    spec = thumbnail_spec(mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=1)

    plan = build(spec, make_info(duration=7200))

    assert isinstance(plan.finalize, SpriteSheet)
    rows = -(-plan.finalize.tile_count // plan.finalize.columns)
    assert rows * plan.finalize.tile_height <= 16383
    assert plan.notes == ["sprite: interval raised from 1 s to 8 s to fit 16383 px"]


def test_sprite_vtt_covers_the_clip_with_tile_rectangles() -> None:
    sheet = SpriteSheet(
        image=OUT_DIR / "sprite.webp",
        vtt=OUT_DIR / "sprite.vtt",
        tile_width=160,
        tile_height=90,
        columns=2,
        tile_count=3,
        interval_seconds=2,
        duration_seconds=5.5,
    )

    assert sprite_vtt(sheet) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.000\nsprite.webp#xywh=0,0,160,90\n\n"
        "00:00:02.000 --> 00:00:04.000\nsprite.webp#xywh=160,0,160,90\n\n"
        "00:00:04.000 --> 00:00:05.500\nsprite.webp#xywh=0,90,160,90\n"
    )


def test_vtt_timestamps_carry_hours() -> None:
    assert vtt_timestamp(3723.4567) == "01:02:03.457"


def test_gif_uses_its_own_palette_and_honours_the_clip() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_GIF, clip=job_pb2.ClipSpec(start_seconds=2, duration_seconds=3)
    )

    plan = build(spec)

    assert value_after(plan.argv, "-ss") == "2"
    assert value_after(plan.argv, "-t") == "3"
    assert value_after(plan.argv, "-vf") == (
        "fps=10,scale=320:180:flags=lanczos,setsar=1,"
        "split[frames][analysed];[analysed]palettegen[palette];[frames][palette]paletteuse"
    )
    assert value_after(plan.argv, "-loop") == "0"
    assert plan.outputs == [OUT_DIR / "output.gif"]


def test_long_gif_is_shortened_with_a_note() -> None:
    plan = build(job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_GIF), make_info(duration=600))

    assert value_after(plan.argv, "-t") == "60"
    assert plan.notes == ["gif: 600 s shortened to 60 s"]


# --- Concatenation -------------------------------------------------------------------------------


def test_concat_normalises_every_input_to_the_first_and_fills_missing_audio() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4, video=[job_pb2.VideoVariant(codec=H264)]
    )
    second = make_info(width=320, height=240, frame_rate=25, duration=3, with_audio=False)

    plan = build(spec, extra_inputs=(("/in/second.mp4", second),))

    assert values_after(plan.argv, "-i") == ["/in/source.mp4", "/in/second.mp4"]
    graph = value_after(plan.argv, "-filter_complex").split(";")
    assert graph[0] == (
        "[0:0]scale=640:360:force_original_aspect_ratio=decrease,"
        "pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=30/1,format=yuv420p[v0]"
    )
    assert graph[1].startswith("[0:1]aresample=48000,")
    assert graph[2].startswith("[1:0]scale=640:360:force_original_aspect_ratio=decrease,")
    assert graph[3].startswith("anullsrc=r=48000:cl=stereo,atrim=duration=3,")
    assert graph[4] == "[v0][a0][v1][a1]concat=n=2:v=1:a=1[video][audio]"
    assert values_after(plan.argv, "-map") == ["[video]", "[audio]"]
    assert plan.expected_duration == 11


def test_concat_of_silent_inputs_has_no_audio() -> None:
    spec = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MKV, video=[job_pb2.VideoVariant()])
    silent = make_info(with_audio=False)

    plan = build(spec, silent, extra_inputs=(("/in/b.mkv", silent),))

    assert value_after(plan.argv, "-filter_complex").endswith("concat=n=2:v=1:a=0[video]")
    assert "-an" in plan.argv


def test_audio_concat_of_inputs_without_audio_is_refused() -> None:
    silent = make_info(with_audio=False)

    with pytest.raises(MediaError) as raised:
        build(
            job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3),
            silent,
            extra_inputs=(("/in/b.mp4", silent),),
        )
    assert raised.value.code == INPUT_NO_AUDIO


def test_concat_clip_cuts_the_joined_result() -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_M4A, clip=job_pb2.ClipSpec(start_seconds=6, duration_seconds=4)
    )

    plan = build(spec, extra_inputs=(("/in/b.mp4", make_info()),))

    filter_position = plan.argv.index("-filter_complex")
    assert plan.argv.index("-ss") > filter_position  # an output option, after both inputs
    assert value_after(plan.argv, "-t") == "4"
    assert plan.expected_duration == 4


def test_ladders_cannot_be_concatenated() -> None:
    with pytest.raises(OutputSpecError):
        build(ladder_spec(), extra_inputs=(("/in/b.mp4", make_info()),))


# --- Measuring for finalize ----------------------------------------------------------------------


def test_hevc_codec_string_follows_iso_14496_15() -> None:
    # Main profile, Main compatibility (bits 1 and 2), progressive/frame-only flags, level 3.
    profile_tier_level = bytes.fromhex("01600000009000000000005a")

    assert hevc_codec_string("hvc1", profile_tier_level) == "hvc1.1.6.L90.90"


def test_codec_strings_from_annex_b_parameter_sets() -> None:
    h264 = {"codec_name": "h264", "extradata": _hexdump(bytes.fromhex("0000000167640028acd9"))}
    # An HEVC SPS with an emulation-prevention byte inside profile_tier_level.
    hevc_sps = bytes.fromhex("0000000142010101600000030090000003000003005a")
    hevc = {"codec_name": "hevc", "extradata": _hexdump(hevc_sps), "codec_tag_string": "[36]"}

    assert codec_string(h264) == "avc1.640028"
    assert codec_string(hevc) == "hev1.1.6.L90.90"


def test_aac_codec_string_from_audio_specific_config_or_profile() -> None:
    assert codec_string({"codec_name": "aac", "extradata": _hexdump(b"\x11\x90")}) == "mp4a.40.2"
    assert codec_string({"codec_name": "aac", "profile": "HE-AAC"}) == "mp4a.40.5"


def test_extradata_hexdump_is_read_back_to_bytes() -> None:
    data = bytes(range(20))

    assert extradata_bytes(_hexdump(data)) == data


def test_hls_attribute_lists_keep_commas_inside_quotes() -> None:
    assert parse_attributes('BANDWIDTH=1,CODECS="avc1.64001f,mp4a.40.2",AUDIO="a"') == {
        "BANDWIDTH": "1",
        "CODECS": "avc1.64001f,mp4a.40.2",
        "AUDIO": "a",
    }


def test_cmaf_media_playlists_lose_wall_clock_dates_and_say_vod() -> None:
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000+0000\nseg-1.m4s\n#EXT-X-ENDLIST\n"
    )

    assert tidy_cmaf_media_playlist(playlist) == (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.0,\n"
        "seg-1.m4s\n#EXT-X-ENDLIST\n"
    )


def _hexdump(data: bytes) -> str:
    """ffprobe's -show_data layout: offset, 16 bytes in pairs padded to 40 columns, ASCII."""
    lines = [""]
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        pairs = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        ascii_view = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in chunk)
        lines.append(f"{offset:08x}: {pairs:<40} {ascii_view}")
    return "\n".join(lines) + "\n"
