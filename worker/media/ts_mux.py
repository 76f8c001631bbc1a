"""Chunked MPEG-TS HLS: the whole audio muxed into every variant's segments at the merge, by
stream copy, so the final ladder is laid out as a single pass's (audio in every variant, no
separate audio rendition).

The chunks encode video only and the AUDIO piece the whole audio, each with the same
timestamp lead; their TS segments carry absolute timestamps. One FFmpeg reads each variant's
segments and the audio's segments back to back (the concatf protocol: the bytes as stored, so
every timestamp is the one the encoders wrote; the concat demuxer would rebase each file) and
writes, with -copyts and the mpegts muxer's own copyts (no second muxer delay), every variant
cut by the segment muxer at the video segments' own boundaries: muxed segment N holds exactly
the video of segment N and the audio packets that start in its span. The boundaries are not
uniform (the short first chunk), so they are given one by one (-segment_times, on the media's
own clock with -copyts: the first picture's timestamp plus the segments' summed durations).
Each video segment starts with its only keyframe, which is where the cut lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from common.hls_playlists import Rendition, muxed_segment_path
from worker.media.plan import COMMON_FLAGS, CommandPlan

SEGMENT_LIST = "segments.txt"


@dataclass(frozen=True)
class VariantToMux:
    # The variant's video rendition as its chunks stored it.
    rendition: Rendition
    # Its segments on local disk, in order.
    segment_files: Sequence[Path]
    # Its first picture's timestamp in 90 kHz ticks (the chunks' lead plus the muxer delay).
    first_ticks: int


def concat_listing(files: Sequence[Path]) -> str:
    """A concatf list: one absolute path a line (the protocol reads them back to back)."""
    for file in files:
        if "\n" in str(file) or not file.is_absolute():
            raise ValueError(f"not a plain absolute path: {file!r}")
    return "".join(f"{file}\n" for file in files)


def _absolute(files: Sequence[Path]) -> list[Path]:
    # concatf reads a relative entry against the list's own folder, and a worker's scratch
    # folder is relative under `kiln up` (var/scratch): the entries name where the files are.
    return [file.absolute() for file in files]


def cut_times(variant: VariantToMux) -> list[str]:
    """Where each segment after the first starts, in seconds on the media's own clock."""
    start = Fraction(variant.first_ticks, 90000)
    times = []
    for segment in variant.rendition.segments[:-1]:
        start += Fraction(segment.duration_seconds)
        times.append(f"{float(start):.6f}")
    return times


def build_mux_command(
    *,
    variants: Sequence[VariantToMux],
    audio_files: Sequence[Path],
    work_dir: Path,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """One FFmpeg run writing every variant's muxed segments under out_dir (at the paths
    muxed_segment_path names), from lists of the stored segments written into work_dir."""
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [ffmpeg, *COMMON_FLAGS, "-copyts"]
    for position, variant in enumerate(variants):
        listing = work_dir / f"v{position}-{SEGMENT_LIST}"
        listing.write_text(concat_listing(_absolute(variant.segment_files)), "utf-8")
        argv += ["-i", f"concatf:{listing}"]
    audio_listing = work_dir / f"audio-{SEGMENT_LIST}"
    audio_listing.write_text(concat_listing(_absolute(audio_files)), "utf-8")
    argv += ["-i", f"concatf:{audio_listing}"]
    outputs = []
    duration = 0.0
    for position, variant in enumerate(variants):
        segments = variant.rendition.segments
        first = muxed_segment_path(segments[0].path)
        folder, _, name = first.rpartition("/")
        number = int(name.removeprefix("muxed_").removesuffix(".ts"))
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        # Half a frame of slack for the durations' rounding to microseconds: only a keyframe
        # can start a segment, and the next one is a whole segment later.
        slack = 0.5 / variant.rendition.frame_rate if variant.rendition.frame_rate > 0 else 0.01
        times = cut_times(variant)
        argv += ["-map", f"{position}:v:0", "-map", f"{len(variants)}:a:0", "-c", "copy"]
        argv += ["-f", "segment", "-segment_format", "mpegts"]
        # The mpegts muxer's copyts: timestamps as they come, without its 1.4 s delay again.
        argv += ["-segment_format_options", "mpegts_copyts=1"]
        if times:
            argv += ["-segment_times", ",".join(times), "-segment_time_delta", f"{slack:.6f}"]
        argv += ["-segment_start_number", str(number)]
        pattern = out_dir / folder / "muxed_%05d.ts"
        argv.append(str(pattern))
        outputs += [out_dir / muxed_segment_path(s.path) for s in segments]
        duration = max(duration, sum(s.duration_seconds for s in segments))
    return CommandPlan(argv=argv, outputs=outputs, expected_duration=duration)
