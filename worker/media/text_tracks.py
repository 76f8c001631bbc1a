"""Text tracks in outputs: subtitle streams of progressive files, HLS subtitle renditions of
segmented WebVTT, DASH text adaptation sets and .vtt sidecars.

Every track reaches this module as cues on the output's own timeline (worker.media.cues:
clipped, escaped), whatever its source. Progressive files take them as extra FFmpeg inputs
(WebVTT files written by the worker) in the container's own subtitle codec. Ladders are cut by
FFmpeg first; the text renditions are written afterwards, cut at the video's own segment
boundaries (read from its media playlist) and tied to its timestamps with X-TIMESTAMP-MAP, and
the master playlist gets one EXT-X-MEDIA TYPE=SUBTITLES per track in the group "subs", named
on every variant. The AUDIO group FFmpeg wrote is left as it is, so more audio renditions can
join it later.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2

from common.languages import language_of
from worker.media.atomic_write import replace_text
from worker.media.codec_strings import probe_streams
from worker.media.cues import Cue, segment_webvtt, webvtt_text
from worker.media.dash_mpd import first_video_segment
from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.fmp4_timing import first_presentation
from worker.media.hls_master import parse_attributes, read_media_playlist
from worker.media.probe import ffprobe_float

OutputType = job_pb2.OutputType

SUBTITLE_GROUP = "subs"
# Apple's characteristics for captions (HLS authoring specification): the dialogue and the
# other sounds transcribed.
CAPTION_CHARACTERISTICS = (
    "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound"
)
# The subtitle codec each progressive container stores text in.
SUBTITLE_CODECS: dict[int, str] = {
    OutputType.OUTPUT_TYPE_MP4: "mov_text",
    OutputType.OUTPUT_TYPE_MOV: "mov_text",
    OutputType.OUTPUT_TYPE_MKV: "srt",
    OutputType.OUTPUT_TYPE_WEBM: "webvtt",
}
# MPEG-TS and HLS timestamps count at 90 kHz.
MPEG_TICKS = 90_000


@dataclass(frozen=True)
class PreparedTrack:
    # Position in OutputSpec.text_tracks.
    position: int
    # BCP 47, as asked (HLS LANGUAGE, DASH @lang); containers store its ISO 639-2 code.
    language: str
    name: str
    default: bool
    forced: bool
    captions: bool
    cues: list[Cue]
    # The whole track as WebVTT, written by the worker (an FFmpeg input for progressive files).
    vtt: Path
    # Drawn into the picture (burned_in_filter) instead of carried as a track.
    burn_in: bool = False

    @property
    def sidecar_name(self) -> str:
        """The .vtt beside a progressive output and behind a DASH text adaptation set."""
        return f"text_{self.position}_{self.language}.vtt"

    @property
    def rendition_folder(self) -> str:
        return f"text_{self.position}"


def filter_graph_value(text: str) -> str:
    """`text` as one filter option's value in a filter graph (-vf or -filter_complex): escaped
    once for the filter's own argument list (quote, backslash, colon) and again for the graph
    (quote, backslash, brackets, comma, semicolon), as FFmpeg's filtergraph syntax reads it."""
    option = re.sub(r"([\\':])", r"\\\1", text)
    return re.sub(r"([\\'\[\],;])", r"\\\1", option)


def burned_in_filter(tracks: list[PreparedTrack]) -> str | None:
    """The filter that draws the burned-in track (if any) onto a picture, at that picture's
    size. libass renders FFmpeg's reading of the WebVTT: the escapes kiln wrote become the
    characters they stand for, "{" and "\\" are escaped from ASS overrides, and only <b>, <i>
    and <u> style the text, so the cue text is drawn as written."""
    burned = [track for track in tracks if track.burn_in]
    if not burned:
        return None
    return f"subtitles=filename={filter_graph_value(str(burned[0].vtt))}"


def carried(tracks: list[PreparedTrack]) -> list[PreparedTrack]:
    """The tracks an output carries as tracks (not the burned-in one)."""
    return [track for track in tracks if not track.burn_in]


def write_track_vtt(track: PreparedTrack) -> None:
    track.vtt.parent.mkdir(parents=True, exist_ok=True)
    track.vtt.write_text(webvtt_text(track.cues), "utf-8")


