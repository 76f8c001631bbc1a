"""Encrypted outputs through the running server: AES-128 HLS (TS with key rotation, fMP4) and
CENC DASH, keys made and kept by the server, handed to viewers only through key tokens.

One cluster (server and worker as processes, logging at INFO and writing their spans to
files) makes one job with the three outputs from a 3 s clip; every check below reads that job.
What must hold:

- a segment fetched on its own (its URL needs no key token: a CDN may cache it) does not
  decode; with a grant's playback URL FFmpeg decodes every frame;
- the key URL refuses a request without a token, with a forged, expired or other output's
  token, and with a segment token (403), and answers 404 for a key id that does not exist;
- the keys appear nowhere but at the key endpoint: not in a stored file, a playlist, a log
  line, a span, an RPC answer or a column of any table, in any spelling (bytes, hex, base64);
- requests that cannot be encrypted, and bad grant requests, are refused naming the field.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.json_format import MessageToJson
from kiln.v1 import job_pb2, job_service_pb2

from server.delivery.tokens import KEY_PURPOSE, PlaybackTokens
from tests.conftest import make_clip
from tests.media_probe import decoded_frames
from tests.support import plain_http
from tests.support.browser import require_browser
from tests.support.players import other_origin_site, play_cases
from tests.support.violations import violations_from_grpc

from .cluster import SIGNING_KEY, Cluster, kiln_command

H264 = job_pb2.VIDEO_CODEC_H264
AES_128, CENC = job_pb2.ENCRYPTION_SCHEME_AES_128, job_pb2.ENCRYPTION_SCHEME_CENC
FMP4 = job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
ONE_SECOND = job_pb2.SegmentSpec(duration_seconds=1)
CLIP_SECONDS = 3
FRAMES = CLIP_SECONDS * 30
# How far the players must play (the driver waits for it).
PLAY_SECONDS = 2.0
FFMPEG = ("ffmpeg", "-hide_banner", "-loglevel", "error")


def encrypted_ladder(
    output_type: job_pb2.OutputType,
    encryption: job_pb2.Encryption,
    hls: job_pb2.HlsSpec | None = None,
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution=size, quality=job_pb2.QUALITY_ECONOMY)
            for size in ("320x180", "160x90")
        ],
        segments=ONE_SECOND,
        hls=hls,
        encryption=encryption,
    )


# (name, spec): the output order of the one job.
OUTPUTS = [
    (
        "hls-ts",
        encrypted_ladder(
            job_pb2.OUTPUT_TYPE_HLS, job_pb2.Encryption(scheme=AES_128, rotate_every_segments=2)
        ),
    ),
    (
        "hls-fmp4",
        encrypted_ladder(job_pb2.OUTPUT_TYPE_HLS, job_pb2.Encryption(scheme=AES_128), FMP4),
    ),
    ("dash", encrypted_ladder(job_pb2.OUTPUT_TYPE_DASH, job_pb2.Encryption(scheme=CENC))),
]


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory, media_root):
    """(cluster, server, auth, job, clip): the job completed, every output encrypted."""
    clip = make_clip(media_root / "clip3s-180p.mp4", seconds=CLIP_SECONDS, size="320x180")
    root = tmp_path_factory.mktemp("encryption")
    database = root / "kiln.db"
    cluster = Cluster(
        f"sqlite:///{database}",
        root,
        media_root,
        settings={"KILN_LOG_LEVEL": "INFO", "KILN_KEY_TOKEN_MAX_TTL_SECONDS": "3600"},
    )
    try:
        server = cluster.start_server(KILN_TRACE_FILE=str(root / "server-spans.jsonl"))
        cluster.start_worker(
            server, extra_env={"KILN_TRACE_FILE": str(root / "worker-spans.jsonl")}
        )
        auth = (("authorization", f"Bearer {cluster.create_key('org_encryption')}"),)
        stub = server.job_stub()
        created = stub.Create(
            job_service_pb2.CreateRequest(
                input_url=f"file://{clip}", outputs=[spec for _, spec in OUTPUTS]
            ),
            metadata=auth,
        ).job
        watch = job_service_pb2.WatchRequest(id=created.id)
        job = list(stub.Watch(watch, metadata=auth, timeout=120))[-1].completed.job
        assert job.status == job_pb2.JOB_STATUS_COMPLETED, (job.error, cluster.logs())
        yield cluster, server, auth, job, clip
    finally:
        cluster.stop()


def output_named(job: job_pb2.Job, name: str) -> job_pb2.Output:
    return job.outputs[[entry[0] for entry in OUTPUTS].index(name)]


def grant_for(server, auth, job, name: str, **fields) -> job_service_pb2.PlaybackGrant:
    request = job_service_pb2.CreatePlaybackGrantRequest(
        id=job.id, output_id=output_named(job, name).id, **fields
    )
    (grant,) = server.job_stub().CreatePlaybackGrant(request, metadata=auth).grants
    return grant


def key_of(grant: job_service_pb2.PlaybackGrant, index: int = 0) -> bytes:
    answer = plain_http.get(grant.key_url_prefix + grant.encryption.key_ids[index])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "private, no-store"
    assert len(answer.content) == 16
    return answer.content


def segment_path(output: job_pb2.Output, suffix: str) -> str:
    return next(
        file.path for file in output.files if file.path.endswith(suffix) and "init" not in file.path
    )


def test_output_shows_scheme_and_key_ids_and_grant_plays_with_ffmpeg(encrypted):
    _cluster, server, auth, job, clip = encrypted
    expected = decoded_frames(clip)["video"][0]
    assert expected == FRAMES
    rotated = output_named(job, "hls-ts")
    assert rotated.encryption.scheme == AES_128
    assert rotated.encryption.rotate_every_segments == 2
    # 3 one-second segments and a spare, a key every 2 segments.
    assert len(rotated.encryption.key_ids) == 2
    assert all(len(key_id) == 32 for key_id in rotated.encryption.key_ids)
    for name in ("hls-ts", "hls-fmp4"):
        grant = grant_for(server, auth, job, name)
        assert grant.playback_url.startswith(output_named(job, name).playback_url + "?kt=")
        assert grant.key_token and not grant.clearkey_license_url
        # FFmpeg follows the master (its variant URIs carry the key token) to the key URLs.
        assert decoded_frames(grant.playback_url)["video"] == [FRAMES, FRAMES], name
    playlist = plain_http.get(output_named(job, "hls-ts").playback_base_url + "v0/index.m3u8").text
    assert playlist.count("#EXT-X-KEY:METHOD=AES-128") >= 2, playlist
    assert "kiln-key:" in playlist and "/keys/" not in playlist


def test_dash_decodes_with_the_clearkey_license(encrypted, tmp_path):
    _cluster, server, auth, job, _clip = encrypted
    grant = grant_for(server, auth, job, "dash")
    assert grant.encryption.scheme == CENC and len(grant.encryption.key_ids) == 1
    key_id = bytes.fromhex(grant.encryption.key_ids[0])
    # What dash.js's Clear Key sends: base64url key ids in, a JWK set out.
    license_request = {"kids": [base64.urlsafe_b64encode(key_id).rstrip(b"=").decode()]}
    answer = plain_http.post(grant.clearkey_license_url, json=license_request)
    assert answer.status_code == 200, answer.text
    (jwk,) = answer.json()["keys"]
    key = base64.urlsafe_b64decode(jwk["k"] + "==")
    assert jwk["kty"] == "oct" and key == key_of(grant)
    mpd = plain_http.get(grant.playback_url).text
    # The MPD names the key by its id, never the key, and the viewer's license URL; the
    # stored one (asked for without a key token) names no license server.
    default_kid = str(uuid.UUID(bytes=key_id))
    assert f'cenc:default_kid="{default_kid}"' in mpd.lower(), mpd
    assert f">{grant.clearkey_license_url}</dashif:Laurl>" in mpd, mpd
    stored = plain_http.get(output_named(job, "dash").playback_url).text
    assert "/keys/" not in stored and "clearkey</" not in stored, stored
    # FFmpeg 5.1 keeps CENC's sample info only for a file's first fragment, so each segment
    # is decoded with its init segment on its own (the browser test plays them in a row).
    output = output_named(job, "dash")
    joined = []
    for rendition in ("0", "1"):
        init = plain_http.get(output.playback_base_url + f"init-{rendition}.mp4").content
        for segment in sorted(
            file.path for file in output.files if file.path.startswith(f"seg-{rendition}-")
        ):
            path = tmp_path / f"{rendition}-{segment}.mp4"
            path.write_bytes(init + plain_http.get(output.playback_base_url + segment).content)
            joined.append((rendition, path))
    with_key = frame_hashes([path for _, path in joined], key)
    without_key = frame_hashes([path for _, path in joined])
    for rendition in ("0", "1"):
        mine = [i for i, (name, _) in enumerate(joined) if name == rendition]
        assert sum(len(with_key[i]) for i in mine) == FRAMES, rendition
    # Without the key not one picture comes out right.
    assert not {h for each in with_key for h in each} & {h for each in without_key for h in each}


def frame_hashes(
    sources: list[Path], key: bytes | None = None, container: str | None = None
) -> list[list[str]]:
    """The hash of every video frame FFmpeg decodes from each source (none where it cannot),
    in one FFmpeg run; `key` is each input's CENC -decryption_key, `container` the demuxer
    each is read with (FFmpeg probes for one otherwise)."""
    command = list(FFMPEG)
    for source in sources:
        command += [
            *(("-decryption_key", key.hex()) if key else ()),
            *(("-f", container) if container else ()),
        ]
        command += ["-i", str(source)]
    folder = sources[0].parent / "hashes"
    folder.mkdir(exist_ok=True)
    targets = [folder / f"{index}-{bool(key)}.md5" for index in range(len(sources))]
    for index, target in enumerate(targets):
        command += ["-map", f"{index}:v:0?", "-f", "framemd5", str(target)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if key:
        assert result.returncode == 0 and result.stderr == "", result.stderr
    return [
        [
            line.rsplit(",", 1)[1].strip()
            for line in (target.read_text().splitlines() if target.exists() else [])
            if line and not line.startswith("#")
        ]
        for target in targets
    ]


def test_a_segment_alone_does_not_decode(encrypted, tmp_path):
    _cluster, _server, _auth, job, _clip = encrypted
    # Read as what a player reads it as: probed, an AES-128 segment's random-looking bytes
    # were once taken for another format that yielded one garbage picture (CI, 1 run in
    # many; the MPEG-TS demuxer finds no programme in them, its tables being CRC-checked).
    for name, suffix, container in (("hls-ts", ".ts", "mpegts"), ("hls-fmp4", ".m4s", "mp4")):
        output = output_named(job, name)
        path = segment_path(output, suffix)
        # No key token: segment URLs are the same for every viewer.
        answer = plain_http.get(output.playback_base_url + path)
        assert answer.status_code == 200, (name, answer.text)
        assert "immutable" in answer.headers["cache-control"]
        body = answer.content
        if name == "hls-fmp4":
            init = next(
                file.path
                for file in output.files
                if file.path.startswith(path.split("/")[0]) and "init" in file.path
            )
            body = plain_http.get(output.playback_base_url + init).content + body
        sample = tmp_path / f"{name}{suffix}"
        sample.write_bytes(body)
        assert frame_hashes([sample], container=container) == [[]], name


def test_key_urls_refuse_all_but_their_own_token(encrypted):
    _cluster, server, auth, job, _clip = encrypted
    grant = grant_for(server, auth, job, "hls-fmp4")
    other = grant_for(server, auth, job, "hls-ts")
    output, key_id = output_named(job, "hls-fmp4"), grant.encryption.key_ids[0]
    assert key_of(grant)
    folder = f"{job.id}/{output.id}/"
    keys = f"{server.http_url}/keys/"
    # Signed with the server's own key, for this very output, an hour ago for a minute.
    past = PlaybackTokens(
        SIGNING_KEY.encode(), ttl_seconds=60, purpose=KEY_PURPOSE, clock=lambda: time.time() - 3600
    )
    expired = past.mint(job.id, output.id, job.attempt).text
    segment_token = urlsplit(output.playback_url).path.split("/")[2]
    forged = grant.key_token[:-4] + ("AAAA" if not grant.key_token.endswith("AAAA") else "BBBB")
    refused = {
        "no token": f"{keys}{folder}{key_id}",
        "forged": f"{keys}{forged}/{folder}{key_id}",
        "expired": f"{keys}{expired}/{folder}{key_id}",
        "other output's": f"{keys}{other.key_token}/{folder}{key_id}",
        "segment token": f"{keys}{segment_token}/{folder}{key_id}",
    }
    for what, url in refused.items():
        answer = plain_http.get(url)
        assert answer.status_code == 403, (what, answer.status_code, answer.text)
        assert answer.headers["cache-control"] == "no-store", what
    # A key of the other output, asked for with this output's token: no such key here.
    missing = plain_http.get(f"{grant.key_url_prefix}{other.encryption.key_ids[0]}")
    assert missing.status_code == 404, missing.text
    assert plain_http.get(f"{grant.key_url_prefix}{'0' * 32}").status_code == 404
    assert plain_http.post(grant.key_url_prefix + "clearkey", content=b"{nope").status_code == 400
    # A playlist asked for with a bad key token is refused, not served with it.
    assert plain_http.get(f"{output.playback_url}?kt={forged}").status_code == 403
    # The segments are not the secret: they answer with or without any key token.
    path = segment_path(output, ".m4s")
    assert plain_http.get(output.playback_base_url + path).status_code == 200


def test_grant_refusals(encrypted):
    _cluster, server, auth, job, _clip = encrypted
    stub = server.job_stub()
    output_id = output_named(job, "dash").id
    now = int(time.time())
    bad = {
        "ttl": dict(ttl=duration_pb2.Duration(seconds=0)),
        "ttl ": dict(ttl=duration_pb2.Duration(seconds=3601)),
        "expire_time": dict(expire_time=timestamp_pb2.Timestamp(seconds=now - 60)),
        "expire_time ": dict(expire_time=timestamp_pb2.Timestamp(seconds=now + 7200)),
        " ttl": dict(
            ttl=duration_pb2.Duration(seconds=60),
            expire_time=timestamp_pb2.Timestamp(seconds=now + 60),
        ),
    }
    for field, fields in bad.items():
        request = job_service_pb2.CreatePlaybackGrantRequest(
            id=job.id, output_id=output_id, **fields
        )
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreatePlaybackGrant(request, metadata=auth)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert list(violations_from_grpc(refused.value)) == [field.strip()], field
    for request, who in (
        (job_service_pb2.CreatePlaybackGrantRequest(id=job.id, output_id="out_" + "0" * 26), auth),
        (
            job_service_pb2.CreatePlaybackGrantRequest(id=job.id),
            (("authorization", f"Bearer {_cluster.create_key('org_other')}"),),
        ),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreatePlaybackGrant(request, metadata=who)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    # A TTL the caller chose: the key token ends then, the playback URL's own token later.
    grant = grant_for(server, auth, job, "dash", ttl=duration_pb2.Duration(seconds=120))
    assert abs(grant.key_token_expire_time.seconds - (time.time() + 120)) < 30
    # The whole job: one grant per output, the server still serving.
    every = stub.CreatePlaybackGrant(
        job_service_pb2.CreatePlaybackGrantRequest(id=job.id), metadata=auth
    ).grants
    assert [grant.output_id for grant in every] == [output.id for output in job.outputs]


def test_create_refuses_what_cannot_be_encrypted(encrypted):
    _cluster, server, auth, _job, clip = encrypted
    aes = job_pb2.Encryption(scheme=AES_128)
    mp4 = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4, video=[job_pb2.VideoVariant(codec=H264)], encryption=aes
    )
    audio = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A, encryption=aes)
    thumbnail = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_JPG, encryption=aes)
    hls = job_pb2.OUTPUT_TYPE_HLS
    outputs = [
        mp4,
        audio,
        thumbnail,
        encrypted_ladder(hls, job_pb2.Encryption(scheme=AES_128, rotate_every_segments=0)),
        encrypted_ladder(hls, job_pb2.Encryption(scheme=AES_128, rotate_every_segments=-3)),
        encrypted_ladder(
            job_pb2.OUTPUT_TYPE_DASH, job_pb2.Encryption(scheme=CENC, rotate_every_segments=2)
        ),
        encrypted_ladder(hls, job_pb2.Encryption(scheme=CENC)),
        encrypted_ladder(job_pb2.OUTPUT_TYPE_CMAF, job_pb2.Encryption()),
    ]
    with pytest.raises(grpc.RpcError) as refused:
        server.job_stub().Create(
            job_service_pb2.CreateRequest(input_url=f"file://{clip}", outputs=outputs),
            metadata=auth,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations_from_grpc(refused.value)
    assert set(found) == {
        "outputs[0].encryption",
        "outputs[1].encryption",
        "outputs[2].encryption",
        "outputs[3].encryption.rotate_every_segments",
        "outputs[4].encryption.rotate_every_segments",
        "outputs[5].encryption.rotate_every_segments",
        "outputs[6].encryption.scheme",
        "outputs[7].encryption.scheme",
    }, found
    assert "MP4" in found["outputs[0].encryption"]
    assert "AES-128 HLS only" in found["outputs[5].encryption.rotate_every_segments"]
    listed = server.job_stub().List(job_service_pb2.ListRequest(), metadata=auth).jobs
    assert len(listed) == 1  # nothing written for the refused request


def test_delete_outputs_deletes_the_keys(encrypted):
    """DeleteOutputs takes an encrypted output's sealed keys with its files: the key URL and
    the Clear Key license of a grant made before answer 404, and the keys' table has no row
    of the job's outputs left. Its own job (one rung of each scheme, in another organization)
    so the module's job stays whole for the other checks."""
    cluster, server, _auth, _job, clip = encrypted
    auth = (("authorization", f"Bearer {cluster.create_key('org_encryption_delete')}"),)
    stub = server.job_stub()
    rung = [job_pb2.VideoVariant(codec=H264, resolution="160x90", quality=job_pb2.QUALITY_ECONOMY)]
    outputs = [
        job_pb2.OutputSpec(
            type=kind, video=rung, segments=ONE_SECOND, encryption=job_pb2.Encryption(scheme=scheme)
        )
        for kind, scheme in ((job_pb2.OUTPUT_TYPE_HLS, AES_128), (job_pb2.OUTPUT_TYPE_DASH, CENC))
    ]
    created = stub.Create(
        job_service_pb2.CreateRequest(input_url=f"file://{clip}", outputs=outputs), metadata=auth
    ).job
    watch = job_service_pb2.WatchRequest(id=created.id)
    job = list(stub.Watch(watch, metadata=auth, timeout=120))[-1].completed.job
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    grants = stub.CreatePlaybackGrant(
        job_service_pb2.CreatePlaybackGrantRequest(id=job.id), metadata=auth
    ).grants
    hls, dash = grants
    kid = base64.urlsafe_b64encode(bytes.fromhex(dash.encryption.key_ids[0])).rstrip(b"=")
    license_request = {"kids": [kid.decode()]}
    assert key_of(hls)
    assert plain_http.post(dash.clearkey_license_url, json=license_request).status_code == 200
    assert len(stored_key_rows(cluster.root / "kiln.db", job)) == 2

    stub.DeleteOutputs(job_service_pb2.DeleteOutputsRequest(id=job.id), metadata=auth)
    gone = plain_http.get(hls.key_url_prefix + hls.encryption.key_ids[0])
    assert gone.status_code == 404, gone.text
    assert gone.headers["cache-control"] == "no-store"
    refused = plain_http.post(dash.clearkey_license_url, json=license_request)
    assert refused.status_code == 404, refused.text
    assert stored_key_rows(cluster.root / "kiln.db", job) == []
    # The module's job keeps its keys, and the server still serves them.
    assert key_of(grant_for(server, _auth, _job, "hls-ts"))


