"""The `kiln` command against a real server and worker: `python -m kiln_cli ...` as a
subprocess with KILN_URL and KILN_API_KEY, as a person would run it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kiln.v1 import job_service_pb2

from server.store.migrate import migrate
from server.store.store import Store
from tests.conftest import make_clip

from .cluster import Cluster, ServerProcess, kiln_command, running_cluster

EXIT_USAGE, EXIT_NOT_COMPLETED, EXIT_API = 2, 3, 4


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory, media_root):
    """SQLite is enough here: the store's behaviour is covered on both backends elsewhere."""
    root = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{root / 'kiln.db'}"
    with running_cluster(url, root, media_root, workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def cli_env(cli_cluster):
    cluster, server = cli_cluster
    return cluster.env(KILN_URL=server.http_url, KILN_API_KEY=cluster.create_key("org_cli"))


def kiln(env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 60):
    return subprocess.run(
        kiln_command(*args),
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_create_wait_completes_and_every_json_answer_parses(cli_env, media_root):
    clip = f"file://{media_root / 'clip2s.mp4'}"
    created = kiln(
        cli_env,
        *("jobs", "create", "--input", clip, "--output", "mp4:h264:240p", "-m", "team=cli"),
        *("--priority", "premium", "--idempotency-key", "cli-1", "--wait", "--json"),
    )
    assert created.returncode == 0, created.stderr
    lines = [json.loads(line) for line in created.stdout.splitlines()]
    job_id = lines[0]["job"]["id"]
    events = lines[1:]
    assert "snapshot" in events[0]
    assert "completed" in events[-1]
    sequences = [int(e.get("sequence", 0)) for e in events[1:-1]]
    assert sequences == sorted(set(sequences))

    got = kiln(cli_env, "jobs", "get", job_id, "--json")
    assert got.returncode == 0, got.stderr
    job = json.loads(got.stdout)["job"]
    assert job["status"] == "JOB_STATUS_COMPLETED"
    assert job["priority"] == "PRIORITY_PREMIUM"
    assert job["metadata"] == {"team": "cli"}

    listed = kiln(cli_env, "jobs", "list", "--status", "completed", "--limit", "5", "--json")
    assert listed.returncode == 0, listed.stderr
    assert job_id in [j["id"] for j in json.loads(listed.stdout)["jobs"]]

    # The human views run too (and name the job).
    assert job_id in kiln(cli_env, "jobs", "get", job_id).stdout
    assert kiln(cli_env, "jobs", "list").returncode == 0

    # Same idempotency key: the first job, without waiting.
    again = kiln(
        cli_env,
        *("jobs", "create", "--input", clip, "--output", "mp4:h264:240p", "-m", "team=cli"),
        *("--priority", "premium", "--idempotency-key", "cli-1", "--json"),
    )
    assert json.loads(again.stdout)["job"]["id"] == job_id


def test_download_writes_every_file_of_every_output(cli_env, media_root, tmp_path):
    clip = f"file://{media_root / 'clip2s.mp4'}"
    created = kiln(
        cli_env,
        *("jobs", "create", "--input", clip, "-o", "mp4:h264:240p", "-o", "hls:h264:240p"),
        *("-o", "jpg", "--wait", "--json"),
    )
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout.splitlines()[-1])["completed"]["job"]
    expected = {
        (output["id"], file["path"]): int(file["sizeBytes"])
        for output in job["outputs"]
        for file in output["files"]
    }
    assert len(expected) > 3

    result = kiln(cli_env, "jobs", "download", job["id"], "--dir", str(tmp_path / "dl"), "--json")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "dl"
    written = {}
    for path in folder.rglob("*"):
        if path.is_file():
            output_id, *rest = path.relative_to(folder).parts
            written[(output_id, "/".join(rest))] = path.stat().st_size
    assert written == expected
    assert len(json.loads(result.stdout)["files"]) == len(expected)

    # `jobs play`: each output's playback URL, by id or as the newest job.
    played = kiln(cli_env, "jobs", "play", job["id"])
    assert played.returncode == 0, played.stderr
    rows = [line.split("\t") for line in played.stdout.splitlines()]
    assert rows == [
        [
            output["id"],
            output["spec"]["type"].removeprefix("OUTPUT_TYPE_").lower(),
            output["playbackUrl"],
        ]
        for output in job["outputs"]
    ]
    assert rows[1][2].endswith("/master.m3u8") and "/play/" in rows[1][2]
    newest = json.loads(kiln(cli_env, "jobs", "play", "latest", "--json").stdout)
    assert newest["job_id"] == job["id"]
    assert [o["playback_url"] for o in newest["outputs"]] == [row[2] for row in rows]


def test_rejected_input_exits_with_the_failure_code(cli_env, media_root):
    text = media_root / "not_media.mp4"
    text.write_text("this is text, not video\n")
    result = kiln(
        cli_env, "jobs", "create", "--input", f"file://{text}", "-o", "mp4:h264:240p", "--wait"
    )
    assert result.returncode == EXIT_NOT_COMPLETED, result.stderr
    assert "REJECTED" in result.stderr
    assert "Traceback" not in result.stderr


TRACKS_SPEC = """\
input_url: file://{root}/clip2s.mp4
outputs:
  - type: mp4
    video: [{{codec: h264, resolution: 160x90}}]
    audio: {{loudness: {{preset: streaming}}}}
    audio_tracks:
      - {{stream_index: 1, language: en, default: true}}
      - {{url: "file://{root}/clip2s.mp4", language: fr, name: Français}}
    text_tracks:
      - {{url: "file://{root}/cli-tracks/fr.vtt", language: fr, kind: captions}}
"""


def test_jobs_get_shows_tracks_and_loudness_per_track(cli_cluster, cli_env, media_root, tmp_path):
    """A spec file with two audio tracks normalized to -14 LUFS and a caption track: `jobs
    create --wait` ends on the job's view, and `jobs get` lists each track (language, name,
    source) and each track's measured loudness, as the API has them."""
    (media_root / "cli-tracks").mkdir(exist_ok=True)
    (media_root / "cli-tracks" / "fr.vtt").write_text(
        "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nBonjour\n"
    )
    spec = tmp_path / "tracks.yaml"
    spec.write_text(TRACKS_SPEC.format(root=media_root))
    created = kiln(cli_env, "jobs", "create", "--spec", str(spec), "--wait", timeout=120)
    assert created.returncode == 0, created.stderr
    named = re.search(r"\bjob_\w+", created.stdout)  # "created job_…", then the view
    assert named is not None, created.stdout
    job_id = named.group(0)
    shown = kiln(cli_env, "jobs", "get", job_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "audio track 0  en  stream 1  (default)" in text
    assert f'audio track 1  fr "Français"  file://{media_root}/clip2s.mp4' in text
    assert f"text track 0  fr  file://{media_root}/cli-tracks/fr.vtt  (captions)" in text
    _, server = cli_cluster
    auth = (("authorization", f"Bearer {cli_env['KILN_API_KEY']}"),)
    job = server.job_stub().Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job
    figures = job.outputs[0].track_loudness
    assert [f.audio_track_index for f in figures] == [0, 1]
    lines = {line.strip().partition(" loudness ")[0]: line for line in text.splitlines()}
    for index, language in enumerate(("en", "fr")):
        line = lines[f"audio track {index} ({language})"]
        measured = figures[index]
        assert f" {measured.input_integrated_lufs:.1f} LUFS -> " in line, line
        assert f"-> {measured.output_integrated_lufs:.1f} LUFS, true peak " in line, line
        assert "(target -14 LUFS, -1 dBTP;" in line, line
    # The view that `create --wait` ends on is the same.
    assert "audio track 1  fr" in created.stdout and "text track 0  fr" in created.stdout


def test_usage_and_api_errors_have_their_codes_and_no_traceback(cli_env, tmp_path):
    bad_shorthand = kiln(cli_env, "jobs", "create", "--input", "file:///x.mp4", "-o", "mp4:h264")
    assert bad_shorthand.returncode == EXIT_USAGE
    assert "--output 'mp4:h264'" in bad_shorthand.stderr
    spec = tmp_path / "job.yaml"
    spec.write_text("input_url: file:///x.mp4\noutputs: [{type: OUTPUT_TYPE_NOPE}]\n")
    bad_spec = kiln(cli_env, "jobs", "create", "--spec", str(spec))
    assert bad_spec.returncode == EXIT_USAGE
    assert f"--spec {spec}" in bad_spec.stderr
    unknown_flag = kiln(cli_env, "jobs", "create", "--frobnicate")
    assert unknown_flag.returncode == EXIT_USAGE

    not_found = kiln(cli_env, "jobs", "get", "job_01hzzzzzzzzzzzzzzzzzzzzzzz")
    assert not_found.returncode == EXIT_API
    assert "not_found" in not_found.stderr
    invalid = kiln(cli_env, "jobs", "create", "--input", "ftp://x/y.mp4", "-o", "mp4:h264:240p")
    assert invalid.returncode == EXIT_API
    assert "invalid_argument" in invalid.stderr
    unreachable = kiln({**cli_env, "KILN_URL": "http://127.0.0.1:9"}, "jobs", "list")
    assert unreachable.returncode == EXIT_API
    assert "unavailable" in unreachable.stderr
    for result in (bad_shorthand, bad_spec, not_found, invalid, unreachable):
        assert "Traceback" not in result.stderr


def test_presets_round_trip(cli_env):
    created = kiln(
        cli_env,
        *("presets", "create", "--name", "cli webm", "-o", "webm:vp9:240p", "--json"),
    )
    assert created.returncode == 0, created.stderr
    preset = json.loads(created.stdout)["preset"]
    assert preset["id"].startswith("pst_")
    got = json.loads(kiln(cli_env, "presets", "get", preset["id"], "--json").stdout)["preset"]
    assert got["spec"]["video"][0]["codec"] == "VIDEO_CODEC_VP9"
    listed = json.loads(kiln(cli_env, "presets", "list", "--json").stdout)["presets"]
    ids = [p["id"] for p in listed]
    assert preset["id"] in ids
    assert "h264_720p_standard" in ids
    assert kiln(cli_env, "presets", "delete", preset["id"]).returncode == 0
    gone = kiln(cli_env, "presets", "get", preset["id"])
    assert gone.returncode == EXIT_API
    assert "not_found" in gone.stderr


def test_keys_list_and_revoke_stop_the_key(cli_env):
    created = kiln(cli_env, "keys", "create", "--org", "org_revoke", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    as_key = {**cli_env, "KILN_API_KEY": key}
    assert kiln(as_key, "jobs", "list").returncode == 0

    listed = json.loads(kiln(cli_env, "keys", "list", "--org", "org_revoke", "--json").stdout)
    assert [(k["organization_id"], k["name"]) for k in listed] == [("org_revoke", "ci")]
    revoked = kiln(cli_env, "keys", "revoke", listed[0]["id"])
    assert revoked.returncode == 0, revoked.stderr
    again = kiln(cli_env, "keys", "revoke", listed[0]["id"])
    assert again.returncode == EXIT_API

    # Servers trust a key they have seen for at most 2 s.
    deadline = time.monotonic() + 10
    while True:
        result = kiln(as_key, "jobs", "list")
        if result.returncode == EXIT_API or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == EXIT_API
    assert "unauthenticated" in result.stderr


async def test_store_lists_and_revokes_keys(database_url):
    migrate(database_url)
    store = Store(database_url)
    try:
        async with store.transaction() as tx:
            await tx.keys.ensure_organization("org_a")
            await tx.keys.ensure_organization("org_b")
            key_a = await tx.keys.create_api_key("org_a", "first")
            await tx.keys.create_api_key("org_b", "second")
        async with store.transaction() as tx:
            everyone = await tx.keys.list_api_keys()
            only_a = await tx.keys.list_api_keys("org_a")
            key_id = await tx.keys.api_key_id(key_a)
        assert [(k.organization_id, k.name) for k in everyone] == [
            ("org_a", "first"),
            ("org_b", "second"),
        ]
        assert [k.id for k in only_a] == [key_id]
        async with store.transaction() as tx:
            assert await tx.keys.revoke_api_key(key_id)
            assert not await tx.keys.revoke_api_key(key_id)
        async with store.transaction() as tx:
            assert await tx.keys.organization_for_key(key_a) is None
            assert [k.name for k in await tx.keys.list_api_keys()] == ["second"]
    finally:
        await store.close()


def _stop(server: ServerProcess) -> None:
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)


def test_watch_survives_a_server_restart(tmp_path, media_root):
    clip = make_clip(media_root / "clip12s_480p.mp4", seconds=12, size="854x480")
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    with running_cluster(url, tmp_path, media_root, workers=1) as (cluster, server):
        env = cluster.env(KILN_URL=server.http_url, KILN_API_KEY=cluster.create_key("org_w"))
        # Held for confirmation until the watcher is connected: the encode takes ~3 s, less
        # than the watching CLI may need to start on a loaded machine.
        created = kiln(
            env,
            *("jobs", "create", "--input", f"file://{clip}", "-o", "mp4:h264:360p"),
            *("--delayed-start", "--json"),
        )
        assert created.returncode == 0, created.stderr
        job_id = json.loads(created.stdout)["job"]["id"]

        watcher = subprocess.Popen(
            kiln_command("jobs", "watch", job_id, "--json"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        awaiting, progressed = threading.Event(), threading.Event()

        def read() -> None:
            assert watcher.stdout is not None
            for line in watcher.stdout:
                lines.append(line)
                event = json.loads(line)
                if '"JOB_STATUS_AWAITING_CONFIRMATION"' in line:
                    awaiting.set()
                if "progress" in event or float(
                    event.get("output", {}).get("output", {}).get("progress", 0)
                ):
                    progressed.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert awaiting.wait(30), lines
        confirmed = kiln(env, "jobs", "confirm", job_id)
        assert confirmed.returncode == 0, confirmed.stderr
        assert progressed.wait(30), lines
        _stop(server)
        assert watcher.poll() is None, "the watch must outlive the server"
        restarted = _restart(cluster, server)
        assert watcher.wait(timeout=60) == 0, watcher.stderr.read() if watcher.stderr else ""
        reader.join(5)
        assert restarted.process.poll() is None
        stderr = watcher.stderr.read() if watcher.stderr else ""
        assert "resuming after sequence" in stderr

    events = [json.loads(line) for line in lines]
    assert "snapshot" in events[0]
    assert "completed" in events[-1]
    assert events[-1]["completed"]["job"]["status"] == "JOB_STATUS_COMPLETED"
    sequences = [int(e["sequence"]) for e in events[1:]]
    assert sequences == sorted(set(sequences)), sequences
    assert sequences[0] > int(events[0].get("sequence", 0))


def _restart(cluster: Cluster, server: ServerProcess) -> ServerProcess:
    return cluster.restart_server(server)
