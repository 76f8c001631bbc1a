"""Validation of CreateRequest: every field violation at once, with proto-style paths.

Returns the list of violations instead of raising on the first one, so a client
fixes its whole request in one round trip.
"""

from __future__ import annotations

import re

from kiln.v1 import job_pb2, job_service_pb2

from common.input_policy import InputPolicy, InputRefused
from common.output_types import SINGLE_FILE_MEDIA

from .audio_track_checks import check_audio_tracks
from .errors import FieldViolation, InvalidArgument
from .output_validation import check_output
from .presets import SYSTEM_PRESETS
from .text_track_checks import check_text_tracks

MAX_OUTPUTS = 10
MAX_CONCAT_INPUTS = 10
MAX_METADATA_PAIRS = 20
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024
MAX_IDEMPOTENCY_KEY = 128
# Signed input URLs (S3 with a session token, GCS V4) run to a few thousand characters;
# more than this is no URL a client meant to send, and every copy of it costs a row and a log.
MAX_INPUT_URL = 8192
# A webhook URL is the receiver's own address (as the organization's default_url).
MAX_WEBHOOK_URL = 2048

T = job_pb2.OutputType
# Each enum's known values, built once: EnumTypeWrapper.values() builds a list per call.
PRIORITIES = frozenset(job_pb2.Priority.values())
QC_POLICIES = frozenset(job_pb2.QcPolicy.values())


def validate_create(
    request: job_service_pb2.CreateRequest,
    policy: InputPolicy,
    known_presets: set[str],
) -> None:
    """Raise InvalidArgument listing every problem of `request`, or return."""
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        violations.append(FieldViolation(path, description))

    if request.input_origin_id:
        if request.input_url:
            bad("input_url", "set either input_url or input_origin_id with input_path, not both")
        _check_origin_id("input_origin_id", request.input_origin_id, bad)
        _check_object_path("input_path", request.input_path, bad, required=True)
    else:
        _check_input("input_url", request.input_url, policy, bad, required=True)
        if request.input_path:
            bad("input_path", "is read from an origin: set input_origin_id too")
    if request.output_origin_id:
        _check_origin_id("output_origin_id", request.output_origin_id, bad)
        if request.output_origin:
            bad("output_origin", "set either output_origin or output_origin_id, not both")
    if request.output_path_prefix:
        _check_object_path("output_path_prefix", request.output_path_prefix.strip("/"), bad)
        if not request.output_origin_id and not any(o.output_origin_id for o in request.outputs):
            bad("output_path_prefix", "applies to outputs on an origin: set output_origin_id")
    for index, output in enumerate(request.outputs):
        if output.output_origin_id:
            _check_origin_id(f"outputs[{index}].output_origin_id", output.output_origin_id, bad)
            if request.output_origin:
                bad(
                    f"outputs[{index}].output_origin_id",
                    "not together with the job's output_origin (a gs:// URL)",
                )
    if len(request.concat_input_urls) > MAX_CONCAT_INPUTS:
        bad("concat_input_urls", f"at most {MAX_CONCAT_INPUTS} inputs")
    for index, url in enumerate(request.concat_input_urls):
        _check_input(f"concat_input_urls[{index}]", url, policy, bad, required=True)

    if not request.outputs:
        bad("outputs", "at least one output is required")
    elif len(request.outputs) > MAX_OUTPUTS:
        bad("outputs", f"at most {MAX_OUTPUTS} outputs, got {len(request.outputs)}")
    else:
        for index, output in enumerate(request.outputs):
            checked = check_output(f"outputs[{index}]", output, known_presets, bad)
            for position, overlay in enumerate(checked.overlays):
                if overlay.image.url:
                    where = f"outputs[{index}].overlays[{position}].image.url"
                    _check_input(where, overlay.image.url, policy, bad, required=True)
            check_text_tracks(
                f"outputs[{index}]",
                output,
                _known_type(output, checked),
                policy,
                reads_an_origin=bool(request.input_origin_id),
                bad=bad,
            )
            check_audio_tracks(
                f"outputs[{index}]", output, 0 if output.preset else checked.type, policy, bad
            )
            if output.recipe.name == "concat" and not request.concat_input_urls:
                bad(
                    f"outputs[{index}].recipe.name",
                    "concat joins the job's inputs: set concat_input_urls (read after input_url)",
                )
            recipe_type = checked.type if output.HasField("recipe") and not output.type else 0
            if request.concat_input_urls and recipe_type and recipe_type not in SINGLE_FILE_MEDIA:
                bad(
                    f"outputs[{index}].recipe.name",
                    f"{output.recipe.name} makes "
                    f"{T.Name(checked.type).removeprefix('OUTPUT_TYPE_')}, and concatenated "
                    "inputs make progressive or audio outputs only",
                )

    if request.concat_input_urls:
        for index, output in enumerate(request.outputs):
            if output.HasField("custom"):
                bad(f"outputs[{index}].custom", "custom commands read the job's one input")
            if output.type and output.type not in SINGLE_FILE_MEDIA:
                bad(
                    f"outputs[{index}].type",
                    "concatenated inputs make progressive or audio outputs only",
                )
            if output.measure_quality:
                bad(
                    f"outputs[{index}].measure_quality",
                    "quality is measured against one input, not concatenated inputs",
                )
            if output.audio.channels == 6:
                bad(
                    f"outputs[{index}].audio.channels",
                    "concatenated inputs are joined in stereo or mono, not 5.1",
                )
            if output.overlays:
                bad(
                    f"outputs[{index}].overlays",
                    "overlays are drawn over one input's video, not concatenated inputs",
                )
            if output.audio.HasField("loudness"):
                bad(
                    f"outputs[{index}].audio.loudness",
                    "loudness is normalized for one input, not concatenated inputs",
                )
            if output.text_tracks:
                bad(
                    f"outputs[{index}].text_tracks",
                    "text tracks are timed against one input, not concatenated inputs",
                )
            if output.audio_tracks:
                bad(
                    f"outputs[{index}].audio_tracks",
                    "audio tracks are aligned to one input, not concatenated inputs",
                )
    if request.priority not in PRIORITIES:
        bad("priority", f"unknown priority {request.priority}")
    if request.qc_policy not in QC_POLICIES:
        bad("qc_policy", f"unknown qc_policy {request.qc_policy}: REPORT or FAIL")
    _check_metadata(request.metadata, bad)
    if len(request.webhook_url) > MAX_WEBHOOK_URL:
        bad("webhook_url", f"at most {MAX_WEBHOOK_URL} characters")
    elif request.webhook_url and not re.match(r"^https?://[^/\s]+", request.webhook_url):
        bad("webhook_url", "must be an http:// or https:// URL")
    if len(request.idempotency_key) > MAX_IDEMPOTENCY_KEY:
        bad("idempotency_key", f"at most {MAX_IDEMPOTENCY_KEY} characters")

    if violations:
        raise InvalidArgument(violations)


