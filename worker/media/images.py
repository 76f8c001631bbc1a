"""Thumbnails: a single still image, or a series (INTERVAL, TIMESTAMPS, SPRITE), as pure builders.

Owns build_thumbnail_command, which makes SINGLE images itself and hands the other modes to
build_image_series_command, the series builders and their sampling helpers (frames_every,
sampling_filter). Formats and the one-frame output options are worker.media.image_formats;
a sprite's WebVTT map (sprite_vtt) is written from its SpriteSheet once ffmpeg succeeded,
by worker.media.packaging.finalize_output.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.errors import INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.geometry import default_stream, scaled_to_width
from worker.media.image_formats import IMAGE_FORMATS, ImageFormat, one_image_args
from worker.media.plan import COMMON_FLAGS, CommandPlan, SpriteSheet
from worker.media.timing import (
    clip_window,
    frame_duration_of,
    input_args,
    last_frame_seek,
    seconds_arg,
)

ThumbnailMode = job_pb2.ThumbnailMode
OutputType = job_pb2.OutputType

DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_SPRITE_TILE_WIDTH = 160
DEFAULT_SPRITE_COLUMNS = 5
# WebP's limit on either side (JPEG allows 65535); one limit keeps sprites format-independent.
MAX_SPRITE_SIDE = 16383


def build_thumbnail_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """Still images (JPG, PNG or WEBP) as spec.thumbnail.mode says.

    SINGLE (the default) is one image at spec.thumbnail.time_seconds into the clip; INTERVAL,
    TIMESTAMPS and SPRITE are built by build_image_series_command.
    """
    image = IMAGE_FORMATS.get(spec.type)
    if image is None:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not a still image type")
    mode = spec.thumbnail.mode or job_pb2.ThumbnailMode.THUMBNAIL_MODE_SINGLE
    if mode != job_pb2.ThumbnailMode.THUMBNAIL_MODE_SINGLE:
        return build_image_series_command(
            input_path=input_path, spec=spec, info=info, out_dir=out_dir, ffmpeg=ffmpeg
        )
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")

    notes: list[str] = []
    clip_start, clip_duration = clip_window(spec.clip, info.duration_seconds)
    frame_duration = frame_duration_of(video)
    latest = last_frame_seek(clip_duration, frame_duration)
    at = spec.thumbnail.time_seconds
    if at > latest:
        notes.append(f"thumbnail at {at:g} s moved to {latest:g} s, the last frame")
        at = latest

    width, height = scaled_to_width(video, spec.thumbnail.width)
    output = out_dir / image.file_name
    argv = [
        ffmpeg,
        *COMMON_FLAGS,
        *input_args(input_path, clip_start + at),
        *one_image_args(f"0:{video.index}", width, height, image, output),
    ]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=frame_duration)


def build_image_series_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """INTERVAL, TIMESTAMPS or SPRITE images in the format of spec.type (JPG, PNG or WEBP)."""
    image = IMAGE_FORMATS.get(spec.type)
    if image is None:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not a still image type")
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")
    builders = {
        ThumbnailMode.THUMBNAIL_MODE_INTERVAL: build_interval_command,
        ThumbnailMode.THUMBNAIL_MODE_TIMESTAMPS: build_timestamps_command,
        ThumbnailMode.THUMBNAIL_MODE_SPRITE: build_sprite_command,
    }
    mode = spec.thumbnail.mode
    if builder := builders.get(mode):
        return builder(
            input_path=input_path,
            spec=spec,
            info=info,
            video=video,
            image=image,
            out_dir=out_dir,
            ffmpeg=ffmpeg,
        )
    raise OutputSpecError(f"thumbnail mode {ThumbnailMode.Name(mode)} is not an image series")


def build_interval_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    video: job_pb2.StreamInfo,
    image: ImageFormat,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """One image every interval_seconds from the clip start: thumb_0001.jpg, thumb_0002.jpg..."""
    start, duration = clip_window(spec.clip, info.duration_seconds)
    interval = _interval(spec.thumbnail)
    count = frames_every(interval, duration)
    width, height = scaled_to_width(video, spec.thumbnail.width)
    extension = Path(image.file_name).suffix

    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), "-map", f"0:{video.index}"]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    argv += [
        "-vf",
        f"{sampling_filter(interval)},scale={width}:{height},setsar=1",
        "-frames:v",
        str(count),
        *image.encoder_args,
        "-start_number",
        "1",
        "-f",
        "image2",
        str(out_dir / f"thumb_%04d{extension}"),
    ]
    outputs = [out_dir / f"thumb_{number:04d}{extension}" for number in range(1, count + 1)]
    return CommandPlan(argv=argv, outputs=outputs, expected_duration=duration)


def build_timestamps_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    video: job_pb2.StreamInfo,
    image: ImageFormat,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """One image per listed time (seconds into the clip), in list order: thumb_0001.jpg, ...

    One process, with the input opened once per time and seeked before decoding (-ss before
    -i): each image costs a seek and the decode of at most one GOP, whereas a select filter
    would decode the whole input up to the last time.
    """
    times = list(spec.thumbnail.timestamps_seconds)
    if not times:
        raise OutputSpecError("TIMESTAMPS thumbnails need at least one timestamp")
    if any(time < 0 or not math.isfinite(time) for time in times):
        raise OutputSpecError("thumbnail timestamps must be finite and not negative")
    notes: list[str] = []
    start, duration = clip_window(spec.clip, info.duration_seconds)
    frame_duration = frame_duration_of(video)
    latest = last_frame_seek(duration, frame_duration)
    width, height = scaled_to_width(video, spec.thumbnail.width)
    extension = Path(image.file_name).suffix

    argv = [ffmpeg, *COMMON_FLAGS]
    for number, time in enumerate(times, start=1):
        if time > latest:
            notes.append(f"thumbnail {number} at {time:g} s moved to {latest:g} s, the last frame")
        argv += ["-ss", seconds_arg(start + min(time, latest)), "-i", input_path]
    outputs = []
    for number in range(1, len(times) + 1):
        output = out_dir / f"thumb_{number:04d}{extension}"
        outputs.append(output)
        argv += one_image_args(f"{number - 1}:{video.index}", width, height, image, output)
    return CommandPlan(argv=argv, outputs=outputs, notes=notes, expected_duration=frame_duration)


def build_sprite_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    video: job_pb2.StreamInfo,
    image: ImageFormat,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """Frames every interval_seconds as tiles of one image (sprite.jpg), row by row.

    finalize_output writes sprite.vtt from plan.finalize, mapping each interval to its tile.
    """
    notes: list[str] = []
    start, duration = clip_window(spec.clip, info.duration_seconds)
    interval = _interval(spec.thumbnail)
    tile_width, tile_height = scaled_to_width(
        video, spec.thumbnail.width or DEFAULT_SPRITE_TILE_WIDTH
    )
    columns = spec.thumbnail.columns or DEFAULT_SPRITE_COLUMNS
    if columns <= 0 or columns * tile_width > MAX_SPRITE_SIDE:
        raise OutputSpecError(
            f"{columns} columns of {tile_width} px do not fit in {MAX_SPRITE_SIDE} px"
        )
    max_rows = MAX_SPRITE_SIDE // tile_height
    count = frames_every(interval, duration)
    if math.ceil(count / columns) > max_rows:
        requested = interval
        # Whole tenths of a second keep the VTT times readable.
        interval = math.ceil(duration / (max_rows * columns) * 10) / 10
        count = frames_every(interval, duration)
        notes.append(
            f"sprite: interval raised from {requested:g} s to {interval:g} s to fit "
            f"{MAX_SPRITE_SIDE} px"
        )
    columns = min(columns, count)
    rows = math.ceil(count / columns)

    extension = Path(image.file_name).suffix
    sheet = SpriteSheet(
        image=out_dir / f"sprite{extension}",
        vtt=out_dir / "sprite.vtt",
        tile_width=tile_width,
        tile_height=tile_height,
        columns=columns,
        tile_count=count,
        interval_seconds=interval,
        duration_seconds=duration,
    )
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), "-map", f"0:{video.index}"]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    argv += [
        "-vf",
        f"{sampling_filter(interval)},scale={tile_width}:{tile_height},setsar=1,"
        f"tile={columns}x{rows}",
        "-frames:v",
        "1",
        *image.encoder_args,
        "-update",
        "1",
        "-f",
        "image2",
        str(sheet.image),
    ]
    return CommandPlan(
        argv=argv,
        outputs=[sheet.image, sheet.vtt],
        notes=notes,
        expected_duration=duration,
        finalize=sheet,
    )


def frames_every(interval: float, duration: float) -> int:
    """How many frames sampling at 0, interval, 2 x interval, ... takes from `duration` s."""
    return max(1, math.ceil(duration / interval - 1e-6))


def sampling_filter(interval: float) -> str:
    """An fps filter yielding the frame shown at 0, interval, 2 x interval, ...

    round=up makes output frame k the last input frame at or before k x interval; the default
    (near) would take one up to half an interval later.
    """
    rate = 1 / Fraction(repr(interval)).limit_denominator(1000)
    return f"fps={rate.numerator}/{rate.denominator}:round=up"


def _interval(thumbnail: job_pb2.ThumbnailSpec) -> float:
    interval = thumbnail.interval_seconds or DEFAULT_INTERVAL_SECONDS
    if interval <= 0 or not math.isfinite(interval):
        raise OutputSpecError(f"thumbnail interval {interval:g} s is not positive")
    return interval


def sprite_vtt(sheet: SpriteSheet) -> str:
    """WebVTT cues mapping each interval to its tile: "sprite.jpg#xywh=x,y,w,h"."""
    lines = ["WEBVTT", ""]
    for tile in range(sheet.tile_count):
        start = tile * sheet.interval_seconds
        if start >= sheet.duration_seconds:
            break
        end = min(start + sheet.interval_seconds, sheet.duration_seconds)
        x = (tile % sheet.columns) * sheet.tile_width
        y = (tile // sheet.columns) * sheet.tile_height
        lines += [
            f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}",
            f"{sheet.image.name}#xywh={x},{y},{sheet.tile_width},{sheet.tile_height}",
            "",
        ]
    return "\n".join(lines)


def vtt_timestamp(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    return f"{hours:02d}:{minutes:02d}:{milliseconds / 1000:06.3f}"
