"""What happens after ffmpeg exits and before the files are described and stored.

HLS master playlists: ffmpeg writes them before any segment exists, so BANDWIDTH is a guess
from the rate caps and CODECS is wrong (hvc1.1.4.L60.B01 for a Main-profile x265 stream) or
missing (HEVC in TS). finalize_output measures the produced segments instead: bit rates from
segment sizes and playlist durations, codec strings from the parameter sets in the streams.

Sprites: the WebVTT map that says which tile shows which time range.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from kiln.v1 import job_pb2

from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.plan import CommandPlan, LadderPackaging, SpriteSheet
from worker.media.probe import ffprobe_float, ffprobe_int, run_ffprobe_json

PROBE_TIMEOUT_SECONDS = 60


async def finalize_output(
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    plan: CommandPlan,
) -> list[str]:
    """Completes an output after run_ffmpeg succeeded; returns notes to add to plan.notes.

    Call it before describing the files in out_dir: it rewrites playlists and adds files.
    Raises MediaError(ENCODE_FAILED) when the produced files are not what the plan promised.
    spec and info are accepted for steps that need them; the current ones read the files.
    """
    del spec, info  # the plan already carries everything the current steps need
    step = plan.finalize
    if step is None:
        return []
    if isinstance(step, SpriteSheet):
        await asyncio.to_thread(step.vtt.write_text, sprite_vtt(step), "utf-8")
        return []
    return await _finalize_ladder(step)


async def _finalize_ladder(step: LadderPackaging) -> list[str]:
    notes: list[str] = []
    if step.dash_manifest is not None:
        notes += await correct_mpd_codecs(step.dash_manifest)
        await asyncio.to_thread(measure_mpd_bandwidth, step.dash_manifest)
    if step.hls_master is not None:
        if step.dash_manifest is not None:
            # CMAF: the dash muxer's HLS playlists lack what a VOD playlist says about itself.
            folder = step.hls_master.parent
            playlists = await asyncio.to_thread(lambda: sorted(folder.glob("media_*.m3u8")))
            for playlist in playlists:
                text = await asyncio.to_thread(playlist.read_text, "utf-8")
                await asyncio.to_thread(_replace_text, playlist, tidy_cmaf_media_playlist(text))
        notes += await rewrite_hls_master(step.hls_master)
    return notes


# --- HLS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaPlaylist:
    init_segment: Path | None
    # (segment file, EXTINF duration in seconds), in order.
    segments: list[tuple[Path, float]]


@dataclass(frozen=True)
class RenditionMeasure:
    # Bit/s of the densest segment, and of all segments together.
    peak_bitrate: int
    average_bitrate: int
    # RFC 6381 codec string ("avc1.64001f", "mp4a.40.2"); "" when it could not be derived.
    codec: str
    width: int
    height: int
    frame_rate: float


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def parse_attributes(attribute_list: str) -> dict[str, str]:
    """An HLS attribute list as name → value, quotes removed from quoted strings."""
    return {
        name: value[1:-1] if value.startswith('"') else value
        for name, value in _ATTRIBUTE.findall(attribute_list)
    }


def read_media_playlist(path: Path) -> MediaPlaylist:
    init_segment: Path | None = None
    segments: list[tuple[Path, float]] = []
    pending_duration: float | None = None
    for raw_line in path.read_text("utf-8").splitlines():
        line = raw_line.strip()
        if line.startswith("#EXT-X-MAP:"):
            uri = parse_attributes(line.partition(":")[2]).get("URI")
            init_segment = path.parent / uri if uri else None
        elif line.startswith("#EXTINF:"):
            pending_duration = ffprobe_float(line.partition(":")[2].split(",")[0])
        elif line and not line.startswith("#"):
            if pending_duration is None:
                raise MediaError(ENCODE_FAILED, f"{path.name}: segment {line} has no duration")
            segments.append((path.parent / line, pending_duration))
            pending_duration = None
    return MediaPlaylist(init_segment, segments)


async def measure_rendition(playlist_path: Path) -> RenditionMeasure:
    """Bit rates from the segments' sizes and durations; codec and picture from ffprobe."""
    playlist = await asyncio.to_thread(read_media_playlist, playlist_path)
    if not playlist.segments:
        raise MediaError(ENCODE_FAILED, f"{playlist_path.name} lists no segments")
    sizes = await asyncio.to_thread(lambda: [path.stat().st_size for path, _ in playlist.segments])
    durations = [duration for _, duration in playlist.segments]
    peak = max(
        (size * 8 / duration for size, duration in zip(sizes, durations, strict=True) if duration),
        default=0.0,
    )
    total_duration = sum(durations)
    average = sum(sizes) * 8 / total_duration if total_duration > 0 else 0.0

    streams = await probe_streams(playlist.init_segment, playlist.segments[0][0])
    # A TS variant carries its audio too: its CODECS names both, video first.
    streams.sort(key=lambda each: each.get("codec_type") != "video")
    codecs = [codec_string(each) for each in streams]
    stream = streams[0]
    return RenditionMeasure(
        peak_bitrate=round(peak),
        average_bitrate=round(average),
        codec=",".join(codecs) if all(codecs) else "",
        width=ffprobe_int(stream.get("width")),
        height=ffprobe_int(stream.get("height")),
        frame_rate=_rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate")),
    )


