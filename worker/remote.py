"""http(s) inputs: what the origin offers (byte ranges? a playlist?), and staging.

Both requests go through the task's egress proxy like FFmpeg's own, so the policy is
enforced on the worker's requests and FFmpeg's alike; redirects are not followed here
(FFmpeg follows them, and each hop comes back through the proxy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from common.manifests import is_hls_playlist

from .media.errors import MediaError

CHUNK = 1 << 20
TIMEOUT = httpx.Timeout(30.0, read=120.0)
# The first bytes tell a playlist from media; a range request for them is cheap either way.
SNIFF_RANGE = "bytes=0-63"


@dataclass(frozen=True)
class Origin:
    # 206 to a range request: FFmpeg can seek over HTTP instead of downloading.
    supports_ranges: bool
    # An HLS playlist: FFmpeg reads it (and its segments) in place, never from a staged copy.
    is_playlist: bool


def _client(proxy_url: str) -> httpx.AsyncClient:
    # trust_env=False: no NO_PROXY or netrc from the environment may route around the proxy.
    return httpx.AsyncClient(
        timeout=TIMEOUT, follow_redirects=False, proxy=proxy_url, trust_env=False
    )


async def inspect(url: str, proxy_url: str) -> Origin:
    """Asks for the first bytes: whether the origin serves ranges, and whether it is a playlist."""
    try:
        async with (
            _client(proxy_url) as client,
            client.stream("GET", url, headers={"Range": SNIFF_RANGE}) as response,
        ):
            if response.status_code not in (200, 206):
                raise _answered(response)
            head = b""
            async for chunk in response.aiter_bytes():
                head += chunk
                if len(head) >= 64:
                    break
    except httpx.HTTPError as error:
        raise MediaError(
            "INPUT_UNREADABLE", f"could not reach the input: {type(error).__name__}"
        ) from None
    return Origin(supports_ranges=response.status_code == 206, is_playlist=is_hls_playlist(head))


class TooLarge(Exception):
    """The download passed the caller's max_bytes; it was stopped there."""


async def stage(url: str, target: Path, proxy_url: str, *, max_bytes: int | None = None) -> Path:
    """Downloads the whole input once (at most max_bytes, else TooLarge)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    received = 0
    try:
        async with _client(proxy_url) as client, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise _answered(response)
            with target.open("wb") as handle:
                async for chunk in response.aiter_bytes(CHUNK):
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                    handle.write(chunk)
    except httpx.HTTPError as error:
        raise MediaError(
            "INPUT_UNREADABLE", f"downloading the input failed: {type(error).__name__}"
        ) from None
    return target


async def fetch_limited(url: str, limit: int, proxy_url: str) -> bytes | None:
    """The whole body of `url`, or None when it is longer than `limit` bytes (reading stops
    there: a sidecar that is really a film is not downloaded to find out)."""
    body = bytearray()
    try:
        async with _client(proxy_url) as client, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise _answered(response)
            async for chunk in response.aiter_bytes(CHUNK):
                body += chunk
                if len(body) > limit:
                    return None
    except httpx.HTTPError as error:
        raise MediaError(
            "INPUT_UNREADABLE", f"downloading the input failed: {type(error).__name__}"
        ) from None
    return bytes(body)


def _answered(response: httpx.Response) -> MediaError:
    # A redirect counts as an answer too: this check does not follow it.
    return MediaError("INPUT_UNREADABLE", f"the input URL answered {response.status_code}")
