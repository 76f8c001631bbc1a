"""What `kiln jobs create` and `kiln presets create` read: the --output shorthand, k=v
metadata and spec files (JSON or YAML in Connect JSON field names)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from google.protobuf.message import Message
from kiln.v1 import job_pb2

from common import output_types
from server.domain.errors import InvalidArgument
from server.domain.request_json import RequestJsonError, parse_document

M = TypeVar("M", bound=Message)


def _shorthand_names(family: output_types.Family) -> set[str]:
    # The shorthand writes types in lower case (`mp4`, `hls`).
    return {output_types.short_name(kind).lower() for kind in family}


VIDEO_TYPES = _shorthand_names(output_types.VIDEO)
ADAPTIVE_TYPES = _shorthand_names(output_types.ADAPTIVE)
AUDIO_TYPES = _shorthand_names(output_types.AUDIO_ONLY)
IMAGE_TYPES = _shorthand_names(output_types.IMAGES)
CODECS = {"h264", "h265", "vp9", "av1"}
PRIORITIES = {"economy", "standard", "premium"}
RESOLUTION = re.compile(r"^(\d{3,4}p|\d{2,5}x\d{2,5})$")

SHORTHAND_HELP = (
    "TYPE:CODEC:RESOLUTION[,RESOLUTION...] for video (mp4:h264:720p, "
    "hls:h264:1080p,720p,480p), TYPE alone for audio and images (mp3, jpg)"
)


class SpecError(ValueError):
    """A flag or spec file the CLI cannot turn into a request (a usage error)."""


def parse_output(shorthand: str) -> job_pb2.OutputSpec:
    """`mp4:h264:720p`, `hls:h264:1080p,720p,480p`, `webm:vp9:480p`, `mp3`, `jpg`."""
    parts = shorthand.strip().lower().split(":")
    kind = parts[0]
    if kind in AUDIO_TYPES | IMAGE_TYPES:
        if len(parts) != 1:
            raise SpecError(
                f"--output {shorthand!r}: {kind} takes no codec or resolution; write just {kind!r}"
            )
        return job_pb2.OutputSpec(type=job_pb2.OutputType.Value("OUTPUT_TYPE_" + kind.upper()))
    if kind not in VIDEO_TYPES:
        known = ", ".join(sorted(VIDEO_TYPES | AUDIO_TYPES | IMAGE_TYPES))
        raise SpecError(f"--output {shorthand!r}: unknown output type {kind!r} (one of {known})")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SpecError(f"--output {shorthand!r}: expected {SHORTHAND_HELP}")
    codec, resolutions = parts[1], [r.strip() for r in parts[2].split(",")]
    if codec not in CODECS:
        raise SpecError(
            f"--output {shorthand!r}: unknown codec {codec!r} (one of {', '.join(sorted(CODECS))})"
        )
    for resolution in resolutions:
        if not RESOLUTION.match(resolution):
            raise SpecError(
                f"--output {shorthand!r}: {resolution!r} is not a resolution "
                "(like 720p or 1280x720)"
            )
    if kind not in ADAPTIVE_TYPES and len(resolutions) != 1:
        raise SpecError(f"--output {shorthand!r}: {kind} takes exactly one resolution")
    codec_value = job_pb2.VideoCodec.Value("VIDEO_CODEC_" + codec.upper())
    return job_pb2.OutputSpec(
        type=job_pb2.OutputType.Value("OUTPUT_TYPE_" + kind.upper()),
        video=[job_pb2.VideoVariant(codec=codec_value, resolution=r) for r in resolutions],
    )


def parse_priority(name: str) -> job_pb2.Priority:
    if name.lower() not in PRIORITIES:
        raise SpecError(f"--priority {name!r}: one of economy, standard, premium")
    return job_pb2.Priority.Value("PRIORITY_" + name.upper())


def parse_qc_policy(name: str) -> job_pb2.QcPolicy:
    if name.lower() not in ("report", "fail"):
        raise SpecError(f"--qc-policy {name!r}: report or fail")
    return job_pb2.QcPolicy.Value("QC_POLICY_" + name.upper())


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--metadata {pair!r}: expected KEY=VALUE")
        metadata[key] = value
    return metadata


def load_spec(path: Path, message_type: type[M]) -> M:
    """A JSON or YAML file holding one message in Connect JSON field names."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"--spec {path}: {error.strerror or error}") from error
    try:
        if path.suffix.lower() == ".json":
            document: Any = json.loads(text)
        else:
            # YAML is a superset of JSON, so any other name reads both.
            document = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise SpecError(f"--spec {path}: not valid JSON or YAML: {error}") from error
    if not isinstance(document, dict):
        raise SpecError(
            f"--spec {path}: expected a mapping of {message_type.DESCRIPTOR.name} fields"
        )
    # The server's own strict reading: short enum names (`mp4`, `h264`) as in a request
    # body, and an unknown field or value named rather than dropped.
    try:
        return parse_document(document, message_type)
    except (InvalidArgument, RequestJsonError) as error:
        raise SpecError(f"--spec {path}: {error}") from error
