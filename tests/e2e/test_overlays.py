"""Overlays through a running server, read back from what it serves: a half-transparent red
square on two rungs of a chunked HLS ladder (each at its own size), its time window across
chunks, a text overlay drawn literally, an image placed by x/y on an MP4; images the worker
refuses and requests Create refuses. One cluster for the module, with chunking turned on
for outputs longer than 2.5 s so the ladder's chunks carry the overlay."""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2, preset_service_pb2, preset_service_pb2_grpc

from tests.support.violations import violations_from_connect

from .cluster import running_cluster
from .connect_json import ConnectJsonClient
from .jobs import run_to_end

H264 = job_pb2.VIDEO_CODEC_H264
GREY = 128
# Red at 50 % over grey 128: (255 + 128) / 2 and 128 / 2.
BLEND = (191.5, 64.0, 64.0)
# yuv420p and the encoder move a flat colour by a few levels.
TOLERANCE = 12
SETTINGS = {"KILN_CHUNK_THRESHOLD_SECONDS": "2.5", "KILN_CHUNK_SECONDS": "1"}


@pytest.fixture(scope="module")
def overlay_cluster(sqlite_backend_url, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("overlays")
    with running_cluster(sqlite_backend_url, root, media_root, settings=SETTINGS) as (
        cluster,
        server,
    ):
        cluster.start_worker(server, concurrency=2)
        yield cluster, server


@pytest.fixture(scope="module")
def server(overlay_cluster):
    return overlay_cluster[1]


@pytest.fixture(scope="module")
def api_key(overlay_cluster):
    return overlay_cluster[0].create_key("org_overlays")


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def ffmpeg(*args: str) -> bytes:
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    return subprocess.run(argv, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def grey_source(media_root) -> Path:
    """3 s of flat grey 360p at 25 fps, no audio."""
    path = media_root / "grey360.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", f"color=c=0x{GREY:02x}{GREY:02x}{GREY:02x}:s=640x360:r=25:d=3"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)),
    )
    return path


@pytest.fixture(scope="module")
def red_square(media_root) -> Path:
    path = media_root / "red.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64,format=rgba", "-frames:v", "1", str(path))
    return path


def frame(url: str, seconds: float, width: int, height: int) -> bytes:
    """The picture at `seconds` as packed RGB."""
    raw = ffmpeg(
        *("-ss", str(seconds), "-i", url, "-frames:v", "1"),
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"),
    )
    assert len(raw) == width * height * 3, (url, len(raw))
    return raw


Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)


def mean_colour(picture: bytes, width: int, box: Box) -> tuple[float, ...]:
    left, top, right, bottom = box
    sums = [0, 0, 0]
    for y in range(top, bottom):
        row = picture[(y * width + left) * 3 : (y * width + right) * 3]
        for channel in range(3):
            sums[channel] += sum(row[channel::3])
    count = (right - left) * (bottom - top)
    return tuple(total / count for total in sums)


def inner(box: Box, border: int = 4) -> Box:
    left, top, right, bottom = box
    return left + border, top + border, right - border, bottom - border


def off_grey_pixels(
    picture: bytes, width: int, height: int, skip: list[Box]
) -> list[tuple[int, int]]:
    """Pixels (of every 4th column and row) outside the boxes that are not the source's grey."""
    found = []
    for y in range(0, height, 4):
        for x in range(0, width, 4):
            # The encoder's blocks smear an edge by a few pixels around it.
            if any(b[0] - 8 <= x < b[2] + 8 and b[1] - 8 <= y < b[3] + 8 for b in skip):
                continue
            at = (y * width + x) * 3
            if max(abs(value - GREY) for value in picture[at : at + 3]) > TOLERANCE:
                found.append((x, y))
    return found


def square_box(width: int) -> Box:
    """Where the top-right square of width 0.2 and margin 0.02 of the frame width lands."""
    side, margin = round(0.2 * width), round(0.02 * width)
    return width - margin - side, margin, width - margin, margin + side