def _known_type(output: job_pb2.OutputSpec, checked: job_pb2.OutputSpec) -> int:
    """The output's type where Create can know it: inline, a recipe's, a system preset's;
    0 for a saved preset (its type is judged after probing)."""
    if not output.preset:
        return checked.type
    system = SYSTEM_PRESETS.get(output.preset)
    return system.spec.type if system else 0


def _check_input(path, url, policy: InputPolicy, bad, *, required: bool) -> None:
    if not url:
        if required:
            bad(path, "is required")
        return
    if len(url) > MAX_INPUT_URL:
        bad(path, f"at most {MAX_INPUT_URL} characters")
        return
    try:
        policy.check_syntax(url)
    except InputRefused as refused:
        bad(path, str(refused))


_ORIGIN_ID = re.compile(r"ori_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")
MAX_OBJECT_PATH_BYTES = 1024


def _check_origin_id(path: str, value: str, bad) -> None:
    if not _ORIGIN_ID.fullmatch(value):
        bad(path, "is not an origin id (ori_ + 26 characters)")


def _check_object_path(path: str, value: str, bad, *, required: bool = False) -> None:
    """An object's name under an origin's prefix: relative, no dot or empty segments (a
    URL made of it would be normalised into another name), no control characters."""
    if not value:
        if required:
            bad(path, "is required")
        return
    if len(value.encode()) > MAX_OBJECT_PATH_BYTES:
        bad(path, f"at most {MAX_OBJECT_PATH_BYTES} bytes")
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or "\\" in value:
        bad(path, "must not contain control characters or backslashes")
    elif value.startswith("/") or any(part in ("", ".", "..") for part in value.split("/")):
        bad(path, "must be a relative path without '.', '..' or empty segments")
    elif any(c in value for c in "?#"):
        bad(path, "must not contain '?' or '#'")


def _check_metadata(metadata, bad) -> None:
    if len(metadata) > MAX_METADATA_PAIRS:
        bad("metadata", f"at most {MAX_METADATA_PAIRS} pairs")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY:
            bad(f"metadata[{key!r}]", f"key must be 1 to {MAX_METADATA_KEY} characters")
        if len(value) > MAX_METADATA_VALUE:
            bad(f"metadata[{key!r}]", f"value must be at most {MAX_METADATA_VALUE} characters")


MAX_PRESET_NAME = 200
MAX_PRESET_DESCRIPTION = 1000


def validate_preset(name: str, description: str, spec: job_pb2.OutputSpec, has_spec: bool) -> None:
    """A preset to save: a name and a complete inline output spec (no preset reference)."""
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        violations.append(FieldViolation(path, description))

    if not name.strip():
        bad("preset.name", "is required")
    elif len(name) > MAX_PRESET_NAME:
        bad("preset.name", f"at most {MAX_PRESET_NAME} characters")
    if len(description) > MAX_PRESET_DESCRIPTION:
        bad("preset.description", f"at most {MAX_PRESET_DESCRIPTION} characters")
    if not has_spec:
        bad("preset.spec", "is required")
    elif spec.preset:
        bad("preset.spec.preset", "a preset cannot refer to another preset")
    elif spec.text_tracks:
        bad("preset.spec.text_tracks", "name a job's own files: give them beside the preset")
    elif spec.audio_tracks:
        bad("preset.spec.audio_tracks", "name a job's own streams: give them beside the preset")
    else:
        check_output("preset.spec", spec, set(), bad)
    if violations:
        raise InvalidArgument(violations)
