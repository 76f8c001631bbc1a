"""A task's inputs through its egress session: the guard turns any refusal into
INPUT_REFUSED, also when FFmpeg itself would have carried on and exited 0."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from common import egress
from common.input_policy import InputPolicy
from tests.conftest import make_clip
from tests.http_origins import Origin, redirect, send, static
from worker.inputs import TaskInputs
from worker.media.errors import MediaError
from worker.media.ffmpeg import run_ffmpeg

POLICY = InputPolicy.from_lists([], ["127.0.0.2"])


async def no_gcs(url: str, target: Path) -> Path:
    raise AssertionError("no gs:// input in these tests")


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory) -> Path:
    """A three-segment HLS rendition of a 3 s clip."""
    folder = tmp_path_factory.mktemp("hls")
    clip = make_clip(folder / "clip.mp4", seconds=3, size="320x240", rate=30)
    hls = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-an", "-f", "hls"]
    hls += ["-hls_time", "1", "-hls_list_size", "0"]
    hls += ["-hls_segment_filename", str(folder / "seg%d.ts"), str(folder / "list.m3u8")]
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), *hls], check=True)
    return folder


async def test_segment_redirected_inward_fails_the_encode_that_ffmpeg_finished(hls_dir, tmp_path):
    origin, internal = Origin("127.0.0.2"), Origin("127.0.0.1")
    try:
        for name in ("list.m3u8", "seg0.ts", "seg2.ts"):
            origin.routes[f"/{name}"] = static((hls_dir / name).read_bytes())
        internal.routes["/seg1.ts"] = static((hls_dir / "seg1.ts").read_bytes())
        origin.routes["/seg1.ts"] = redirect(internal.url("/seg1.ts"))
        async with egress.session(POLICY) as session:
            inputs = TaskInputs(POLICY, session, asyncio.Event(), no_gcs)
            location, _ = await inputs.locate(
                origin.url("/list.m3u8"), tmp_path / "in", known_ranges=None
            )
            argv = ["ffmpeg", "-v", "error", "-i", location, "-c", "copy"]
            argv += ["-progress", "pipe:1", "-nostats", str(tmp_path / "out.ts")]
            encode = run_ffmpeg(
                inputs.access.apply(argv),
                env=inputs.access.environment(),
                duration=3,
                on_progress=None,
                cancel_event=asyncio.Event(),
            )
            with pytest.raises(MediaError) as raised:
                await inputs.guarded(encode)
        assert location == origin.url("/list.m3u8")  # a playlist is read in place
        assert raised.value.code == "INPUT_REFUSED"
        assert raised.value.message == (
            f"input refused: redirect to {internal.url('/seg1.ts')} resolves to 127.0.0.1, "
            "a loopback address"
        )
        assert internal.log == []
    finally:
        origin.close()
        internal.close()


async def test_staged_copy_that_turns_out_a_playlist_is_refused(tmp_path):
    # Plain 200 to the range check (so not read in place), a playlist when staged.
    origin = Origin("127.0.0.2")
    answers = iter([b"\x00\x00\x00\x18ftypisom", b"#EXTM3U\nseg0.ts\n"])

    def media_then_playlist(handler, server) -> None:
        send(handler, 200, next(answers))  # whole bodies, no ranges: the input gets staged

    origin.routes["/in.mp4"] = media_then_playlist
    try:
        async with egress.session(POLICY) as session:
            inputs = TaskInputs(POLICY, session, asyncio.Event(), no_gcs)
            with pytest.raises(MediaError) as raised:
                await inputs.locate(origin.url("/in.mp4"), tmp_path / "in", known_ranges=None)
        assert raised.value.code == "INPUT_REFUSED"
        assert "an HLS playlist" in raised.value.message
    finally:
        origin.close()


async def test_allowed_hls_input_is_encoded_through_the_proxy(hls_dir, tmp_path):
    origin = Origin("127.0.0.2")
    try:
        for name in ("list.m3u8", "seg0.ts", "seg1.ts", "seg2.ts"):
            origin.routes[f"/{name}"] = static((hls_dir / name).read_bytes())
        async with egress.session(POLICY) as session:
            inputs = TaskInputs(POLICY, session, asyncio.Event(), no_gcs)
            location, _ = await inputs.locate(
                origin.url("/list.m3u8"), tmp_path / "in", known_ranges=None
            )
            info = await inputs.probe(location)
            argv = ["ffmpeg", "-v", "error", "-i", location, "-c", "copy"]
            argv += ["-progress", "pipe:1", "-nostats", str(tmp_path / "out.ts")]
            await inputs.guarded(
                run_ffmpeg(
                    inputs.access.apply(argv),
                    env=inputs.access.environment(),
                    duration=3,
                    on_progress=None,
                    cancel_event=asyncio.Event(),
                )
            )
        assert session.refusals == []
        assert info.duration_seconds == pytest.approx(3, abs=0.2)
        assert {"/seg0.ts", "/seg1.ts", "/seg2.ts"} <= {r.path for r in origin.log}
        assert (tmp_path / "out.ts").stat().st_size > 0
    finally:
        origin.close()
