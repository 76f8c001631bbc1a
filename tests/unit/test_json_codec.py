"""The strict Connect JSON codec: short enum names, unknown values and fields refused by path."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_json_codec
from connectrpc.errors import ConnectError
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import error_details_pb2
from kiln.v1 import (
    job_pb2,
    job_service_pb2,
    preset_service_pb2,
    webhook_service_pb2,
)

from server.api.json_codec import StrictJsonCodec
from server.domain.request_json import enum_prefix, short_name
from tests.support.specs import transcodely_body

CODEC = StrictJsonCodec()

TRANSCODELY_BODY = transcodely_body("gs://my-bucket/uploads/video.mp4")

FULL_NAMES_BODY = {
    **TRANSCODELY_BODY,
    "outputs": [
        {
            "type": "OUTPUT_TYPE_MP4",
            "video": [
                {"codec": "VIDEO_CODEC_H264", "resolution": "1080p", "quality": "QUALITY_STANDARD"}
            ],
        },
        {
            "type": "OUTPUT_TYPE_WEBM",
            "video": [
                {"codec": "VIDEO_CODEC_VP9", "resolution": "720p", "quality": "QUALITY_ECONOMY"}
            ],
        },
        {
            "type": "OUTPUT_TYPE_HLS",
            "video": [
                {"codec": "VIDEO_CODEC_H264", "resolution": r, "quality": "QUALITY_STANDARD"}
                for r in ("1080p", "720p", "480p")
            ],
            "hls": {"segment_format": "HLS_SEGMENT_FORMAT_FMP4"},
        },
        {"preset": "h264_1080p_standard"},
    ],
    "priority": "PRIORITY_STANDARD",
}


def decode(body: object, message_class=job_service_pb2.CreateRequest):
    return CODEC.decode(json.dumps(body).encode(), message_class)


def refusal(body: object, message_class=job_service_pb2.CreateRequest) -> ConnectError:
    with pytest.raises(ConnectError) as raised:
        decode(body, message_class)
    assert raised.value.code == Code.INVALID_ARGUMENT
    return raised.value


def violations(error: ConnectError) -> dict[str, str]:
    (detail,) = error.details
    assert detail.type_name == "google.rpc.BadRequest"
    bad = error_details_pb2.BadRequest.FromString(detail.message_bytes)
    return {v.field: v.description for v in bad.field_violations}


def test_short_names_make_the_same_message_as_full_names():
    short, full = decode(TRANSCODELY_BODY), decode(FULL_NAMES_BODY)
    assert short == full
    assert short.outputs[0].type == job_pb2.OUTPUT_TYPE_MP4
    assert short.outputs[2].hls.segment_format == job_pb2.HLS_SEGMENT_FORMAT_FMP4
    assert short.priority == job_pb2.PRIORITY_STANDARD


@pytest.mark.parametrize(
    "spelling",
    ["mp4", "MP4", "Mp4", "OUTPUT_TYPE_MP4", "output_type_mp4", "Output_Type_Mp4", 1, "1"],
)
def test_every_spelling_of_one_value(spelling):
    request = decode({"outputs": [{"type": spelling}]})
    assert request.outputs[0].type == job_pb2.OUTPUT_TYPE_MP4


def test_enum_prefixes_come_from_the_type_names():
    assert enum_prefix(job_pb2.OutputType.DESCRIPTOR) == "OUTPUT_TYPE_"
    assert enum_prefix(job_pb2.HlsSegmentFormat.DESCRIPTOR) == "HLS_SEGMENT_FORMAT_"
    assert short_name(job_pb2.VideoCodec.DESCRIPTOR, "VIDEO_CODEC_H265") == "h265"


def _enum_fields(descriptor: Descriptor, depth: int = 0) -> Iterator[tuple[list, FieldDescriptor]]:
    """(path of (field, repeated) steps, enum field) for every enum field a request reaches."""
    assert depth < 8, "kiln's request messages are not recursive"
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_ENUM:
            yield [(field.name, field.is_repeated)], field
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.message_type.GetOptions().map_entry
            and field.message_type.file.package != "google.protobuf"
        ):
            for steps, found in _enum_fields(field.message_type, depth + 1):
                yield [(field.name, field.is_repeated), *steps], found


def _document(steps: list, value: object) -> dict:
    (name, repeated), *rest = steps
    inner = _document(rest, value) if rest else value
    return {name: [inner] if repeated else inner}


REQUESTS = [
    message
    for module in (job_service_pb2, preset_service_pb2, webhook_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for message in {
        method.input_type.full_name: method.input_type for method in service.methods
    }.values()
]


def _message_class(descriptor: Descriptor):
    for module in (job_service_pb2, preset_service_pb2, webhook_service_pb2):
        if descriptor.name in module.DESCRIPTOR.message_types_by_name:
            return getattr(module, descriptor.name)
    raise AssertionError(descriptor.full_name)


def test_every_enum_of_every_request_takes_its_short_names():
    """Derived from the descriptors: an enum added to a request later is covered too."""
    checked = set()
    for request in REQUESTS:
        message_class = _message_class(request)
        for steps, field in _enum_fields(request):
            for value in field.enum_type.values:
                short = short_name(field.enum_type, value.name)
                assert short != value.name, (
                    f"{value.name} lacks the {enum_prefix(field.enum_type)} prefix"
                )
                spellings = [short, short.upper(), value.name, value.name.lower(), value.number]
                parsed = [decode(_document(steps, s), message_class) for s in spellings]
                assert all(p == parsed[0] for p in parsed), (steps, value.name)
                assert parsed[0] != message_class() or value.number == 0
                checked.add(field.enum_type.full_name)
    assert checked >= {
        "kiln.v1.OutputType",
        "kiln.v1.VideoCodec",
        "kiln.v1.AudioCodec",
        "kiln.v1.Quality",
        "kiln.v1.Priority",
        "kiln.v1.HlsSegmentFormat",
        "kiln.v1.ThumbnailMode",
        "kiln.v1.JobStatus",
    }


def test_repeated_enum_field():
    request = decode(
        {"statuses": ["completed", "Awaiting_Confirmation", "JOB_STATUS_FAILED", 9]},
        job_service_pb2.ListRequest,
    )
    assert list(request.statuses) == [
        job_pb2.JOB_STATUS_COMPLETED,
        job_pb2.JOB_STATUS_AWAITING_CONFIRMATION,
        job_pb2.JOB_STATUS_FAILED,
        job_pb2.JOB_STATUS_CANCELED,
    ]


def test_unknown_enum_value_names_path_value_and_allowed_values():
    error = refusal({"outputs": [{"type": "OUTPUT_TYPE_MP5", "video": [{"codec": "h264"}]}]})
    found = violations(error)
    assert list(found) == ["outputs[0].type"]
    description = found["outputs[0].type"]
    assert '"OUTPUT_TYPE_MP5"' in description
    assert "allowed values: mp4, webm, mov, mkv, hls, dash, cmaf," in description
    assert "OUTPUT_TYPE_MP4" in description
    assert "unspecified" not in description
    # The summary carries it too, for clients that only print the message.
    assert "outputs[0].type: unknown OutputType value" in error.message


def test_unknown_enum_value_deep_in_repeated_messages():
    body = {
        "outputs": [
            {"preset": "h264_720p_standard"},
            {
                "type": "hls",
                "video": [
                    {"codec": "h264", "resolution": "720p"},
                    {"codec": "h264", "resolution": "480p"},
                    {"codec": "h266", "resolution": "360p", "quality": "ultra"},
                ],
            },
        ]
    }
    found = violations(refusal(body))
    assert list(found) == ["outputs[1].video[2].codec", "outputs[1].video[2].quality"]
    assert "h264, h265, vp9, av1" in found["outputs[1].video[2].codec"]
    assert "economy, standard, premium" in found["outputs[1].video[2].quality"]


def test_unknown_field_is_named_with_its_path():
    body = {
        "input_url": "https://media.example.com/in.mp4",
        "priorty": "premium",
        "outputs": [
            {"type": "mp4", "videos": [{"codec": "h264"}]},
            {"type": "hls", "video": [{"codec": "h264", "resolutoin": "720p"}]},
        ],
    }
    found = violations(refusal(body))
    assert list(found) == ["priorty", "outputs[0].videos", "outputs[1].video[0].resolutoin"]
    assert 'unknown field "priorty" (did you mean "priority"?)' in found["priorty"]
    assert "(did you mean " in found["outputs[0].videos"]
    assert "VideoVariant fields are: codec, resolution," in found["outputs[1].video[0].resolutoin"]


def test_transcodely_origin_fields_are_known():
    # Its documented body names storage by origin id: the fields exist and are kept.
    body = {
        **TRANSCODELY_BODY,
        "input_url": "",
        "input_origin_id": "ori_input123",
        "input_path": "uploads/video.mp4",
        "output_origin_id": "ori_output456",
    }
    request = decode(body)
    assert (request.input_origin_id, request.input_path, request.output_origin_id) == (
        "ori_input123",
        "uploads/video.mp4",
        "ori_output456",
    )


def test_a_field_name_that_cannot_be_a_path_is_quoted():
    found = violations(refusal({"outputs": [{"bad key\n": 1}]}))
    assert list(found) == ['outputs[0]["bad key\\n"]']


def test_every_violation_at_once_and_nothing_else_reported():
    found = violations(
        refusal({"priority": "urgent", "outputs": [{"type": "mp4"}], "callback": "x"})
    )
    assert sorted(found) == ["callback", "priority"]


def test_one_field_under_both_names_is_refused():
    found = violations(
        refusal({"outputs": [{"hls": {"segment_format": "ts", "segmentFormat": "fmp4"}}]})
    )
    assert found == {
        "outputs[0].hls.segment_format": 'given twice, as "segment_format" and "segmentFormat"'
    }


def test_json_names_are_accepted_beside_proto_names():
    request = decode(
        {
            "inputUrl": "https://media.example.com/in.mp4",
            "delayedStart": True,
            "outputs": [{"type": "hls", "hls": {"segmentFormat": "ts"}}],
        }
    )
    assert request.input_url == "https://media.example.com/in.mp4"
    assert request.delayed_start
    assert request.outputs[0].hls.segment_format == job_pb2.HLS_SEGMENT_FORMAT_TS


def test_unknown_enum_numbers_stay_as_protobuf_json_takes_them():
    # Open proto3 enums keep numbers they do not name; validation refuses them later.
    assert decode({"priority": 42}).priority == 42
    assert decode({"priority": "42"}).priority == 42


def test_map_values_and_well_known_types_pass_through():
    request = decode({"outputs": [{"recipe": {"name": "compress", "params": {"crf": "28"}}}]})
    assert request.outputs[0].recipe.params["crf"] == "28"
    preset = decode(
        {"preset": {"name": "p", "spec": {"type": "webm"}, "create_time": "2026-01-02T03:04:05Z"}},
        preset_service_pb2.CreatePresetRequest,
    ).preset
    assert preset.spec.type == job_pb2.OUTPUT_TYPE_WEBM
    assert preset.create_time.seconds > 0


def test_null_leaves_a_field_unset():
    assert decode({"priority": None, "outputs": [{"type": None}]}) == decode({"outputs": [{}]})


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b'{"priority": "premium", "priority": "economy"}', 'duplicate key "priority"'),
        (b"[]", "must be a JSON object (CreateRequest), not an array"),
        (b'"mp4"', "must be a JSON object"),
        # What the walk leaves to json_format comes back in its words.
        (b'{"outputs": {}}', "outputs"),
        (b'{"delayed_start": "maybe"}', "delayed_start"),
    ],
)
def test_malformed_bodies(raw, fragment):
    with pytest.raises(ConnectError) as raised:
        CODEC.decode(raw, job_service_pb2.CreateRequest)
    assert raised.value.code == Code.INVALID_ARGUMENT
    assert fragment in raised.value.message


def test_answers_are_encoded_as_before():
    answer = job_service_pb2.CreateResponse(
        job=job_pb2.Job(id="job_1", status=job_pb2.JOB_STATUS_PENDING, priority=2)
    )
    assert CODEC.encode(answer) == google_protobuf_json_codec().encode(answer)
    assert CODEC.name() == "json"


def test_webhook_requests_are_strict_too():
    request = decode({"overlap_seconds": 60}, webhook_service_pb2.RotateWebhookSecretRequest)
    assert request.overlap_seconds == 60
    found = violations(refusal({"overlap": 60}, webhook_service_pb2.RotateWebhookSecretRequest))
    assert list(found) == ["overlap"]
