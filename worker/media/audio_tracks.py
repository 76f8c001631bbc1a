"""Several audio tracks in one output: the arguments that map, encode and label each one, and
the manifest entries that name them once FFmpeg has written a ladder.

A progressive file carries every track with its language, title and default disposition. A
fMP4 HLS or CMAF ladder gets one EXT-X-MEDIA TYPE=AUDIO rendition per track in one group that
every variant names; a DASH or CMAF MPD one AdaptationSet per track with lang and Role. An
MPEG-TS ladder keeps the default track muxed into every variant, as its one track always was
(worker.media.ladder), and carries each other track as an alternate rendition of its own: the
group lists the default without a URI, which RFC 8216 section 4.3.4.1 reads as media carried
in the variants' own segments (ts_audio_streams).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2

from common.languages import language_of
from worker.media.atomic_write import replace_text
from worker.media.channels import channel_plan
from worker.media.codec_args import audio_args
from worker.media.containers import Container
from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.hls_master import parse_attributes
from worker.media.loudness import SecondPass
from worker.media.timing import input_args

R = job_pb2.AudioTrackRole
OutputType = job_pb2.OutputType

# Where each track's HLS media playlist and segments go (%v of the hls muxer's var_stream_map).
RENDITION_PREFIX = "audio_"
HLS_ROLE_CHARACTERISTICS: dict[int, str] = {
    R.AUDIO_TRACK_ROLE_DESCRIPTION: "public.accessibility.describes-video",
}
DASH_ROLES: dict[int, str] = {
    R.AUDIO_TRACK_ROLE_MAIN: "main",
    R.AUDIO_TRACK_ROLE_ALTERNATE: "alternate",
    R.AUDIO_TRACK_ROLE_DESCRIPTION: "description",
}


@dataclass(frozen=True)
class PreparedAudio:
    """One audio track as the worker runs it."""

    position: int
    # Where FFmpeg reads an extra audio file; None: a stream of the job's input.
    location: str | None
    stream: job_pb2.StreamInfo
    language: str
    name: str
    default: bool
    role: int
    # The output's AudioSpec with this track's codec, bitrate and channels over it.
    settings: job_pb2.AudioSpec
    # Loudness normalization's first pass over this track, when the spec asks for it.
    loudness: SecondPass | None = None

    @property
    def rendition_folder(self) -> str:
        return f"{RENDITION_PREFIX}{self.position}"

    def channels(self) -> int:
        return channel_plan(self.settings, self.stream, []).channels


def extra_inputs(tracks: Sequence[PreparedAudio], start: float) -> list[str]:
    """Input arguments of the extra audio files, each cut at the clip's start like the input."""
    args: list[str] = []
    for track in tracks:
        if track.location is not None:
            args += input_args(track.location, start)
    return args


def track_maps(
    tracks: Sequence[PreparedAudio],
    first_input: int,
    streams: Sequence[PreparedAudio] | None = None,
) -> list[str]:
    """One -map per output audio stream, in order: `streams` (each a track, a track possibly
    more than once), or else each track once. The extra files are inputs first_input,
    first_input+1... in the order of `tracks`."""
    inputs: dict[int, int] = {}
    for track in tracks:
        if track.location is not None:
            inputs[track.position] = first_input + len(inputs)
    maps: list[str] = []
    for track in tracks if streams is None else streams:
        maps += ["-map", f"{inputs.get(track.position, 0)}:{track.stream.index}"]
    return maps


def ts_audio_streams(tracks: Sequence[PreparedAudio], variant_count: int) -> list[PreparedAudio]:
    """An MPEG-TS ladder's output audio streams: the default track once per variant (muxed into
    it, so hls.js plays the default with no alternate chosen exactly as a one-track TS ladder),
    then each other track once, as an alternate rendition."""
    default = next(track for track in tracks if track.default)
    return [default] * variant_count + [track for track in tracks if not track.default]


