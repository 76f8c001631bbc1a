"""Control characters in request text: found in any string of any message, with its path.

A NUL cannot be stored in a PostgreSQL text column at all, and the other control
characters turn ids, URLs, keys and headers into something else further down (log lines,
storage paths, HTTP headers of webhooks, FFmpeg arguments). No field needs them, except
free text a person writes, where tab and line breaks are ordinary. The walk is generic
over the message descriptor (nested messages, repeated fields, map keys and values), so a
field added to the API later is covered without anyone remembering to.
"""

from __future__ import annotations

import json
import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .errors import FieldViolation

# Unicode category Cc: C0 (U+0000-U+001F), DEL and C1 (U+007F-U+009F).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# The same without tab, line feed and carriage return.
_CONTROL_IN_FREE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# Fields a person writes prose into (full proto names; a map's values are its entry's `value`).
FREE_TEXT_FIELDS = frozenset(
    {
        "kiln.v1.CreateRequest.MetadataEntry.value",
        "kiln.v1.Preset.description",
    }
)


def text_violation(path: str, text: str, *, free_text: bool = False) -> FieldViolation | None:
    """The violation for `text` at `path` if it holds a control character it may not."""
    found = (_CONTROL_IN_FREE_TEXT if free_text else _CONTROL).search(text)
    if found is None:
        return None
    allowed = " (tab and line breaks are allowed here)" if free_text else ""
    return FieldViolation(
        path,
        f"must not contain control characters; found U+{ord(found.group()):04X} "
        f"at position {found.start()}{allowed}",
    )


def control_character_violations(message: Message) -> list[FieldViolation]:
    """Every string in `message` holding a forbidden control character, by proto path."""
    violations: list[FieldViolation] = []
    _walk(message, "", violations)
    return violations


def _walk(message: Message, path: str, violations: list[FieldViolation]) -> None:
    for field, value in message.ListFields():
        field_path = f"{path}.{field.name}" if path else field.name
        if _is_map(field):
            _walk_map(field.message_type, value, field_path, violations)
        elif field.is_repeated:
            for index, item in enumerate(value):
                _check(field, item, f"{field_path}[{index}]", violations)
        else:
            _check(field, value, field_path, violations)


def _walk_map(entry: Descriptor, entries, path: str, violations: list[FieldViolation]) -> None:
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    for key in sorted(entries):
        if key_field.type == FieldDescriptor.TYPE_STRING:
            if (bad_key := text_violation(path, key)) is not None:
                # The key itself cannot go into a path; name the map and quote the key.
                violations.append(FieldViolation(path, f"key {_quoted(key)} {bad_key.description}"))
                continue
            entry_path = f"{path}[{_quoted(key)}]"
        else:
            entry_path = f"{path}[{key}]"
        _check(value_field, entries[key], entry_path, violations)


def _check(field: FieldDescriptor, value, path: str, violations: list[FieldViolation]) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        free_text = field.full_name in FREE_TEXT_FIELDS
        if (violation := text_violation(path, value, free_text=free_text)) is not None:
            violations.append(violation)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _walk(value, path, violations)


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _quoted(text: str) -> str:
    """JSON string quoting: control characters come out escaped, readable in any client."""
    return json.dumps(text, ensure_ascii=False)
