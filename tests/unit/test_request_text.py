"""The control-character walk over real request messages: nested, repeated and map fields."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2, wrappers_pb2
from kiln.v1 import job_pb2, job_service_pb2, preset_service_pb2

from server.domain.request_text import control_character_violations, text_violation


def paths(message) -> list[str]:
    return [violation.field for violation in control_character_violations(message)]


def clean_create() -> job_service_pb2.CreateRequest:
    return job_service_pb2.CreateRequest(
        input_url="https://media.example.com/in.mp4",
        concat_input_urls=["https://media.example.com/a.mp4", "https://media.example.com/b.mp4"],
        outputs=[
            job_pb2.OutputSpec(preset="h264_720p_standard"),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_HLS,
                video=[
                    job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="720p"),
                    job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="480p"),
                ],
            ),
        ],
        metadata={"team": "video", "note": "line one\nline two\tindented\r\n"},
        idempotency_key="order-42",
        webhook_url="https://hooks.example.com/kiln",
    )


def test_clean_request_has_no_violations():
    assert paths(clean_create()) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda r: setattr(r, "input_url", "https://x/\x00.mp4"), "input_url"),
        (lambda r: setattr(r, "idempotency_key", "key\x00"), "idempotency_key"),
        (lambda r: setattr(r, "idempotency_key", "key\n"), "idempotency_key"),
        (lambda r: setattr(r, "webhook_url", "https://x/\r\nX-Evil: 1"), "webhook_url"),
        (
            lambda r: r.concat_input_urls.__setitem__(1, "https://x/\x1b[31m"),
            "concat_input_urls[1]",
        ),
        (lambda r: setattr(r.outputs[0], "preset", "h264\x00"), "outputs[0].preset"),
        (
            lambda r: setattr(r.outputs[1].video[1], "resolution", "480p\t"),
            "outputs[1].video[1].resolution",
        ),
        (
            lambda r: r.outputs[1].custom.args.extend(["-i", "{{input}}\x7f"]),
            "outputs[1].custom.args[1]",
        ),
        (lambda r: r.metadata.__setitem__("team", "vid\x00eo"), 'metadata["team"]'),
        (lambda r: r.metadata.__setitem__("team", "c1 \x85 next line"), 'metadata["team"]'),
        (lambda r: r.metadata.__setitem__("bad\x00key", "v"), "metadata"),
        (lambda r: r.metadata.__setitem__("tab\tkey", "v"), "metadata"),
    ],
)
def test_each_kind_of_field_is_reached(change, path):
    request = clean_create()
    change(request)
    assert paths(request) == [path]


def test_bad_map_key_is_quoted_escaped_in_the_description():
    request = clean_create()
    request.metadata["bad\x00key"] = "v"
    (violation,) = control_character_violations(request)
    assert violation.description.startswith('key "bad\\u0000key" must not contain')
    assert "U+0000 at position 3" in violation.description


def test_every_violation_is_listed_in_field_order():
    request = clean_create()
    request.input_url = "\x00"
    request.outputs[0].preset = "\x01"
    request.metadata["team"] = "\x02"
    assert paths(request) == ["input_url", "outputs[0].preset", 'metadata["team"]']


def test_free_text_allows_tab_and_line_breaks_but_not_nul():
    preset = preset_service_pb2.CreatePresetRequest(
        preset=preset_service_pb2.Preset(
            name="previews",
            description="Small previews.\r\n\tFor the review queue.",
            spec=job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4),
        )
    )
    assert paths(preset) == []
    preset.preset.description += "\x00"
    assert paths(preset) == ["preset.description"]
    preset.preset.name = "two\nlines"
    assert paths(preset) == ["preset.name", "preset.description"]


def test_watch_and_get_ids_are_checked():
    assert paths(job_service_pb2.WatchRequest(id="job_\x00", after_sequence=0)) == ["id"]
    assert paths(preset_service_pb2.GetPresetRequest(id="pst_\x1f")) == ["id"]


def test_maps_of_messages_and_lists_nested_in_them():
    """google.protobuf.Struct: a map of messages holding repeated messages holding strings."""
    value = struct_pb2.Struct()
    value.update({"ok": "fine", "deep": {"list": ["a", "b\x00"]}, "flag": True})
    assert paths(value) == [
        'fields["deep"].struct_value.fields["list"].list_value.values[1].string_value'
    ]


def test_bytes_fields_are_not_text():
    assert paths(wrappers_pb2.BytesValue(value=b"\x00\x01 binary")) == []


def test_printable_unicode_passes():
    assert text_violation("x", "plain ascii") is None
    assert text_violation("x", "emoji \U0001f3ac, accents \u00e9, U+00A0 \u00a0") is None