def encode_args(
    tracks: Sequence[PreparedAudio],
    container: Container,
    output_type: int,
    notes: list[str],
    *,
    start_at_zero: bool = False,
) -> list[str]:
    """Each output audio stream's encoder (worker.media.codec_args, bound to that stream),
    language, title and disposition."""
    args: list[str] = []
    for number, track in enumerate(tracks):
        encoder = audio_args(
            track.settings,
            track.stream,
            container,
            notes,
            start_at_zero=start_at_zero,
            loudness=track.loudness,
        )
        args += for_audio_stream(encoder, number)
        language = language_of(track.language)
        # QuickTime's own language codes are found by the bibliographic spelling.
        code = (
            language.iso639_2_bibliographic
            if output_type == OutputType.OUTPUT_TYPE_MOV
            else language.iso639_2
        )
        args += [f"-metadata:s:a:{number}", f"language={code}"]
        args += [f"-metadata:s:a:{number}", f"title={track.name}"]
        flags = ["default"] if track.default else []
        if track.role == R.AUDIO_TRACK_ROLE_DESCRIPTION:
            flags += ["visual_impaired", "descriptions"]
        args += [f"-disposition:a:{number}", "+".join(flags) or "0"]
    return args


_STREAM_FLAGS = {"-c:a": "-c:a", "-b:a": "-b:a", "-ac": "-ac:a", "-ar": "-ar:a", "-af": "-filter:a"}


def for_audio_stream(args: list[str], number: int) -> list[str]:
    """Binds audio encoder options to output audio stream `number`: -c:a → -c:a:1,
    -af → -filter:a:1. Without it the last track's options would apply to every track."""
    bound: list[str] = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag not in _STREAM_FLAGS:
            raise ValueError(f"no per-stream form known for {flag!r}")
        bound += [f"{_STREAM_FLAGS[flag]}:{number}", value]
    return bound


def hls_audio_entries(tracks: Sequence[PreparedAudio], group: str) -> list[str]:
    """var_stream_map entries of the audio renditions (output audio streams 0, 1, ...)."""
    entries = []
    for number, track in enumerate(tracks):
        entry = f"a:{number},agroup:{group},name:{track.rendition_folder}"
        entries.append(entry + (",default:yes" if track.default else ""))
    return entries


def ts_hls_entries(tracks: Sequence[PreparedAudio], group: str, variant_count: int) -> list[str]:
    """An MPEG-TS ladder's var_stream_map (streams as ts_audio_streams orders them): variant i
    with video i and its muxed copy of the default track, then one entry per alternate.

    Every alternate says default:no: ffmpeg also writes an EXT-X-STREAM-INF (an audio-only
    variant) for each audio rendition of a group in which none says default."""
    entries = [f"v:{i},a:{i},agroup:{group},name:v{i}" for i in range(variant_count)]
    alternates = [track for track in tracks if not track.default]
    for number, track in enumerate(alternates, start=variant_count):
        entries.append(f"a:{number},agroup:{group},name:{track.rendition_folder},default:no")
    return entries


def dash_audio_sets(tracks: Sequence[PreparedAudio], first_stream: int) -> list[str]:
    """-adaptation_sets entries: one per track (ids 1, 2, ...), after the video's id 0."""
    return [f"id={1 + n},streams={first_stream + n}" for n in range(len(tracks))]


def normalized(tracks: Sequence[PreparedAudio]) -> list[tuple[int, SecondPass]]:
    """(position, second pass) of the tracks the encode normalizes, in output stream order."""
    return [(t.position, t.loudness) for t in tracks if t.loudness is not None]


