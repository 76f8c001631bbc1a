"""HLS playlists written from a list of segments rather than by FFmpeg (chunked outputs).

A chunked ladder's segments come from many FFmpeg processes; its playlists are written here,
by the server while chunks finish (EVENT playlists a player can start on) and by the merge
task at the end (VOD, with #EXT-X-ENDLIST). Both sides import these pure functions, so the
live playlists and the final ones cannot disagree about names or layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MASTER_NAME = "master.m3u8"
MEDIA_PLAYLIST_NAME = "index.m3u8"
# A chunked MPEG-TS variant's final playlist, over its segments with the audio muxed in; its
# index.m3u8 is the live one (video only), which players that started mid-job keep reading.
MUXED_PLAYLIST_NAME = "muxed.m3u8"
AUDIO_RENDITION = "audio"
# ffmpeg's name for the group of the ladder's one audio rendition (single-pass outputs).
AUDIO_GROUP_ID = "group_audio"


@dataclass(frozen=True)
class SegmentEntry:
    # Path relative to the output's folder ("v0/seg_00004.ts").
    path: str
    duration_seconds: float
    size_bytes: int
    # fMP4: first decode time (tfdt) and summed sample durations, in the rendition's timescale.
    decode_time: int = 0
    decode_duration: int = 0


@dataclass(frozen=True)
class Rendition:
    """One rendition's segments so far, with what its master entry says about it."""

    # Folder inside the output ("v0", "audio").
    name: str
    codec: str
    width: int
    height: int
    frame_rate: float
    segments: Sequence[SegmentEntry]
    # fMP4: the init segment ("v0/init_0.mp4"), the hex SHA-256 of the bytes the chunk wrote
    # there, and the track's timescale (ticks per second of the segments' decode times).
    init_path: str = ""
    init_sha256: str = ""
    timescale: int = 0

    @property
    def peak_bitrate(self) -> int:
        return round(
            max(
                (
                    s.size_bytes * 8 / s.duration_seconds
                    for s in self.segments
                    if s.duration_seconds
                ),
                default=0.0,
            )
        )

    @property
    def average_bitrate(self) -> int:
        seconds = sum(s.duration_seconds for s in self.segments)
        return round(sum(s.size_bytes for s in self.segments) * 8 / seconds) if seconds else 0


def muxed_segment_path(segment_path: str) -> str:
    """Where the merge of a chunked MPEG-TS ladder puts a video segment muxed with the audio
    of its time span ("v0/seg_00004.ts" -> "v0/muxed_00004.ts"): a name of its own, since
    segments are served as immutable and the video-only one stays, named by the live
    playlist (a player on it needs the same URI at every media sequence number)."""
    folder, _, name = segment_path.rpartition("/")
    return f"{folder}/{name.replace('seg_', 'muxed_', 1)}"


def playlist_path(rendition: str, name: str = MEDIA_PLAYLIST_NAME) -> str:
    return f"{rendition}/{name}"


def media_playlist(
    segments: Sequence[SegmentEntry], *, target_seconds: float, ended: bool, init_path: str = ""
) -> str:
    """A media playlist over `segments` (all in one rendition folder, with the init segment
    `init_path` for fMP4: EXT-X-MAP, which needs version 6; 7 as FFmpeg writes).

    Unended, it is an EVENT playlist: players poll it and only ever see segments appended.
    TARGETDURATION must not change between polls, so it comes from the planned segment
    length (and the longest segment, which a forced keyframe keeps within a frame of it).
    It says to start at its beginning (EXT-X-START, TIME-OFFSET=0): what is being encoded is
    a whole presentation, which players would otherwise start near the live edge (hls.js:
    three target durations before it), as the dynamic MPD says with its presentation delay.
    """
    longest = max((s.duration_seconds for s in segments), default=0.0)
    target = max(math.ceil(target_seconds - 1e-3), round(longest), 1)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{7 if init_path else 3}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if ended else 'EVENT'}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if not ended:
        lines.append("#EXT-X-START:TIME-OFFSET=0")
    if init_path:
        lines.append(f'#EXT-X-MAP:URI="{init_path.rsplit("/", 1)[-1]}"')
    for segment in segments:
        lines += [f"#EXTINF:{segment.duration_seconds:.6f},", segment.path.rsplit("/", 1)[-1]]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def master_playlist(
    variants: Sequence[Rendition],
    audio: Rendition | None,
    *,
    variant_playlist: str = MEDIA_PLAYLIST_NAME,
) -> str:
    """The multivariant playlist: every video rendition (its playlist `variant_playlist` in
    its folder), and the one audio rendition group.

    BANDWIDTH is the variant's peak segment bit rate plus the audio's (an upper bound, as
    peaks need not coincide), AVERAGE-BANDWIDTH the two averages summed: measured from the
    segments, as the single-pass packaging does.
    """
    fmp4 = any(rendition.init_path for rendition in variants)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{7 if fmp4 else 3}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP_ID}",NAME="{audio.name}",'
            f'DEFAULT=YES,AUTOSELECT=YES,URI="{playlist_path(audio.name)}"'
        )
    for variant in variants:
        peak = variant.peak_bitrate + (audio.peak_bitrate if audio else 0)
        average = variant.average_bitrate + (audio.average_bitrate if audio else 0)
        attributes = [f"BANDWIDTH={peak}", f"AVERAGE-BANDWIDTH={average}"]
        codecs = [variant.codec, *([audio.codec] if audio else [])]
        if all(codecs):
            attributes.append(f'CODECS="{",".join(codecs)}"')
        if variant.width and variant.height:
            attributes.append(f"RESOLUTION={variant.width}x{variant.height}")
        if variant.frame_rate > 0:
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        if audio is not None:
            attributes.append(f'AUDIO="{AUDIO_GROUP_ID}"')
        stream = "#EXT-X-STREAM-INF:" + ",".join(attributes)
        lines += [stream, playlist_path(variant.name, variant_playlist)]
    return "\n".join(lines) + "\n"
