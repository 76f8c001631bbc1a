"""Adaptive ladders (HLS, DASH, CMAF) as one ffmpeg process per output, as pure argv builders.

One process, because the source is then decoded once and `split` feeds every variant's scaler
and encoder (docs/architecture.md: 81.5 s against 116.6 s for one process per variant). Audio
is encoded once and shared by all variants as its own rendition, except in MPEG-TS HLS, where
the (default) audio is muxed into every variant (var_stream_map).

A player switches variants only at segment boundaries, so every variant must cut its segments at
the same instants. Each encoder therefore gets a fixed GOP of segment duration x frame rate with
its own extra keyframes (scene cuts, open GOPs) turned off, and -force_key_frames puts a keyframe
at every boundary by time, which also holds when variants have different frame rates or the
product is not a whole number of frames. Which variants become rungs, and their GOPs, is
worker.media.ladder_rungs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

from kiln.v1 import job_pb2

from common.content_keys import OutputEncryption
from worker.media.audio_tracks import (
    PreparedAudio,
    dash_audio_sets,
    encode_args,
    extra_inputs,
    hls_audio_entries,
    track_maps,
    ts_audio_streams,
    ts_hls_entries,
)
from worker.media.codec_args import audio_args, video_encoder_args
from worker.media.containers import Container
from worker.media.encoders import VIDEO_ENCODERS
from worker.media.encryption import check_ladder_encryption
from worker.media.errors import INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.geometry import default_stream, display_size
from worker.media.ladder_rungs import LadderRung, plan_rungs
from worker.media.loudness import SecondPass
from worker.media.overlays import Frame, OverlayDrawing
from worker.media.plan import COMMON_FLAGS, CommandPlan, LadderPackaging
from worker.media.text_tracks import PreparedTrack, burned_in_filter
from worker.media.timing import clip_window, input_args, seconds_arg

VideoCodec = job_pb2.VideoCodec
AudioCodec = job_pb2.AudioCodec
OutputType = job_pb2.OutputType

DEFAULT_SEGMENT_SECONDS = 6.0
MAX_VARIANTS = 8

HLS_MASTER_NAME = "master.m3u8"
DASH_MANIFEST_NAME = "manifest.mpd"
# HLS media playlists and segments go to one folder per rendition: v0/, v1/, ... and audio/.
AUDIO_RENDITION_NAME = "audio"
# ffmpeg prefixes the HLS rendition group id with "group_".
AUDIO_GROUP = "audio"

_H264, _H265, _VP9, _AV1 = (
    VideoCodec.VIDEO_CODEC_H264,
    VideoCodec.VIDEO_CODEC_H265,
    VideoCodec.VIDEO_CODEC_VP9,
    VideoCodec.VIDEO_CODEC_AV1,
)
_AAC, _OPUS = AudioCodec.AUDIO_CODEC_AAC, AudioCodec.AUDIO_CODEC_OPUS
# fMP4 with trun version 1: a B-frame stream's first picture is shown at its first decode time.
NEGATIVE_CTS_MOVFLAGS = "+negative_cts_offsets"

# The codecs each package may carry (the first is the default). HLS and CMAF are for Apple
# devices and hls.js as much as for DASH players, so they stay with AAC; AV1 goes into fMP4
# (hls.js and dash.js play it through MSE), never into MPEG-TS, which has no AV1 mapping
# that players read — build_ladder_command refuses AV1 in TS HLS.
LADDER_CONTAINERS: Mapping[int, Container] = {
    OutputType.OUTPUT_TYPE_HLS: Container("hls", HLS_MASTER_NAME, (_H264, _H265, _AV1), (_AAC,)),
    OutputType.OUTPUT_TYPE_DASH: Container(
        "dash", DASH_MANIFEST_NAME, (_H264, _H265, _VP9, _AV1), (_AAC, _OPUS), is_iso_bmff=True
    ),
    OutputType.OUTPUT_TYPE_CMAF: Container(
        "dash", DASH_MANIFEST_NAME, (_H264, _H265, _AV1), (_AAC,), is_iso_bmff=True
    ),
}


def build_ladder_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
    loudness: SecondPass | None = None,
    overlays: OverlayDrawing | None = None,
    text_tracks: list[PreparedTrack] | None = None,
    audio_tracks: list[PreparedAudio] | None = None,
    encryption: OutputEncryption | None = None,
) -> CommandPlan:
    """HLS (TS or fMP4 segments), DASH or CMAF: every variant and the audio in one process.
    A burned-in text track is drawn into each rung after its scaler (the carried ones are
    written by finalize). audio_tracks, when given, replace the one audio rendition with one
    per track (in MPEG-TS HLS the default track stays muxed into every variant and each other
    track is a rendition; finalize labels them). encryption, when given, is checked here and
    carried to worker.media.encryption.encrypt_ladder, which encrypts the finished files
    (ffmpeg itself writes them in clear and never sees a key)."""
    container = ladder_container(spec)
    fmp4_hls = is_fmp4_hls(spec)
    if not 1 <= len(spec.video) <= MAX_VARIANTS:
        raise OutputSpecError(
            f"an adaptive output takes 1 to {MAX_VARIANTS} video variants, got {len(spec.video)}"
        )
    segment_seconds = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
    if segment_seconds <= 0:
        raise OutputSpecError(f"segment duration {segment_seconds:g} s is not positive")
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")

    notes: list[str] = []
    start, duration = clip_window(spec.clip, info.duration_seconds)
    rungs = plan_rungs(spec, video, container, segment_seconds, notes)
    if encryption is not None:
        check_ladder_encryption(encryption, spec.type, [rung.codec for rung in rungs])
    audio = None if spec.audio.disabled else default_stream(info, "audio")
    ts_hls = spec.type == OutputType.OUTPUT_TYPE_HLS and not fmp4_hls
    tracks = audio_tracks or []
    if tracks:
        audio = None  # the tracks stand in for the default stream
    # The output's audio streams, in order: each track once, or in MPEG-TS HLS the default
    # track once per variant and then the alternates.
    audio_streams = ts_audio_streams(tracks, len(rungs)) if tracks and ts_hls else tracks
    # MPEG-TS HLS carries the audio in every variant's segments (see hls_muxer_args).
    audio_copies = (len(rungs) if ts_hls else 1) if audio is not None else 0

    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start)]
    if overlays is not None:
        argv += overlays.input_args()
    first_audio_input = argv.count("-i")
    argv += extra_inputs(tracks, start)
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    graph = ladder_filter_graph(
        video.index,
        rungs,
        display_aspect(video),
        overlays,
        burned_in_filter(text_tracks or []),
    )
    argv += ["-filter_complex", graph]
    for position in range(len(rungs)):
        argv += ["-map", f"[v{position}]"]
    argv += ["-map", f"0:{audio.index}"] * audio_copies if audio is not None else []
    argv += track_maps(tracks, first_audio_input, audio_streams)
    for position, rung in enumerate(rungs):
        argv += rung_encoder_args(rung, position, container, b_frames=not ts_hls)
    argv += [
        "-pix_fmt",
        "yuv420p",
        # By time rather than by frame count, so it holds for every frame rate in the ladder.
        "-force_key_frames:v",
        f"expr:gte(t,n_forced*{seconds_arg(segment_seconds)})",
    ]
    if audio is not None:
        # Starting at 0 like the video: players see no gap between the two at the start.
        argv += audio_args(
            spec.audio, audio, container, notes, start_at_zero=True, loudness=loudness
        )
    # A TS ladder encodes its default track once per variant: its notes are said once.
    track_notes: list[str] = []
    argv += encode_args(audio_streams, container, spec.type, track_notes, start_at_zero=True)
    notes += dict.fromkeys(track_notes)

    if spec.type == OutputType.OUTPUT_TYPE_HLS:
        audio_entries = None
        if tracks:
            audio_entries = (
                ts_hls_entries(tracks, AUDIO_GROUP, len(rungs))
                if ts_hls
                else hls_audio_entries(tracks, AUDIO_GROUP)
            )
        argv += hls_muxer_args(
            out_dir,
            len(rungs),
            has_audio=audio is not None,
            segment_seconds=segment_seconds,
            fmp4=fmp4_hls,
            audio_entries=audio_entries,
        )
        argv.append(str(out_dir / "%v" / "index.m3u8"))
        master = out_dir / HLS_MASTER_NAME
        outputs = [master, *(out_dir / f"v{i}" / "index.m3u8" for i in range(len(rungs)))]
        if audio is not None and fmp4_hls:
            outputs.append(out_dir / AUDIO_RENDITION_NAME / "index.m3u8")
        outputs += [
            out_dir / track.rendition_folder / "index.m3u8"
            for track in tracks
            if not (ts_hls and track.default)  # muxed into the variants
        ]
        packaging = LadderPackaging(hls_master=master, encryption=encryption)
    else:
        cmaf = spec.type == OutputType.OUTPUT_TYPE_CMAF
        argv += dash_muxer_args(
            has_audio=audio is not None,
            segment_seconds=segment_seconds,
            audio_sets=dash_audio_sets(tracks, len(rungs)),
        )
        if cmaf:
            argv += cmaf_muxer_args()
        manifest = out_dir / DASH_MANIFEST_NAME
        argv.append(str(manifest))
        outputs = [manifest]
        packaging = LadderPackaging(dash_manifest=manifest, encryption=encryption)
        if cmaf:
            stream_count = len(rungs) + (audio is not None) + len(tracks)
            outputs += [out_dir / HLS_MASTER_NAME]
            outputs += [out_dir / f"media_{i}.m3u8" for i in range(stream_count)]
            packaging = LadderPackaging(
                hls_master=out_dir / HLS_MASTER_NAME,
                dash_manifest=manifest,
                encryption=encryption,
            )
    return CommandPlan(
        argv=argv,
        outputs=outputs,
        notes=notes,
        expected_duration=duration,
        finalize=packaging,
    )


def is_fmp4_hls(spec: job_pb2.OutputSpec) -> bool:
    return (
        spec.type == OutputType.OUTPUT_TYPE_HLS
        and spec.hls.segment_format == job_pb2.HLS_SEGMENT_FORMAT_FMP4
    )


def ladder_container(spec: job_pb2.OutputSpec) -> Container:
    """The package an adaptive output's segments go into, with the codecs it may carry:
    fMP4 HLS is ISO BMFF; MPEG-TS HLS carries no AV1."""
    container = LADDER_CONTAINERS.get(spec.type)
    if container is None:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not an adaptive streaming type")
    if is_fmp4_hls(spec):
        return dataclasses.replace(container, is_iso_bmff=True)
    if spec.type == OutputType.OUTPUT_TYPE_HLS:
        return dataclasses.replace(
            container, video_codecs=tuple(c for c in container.video_codecs if c != _AV1)
        )
    return container


def display_aspect(video: job_pb2.StreamInfo) -> str:
    """The source's displayed aspect ratio as "16/9"."""
    ratio = Fraction(*display_size(video))
    return f"{ratio.numerator}/{ratio.denominator}"


