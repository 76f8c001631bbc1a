"""What a piece of a chunked fMP4 output (fMP4 HLS, DASH, CMAF) must report about each
rendition, checked before the server keeps it: the merge writes the MPD's SegmentTimeline from
these decode times and names the init segment, so a worker's numbers are held to what its
segments can be.

Every chunk reports its init segment's digest (the merge checks they agree); only the first
chunk and the audio store it (v0/init_0.mp4, ..., audio/init.mp4).
"""

from __future__ import annotations

import re

from kiln.worker.v1 import worker_service_pb2

from common.chunk_mpd import MPD_NAME
from common.output_types import MAX_VARIANTS

__all__ = ["MPD_NAME", "init_path_allowed", "rendition_problems"]

# mdhd timescales FFmpeg writes are the stream's time base (15360 for 30 fps video, the
# sample rate for audio); a bound keeps a worker's figure from being absurd.
MAX_TIMESCALE = 10_000_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The hls muxer names a rendition's init v0/init_0.mp4, v1/init_1.mp4, ... with several
# variants, and v0/init.mp4 when there is one.
_VIDEO_INIT = re.compile(r"v([0-7])/init(?:_([0-7]))?\.mp4")
_AUDIO_INIT = "audio/init.mp4"
# A segment's length from its boxes against the seconds it reports (EXTINF, the MPD's d).
_SECONDS_SLACK = 1e-3


def init_path_allowed(path: str, *, audio: bool, variants: int) -> bool:
    if audio:
        return path == _AUDIO_INIT
    match = _VIDEO_INIT.fullmatch(path)
    if match is None or int(match.group(1)) >= variants:
        return False
    return match.group(2) in (None, match.group(1))


def rendition_problems(
    rendition: worker_service_pb2.RenditionPart,
    *,
    fmp4: bool,
    stores_init: bool,
    sizes: dict[str, int],
) -> list[str]:
    """The init segment and decode times of one rendition: present and consistent for fMP4,
    absent otherwise."""
    name = rendition.name[:20]
    times, lengths = list(rendition.decode_times), list(rendition.decode_durations)
    if not fmp4:
        if rendition.init_path or rendition.init_sha256 or times or lengths or rendition.timescale:
            return [f"rendition {name!r} reports fMP4 facts for MPEG-TS segments"]
        return []
    audio = name == "audio"
    if not (
        rendition.init_path.startswith(f"{name}/")
        and init_path_allowed(rendition.init_path, audio=audio, variants=MAX_VARIANTS)
    ):
        return [f"rendition {name!r} names init segment {rendition.init_path[:100]!r}"]
    if stores_init and rendition.init_path not in sizes:
        return [f"init segment {rendition.init_path!r} is not a reported file"]
    if not _SHA256.fullmatch(rendition.init_sha256):
        return [f"rendition {name!r} has no init segment digest"]
    if not 0 < rendition.timescale <= MAX_TIMESCALE:
        return [f"rendition {name!r} has an impossible timescale"]
    if not len(times) == len(lengths) == len(rendition.segments):
        return [f"rendition {name!r} must give a decode time and length for every segment"]
    for position, segment in enumerate(rendition.segments):
        if lengths[position] <= 0 or times[position] < 0:
            return [f"segment {segment.path[:100]!r} has an impossible decode time or length"]
        if position and times[position] != times[position - 1] + lengths[position - 1]:
            return [f"segment {segment.path[:100]!r} does not start where the one before ends"]
        seconds = lengths[position] / rendition.timescale
        if abs(seconds - segment.duration_seconds) > _SECONDS_SLACK:
            return [f"segment {segment.path[:100]!r} lasts {seconds:g} s by its decode times"]
    return []
