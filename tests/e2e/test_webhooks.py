"""Webhooks through a running server: every event of a job, signed (Standard Webhooks) with
the organization's secrets, retried until taken; the WebhookService and `kiln webhooks`.

Retries are made fast by configuration (50 ms doubling to 200 ms), never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import subprocess
import threading
import time
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from kiln.v1 import job_pb2, job_service_pb2, webhook_service_pb2, webhook_service_pb2_grpc
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from server.store.store import Store
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support import plain_http

from .cluster import kiln_command, running_cluster
from .jobs import create_job, run_to_end

SECRET = "whsec_" + base64.b64encode(b"kiln-e2e-webhook-secret-32-bytes").decode()
SERVICE = "kiln.v1.WebhookService"


# The outbox is shared by replicas with SKIP LOCKED on PostgreSQL; the settings' SQL runs on
# both databases in tests/integration/test_webhook_events.py. PostgreSQL only here.
@pytest.fixture(scope="module")
def backend_url(postgres_available):
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


class Receiver:
    """A loopback HTTP endpoint that answers 503 to its first `failures` posts, then 204."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        # (headers, body, status answered)
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.arrived:
                    status = 503 if len(receiver.requests) < receiver.failures else 204
                    receiver.requests.append((headers, body, status))
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/kiln"

    def taken(self) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b, status in self.requests if status == 204]

    def wait_for_types(self, *types: str, job_id: str = "", timeout: float = 60) -> list:
        """Until an event of each type (of `job_id`, if given) was taken (answered 2xx);
        returns every taken one."""

        def done() -> bool:
            seen = {
                event["type"]
                for event in (json.loads(body) for _, body in self.taken())
                if not job_id or event_job_id(event) == job_id
            }
            return set(types) <= seen

        with self.arrived:
            assert self.arrived.wait_for(done, timeout), [
                (json.loads(b)["type"], s) for _, b, s in self.requests
            ]
            return self.taken()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture(scope="module")
def hook_cluster(backend_url, tmp_path_factory, media_root):
    settings = dict(
        KILN_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
        KILN_WEBHOOK_SECRET=SECRET,
        KILN_WEBHOOK_BACKOFF_SECONDS="0.05",
        KILN_WEBHOOK_MAX_BACKOFF_SECONDS="0.2",
    )
    root = tmp_path_factory.mktemp("hooks")
    with running_cluster(backend_url, root, media_root, settings=settings, workers=1) as running:
        yield running


def api_key(cluster, organization: str) -> str:
    """A key made on the cluster's database in this process (what `kiln create-key` does,
    without a Python start per organization)."""

    async def create() -> str:
        store = Store(cluster.database_url)
        try:
            async with store.transaction() as tx:
                await tx.keys.ensure_organization(organization)
                return await tx.keys.create_api_key(organization, "e2e")
        finally:
            await store.close()

    return asyncio.run(create())


def org_auth(cluster, organization: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key(cluster, organization)}"),)


def webhook_stub(server) -> webhook_service_pb2_grpc.WebhookServiceStub:
    return webhook_service_pb2_grpc.WebhookServiceStub(grpc.insecure_channel(server.grpc_target))


def connect_call(server, auth, method: str, body: dict) -> httpx.Response:
    """Connect JSON, as curl speaks it."""
    return plain_http.post(
        f"{server.http_url}/{SERVICE}/{method}",
        json=body,
        headers={"Authorization": auth[0][1], "Content-Type": "application/json"},
        timeout=30,
    )


def clip_url(media_root) -> str:
    return f"file://{media_root / 'clip2s.mp4'}"


def event_job_id(event: dict) -> str:
    return event["data"].get("job_id") or event["data"]["job"]["id"]


def verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def test_own_url_event_is_signed_with_the_server_secret_and_retried_unchanged(
    hook_cluster, media_root, receiver
):
    """An organization that never rotated signs with KILN_WEBHOOK_SECRET; a retry is the
    same message (same webhook-id and body)."""
    cluster, server = hook_cluster
    auth = org_auth(cluster, "org_hooks")
    hooks = receiver(failures=1)
    job = create_job(server, auth, clip_url(media_root), webhook_url=hooks.url, delayed_start=True)
    server.job_stub().Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
    [(headers, body)] = hooks.wait_for_types("job.canceled")
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["data"]["job"]["id"] == job.id
    assert payload["data"]["job"]["status"] == "JOB_STATUS_CANCELED"
    assert headers["content-type"] == "application/json"
    # The first attempt was refused (503) and the same message sent again.
    [(refused_headers, refused_body, status), _] = hooks.requests
    assert status == 503
    assert refused_headers["webhook-id"] == headers["webhook-id"] and refused_body == body
    # A tampered body fails verification.
    assert not verifies(SECRET, headers, body.replace(b"CANCELED", b"COMPLETED"))