def ladder_filter_graph(
    video_index: int,
    rungs: list[LadderRung],
    aspect: str,
    overlays: OverlayDrawing | None = None,
    burn_in: str | None = None,
) -> str:
    """Decode once, split into one branch per rung, and scale each to [v0], [v1], ...;
    burned-in text (`burn_in`, a subtitles filter) and then overlays, when given, are drawn
    on each rung at its own size after scaling.

    setdar instead of setsar=1: even sizes cannot always keep the source aspect exactly (240p of
    16:9 is 426.67 wide), and the DASH muxer refuses an adaptation set whose representations
    differ in aspect; a sample aspect a hair off square makes every variant display alike.
    """
    source = f"[0:{video_index}]"
    branches = []
    if len(rungs) > 1:
        outlets = "".join(f"[split{i}]" for i in range(len(rungs)))
        branches.append(f"{source}split={len(rungs)}{outlets}")
    for position, rung in enumerate(rungs):
        inlet = f"[split{position}]" if len(rungs) > 1 else source
        # start_time=0 repeats the first picture when the source's video starts after its
        # audio (and drops pictures before 0), so every rendition starts at 0 like the audio.
        steps = [f"fps={frame_rate_arg(rung.frame_rate)}:start_time=0"]
        steps += [f"scale={rung.width}:{rung.height}", f"setdar={aspect}"]
        # Burned-in text is drawn at each rung's own size, so it stays sharp on every rung.
        steps += [burn_in] if burn_in else []
        scaled = f"[v{position}]" if overlays is None else f"[scaled{position}]"
        branches.append(f"{inlet}{','.join(steps)}{scaled}")
    if overlays is not None:
        frames = [
            Frame(f"[scaled{position}]", f"[v{position}]", rung.width, rung.height)
            for position, rung in enumerate(rungs)
        ]
        branches += overlays.chains(frames)
    return ";".join(branches)


