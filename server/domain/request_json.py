"""Connect JSON request bodies read strictly, with enum values as people write them.

A body pasted from a hosted service's docs (`"type": "mp4"`) or with a typo
(`"OUTPUT_TYPE_MP5"`, `"videos": [...]`) must not lose those parts without a word. Here:

- an enum value is taken by its full name, its name without the enum's prefix
  (`OUTPUT_TYPE_MP4`, `MP4`, `mp4`), in any case, or its number, as protobuf JSON allows;
- an enum string nobody knows, or a field name the message does not have, is a violation
  naming its field path (with the allowed values or fields); all of them at once, as
  InvalidArgument, like every other field violation.

The walk is generic over the request's descriptor (nested messages, repeated fields, map
values), so a field or enum added to the API later is covered without anyone remembering to.
What remains (a list where a message belongs, a string in a number field) is left to
json_format with `ignore_unknown_fields=False`, whose own message is passed on.

The server's Connect codec (server/api/json_codec.py) and the CLI's `--spec` files use it;
it imports nothing but protobuf, so the CLI starts fast.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from .errors import FieldViolation, InvalidArgument

M = TypeVar("M", bound=Message)

# A value echoed back in an error is cut to this many characters: the answer to a
# megabyte-long enum string need not repeat it.
_ECHO_LIMIT = 64

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A boundary inside a CamelCase name: lower or digit before upper (JobStatus), or the last
# upper of an acronym before a capitalised word (HTTPMethod -> HTTP_METHOD).
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class RequestJsonError(ValueError):
    """A body that is not a JSON object, or that json_format refuses for another reason."""


def parse_request(data: bytes | bytearray | str, message_class: type[M]) -> M:
    """The message a JSON request body describes; InvalidArgument naming each bad field."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestJsonError(f"request body is not valid JSON: {error}") from None
    return parse_document(document, message_class)


def parse_document(document: Any, message_class: type[M]) -> M:
    """`parse_request` for a decoded JSON document (dict, list, ...)."""
    descriptor = message_class.DESCRIPTOR
    if not isinstance(document, dict):
        raise RequestJsonError(
            f"request body must be a JSON object ({descriptor.name}), not {_json_kind(document)}"
        )
    violations: list[FieldViolation] = []
    normalized = _message(descriptor, document, "", violations)
    if violations:
        raise InvalidArgument(violations)
    message = message_class()
    try:
        json_format.ParseDict(normalized, message, ignore_unknown_fields=False)
    except Exception as error:
        # ParseError mostly; like json_format.Parse, anything else it raises on odd input
        # is the body's fault too.
        raise RequestJsonError(f"invalid request: {error}") from None
    return message


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; json_format refuses them, and so do we,
    # since which one the client meant is anyone's guess.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {_quoted(key)}")
        document[key] = value
    return document


def _message(
    descriptor: Descriptor, document: dict, path: str, violations: list[FieldViolation]
) -> dict:
    """`document` with enum spellings made full names; unknown field names reported."""
    fields = _fields_by_json_key(descriptor)
    normalized: dict[str, Any] = {}
    spelt_as: dict[str, str] = {}
    for key, value in document.items():
        field = fields.get(key)
        if field is None:
            violations.append(_unknown_field(descriptor, key, path))
            continue
        field_path = _child(path, field.name)
        if field.name in spelt_as:
            # `input_url` and `inputUrl` together: json_format would keep the last one,
            # silently, like a duplicate key.
            violations.append(
                FieldViolation(
                    field_path,
                    f"given twice, as {_quoted(spelt_as[field.name])} and {_quoted(key)}",
                )
            )
            continue
        spelt_as[field.name] = key
        normalized[key] = _field(field, value, field_path, violations)
    return normalized


def _field(field: FieldDescriptor, value: Any, path: str, violations: list[FieldViolation]) -> Any:
    if _is_map(field):
        if not isinstance(value, dict):
            return value  # json_format says what is wrong with it
        value_field = field.message_type.fields_by_name["value"]
        return {
            key: _single(value_field, item, f"{path}[{_quoted(key)}]", violations)
            for key, item in value.items()
        }
    if field.is_repeated:
        if not isinstance(value, list):
            return value
        return [
            _single(field, item, f"{path}[{index}]", violations) for index, item in enumerate(value)
        ]
    return _single(field, value, path, violations)


