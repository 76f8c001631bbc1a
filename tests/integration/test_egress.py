"""The egress proxy with real origins on loopback, real httpx and real ffprobe/ffmpeg.

127.0.0.2 plays the allowlisted origin and 127.0.0.1 the address that must never be reached.
"""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest

from common import egress
from common.input_policy import InputPolicy
from tests.conftest import make_clip
from tests.http_origins import Origin, redirect, send, static, twin_origins
from worker.media.errors import MediaError
from worker.media.ffmpeg import run_ffmpeg
from worker.media.input_access import InputAccess
from worker.media.probe import probe

ALLOWED = "127.0.0.2"
POLICY = InputPolicy.from_lists([], [ALLOWED])


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("egress") / "clip.mp4", seconds=1).read_bytes()


@pytest.fixture
def origin():
    server = Origin(ALLOWED)
    yield server
    server.close()


@pytest.fixture
def forbidden():
    server = Origin("127.0.0.1")
    yield server
    server.close()


def client(session: egress.EgressSession, **options) -> httpx.AsyncClient:
    return httpx.AsyncClient(proxy=session.proxy_url, trust_env=False, timeout=10, **options)


async def test_rebinding_name_reaches_only_the_checked_address(clip_bytes):
    allowed, forbidden = twin_origins(ALLOWED, "127.0.0.1")
    allowed.routes["/clip.mp4"] = forbidden.routes["/clip.mp4"] = static(clip_bytes)
    answers = iter([["127.0.0.2"]])
    lookups = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers, ["127.0.0.1"])  # first the allowed address, then the other

    try:
        async with egress.session(POLICY, resolver=rebinding) as session:
            url = f"http://media.test:{allowed.port}/clip.mp4"
            info = await probe(url, access=InputAccess(session.proxy_url))
            async with client(session) as http:
                again = await http.get(url, headers={"Range": "bytes=0-9"})
        assert info.duration_seconds == pytest.approx(1, abs=0.1)
        assert again.status_code == 206
        assert forbidden.log == []
        assert lookups == ["media.test"]  # resolved once, pinned for the session
        assert {r.headers["host"] for r in allowed.log} == {f"media.test:{allowed.port}"}
        assert session.refusals == []
    finally:
        allowed.close()
        forbidden.close()


async def test_redirect_is_checked_hop_by_hop(origin, forbidden):
    forbidden.routes["/secret.mp4"] = static(b"secret")
    origin.routes["/in.mp4"] = redirect(forbidden.url("/secret.mp4"))
    async with egress.session(POLICY) as session, client(session, follow_redirects=True) as http:
        response = await http.get(origin.url("/in.mp4"))
    assert response.status_code == 403
    assert forbidden.log == []
    (refusal,) = session.refusals
    assert refusal.address == "127.0.0.1"
    assert refusal.describe() == (
        f"redirect to {forbidden.url('/secret.mp4')} resolves to 127.0.0.1, a loopback address"
    )
    assert session.refused.is_set()


async def test_ffprobe_following_a_redirect_is_refused(origin, forbidden, clip_bytes):
    forbidden.routes["/secret.mp4"] = static(clip_bytes)
    origin.routes["/in.mp4"] = redirect(forbidden.url("/secret.mp4"))
    async with egress.session(POLICY) as session:
        with pytest.raises(MediaError):
            await probe(origin.url("/in.mp4"), access=InputAccess(session.proxy_url))
    assert forbidden.log == []
    assert [r.address for r in session.refusals] == ["127.0.0.1"]


async def test_connect_to_a_refused_address_never_connects(forbidden):
    async with egress.session(POLICY) as session, client(session, verify=False) as http:
        with pytest.raises(httpx.ProxyError):
            await http.get(f"https://127.0.0.1:{forbidden.port}/x")
    assert forbidden.log == []
    assert session.refusals[0].describe().startswith("connection to 127.0.0.1:")