def frame_rate_arg(frame_rate: float) -> str:
    """A frame rate as the exact fraction FFmpeg knows it by: 29.97002997 → 30000/1001."""
    ratio = Fraction(frame_rate).limit_denominator(1001)
    if ratio.denominator == 1:
        return str(ratio.numerator)
    return f"{ratio.numerator}/{ratio.denominator}"


def rung_encoder_args(
    rung: LadderRung, position: int, container: Container, *, b_frames: bool = True
) -> list[str]:
    """The encoder options of one rung, each bound to output video stream `position`.

    b_frames=False for MPEG-TS: a stream with B-frames decodes its first picture before it
    shows it, so its first decode time is a frame or two before its first presentation time.
    fMP4 hides that with negative composition offsets; TS cannot, and hls.js starts a TS
    timeline at the first decode time, so the video would start after the audio.
    """
    encoder = VIDEO_ENCODERS[rung.codec]
    args = video_encoder_args(
        rung.codec, rung.variant, rung.width, rung.height, container, gop_frames=rung.gop_frames
    )
    if not b_frames:
        args += ["-bf", "0"]
    if encoder.min_keyint_flag:
        args += [encoder.min_keyint_flag, str(rung.gop_frames)]
    args += encoder.aligned_keyframe_args
    if encoder.aligned_keyframe_params:
        args = _merge_encoder_params(args, encoder.params_flag, encoder.aligned_keyframe_params)
    return for_video_stream(args, position)


