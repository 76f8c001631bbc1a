"""Serving output files to players and CDNs: /play/{token}/{job}/{output}/… and /files/….

HTTP semantics come from Starlette's FileResponse and StaticFiles' conditional checks (single
and multiple ranges, 416, HEAD, ETag and Last-Modified with If-None-Match / If-Modified-Since /
If-Range, reads in a worker thread), not from code of our own. What this module adds is
kiln's own:

- the path is checked before any file is looked at: the token must cover exactly the
  `{job_id}/{output_id}/` folder named, and the rest must be a plain relative name (no `..`,
  encoded slashes or dots, backslashes, control characters); the file is then opened one
  folder at a time with O_NOFOLLOW, so no symbolic link in storage leads anywhere, and what
  was checked is what is sent (Linux: the library reads the open file through /proc);
- outputs on GCS are relayed from the bucket with the request's Range and validators passed
  through, so one playback URL works on every backend;
- the Content-Type of every extension kiln writes comes from one table (media_types), and
  Cache-Control says what a CDN may keep: segments and finished files for a year
  (`immutable`: a retried job gets new URLs), playlists and MPDs revalidated every time
  (live playlists grow while a chunked job runs);
- CORS for players on other sites (`KILN_PLAYBACK_ALLOWED_ORIGINS`, `*` by default: the
  token is the credential, not a cookie), with preflight for `Range`;
- an encrypted output's playlists and MPD, asked for with a viewer's key token (`?kt=`), are
  rewritten for that viewer (delivery.key_playlists); its segments never are;
- a file that vanishes (DeleteOutputs while a page plays it) is a 404, or, once opened, is
  sent whole; never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Message, Receive, Scope, Send

from common.storage.keys import safe_relative_path
from common.storage.local import LocalStorage
from common.storage.media_types import mime_type_for

from .key_playlists import KEY_TOKEN_QUERY, rewrite_manifest
from .links import PLAY_PREFIX
from .tokens import PlaybackTokens

FILES_PREFIX = "/files/"
_JOB_ID = re.compile(r"job_[0-9a-z]{26}")
_OUTPUT_ID = re.compile(r"out_[0-9a-z]{26}")
MANIFEST_SUFFIXES = (".m3u8", ".mpd")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
VIEWER_PLAYLIST_CACHE = "private, no-store"
# A playlist rewritten for one viewer is read whole: its stored validators and ranges do
# not describe what is sent.
CONDITIONAL_REQUEST_HEADERS = frozenset(
    {b"range", b"if-range", b"if-none-match", b"if-modified-since"}
)
# Request headers a player's script may send cross-origin, and response headers it may read.
CORS_REQUEST_HEADERS = "Range, If-None-Match, If-Modified-Since, If-Range"
CORS_EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified"
# Plain GETs of files up to this size (segments, playlists) are read in one piece.
READ_WHOLE_MAX_BYTES = 4 * 1024 * 1024
# job_id → output origin: an origin never changes after Create, so it is cached for good.
ORIGINS_CACHED = 4096

# (job_id, output_id) → where its files are ("" local, "gs://…"), None if no such output.
OriginLookup = Callable[[str, str], Awaitable[str | None]]
# (origin, key, scope, send, extra headers) → relays one stored object from a bucket.
BucketRelay = Callable[[str, str, Scope, Send, Sequence[tuple[bytes, bytes]]], Awaitable[None]]


def cache_control_for(path: str) -> str:
    return REVALIDATE if path.endswith(MANIFEST_SUFFIXES) else IMMUTABLE


def split_output_path(rest: str) -> tuple[str, str, str] | None:
    """(job_id, output_id, relative path) from the still percent-encoded path after a route
    prefix, or None for anything but a plain file name inside one output's folder."""
    parts = rest.split("/")
    if len(parts) < 3:
        return None
    job_id, output_id, *segments = parts
    if not (_JOB_ID.fullmatch(job_id) and _OUTPUT_ID.fullmatch(output_id)):
        return None
    try:
        names = [unquote(segment, errors="strict") for segment in segments]
    except UnicodeDecodeError:
        return None
    # Each segment is checked on its own: an encoded "/" ("%2f") must not become a separator.
    if not all(safe_relative_path(name) and "/" not in name for name in names):
        return None
    return job_id, output_id, "/".join(names)


class _LargeChunkFileResponse(FileResponse):
    # Fewer thread-pool round trips per ranged or large file than the default 64 KiB.
    chunk_size = 1024 * 1024


# StaticFiles' conditional-request logic (If-None-Match, If-Modified-Since → 304) does not
# depend on its folder; one instance lends it to every output.
_CONDITIONS = StaticFiles(directory="/", check_dir=False)


