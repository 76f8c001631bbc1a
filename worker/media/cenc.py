"""MPEG common encryption ('cenc', AES-CTR, ISO/IEC 23001-7) of fragmented MP4 segments that
ffmpeg wrote in clear: DASH and CMAF outputs.

Done here rather than by movenc's -encryption_scheme cenc-aes-ctr because Debian's FFmpeg 5.1
cannot encrypt fragments: it writes the sample auxiliary information (senc/saiz/saio) once into
the init segment's sample table and none into any fragment, so neither a browser nor ffmpeg
itself can decrypt past the first sample (measured: 1 frame of 24 decoded). It would also need
the key on its command line. Here the key stays in this process.

What is written: the init segment's sample entries become encv/enca with a sinf (original
format, scheme 'cenc', tenc with the key id and 8-byte IVs), and the moov gets a W3C common
pssh naming the key id, from which a browser's EME asks for the key. Each fragment's samples
are encrypted in place, and each traf gets senc (per-sample IV, and subsamples for video),
saiz and saio; trun data offsets and sidx sizes follow the moof's growth. Video NAL units keep
their length prefix and header in clear (parameter-set and SEI units stay wholly clear), as
the scheme requires for H.264/H.265; audio samples are encrypted whole.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.mp4_boxes import (
    Box,
    boxes,
    children,
    first,
    full_box_header,
    make_box,
    make_full_box,
)

IV_BYTES = 8
# W3C "Common PSSH box format" system id: a pssh that only lists key ids, which every EME key
# system (Clear Key included) reads to know which keys to ask for.
COMMON_SYSTEM_ID = bytes.fromhex("1077efecc0b24d02ace33c1e52e2fb4b")
# Sample entries whose samples are NAL units (and so get subsamples), with each NAL header's
# size and whether a NAL type carries coded picture data.
_NAL_FORMATS = {
    b"avc1": (1, lambda header: 1 <= header[0] & 0x1F <= 5),
    b"avc3": (1, lambda header: 1 <= header[0] & 0x1F <= 5),
    b"hvc1": (2, lambda header: (header[0] >> 1) & 0x3F < 32),
    b"hev1": (2, lambda header: (header[0] >> 1) & 0x3F < 32),
}
# Codecs whose bitstream 'cenc' protects whole, sample by sample.
_WHOLE_SAMPLE_FORMATS = {b"mp4a", b"Opus", b"ac-3", b"ec-3"}
# Bytes of a sample entry's own fields before its child boxes.
_VISUAL_ENTRY_FIELDS = 78
_AUDIO_ENTRY_FIELDS = 28
_MAX_CLEAR = 0xFFFF


@dataclass(frozen=True)
class TrackProtection:
    """How one track's samples are encrypted, learnt from the init segment."""

    # Bytes of each NAL unit's length prefix; 0 for whole-sample encryption (audio).
    nal_length_size: int = 0
    nal_header_size: int = 0
    sample_format: bytes = b""
    # The trex's default sample size, for fragments whose trun and tfhd give none.
    default_sample_size: int = 0


# -- init segment ------------------------------------------------------------------------


def protect_init(data: bytes, key_id: bytes) -> tuple[bytes, dict[int, TrackProtection]]:
    """The init segment with every track marked encrypted under key_id, and how each track's
    samples are to be encrypted (by track id)."""
    top = list(boxes(data))
    moov = first(top, b"moov")
    if moov is None:
        raise MediaError(ENCODE_FAILED, "an init segment has no moov")
    tracks: dict[int, TrackProtection] = {}
    parts: list[bytes] = []
    for box in children(data, moov):
        if box.type == b"trak":
            track_id, trak, protection = _protect_trak(data, box, key_id)
            tracks[track_id] = protection
            parts.append(trak)
        else:
            parts.append(box.whole(data))
    defaults = _trex_sample_sizes(data, moov)
    for track_id, protection in tracks.items():
        size = defaults.get(track_id, 0)
        tracks[track_id] = TrackProtection(
            protection.nal_length_size, protection.nal_header_size, protection.sample_format, size
        )
    pssh = make_full_box(
        b"pssh", 1, 0, COMMON_SYSTEM_ID + struct.pack(">I", 1) + key_id + struct.pack(">I", 0)
    )
    new_moov = make_box(b"moov", b"".join(parts) + pssh)
    rebuilt = b"".join(new_moov if box.type == b"moov" else box.whole(data) for box in top)
    return rebuilt, tracks