def test_every_event_is_taken_once_despite_a_receiver_down_at_first(
    hook_cluster, media_root, receiver
):
    cluster, server = hook_cluster
    auth = org_auth(cluster, "org_events")
    hooks = receiver(failures=4)
    # No overlap: from now on only the organization's own secret signs.
    secret = (
        webhook_stub(server)
        .RotateWebhookSecret(
            webhook_service_pb2.RotateWebhookSecretRequest(overlap_seconds=0), metadata=auth
        )
        .secret
    )
    webhook_stub(server).UpdateWebhookSettings(
        webhook_service_pb2.UpdateWebhookSettingsRequest(default_url=hooks.url), metadata=auth
    )
    # No webhook_url of its own: the organization's default URL gets its events.
    job = create_job(server, auth, clip_url(media_root), delayed_start=True)
    hooks.wait_for_types("job.awaiting_confirmation")
    server.job_stub().Confirm(job_service_pb2.ConfirmRequest(id=job.id), metadata=auth)
    assert run_to_end(server, auth, job.id).status == job_pb2.JOB_STATUS_COMPLETED
    taken = hooks.wait_for_types("output.completed", "job.completed")

    ids = [headers["webhook-id"] for headers, _ in taken]
    assert len(ids) == len(set(ids)), "an event was taken twice"
    assert any(status == 503 for _, _, status in hooks.requests)
    kinds = []
    for headers, body in taken:
        payload = Webhook(secret).verify(body, headers)  # the organization's own secret
        kinds.append(payload["type"])
        assert event_job_id(payload) == job.id
    # Progress events depend on how often the worker reported; each threshold at most once.
    progress = [k for k in kinds if k == "job.progress"]
    assert sorted(set(kinds) - {"job.progress"}) == [
        "job.awaiting_confirmation",
        "job.completed",
        "output.completed",
    ]
    assert len(kinds) == 3 + len(progress) and len(progress) <= 3
    # Every attempt, refused ones included, carried the organization's signature only.
    for headers, body, _ in hooks.requests:
        assert verifies(secret, headers, body) and not verifies(SECRET, headers, body)