def _merge_encoder_params(args: list[str], flag: str, params: tuple[str, ...]) -> list[str]:
    # A second -x265-params would replace the first, so the entries join the existing one.
    merged = list(args)
    if flag in merged:
        position = merged.index(flag) + 1
        merged[position] = ":".join([merged[position], *params])
    else:
        merged += [flag, ":".join(params)]
    return merged


def for_video_stream(args: list[str], position: int) -> list[str]:
    """Binds (flag, value) pairs to one output video stream: -crf → -crf:v:1, -c:v → -c:v:1.

    Without the specifier an option applies to every video stream and the last one given wins.
    """
    if len(args) % 2:
        raise ValueError(f"encoder options must come in (flag, value) pairs: {args}")
    bound: list[str] = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if not flag.startswith("-"):
            raise ValueError(f"expected a flag, got {flag!r}")
        stream_flag = flag if flag.endswith(":v") else f"{flag}:v"
        bound += [f"{stream_flag}:{position}", value]
    return bound


def hls_muxer_args(
    out_dir: Path,
    variant_count: int,
    *,
    has_audio: bool,
    segment_seconds: float,
    fmp4: bool,
    audio_entries: list[str] | None = None,
) -> list[str]:
    """hls muxer options; the output path to append is out_dir/%v/index.m3u8.

    fMP4 segments get negative composition offsets, so a variant's first picture is shown at
    its first decode time (0), where the audio starts, rather than after the B-frame reordering
    delay. An edit list would say the same to Chromium (measured: docs/playback.md), but the
    dash muxer's CMAF writes none, and one method serves every fMP4 ladder. (ffprobe reads
    such segments a reordering delay late: worker.media.fmp4_timing reads them as players do.)
    """
    extension = "m4s" if fmp4 else "ts"
    args = [
        "-f",
        "hls",
        "-hls_time",
        seconds_arg(segment_seconds),
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4" if fmp4 else "mpegts",
        # Every segment starts with an IDR frame, which lets players switch at any segment.
        "-hls_flags",
        "independent_segments",
        "-master_pl_name",
        HLS_MASTER_NAME,
        # %v puts each rendition's segments in its own folder, next to its playlist.
        "-hls_segment_filename",
        str(out_dir / "%v" / f"seg_%05d.{extension}"),
    ]
    if fmp4:
        # ffmpeg appends the stream number: v0/init_0.mp4, v1/init_1.mp4, ...
        args += ["-hls_fmp4_init_filename", "init.mp4"]
        args += ["-hls_segment_options", f"movflags={NEGATIVE_CTS_MOVFLAGS}"]
        # The hls muxer would otherwise shift every rendition by the video's (negative) first
        # decode time and record it as an empty edit; the segments need no shift any more.
        args += ["-avoid_negative_ts", "disabled"]
    if audio_entries and not fmp4:
        # Audio tracks in MPEG-TS: the entries name the variants too (audio_tracks.ts_hls_entries).
        return [*args, "-var_stream_map", " ".join(audio_entries)]
    if audio_entries:
        # Several audio tracks: one rendition each, in the group every variant names.
        entries = [f"v:{i},agroup:{AUDIO_GROUP},name:v{i}" for i in range(variant_count)]
        return [*args, "-var_stream_map", " ".join(entries + audio_entries)]
    stream_map = var_stream_map(variant_count, has_audio=has_audio, muxed_audio=not fmp4)
    return [*args, "-var_stream_map", stream_map]