async def label_hls_audio(master: Path, tracks: Sequence[PreparedAudio], group: str) -> None:
    """Replaces the master's AUDIO renditions with one line per track, in the tracks' order:
    NAME, LANGUAGE (BCP 47), DEFAULT, AUTOSELECT, CHANNELS, CHARACTERISTICS and the URI of the
    track's rendition (ffmpeg lists them in the tracks' order). One rendition fewer than tracks
    means an MPEG-TS ladder's default track muxed into the variants: its line has no URI.
    Every variant names the group (`group` unless ffmpeg named it otherwise)."""
    if not tracks:
        return
    lines = (await asyncio.to_thread(master.read_text, "utf-8")).splitlines()
    uris: list[str] = []
    for line in lines:
        attributes = parse_attributes(line.partition(":")[2])
        if line.startswith("#EXT-X-MEDIA:") and attributes.get("TYPE") == "AUDIO":
            group = attributes.get("GROUP-ID", group)
            uris.append(attributes.get("URI", ""))
    muxed = len(uris) == len(tracks) - 1
    if len(uris) != len(tracks) and not muxed:
        raise MediaError(
            ENCODE_FAILED, f"{master.name} lists {len(uris)} audio renditions for {len(tracks)}"
        )
    media = [
        _media_line(track, group, None if muxed and track.default else uris.pop(0))
        for track in tracks
    ]
    rewritten: list[str] = []
    for line in lines:
        attributes = parse_attributes(line.partition(":")[2])
        if line.startswith("#EXT-X-MEDIA:") and attributes.get("TYPE") == "AUDIO":
            continue
        if line.startswith("#EXT-X-STREAM-INF:"):
            rewritten += media
            media = []
            rewritten.append(line if "AUDIO=" in line else f'{line},AUDIO="{group}"')
        else:
            rewritten.append(line)
    await asyncio.to_thread(replace_text, master, "\n".join(rewritten) + "\n")


def _media_line(track: PreparedAudio, group: str, uri: str | None) -> str:
    attributes = [
        ("TYPE", "AUDIO"),
        ("GROUP-ID", f'"{group}"'),
        ("NAME", f'"{track.name}"'),
        ("LANGUAGE", f'"{track.language}"'),
        ("DEFAULT", "YES" if track.default else "NO"),
        # A player may pick any track by the viewer's language, except a description, which
        # is for viewers who ask for it.
        ("AUTOSELECT", "NO" if track.role == R.AUDIO_TRACK_ROLE_DESCRIPTION else "YES"),
        ("CHANNELS", f'"{track.channels()}"'),
    ]
    if characteristics := HLS_ROLE_CHARACTERISTICS.get(track.role):
        attributes.append(("CHARACTERISTICS", f'"{characteristics}"'))
    if uri is not None:
        attributes.append(("URI", f'"{uri}"'))
    return "#EXT-X-MEDIA:" + ",".join(f"{name}={value}" for name, value in attributes)


def audio_renditions(master_text: str) -> list[dict[str, str]]:
    """The EXT-X-MEDIA TYPE=AUDIO entries of a master playlist (for tests and checks)."""
    entries = []
    for line in master_text.splitlines():
        if line.startswith("#EXT-X-MEDIA:"):
            attributes = parse_attributes(line.partition(":")[2])
            if attributes.get("TYPE") == "AUDIO":
                entries.append(attributes)
    return entries


async def label_dash_audio(manifest: Path, tracks: Sequence[PreparedAudio]) -> None:
    """Gives each track's AdaptationSet (id 1 + position) its BCP 47 lang, a Role and a Label."""
    if not tracks:
        return
    text = await asyncio.to_thread(manifest.read_text, "utf-8")
    for number, track in enumerate(tracks):
        opening = re.compile(rf'(<AdaptationSet id="{1 + number}"[^>/]*)>')
        found = opening.search(text)
        if found is None:
            raise MediaError(ENCODE_FAILED, f"{manifest.name} has no set for audio track {number}")
        head = re.sub(r'\slang="[^"]*"', "", found[1]) + f' lang="{track.language}"'
        role = DASH_ROLES.get(track.role, "alternate")
        inside = (
            f'\n\t\t\t<Role schemeIdUri="urn:mpeg:dash:role:2011" value="{role}"/>'
            f"\n\t\t\t<Label>{_xml_text(track.name)}</Label>"
        )
        text = text[: found.start()] + f"{head}>{inside}" + text[found.end() :]
    await asyncio.to_thread(replace_text, manifest, text)


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