@pytest.fixture(scope="module")
def overlaid(server, auth, grey_source, red_square) -> job_pb2.Job:
    """One job: a chunked two-rung HLS ladder with a red square (from 1.4 s) and a text
    overlay, and a single-pass MP4 with the square placed by x/y."""
    square = job_pb2.Overlay(
        image=job_pb2.OverlayImage(url=f"file://{red_square}", width_fraction=0.2),
        position=job_pb2.OVERLAY_POSITION_TOP_RIGHT,
        opacity=0.5,
        # In the middle of the second 1 s chunk: drawn in its own time, it would never show.
        start_seconds=1.4,
    )
    text = job_pb2.Overlay(
        text=job_pb2.OverlayText(text="PREVIEW %{pts}", height_fraction=0.1),
        position=job_pb2.OVERLAY_POSITION_BOTTOM_LEFT,
    )
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{grey_source}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_HLS,
                video=[
                    job_pb2.VideoVariant(codec=H264, resolution="360p"),
                    job_pb2.VideoVariant(codec=H264, resolution="320x180"),
                ],
                segments=job_pb2.SegmentSpec(duration_seconds=1),
                overlays=[square, text],
            ),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=H264, resolution="360p")],
                # 2 s: under the chunking threshold, so this one runs in one pass.
                clip=job_pb2.ClipSpec(duration_seconds=2),
                overlays=[
                    job_pb2.Overlay(
                        image=job_pb2.OverlayImage(url=f"file://{red_square}", width_fraction=0.1),
                        x=0.25,
                        y=0.5,
                    )
                ],
            ),
        ],
    )
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, (job.error, [o.error for o in job.outputs])
    return job


@pytest.mark.parametrize(("rung", "width", "height"), [("v0", 640, 360), ("v1", 320, 180)])
def test_square_blends_at_its_place_on_every_rung_and_nowhere_else(
    overlay_cluster, overlaid, rung, width, height
):
    cluster, _ = overlay_cluster
    ladder = overlaid.outputs[0]
    # The ladder really was encoded in chunks.
    tasks = cluster_task_kinds(cluster, overlaid.id)
    assert tasks.count("CHUNK") == 3, tasks
    url = f"{ladder.playback_base_url}{rung}/index.m3u8"
    box = square_box(width)
    text_band = (0, round(height * 0.75), round(width * 0.75), height)

    after = frame(url, 1.8, width, height)
    colour = mean_colour(after, width, inner(box))
    assert all(abs(got - want) <= TOLERANCE for got, want in zip(colour, BLEND, strict=True)), (
        colour
    )
    assert off_grey_pixels(after, width, height, [box, text_band]) == []

    # Before its start the square's place is the source's grey.
    before = frame(url, 1.2, width, height)
    colour = mean_colour(before, width, inner(box))
    assert all(abs(got - GREY) <= TOLERANCE for got in colour), colour


def test_text_is_drawn_literally(overlaid):
    url = f"{overlaid.outputs[0].playback_base_url}v0/index.m3u8"
    width, height = 640, 360
    band = (0, round(height * 0.75), round(width * 0.75), height)
    early, late = frame(url, 0.3, width, height), frame(url, 2.6, width, height)
    drawn = len(off_grey_pixels(early, width, height, [(0, 0, width, band[1])]))
    assert drawn > 50, drawn
    # "%{pts}" expanded would print the time, which differs between the two pictures.
    left, top, right, bottom = band
    changed = sum(
        1
        for y in range(top, bottom)
        for at in range((y * width + left) * 3, (y * width + right) * 3, 3)
        if max(abs(a - b) for a, b in zip(early[at : at + 3], late[at : at + 3], strict=True)) > 40
    )
    assert changed < 20, changed


def test_image_placed_by_x_and_y_on_a_progressive_output(overlaid):
    mp4 = overlaid.outputs[1]
    width, height = 640, 360
    picture = frame(mp4.playback_url, 0.5, width, height)
    side = round(0.1 * width)
    box = (160, 180, 160 + side, 180 + side)
    colour = mean_colour(picture, width, inner(box))
    assert colour[0] >= 255 - TOLERANCE and max(colour[1:]) <= TOLERANCE, colour
    assert off_grey_pixels(picture, width, height, [box]) == []


def cluster_task_kinds(cluster, job_id: str) -> list[str]:
    database = cluster.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT kind FROM tasks WHERE job_id = ?", (job_id,))
        return [row[0] for row in rows]