def progressive_text_args(
    tracks: list[PreparedTrack], output_type: int, first_input: int
) -> tuple[list[str], list[str]]:
    """(input arguments, output arguments) that add `tracks` to a progressive file, the first
    track being FFmpeg input number `first_input`."""
    codec = SUBTITLE_CODECS.get(output_type)
    if codec is None or not tracks:
        return [], []
    inputs: list[str] = []
    outputs: list[str] = []
    for number, track in enumerate(tracks):
        inputs += ["-f", "webvtt", "-i", str(track.vtt)]
        outputs += ["-map", f"{first_input + number}:0"]
    outputs += ["-c:s", codec]
    for number, track in enumerate(tracks):
        flags = [flag for flag, on in (("default", track.default), ("forced", track.forced)) if on]
        language = language_of(track.language)
        # QuickTime's own language codes are found by the bibliographic spelling.
        code = (
            language.iso639_2_bibliographic
            if output_type == OutputType.OUTPUT_TYPE_MOV
            else language.iso639_2
        )
        outputs += [f"-metadata:s:s:{number}", f"language={code}"]
        outputs += [f"-metadata:s:s:{number}", f"title={track.name}"]
        outputs += [f"-disposition:s:{number}", "+".join(flags) or "0"]
    return inputs, outputs


async def write_sidecars(out_dir: Path, tracks: list[PreparedTrack], shift: float = 0.0) -> None:
    """Each track as a whole .vtt in the output's folder, its cues `shift` seconds later."""
    for track in tracks:
        cues = [Cue(cue.start + shift, cue.end + shift, cue.text) for cue in track.cues]
        await asyncio.to_thread(replace_text, out_dir / track.sidecar_name, webvtt_text(cues))


async def add_hls_text_renditions(master: Path, tracks: list[PreparedTrack]) -> None:
    """Writes a segmented WebVTT rendition per track beside `master` and names them in it."""
    if not tracks:
        return
    lines = (await asyncio.to_thread(master.read_text, "utf-8")).splitlines()
    variant_uri = _first_variant_uri(lines, master)
    video = await asyncio.to_thread(read_media_playlist, master.parent / variant_uri)
    if not video.segments:
        raise MediaError(ENCODE_FAILED, f"{variant_uri} lists no segments")
    mpegts = await first_timestamp(video.init_segment, video.segments[0][0])
    durations = [duration for _, duration in video.segments]
    await name_hls_text_renditions(master, tracks, durations, mpegts)


async def name_hls_text_renditions(
    master: Path, tracks: list[PreparedTrack], durations: list[float], mpegts: int
) -> None:
    """Writes a rendition per track, cut into segments of `durations` (the video's) and mapped
    to the video's first timestamp `mpegts` (90 kHz), and names them in `master`."""
    lines = (await asyncio.to_thread(master.read_text, "utf-8")).splitlines()
    media_lines = []
    for track in tracks:
        await asyncio.to_thread(
            _write_rendition, master.parent / track.rendition_folder, track, durations, mpegts
        )
        media_lines.append(_media_line(track))
    rewritten: list[str] = []
    for line in lines:
        if line.startswith("#EXT-X-STREAM-INF:") and media_lines:
            rewritten += media_lines
            media_lines = []
        named = line.startswith("#EXT-X-STREAM-INF:") and "SUBTITLES=" not in line
        rewritten.append(f'{line},SUBTITLES="{SUBTITLE_GROUP}"' if named else line)
    await asyncio.to_thread(replace_text, master, "\n".join(rewritten) + "\n")


def _first_variant_uri(lines: list[str], master: Path) -> str:
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            for later in lines[index + 1 :]:
                if later and not later.startswith("#"):
                    return later
    raise MediaError(ENCODE_FAILED, f"{master.name} names no variant")


async def first_timestamp(init_segment: Path | None, segment: Path) -> int:
    """Where the video's first picture is shown on the media's own clock, in 90 kHz ticks: the
    instant the text's 0 belongs to. MPEG-TS starts its timestamps later than 0 (FFmpeg's muxer
    delay, 1.4 s); fMP4 ladders (HLS, DASH, CMAF) show their first picture at 0, which is read
    from the boxes: ffprobe would say a reordering delay later (worker.media.fmp4_timing)."""
    if init_segment is not None:
        init, media = await asyncio.to_thread(_read_both, init_segment, segment)
        return max(0, round(first_presentation(init, media) * MPEG_TICKS))
    streams = await probe_streams(init_segment, segment)
    video = [each for each in streams if each.get("codec_type") == "video"] or streams
    return max(0, round(ffprobe_float(video[0].get("start_time")) * MPEG_TICKS))


