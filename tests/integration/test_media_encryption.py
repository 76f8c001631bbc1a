"""Encrypted ladders against the real ffmpeg and real players: HLS AES-128 (TS with a key
rotation every 2 segments, fMP4 with one key) and CENC DASH and CMAF.

Each ladder is encoded once per module from a 4 s 320x180 clip in 1 s segments, finalized, kept
as a clear copy, then encrypted (worker.media.encryption.encrypt_ladder), as a TRANSCODE task
does. A small HTTP server of the test's own stands in for kiln's key delivery: it serves the
ladders, each key at the URI the server would have chosen (GET /keys/<key id hex>, 16 bytes),
and a W3C Clear Key license (POST /license), with CORS, so the players' page may be on
another origin. Key tokens and the server's rewriting of key URIs are H5a's (tests/e2e).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.etree import ElementTree

import pytest
from kiln.v1 import job_pb2

from common.content_keys import ContentKey, EncryptionScheme, OutputEncryption
from tests.media_probe import decoded_frames
from tests.support.browser import require_browser
from tests.support.players import other_origin_site, play_cases
from worker.media.commands import build_command
from worker.media.encryption import encrypt_ladder
from worker.media.errors import MediaError, OutputSpecError
from worker.media.ffmpeg import run_ffmpeg
from worker.media.packaging import finalize_output
from worker.media.plan import CommandPlan, LadderPackaging
from worker.media.probe import probe

SOURCE_SECONDS = 4
SEGMENT_SECONDS = 1.0
SEGMENTS = 4
H264 = job_pb2.VIDEO_CODEC_H264
FMP4 = job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
MPD = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}
CENC_KID_ATTRIBUTE = "{urn:mpeg:cenc:2013}default_KID"
CLEARKEY_SCHEME = "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A player that drops a request it no longer needs (a seek, a teardown) is no error."""