def test_rotated_secret_overlaps_then_the_old_ones_stop(
    hook_cluster, media_root, receiver, tmp_path
):
    cluster, server = hook_cluster
    key = api_key(cluster, "org_rotation")
    auth = (("authorization", f"Bearer {key}"),)
    env = cluster.env(KILN_URL=server.http_url, KILN_API_KEY=key)
    hooks = receiver()

    def kiln(*args: str) -> str:
        done = subprocess.run(
            kiln_command("webhooks", *args),
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert hooks.url in kiln("set-url", hooks.url)
    first = kiln("rotate-secret").splitlines()[-1]
    # An hour's overlap: the first secret (and the server's) still sign beside the second.
    second_answer = connect_call(server, auth, "RotateWebhookSecret", {"overlap_seconds": 3600})
    assert second_answer.status_code == 200, second_answer.text
    second = second_answer.json()["secret"]

    def canceled_event() -> tuple[dict[str, str], bytes]:
        job = create_job(server, auth, clip_url(media_root), delayed_start=True)
        server.job_stub().Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
        return next(
            (h, b)
            for h, b in hooks.wait_for_types("job.canceled", job_id=job.id)
            if event_job_id(json.loads(b)) == job.id
        )

    headers, body = canceled_event()
    assert len(headers["webhook-signature"].split(" ")) == 3
    assert all(verifies(s, headers, body) for s in (second, first, SECRET))

    # A third rotation with a one-second overlap: once it ends only the third secret signs.
    third_answer = webhook_stub(server).RotateWebhookSecret(
        webhook_service_pb2.RotateWebhookSecretRequest(overlap_seconds=1), metadata=auth
    )
    third = third_answer.secret
    ending = max(s.expire_time.ToDatetime(UTC) for s in third_answer.settings.signing_secrets)
    # Waiting for a deadline on the clock (the overlap's end), not for another process.
    time.sleep(max((ending - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    headers, body = canceled_event()
    assert verifies(third, headers, body)
    assert not any(verifies(s, headers, body) for s in (second, first, SECRET))

    shown = kiln("get")
    assert "current" in shown and third not in shown and "until" not in shown


def test_settings_over_both_protocols_never_show_a_secret(hook_cluster, receiver):
    cluster, server = hook_cluster
    auth = org_auth(cluster, "org_settings")
    hooks = receiver()
    fresh = connect_call(server, auth, "GetWebhookSettings", {})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json() == {"settings": {"signingSecrets": [{"id": "server"}]}}

    updated = webhook_stub(server).UpdateWebhookSettings(
        webhook_service_pb2.UpdateWebhookSettingsRequest(default_url=hooks.url), metadata=auth
    )
    assert updated.settings.default_url == hooks.url
    rotated = connect_call(server, auth, "RotateWebhookSecret", {}).json()
    assert rotated["secret"].startswith("whsec_")
    base64.b64decode(rotated["secret"].removeprefix("whsec_"), validate=True)

    shown = connect_call(server, auth, "GetWebhookSettings", {})
    assert rotated["secret"] not in shown.text
    settings = shown.json()["settings"]
    assert settings["defaultUrl"] == hooks.url
    current, server_wide = settings["signingSecrets"]
    assert current["id"].startswith("whk_") and "expireTime" not in current
    assert server_wide["id"] == "server" and "expireTime" in server_wide
    # Clearing the default URL.
    cleared = connect_call(server, auth, "UpdateWebhookSettings", {"default_url": ""})
    assert "defaultUrl" not in cleared.json()["settings"]
    # Another organization sees its own settings only.
    other = org_auth(cluster, "org_settings_other")
    theirs = webhook_stub(server).GetWebhookSettings(
        webhook_service_pb2.GetWebhookSettingsRequest(), metadata=other
    )
    assert [s.id for s in theirs.settings.signing_secrets] == ["server"]


BAD_URLS = [
    ("http://10.1.2.3/hook", "10.1.2.3, a private address"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::1]:8080/hook", "loopback"),
    ("ftp://hooks.example/kiln", "must be an http:// or https:// URL"),
    ("file:///etc/passwd", "must be an http:// or https:// URL"),
    ("hooks.example/kiln", "must be an http:// or https:// URL"),
    ("https://" + "a" * 2100 + ".example/", "at most 2048 characters"),
    ("https://hooks.example/k\nX-Injected: 1", "control character"),
    ("https://hooks.example/\x00", "control character"),
]


@pytest.fixture(scope="module")
def bad_settings_auth(hook_cluster):
    return org_auth(hook_cluster[0], "org_bad_settings")


@pytest.mark.parametrize(("url", "why"), BAD_URLS, ids=range(len(BAD_URLS)))
def test_bad_default_urls_are_invalid_argument_on_both_protocols(
    hook_cluster, bad_settings_auth, url, why
):
    _, server = hook_cluster
    auth = bad_settings_auth
    answer = connect_call(server, auth, "UpdateWebhookSettings", {"default_url": url})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_argument"
    assert "default_url" in answer.json()["message"] and why in answer.json()["message"]
    with pytest.raises(grpc.RpcError) as caught:
        webhook_stub(server).UpdateWebhookSettings(
            webhook_service_pb2.UpdateWebhookSettingsRequest(default_url=url), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "default_url" in caught.value.details()
    # Nothing was stored.
    settings = webhook_stub(server).GetWebhookSettings(
        webhook_service_pb2.GetWebhookSettingsRequest(), metadata=auth
    )
    assert settings.settings.default_url == ""


def test_bad_overlaps_and_missing_keys_are_refused(hook_cluster):
    cluster, server = hook_cluster
    auth = org_auth(cluster, "org_bad_overlap")
    for overlap in (-1, 604801):
        answer = connect_call(server, auth, "RotateWebhookSecret", {"overlap_seconds": overlap})
        assert answer.status_code == 400, answer.text
        assert "overlap_seconds: must be between 0 and 604800" in answer.json()["message"]
    settings = webhook_stub(server).GetWebhookSettings(
        webhook_service_pb2.GetWebhookSettingsRequest(), metadata=auth
    )
    assert [s.id for s in settings.settings.signing_secrets] == ["server"]  # nothing rotated
    for method in ("GetWebhookSettings", "RotateWebhookSecret"):
        anonymous = plain_http.post(f"{server.http_url}/{SERVICE}/{method}", json={}, timeout=30)
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "unauthenticated"
