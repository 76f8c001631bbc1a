"""Which URL a player opens for an output, and the folder URL its token covers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from common.storage.keys import safe_relative_path

from .tokens import PlaybackTokens

PLAY_PREFIX = "/play/"
# The files a player starts from, in order of preference: a CMAF output has both, and
# HLS is what Safari and iOS play natively (the MPD is playback_base_url + its name).
ENTRY_POINTS = ("master.m3u8", "manifest.mpd")


def entry_point(paths: Sequence[str]) -> str | None:
    """The master playlist, the MPD, or else the output's first file (its only one for a
    progressive output; the first image of an image set)."""
    for name in ENTRY_POINTS:
        if name in paths:
            return name
    return paths[0] if paths else None


@dataclass(frozen=True)
class PlaybackLink:
    url: str
    base_url: str
    # None for a public base URL, which never expires.
    expires: datetime | None


class PlaybackLinks:
    def __init__(self, tokens: PlaybackTokens, server_url: str, public_base_url: str = "") -> None:
        self.tokens = tokens
        self.server_url = server_url.rstrip("/")
        self.public_base_url = public_base_url.rstrip("/")

    def link(
        self,
        job_id: str,
        output_id: str,
        generation: int,
        paths: Sequence[str],
        origin_public_url: str = "",
        *,
        through_kiln: bool = False,
    ) -> PlaybackLink | None:
        """The output's playback link: under the origin's own public URL (a CDN in front of
        the organization's bucket) when it has one, else KILN_PUBLIC_BASE_URL, else kiln's
        signed /play/ route. `through_kiln`: always the /play/ route (an encrypted output's
        playlists, which kiln rewrites for each viewer)."""
        entry = entry_point([path for path in paths if safe_relative_path(path)])
        if entry is None:
            return None
        folder = f"{quote(job_id)}/{quote(output_id)}/"
        public = "" if through_kiln else (origin_public_url or self.public_base_url)
        if public:
            base = f"{public.rstrip('/')}/{folder}"
            return PlaybackLink(base + quote(entry), base, None)
        token = self.tokens.mint(job_id, output_id, generation)
        base = f"{self.server_url}{PLAY_PREFIX}{token.text}/{folder}"
        return PlaybackLink(base + quote(entry), base, datetime.fromtimestamp(token.expires, UTC))