class KeySite:
    """The ladders' folder over HTTP, plus each key (GET /keys/<hex id>) and a Clear Key
    license (POST /license), answering any origin."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys: dict[bytes, bytes] = {}
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def end_headers(self) -> None:
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "*")
                self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                super().end_headers()

            def do_OPTIONS(self) -> None:
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:
                if self.path.startswith("/keys/"):
                    key = site.keys.get(bytes.fromhex(self.path.removeprefix("/keys/")))
                    self._answer(key, "application/octet-stream")
                else:
                    super().do_GET()

            def do_POST(self) -> None:
                # W3C Clear Key: {"kids": [base64url]} → a JSON Web Key set of those keys.
                asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ids = [base64.urlsafe_b64decode(kid + "==") for kid in asked.get("kids", [])]
                found = [
                    {"kty": "oct", "kid": b64url(kid), "k": b64url(site.keys[kid])}
                    for kid in ids
                    if kid in site.keys
                ]
                body = json.dumps({"keys": found, "type": "temporary"}).encode()
                self._answer(body if found else None, "application/json")

            def _answer(self, body: bytes | None, content_type: str) -> None:
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def new_key(self, first_segment: int = 0) -> ContentKey:
        key_id, key = os.urandom(16), os.urandom(16)
        self.keys[key_id] = key
        return ContentKey(key_id, key, f"{self.url}/keys/{key_id.hex()}", first_segment)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySite]:
    site = KeySite(tmp_path_factory.mktemp("encrypted"))
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("encryption-source") / "clip.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"),
            *("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24"),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
            *("-t", str(SOURCE_SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"),
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Ladder:
    name: str
    folder: Path  # encrypted, under the site's root
    clear: Path  # the same ladder before encryption
    plan: CommandPlan
    encryption: OutputEncryption
    log_lines: list[str]


def encrypted_ladder(
    site: KeySite, source: Path, name: str, spec: job_pb2.OutputSpec, encryption: OutputEncryption
) -> Ladder:
    """Build, run, finalize, keep a clear copy, encrypt: with every log record captured."""
    folder, clear = site.root / name, site.root.parent / f"{site.root.name}-clear" / name
    folder.mkdir()
    records = LogRecords()
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.addHandler(records)
    root_logger.setLevel(logging.DEBUG)

    async def run() -> CommandPlan:
        info = await probe(str(source))
        plan = build_command(
            input_path=str(source), spec=spec, info=info, out_dir=folder, encryption=encryption
        )
        await run_ffmpeg(
            plan.argv,
            duration=plan.expected_duration,
            on_progress=None,
            cancel_event=asyncio.Event(),
        )
        await finalize_output(spec, info, folder, plan)
        shutil.copytree(folder, clear)
        assert isinstance(plan.finalize, LadderPackaging)
        await encrypt_ladder(plan.finalize)
        return plan

    try:
        plan = asyncio.run(run())
    finally:
        root_logger.removeHandler(records)
        root_logger.setLevel(level)
    return Ladder(name, folder, clear, plan, encryption, records.lines)


def ladder_spec(output_type: job_pb2.OutputType, **fields: object) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[job_pb2.VideoVariant(codec=H264, resolution="180p")],
        segments=job_pb2.SegmentSpec(duration_seconds=SEGMENT_SECONDS),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def hls_ts(site: KeySite, source: Path) -> Ladder:
    # A new key every 2 segments: keys for segments 0-1 and 2-3.
    keys = (site.new_key(0), site.new_key(2))
    encryption = OutputEncryption(EncryptionScheme.AES_128, keys, rotate_every_segments=2)
    return encrypted_ladder(
        site, source, "hls_ts", ladder_spec(job_pb2.OUTPUT_TYPE_HLS), encryption
    )


@pytest.fixture(scope="module")
def hls_fmp4(site: KeySite, source: Path) -> Ladder:
    encryption = OutputEncryption(EncryptionScheme.AES_128, (site.new_key(),))
    spec = ladder_spec(job_pb2.OUTPUT_TYPE_HLS, hls=FMP4)
    return encrypted_ladder(site, source, "hls_fmp4", spec, encryption)


def cenc_ladder(site: KeySite, source: Path, name: str, output_type: job_pb2.OutputType) -> Ladder:
    key = site.new_key()
    # The license URL is where the key's URI points for CENC (the MPD's dashif:Laurl).
    key = ContentKey(key.key_id, key.key, f"{site.url}/license")
    encryption = OutputEncryption(EncryptionScheme.CENC, (key,))
    return encrypted_ladder(site, source, name, ladder_spec(output_type), encryption)


@pytest.fixture(scope="module")
def dash(site: KeySite, source: Path) -> Ladder:
    return cenc_ladder(site, source, "dash", job_pb2.OUTPUT_TYPE_DASH)


@pytest.fixture(scope="module")
def cmaf(site: KeySite, source: Path) -> Ladder:
    return cenc_ladder(site, source, "cmaf", job_pb2.OUTPUT_TYPE_CMAF)


# -- what decodes and what does not --------------------------------------------------------


def frames(*sources: Path | str, key: bytes | None = None) -> list[list[str]]:
    """The frame hashes ffmpeg decodes from each source's first video stream (none where it
    cannot), all in one ffmpeg run; `key` is given to every input as -decryption_key."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error"]
    for source in sources:
        command += ["-decryption_key", key.hex()] if key else []
        command += ["-i", str(source)]
    with tempfile.TemporaryDirectory() as folder:
        hashes = [Path(folder) / f"{index}.md5" for index in range(len(sources))]
        for index, target in enumerate(hashes):
            command += ["-map", f"{index}:v:0?", "-f", "framemd5", str(target)]
        subprocess.run(command, capture_output=True, timeout=60, check=False)
        return [
            [line.rsplit(",", 1)[1].strip() for line in _lines(target) if line[:1] != "#"]
            for target in hashes
        ]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def joined(folder: Path, init: str, segment: str, target: Path) -> Path:
    target.write_bytes((folder / init).read_bytes() + (folder / segment).read_bytes())
    return target


def test_an_aes128_segment_on_its_own_does_not_decode(hls_ts: Ladder, hls_fmp4: Ladder, tmp_path):
    # fMP4: the init segment is clear (codec parameters only), the media segment is not.
    clear = joined(hls_fmp4.clear / "v0", "init_0.mp4", "seg_00001.m4s", tmp_path / "c.mp4")
    sealed = joined(hls_fmp4.folder / "v0", "init_0.mp4", "seg_00001.m4s", tmp_path / "e.mp4")
    clear_ts, sealed_ts = (
        ladder / "v0" / "seg_00001.ts" for ladder in (hls_ts.clear, hls_ts.folder)
    )
    # Each file alone: ffmpeg fails on it (a missing output) or decodes nothing.
    assert [len(each) for each in frames(clear_ts, clear)] == [24, 24]
    for path in (sealed_ts, sealed):
        assert frames(path) == [[]]


