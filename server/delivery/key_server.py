"""The key endpoint of encrypted outputs: /keys/{key token}/{job}/{output}/….

- `GET …/{key id in hex}`: the 16 bytes of one key (what an HLS player fetches for an
  EXT-X-KEY);
- `POST …/clearkey`: a W3C Encrypted Media Extensions Clear Key license: the request's JSON
  `{"kids": [base64url key ids]}` in, `{"keys": [{"kty": "oct", "kid": …, "k": …}]}` out, the
  keys asked for that belong to the output (dash.js: protData `org.w3.clearkey.serverURL`).

The key token (CreatePlaybackGrant) is its own HMAC, signed with the playback signing keys
under another purpose, for exactly one output and attempt and a short expiry: a segment
token opens no key, and a key token serves no segment. Every refusal is a 403 (no token, a
forged, expired or other output's token) or a 404 (no such key of that attempt); answers are
`private, no-store`, so no cache keeps a key. Nothing here logs a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable

from starlette.types import Receive, Scope, Send

from .file_server import OutputFileServer, plain, split_output_path
from .key_playlists import CLEARKEY_NAME, KEYS_PREFIX
from .tokens import PlaybackTokens

# (job_id, output_id, generation, key id in hex) → the key, or None when there is none.
KeyLookup = Callable[[str, str, int, str], Awaitable[bytes | None]]

KEY_CACHE_CONTROL = b"private, no-store"
_KEY_ID = re.compile(r"[0-9a-f]{32}")
# A license request names a few key ids; anything larger is not one.
MAX_LICENSE_REQUEST_BYTES = 16 * 1024
MAX_LICENSE_KEY_IDS = 64


class KeyServer:
    def __init__(
        self, key_tokens: PlaybackTokens, key_of: KeyLookup, files: OutputFileServer
    ) -> None:
        self.key_tokens = key_tokens
        self.key_of = key_of
        # Its CORS policy is the playback URLs' (KILN_PLAYBACK_ALLOWED_ORIGINS).
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            await self._preflight(scope, send)
            return
        send = self.files.with_cors(scope, send)
        rest = str(scope["path"])[len(KEYS_PREFIX) :]
        token, _, folder_and_name = rest.partition("/")
        parsed = split_output_path(folder_and_name)
        if parsed is None or "/" in parsed[2]:
            await plain(send, 403, "forbidden: not a key of an output\n")
            return
        job_id, output_id, name = parsed
        generation = self.key_tokens.verified_generation(token, job_id, output_id)
        if generation is None:
            await plain(send, 403, "key token invalid or expired\n")
            return
        if name == CLEARKEY_NAME:
            if scope["method"] != "POST":
                await plain(send, 405, "method not allowed: POST a Clear Key license request\n")
                return
            await self._license(receive, send, job_id, output_id, generation)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await plain(send, 405, "method not allowed\n")
            return
        if _KEY_ID.fullmatch(name) is None:
            await plain(send, 404, "no such key: a key id is 32 lowercase hex digits\n")
            return
        key = await self.key_of(job_id, output_id, generation, name)
        if key is None:
            await plain(send, 404, "no such key\n")
            return
        await _answer(send, key, b"application/octet-stream", head=scope["method"] == "HEAD")

    async def _license(
        self, receive: Receive, send: Send, job_id: str, output_id: str, generation: int
    ) -> None:
        body = await _read_body(receive, MAX_LICENSE_REQUEST_BYTES)
        key_ids = None if body is None else _license_key_ids(body)
        if key_ids is None:
            await plain(
                send,
                400,
                'bad license request: expected JSON {"kids": [base64url key ids]}, '
                f"at most {MAX_LICENSE_KEY_IDS} ids\n",
            )
            return
        keys = []
        for key_id in key_ids:
            key = await self.key_of(job_id, output_id, generation, key_id.hex())
            if key is not None:
                keys.append({"kty": "oct", "kid": _base64url(key_id), "k": _base64url(key)})
        if not keys:
            await plain(send, 404, "no such key\n")
            return
        answer = json.dumps({"keys": keys, "type": "temporary"}).encode()
        await _answer(send, answer, b"application/json", head=False)

    async def _preflight(self, scope: Scope, send: Send) -> None:
        allow = self.files.allow_origin(scope)
        if allow is None:
            await plain(send, 403, "origin not allowed\n")
            return
        headers = [
            *allow,
            (b"access-control-allow-methods", b"GET, HEAD, POST, OPTIONS"),
            (b"access-control-allow-headers", b"Content-Type"),
            (b"access-control-max-age", b"86400"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _license_key_ids(body: bytes) -> list[bytes] | None:
    """The 16-byte key ids a Clear Key license request names, or None if it is not one."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    kids = request.get("kids") if isinstance(request, dict) else None
    if not isinstance(kids, list) or not 1 <= len(kids) <= MAX_LICENSE_KEY_IDS:
        return None
    key_ids = []
    for kid in kids:
        raw = _from_base64url(kid) if isinstance(kid, str) else None
        if raw is None or len(raw) != 16:
            return None
        key_ids.append(raw)
    return key_ids


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _from_base64url(text: str) -> bytes | None:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past `limit` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body.extend(message.get("body", b""))
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _answer(send: Send, body: bytes, content_type: bytes, *, head: bool) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", KEY_CACHE_CONTROL),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