def _read_both(init_segment: Path, segment: Path) -> tuple[bytes, bytes]:
    return init_segment.read_bytes(), segment.read_bytes()


def _write_rendition(
    folder: Path, track: PreparedTrack, durations: list[float], mpegts: int
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    segments = segment_webvtt(track.cues, durations, mpegts)
    target = max(1, math.ceil(max(durations) - 1e-3))
    playlist = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for number, (text, duration) in enumerate(segments):
        name = f"seg_{number:05d}.vtt"
        replace_text(folder / name, text)
        playlist += [f"#EXTINF:{duration:.6f},", name]
    playlist.append("#EXT-X-ENDLIST")
    replace_text(folder / "index.m3u8", "\n".join(playlist) + "\n")


def _media_line(track: PreparedTrack) -> str:
    attributes = [
        ("TYPE", "SUBTITLES"),
        ("GROUP-ID", f'"{SUBTITLE_GROUP}"'),
        ("NAME", f'"{track.name}"'),
        ("LANGUAGE", f'"{track.language}"'),
        ("DEFAULT", "YES" if track.default else "NO"),
        # AUTOSELECT lets a player pick the track by the viewer's language; a forced track is
        # picked only beside audio of another language, which AUTOSELECT also allows.
        ("AUTOSELECT", "YES"),
        ("FORCED", "YES" if track.forced else "NO"),
    ]
    if track.captions:
        attributes.append(("CHARACTERISTICS", f'"{CAPTION_CHARACTERISTICS}"'))
    attributes.append(("URI", f'"{track.rendition_folder}/index.m3u8"'))
    return "#EXT-X-MEDIA:" + ",".join(f"{name}={value}" for name, value in attributes)


def subtitle_renditions(master_text: str) -> list[dict[str, str]]:
    """The EXT-X-MEDIA TYPE=SUBTITLES entries of a master playlist (for tests and checks)."""
    entries = []
    for line in master_text.splitlines():
        if line.startswith("#EXT-X-MEDIA:"):
            attributes = parse_attributes(line.partition(":")[2])
            if attributes.get("TYPE") == "SUBTITLES":
                entries.append(attributes)
    return entries


def _dash_role(track: PreparedTrack) -> str:
    if track.captions:
        return "caption"
    return "forced-subtitle" if track.forced else "subtitle"


async def add_dash_text_sets(manifest: Path, tracks: list[PreparedTrack]) -> None:
    """One text AdaptationSet per track in the MPD's period: the whole track as a WebVTT
    sidecar (dash.js and Shaka read text/vtt this way), written beside the manifest.

    A sidecar's cue times are period times, so they are shifted by the time the video's first
    picture is shown at: 0 in kiln's fMP4 segments (negative composition offsets), read from
    the boxes rather than assumed, so the cues stay with the pictures they belong to."""
    if not tracks:
        return
    first = await asyncio.to_thread(first_video_segment, manifest)
    shift = 0.0 if first is None else await first_timestamp(*first) / MPEG_TICKS
    await write_sidecars(manifest.parent, tracks, shift)
    text = await asyncio.to_thread(manifest.read_text, "utf-8")
    sets = []
    for number, track in enumerate(tracks):
        size = (manifest.parent / track.sidecar_name).stat().st_size
        bandwidth = max(1, size * 8 // 60)  # nominal: the file is fetched whole, once
        sets.append(
            f'\t\t<AdaptationSet id="{100 + number}" contentType="text" mimeType="text/vtt" '
            f'lang="{track.language}">\n'
            f'\t\t\t<Role schemeIdUri="urn:mpeg:dash:role:2011" value="{_dash_role(track)}"/>\n'
            f"\t\t\t<Label>{_xml_text(track.name)}</Label>\n"
            f'\t\t\t<Representation id="{track.rendition_folder}" bandwidth="{bandwidth}">\n'
            f"\t\t\t\t<BaseURL>{track.sidecar_name}</BaseURL>\n"
            "\t\t\t</Representation>\n"
            "\t\t</AdaptationSet>\n"
        )
    closing = list(re.finditer(r"[ \t]*</Period>", text))
    if not closing:
        raise MediaError(ENCODE_FAILED, f"{manifest.name} has no Period")
    at = closing[0].start()
    text = text[:at] + "".join(sets) + text[at:]
    await asyncio.to_thread(replace_text, manifest, text)


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