@pytest.mark.parametrize("name", ["hls_ts", "hls_fmp4"])
def test_aes128_ladders_decode_every_frame_with_their_keys(name, request, site: KeySite):
    """ffmpeg's HLS demuxer fetches each EXT-X-KEY's URI (from the site) and decodes the whole
    ladder, video and audio, across the rotation: as many frames as the clear ladder."""
    ladder: Ladder = request.getfixturevalue(name)
    expected = decoded_frames(ladder.clear / "master.m3u8")
    assert expected["video"] == [SOURCE_SECONDS * 24]
    assert decoded_frames(f"{site.url}/{name}/master.m3u8") == expected


def test_rotation_gives_each_pair_of_segments_its_own_key(hls_ts: Ladder):
    for playlist in ("v0/index.m3u8",):
        lines = (hls_ts.folder / playlist).read_text().splitlines()
        tags = [line for line in lines if line.startswith("#EXT-X-KEY:")]
        first, second = hls_ts.encryption.keys
        # One tag per segment (each with its own IV), in the order of the segments.
        assert len(tags) == SEGMENTS
        assert [tag.split('URI="')[1].split('"')[0] for tag in tags] == [
            first.uri,
            first.uri,
            second.uri,
            second.uri,
        ]
        ivs = [tag.split("IV=0x")[1] for tag in tags]
        assert len(set(ivs)) == SEGMENTS and all(len(iv) == 32 for iv in ivs)
        assert all(tag.startswith("#EXT-X-KEY:METHOD=AES-128,") for tag in tags)
        # Each tag comes right before its segment's EXTINF.
        for tag in tags:
            assert lines[lines.index(tag) + 1].startswith("#EXTINF:")


def test_fmp4_init_segment_stays_clear_before_the_first_key(hls_fmp4: Ladder):
    lines = (hls_fmp4.folder / "v0" / "index.m3u8").read_text().splitlines()
    map_line = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-MAP"))
    first_key = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-KEY"))
    assert map_line < first_key
    init = "v0/init_0.mp4"
    assert (hls_fmp4.folder / init).read_bytes() == (hls_fmp4.clear / init).read_bytes()


def test_cenc_segments_decode_only_with_the_key(dash: Ladder, tmp_path):
    """Each segment with its init segment: no true picture without the key; with
    -decryption_key, every frame exactly as the clear segment's. (FFmpeg 5.1's mov demuxer loses the sample
    auxiliary info after the first fragment of a file, so segments are decoded one by one;
    the players below play them in a row. CMAF's segments are made the same way.)"""
    ladder, key = dash, dash.encryption.keys[0]
    video_segments = sorted(ladder.folder.glob("seg-0-*.m4s"))
    assert len(video_segments) == SEGMENTS
    pairs = [(f"e{n}.mp4", f"c{n}.mp4", segment.name) for n, segment in enumerate(video_segments)]
    sealed = [joined(ladder.folder, "init-0.mp4", name, tmp_path / e) for e, _, name in pairs]
    clear = [joined(ladder.clear, "init-0.mp4", name, tmp_path / c) for _, c, name in pairs]
    expected = frames(*clear)
    # Without the key (or with another), not one picture comes out as it should.
    for without_key, clear_frames in zip(frames(*sealed), expected, strict=True):
        assert clear_frames and not set(without_key) & set(clear_frames)
    (wrong,) = frames(sealed[0], key=os.urandom(16))
    assert not set(wrong) & set(expected[0])
    assert frames(*sealed, key=key.key) == expected
    decoded = sum(len(each) for each in expected)
    assert decoded == SOURCE_SECONDS * 24