def _protect_trak(data: bytes, trak: Box, key_id: bytes) -> tuple[int, bytes, TrackProtection]:
    found = children(data, trak)
    tkhd = first(found, b"tkhd")
    if tkhd is None:
        raise MediaError(ENCODE_FAILED, "a track has no tkhd")
    version, _ = full_box_header(data, tkhd)
    (track_id,) = struct.unpack_from(">I", data, tkhd.payload_start + (20 if version else 12))
    protection = TrackProtection()

    def rebuild(box: Box, path: tuple[bytes, ...]) -> bytes:
        nonlocal protection
        if box.type == b"stsd":
            entry_fields = box.payload(data)[:8]
            entries = []
            for entry in children(data, box, skip=8):
                rebuilt_entry, protection = _protect_sample_entry(data, entry, key_id)
                entries.append(rebuilt_entry)
            return make_box(b"stsd", entry_fields + b"".join(entries))
        if not path:
            return box.whole(data)
        inner = [
            rebuild(child, path[1:]) if child.type == path[0] else child.whole(data)
            for child in children(data, box)
        ]
        return make_box(box.type, b"".join(inner))

    rebuilt = rebuild(trak, (b"mdia", b"minf", b"stbl", b"stsd"))
    if not protection.sample_format:
        raise MediaError(ENCODE_FAILED, f"track {track_id} has no sample entry")
    return track_id, rebuilt, protection


def _protect_sample_entry(data: bytes, entry: Box, key_id: bytes) -> tuple[bytes, TrackProtection]:
    original = entry.type
    if original in _NAL_FORMATS:
        fields, protected_type = _VISUAL_ENTRY_FIELDS, b"encv"
    elif original in _WHOLE_SAMPLE_FORMATS:
        fields, protected_type = _AUDIO_ENTRY_FIELDS, b"enca"
    else:
        raise MediaError(
            ENCODE_FAILED, f"CENC here encrypts H.264, H.265 and audio, not {original!r}"
        )
    payload = entry.payload(data)
    protection = TrackProtection(sample_format=original)
    if original in _NAL_FORMATS:
        protection = TrackProtection(
            nal_length_size=_nal_length_size(data, entry, fields),
            nal_header_size=_NAL_FORMATS[original][0],
            sample_format=original,
        )
    tenc = make_full_box(b"tenc", 0, 0, bytes([0, 0, 1, IV_BYTES]) + key_id)
    sinf = make_box(
        b"sinf",
        make_box(b"frma", original)
        + make_full_box(b"schm", 0, 0, b"cenc" + struct.pack(">I", 0x00010000))
        + make_box(b"schi", tenc),
    )
    return make_box(protected_type, payload + sinf), protection


def _nal_length_size(data: bytes, entry: Box, fields: int) -> int:
    for child in children(data, entry, skip=fields):
        if child.type == b"avcC":
            return (data[child.payload_start + 4] & 0x03) + 1
        if child.type == b"hvcC":
            return (data[child.payload_start + 21] & 0x03) + 1
    raise MediaError(ENCODE_FAILED, f"a {entry.type!r} sample entry has no decoder configuration")


def _trex_sample_sizes(data: bytes, moov: Box) -> dict[int, int]:
    mvex = first(children(data, moov), b"mvex")
    sizes: dict[int, int] = {}
    for trex in children(data, mvex) if mvex is not None else []:
        if trex.type == b"trex":
            track_id, _, _, size = struct.unpack_from(">IIII", data, trex.payload_start + 4)
            sizes[track_id] = size
    return sizes


# -- media segments ----------------------------------------------------------------------


@dataclass
class _Run:
    """One trun: where its data offset is written and the sizes of its samples."""

    offset_position: int  # absolute position of the trun's data_offset field
    data_offset: int
    sample_sizes: list[int]


def protect_segment(data: bytes, key: bytes, tracks: dict[int, TrackProtection]) -> bytes:
    """A media segment (styp, sidx, moof+mdat pairs) with every sample encrypted."""
    buffer = bytearray(data)
    top = list(boxes(data))
    growth: dict[int, int] = {}  # moof start -> bytes the moof grew by
    rebuilt: dict[int, bytes] = {}
    for position, box in enumerate(top):
        if box.type != b"moof":
            continue
        following = top[position + 1] if position + 1 < len(top) else None
        if following is None or following.type != b"mdat":
            raise MediaError(ENCODE_FAILED, "a moof is not followed by its mdat")
        rebuilt[box.start] = _protect_fragment(buffer, box, following, key, tracks)
        growth[box.start] = len(rebuilt[box.start]) - (box.end - box.start)
    if not rebuilt:
        raise MediaError(ENCODE_FAILED, "a media segment has no fragment")
    parts = []
    for box in top:
        if box.type == b"moof":
            parts.append(rebuilt[box.start])
        elif box.type == b"sidx":
            parts.append(_grown_sidx(buffer, box, [growth[start] for start in sorted(growth)]))
        else:
            parts.append(bytes(buffer[box.start : box.end]))
    return b"".join(parts)