def var_stream_map(variant_count: int, *, has_audio: bool, muxed_audio: bool = False) -> str:
    """One entry per video variant (v0, v1, ...) referring to one audio rendition group.

    The audio is an entry of its own (EXT-X-MEDIA TYPE=AUDIO) rather than muxed into each
    variant, so it is stored once and every variant's segments hold video only. muxed_audio
    (MPEG-TS) puts audio stream i into variant i instead: hls.js 1.7 reports a separate TS
    audio rendition's first segment as appended "without buffered range growth"
    (bufferAppendNoProgress) although it plays, and muxed TS is what players have always had.
    (The first segment of the rendition a player starts on: one switched to later, once the
    player's buffers exist, is taken without a fault; see docs/audio-tracks.md.)
    """
    if has_audio and muxed_audio:
        return " ".join(f"v:{i},a:{i},name:v{i}" for i in range(variant_count))
    group = f",agroup:{AUDIO_GROUP}" if has_audio else ""
    entries = [f"v:{i}{group},name:v{i}" for i in range(variant_count)]
    if has_audio:
        entries.append(f"a:0,agroup:{AUDIO_GROUP},name:{AUDIO_RENDITION_NAME},default:yes")
    return " ".join(entries)


def dash_muxer_args(
    *, has_audio: bool, segment_seconds: float, audio_sets: list[str] | None = None
) -> list[str]:
    """dash muxer options for fMP4 segments; the manifest path is appended after them.

    SegmentTimeline rather than a fixed @duration: the timeline states each segment's real
    length, so boundaries stay exact when a segment is not exactly seg_duration long (29.97 fps,
    the last segment). The boundaries are the same for every video representation either way.
    """
    adaptation_sets = "id=0,streams=v id=1,streams=a" if has_audio else "id=0,streams=v"
    if audio_sets:
        # Several audio tracks: one set each (a set per language, each with its Role).
        adaptation_sets = " ".join(["id=0,streams=v", *audio_sets])
    # Negative composition offsets: each representation's first picture is shown at its first
    # decode time, 0, where the audio starts, instead of after the B-frame reordering delay.
    return [
        "-f",
        "dash",
        "-seg_duration",
        seconds_arg(segment_seconds),
        "-use_template",
        "1",
        "-use_timeline",
        "1",
        "-dash_segment_type",
        "mp4",
        "-adaptation_sets",
        adaptation_sets,
        "-init_seg_name",
        "init-$RepresentationID$.mp4",
        "-media_seg_name",
        "seg-$RepresentationID$-$Number%05d$.m4s",
        "-format_options",
        f"movflags={NEGATIVE_CTS_MOVFLAGS}",
    ]


def cmaf_muxer_args() -> list[str]:
    """Makes the dash muxer also write HLS playlists for the same segments (CMAF).

    master.m3u8 and media_<n>.m3u8 refer to the very init and segment files of manifest.mpd, so
    the output is stored once and played by both HLS and DASH players.
    """
    return [
        "-hls_playlist",
        "1",
        "-hls_master_name",
        HLS_MASTER_NAME,
        # Brands the fragments as CMAF (cmfc) on top of the dash muxer's own flags (this
        # replaces the -format_options of dash_muxer_args, so it repeats its flag).
        "-format_options",
        f"movflags=+cmaf{NEGATIVE_CTS_MOVFLAGS}",
    ]