@pytest.mark.parametrize("name", ["dash", "cmaf"])
def test_cenc_manifests_signal_the_key_id_and_clear_key(name, request):
    ladder: Ladder = request.getfixturevalue(name)
    key = ladder.encryption.keys[0]
    root = ElementTree.fromstring((ladder.folder / "manifest.mpd").read_text())
    sets = root.findall(".//mpd:AdaptationSet", MPD)
    assert {adaptation.get("contentType") for adaptation in sets} == {"video", "audio"}
    for adaptation in sets:
        protections = adaptation.findall("mpd:ContentProtection", MPD)
        schemes = {p.get("schemeIdUri"): p for p in protections}
        cenc = schemes["urn:mpeg:dash:mp4protection:2011"]
        assert cenc.get("value") == "cenc"
        assert cenc.get(CENC_KID_ATTRIBUTE).replace("-", "") == key.key_id.hex()
        clear_key = schemes[CLEARKEY_SCHEME]
        laurl = clear_key.find("{https://dashif.org/CPS}Laurl")
        assert laurl is not None and laurl.text == key.uri
    # Every init segment names the key id (tenc, and the pssh a browser's EME reads).
    for init in ("init-0.mp4", "init-1.mp4"):
        data = (ladder.folder / init).read_bytes()
        assert b"encv" in data or b"enca" in data
        assert data.count(key.key_id) == 2
    if name == "cmaf":
        for playlist in ("media_0.m3u8", "media_1.m3u8"):
            text = (ladder.folder / playlist).read_text()
            assert f'METHOD=SAMPLE-AES-CTR,URI="{key.uri}",KEYID=0x{key.key_id.hex()}' in text
            assert text.index("#EXT-X-KEY") < text.index("#EXT-X-MAP")


def test_no_key_in_any_file_argument_or_log_line(hls_ts, hls_fmp4, dash, cmaf):
    """Neither the key (raw, hex, base64, base64url) is in what the output stores, in ffmpeg's
    arguments, or in any log line of the run; ffmpeg never gets a key in any form."""
    for ladder in (hls_ts, hls_fmp4, dash, cmaf):
        files = [path for path in ladder.folder.rglob("*") if path.is_file()]
        assert files
        said = " ".join(ladder.plan.argv) + "\n".join(ladder.log_lines)
        for key in ladder.encryption.keys:
            forms = [key.key.hex(), key.key.hex().upper(), base64.b64encode(key.key).decode()]
            forms.append(b64url(key.key))
            assert not any(form in said for form in forms), ladder.name
            for path in files:
                data = path.read_bytes()
                assert key.key not in data, path
                assert not any(form.encode() in data for form in forms), path


# -- bad requests at this level -------------------------------------------------------------


def test_a_key_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        ContentKey(os.urandom(16), os.urandom(15))
    with pytest.raises(ValueError, match="16 bytes"):
        ContentKey(os.urandom(8), os.urandom(16))


def refused(spec: job_pb2.OutputSpec, encryption: OutputEncryption, source: Path) -> str:
    info = job_pb2.InputInfo(
        duration_seconds=SOURCE_SECONDS,
        streams=[
            job_pb2.StreamInfo(index=0, kind="video", width=320, height=180, frame_rate=24),
        ],
    )
    with pytest.raises(OutputSpecError) as raised:
        build_command(
            input_path=str(source),
            spec=spec,
            info=info,
            out_dir=Path("/nonexistent"),
            encryption=encryption,
        )
    return str(raised.value)


def test_requests_the_output_cannot_carry_are_refused(source: Path):
    key = ContentKey(os.urandom(16), os.urandom(16))
    later = ContentKey(os.urandom(16), os.urandom(16), first_segment=2)
    cenc = OutputEncryption(EncryptionScheme.CENC, (key,))
    aes = OutputEncryption(EncryptionScheme.AES_128, (key,))
    rotating_cenc = OutputEncryption(EncryptionScheme.CENC, (key, later), rotate_every_segments=2)
    assert "rotation is for HLS AES-128 only" in refused(
        ladder_spec(job_pb2.OUTPUT_TYPE_DASH), rotating_cenc, source
    )
    assert "DASH is encrypted with CENC" in refused(
        ladder_spec(job_pb2.OUTPUT_TYPE_DASH), aes, source
    )
    assert "HLS is encrypted with AES-128" in refused(
        ladder_spec(job_pb2.OUTPUT_TYPE_HLS), cenc, source
    )
    mp4 = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4, video=[job_pb2.VideoVariant()])
    assert "MP4 outputs cannot be encrypted" in refused(mp4, aes, source)
    vp9 = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_DASH,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_VP9, resolution="180p")],
    )
    assert "video[0]: VIDEO_CODEC_VP9 cannot be CENC-encrypted" in refused(vp9, cenc, source)


