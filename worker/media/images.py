"""Image series (INTERVAL, TIMESTAMPS, SPRITE thumbnails) and animated GIFs, as pure builders.

SINGLE thumbnails stay in worker.media.commands.build_thumbnail_command, which hands the other
modes to build_image_series_command.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.commands import (
    COMMON_FLAGS,
    IMAGE_FORMATS,
    CommandPlan,
    ImageFormat,
    OutputSpecError,
    SpriteSheet,
    clip_window,
    default_stream,
    frame_duration_of,
    input_args,
    last_frame_seek,
    one_image_args,
    scaled_to_width,
    seconds_arg,
)
from worker.media.errors import INPUT_NO_VIDEO, MediaError

ThumbnailMode = job_pb2.ThumbnailMode
OutputType = job_pb2.OutputType

DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_SPRITE_TILE_WIDTH = 160
DEFAULT_SPRITE_COLUMNS = 5
# WebP's limit on either side (JPEG allows 65535); one limit keeps sprites format-independent.
MAX_SPRITE_SIDE = 16383

GIF_FRAME_RATE = 10
DEFAULT_GIF_WIDTH = 320
# A GIF stores every frame as a full palette image; a long one is many megabytes for a preview.
MAX_GIF_SECONDS = 60.0


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
    arguments = {
        "input_path": input_path,
        "spec": spec,
        "info": info,
        "video": video,
        "image": image,
        "out_dir": out_dir,
        "ffmpeg": ffmpeg,
    }
    mode = spec.thumbnail.mode
    if mode == ThumbnailMode.THUMBNAIL_MODE_INTERVAL:
        return build_interval_command(**arguments)
    if mode == ThumbnailMode.THUMBNAIL_MODE_TIMESTAMPS:
        return build_timestamps_command(**arguments)
    if mode == ThumbnailMode.THUMBNAIL_MODE_SPRITE:
        return build_sprite_command(**arguments)
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


def build_gif_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """An animated GIF of the clip: 10 fps, thumbnail.width wide (320 when unset), looping.

    GIF has 256 colours per frame: palettegen picks them from the clip itself and paletteuse
    maps every frame to them, which looks far better than ffmpeg's fixed default palette.
    """
    if spec.type != OutputType.OUTPUT_TYPE_GIF:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not GIF")
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")
    notes: list[str] = []
    start, duration = clip_window(spec.clip, info.duration_seconds)
    if duration > MAX_GIF_SECONDS:
        notes.append(f"gif: {duration:g} s shortened to {MAX_GIF_SECONDS:g} s")
        duration = MAX_GIF_SECONDS
    width, height = scaled_to_width(video, spec.thumbnail.width or DEFAULT_GIF_WIDTH)
    output = out_dir / "output.gif"
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), "-map", f"0:{video.index}"]
    if spec.clip.duration_seconds > 0 or duration < info.duration_seconds - start:
        argv += ["-t", seconds_arg(duration)]
    argv += [
        "-vf",
        f"fps={GIF_FRAME_RATE},scale={width}:{height}:flags=lanczos,setsar=1,"
        "split[frames][analysed];[analysed]palettegen[palette];[frames][palette]paletteuse",
        # 0 loops forever, as GIF previews are expected to.
        "-loop",
        "0",
        "-f",
        "gif",
        str(output),
    ]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)


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
