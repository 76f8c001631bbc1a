"""Animated GIF previews: a palette fitted to the clip, 10 fps, looping, as a pure builder.

Owns build_gif_command and the GIF limits (frame rate, default width, longest clip).
"""

from __future__ import annotations

from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.errors import INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.geometry import default_stream, scaled_to_width
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.timing import clip_window, input_args, seconds_arg

OutputType = job_pb2.OutputType

GIF_FRAME_RATE = 10
DEFAULT_GIF_WIDTH = 320
# A GIF stores every frame as a full palette image; a long one is many megabytes for a preview.
MAX_GIF_SECONDS = 60.0


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