def test_a_key_uri_that_is_no_url_stays_out_of_the_mpd(dash: Ladder, tmp_path):
    """The server's placeholder URI (kiln-key:<id>, rewritten only in HLS playlists) is no
    license server: the MPD then names none, and still signals the key id."""
    folder = tmp_path / "ladder"
    shutil.copytree(dash.clear, folder)
    key = dash.encryption.keys[0]
    placeholder = ContentKey(key.key_id, key.key, f"kiln-key:{key.key_id.hex()}")
    step = LadderPackaging(
        dash_manifest=folder / "manifest.mpd",
        encryption=OutputEncryption(EncryptionScheme.CENC, (placeholder,)),
    )
    asyncio.run(encrypt_ladder(step))
    text = (folder / "manifest.mpd").read_text()
    assert "kiln-key" not in text and "Laurl" not in text
    assert text.count(str(uuid.UUID(bytes=key.key_id))) == 2


def test_a_rotation_without_a_key_for_every_period_fails_the_output(hls_ts: Ladder, tmp_path):
    """Keys for fewer periods than the ladder has: the encryption stops with a clear error
    rather than reusing the last key past its period."""
    folder = tmp_path / "ladder"
    shutil.copytree(hls_ts.clear, folder)
    only_first = OutputEncryption(
        EncryptionScheme.AES_128, (hls_ts.encryption.keys[0],), rotate_every_segments=2
    )
    step = LadderPackaging(hls_master=folder / "master.m3u8", encryption=only_first)
    with pytest.raises(MediaError, match="segment 2 has no key of its own"):
        asyncio.run(encrypt_ladder(step))


# -- players --------------------------------------------------------------------------------


def test_players_play_the_encrypted_ladders(hls_ts, hls_fmp4, dash, cmaf, site, tmp_path):
    """hls.js plays AES-128 TS and fMP4 (fetching the keys from their URIs, both keys of the
    rotation); dash.js plays the CENC MPD with Clear Key (the key given to it as a static map);
    hls.js plays CMAF's HLS side as SAMPLE-AES-CTR with Clear Key through EME (a license from
    the site). Each must pass 2 s with no error or warning from the player, page or browser;
    an encrypted segment the player could not decrypt would stall it or fail the decoder."""
    require_browser("test_players_play_the_encrypted_ladders")

    def clear_keys(ladder: Ladder) -> dict:
        key = ladder.encryption.keys[0]
        return {"org.w3.clearkey": {"clearkeys": {b64url(key.key_id): b64url(key.key)}}}

    clearkey_hls = {
        "emeEnabled": True,
        "drmSystems": {"org.w3.clearkey": {"licenseUrl": f"{site.url}/license"}},
    }
    cases = [
        {"name": "hls-aes128-ts", "player": "hls", "url": f"{site.url}/hls_ts/master.m3u8"},
        {"name": "hls-aes128-fmp4", "player": "hls", "url": f"{site.url}/hls_fmp4/master.m3u8"},
        {
            "name": "dash-cenc",
            "player": "dash",
            "url": f"{site.url}/dash/manifest.mpd",
            "protection": clear_keys(dash),
        },
        {
            "name": "cmaf-cenc-hls",
            "player": "hls",
            "url": f"{site.url}/cmaf/master.m3u8",
            "hlsConfig": clearkey_hls,
        },
    ]
    with other_origin_site(tmp_path / "page") as page:
        report = play_cases(
            # A generous ceiling: on a loaded 2-core machine EME and key fetches can take long.
            {"kiln": site.url, "playSeconds": 2.0, "reachSeconds": 45, "cases": cases},
            tmp_path / "cases.json",
            page,
            timeout=300,
        )
    results = {result["name"]: result for result in report["results"]}
    summary = {
        name: (round(result["time"], 2), [issue["detail"] for issue in result["issues"]])
        for name, result in results.items()
    }
    print(json.dumps(summary, indent=1))
    for name, result in results.items():
        assert result["time"] >= 2.0, (name, summary[name])
        assert result["issues"] == [], (name, summary[name])

    def fetched(name: str) -> set[tuple[str, str, int]]:
        return {(r["method"], r["file"], r["status"]) for r in results[name]["responses"]}

    for key in hls_ts.encryption.keys:
        assert ("GET", key.key_id.hex(), 200) in fetched("hls-aes128-ts")
    assert ("GET", hls_fmp4.encryption.keys[0].key_id.hex(), 200) in fetched("hls-aes128-fmp4")
    assert ("POST", "license", 200) in fetched("cmaf-cenc-hls")
