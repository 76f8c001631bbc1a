"""Relaying an output stored in a bucket through the playback URL.

The bucket does the HTTP work: the request's Range and validators go to it unchanged and its
status (200, 206, 304, 416) and Content-Range / ETag / Last-Modified come back unchanged, so
a seek in a GCS-stored MP4 costs the bytes it asks for, not the whole object. The client
library blocks, so each step runs in a worker thread; the event loop serving every RPC
only moves the parts along.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from common.storage.origins import Origins

log = logging.getLogger(__name__)

PART_BYTES = 256 * 1024
FORWARDED_REQUEST_HEADERS = ("range", "if-range", "if-none-match", "if-modified-since")
RELAYED_RESPONSE_HEADERS = ("content-length", "content-range", "etag", "last-modified")
RELAYED_STATUSES = {200, 206, 304, 416}


class BucketRelay:
    def __init__(self, origins: Origins) -> None:
        self.origins = origins

    async def __call__(
        self,
        origin: str,
        key: str,
        scope: Scope,
        send: Send,
        extra_headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        """Relay `key` of `origin`; FileNotFoundError when the bucket has no such object."""
        request = Headers(scope=scope)
        forwarded = {
            name: value for name in FORWARDED_REQUEST_HEADERS if (value := request.get(name))
        }
        # Bytes as stored: a transparently decompressed body would not match Content-Range.
        forwarded["accept-encoding"] = "identity"
        await self.origins.ensure([origin])
        storage = self.origins.bucket_storage(origin)
        response = await anyio.to_thread.run_sync(storage.open_media, key, forwarded)
        try:
            if response.status_code == 404:
                raise FileNotFoundError(key)
            if response.status_code not in RELAYED_STATUSES:
                log.warning("bucket answered %s for %s", response.status_code, key)
                raise FileNotFoundError(key)
            headers = [
                (name.encode(), value.encode())
                for name in RELAYED_RESPONSE_HEADERS
                if (value := response.headers.get(name)) is not None
            ]
            if response.status_code in (304, 416):
                # No body follows: the bucket's length is of its error text, not ours.
                headers = [(n, v) for n, v in headers if n != b"content-length"]
                headers.append((b"content-length", b"0"))
            headers.append((b"accept-ranges", b"bytes"))
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [*headers, *extra_headers],
                }
            )
            if scope["method"] == "HEAD" or response.status_code in (304, 416):
                await send({"type": "http.response.body", "body": b""})
                return
            parts = response.iter_content(PART_BYTES)
            while part := await anyio.to_thread.run_sync(next, parts, b""):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.close()
