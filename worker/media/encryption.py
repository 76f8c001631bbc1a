"""Encrypted ladders: which outputs can be encrypted how, and encrypting one once it is
finished (worker.media.hls_encryption for HLS AES-128, worker.media.cenc for DASH/CMAF).

Every scheme encrypts the files ffmpeg wrote in clear, after the manifests were measured from
them and before they are described and stored: no key is ever on an ffmpeg command line, in a
key file, in ffmpeg's log or in a span; it lives in this process's memory only.

The server refuses the same requests earlier (a spec it takes never fails here); these checks
keep the worker from writing something it cannot make right if it is handed one anyway.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from kiln.v1 import job_pb2

from common.content_keys import EncryptionScheme, OutputEncryption
from worker.media.atomic_write import replace_bytes, replace_text
from worker.media.cenc import protect_init, protect_segment
from worker.media.dash_mpd import add_content_protection, representation_files
from worker.media.errors import OutputSpecError
from worker.media.hls_encryption import encrypt_hls_ladder
from worker.media.plan import LadderPackaging

OutputType = job_pb2.OutputType
VideoCodec = job_pb2.VideoCodec

# The video codecs whose CENC samples worker.media.cenc can split into subsamples (NAL units);
# VP9 and AV1 have subsample rules of their own that it does not implement.
CENC_VIDEO_CODECS = frozenset({VideoCodec.VIDEO_CODEC_H264, VideoCodec.VIDEO_CODEC_H265})
# hls.js finds the key system of SAMPLE-AES-CTR by this KEYFORMAT.
CLEARKEY_KEYFORMAT = "org.w3.clearkey"


def check_ladder_encryption(
    encryption: OutputEncryption, output_type: int, video_codecs: list[int]
) -> None:
    """Refuses an encryption the output cannot carry (OutputSpecError naming what and why)."""
    scheme, type_name = encryption.scheme, OutputType.Name(output_type)
    if not encryption.keys:
        raise OutputSpecError("encryption: no content key was given")
    if encryption.rotate_every_segments < 0:
        raise OutputSpecError("encryption.rotate_every_segments: must not be negative")
    if output_type == OutputType.OUTPUT_TYPE_HLS:
        if scheme != EncryptionScheme.AES_128:
            raise OutputSpecError(f"encryption: {type_name} is encrypted with AES-128, not CENC")
        return
    if output_type not in (OutputType.OUTPUT_TYPE_DASH, OutputType.OUTPUT_TYPE_CMAF):
        raise OutputSpecError(f"encryption: {type_name} outputs cannot be encrypted")
    if scheme != EncryptionScheme.CENC:
        raise OutputSpecError(f"encryption: {type_name} is encrypted with CENC, not AES-128")
    if encryption.rotate_every_segments or len(encryption.keys) != 1:
        raise OutputSpecError(
            "encryption.rotate_every_segments: key rotation is for HLS AES-128 only; "
            "a CENC output has one key"
        )
    for position, codec in enumerate(video_codecs):
        if codec not in CENC_VIDEO_CODECS:
            raise OutputSpecError(
                f"video[{position}]: {VideoCodec.Name(codec)} cannot be CENC-encrypted here "
                "(H.264 or H.265 only)"
            )


async def encrypt_ladder(step: LadderPackaging) -> None:
    """Encrypts a finished ladder in place (nothing when it is not to be encrypted). Call it
    after finalize_output and any reading of the clear output (quality), before describing."""
    encryption = step.encryption
    if encryption is None:
        return
    if encryption.scheme == EncryptionScheme.AES_128 and step.hls_master is not None:
        await asyncio.to_thread(encrypt_hls_ladder, step.hls_master, encryption)
    elif step.dash_manifest is not None:
        await asyncio.to_thread(encrypt_dash_ladder, step.dash_manifest, encryption)
        if step.hls_master is not None:
            await asyncio.to_thread(add_cmaf_key_tags, step.hls_master.parent, encryption)


def encrypt_dash_ladder(manifest: Path, encryption: OutputEncryption) -> None:
    """CENC-encrypts every representation's init and media segments with the output's one key,
    and signals it in the MPD (ContentProtection with the key id and Clear Key)."""
    key = encryption.keys[0]
    for init_segment, segments in representation_files(manifest):
        protected_init, tracks = protect_init(init_segment.read_bytes(), key.key_id)
        for segment in segments:
            replace_bytes(segment, protect_segment(segment.read_bytes(), key.key, tracks))
        replace_bytes(init_segment, protected_init)
    # A key URI that is not a URL (the server's placeholder, rewritten only in HLS playlists
    # it serves) would mislead a player looking for a license server in the MPD.
    license_url = key.uri if key.uri.startswith(("https://", "http://")) else ""
    add_content_protection(manifest, key.key_id, license_url)


def add_cmaf_key_tags(folder: Path, encryption: OutputEncryption) -> None:
    """Tells the HLS side of a CMAF output (media_<n>.m3u8) that its segments are CENC:
    SAMPLE-AES-CTR with the key id, before the EXT-X-MAP so the tag covers the init segment."""
    key = encryption.keys[0]
    uri = key.uri or "data:text/plain;base64," + base64.b64encode(key.key_id).decode()
    tag = (
        f'#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="{uri}",KEYID=0x{key.key_id.hex()},'
        f'KEYFORMAT="{CLEARKEY_KEYFORMAT}",KEYFORMATVERSIONS="1"'
    )
    for playlist in sorted(folder.glob("media_*.m3u8")):
        lines = playlist.read_text("utf-8").splitlines()
        before = next(
            (i for i, line in enumerate(lines) if line.startswith(("#EXT-X-MAP", "#EXTINF"))),
            len(lines),
        )
        replace_text(playlist, "\n".join([*lines[:before], tag, *lines[before:]]) + "\n")
