"""What an adaptive output's manifests name, read back from its folder: every file the master
playlist and its media playlists (or the MPD) name, each of which must parse."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import m3u8

MPD_NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}
# {rendition folder: (init segment, segments in order)}
Renditions = dict[str, tuple[Path, list[Path]]]


def referenced_files(folder: Path) -> set[str]:
    """The master, every playlist it names and every segment those name; all must parse."""
    master = m3u8.load(str(folder / "master.m3u8"))
    assert master.is_variant
    names = {"master.m3u8"}
    playlists = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    for uri in playlists:
        names.add(uri)
        media = m3u8.load(str(folder / uri))
        assert media.is_endlist and media.playlist_type == "vod"
        rendition = uri.rsplit("/", 1)[0]
        names.update(f"{rendition}/{segment.uri}" for segment in media.segments)
    return names


def hls_renditions(folder: Path, seconds: Fraction) -> tuple[set[str], Renditions]:
    """Every file the master and its media playlists name (all must parse, each playlist
    naming its init segment and lasting `seconds` within a frame), and each rendition's
    (init, segments)."""
    names = referenced_files(folder)
    found: Renditions = {}
    master = m3u8.load(str(folder / "master.m3u8"))
    for uri in [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]:
        media = m3u8.load(str(folder / uri))
        rendition = uri.rsplit("/", 1)[0]
        assert len(media.segment_map) == 1, uri
        names.add(f"{rendition}/{media.segment_map[0].uri}")
        listed = sum(Fraction(segment.duration) for segment in media.segments)
        assert abs(listed - seconds) <= Fraction(1, 30), (uri, listed)
        found[rendition] = (
            folder / rendition / media.segment_map[0].uri,
            [folder / rendition / segment.uri for segment in media.segments],
        )
    return names, found


def mpd_renditions(folder: Path, seconds: Fraction) -> tuple[set[str], Renditions]:
    """The MPD, and what each Representation names: its SegmentTimeline must run without a
    gap from 0 and sum to `seconds` within a frame."""
    root = ElementTree.parse(folder / "manifest.mpd").getroot()
    assert root.get("type") == "static"
    names, found = {"manifest.mpd"}, {}
    for representation in root.iterfind(".//mpd:Representation", MPD_NS):
        name = representation.get("id", "")
        template = representation.find("mpd:SegmentTemplate", MPD_NS)
        assert template is not None, name
        scale, number = int(template.get("timescale", "1")), int(template.get("startNumber", "1"))
        elapsed = 0
        for entry in template.iterfind("mpd:SegmentTimeline/mpd:S", MPD_NS):
            assert int(entry.get("t", elapsed)) == elapsed, (name, "gap in the timeline")
            elapsed += int(entry.get("d", "0")) * (int(entry.get("r", "0")) + 1)
        assert abs(Fraction(elapsed, scale) - seconds) <= Fraction(1, 30), (name, elapsed)
        init = template.get("initialization", "")
        count = sum(
            int(s.get("r", "0")) + 1 for s in template.iterfind("mpd:SegmentTimeline/mpd:S", MPD_NS)
        )
        media = template.get("media", "")
        segments = [
            media.replace("$Number%05d$", f"{n:05d}") for n in range(number, number + count)
        ]
        names.update([init, *segments])
        found[name] = (folder / init, [folder / segment for segment in segments])
    return names, found