def _protect_fragment(
    buffer: bytearray, moof: Box, mdat: Box, key: bytes, tracks: dict[int, TrackProtection]
) -> bytes:
    """Encrypts the fragment's samples in `buffer`; the moof rebuilt with senc/saiz/saio."""
    found = children(buffer, moof)
    trafs: list[tuple[Box, list[_Run], list[bytes]]] = []
    for traf in (box for box in found if box.type == b"traf"):
        runs, protection = _read_traf(buffer, traf, tracks)
        auxiliary = []
        for run in runs:
            position = moof.start + run.data_offset
            for size in run.sample_sizes:
                if position < mdat.payload_start or position + size > mdat.end:
                    raise MediaError(ENCODE_FAILED, "a sample lies outside its mdat")
                auxiliary.append(_encrypt_sample(buffer, position, size, key, protection))
                position += size
        trafs.append((traf, runs, auxiliary))

    # Sizes first (they do not depend on the offsets), then the offsets into the new moof.
    new_size = moof.end - moof.start
    for _, _, auxiliary in trafs:
        new_size += _auxiliary_boxes_size(auxiliary)
    grow = new_size - (moof.end - moof.start)
    parts: list[bytes] = []
    position = 8  # inside the new moof
    for box in found:
        if box.type != b"traf":
            parts.append(box.whole(buffer))
            position += box.end - box.start
            continue
        traf, runs, auxiliary = next(entry for entry in trafs if entry[0] == box)
        for run in runs:
            struct.pack_into(">i", buffer, run.offset_position, run.data_offset + grow)
        kept = bytes(buffer[traf.payload_start : traf.end])
        subsamples = any(len(entry) > IV_BYTES for entry in auxiliary)
        senc_payload = struct.pack(">I", len(auxiliary)) + b"".join(auxiliary)
        senc = make_full_box(b"senc", 0, 0x2 if subsamples else 0, senc_payload)
        saiz = _saiz(auxiliary)
        # saio points at the first sample's IV inside senc, counted from the moof's start.
        senc_start = position + 8 + len(kept) + len(saiz) + 20
        saio = make_full_box(b"saio", 0, 0, struct.pack(">II", 1, senc_start + 16))
        traf_bytes = make_box(b"traf", kept + saiz + saio + senc)
        parts.append(traf_bytes)
        position += len(traf_bytes)
    return make_box(b"moof", b"".join(parts))


def _auxiliary_boxes_size(auxiliary: list[bytes]) -> int:
    senc = 16 + sum(len(entry) for entry in auxiliary)
    return senc + len(_saiz(auxiliary)) + 20


def _saiz(auxiliary: list[bytes]) -> bytes:
    sizes = {len(entry) for entry in auxiliary}
    if len(sizes) == 1:
        return make_full_box(b"saiz", 0, 0, struct.pack(">BI", sizes.pop(), len(auxiliary)))
    per_sample = bytes(len(entry) for entry in auxiliary)
    return make_full_box(b"saiz", 0, 0, struct.pack(">BI", 0, len(auxiliary)) + per_sample)


def _read_traf(
    buffer: bytearray, traf: Box, tracks: dict[int, TrackProtection]
) -> tuple[list[_Run], TrackProtection]:
    found = children(buffer, traf)
    if first(found, b"senc") is not None:
        raise MediaError(ENCODE_FAILED, "a fragment is already encrypted")
    tfhd = first(found, b"tfhd")
    if tfhd is None:
        raise MediaError(ENCODE_FAILED, "a traf has no tfhd")
    _, flags = full_box_header(buffer, tfhd)
    (track_id,) = struct.unpack_from(">I", buffer, tfhd.payload_start + 4)
    if flags & 0x000001:
        raise MediaError(ENCODE_FAILED, "fragments with a base data offset are not supported")
    protection = tracks.get(track_id)
    if protection is None:
        raise MediaError(ENCODE_FAILED, f"a fragment of track {track_id}, not in the init segment")
    field = tfhd.payload_start + 8
    field += 4 if flags & 0x02 else 0
    field += 4 if flags & 0x08 else 0
    default_size = protection.default_sample_size
    if flags & 0x10:
        (default_size,) = struct.unpack_from(">I", buffer, field)
    runs = [_read_trun(buffer, box, default_size) for box in found if box.type == b"trun"]
    return runs, protection


