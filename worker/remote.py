"""http(s) inputs: does the origin honour byte ranges, and staging when it does not."""

from __future__ import annotations

from pathlib import Path

import httpx

from .media.errors import MediaError

CHUNK = 1 << 20
TIMEOUT = httpx.Timeout(30.0, read=120.0)


async def supports_ranges(url: str) -> bool:
    """Ask for the first byte: 206 means FFmpeg can seek over HTTP instead of downloading."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            response = await client.get(url, headers={"Range": "bytes=0-0"})
    except httpx.HTTPError as error:
        raise MediaError(
            "INPUT_UNREADABLE", f"could not reach the input: {type(error).__name__}"
        ) from None
    if response.status_code in (404, 410):
        raise MediaError("INPUT_UNREADABLE", f"the input URL answered {response.status_code}")
    if response.status_code >= 400:
        raise MediaError("INPUT_UNREADABLE", f"the input URL answered {response.status_code}")
    return response.status_code == 206


async def stage(url: str, target: Path) -> Path:
    """Download the whole input once; redirects are not followed (they could point inward)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        async with (
            httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise MediaError(
                    "INPUT_UNREADABLE", f"the input URL answered {response.status_code}"
                )
            with target.open("wb") as handle:
                async for chunk in response.aiter_bytes(CHUNK):
                    handle.write(chunk)
    except httpx.HTTPError as error:
        raise MediaError(
            "INPUT_UNREADABLE", f"downloading the input failed: {type(error).__name__}"
        ) from None
    return target
