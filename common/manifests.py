"""Recognising bytes that would make FFmpeg open further URLs: playlists and manifests.

An HLS playlist names segment, key and variant URIs that FFmpeg fetches by itself; a DASH
MPD names BaseURLs (which may be tcp:// or file://); an ffconcat list and an IMF
composition playlist name further files. A media file names nothing. The egress proxy and
the worker's file:// check use these functions to find out which of the two a body is.

How FFmpeg 5.1 recognises each (libavformat): hls_probe needs "#EXTM3U" at the very start;
concat_probe needs "ffconcat version 1.0" at the very start; dash_probe and imf_probe search
the probe buffer with av_stristr/strstr, which stop at the first NUL byte, so only the
NUL-free prefix of at most 1 MiB (PROBE_BUF_MAX) can make a body a DASH or IMF manifest.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

# The longest prefix FFmpeg's format probe ever looks at.
PROBE_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"

# (marker, what it is): searched case-insensitively in the NUL-free prefix.
_XML_MANIFESTS = (
    (b"<mpd", "a DASH manifest (MPD)"),
    (b"<compositionplaylist", "an IMF composition playlist"),
)
_LONGEST_MARKER = max(len(marker) for marker, _ in _XML_MANIFESTS)
_URI_ATTRIBUTE = re.compile(r'URI="([^"]*)"', re.IGNORECASE)


def _text_start(head: bytes) -> bytes:
    # A BOM or leading blank lines do not stop a lenient parser; treating them as the start
    # errs on the side of inspecting.
    return head.removeprefix(UTF8_BOM).lstrip(b" \t\r\n")


def is_hls_playlist(head: bytes) -> bool:
    """Whether a body starting with `head` (a few bytes are enough) is an HLS playlist."""
    return _text_start(head)[:7].upper() == b"#EXTM3U"


def is_ffconcat(head: bytes) -> bool:
    return _text_start(head).startswith(b"ffconcat")


class ManifestSniffer:
    """Fed a body from its first byte on, says when it turns out to be a DASH or IMF manifest.

    Works on chunks so a proxy can forward a chunk only after it was fed: FFmpeg then never
    holds the bytes that would have made it a manifest.
    """

    def __init__(self) -> None:
        self._seen = 0
        self._tail = b""
        self._done = False

    def feed(self, chunk: bytes) -> str | None:
        """What the body is, once a chunk completes a manifest marker; None meanwhile."""
        if self._done or not chunk:
            return None
        if self._seen == 0 and is_ffconcat(chunk):
            self._done = True
            return "an ffconcat list"
        room = PROBE_BYTES - self._seen
        self._seen += len(chunk)
        text, nul, _ = chunk[:room].partition(b"\0")
        window = (self._tail + text).lower()
        self._tail = window[-(_LONGEST_MARKER - 1) :]
        self._done = bool(nul) or self._seen >= PROBE_BYTES
        for marker, kind in _XML_MANIFESTS:
            if marker in window:
                self._done = True
                return kind
        return None


def manifest_kind(head: bytes) -> str | None:
    """What a whole prefix is, when it is a playlist or manifest FFmpeg would follow."""
    if is_hls_playlist(head):
        return "an HLS playlist"
    return ManifestSniffer().feed(head)


def playlist_uris(text: str, playlist_url: str) -> list[str]:
    """Every URI an HLS playlist names, made absolute against the playlist's own URL.

    URI lines (variants, segments) and URI="…" attributes (keys, init sections, renditions,
    I-frame playlists, session data). Tags FFmpeg does not know are included too: being
    strict costs nothing here.
    """
    uris = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("#"):
            uris += _URI_ATTRIBUTE.findall(line)
        else:
            uris.append(line)
    return [urljoin(playlist_url, uri) for uri in uris]
