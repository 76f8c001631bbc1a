"""HLS AES-128: every media segment of a finished ladder encrypted whole, and its playlist
told how (RFC 8216 METHOD=AES-128).

The segments are encrypted here, after ffmpeg wrote them in clear, rather than by the hls
muxer's -hls_key_info_file: the key then never leaves this process (no key file on disk, nothing
on a command line), a rotation starts exactly at the segment the key says (the muxer's
periodic_rekey re-reads a file at a moment of its own), and TS and fMP4 go the same way.

Each segment gets its own random IV, written beside it in its EXT-X-KEY: CBC under one key must
never start two segments with the same IV, and the implicit IV (the media sequence number)
would repeat across renditions, which share the key. The init segment (EXT-X-MAP) stays clear:
it carries codec parameters only, and a MAP before the first EXT-X-KEY is not encrypted.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from common.content_keys import ContentKey, OutputEncryption
from worker.media.atomic_write import replace_bytes, replace_text
from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.hls_master import parse_attributes

AES_BLOCK_BYTES = 16


def media_playlists(master: Path) -> list[Path]:
    """The master's video variants and audio renditions, which carry media segments; text
    renditions (WebVTT) stay clear, as players fetch them outside the media pipeline."""
    playlists: list[Path] = []
    lines = master.read_text("utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            uri = next((later for later in lines[index + 1 :] if later and later[0] != "#"), "")
            playlists.append(master.parent / uri)
        elif line.startswith("#EXT-X-MEDIA:"):
            attributes = parse_attributes(line.partition(":")[2])
            if attributes.get("TYPE") == "AUDIO" and attributes.get("URI"):
                playlists.append(master.parent / attributes["URI"])
    return list(dict.fromkeys(playlists))


def encrypt_hls_ladder(master: Path, encryption: OutputEncryption) -> None:
    """Encrypts every media segment under `master` in place and rewrites its playlists."""
    for playlist in media_playlists(master):
        encrypt_media_playlist(playlist, encryption)


def encrypt_media_playlist(playlist: Path, encryption: OutputEncryption) -> None:
    """Encrypts the playlist's segments (segment n with the key for n) and puts an EXT-X-KEY
    with that key's URI and the segment's IV before each one."""
    lines = playlist.read_text("utf-8").splitlines()
    rewritten: list[str] = []
    pending: list[str] = []  # the tags of the segment whose URI comes next
    segment = 0
    for line in lines:
        if line.startswith(("#EXTINF:", "#EXT-X-BYTERANGE", "#EXT-X-DISCONTINUITY")):
            pending.append(line)
            continue
        if line.startswith("#EXT-X-KEY"):
            raise MediaError(ENCODE_FAILED, f"{playlist.name} is already encrypted")
        if not line or line.startswith("#"):
            rewritten.append(line)
            continue
        if any(tag.startswith("#EXT-X-BYTERANGE") for tag in pending):
            # Several segments in one file cannot each be encrypted whole.
            raise MediaError(ENCODE_FAILED, f"{playlist.name}: byte-range segments")
        key = key_for(encryption, segment, playlist)
        iv = os.urandom(AES_BLOCK_BYTES)
        encrypt_file(playlist.parent / line, key.key, iv)
        rewritten.append(key_tag(key, iv))
        rewritten += [*pending, line]
        pending = []
        segment += 1
    if segment == 0:
        raise MediaError(ENCODE_FAILED, f"{playlist.name} lists no segments")
    replace_text(playlist, "\n".join(rewritten) + "\n")


def key_for(encryption: OutputEncryption, segment: int, playlist: Path) -> ContentKey:
    """The key of `segment` (0-based in its rendition); with rotation, one the server made for
    exactly that period: reusing the last key past it would quietly undo the rotation."""
    key = encryption.key_for_segment(segment)
    every = encryption.rotate_every_segments
    if every and key.first_segment != segment - segment % every:
        raise MediaError(
            ENCODE_FAILED,
            f"{playlist.parent.name}/{playlist.name}: segment {segment} has no key of its own "
            f"(a new key every {every} segments; the last starts at {key.first_segment})",
        )
    return key


def key_tag(key: ContentKey, iv: bytes) -> str:
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{key.uri}",IV=0x{iv.hex()}'


def encrypt_file(path: Path, key: bytes, iv: bytes) -> None:
    """AES-128-CBC with PKCS#7 padding over the whole file."""
    padder = padding.PKCS7(AES_BLOCK_BYTES * 8).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    clear = path.read_bytes()
    sealed = encryptor.update(padder.update(clear) + padder.finalize()) + encryptor.finalize()
    replace_bytes(path, sealed)
