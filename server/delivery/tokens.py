"""Playback tokens: one signature for a whole output folder, carried in the URL's path.

A token is `{key_id}.{expires}.{generation}.{signature}`: an HMAC-SHA256 over the output's
folder (`{job_id}/{output_id}/`), the expiry and the job's attempt, keyed by the signing key
that `key_id` names. Because it sits in the path (`/play/{token}/{job_id}/{output_id}/…`), every
relative entry of a playlist or MPD resolves under the same token, which is what lets any
player open a ladder from one URL.

- The key id lets KILN_SIGNING_KEY rotate: keys listed in KILN_SIGNING_KEYS_PREVIOUS still
  verify the URLs they signed; a key dropped from both lists verifies nothing.
- The expiry is rounded up to a whole window, so every Get within the window hands out the
  same URL: one cache key for a CDN in front instead of one per request.
- The generation (the job's attempt) makes a retried job's URLs differ from the first
  attempt's, so a CDN that cached the first attempt's segments as immutable never serves
  them for the second's.
- The purpose is signed too: key tokens (server/delivery/key_server.py) are made by the
  same class and keys with the purpose "kiln-key", so a segment token never opens a key
  and a key token never serves a segment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PLAYBACK_PURPOSE = "kiln-playback"
KEY_PURPOSE = "kiln-key"
# The window expiries are rounded up to: at most an hour, at most the TTL itself.
MAX_EXPIRY_WINDOW_SECONDS = 3600
_TOKEN = re.compile(
    r"(?P<kid>[0-9a-f]{8})\.(?P<expires>[0-9]{1,12})\.(?P<generation>[0-9]{1,6})"
    r"\.(?P<sig>[A-Za-z0-9_-]{43})"
)


def key_id(key: bytes) -> str:
    """A short, public name for a key: which key signed a token, never the key itself."""
    return hashlib.sha256(b"kiln-playback-key-id\n" + key).hexdigest()[:8]


@dataclass(frozen=True)
class Token:
    text: str
    expires: int


class PlaybackTokens:
    def __init__(
        self,
        current_key: bytes,
        previous_keys: Sequence[bytes] = (),
        *,
        ttl_seconds: int = 21600,
        clock: Callable[[], float] = time.time,
        purpose: str = PLAYBACK_PURPOSE,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.current_id = key_id(current_key)
        self.keys = {key_id(key): key for key in previous_keys}
        self.keys[self.current_id] = current_key
        self.ttl_seconds = ttl_seconds
        self.window = min(ttl_seconds, MAX_EXPIRY_WINDOW_SECONDS)
        self.clock = clock
        self.purpose = purpose

    def mint(self, job_id: str, output_id: str, generation: int) -> Token:
        """A token for every file under `{job_id}/{output_id}/`, valid at least ttl_seconds."""
        expires = math.ceil((self.clock() + self.ttl_seconds) / self.window) * self.window
        return self.mint_until(job_id, output_id, generation, expires)

    def mint_until(self, job_id: str, output_id: str, generation: int, expires: int) -> Token:
        """A token for the folder that expires exactly at `expires` (Unix seconds)."""
        key = self.keys[self.current_id]
        signature = _signature(
            key, self.purpose, self.current_id, job_id, output_id, expires, generation
        )
        return Token(f"{self.current_id}.{expires}.{generation}.{signature}", expires)

    def verify(self, token: str, job_id: str, output_id: str) -> bool:
        """True only for an unexpired token that a known key signed for exactly this folder."""
        return self.verified_generation(token, job_id, output_id) is not None

    def verified_generation(self, token: str, job_id: str, output_id: str) -> int | None:
        """The generation an unexpired token, signed by a known key for exactly this folder,
        was made for; None for any other token."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key = self.keys.get(match["kid"])
        expires = int(match["expires"])
        if key is None or expires < self.clock():
            return None
        generation = int(match["generation"])
        expected = _signature(
            key, self.purpose, match["kid"], job_id, output_id, expires, generation
        )
        # Bytes: compare_digest is constant-time over ASCII and the regex admitted only that.
        if not hmac.compare_digest(expected.encode(), match["sig"].encode()):
            return None
        return generation


def _signature(
    key: bytes,
    purpose: str,
    kid: str,
    job_id: str,
    output_id: str,
    expires: int,
    generation: int,
) -> str:
    message = f"{purpose}\n{kid}\n{job_id}/{output_id}/\n{expires}\n{generation}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
