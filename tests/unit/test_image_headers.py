"""Pictures described from their headers say exactly what ffprobe says, on real FFmpeg output.

Every picture here is written by the installed FFmpeg: first by kiln's own thumbnail builders
(single, interval, timestamps, sprite; JPG, PNG, WebP), then in the other pixel formats and
encoder modes a custom command could produce. Each is described twice, by
describe_output_file (headers when worker.media.image_headers can vouch for them) and by
probe_output_file (ffprobe), and the two must agree field by field. Damaged pictures must
not be described from their headers: they go to ffprobe, as before this module existed.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from worker.media.commands import build_command
from worker.media.describe import describe_output_file, probe_output_file
from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.ffmpeg import run_ffmpeg
from worker.media.image_headers import FIRST_PROBE_BYTES, describe_image
from worker.media.probe import probe

T = job_pb2.OutputType
M = job_pb2.ThumbnailMode
FIELDS = (
    "path",
    "size_bytes",
    "mime_type",
    "container",
    "codec",
    "width",
    "height",
    "duration_seconds",
    "bitrate",
)
FORMATS = {T.OUTPUT_TYPE_JPG: "jpg", T.OUTPUT_TYPE_PNG: "png", T.OUTPUT_TYPE_WEBP: "webp"}


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=120,
    )


def fields(described: job_pb2.OutputFile) -> dict[str, object]:
    return {name: getattr(described, name) for name in FIELDS}


async def assert_same_as_ffprobe(path: Path) -> job_pb2.OutputFile:
    described = await describe_output_file(path, path.parent)
    assert fields(described) == fields(await probe_output_file(path, path.parent))
    return described


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "3"),
        *("-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)),
    )
    return path


def thumbnail_specs() -> list[tuple[str, job_pb2.OutputSpec]]:
    modes = {
        "single": job_pb2.ThumbnailSpec(time_seconds=1.0),
        "single-narrow": job_pb2.ThumbnailSpec(time_seconds=2.5, width=162),
        "interval": job_pb2.ThumbnailSpec(mode=M.THUMBNAIL_MODE_INTERVAL, interval_seconds=1.0),
        "timestamps": job_pb2.ThumbnailSpec(
            mode=M.THUMBNAIL_MODE_TIMESTAMPS, timestamps_seconds=[0.0, 2.0], width=320
        ),
        "sprite": job_pb2.ThumbnailSpec(
            mode=M.THUMBNAIL_MODE_SPRITE, interval_seconds=0.5, columns=3
        ),
    }
    return [
        (f"{extension}-{mode}", job_pb2.OutputSpec(type=kind, thumbnail=thumbnail))
        for kind, extension in FORMATS.items()
        for mode, thumbnail in modes.items()
    ]


@pytest.mark.parametrize(("name", "spec"), thumbnail_specs(), ids=lambda value: value)
async def test_kiln_thumbnails_are_described_as_ffprobe_describes_them(
    clip: Path, tmp_path: Path, name: str, spec: job_pb2.OutputSpec
) -> None:
    info = await probe(str(clip))
    plan = build_command(input_path=str(clip), spec=spec, info=info, out_dir=tmp_path)
    await run_ffmpeg(
        plan.argv,
        duration=plan.expected_duration,
        on_progress=None,
        cancel_event=asyncio.Event(),
    )
    pictures = [path for path in plan.outputs if path.suffix != ".vtt"]
    assert pictures
    for picture in pictures:
        # The header path answered (not ffprobe), and said what ffprobe says.
        assert describe_image(picture) is not None, picture.name
        described = await assert_same_as_ffprobe(picture)
        assert described.width > 0
        assert described.height > 0


# Pictures a custom command (or a future builder) may write: other pixel formats, encoder
# modes and sizes (what follows testsrc2's size= may add filters). `by_headers` is whether
# image_headers vouches for them.
OTHER_PICTURES = [
    ("gray.jpg", ["-pix_fmt", "gray", "-c:v", "mjpeg", "-q:v", "3"], "640x360", True),
    ("yuv444.jpg", ["-pix_fmt", "yuvj444p", "-c:v", "mjpeg"], "640x360", True),
    ("yuv422.jpeg", ["-pix_fmt", "yuvj422p", "-c:v", "mjpeg"], "640x360", True),
    ("odd.jpg", ["-pix_fmt", "yuvj420p", "-c:v", "mjpeg", "-q:v", "2"], "161x91", True),
    ("default-huffman.jpg", ["-c:v", "mjpeg", "-huffman", "default"], "640x360", True),
    ("rgba.png", ["-pix_fmt", "rgba", "-c:v", "png"], "640x360", True),
    ("gray16.png", ["-pix_fmt", "gray16be", "-c:v", "png"], "320x180", True),
    ("rgb48.png", ["-pix_fmt", "rgb48be", "-c:v", "png"], "320x180", True),
    ("palette.png", ["-pix_fmt", "pal8", "-c:v", "png"], "320x180", True),
    ("monochrome.png", ["-pix_fmt", "monob", "-c:v", "png"], "321x181", True),
    ("gray-alpha.png", ["-pix_fmt", "ya8", "-c:v", "png"], "320x180", True),
    ("lossless.webp", ["-c:v", "libwebp", "-lossless", "1"], "640x360", True),
    (
        "lossless-rgba.webp",
        ["-pix_fmt", "rgba", "-c:v", "libwebp", "-lossless", "1"],
        "99x77",
        True,
    ),
    ("odd.webp", ["-c:v", "libwebp", "-quality", "50"], "161x91", True),
    # Lossy with alpha is an extended (VP8X) WebP: left to ffprobe.
    (
        "alpha.webp",
        ["-pix_fmt", "yuva420p", "-c:v", "libwebp", "-lossless", "0"],
        "320x180,format=rgba,colorchannelmixer=aa=0.5",
        False,
    ),
    # Small enough for ffprobe's jpeg_pipe demuxer to see it whole: left to ffprobe.
    ("tiny.jpg", ["-c:v", "mjpeg", "-q:v", "2"], "48x32", False),
]


@pytest.mark.parametrize(
    ("name", "options", "size", "by_headers"),
    OTHER_PICTURES,
    ids=[picture[0] for picture in OTHER_PICTURES],
)
async def test_other_ffmpeg_pictures_are_described_as_ffprobe_describes_them(
    tmp_path: Path, name: str, options: list[str], size: str, by_headers: bool
) -> None:
    path = tmp_path / name
    ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=size={size}", "-frames:v", "1"),
        *options,
        *("-update", "1", "-f", "image2", str(path)),
    )
    assert (describe_image(path) is not None) is by_headers
    described = await assert_same_as_ffprobe(path)
    assert described.width > 0


async def test_the_jpeg_probe_threshold_decides_the_container(tmp_path: Path) -> None:
    """Either side of ffprobe's first probe buffer: jpeg_pipe when the whole JPEG fits in it
    (left to ffprobe), image2 when it does not (described from the headers)."""
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    for path, size in ((small, "64x48"), (large, "160x120")):
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}", "-frames:v", "1", str(path))
    assert small.stat().st_size <= FIRST_PROBE_BYTES < large.stat().st_size
    assert describe_image(small) is None
    assert (await assert_same_as_ffprobe(small)).container == "jpeg_pipe"
    assert (await assert_same_as_ffprobe(large)).container == "image2"


@pytest.fixture(scope="module")
def good_pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("good")
    written = {}
    for extension, options in {
        "jpg": ["-c:v", "mjpeg", "-q:v", "2"],
        "png": ["-c:v", "png"],
        "webp": ["-c:v", "libwebp", "-quality", "80", "-lossless", "0"],
    }.items():
        path = folder / f"output.{extension}"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180", "-frames:v", "1", *options, str(path))
        assert describe_image(path) is not None
        written[extension] = path.read_bytes()
    return written


DAMAGES = {
    "half": lambda data: data[: len(data) // 2],
    "one-byte-short": lambda data: data[:-1],
    "headers-only": lambda data: data[:100],
    "trailing-garbage": lambda data: data + b"\0garbage",
}


@pytest.mark.parametrize("extension", ["jpg", "png", "webp"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_damaged_pictures_go_to_ffprobe_as_before(
    good_pictures: dict[str, bytes], tmp_path: Path, extension: str, damage: str
) -> None:
    path = tmp_path / f"output.{extension}"
    path.write_bytes(DAMAGES[damage](good_pictures[extension]))
    assert describe_image(path) is None
    await assert_same_as_ffprobe(path)


async def test_a_png_with_a_bad_crc_goes_to_ffprobe(
    good_pictures: dict[str, bytes], tmp_path: Path
) -> None:
    data = good_pictures["png"]
    crc_of_last_idat = len(data) - 12 - 4  # IEND is the last 12 bytes
    damaged = bytearray(data)
    damaged[crc_of_last_idat] ^= 0xFF
    path = tmp_path / "output.png"
    path.write_bytes(bytes(damaged))
    assert describe_image(path) is None
    await assert_same_as_ffprobe(path)


@pytest.mark.parametrize("extension", ["jpg", "png", "webp"])
async def test_an_empty_picture_is_still_an_encode_failure(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"output.{extension}"
    path.write_bytes(b"")
    assert describe_image(path) is None
    with pytest.raises(MediaError) as raised:
        await describe_output_file(path, tmp_path)
    assert raised.value.code == ENCODE_FAILED


async def test_content_that_does_not_match_the_name_goes_to_ffprobe(
    good_pictures: dict[str, bytes], tmp_path: Path
) -> None:
    """ffprobe picks PNG's demuxer from the bytes whatever the name says; the headers path
    reads a file only as the format its name gives, and leaves the rest to ffprobe."""
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(good_pictures["png"])
    assert describe_image(path) is None
    assert (await assert_same_as_ffprobe(path)).container == "png_pipe"


async def test_a_path_ffprobe_would_read_as_a_pattern_goes_to_ffprobe(
    good_pictures: dict[str, bytes], tmp_path: Path
) -> None:
    folder = tmp_path / "odd{name"
    folder.mkdir()
    path = folder / "output.jpg"
    path.write_bytes(good_pictures["jpg"])
    assert describe_image(path) is None
    await assert_same_as_ffprobe(path)