def stored_key_rows(database: Path, job: job_pb2.Job) -> list[tuple[str, str]]:
    """(output id, key id) of every sealed key the database holds for the job's outputs."""
    outputs = [output.id for output in job.outputs]
    marks = ", ".join("?" * len(outputs))
    with sqlite3.connect(database) as connection:
        query = f"SELECT output_id, key_id FROM content_keys WHERE output_id IN ({marks})"
        return list(connection.execute(query, outputs))


def spellings(key: bytes) -> list[bytes]:
    """Every way a key could be written down: raw, hex (both cases), base64 and base64url."""
    forms = [key, key.hex().encode(), key.hex().upper().encode()]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms.append(encode(key).rstrip(b"="))
    return forms


def test_keys_appear_only_at_the_key_endpoint(encrypted):
    cluster, server, auth, job, _clip = encrypted
    keys = []
    answers = []
    for name in ("hls-ts", "hls-fmp4", "dash"):
        grant = grant_for(server, auth, job, name)
        answers.append(grant.SerializeToString() + MessageToJson(grant).encode())
        keys += [key_of(grant, index) for index in range(len(grant.encryption.key_ids))]
        # The playlists a viewer gets hold key URLs, never keys.
        answers.append(plain_http.get(grant.playback_url).content)
    assert len(keys) == 4 and len(set(keys)) == 4
    again = server.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    answers.append(again.SerializeToString() + MessageToJson(again).encode())
    connect = plain_http.post(
        f"{server.http_url}/kiln.v1.JobService/Get",
        json={"id": job.id},
        headers=dict(auth),
    )
    assert connect.status_code == 200
    answers.append(connect.content)
    shown = connect.json()["job"]["outputs"][0]["encryption"]
    assert set(shown) == {"scheme", "rotateEverySegments", "keyIds"}

    root = cluster.root
    stored = [path for path in cluster.storage_dir.rglob("*") if path.is_file()]
    assert any(path.suffix == ".m3u8" for path in stored)
    places: dict[str, bytes] = {str(path): path.read_bytes() for path in stored}
    logs = sorted(root.glob("*.log"))
    assert logs and any(b" INFO " in path.read_bytes() for path in logs)
    spans = sorted(root.glob("*-spans.jsonl"))
    assert len(spans) == 2 and all(path.stat().st_size for path in spans)
    places.update({str(path): path.read_bytes() for path in [*logs, *spans]})
    places.update({f"answer {index}": answer for index, answer in enumerate(answers)})
    places.update(database_values(root / "kiln.db"))
    assert any(place.startswith("content_keys.sealed_key") for place in places)
    for key in keys:
        for form in spellings(key):
            leaks = [place for place, content in places.items() if form in content]
            assert leaks == [], (form, leaks)