async def rewrite_hls_master(master: Path) -> list[str]:
    """Replaces each EXT-X-STREAM-INF's measurable attributes with measured values.

    BANDWIDTH is the peak segment bit rate of the variant plus that of its audio rendition
    (an upper bound, as peaks need not coincide); AVERAGE-BANDWIDTH is total bytes x 8 over
    duration, likewise summed. Attributes this does not measure (AUDIO, ...) are kept.
    """
    notes: list[str] = []
    lines = (await asyncio.to_thread(master.read_text, "utf-8")).splitlines()
    audio_groups: dict[str, list[Path]] = {}
    for line in lines:
        if line.startswith("#EXT-X-MEDIA:"):
            attributes = parse_attributes(line.partition(":")[2])
            if attributes.get("TYPE") == "AUDIO" and attributes.get("URI"):
                group = audio_groups.setdefault(attributes.get("GROUP-ID", ""), [])
                group.append(master.parent / attributes["URI"])

    audio_measures: dict[str, RenditionMeasure] = {}
    for group_id, playlists in audio_groups.items():
        measures = [await measure_rendition(playlist) for playlist in playlists]
        # Renditions of a group are alternatives: the variant must allow for the largest.
        audio_measures[group_id] = max(measures, key=lambda measure: measure.peak_bitrate)

    rewritten: list[str] = []
    variant_position = 0
    for index, line in enumerate(lines):
        if not line.startswith("#EXT-X-STREAM-INF:"):
            rewritten.append(line)
            continue
        uri = next(
            (later for later in lines[index + 1 :] if later and not later.startswith("#")), None
        )
        if uri is None:
            raise MediaError(ENCODE_FAILED, f"{master.name}: a variant has no playlist")
        attributes = parse_attributes(line.partition(":")[2])
        video = await measure_rendition(master.parent / uri)
        audio = audio_measures.get(attributes.get("AUDIO", ""))
        rewritten.append(
            "#EXT-X-STREAM-INF:" + _stream_inf(attributes, video, audio, variant_position, notes)
        )
        variant_position += 1

    if "#EXT-X-INDEPENDENT-SEGMENTS" not in rewritten:
        # Every segment of every variant starts with an IDR frame (forced at the boundaries).
        after_version = next(
            (i + 1 for i, line in enumerate(rewritten) if line.startswith("#EXT-X-VERSION")), 1
        )
        rewritten.insert(after_version, "#EXT-X-INDEPENDENT-SEGMENTS")
    await asyncio.to_thread(_replace_text, master, "\n".join(rewritten) + "\n")
    return notes


