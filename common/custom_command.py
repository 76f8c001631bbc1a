"""Custom FFmpeg commands (OutputSpec.custom.args) checked against the allowlist, used twice.

The server checks a command at Create (a refusal is INVALID_ARGUMENT naming the argument);
the worker checks it again right before running it (a refusal fails the output with
UNSUPPORTED_COMMAND), so a job stored before a rule changed, or a task nobody validated,
still runs nothing that is not allowed.

Everything not listed is refused: an option, a filter, a filter parameter, a muxer or an
encoder has to be named in `common/custom_command_allowlist.py` (filters in
`common/custom_command_filters.py`) to be accepted, and every value has to match the pattern
of its option. A command has exactly one input, `-i {{input}}` (the worker puts the job's
input there, with its own `-protocol_whitelist`), and exactly one output, `{{output}}` as the
last argument (the worker puts a file of the task's scratch folder there). No value may name
a path, a URL or a protocol, so nothing FFmpeg could open is left for the command to choose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from common.custom_command_allowlist import (
    MAP_VALUE,
    MUXERS_BY_TYPE,
    OPTIONS,
    REFUSED_OPTIONS,
    STREAM_ALIASES,
    TIME_VALUE,
    OptionRule,
    ValueCheck,
    encoder_for,
)

INPUT = "{{input}}"
OUTPUT = "{{output}}"
MAX_ARGS = 200
MAX_ARG_LENGTH = 1024
# A value that names a protocol: `file:`, `concat:`, `http:`, `subfile,,…`.
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_OPTION_NAME = re.compile(r"^(-[A-Za-z_][A-Za-z0-9_\-]*)(?::([a-z])(?::(\d{1,2}))?)?$")

# --- Options -------------------------------------------------------------------------------------


def _option_rule(name: str) -> tuple[OptionRule | None, str | None, str]:
    """(rule, stream type or None, reason when refused)."""
    if name.startswith("-/"):
        return None, None, "`-/option` reads the option's value from a file"
    if name in STREAM_ALIASES:
        base, stream = STREAM_ALIASES[name]
        return OPTIONS[base], stream, ""
    match = _OPTION_NAME.match(name)
    base = match.group(1) if match else name
    if base in REFUSED_OPTIONS:
        return None, None, REFUSED_OPTIONS[base]
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
        return encoder_for(stream)
    return rule.value


# --- The check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    # Index of the argument at fault; None when the list as a whole is wrong.
    index: int | None
    message: str


def _looks_like_location(value: str) -> str | None:
    if _PROTOCOL.match(value) and not MAP_VALUE.match(value) and not TIME_VALUE.match(value):
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
        if not TIME_VALUE.match(value):
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