def png_of_size(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit greyscale PNG, all black: 20000x20000 fits in a few tens of kB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row = b"\x00" + bytes((width + 7) // 8)
    data = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def test_images_the_worker_cannot_use_fail_their_output(server, auth, media_root, grey_source):
    """Not an image, a 20000x20000 PNG, and a host the input policy refuses: each output fails
    with its own code and a message naming the overlay. The host is in a saved preset, whose
    image URL Create does not see: the worker's egress proxy refuses it (SSRF)."""
    text_file = media_root / "notes.png"
    text_file.write_text("this is not a picture\n")
    huge = png_of_size(media_root / "huge.png", 20000, 20000)

    def output(url: str) -> job_pb2.OutputSpec:
        return job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_MP4,
            video=[job_pb2.VideoVariant(codec=H264, resolution="240p")],
            clip=job_pb2.ClipSpec(duration_seconds=1),
            overlays=[job_pb2.Overlay(image=job_pb2.OverlayImage(url=url))],
        )

    presets = preset_service_pb2_grpc.PresetServiceStub(grpc.insecure_channel(server.grpc_target))
    loopback = presets.CreatePreset(
        preset_service_pb2.CreatePresetRequest(
            preset=preset_service_pb2.Preset(
                name="loopback logo", spec=output("http://localhost:9/logo.png")
            )
        ),
        metadata=auth,
    ).preset
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{grey_source}",
        outputs=[
            output(f"file://{text_file}"),
            output(f"file://{huge}"),
            job_pb2.OutputSpec(preset=loopback.id),
        ],
    )
    job = server.job_stub().Create(request, metadata=auth).job
    job = run_to_end(server, auth, job.id)
    assert job.status == job_pb2.JOB_STATUS_FAILED
    not_image, too_big, refused = (o.error for o in job.outputs)
    assert not_image.code == "OVERLAY_INVALID" and "not a PNG" in not_image.message, not_image
    assert too_big.code == "OVERLAY_INVALID" and "20000x20000" in too_big.message, too_big
    assert refused.code == "INPUT_REFUSED" and "loopback" in refused.message, refused
    assert all(not o.files for o in job.outputs)


def job_ids(client: ConnectJsonClient) -> list[str]:
    status, body = client.call("List", {"page_size": 100})
    assert status == 200, body
    return [job["id"] for job in body.get("jobs", [])]


def _image(**fields) -> dict:
    return {"image": {"url": "file:///nowhere/logo.png"}, **fields}


@pytest.mark.parametrize(
    ("overlay", "field", "fragment"),
    [
        (_image(opacity=2), "overlays[0].opacity", "between 0 (invisible) and 1"),
        (
            {"text": {"text": "PREVIEW\n%{pts}"}},
            "overlays[0].text.text",
            "control character",
        ),
        (
            _image(image={"url": "http://169.254.169.254/logo.png"}),
            "overlays[0].image.url",
            "link-local",
        ),
        (_image(image={"url": "file:///etc/passwd"}), "overlays[0].image.url", "outside"),
        (
            _image(image={"url": "http://localhost:9/logo.png"}),
            "overlays[0].image.url",
            "loopback",
        ),
        (_image(x=0.5), "overlays[0]", "both x and y"),
        (_image(margin=0.7), "overlays[0].margin", "between 0 and 0.5"),
        (
            _image(image={"url": "file:///x.png", "width_fraction": 3}),
            "overlays[0].image.width_fraction",
            "between 0.01 and 1",
        ),
        (_image(start_seconds=5, end_seconds=2), "overlays[0].end_seconds", "after start"),
        ({"text": {"text": "x"}, **_image()}, "overlays[0]", "exactly one of image and text"),
    ],
)
def test_bad_overlays_are_refused_at_create(server, api_key, grey_source, overlay, field, fragment):
    client = ConnectJsonClient(server.http_url, api_key)
    before = job_ids(client)
    output = {
        "type": "OUTPUT_TYPE_MP4",
        "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}],
        "overlays": [overlay],
    }
    status, error = client.call(
        "Create", {"input_url": f"file://{grey_source}", "outputs": [output]}
    )
    assert status == 400, error
    assert error["code"] == "invalid_argument"
    violations = violations_from_connect(error)
    assert fragment in violations.get(f"outputs[0].{field}", ""), violations
    # Nothing was written, and the server still answers.
    assert job_ids(client) == before


def test_overlay_limits_per_output(server, api_key, grey_source):
    client = ConnectJsonClient(server.http_url, api_key)
    clip = f"file://{grey_source}"
    video = [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}]
    one = [{"text": {"text": "x"}}]
    status, error = client.call(
        "Create",
        {
            "input_url": clip,
            "outputs": [
                {"type": "OUTPUT_TYPE_MP4", "video": video, "overlays": one * 9},
                {"type": "OUTPUT_TYPE_M4A", "overlays": one},
            ],
        },
    )
    assert status == 400
    violations = violations_from_connect(error)
    assert "at most 8 overlays" in violations["outputs[0].overlays"]
    assert "not this output type" in violations["outputs[1].overlays"]
    status, error = client.call(
        "Create",
        {
            "input_url": clip,
            "concat_input_urls": [clip],
            "outputs": [{"type": "OUTPUT_TYPE_MP4", "video": video, "overlays": one}],
        },
    )
    assert status == 400
    assert "not concatenated inputs" in violations_from_connect(error)["outputs[0].overlays"]