def _read_trun(buffer: bytearray, trun: Box, default_size: int) -> _Run:
    _, flags = full_box_header(buffer, trun)
    if not flags & 0x01:
        raise MediaError(ENCODE_FAILED, "a trun without a data offset")
    (count,) = struct.unpack_from(">I", buffer, trun.payload_start + 4)
    offset_position = trun.payload_start + 8
    (data_offset,) = struct.unpack_from(">i", buffer, offset_position)
    field = offset_position + 4 + (4 if flags & 0x04 else 0)
    entry_fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
    sizes = []
    for _ in range(count):
        size = default_size
        for bit in entry_fields:
            if bit == 0x200:
                (size,) = struct.unpack_from(">I", buffer, field)
            field += 4
        sizes.append(size)
    return _Run(offset_position, data_offset, sizes)


def _encrypt_sample(
    buffer: bytearray, position: int, size: int, key: bytes, protection: TrackProtection
) -> bytes:
    """Encrypts one sample in place; its auxiliary information (IV, and subsamples)."""
    iv = os.urandom(IV_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv + bytes(8))).encryptor()
    if not protection.nal_length_size:
        buffer[position : position + size] = encryptor.update(
            bytes(buffer[position : position + size])
        )
        return iv
    ranges = _subsamples(buffer, position, size, protection)
    cursor = position
    for clear, protected in ranges:
        cursor += clear
        buffer[cursor : cursor + protected] = encryptor.update(
            bytes(buffer[cursor : cursor + protected])
        )
        cursor += protected
    entries = b"".join(struct.pack(">HI", clear, protected) for clear, protected in ranges)
    return iv + struct.pack(">H", len(ranges)) + entries


def _subsamples(
    buffer: bytearray, position: int, size: int, protection: TrackProtection
) -> list[tuple[int, int]]:
    """(clear, protected) byte counts covering the sample: each picture NAL unit's length
    prefix and header clear and its body protected; other NAL units wholly clear."""
    length_size, header_size = protection.nal_length_size, protection.nal_header_size
    is_picture = _NAL_FORMATS[protection.sample_format][1]
    ranges: list[tuple[int, int]] = []
    clear = 0
    cursor, end = position, position + size
    while cursor < end:
        nal_size = int.from_bytes(buffer[cursor : cursor + length_size], "big")
        if cursor + length_size + nal_size > end or nal_size < header_size:
            raise MediaError(ENCODE_FAILED, "a video sample's NAL units overrun it")
        header = buffer[cursor + length_size : cursor + length_size + header_size]
        if is_picture(header):
            clear += length_size + header_size
            while clear > _MAX_CLEAR:
                ranges.append((_MAX_CLEAR, 0))
                clear -= _MAX_CLEAR
            ranges.append((clear, nal_size - header_size))
            clear = 0
        else:
            clear += length_size + nal_size
        cursor += length_size + nal_size
    while clear > _MAX_CLEAR:
        ranges.append((_MAX_CLEAR, 0))
        clear -= _MAX_CLEAR
    if clear or not ranges:
        ranges.append((clear, 0))
    return ranges


def _grown_sidx(buffer: bytearray, sidx: Box, growth: list[int]) -> bytes:
    """The sidx with each reference's size grown by its fragment's moof growth (or all of
    them, when one reference covers the whole segment)."""
    payload = bytearray(sidx.payload(buffer))
    version = payload[0]
    references = 4 + 4 + 4 + (16 if version else 8) + 2
    (count,) = struct.unpack_from(">H", payload, references)
    if count == 1:
        growth = [sum(growth)]
    if count != len(growth):
        raise MediaError(ENCODE_FAILED, "a sidx does not index the segment's fragments")
    for index, grown in enumerate(growth):
        field = references + 2 + 12 * index
        (word,) = struct.unpack_from(">I", payload, field)
        if word >> 31:
            raise MediaError(ENCODE_FAILED, "a sidx refers to another sidx")
        struct.pack_into(">I", payload, field, word + grown)
    return make_box(b"sidx", bytes(payload))
