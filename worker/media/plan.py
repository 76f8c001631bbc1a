"""What a command builder hands the runner: the argv, the files it writes and what follows.

Owns CommandPlan (argv, outputs, notes, expected duration, working directory, CPU limit), the
finalize steps that complete an output after ffmpeg exits (LadderPackaging, SpriteSheet) and
COMMON_FLAGS, the options every managed ffmpeg run starts with. Every builder returns a plan;
worker.media.packaging and the worker loop read one. Nothing here knows about codecs or specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.content_keys import OutputEncryption

COMMON_FLAGS: tuple[str, ...] = (
    "-hide_banner",
    "-nostdin",
    "-y",
    "-progress",
    "pipe:1",
    "-nostats",
    "-loglevel",
    "error",
)


@dataclass(frozen=True)
class LadderPackaging:
    """Where a ladder's manifests are, for worker.media.packaging.finalize_output.

    ffmpeg writes the HLS master playlist before any segment exists, so its BANDWIDTH and CODECS
    are estimates (and CODECS is wrong or missing for HEVC); finalize rewrites them from the
    produced segments.
    """

    # master.m3u8 of an HLS or CMAF output.
    hls_master: Path | None = None
    # manifest.mpd of a DASH or CMAF output.
    dash_manifest: Path | None = None
    # The keys to encrypt the finished ladder with (worker.media.encryption.encrypt_ladder);
    # None for a clear output.
    encryption: OutputEncryption | None = None


@dataclass(frozen=True)
class SpriteSheet:
    """A sprite's geometry, from which finalize writes the WebVTT map next to the image."""

    image: Path
    vtt: Path
    tile_width: int
    tile_height: int
    columns: int
    tile_count: int
    interval_seconds: float
    # Length of the covered clip: the last cue ends here rather than a whole interval later.
    duration_seconds: float


# What has to happen after ffmpeg exits for the output to be complete.
FinalizeStep = LadderPackaging | SpriteSheet


@dataclass
class CommandPlan:
    argv: list[str]
    # Every file the command writes, so a failed or canceled run can clean up after itself.
    # Ladders write segments whose number is only known afterwards: they list their manifests,
    # and the segments are under the same out_dir.
    outputs: list[Path]
    # Adjustments made to the spec, shown to the user as Output.notes.
    notes: list[str] = field(default_factory=list)
    # Seconds of media the command produces; the denominator of progress.
    expected_duration: float = 0.0
    # Work for worker.media.packaging.finalize_output once ffmpeg succeeded; None when the files
    # ffmpeg wrote are already the output.
    finalize: FinalizeStep | None = None
    # Working directory of the run (custom commands run in their scratch output folder).
    cwd: Path | None = None
    # Whether the run gets the worker's CPU-time limit (custom commands do).
    cpu_limited: bool = False
    # Where the run writes an info-level FFREPORT log (outside the output folder), for filters
    # whose figures are read back from it (loudnorm); None: no log.
    report_log: Path | None = None
    # The output's text tracks (worker.media.text_tracks.PreparedTrack), which finalize writes
    # beside a ladder's playlists and a progressive file. Typed loosely: this module knows
    # nothing of what they hold.
    text_tracks: list[Any] = field(default_factory=list)
    # The output's audio tracks (worker.media.audio_tracks.PreparedAudio), which finalize names
    # in a ladder's manifests. Typed loosely for the same reason.
    audio_tracks: list[Any] = field(default_factory=list)
