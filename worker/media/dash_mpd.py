"""The DASH manifest, corrected after FFmpeg wrote it: codec strings and bandwidths measured
from the produced segments, where the presentation ends, and the ContentProtection of an
encrypted output."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from common.chunk_mpd import presentation_end
from worker.media.atomic_write import replace_text
from worker.media.codec_strings import codec_string, probe_first_stream
from worker.media.errors import ENCODE_FAILED, MediaError

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
    await asyncio.to_thread(replace_text, manifest, text)
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
    replace_text(manifest, text)


def end_after_the_media(manifest: Path) -> None:
    """Sets a static MPD's mediaPresentationDuration to the first whole millisecond after the
    last sample of its audio and video, as a chunked output's MPD states it
    (common.chunk_mpd.presentation_end: dash.js 5.2 stops 0.5 s short of a Period end that
    the playhead reaches). The dash muxer writes the video's length (PT26.0S), on the video's
    last sample and before the audio's (26.005333 s).

    Left as it is when a video or audio Representation has no SegmentTimeline to read the
    end from, or when the MPD is not static."""
    text = manifest.read_text("utf-8")
    root = ElementTree.fromstring(text)
    if root.get("type", "static") != "static":
        return
    ends: list[Fraction] = []
    for _, template in _media_representations(root):
        end = _timeline_end(template) if template is not None else None
        if end is None:
            return
        ends.append(end)
    if not ends:
        return
    seconds = presentation_end(max(ends))
    text, count = re.subn(
        r'(<MPD\b[^>]*?mediaPresentationDuration=")[^"]*"',
        rf'\g<1>PT{float(seconds):.3f}S"',
        text,
        count=1,
    )
    if count:
        replace_text(manifest, text)


def _timeline_end(template: ElementTree.Element) -> Fraction | None:
    """Where the template's SegmentTimeline ends, in seconds of presentation time."""
    timeline = template.find("mpd:SegmentTimeline", _MPD_NAMESPACE)
    if timeline is None:
        return None
    at = 0
    for entry in timeline.iterfind("mpd:S", _MPD_NAMESPACE):
        at = int(entry.get("t", at)) + int(entry.get("d", "0")) * (int(entry.get("r", "0")) + 1)
    offset = int(template.get("presentationTimeOffset", "0"))
    return Fraction(at - offset, int(template.get("timescale", "1")))


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


def first_video_segment(manifest: Path) -> tuple[Path, Path] | None:
    """(init segment, first media segment) of the MPD's first video representation."""
    root = ElementTree.fromstring(manifest.read_text("utf-8"))
    for adaptation_set in root.iterfind(".//mpd:AdaptationSet", _MPD_NAMESPACE):
        if adaptation_set.get("contentType") != "video":
            continue
        shared_template = adaptation_set.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
        for representation in adaptation_set.iterfind("mpd:Representation", _MPD_NAMESPACE):
            template = representation.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
            template = template if template is not None else shared_template
            if template is not None:
                return _first_dash_segment(manifest.parent, template, representation.get("id", ""))
    return None


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


def representation_files(manifest: Path) -> list[tuple[Path, list[Path]]]:
    """(init segment, media segments in order) of every audio and video representation."""
    root = ElementTree.fromstring(manifest.read_text("utf-8"))
    found: list[tuple[Path, list[Path]]] = []
    for representation, template in _media_representations(root):
        if template is None:
            continue
        representation_id = representation.get("id", "")
        init_segment, _ = _first_dash_segment(manifest.parent, template, representation_id)
        found.append(
            (init_segment, _timeline_segments(manifest.parent, template, representation_id))
        )
    return found


def _media_representations(
    root: ElementTree.Element,
) -> Iterator[tuple[ElementTree.Element, ElementTree.Element | None]]:
    """Every audio and video Representation with the SegmentTemplate that applies to it (its
    own, else its AdaptationSet's; None when neither has one). Text sets are left out."""
    for adaptation_set in root.iterfind(".//mpd:AdaptationSet", _MPD_NAMESPACE):
        if adaptation_set.get("contentType") not in ("video", "audio"):
            continue
        shared_template = adaptation_set.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
        for representation in adaptation_set.iterfind("mpd:Representation", _MPD_NAMESPACE):
            template = representation.find("mpd:SegmentTemplate", _MPD_NAMESPACE)
            yield representation, template if template is not None else shared_template


def _timeline_segments(
    folder: Path, template: ElementTree.Element, representation_id: str
) -> list[Path]:
    timeline = template.find("mpd:SegmentTimeline", _MPD_NAMESPACE)
    count = sum(
        int(entry.get("r", "0")) + 1
        for entry in (timeline.iterfind("mpd:S", _MPD_NAMESPACE) if timeline is not None else [])
    )
    number = int(template.get("startNumber", "1"))
    media = template.get("media", "")
    return [
        folder / _expand_template(media, representation_id, number + offset)
        for offset in range(count)
    ]


# The DASH-IF signalling of common encryption: the scheme with the default key id, and the
# W3C Clear Key system (which dash.js and browsers' EME pick for a key given as clear bytes).
_CENC_NAMESPACE = "urn:mpeg:cenc:2013"
_DASHIF_NAMESPACE = "https://dashif.org/CPS"
CLEARKEY_SYSTEM_ID = "e2719d58-a985-b3c9-781a-b030af78d30e"


def add_content_protection(manifest: Path, key_id: bytes, license_url: str = "") -> None:
    """Puts ContentProtection elements in every audio and video AdaptationSet: mp4protection
    'cenc' with cenc:default_KID, and Clear Key (with its license URL when one is known)."""
    text = manifest.read_text("utf-8")
    kid = str(uuid.UUID(bytes=key_id))
    laurl = f"<dashif:Laurl>{escape(license_url)}</dashif:Laurl>" if license_url else ""
    elements = (
        '<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cenc" '
        f'cenc:default_KID="{kid}"/>'
        f'<ContentProtection schemeIdUri="urn:uuid:{CLEARKEY_SYSTEM_ID}" value="ClearKey1.0">'
        f"{laurl}</ContentProtection>"
    )
    text, sets = re.subn(
        r'(<AdaptationSet\b[^>]*\bcontentType="(?:video|audio)"[^>]*>)',
        lambda match: match.group(1) + elements,
        text,
    )
    if not sets:
        raise MediaError(ENCODE_FAILED, f"{manifest.name} has no audio or video to protect")
    text = re.sub(
        r"<MPD\b",
        f'<MPD xmlns:cenc="{_CENC_NAMESPACE}" xmlns:dashif="{_DASHIF_NAMESPACE}"',
        text,
        count=1,
    )
    replace_text(manifest, text)