def _stream_inf(
    attributes: dict[str, str],
    video: RenditionMeasure,
    audio: RenditionMeasure | None,
    position: int,
    notes: list[str],
) -> str:
    peak = video.peak_bitrate + (audio.peak_bitrate if audio else 0)
    average = video.average_bitrate + (audio.average_bitrate if audio else 0)
    codecs = [video.codec, *([audio.codec] if audio else [])]
    measured: dict[str, str] = {
        "BANDWIDTH": str(peak),
        "AVERAGE-BANDWIDTH": str(average),
    }
    if all(codecs):
        measured["CODECS"] = f'"{",".join(codecs)}"'
    elif "CODECS" in attributes:
        notes.append(f"variant {position}: CODECS kept as ffmpeg wrote it (not measurable)")
        measured["CODECS"] = f'"{attributes["CODECS"]}"'
    if video.width and video.height:
        measured["RESOLUTION"] = f"{video.width}x{video.height}"
    if video.frame_rate > 0:
        measured["FRAME-RATE"] = f"{video.frame_rate:.3f}"
    kept = {
        name: f'"{value}"' if name in _QUOTED_ATTRIBUTES else value
        for name, value in attributes.items()
        if name not in measured and name not in _MEASURED_ATTRIBUTES
    }
    return ",".join(f"{name}={value}" for name, value in {**measured, **kept}.items())


_MEASURED_ATTRIBUTES = frozenset(
    {"BANDWIDTH", "AVERAGE-BANDWIDTH", "CODECS", "RESOLUTION", "FRAME-RATE"}
)
# Attributes whose values are quoted strings in RFC 8216 (the others are enumerated or numbers).
_QUOTED_ATTRIBUTES = frozenset(
    {"CODECS", "AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS", "SUPPLEMENTAL-CODECS"}
)


def tidy_cmaf_media_playlist(text: str) -> str:
    """Makes a dash-muxer HLS media playlist a plain VOD one.

    It stamps EXT-X-PROGRAM-DATE-TIME with the encoder's wall clock, which means nothing for a
    file, and leaves out EXT-X-PLAYLIST-TYPE:VOD, which lets players treat it as complete.
    """
    lines = [line for line in text.splitlines() if not line.startswith("#EXT-X-PROGRAM-DATE-TIME")]
    if not any(line.startswith("#EXT-X-PLAYLIST-TYPE") for line in lines):
        after = next(
            (i + 1 for i, line in enumerate(lines) if line.startswith("#EXT-X-TARGETDURATION")), 1
        )
        lines.insert(after, "#EXT-X-PLAYLIST-TYPE:VOD")
    return "\n".join(lines) + "\n"


# --- DASH ----------------------------------------------------------------------------------------

_MPD_NAMESPACE = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}
_NUMBER_TEMPLATE = re.compile(r"\$Number(?:%0(\d+)d)?\$")


async def correct_mpd_codecs(manifest: Path) -> list[str]:
    """Replaces the codecs attribute of H.264/H.265/AV1 representations with measured strings.

    The dash muxer writes a bare "hvc1" for HEVC, which players cannot check support for, and
    AV1's level is only right when FFmpeg's guess matches what the encoder signalled.
    """
    text = await asyncio.to_thread(manifest.read_text, "utf-8")
    root = ElementTree.fromstring(text)
    for adaptation_set in root.iterfind(".//mpd:AdaptationSet", _MPD_NAMESPACE):
        shared_template = adaptation_set.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
        for representation in adaptation_set.iterfind("mpd:Representation", _MPD_NAMESPACE):
            codecs = representation.get("codecs", "")
            if not codecs.startswith(("avc1", "avc3", "hvc1", "hev1", "av01")):
                continue
            template = representation.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
            template = template if template is not None else shared_template
            if template is None:
                continue
            representation_id = representation.get("id", "")
            init_segment, first_segment = _first_dash_segment(
                manifest.parent, template, representation_id
            )
            measured = codec_string(await probe_first_stream(init_segment, first_segment))
            if measured and measured != codecs:
                text = re.sub(
                    rf'(<Representation id="{re.escape(representation_id)}"[^>]*?codecs=")[^"]*"',
                    rf'\g<1>{measured}"',
                    text,
                )
    await asyncio.to_thread(_replace_text, manifest, text)
    return []


