"""The allowlist for custom FFmpeg commands (OutputSpec.custom.args), used twice.

The server checks a command at Create (a refusal is INVALID_ARGUMENT naming the argument);
the worker checks it again right before running it (a refusal fails the output with
UNSUPPORTED_COMMAND), so a job stored before a rule changed, or a task nobody validated,
still runs nothing that is not allowed.

Everything not listed here is refused: an option, a filter, a filter parameter, a muxer or
an encoder has to be named below to be accepted, and every value has to match the pattern of
its option. A command has exactly one input, `-i {{input}}` (the worker puts the job's input
there, with its own `-protocol_whitelist`), and exactly one output, `{{output}}` as the last
argument (the worker puts a file of the task's scratch folder there). No value may name a
path, a URL or a protocol, so nothing FFmpeg could open is left for the command to choose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

INPUT = "{{input}}"
OUTPUT = "{{output}}"
MAX_ARGS = 200
MAX_ARG_LENGTH = 1024

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
_TIME = re.compile(r"^(\d{1,6}(\.\d{1,6})?|(\d{1,3}:)?\d{1,2}:\d{1,2}(\.\d{1,6})?)$")
_RATE = re.compile(r"^\d{1,6}(\.\d{1,3})?$|^\d{1,6}/\d{1,6}$")
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_LEVEL = re.compile(r"^\d(\.\d)?$|^\d{2}$")
_MAP = re.compile(r"^-?0(:[vas](:\d{1,2})?|:\d{1,2})?\??$")
_MOVFLAGS = re.compile(r"^([+-]?[a-z_]+)+$")
# Filter parameter values: numbers, names and arithmetic expressions. No quotes, brackets or
# backslashes (FFmpeg's escaping, which would hide separators from this parser), no `%`
# (text expansion), no `:` or `,` (those are separators, already split on).
_FILTER_VALUE = re.compile(r"^[A-Za-z0-9_.+\-*/()|]{1,256}$")
# A value that names a protocol: `file:`, `concat:`, `http:`, `subfile,,…`.
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


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


# --- Filters -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterRule:
    # Parameters that may be given without a name, in FFmpeg's order for this filter.
    positional: tuple[str, ...] = ()
    # Every parameter that may be named (aliases included).
    named: frozenset[str] = frozenset()


def _filter(positional: str = "", named: str = "") -> FilterRule:
    ordered = tuple(positional.split())
    return FilterRule(ordered, frozenset(ordered) | frozenset(named.split()))


VIDEO_FILTERS: Mapping[str, FilterRule] = {
    "scale": _filter(
        "w h flags interl",
        "width height force_original_aspect_ratio force_divisible_by in_range out_range",
    ),
    "fps": _filter("fps start_time round eof_action"),
    "crop": _filter("out_w out_h x y keep_aspect exact", "w h"),
    "pad": _filter("width height x y color", "w h aspect"),
    "format": _filter("pix_fmts"),
    "setsar": _filter("sar max", "r ratio"),
    "setdar": _filter("dar max", "r ratio"),
    "transpose": _filter("dir passthrough"),
    "hflip": _filter(),
    "vflip": _filter(),
    "yadif": _filter("mode parity deint"),
    "bwdif": _filter("mode parity deint"),
    "unsharp": _filter(
        "luma_msize_x luma_msize_y luma_amount chroma_msize_x chroma_msize_y chroma_amount",
        "lx ly la cx cy ca",
    ),
    "eq": _filter("contrast brightness saturation gamma gamma_r gamma_g gamma_b gamma_weight eval"),
    "hqdn3d": _filter("luma_spatial chroma_spatial luma_tmp chroma_tmp"),
    "fade": _filter(
        "type start_frame nb_frames",
        "t s n alpha start_time st duration d color c",
    ),
}
AUDIO_FILTERS: Mapping[str, FilterRule] = {
    "afade": _filter(
        "type start_sample nb_samples",
        "t ss ns start_time st duration d curve c",
    ),
    "volume": _filter("volume precision", "eval"),
    "aresample": _filter("sample_rate", "async"),
    "loudnorm": _filter(
        "",
        "i I lra LRA tp TP offset linear dual_mono measured_i measured_lra measured_tp "
        "measured_thresh",
    ),
    "atempo": _filter("tempo"),
    "aformat": _filter("sample_fmts sample_rates channel_layouts", "f r cl"),
}
# Named because people reach for them; each reads files, runs commands or opens sources.
_REFUSED_FILTERS: Mapping[str, str] = {
    "movie": "reads another file",
    "amovie": "reads another file",
    "subtitles": "reads a subtitle file",
    "ass": "reads a subtitle file",
    "drawtext": "can read text and font files",
    "sendcmd": "reads a command file",
    "asendcmd": "reads a command file",
    "zmq": "takes commands from the network",
    "azmq": "takes commands from the network",
    "lut3d": "reads a file",
    "haldclut": "takes a second input",
    "overlay": "takes a second input",
}


def _filter_value_problem(value: str) -> str | None:
    if not _FILTER_VALUE.match(value):
        return "values may be numbers, names and arithmetic (no quotes, escapes or %)"
    if value.startswith(("/", ".")) or "//" in value or ".." in value:
        return "values must not look like paths"
    return None


def filtergraph_problem(graph: str, filters: Mapping[str, FilterRule], kind: str) -> str | None:
    """Why a -vf/-af graph is refused, or None. Chains split on `,` and `;`, each filter is
    `name` or `name=args`, args `value:value` (positional) or `key=value:key=value`."""
    if not graph:
        return "an empty filter graph"
    for step in re.split(r"[,;]", graph):
        name, equals, arguments = step.partition("=")
        if name not in filters:
            reason = _REFUSED_FILTERS.get(name)
            if reason:
                return f"filter {name!r} {reason}"
            allowed = ", ".join(sorted(filters))
            return f"filter {name[:40]!r} is not an allowed {kind} filter ({allowed})"
        rule = filters[name]
        if equals and not arguments:
            return f"filter {name!r} has an empty argument list"
        if not equals:
            continue
        named_seen = False
        for position, argument in enumerate(arguments.split(":")):
            key, has_key, value = argument.partition("=")
            if has_key:
                named_seen = True
                if key not in rule.named:
                    allowed = ", ".join(sorted(rule.named)) or "none"
                    return f"{name}: parameter {key[:40]!r} is not allowed ({allowed})"
            else:
                value = key
                if named_seen or position >= len(rule.positional):
                    return f"{name}: unexpected value {value[:40]!r}"
            if problem := _filter_value_problem(value):
                return f"{name}: {value[:40]!r}: {problem}"
    return None


def _video_filters(value: str) -> str | None:
    return filtergraph_problem(value, VIDEO_FILTERS, "video")


def _audio_filters(value: str) -> str | None:
    return filtergraph_problem(value, AUDIO_FILTERS, "audio")


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


def _encoder_for(stream: str | None) -> ValueCheck:
    if stream == "v":
        return _one_of(VIDEO_ENCODERS)
    if stream == "a":
        return _one_of(AUDIO_ENCODERS)
    return _one_of(VIDEO_ENCODERS | AUDIO_ENCODERS)


_BITRATE_CHECK = _matching(_BITRATE, "a bitrate like 96k or 2.5M")
_TIME_CHECK = _matching(_TIME, "seconds (12.5) or [HH:]MM:SS[.fff]")

OPTIONS: Mapping[str, OptionRule] = {
    # Codecs: the value is checked per stream type in _value_check.
    "-c": OptionRule(_encoder_for(None), streams="va"),
    "-codec": OptionRule(_encoder_for(None), streams="va"),
    "-vcodec": OptionRule(_encoder_for("v")),
    "-acodec": OptionRule(_encoder_for("a")),
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
    "-vf": OptionRule(_video_filters),
    "-af": OptionRule(_audio_filters),
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
    "-map": OptionRule(_matching(_MAP, "a stream of the one input: 0, 0:v, 0:a:0, 0:v:0? …")),
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
_STREAM_ALIASES: Mapping[str, tuple[str, str]] = {
    "-filter:v": ("-vf", "v"),
    "-filter:a": ("-af", "a"),
}
# Options people reach for that are refused, with why (anything unlisted is refused too).
_REFUSED_OPTIONS: Mapping[str, str] = {
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
_OPTION_NAME = re.compile(r"^(-[A-Za-z_][A-Za-z0-9_\-]*)(?::([a-z])(?::(\d{1,2}))?)?$")


def _option_rule(name: str) -> tuple[OptionRule | None, str | None, str]:
    """(rule, stream type or None, reason when refused)."""
    if name.startswith("-/"):
        return None, None, "`-/option` reads the option's value from a file"
    if name in _STREAM_ALIASES:
        base, stream = _STREAM_ALIASES[name]
        return OPTIONS[base], stream, ""
    match = _OPTION_NAME.match(name)
    base = match.group(1) if match else name
    if base in _REFUSED_OPTIONS:
        return None, None, _REFUSED_OPTIONS[base]
    rule = OPTIONS.get(base) if match else None
    if rule is None or match is None:
        return None, None, "is not an allowed option"
    stream = match.group(2)
    if stream is None:
        if not rule.bare:
            return None, None, f"needs a stream type ({base}:v or {base}:a)"
        return rule, None, ""
    if stream not in rule.streams:
        return None, None, f"does not take the stream type {stream!r}"
    return rule, stream, ""


def _value_check(rule: OptionRule, name: str, stream: str | None) -> ValueCheck | None:
    # Which encoders a codec option takes depends on its stream type (-c:v, -c:a, -c).
    if name.split(":", maxsplit=1)[0] in ("-c", "-codec"):
        return _encoder_for(stream)
    return rule.value


# --- The check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    # Index of the argument at fault; None when the list as a whole is wrong.
    index: int | None
    message: str


def _looks_like_location(value: str) -> str | None:
    if _PROTOCOL.match(value) and not _MAP.match(value) and not _TIME.match(value):
        return "names a protocol or URL"
    if "://" in value or value.startswith(("/", "\\", "~", "./", "../")) or "../" in value:
        return "names a path or URL"
    if "\\" in value:
        return "contains a backslash"
    return None


def _argument_problem(argument: str) -> str | None:
    if len(argument) > MAX_ARG_LENGTH:
        return f"is {len(argument)} characters; at most {MAX_ARG_LENGTH}"
    if any(ord(char) < 32 or ord(char) == 127 for char in argument):
        return "contains a control character (newline, NUL, …)"
    return None


def check_custom_args(args: Sequence[str], output_type: str) -> list[Violation]:
    """Every reason `args` is refused for an output of `output_type` ("MP4", "M4A", …);
    empty when the command is allowed."""
    if not args:
        return [Violation(None, f"is required: ['-i', '{INPUT}', …, '{OUTPUT}']")]
    if len(args) > MAX_ARGS:
        return [Violation(None, f"{len(args)} arguments; at most {MAX_ARGS}")]
    basic = [
        Violation(index, problem)
        for index, argument in enumerate(args)
        if (problem := _argument_problem(argument))
    ]
    if basic:
        return basic
    violations: list[Violation] = []

    def refuse(index: int | None, message: str) -> None:
        violations.append(Violation(index, message))

    muxers = MUXERS_BY_TYPE.get(output_type)
    if muxers is None:
        allowed = ", ".join(MUXERS_BY_TYPE)
        refuse(None, f"custom commands make {allowed} outputs, not {output_type}")
        muxers = ()
    last = len(args) - 1
    if args[last] != OUTPUT:
        refuse(last, f"{args[last][:80]!r}: the last argument must be {OUTPUT}")
    seen_input = False
    position = 0
    while position < last:
        argument = args[position]
        if argument == "-i":
            value = args[position + 1] if position + 1 < last else None
            if seen_input:
                refuse(
                    position, f"-i {str(value)[:80]!r}: a second input; the one input is {INPUT}"
                )
            elif value != INPUT:
                refuse(position + 1, f"-i {str(value)[:80]!r}: the input must be {INPUT}")
            seen_input = True
            position += 2
            continue
        if argument in (INPUT, OUTPUT) or "{{" in argument:
            refuse(position, f"{argument[:80]!r}: {INPUT} goes after -i, {OUTPUT} last, once")
            position += 1
            continue
        if not argument.startswith("-") or argument == "-":
            reason = _looks_like_location(argument)
            refuse(
                position,
                f"{argument[:80]!r}: a second output or a stray value"
                + (f" ({reason})" if reason else "")
                + f"; the one output is {OUTPUT}, last",
            )
            position += 1
            continue
        rule, stream, reason = _option_rule(argument)
        if rule is None:
            refuse(position, f"{argument[:80]}: {reason}")
            # Its value, if it has one, is not looked at: the option is refused anyway.
            following = args[position + 1] if position + 1 < last else "-"
            position += 1 if following.startswith("-") or "{{" in following else 2
            continue
        if not seen_input and not rule.input_side:
            refuse(position, f"{argument}: before -i only -ss, -t and -to are allowed")
        check = _value_check(rule, argument, stream)
        if check is None:
            position += 1
            continue
        if position + 1 >= last:
            refuse(position, f"{argument}: needs a value")
            break
        value = args[position + 1]
        problem = _looks_like_location(value) or check(value)
        if "{{" in value:
            problem = f"placeholders are arguments of their own: -i {INPUT}, {OUTPUT} last"
        if not problem and argument == "-f" and value not in muxers:
            problem = f"a {output_type} output is written with -f {' or -f '.join(muxers)}"
        if problem:
            refuse(position + 1, f"{argument} {value[:80]!r}: {problem}")
        position += 2
    if not seen_input:
        refuse(None, f"-i {INPUT} is required")
    # In argument order, so the first one named is the first one met.
    return sorted(violations, key=lambda v: -1 if v.index is None else v.index)


def describe(violations: Sequence[Violation]) -> str:
    """One line for a job's error: the first problem, and how many more there are."""
    first = violations[0]
    where = f"argument {first.index}: " if first.index is not None else ""
    more = f" (and {len(violations) - 1} more problems)" if len(violations) > 1 else ""
    return f"custom command refused: {where}{first.message}{more}"


# --- Duration ------------------------------------------------------------------------------------


def _seconds(value: str) -> float:
    total = 0.0
    for part in value.split(":"):
        total = total * 60 + float(part)
    return total


def covered_seconds(args: Sequence[str], source_seconds: float) -> float:
    """How many seconds of the input an allowed command covers (-ss, -t, -to): what the
    worker reports as encoded and the server expects and prices. Filters that change speed
    (atempo) do not change it: the cost is per second of source."""
    start = 0.0
    length: float | None = None
    until: float | None = None
    for position, argument in enumerate(args[:-1]):
        value = args[position + 1]
        if not _TIME.match(value):
            continue
        if argument == "-ss":
            start += _seconds(value)
        elif argument == "-t":
            length = _seconds(value) if length is None else min(length, _seconds(value))
        elif argument == "-to":
            until = _seconds(value) if until is None else min(until, _seconds(value))
    remaining = max(source_seconds - start, 0.0)
    if length is not None:
        remaining = min(remaining, length)
    if until is not None:
        remaining = min(remaining, max(until - start, 0.0))
    return remaining