def database_values(database: Path) -> dict[str, bytes]:
    """Every text and blob value of every table, by table.column and row."""
    found: dict[str, bytes] = {}
    with sqlite3.connect(database) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            columns = [entry[0] for entry in cursor.description]
            for number, row in enumerate(cursor):
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str | bytes):
                        raw = value.encode() if isinstance(value, str) else value
                        found[f"{table}.{column} row {number}"] = raw
    return found


def test_cli_play_prints_a_viewer_url_with_a_key_token(encrypted):
    cluster, server, _auth, job, _clip = encrypted
    env = cluster.env(KILN_URL=server.http_url, KILN_API_KEY=cluster.create_key("org_encryption"))
    output = output_named(job, "hls-fmp4")

    def kiln(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            kiln_command("jobs", "play", job.id, *args),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    played = kiln("--output", output.id, "--ttl", "10m", "--json")
    assert played.returncode == 0, played.stderr
    (link,) = json.loads(played.stdout)["outputs"]
    assert link["playback_url"].startswith(output.playback_url + "?kt=")
    expires = datetime.fromisoformat(link["key_token_expire_time"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (time.time() + 600)) < 60
    key = plain_http.get(link["key_url_prefix"] + output.encryption.key_ids[0])
    assert key.status_code == 200 and len(key.content) == 16
    refused = kiln("--ttl", "ten minutes")
    assert refused.returncode != 0 and "--ttl" in refused.stderr, refused.stderr


@pytest.mark.slow
def test_players_play_with_a_grant(encrypted, tmp_path):
    """hls.js (AES-128: its default key loader fetches the EXT-X-KEY URL kiln wrote into the
    playlist for this viewer) and dash.js (EME Clear Key, from the license URL kiln wrote into
    the viewer's MPD) in headless Chromium, each given nothing but the grant's playback URL,
    on a page of another origin: past 2 s, no issue."""
    require_browser("player")
    _cluster, server, auth, job, _clip = encrypted
    grants = {name: grant_for(server, auth, job, name) for name in ("hls-ts", "hls-fmp4")}
    grant_key_ids = {name: grant.encryption.key_ids for name, grant in grants.items()}
    cases = [
        {"name": name, "player": "hls", "url": grant.playback_url, "bufferFirst": True}
        for name, grant in grants.items()
    ]
    # dash.js finds the license URL in the MPD kiln served this viewer (dashif:Laurl).
    cases.append(
        {
            "name": "dash",
            "player": "dash",
            "url": grant_for(server, auth, job, "dash").playback_url,
            "bufferFirst": True,
        }
    )
    with other_origin_site(tmp_path / "site") as site:
        report = play_cases(
            {
                "kiln": server.http_url,
                "playSeconds": PLAY_SECONDS,
                # A ceiling, not a wait: on loaded shared cores a player took over 8 s to start.
                "reachSeconds": 45,
                "probeTypes": [],
                "cases": cases,
            },
            tmp_path / "cases.json",
            site,
        )
    results = {entry["name"]: entry for entry in report["results"]}
    assert list(results) == ["hls-ts", "hls-fmp4", "dash"]
    for name, entry in results.items():
        assert entry["issues"] == [], (name, entry["issues"], entry["time"], entry["responses"])
        assert entry["time"] >= PLAY_SECONDS, (name, entry)
        # The key came from kiln's key endpoint (a key id, or the Clear Key license).
        keys = set(grant_key_ids[name]) if name != "dash" else {"clearkey"}
        fetched = [r for r in entry["responses"] if r["file"] in keys]
        assert fetched and all(r["status"] == 200 for r in fetched), (name, entry["responses"])
        assert all(r["allowOrigin"] == "*" for r in entry["responses"]), name
