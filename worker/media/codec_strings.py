"""RFC 6381 codec strings ("avc1.64001f", "hvc1.1.6.L93.B0", "mp4a.40.2") read from the
parameter sets in produced segments, for the CODECS an HLS master and a DASH manifest declare.

FFmpeg's own muxers guess them before any frame is encoded: hvc1.1.4.L60.B01 for a
Main-profile x265 stream, a bare "hvc1" in DASH, nothing at all for HEVC in MPEG-TS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.probe import run_ffprobe_json

PROBE_TIMEOUT_SECONDS = 60


async def probe_first_stream(init_segment: Path | None, segment: Path) -> dict[str, Any]:
    """ffprobe's description (with extradata) of the first stream of a segment."""
    return (await probe_streams(init_segment, segment))[0]


async def probe_streams(init_segment: Path | None, segment: Path) -> list[dict[str, Any]]:
    """ffprobe's description (with extradata) of every stream of a segment.

    A fragmented-MP4 segment cannot be read without its init segment, and the init segment
    alone has no frames to give a frame rate, so the two are joined in a temporary file.
    """
    joined: Path | None = None
    target = segment
    try:
        if init_segment is not None:
            joined = await asyncio.to_thread(_join_files, init_segment, segment)
            target = joined
        returncode, parsed, _ = await run_ffprobe_json(
            str(target), timeout=PROBE_TIMEOUT_SECONDS, extra_args=("-show_data",)
        )
    finally:
        if joined is not None:
            with contextlib.suppress(FileNotFoundError):
                joined.unlink()
    streams = parsed.get("streams") or []
    if returncode != 0 or not streams:
        raise MediaError(ENCODE_FAILED, f"{segment.name}: the segment cannot be read back")
    return list(streams)


def _join_files(first: Path, second: Path) -> Path:
    descriptor, name = tempfile.mkstemp(suffix=first.suffix, prefix="kiln-probe-")
    with os.fdopen(descriptor, "wb") as joined:
        for part in (first, second):
            with part.open("rb") as source:
                shutil.copyfileobj(source, joined)
    return Path(name)


# AAC audio object types by the profile names ffprobe reports.
_AAC_OBJECT_TYPES = {"Main": 1, "LC": 2, "SSR": 3, "LTP": 4, "HE-AAC": 5, "HE-AACv2": 29}


def codec_string(stream: dict[str, Any]) -> str:
    """RFC 6381 codec string of an ffprobe stream (run with -show_data); "" when unknown."""
    codec = stream.get("codec_name")
    extradata = extradata_bytes(str(stream.get("extradata", "")))
    if codec == "h264":
        parameters = _avc_parameters(extradata)
        return f"avc1.{parameters.hex()}" if parameters else ""
    if codec == "hevc":
        tier_level = _hevc_profile_tier_level(extradata)
        tag = str(stream.get("codec_tag_string", ""))
        # hev1 says parameter sets travel in the stream, as they must in MPEG-TS.
        return hevc_codec_string(tag if tag in ("hvc1", "hev1") else "hev1", tier_level)
    if codec == "av1":
        return av1_codec_string(extradata)
    if codec == "opus":
        return "opus"
    if codec == "aac":
        # The AudioSpecificConfig starts with the 5-bit object type; ADTS streams have none.
        object_type = extradata[0] >> 3 if extradata else None
        object_type = object_type or _AAC_OBJECT_TYPES.get(str(stream.get("profile")))
        return f"mp4a.40.{object_type}" if object_type else ""
    if codec == "mp3":
        return "mp4a.40.34"
    if codec in ("ac3", "eac3"):
        return "ac-3" if codec == "ac3" else "ec-3"
    return ""


def extradata_bytes(hexdump: str) -> bytes:
    """The bytes of ffprobe's -show_data hexdump ("00000000: 0164 001f ...  .d..")."""
    data = bytearray()
    for line in hexdump.splitlines():
        # Offset and ": " take 10 columns, then 16 bytes in 40 columns, then the ASCII view.
        if len(line) > 10 and line[8:10] == ": ":
            data += bytes.fromhex(line[10:50].replace(" ", ""))
    return bytes(data)


def _avc_parameters(extradata: bytes) -> bytes:
    """profile_idc, constraint flags and level_idc of an H.264 stream (3 bytes, or b"")."""
    if len(extradata) >= 4 and extradata[0] == 1:
        return extradata[1:4]  # avcC record, as in MP4
    for nal in _annex_b_units(extradata):
        if nal and nal[0] & 0x1F == 7 and len(nal) >= 4:  # sequence parameter set
            return _without_emulation_prevention(nal[1:])[:3]
    return b""


def _hevc_profile_tier_level(extradata: bytes) -> bytes:
    """The 12 bytes of general_profile_tier_level of an HEVC stream, or b""."""
    if len(extradata) >= 13 and extradata[0] == 1:
        return extradata[1:13]  # hvcC record, as in MP4
    for nal in _annex_b_units(extradata):
        if len(nal) > 2 and (nal[0] >> 1) & 0x3F == 33:  # sequence parameter set
            payload = _without_emulation_prevention(nal[2:])
            # One byte of ids and sub-layer count precedes profile_tier_level.
            return payload[1:13] if len(payload) >= 13 else b""
    return b""


def hevc_codec_string(tag: str, profile_tier_level: bytes) -> str:
    """ISO/IEC 14496-15 annex E: hvc1.<space><profile>.<compat reversed>.<tier><level>.<flags>."""
    if len(profile_tier_level) < 12:
        return ""
    first = profile_tier_level[0]
    profile_space, tier, profile = first >> 6, (first >> 5) & 1, first & 0x1F
    compatibility = int.from_bytes(profile_tier_level[1:5], "big")
    reversed_compatibility = int(f"{compatibility:032b}"[::-1], 2)
    constraint_bytes = profile_tier_level[5:11].rstrip(b"\0")
    level = profile_tier_level[11]
    parts = [
        tag,
        f"{['', 'A', 'B', 'C'][profile_space]}{profile}",
        f"{reversed_compatibility:X}",
        f"{'LH'[tier]}{level}",
        *(f"{byte:X}" for byte in constraint_bytes),
    ]
    return ".".join(parts)


def av1_codec_string(av1c: bytes) -> str:
    """AV1 codec string from an AV1CodecConfigurationRecord (av1C): av01.P.LLT.DD.

    The record's second byte holds seq_profile (3 bits) and seq_level_idx_0 (5 bits), the third
    seq_tier_0, high_bitdepth and twelve_bit (AV1 ISOBMFF binding §5). The optional fields after
    the bit depth (monochrome, subsampling, colour) are left out: their defaults are what these
    encodes are (4:2:0, BT.709-or-unspecified).
    """
    if len(av1c) < 3 or av1c[0] != 0x81:  # marker bit and version 1
        return ""
    profile, level = av1c[1] >> 5, av1c[1] & 0x1F
    tier = "H" if av1c[2] & 0x80 else "M"
    high_bitdepth, twelve_bit = av1c[2] & 0x40, av1c[2] & 0x20
    depth = (12 if twelve_bit else 10) if high_bitdepth else 8
    return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"


def _annex_b_units(data: bytes) -> list[bytes]:
    units = re.split(b"\x00\x00\x01", data)
    # A 4-byte start code leaves a 0 at the end of the previous unit.
    return [unit.rstrip(b"\0") for unit in units[1:]] if len(units) > 1 else []


def _without_emulation_prevention(data: bytes) -> bytes:
    return data.replace(b"\x00\x00\x03", b"\x00\x00")