def _single(field: FieldDescriptor, value: Any, path: str, violations: list[FieldViolation]) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, str):
        return _enum_value(field.enum_type, value, path, violations)
    if (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and isinstance(value, dict)
        and not _has_special_json(field.message_type)
    ):
        return _message(field.message_type, value, path, violations)
    # Numbers, null, booleans and mistyped values: json_format's rules and messages.
    return value


def _enum_value(
    enum: EnumDescriptor, value: str, path: str, violations: list[FieldViolation]
) -> str:
    full_name = _enum_spellings(enum).get(value.upper())
    if full_name is not None:
        return full_name
    if _is_integer(value):
        # Protobuf JSON takes a number as a string too; json_format decides on it.
        return value
    full_names = _enum_full_names(enum)
    allowed = ", ".join(short_name(enum, name) for name in full_names)
    example = f" such as {full_names[0]}" if full_names else ""
    violations.append(
        FieldViolation(
            path,
            # No semicolons: InvalidArgument joins violations with them.
            f"unknown {enum.name} value {_quoted(_cut(value))}, allowed values: {allowed} "
            f"(in any case, or the full name{example})",
        )
    )
    return value


def _unknown_field(descriptor: Descriptor, key: str, path: str) -> FieldViolation:
    known = [field.name for field in descriptor.fields]
    name = _cut(key)
    suggestion = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {_quoted(suggestion[0])}?)" if suggestion else ""
    listed = ", ".join(known) if known else "none"
    return FieldViolation(
        _child(path, name),
        f"unknown field {_quoted(name)}{hint}, {descriptor.name} fields are: {listed}",
    )


@functools.cache
def _fields_by_json_key(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    # Protobuf JSON takes both spellings of a field: `input_url` and `inputUrl`.
    fields: dict[str, FieldDescriptor] = {}
    for field in descriptor.fields:
        fields[field.name] = field
        fields[field.json_name] = field
    return fields


@functools.cache
def _enum_spellings(enum: EnumDescriptor) -> dict[str, str]:
    """Upper-cased spelling -> full value name: full names and names without the prefix."""
    prefix = enum_prefix(enum)
    spellings: dict[str, str] = {}
    for value in enum.values:
        if value.name.startswith(prefix):
            spellings[value.name[len(prefix) :].upper()] = value.name
    # A full name wins over another value's short name, should the two ever coincide.
    for value in enum.values:
        spellings[value.name.upper()] = value.name
    return spellings


def enum_prefix(enum: EnumDescriptor) -> str:
    """The prefix protobuf style puts on every value: OutputType -> `OUTPUT_TYPE_`."""
    return _CAMEL_BOUNDARY.sub("_", enum.name).upper() + "_"


def short_name(enum: EnumDescriptor, full_name: str) -> str:
    """`OUTPUT_TYPE_MP4` -> `mp4`; a value without the prefix keeps its full name."""
    prefix = enum_prefix(enum)
    return full_name[len(prefix) :].lower() if full_name.startswith(prefix) else full_name


def _enum_full_names(enum: EnumDescriptor) -> list[str]:
    # The zero value means "unset" in proto3 style (X_UNSPECIFIED): accepted, never offered.
    return [value.name for value in enum.values if value.number != 0]


def _has_special_json(descriptor: Descriptor) -> bool:
    # Well-known types (Timestamp, Struct, Any, wrappers...) have JSON forms of their own,
    # not objects keyed by field name; json_format handles them whole.
    return descriptor.file.package == "google.protobuf"


def _child(path: str, name: str) -> str:
    """`outputs[0]` + `type` -> `outputs[0].type`; a name no path can carry is quoted."""
    if not _IDENTIFIER.fullmatch(name):
        return f"{path}[{_quoted(name)}]"
    return f"{path}.{name}" if path else name


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _cut(text: str) -> str:
    return text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "…"


def _quoted(text: str) -> str:
    """JSON string quoting: control characters come out escaped, readable in any client."""
    return json.dumps(text, ensure_ascii=False)
