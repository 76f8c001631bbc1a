"""The custom-command allowlist: the options, encoders, muxers and values a command may use.

Anything not named here is refused; the filters -vf and -af may use are listed in
`common/custom_command_filters.py`, and `common/custom_command.py` checks a command against both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from common.custom_command_filters import audio_filters, video_filters

# Output type (OutputType name without its prefix) -> muxers `-f` may name for it. The first
# is what the worker uses when the command names none. Its types are the catalogue's
# SINGLE_FILE_MEDIA (common/output_types.py; tests/unit/test_output_types.py holds them equal),
# listed here in the order refusals name them.
MUXERS_BY_TYPE: Mapping[str, tuple[str, ...]] = {
    "MP4": ("mp4",),
    "MOV": ("mov",),
    "MKV": ("matroska",),
    "WEBM": ("webm",),
    "MP3": ("mp3",),
    "M4A": ("ipod", "mp4"),
    "OPUS": ("opus", "ogg"),
    "WAV": ("wav",),
}

VIDEO_ENCODERS = frozenset(
    {"libx264", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1", "copy"}
)
AUDIO_ENCODERS = frozenset(
    {
        "aac",
        "libopus",
        "libmp3lame",
        "libvorbis",
        "flac",
        "pcm_s16le",
        "pcm_s24le",
        "copy",
    }
)
PIXEL_FORMATS = frozenset(
    {
        "yuv420p",
        "yuv422p",
        "yuv444p",
        "yuv420p10le",
        "yuv422p10le",
        "yuv444p10le",
        "yuvj420p",
        "nv12",
        "gray",
    }
)
PRESETS = frozenset(
    {
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
        "placebo",
    }
)
TUNES = frozenset(
    {"film", "animation", "grain", "stillimage", "fastdecode", "zerolatency", "psnr", "ssim"}
)
PROFILES = frozenset(
    {
        "baseline",
        "main",
        "high",
        "high10",
        "high422",
        "high444",
        "main10",
        "main12",
        "mainstillpicture",
        "aac_low",
        "aac_he",
        "aac_he_v2",
    }
)
MOVFLAGS = frozenset(
    {
        "faststart",
        "frag_keyframe",
        "empty_moov",
        "default_base_moof",
        "separate_moof",
        "omit_tfhd_offset",
        "negative_cts_offsets",
        "disable_chpl",
    }
)
METADATA_KEYS = frozenset(
    {"title", "comment", "artist", "album", "date", "description", "language", "copyright"}
)

# --- Values --------------------------------------------------------------------------------------

# A value check returns None when the value is fine, else why it is not.
ValueCheck = Callable[[str], str | None]

_NUMBER = re.compile(r"^-?\d{1,9}(\.\d{1,6})?$")
_BITRATE = re.compile(r"^\d{1,6}(\.\d{1,3})?[kKM]?$")
TIME_VALUE = re.compile(r"^(\d{1,6}(\.\d{1,6})?|(\d{1,3}:)?\d{1,2}:\d{1,2}(\.\d{1,6})?)$")
_RATE = re.compile(r"^\d{1,6}(\.\d{1,3})?$|^\d{1,6}/\d{1,6}$")
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_LEVEL = re.compile(r"^\d(\.\d)?$|^\d{2}$")
MAP_VALUE = re.compile(r"^-?0(:[vas](:\d{1,2})?|:\d{1,2})?\??$")
_MOVFLAGS = re.compile(r"^([+-]?[a-z_]+)+$")


def _number_between(low: float, high: float, *, integer: bool = False) -> ValueCheck:
    def check(value: str) -> str | None:
        if not _NUMBER.match(value) or (integer and "." in value):
            return "must be " + ("a whole number" if integer else "a number")
        if not low <= float(value) <= high:
            return f"must be between {low:g} and {high:g}"
        return None

    return check


def _one_of(allowed: frozenset[str] | set[str]) -> ValueCheck:
    def check(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(sorted(allowed))}"

    return check


def _matching(pattern: re.Pattern[str], what: str) -> ValueCheck:
    def check(value: str) -> str | None:
        return None if pattern.match(value) else f"must be {what}"

    return check


def _size(value: str) -> str | None:
    match = _SIZE.match(value)
    if not match:
        return "must be WIDTHxHEIGHT, e.g. 1280x720"
    if not all(16 <= int(side) <= 8192 for side in match.groups()):
        return "sides must be between 16 and 8192"
    return None


def _movflags(value: str) -> str | None:
    if not _MOVFLAGS.match(value):
        return "must be flags like +faststart"
    names = {flag for flag in re.split(r"[+-]", value) if flag}
    unknown = names - MOVFLAGS
    if unknown:
        return f"{', '.join(sorted(unknown))} not allowed; allowed: {', '.join(sorted(MOVFLAGS))}"
    return None


def _metadata(value: str) -> str | None:
    key, equals, _ = value.partition("=")
    if not equals:
        return "must be key=value"
    if key not in METADATA_KEYS:
        return f"key {key!r} not allowed; allowed: {', '.join(sorted(METADATA_KEYS))}"
    return None


def _preset(value: str) -> str | None:
    # Names for x264/x265, numbers for SVT-AV1.
    if value in PRESETS or (value.isdigit() and int(value) <= 13):
        return None
    return f"must be one of {', '.join(sorted(PRESETS))} or 0-13"


# --- Options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionRule:
    # None: a flag without a value.
    value: ValueCheck | None = None
    # Stream specifiers the option takes (`-c:v`, `-b:a:0`); empty: none. Whether the bare
    # name is allowed too is `bare`.
    streams: str = ""
    bare: bool = True
    # May appear before `-i` (then it applies to reading the input).
    input_side: bool = False


def encoder_for(stream: str | None) -> ValueCheck:
    if stream == "v":
        return _one_of(VIDEO_ENCODERS)
    if stream == "a":
        return _one_of(AUDIO_ENCODERS)
    return _one_of(VIDEO_ENCODERS | AUDIO_ENCODERS)


_BITRATE_CHECK = _matching(_BITRATE, "a bitrate like 96k or 2.5M")
_TIME_CHECK = _matching(TIME_VALUE, "seconds (12.5) or [HH:]MM:SS[.fff]")

OPTIONS: Mapping[str, OptionRule] = {
    # Codecs: common/custom_command.py checks the value per stream type (encoder_for).
    "-c": OptionRule(encoder_for(None), streams="va"),
    "-codec": OptionRule(encoder_for(None), streams="va"),
    "-vcodec": OptionRule(encoder_for("v")),
    "-acodec": OptionRule(encoder_for("a")),
    # Rate control.
    "-b": OptionRule(_BITRATE_CHECK, streams="va", bare=False),
    "-maxrate": OptionRule(_BITRATE_CHECK, streams="va"),
    "-minrate": OptionRule(_BITRATE_CHECK, streams="va"),
    "-bufsize": OptionRule(_BITRATE_CHECK, streams="va"),
    "-crf": OptionRule(_number_between(0, 63), streams="v"),
    "-qp": OptionRule(_number_between(0, 63, integer=True), streams="v"),
    "-q": OptionRule(_number_between(0, 100), streams="va", bare=False),
    "-preset": OptionRule(_preset, streams="v"),
    "-tune": OptionRule(_one_of(TUNES), streams="v"),
    "-profile": OptionRule(_one_of(PROFILES), streams="va", bare=False),
    "-level": OptionRule(_matching(_LEVEL, "a level like 4.1 or 41"), streams="v"),
    "-pix_fmt": OptionRule(_one_of(PIXEL_FORMATS), streams="v"),
    "-cpu-used": OptionRule(_number_between(-16, 16, integer=True), streams="v"),
    "-deadline": OptionRule(_one_of({"good", "best", "realtime"}), streams="v"),
    "-row-mt": OptionRule(_one_of({"0", "1"}), streams="v"),
    "-vbr": OptionRule(_one_of({"on", "off", "constrained"}), streams="a"),
    "-compression_level": OptionRule(_number_between(0, 12, integer=True), streams="a"),
    "-strict": OptionRule(_one_of({"normal", "experimental", "unofficial", "-2", "-1", "0"})),
    # GOP.
    "-g": OptionRule(_number_between(1, 1000, integer=True), streams="v"),
    "-keyint_min": OptionRule(_number_between(1, 1000, integer=True), streams="v"),
    "-sc_threshold": OptionRule(_number_between(0, 1_000_000_000, integer=True), streams="v"),
    "-bf": OptionRule(_number_between(0, 16, integer=True), streams="v"),
    # Filters and geometry.
    "-vf": OptionRule(video_filters),
    "-af": OptionRule(audio_filters),
    "-r": OptionRule(_matching(_RATE, "a frame rate like 30 or 30000/1001"), streams="v"),
    "-s": OptionRule(_size, streams="v"),
    "-ac": OptionRule(_number_between(1, 8, integer=True), streams="a"),
    "-ar": OptionRule(_number_between(8000, 192_000, integer=True), streams="a"),
    # Muxing. -f is checked against the output type separately.
    "-f": OptionRule(_one_of({m for muxers in MUXERS_BY_TYPE.values() for m in muxers})),
    "-movflags": OptionRule(_movflags),
    "-metadata": OptionRule(_metadata),
    "-map_metadata": OptionRule(_one_of({"-1", "0"})),
    "-map_chapters": OptionRule(_one_of({"-1", "0"})),
    "-map": OptionRule(_matching(MAP_VALUE, "a stream of the one input: 0, 0:v, 0:a:0, 0:v:0? …")),
    # Timing.
    "-ss": OptionRule(_TIME_CHECK, input_side=True),
    "-t": OptionRule(_TIME_CHECK, input_side=True),
    "-to": OptionRule(_TIME_CHECK, input_side=True),
    "-shortest": OptionRule(),
    # Streams left out.
    "-an": OptionRule(),
    "-vn": OptionRule(),
    "-sn": OptionRule(),
    "-dn": OptionRule(),
    "-threads": OptionRule(_number_between(0, 64, integer=True)),
}
# Spellings of the same option with a stream type built in.
STREAM_ALIASES: Mapping[str, tuple[str, str]] = {
    "-filter:v": ("-vf", "v"),
    "-filter:a": ("-af", "a"),
}
# Options people reach for that are refused, with why (anything unlisted is refused too).
REFUSED_OPTIONS: Mapping[str, str] = {
    "-filter_complex": "filter graphs with several inputs are not allowed; use -vf/-af",
    "-lavfi": "filter graphs with several inputs are not allowed; use -vf/-af",
    "-filter_script": "reads a file",
    "-filter_complex_script": "reads a file",
    "-dump_attachment": "writes files",
    "-attach": "reads a file",
    "-vstats_file": "writes a file",
    "-vstats": "writes a file",
    "-passlogfile": "writes a file",
    "-pass": "writes a log file",
    "-sdp_file": "writes a file",
    "-progress": "the worker reports progress itself",
    "-report": "writes a file",
    "-y": "the worker decides about overwriting",
    "-n": "the worker decides about overwriting",
    "-protocol_whitelist": "the worker sets which protocols the input may use",
    "-protocol_blacklist": "the worker sets which protocols the input may use",
    "-fpre": "reads a preset file",
    "-vpre": "reads a preset file",
    "-apre": "reads a preset file",
    "-spre": "reads a preset file",
    "-x264-params": "takes encoder options outside the allowlist (stats files)",
    "-x265-params": "takes encoder options outside the allowlist (stats files)",
    "-i": "exactly one input: -i {{input}}",
}
