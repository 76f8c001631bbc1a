"""The HTTP listener: /healthz, /metrics, output files (/play/… for players, signed /files/…
for downloads), encrypted outputs' keys (/keys/…), the dashboard (/ui/), the rest to
Connect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote, unquote

import anyio

from common.storage.signing import UrlSigner

from ..delivery.file_server import FILES_PREFIX, OutputFileServer, split_output_path
from ..delivery.key_playlists import KEYS_PREFIX
from ..delivery.key_server import KeyServer
from ..delivery.links import PLAY_PREFIX
from .dashboard_files import PREFIX as DASHBOARD_PREFIX
from .dashboard_files import DashboardFiles

# The Prometheus text format this listener answers /metrics in.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpApp:
    """A tiny ASGI router in front of the Connect application."""

    def __init__(
        self,
        connect_apps,
        signer: UrlSigner,
        files: OutputFileServer,
        *,
        metrics: Callable[[], Awaitable[bytes]] | None = None,
        keys: KeyServer | None = None,
    ) -> None:
        # Each Connect application serves the paths under its service name ("/kiln.v1.JobService").
        self.connect_apps = {app.path: app for app in connect_apps}
        self.signer = signer
        self.files = files
        # Renders the Prometheus text (server/metrics.py); None: no /metrics route.
        self.metrics = metrics
        self.dashboard = DashboardFiles()
        # Encrypted outputs' keys for viewers with a key token; None: no /keys/ route.
        self.keys = keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/healthz":
                await _respond(send, 200, b'{"status":"ok"}', "application/json")
                return
            if path == "/metrics" and self.metrics is not None and scope["method"] == "GET":
                await _respond(send, 200, await self.metrics(), METRICS_CONTENT_TYPE)
                return
            if path.startswith(KEYS_PREFIX) and self.keys is not None:
                await self.keys(scope, receive, send)
                return
            if path.startswith((PLAY_PREFIX, FILES_PREFIX)):
                if scope["method"] == "OPTIONS":
                    await self._preflight(scope, send)
                elif scope["method"] not in ("GET", "HEAD"):
                    await _respond(send, 405, b"method not allowed\n", "text/plain")
                elif path.startswith(PLAY_PREFIX):
                    await self.files.play(scope, receive, send)
                else:
                    await self._file(scope, receive, send)
                return
            if scope["method"] in ("GET", "HEAD") and (
                path == "/" or path.startswith(DASHBOARD_PREFIX)
            ):
                await self._dashboard(scope, send)
                return
        if scope["type"] == "http":
            service = "/" + scope["path"].lstrip("/").split("/", 1)[0]
            app = self.connect_apps.get(service)
            if app is None:
                await _respond(send, 404, b"not found\n", "text/plain")
                return
            await app(scope, receive, send)

    async def _file(self, scope, receive, send) -> None:
        """A per-file download URL (signed in its query string): downloads, not playback."""
        key = unquote(scope["path"].removeprefix(FILES_PREFIX))
        query = parse_qs(scope.get("query_string", b"").decode())
        expires = query.get("expires", [""])[0]
        signature = query.get("sig", [""])[0]
        if not self.signer.verify(key, expires, signature):
            await _respond(send, 403, b"signature invalid or expired\n", "text/plain")
            return
        parsed = split_output_path(quote(key))
        if parsed is None:
            await _respond(send, 403, b"forbidden\n", "text/plain")
            return
        await self.files.serve_local(scope, receive, send, *parsed)

    async def _preflight(self, scope, send) -> None:
        headers = self.files.preflight(scope)
        if headers is None:
            await _respond(send, 403, b"origin not allowed\n", "text/plain")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [*headers, (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _dashboard(self, scope, send) -> None:
        if scope["path"] == "/":
            await send(
                {
                    "type": "http.response.start",
                    "status": 302,
                    "headers": [
                        (b"location", DASHBOARD_PREFIX.encode()),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        found = self.dashboard.find(scope["path"])
        if found is None:
            await _respond(send, 404, b"not found\n", "text/plain")
            return
        # Read in a worker thread: this loop also serves every RPC.
        body = await anyio.to_thread.run_sync(found.path.read_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", found.content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-cache"),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})


async def _respond(send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
