"""The HLS master playlist, measured after FFmpeg wrote it.

ffmpeg writes the master before any segment exists, so BANDWIDTH is a guess from the rate
caps and CODECS is wrong or missing (worker.media.codec_strings). rewrite_hls_master measures
the produced segments instead: bit rates from segment sizes and playlist durations, codec
strings from the parameter sets in the streams.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from worker.media.atomic_write import replace_text
from worker.media.codec_strings import codec_string, probe_streams
from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.probe import ffprobe_float, ffprobe_int
from worker.media.together import each


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


# ffprobe runs measuring one master's renditions at a time.
MEASURE_AT_ONCE = 4

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

    variant_playlists: dict[int, Path] = {}
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            uri = next(
                (later for later in lines[index + 1 :] if later and not later.startswith("#")),
                None,
            )
            if uri is None:
                raise MediaError(ENCODE_FAILED, f"{master.name}: a variant has no playlist")
            variant_playlists[index] = master.parent / uri
    # Every rendition measured at once: each is an ffprobe run, mostly its start-up.
    audio_playlists = [(group, path) for group, paths in audio_groups.items() for path in paths]
    measures = await each(
        (
            measure_rendition(path)
            for path in [*(path for _, path in audio_playlists), *variant_playlists.values()]
        ),
        at_once=MEASURE_AT_ONCE,
    )
    audio_measures: dict[str, RenditionMeasure] = {}
    for (group_id, _), measure in zip(
        audio_playlists, measures[: len(audio_playlists)], strict=True
    ):
        # Renditions of a group are alternatives: the variant must allow for the largest.
        known = audio_measures.get(group_id)
        if known is None or measure.peak_bitrate > known.peak_bitrate:
            audio_measures[group_id] = measure
    video_measures = dict(zip(variant_playlists, measures[len(audio_playlists) :], strict=True))

    rewritten: list[str] = []
    variant_position = 0
    for index, line in enumerate(lines):
        if not line.startswith("#EXT-X-STREAM-INF:"):
            rewritten.append(line)
            continue
        attributes = parse_attributes(line.partition(":")[2])
        video = video_measures[index]
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
    await asyncio.to_thread(replace_text, master, "\n".join(rewritten) + "\n")
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
    codecs = [video.codec]
    # An MPEG-TS variant's own codecs already name the audio muxed into it: named once.
    if audio and not (audio.codec and audio.codec in video.codec.split(",")):
        codecs.append(audio.codec)
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


async def tidy_cmaf_media_playlists(folder: Path) -> None:
    """Tidies every media playlist the dash muxer wrote beside a CMAF output's master."""
    playlists = await asyncio.to_thread(lambda: sorted(folder.glob("media_*.m3u8")))
    for playlist in playlists:
        text = await asyncio.to_thread(playlist.read_text, "utf-8")
        await asyncio.to_thread(replace_text, playlist, tidy_cmaf_media_playlist(text))


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


def _rate(value: object) -> float:
    numerator, _, denominator = str(value or "").partition("/")
    top, bottom = ffprobe_float(numerator), ffprobe_float(denominator or "1")
    return top / bottom if bottom else 0.0
