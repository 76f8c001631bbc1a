"""The entry point of command building: picks the builder for an output spec.

Owns build_command only, the top of the worker.media layering: it imports every builder
(progressive, audio, images, gif, ladder, concat, custom, stream_copy) and none of them
imports it. Each
builder is a pure function of (spec, probed input, paths) returning a CommandPlan, so every
decision can be tested by looking at the argv.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kiln.v1 import job_pb2

from common.content_keys import OutputEncryption
from common.output_types import ADAPTIVE, ANIMATED_IMAGES, AUDIO_ONLY, PROGRESSIVE, STILL_IMAGES
from worker.media.audio import build_audio_command
from worker.media.audio_tracks import PreparedAudio
from worker.media.concat import build_concat_command
from worker.media.custom import build_custom_command
from worker.media.errors import OutputSpecError
from worker.media.gif import build_gif_command
from worker.media.images import build_thumbnail_command
from worker.media.ladder import build_ladder_command
from worker.media.loudness import SecondPass
from worker.media.overlays import OverlayDrawing
from worker.media.plan import CommandPlan
from worker.media.progressive import build_progressive_command
from worker.media.stream_copy import build_stream_copy_command
from worker.media.text_tracks import PreparedTrack, carried

OutputType = job_pb2.OutputType


def build_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
    extra_inputs: Sequence[tuple[str, job_pb2.InputInfo]] = (),
    loudness: SecondPass | None = None,
    overlays: OverlayDrawing | None = None,
    text_tracks: Sequence[PreparedTrack] = (),
    audio_tracks: Sequence[PreparedAudio] = (),
    encryption: OutputEncryption | None = None,
) -> CommandPlan:
    """Picks the builder for spec.type.

    extra_inputs are (path, probed info) of inputs concatenated after input_path, in order;
    only progressive and audio outputs can be made of several inputs. loudness is the first
    pass's measurement when the spec asks for normalization (worker.media.loudness).
    overlays are the spec's overlays with their staged images (worker.media.overlays); the
    server takes them for progressive and adaptive outputs of one input only.
    text_tracks are the spec's text tracks, read (worker.tasks.text); the plan carries them to
    finalize, which writes them beside ladders and progressive files.
    audio_tracks (worker.tasks.audio_tracks) replace the input's default audio stream; the
    plan carries them to finalize, which names them in a ladder's manifests.
    encryption (the task's keys) is for ladders of one input (worker.media.encryption).
    """
    if overlays is not None and (
        spec.HasField("custom") or extra_inputs or spec.type not in (*PROGRESSIVE, *ADAPTIVE)
    ):
        raise OutputSpecError("overlays are drawn on the video of one input's MP4/WEBM or ladder")
    if loudness is not None and (spec.HasField("custom") or extra_inputs):
        raise OutputSpecError("loudness is normalized for one input without a custom command")
    if text_tracks and (
        spec.HasField("custom") or extra_inputs or spec.type not in (*PROGRESSIVE, *ADAPTIVE)
    ):
        raise OutputSpecError("text tracks go with one input's video outputs, not custom ones")
    if audio_tracks and (
        spec.HasField("custom")
        or extra_inputs
        or loudness is not None
        or spec.type not in (*PROGRESSIVE, *ADAPTIVE)
    ):
        raise OutputSpecError(
            "audio tracks go with one input's video outputs without custom commands, each "
            "track normalized on its own (not by the output's one loudness pass)"
        )
    if encryption is not None and (
        spec.HasField("custom") or extra_inputs or spec.type not in ADAPTIVE
    ):
        raise OutputSpecError(
            f"encryption: {OutputType.Name(spec.type)} outputs cannot be encrypted "
            "(HLS, DASH and CMAF ladders of one input can)"
        )
    plan = _build(
        input_path,
        spec,
        info,
        out_dir,
        ffmpeg,
        extra_inputs,
        loudness,
        overlays,
        text_tracks,
        list(audio_tracks),
        encryption,
    )
    plan.audio_tracks = list(audio_tracks)
    # A burned-in track is in the picture: finalize writes only the carried ones.
    plan.text_tracks = carried(list(text_tracks))
    return plan


def _build(
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str,
    extra_inputs: Sequence[tuple[str, job_pb2.InputInfo]],
    loudness: SecondPass | None,
    overlays: OverlayDrawing | None,
    text_tracks: Sequence[PreparedTrack],
    audio_tracks: list[PreparedAudio],
    encryption: OutputEncryption | None = None,
) -> CommandPlan:
    if spec.HasField("custom"):
        return build_custom_command(
            input_path=input_path,
            spec=spec,
            info=info,
            out_dir=out_dir,
            ffmpeg=ffmpeg,
            extra_inputs=extra_inputs,
        )
    if (
        spec.recipe.name
        and not extra_inputs
        and overlays is None
        and not text_tracks
        and not audio_tracks
    ):
        # web_ready and extract_audio remux when the input allows; else the expanded spec is
        # encoded like any other.
        copied = build_stream_copy_command(
            input_path=input_path, spec=spec, info=info, out_dir=out_dir, ffmpeg=ffmpeg
        )
        if copied is not None:
            return copied
    if extra_inputs:
        return build_concat_command(
            inputs=[(input_path, info), *extra_inputs], spec=spec, out_dir=out_dir, ffmpeg=ffmpeg
        )
    # One builder per family of the catalogue (each builder's own table, containers or image
    # formats, covers its family: tests/unit/test_output_types.py). The first three encode audio.
    if spec.type in PROGRESSIVE:
        return build_progressive_command(
            input_path=input_path,
            spec=spec,
            info=info,
            out_dir=out_dir,
            ffmpeg=ffmpeg,
            loudness=loudness,
            overlays=overlays,
            text_tracks=list(text_tracks),
            audio_tracks=audio_tracks,
        )
    if spec.type in AUDIO_ONLY:
        return build_audio_command(
            input_path=input_path,
            spec=spec,
            info=info,
            out_dir=out_dir,
            ffmpeg=ffmpeg,
            loudness=loudness,
        )
    if spec.type in ADAPTIVE:
        return build_ladder_command(
            input_path=input_path,
            spec=spec,
            info=info,
            out_dir=out_dir,
            ffmpeg=ffmpeg,
            loudness=loudness,
            overlays=overlays,
            text_tracks=list(text_tracks),
            audio_tracks=audio_tracks,
            encryption=encryption,
        )
    picture_builders = (
        (STILL_IMAGES, build_thumbnail_command),
        (ANIMATED_IMAGES, build_gif_command),
    )
    for types, builder in picture_builders:
        if spec.type in types:
            return builder(
                input_path=input_path, spec=spec, info=info, out_dir=out_dir, ffmpeg=ffmpeg
            )
    raise OutputSpecError(f"output type {OutputType.Name(spec.type)} is not built by build_command")