def file_response(file_path: str, name: str, stat_result: os.stat_result, scope: Scope) -> Response:
    """The library's answer for one file: 200, 206/416 for ranges, or 304; the Content-Type
    and Cache-Control of kiln's file `name`."""
    response = _LargeChunkFileResponse(
        file_path,
        stat_result=stat_result,
        media_type=mime_type_for(name),
        headers={"cache-control": cache_control_for(name)},
    )
    if _CONDITIONS.is_not_modified(response.headers, Headers(scope=scope)):
        return NotModifiedResponse(response.headers)
    return response


@dataclass
class _OpenFile:
    descriptor: int
    stat: os.stat_result
    # The whole file, when it was asked for and small; the descriptor is then closed.
    content: bytes | None


def _open_beneath(root: Path, names: Sequence[str]) -> int:
    """Open root/names[0]/…/names[-1] for reading, refusing a symbolic link anywhere on the
    way. The kernel checks each step as it opens it (O_NOFOLLOW), so nothing can be swapped
    between a check and the open, and nothing outside the output's folder is reachable."""
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names[:-1]:
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(names[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    finally:
        os.close(folder)


def _open_file(root: Path, names: Sequence[str], read_whole: bool) -> _OpenFile | None:
    """A regular file under `root`, opened (and read whole if asked and small), or None for
    anything missing, a folder, or reached through a link. Runs in a worker thread."""
    try:
        descriptor = _open_beneath(root, names)
    except OSError:
        # ENOENT, ENOTDIR, and ELOOP for a link: all "no such file here".
        return None
    try:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode):
            os.close(descriptor)
            return None
        if not read_whole or found.st_size > READ_WHOLE_MAX_BYTES:
            return _OpenFile(descriptor, found, None)
        with os.fdopen(descriptor, "rb") as handle:
            return _OpenFile(-1, found, handle.read())
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(descriptor)
        raise


class OutputFileServer:
    def __init__(
        self,
        tokens: PlaybackTokens,
        storage: LocalStorage,
        origin_of: OriginLookup,
        relay_from_bucket: BucketRelay | None = None,
        *,
        allowed_origins: Sequence[str] = ("*",),
        key_tokens: PlaybackTokens | None = None,
        public_url: str = "",
    ) -> None:
        self.tokens = tokens
        # Verifies the key tokens of encrypted outputs' viewers (None: no playlist rewrites).
        self.key_tokens = key_tokens
        # kiln's own base URL (KILN_PUBLIC_URL): an MPD's license URL must be absolute.
        self.public_url = public_url.rstrip("/")
        self.storage = storage
        self.origin_of = origin_of
        self.relay_from_bucket = relay_from_bucket
        self.allowed_origins = set(allowed_origins)
        self._origins: OrderedDict[str, str] = OrderedDict()

    async def play(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET/HEAD /play/{token}/{job_id}/{output_id}/{path}: any file of the output."""
        send = self.with_cors(scope, send)
        rest = _raw_path(scope)[len(PLAY_PREFIX) :]
        token, _, folder_and_path = rest.partition("/")
        parsed = split_output_path(folder_and_path)
        if parsed is None:
            await plain(send, 403, "forbidden: not a file of an output\n")
            return
        job_id, output_id, path = parsed
        if not self.tokens.verify(token, job_id, output_id):
            await plain(send, 403, "playback token invalid or expired\n")
            return
        key_token = _key_token(scope) if path.endswith(MANIFEST_SUFFIXES) else None
        if key_token is not None:
            if self.key_tokens is None or not self.key_tokens.verify(key_token, job_id, output_id):
                await plain(send, 403, "key token invalid or expired\n")
                return
            await self._viewer_manifest(scope, receive, send, job_id, output_id, path, key_token)
            return
        await self._serve(scope, receive, send, job_id, output_id, path)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, job_id: str, output_id: str, path: str
    ) -> None:
        origin = await self._origin(job_id, output_id)
        if origin is None:
            await plain(send, 404, "not found\n")
            return
        if origin:
            await self._from_bucket(origin, f"{job_id}/{output_id}/{path}", scope, send)
            return
        await self.serve_local(scope, receive, send, job_id, output_id, path)

    async def _viewer_manifest(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        job_id: str,
        output_id: str,
        path: str,
        key_token: str,
    ) -> None:
        """A playlist or MPD rewritten for the viewer holding `key_token` (key_playlists):
        read whole from wherever it is stored, then sent as a per-viewer answer."""
        whole = {
            **scope,
            "method": "GET",
            "headers": [
                (name, value)
                for name, value in scope.get("headers", [])
                if name not in CONDITIONAL_REQUEST_HEADERS
            ],
        }
        captured = _CapturedResponse()
        await self._serve(whole, receive, captured.send, job_id, output_id, path)
        if captured.status == 404:
            await plain(send, 404, "not found\n")
            return
        if captured.status != 200 or len(captured.body) > READ_WHOLE_MAX_BYTES:
            await plain(send, 502, "playlist unavailable\n")
            return
        try:
            text = bytes(captured.body).decode("utf-8")
        except UnicodeDecodeError:
            await plain(send, 502, "playlist is not text\n")
            return
        body = rewrite_manifest(text, key_token, job_id, output_id, self.public_url).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", mime_type_for(path).encode()),
                    (b"content-length", str(len(body)).encode()),
                    # One viewer's token is in it: no shared cache may keep or hand it on.
                    (b"cache-control", VIEWER_PLAYLIST_CACHE.encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def serve_local(
        self, scope: Scope, receive: Receive, send: Send, job_id: str, output_id: str, path: str
    ) -> None:
        """One file of an output in local storage, with ranges and conditional requests."""
        # A plain GET of a segment-sized file is read whole in the same thread call that
        # opens it: one hop to the thread pool per segment.
        read_whole = scope["method"] == "GET" and "range" not in Headers(scope=scope)
        names = [job_id, output_id, *path.split("/")]
        opened = await anyio.to_thread.run_sync(_open_file, self.storage.root, names, read_whole)
        if opened is None:
            await plain(send, 404, "not found\n")
            return
        if opened.content is not None:
            response = file_response(path, path, opened.stat, scope)
            if isinstance(response, FileResponse):
                # The library chose the status and headers; the body is already here.
                await send(
                    {"type": "http.response.start", "status": 200, "headers": response.raw_headers}
                )
                await send({"type": "http.response.body", "body": opened.content})
                return
            await response(scope, receive, send)
            return
        try:
            # The library reads through the descriptor already open (its /proc link): the
            # file checked is the file sent, even if it is deleted or replaced meanwhile.
            descriptor_path = f"/proc/self/fd/{opened.descriptor}"
            await file_response(descriptor_path, path, opened.stat, scope)(scope, receive, send)
        finally:
            os.close(opened.descriptor)

    def preflight(self, scope: Scope) -> list[tuple[bytes, bytes]] | None:
        """The answer headers to a CORS preflight, or None if the Origin is not allowed."""
        allow = self.allow_origin(scope)
        if allow is None:
            return None
        return [
            *allow,
            (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
            (b"access-control-allow-headers", CORS_REQUEST_HEADERS.encode()),
            (b"access-control-max-age", b"86400"),
        ]

    def allow_origin(self, scope: Scope) -> list[tuple[bytes, bytes]] | None:
        if "*" in self.allowed_origins:
            return [(b"access-control-allow-origin", b"*")]
        origin = Headers(scope=scope).get("origin")
        if origin is None or origin not in self.allowed_origins:
            return None
        return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]

    def with_cors(self, scope: Scope, send: Send) -> Send:
        allow = self.allow_origin(scope)
        if allow is None:
            return send
        headers = [*allow, (b"access-control-expose-headers", CORS_EXPOSED_HEADERS.encode())]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        return send_with_cors

    async def _origin(self, job_id: str, output_id: str) -> str | None:
        key = f"{job_id}/{output_id}"
        if (cached := self._origins.get(key)) is not None:
            return cached
        origin = await self.origin_of(job_id, output_id)
        if origin is not None:
            self._origins[key] = origin
            while len(self._origins) > ORIGINS_CACHED:
                self._origins.popitem(last=False)
        return origin

    async def _from_bucket(self, origin: str, key: str, scope: Scope, send: Send) -> None:
        if self.relay_from_bucket is None:
            await plain(send, 404, "not found\n")
            return
        headers = [
            (b"content-type", mime_type_for(key).encode()),
            (b"cache-control", cache_control_for(key).encode()),
        ]
        try:
            await self.relay_from_bucket(origin, key, scope, send, headers)
        except FileNotFoundError:
            await plain(send, 404, "not found\n")


class _CapturedResponse:
    """An answer kept in memory instead of sent (a playlist to rewrite before sending)."""

    def __init__(self) -> None:
        self.status = 500
        self.body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body.extend(message.get("body", b""))


def _key_token(scope: Scope) -> str | None:
    """The request's `kt` query value (a viewer's key token), or None without one."""
    values = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1")).get(KEY_TOKEN_QUERY)
    return values[0] if values else None


def _raw_path(scope: Scope) -> str:
    """The path as the client sent it (still percent-encoded), so an encoded slash or dot
    is seen for what it is rather than after the server decoded it."""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    return bytes(raw).split(b"?", 1)[0].decode("latin-1")


async def plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                # A CDN must not keep a refusal: the segment may exist a moment later.
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["FILES_PREFIX", "OutputFileServer", "split_output_path"]