def measure_mpd_bandwidth(manifest: Path) -> None:
    """Sets each representation's bandwidth to its peak segment bitrate, measured.

    The dash muxer writes the encoder's target rate, which a capped-CRF encode does not
    keep to; players pick renditions by this number, so it has to be what the segments
    actually need. Representations without a SegmentTimeline are left as they are.
    """
    text = manifest.read_text("utf-8")
    root = ElementTree.fromstring(text)
    for adaptation_set in root.iterfind(".//mpd:AdaptationSet", _MPD_NAMESPACE):
        shared_template = adaptation_set.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
        for representation in adaptation_set.iterfind("mpd:Representation", _MPD_NAMESPACE):
            template = representation.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
            template = template if template is not None else shared_template
            if template is None:
                continue
            representation_id = representation.get("id", "")
            peak = peak_segment_bitrate(manifest.parent, template, representation_id)
            if peak:
                text = re.sub(
                    rf'(<Representation id="{re.escape(representation_id)}"'
                    r'[^>]*?bandwidth=")[^"]*"',
                    rf'\g<1>{peak}"',
                    text,
                )
    _replace_text(manifest, text)


def peak_segment_bitrate(
    folder: Path, template: ElementTree.Element, representation_id: str
) -> int:
    """Highest bits per second over the representation's media segments; 0 if unknown."""
    timeline = template.find("mpd:SegmentTimeline", _MPD_NAMESPACE)
    if timeline is None:
        return 0
    timescale = int(template.get("timescale", "1"))
    durations: list[float] = []
    for entry in timeline.iterfind("mpd:S", _MPD_NAMESPACE):
        durations += [int(entry.get("d", "0")) / timescale] * (int(entry.get("r", "0")) + 1)
    number = int(template.get("startNumber", "1"))
    media = template.get("media", "")
    peak = 0.0
    for offset, seconds in enumerate(durations):
        path = folder / _expand_template(media, representation_id, number + offset)
        if seconds > 0 and path.is_file():
            peak = max(peak, path.stat().st_size * 8 / seconds)
    return round(peak)


def _expand_template(pattern: str, representation_id: str, number: int) -> str:
    named = pattern.replace("$RepresentationID$", representation_id)
    return _NUMBER_TEMPLATE.sub(lambda match: f"{number:0{int(match.group(1) or 1)}d}", named)


def _first_dash_segment(
    folder: Path, template: ElementTree.Element, representation_id: str
) -> tuple[Path, Path]:
    start_number = int(template.get("startNumber", "1"))
    init_segment = folder / _expand_template(
        template.get("initialization", ""), representation_id, start_number
    )
    first_segment = folder / _expand_template(
        template.get("media", ""), representation_id, start_number
    )
    return init_segment, first_segment


# --- Codec strings -------------------------------------------------------------------------------


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


def _rate(value: object) -> float:
    numerator, _, denominator = str(value or "").partition("/")
    top, bottom = ffprobe_float(numerator), ffprobe_float(denominator or "1")
    return top / bottom if bottom else 0.0


# --- Sprites -------------------------------------------------------------------------------------


def sprite_vtt(sheet: SpriteSheet) -> str:
    """WebVTT cues mapping each interval to its tile: "sprite.jpg#xywh=x,y,w,h"."""
    lines = ["WEBVTT", ""]
    for tile in range(sheet.tile_count):
        start = tile * sheet.interval_seconds
        if start >= sheet.duration_seconds:
            break
        end = min(start + sheet.interval_seconds, sheet.duration_seconds)
        x = (tile % sheet.columns) * sheet.tile_width
        y = (tile // sheet.columns) * sheet.tile_height
        lines += [
            f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}",
            f"{sheet.image.name}#xywh={x},{y},{sheet.tile_width},{sheet.tile_height}",
            "",
        ]
    return "\n".join(lines)


def vtt_timestamp(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    return f"{hours:02d}:{minutes:02d}:{milliseconds / 1000:06.3f}"


def _replace_text(path: Path, text: str) -> None:
    # Written aside and renamed, so a crash never leaves a half-written playlist.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, "utf-8")
    temporary.replace(path)
