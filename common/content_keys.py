"""The keys an encrypted output is made with: what the server hands a worker for one output.

The server owns the keys (it generates them, keeps them encrypted at rest and serves them only to
viewers it authorised); the worker only uses them to encrypt what it writes, and never writes a
key to storage, a log line or a span. This module is the one shape both sides agree on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

KEY_BYTES = 16


class EncryptionScheme(enum.Enum):
    # Whole-segment AES-128-CBC of each HLS media segment (TS or fMP4), RFC 8216 METHOD=AES-128.
    AES_128 = "aes-128"
    # ISO/IEC 23001-7 common encryption, AES-CTR ('cenc'), in fMP4 segments (DASH, CMAF).
    CENC = "cenc"


@dataclass(frozen=True, repr=False)
class ContentKey:
    """One key, in use from segment `first_segment` (0-based, per rendition) to the next key."""

    key_id: bytes  # 16 bytes, public: the KID of CENC, the name of the key in URLs
    key: bytes = field(repr=False)  # 16 bytes, secret
    # Where a player fetches this key, as written into the playlist (HLS EXT-X-KEY URI); the
    # server chooses it, so it can rewrite or route it when serving the playlist.
    uri: str = ""
    first_segment: int = 0

    def __post_init__(self) -> None:
        if len(self.key_id) != KEY_BYTES or len(self.key) != KEY_BYTES:
            raise ValueError("a content key and its id are 16 bytes each")

    def __repr__(self) -> str:  # never the key itself, even in a traceback
        return f"ContentKey(key_id={self.key_id.hex()}, first_segment={self.first_segment})"


@dataclass(frozen=True)
class OutputEncryption:
    """How one output is encrypted: the scheme and its keys in order of `first_segment`
    (one key, or one per rotation period)."""

    scheme: EncryptionScheme
    keys: tuple[ContentKey, ...]
    # 0: one key for the whole output; N: a new key every N segments (HLS AES-128 only).
    rotate_every_segments: int = 0

    def key_for_segment(self, index: int) -> ContentKey:
        chosen = self.keys[0]
        for key in self.keys:
            if key.first_segment <= index:
                chosen = key
        return chosen