async def test_playlist_naming_a_refused_segment_is_not_forwarded(origin, forbidden):
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"
        f"{forbidden.url('/seg0.ts')}\n#EXT-X-ENDLIST\n"
    ).encode()
    origin.routes["/list.m3u8"] = static(playlist, "application/vnd.apple.mpegurl")
    async with egress.session(POLICY) as session, client(session) as http:
        response = await http.get(origin.url("/list.m3u8"))
    assert response.status_code == 403
    assert b"#EXTINF" not in response.content
    assert session.refusals[0].describe() == (
        f"playlist {origin.url('/list.m3u8')} names {forbidden.url('/seg0.ts')}, "
        "which resolves to 127.0.0.1, a loopback address"
    )


async def test_allowed_playlist_and_its_segment_pass_unchanged(origin):
    playlist = b'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="key.bin"\n#EXTINF:2.0,\nseg0.ts\n'
    origin.routes["/list.m3u8"] = static(playlist, "application/vnd.apple.mpegurl")
    origin.routes["/seg0.ts"] = static(b"x" * 100_000)
    async with egress.session(POLICY) as session, client(session) as http:
        first = await http.get(origin.url("/list.m3u8"))
        second = await http.get(origin.url("/seg0.ts"))
    assert first.content == playlist
    assert len(second.content) == 100_000
    assert session.refusals == []


async def test_dash_manifest_is_refused(origin):
    mpd = b'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">' + b" " * 9000
    origin.routes["/in.mpd"] = static(mpd, "application/dash+xml")
    async with egress.session(POLICY) as session, client(session) as http:
        response = await http.get(origin.url("/in.mpd"))
    assert response.status_code == 403
    assert "DASH manifest" in session.refusals[0].describe()


async def test_manifest_marker_late_in_a_body_cuts_it_off(origin):
    # FFmpeg probes up to 1 MiB of NUL-free text: a marker there still makes a DASH input.
    body = b"x" * 300_000 + b"<MPD>" + b"y" * 10
    origin.routes["/late"] = static(body, "text/plain")
    async with egress.session(POLICY) as session, client(session) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(origin.url("/late"))
    assert "DASH manifest" in session.refusals[0].describe()


async def test_compressed_body_is_refused(origin):
    def gzipped(handler, _origin) -> None:
        body = gzip.compress(b"#EXTM3U\nfile:///etc/passwd\n")
        send(handler, 200, body, "application/vnd.apple.mpegurl", {"Content-Encoding": "gzip"})

    origin.routes["/list.m3u8"] = gzipped
    async with egress.session(POLICY) as session, client(session) as http:
        response = await http.get(origin.url("/list.m3u8"))
    assert response.status_code == 403
    assert origin.log[0].headers["accept-encoding"] == "identity"
    assert "Content-Encoding gzip" in session.refusals[0].describe()


async def test_unresolvable_name_is_refused():
    async def nothing(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    async with egress.session(POLICY, resolver=nothing) as session, client(session) as http:
        response = await http.get("http://nowhere.test/in.mp4")
    assert response.status_code == 403
    assert (
        session.refusals[0].describe() == "request for http://nowhere.test/in.mp4 does not resolve"
    )


async def test_ffmpeg_reads_a_range_origin_in_place(origin, clip_bytes, tmp_path):
    origin.routes["/clip.mp4"] = static(clip_bytes)
    async with egress.session(POLICY) as session:
        access = InputAccess(session.proxy_url)
        argv = ["ffmpeg", "-v", "error", "-i", origin.url("/clip.mp4"), "-c", "copy"]
        argv += ["-progress", "pipe:1", "-nostats", str(tmp_path / "copy.mp4")]
        await run_ffmpeg(
            access.apply(argv),
            env=access.environment(),
            duration=1,
            on_progress=None,
            cancel_event=asyncio.Event(),
        )
    assert (tmp_path / "copy.mp4").stat().st_size > 0
    # Every request FFmpeg made was a range request, and it sought (more than one).
    assert len(origin.log) >= 2
    assert all("range" in request.headers for request in origin.log)
    assert session.refusals == []
