"""HLS playlists served to one viewer: the key token put where the player will need it.

A stored playlist of an encrypted output never holds a key URL a player could use: its
EXT-X-KEY URI is a placeholder, `kiln-key:<key id in hex>`, written by the worker from
ContentKey.uri. When a viewer opens the playback URL with a key token (`…/master.m3u8?kt=…`,
from CreatePlaybackGrant), kiln rewrites each playlist as it serves it:

- in a master playlist, every child playlist's URI gets `?kt=<token>`, so the player asks
  for the variant playlists with the token too (a relative URI drops the master's query);
- in a media playlist, every placeholder becomes the key URL
  `/keys/<token>/<job>/<output>/<key id>` (root-relative: the host that served the playlist).

An MPD (DASH, CMAF) signals W3C Clear Key in a ContentProtection element; kiln gives that
element the output's license URL for the viewer's token as its `<dashif:Laurl>` (replacing
a placeholder there, or adding one), absolute (a player resolves it against the page, not the
MPD), so dash.js needs nothing but the playback URL.

Segment URIs are left alone: every viewer fetches the same segment URLs, which a CDN may
cache, and a segment alone is useless without its key. Only these small playlists differ
per viewer, and they are sent `private, no-store`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

KEY_URI_PREFIX = "kiln-key:"
KEYS_PREFIX = "/keys/"
KEY_TOKEN_QUERY = "kt"
CLEARKEY_NAME = "clearkey"
_KEY_PLACEHOLDER = re.compile(r'URI="kiln-key:(?P<key_id>[0-9a-f]{32})"')
_URI_ATTRIBUTE = re.compile(r'URI="(?P<uri>[^"]+\.m3u8)"')
_LICENSE_PLACEHOLDER = re.compile(r">kiln-key:[0-9a-f]{32}<")
CLEARKEY_SCHEME = "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"
# A Clear Key ContentProtection that names no license server: empty or self-closing.
_CLEARKEY_WITHOUT_URL = re.compile(
    rf'(?P<open><ContentProtection\b[^>]*schemeIdUri="{CLEARKEY_SCHEME}"[^>]*?)'
    r"(?:\s*/>|>\s*</ContentProtection>)"
)
DASHIF_NAMESPACE = "https://dashif.org/CPS"


def key_uri(key_id: bytes) -> str:
    """The placeholder a worker writes as a key's EXT-X-KEY URI."""
    return f"{KEY_URI_PREFIX}{key_id.hex()}"


def key_url_prefix(key_token: str, job_id: str, output_id: str) -> str:
    """The root-relative folder of an output's keys for one key token: plus the key id in
    hex, one key; plus "clearkey", the W3C Clear Key license endpoint."""
    return f"{KEYS_PREFIX}{key_token}/{quote(job_id)}/{quote(output_id)}/"


def _with_token(uri: str, key_token: str) -> str:
    separator = "&" if "?" in uri else "?"
    return f"{uri}{separator}{KEY_TOKEN_QUERY}={key_token}"


def rewrite_playlist(text: str, key_token: str, job_id: str, output_id: str) -> str:
    """The playlist `text` as one viewer holding `key_token` gets it (see the module doc)."""
    keys = key_url_prefix(key_token, job_id, output_id)
    return "\n".join(_rewrite_line(line, keys, key_token) for line in text.splitlines()) + "\n"


def rewrite_manifest(
    text: str, key_token: str, job_id: str, output_id: str, server_url: str
) -> str:
    """A playlist or MPD (by its first line) as one viewer holding `key_token` gets it."""
    if text.lstrip().startswith("#EXTM3U"):
        return rewrite_playlist(text, key_token, job_id, output_id)
    license_url = server_url + key_url_prefix(key_token, job_id, output_id) + CLEARKEY_NAME
    with_url = _LICENSE_PLACEHOLDER.sub(f">{license_url}<", text)
    laurl = f'<dashif:Laurl xmlns:dashif="{DASHIF_NAMESPACE}">{license_url}</dashif:Laurl>'
    return _CLEARKEY_WITHOUT_URL.sub(
        lambda found: f"{found['open']}>{laurl}</ContentProtection>", with_url
    )


def _rewrite_line(line: str, keys: str, key_token: str) -> str:
    if line.startswith("#"):
        with_key = _KEY_PLACEHOLDER.sub(lambda found: f'URI="{keys}{found["key_id"]}"', line)
        return _URI_ATTRIBUTE.sub(
            lambda found: f'URI="{_with_token(found["uri"], key_token)}"', with_key
        )
    if line.strip().endswith(".m3u8"):
        return _with_token(line.strip(), key_token)
    return line
