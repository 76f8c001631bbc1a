"""The filters a custom command's -vf and -af may use, and the parser that checks a graph."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Filter parameter values: numbers, names and arithmetic expressions. No quotes, brackets or
# backslashes (FFmpeg's escaping, which would hide separators from this parser), no `%`
# (text expansion), no `:` or `,` (those are separators, already split on).
_FILTER_VALUE = re.compile(r"^[A-Za-z0-9_.+\-*/()|]{1,256}$")


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


def video_filters(value: str) -> str | None:
    return filtergraph_problem(value, VIDEO_FILTERS, "video")


def audio_filters(value: str) -> str | None:
    return filtergraph_problem(value, AUDIO_FILTERS, "audio")
