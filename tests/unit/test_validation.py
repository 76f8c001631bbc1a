"""validate_create: every violation at once, each with its proto-style path and a plain reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from common.input_policy import InputPolicy, InputRefused
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.presets import SYSTEM_PRESETS
from server.domain.validation import validate_create

T = job_pb2.OutputType
V = job_pb2.VideoCodec
PRESETS = set(SYSTEM_PRESETS)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    (media / "in.mp4").write_bytes(b"\x00")
    return media


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(b"\x00")
    return secret


@pytest.fixture
def policy(root: Path) -> InputPolicy:
    return InputPolicy.from_lists([str(root)], [], ["bucket"])


def mp4(codec: job_pb2.VideoCodec = V.VIDEO_CODEC_H264, resolution: str = "") -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=T.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=codec, resolution=resolution)],
    )


def request_for(root: Path, **fields) -> job_service_pb2.CreateRequest:
    fields.setdefault("input_url", (root / "in.mp4").as_uri())
    fields.setdefault("outputs", [mp4()])
    return job_service_pb2.CreateRequest(**fields)


def violations_of(request, policy: InputPolicy) -> list[FieldViolation]:
    with pytest.raises(InvalidArgument) as raised:
        validate_create(request, policy, PRESETS)
    assert raised.value.violations, "InvalidArgument without violations"
    return raised.value.violations


def only_violation(request, policy: InputPolicy) -> FieldViolation:
    violations = violations_of(request, policy)
    assert len(violations) == 1, violations
    return violations[0]


# -- valid requests -------------------------------------------------------------------


def test_minimal_request_passes(root, policy):
    validate_create(request_for(root), policy, PRESETS)


@pytest.mark.parametrize("resolution", ["720p", "2160p", "1280x720", "16x16", "8192x8192"])
def test_valid_resolutions_pass(root, policy, resolution):
    validate_create(request_for(root, outputs=[mp4(resolution=resolution)]), policy, PRESETS)


def test_preset_output_and_full_optional_fields_pass(root, policy):
    request = request_for(
        root,
        outputs=[job_pb2.OutputSpec(preset="h264_720p_standard"), mp4(resolution="1080p")],
        priority=job_pb2.PRIORITY_PREMIUM,
        metadata={f"k{i}": "v" * 1024 for i in range(20)} | {"k" * 64: "x"},
        webhook_url="https://hooks.example.com/kiln",
        idempotency_key="a" * 128,
    )
    del request.metadata["k0"]  # back to exactly 20 pairs
    assert len(request.metadata) == 20
    validate_create(request, policy, PRESETS)


def test_ten_outputs_pass(root, policy):
    validate_create(request_for(root, outputs=[mp4()] * 10), policy, PRESETS)


# -- outputs --------------------------------------------------------------------------


def test_no_outputs(root, policy):
    violation = only_violation(request_for(root, outputs=[]), policy)
    assert violation.field == "outputs"
    assert "at least one output" in violation.description


def test_eleven_outputs(root, policy):
    violation = only_violation(request_for(root, outputs=[mp4()] * 11), policy)
    assert violation.field == "outputs"
    assert "at most 10" in violation.description
    assert "11" in violation.description


def test_unknown_codec(root, policy):
    violation = only_violation(request_for(root, outputs=[mp4(codec=99)]), policy)
    assert violation.field == "outputs[0].video[0].codec"
    assert violation.description == "unknown codec 99"


def test_unspecified_codec(root, policy):
    violation = only_violation(
        request_for(root, outputs=[mp4(), mp4(codec=V.VIDEO_CODEC_UNSPECIFIED)]), policy
    )
    assert violation.field == "outputs[1].video[0].codec"
    assert violation.description == "is required"


def test_codec_not_allowed_in_container(root, policy):
    violation = only_violation(request_for(root, outputs=[mp4(codec=V.VIDEO_CODEC_VP9)]), policy)
    assert violation.field == "outputs[0].video[0].codec"
    assert "VP9" in violation.description
    assert "MP4" in violation.description


def test_second_variant_path_is_indexed(root, policy):
    output = mp4()
    output.video.add(codec=V.VIDEO_CODEC_VP9)
    violations = violations_of(request_for(root, outputs=[output]), policy)
    fields = {violation.field for violation in violations}
    # MP4 takes one variant, and VP9 cannot go in MP4: both are reported.
    assert fields == {"outputs[0].video", "outputs[0].video[1].codec"}


def av1_ladder(output_type: job_pb2.OutputType, **fields) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[
            job_pb2.VideoVariant(codec=V.VIDEO_CODEC_AV1, resolution="360p"),
            job_pb2.VideoVariant(codec=V.VIDEO_CODEC_H264, resolution="240p"),
        ],
        **fields,
    )


FMP4 = job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)


@pytest.mark.parametrize(
    "output",
    [
        mp4(codec=V.VIDEO_CODEC_AV1),
        av1_ladder(job_pb2.OUTPUT_TYPE_HLS, hls=FMP4),
        av1_ladder(job_pb2.OUTPUT_TYPE_CMAF),
        av1_ladder(job_pb2.OUTPUT_TYPE_DASH),
    ],
    ids=["mp4", "hls-fmp4", "cmaf", "dash"],
)
def test_av1_is_accepted_where_players_take_it(root, policy, output):
    validate_create(request_for(root, outputs=[output]), policy, PRESETS)


def test_av1_in_ts_hls_is_refused_with_the_way_out(root, policy):
    violation = only_violation(
        request_for(root, outputs=[av1_ladder(job_pb2.OUTPUT_TYPE_HLS)]), policy
    )
    assert violation.field == "outputs[0].video[0].codec"
    assert violation.description == (
        "AV1 in HLS needs fMP4 segments: set hls.segment_format to HLS_SEGMENT_FORMAT_FMP4"
    )


def test_av1_stays_out_of_mov(root, policy):
    output = mp4(codec=V.VIDEO_CODEC_AV1)
    output.type = job_pb2.OUTPUT_TYPE_MOV
    violation = only_violation(request_for(root, outputs=[output]), policy)
    assert violation.description == "AV1 cannot be used in MOV"


@pytest.mark.parametrize(
    ("resolution", "reason"),
    [
        ("999", "WxH"),
        ("abc", "WxH"),
        ("1081x720", "even"),
        ("1280x721", "even"),
        ("0x0", "between 16 and 8192"),
        ("9000x9000", "between 16 and 8192"),
        ("8194x720", "between 16 and 8192"),
    ],
)
def test_bad_resolution(root, policy, resolution, reason):
    violation = only_violation(request_for(root, outputs=[mp4(resolution=resolution)]), policy)
    assert violation.field == "outputs[0].video[0].resolution"
    assert reason in violation.description


def test_resolution_with_trailing_newline_is_refused(root, policy):
    # "$" in the resolution pattern also matches before a final newline.
    violation = only_violation(request_for(root, outputs=[mp4(resolution="1280x720\n")]), policy)
    assert violation.field == "outputs[0].video[0].resolution"


def test_unknown_preset_and_preset_mixed_with_inline(root, policy):
    mixed = job_pb2.OutputSpec(preset="h264_720p_standard", type=T.OUTPUT_TYPE_MP4)
    unknown = job_pb2.OutputSpec(preset="nope")
    violations = violations_of(request_for(root, outputs=[mixed, unknown]), policy)
    assert [v.field for v in violations] == ["outputs[0]", "outputs[1].preset"]
    assert "either preset or an inline spec" in violations[0].description
    assert "'nope'" in violations[1].description


# -- metadata -------------------------------------------------------------------------


def test_too_many_metadata_pairs(root, policy):
    request = request_for(root, metadata={f"k{i}": "v" for i in range(21)})
    violation = only_violation(request, policy)
    assert violation.field == "metadata"
    assert "at most 20" in violation.description


def test_metadata_key_too_long(root, policy):
    key = "k" * 65
    violation = only_violation(request_for(root, metadata={key: "v"}), policy)
    assert violation.field == f"metadata[{key!r}]"
    assert "1 to 64 characters" in violation.description


def test_metadata_value_too_long(root, policy):
    violation = only_violation(request_for(root, metadata={"k": "v" * 1025}), policy)
    assert violation.field == "metadata['k']"
    assert "at most 1024" in violation.description


# -- inputs ---------------------------------------------------------------------------


def test_missing_input_url(root, policy):
    violation = only_violation(request_for(root, input_url=""), policy)
    assert violation.field == "input_url"
    assert violation.description == "is required"


def test_ftp_input_refused(root, policy):
    violation = only_violation(request_for(root, input_url="ftp://example.com/in.mp4"), policy)
    assert violation.field == "input_url"
    assert "'ftp'" in violation.description
    assert "https://" in violation.description


def test_file_outside_roots(root, policy, outside):
    violation = only_violation(request_for(root, input_url=outside.as_uri()), policy)
    assert violation.field == "input_url"
    assert "outside the allowed input roots" in violation.description


def test_file_dotdot_escaping_root(root, policy, outside):
    url = f"file://{root}/../outside/{outside.name}"
    violation = only_violation(request_for(root, input_url=url), policy)
    assert violation.field == "input_url"
    assert "outside the allowed input roots" in violation.description


def test_file_dotdot_staying_inside_root_passes(root, policy):
    (root / "sub").mkdir()
    validate_create(request_for(root, input_url=f"file://{root}/sub/../in.mp4"), policy, PRESETS)


def test_symlink_escaping_root(root, policy, outside):
    link = root / "link.mp4"
    link.symlink_to(outside)
    directory_link = root / "elsewhere"
    directory_link.symlink_to(outside.parent, target_is_directory=True)
    request = request_for(
        root,
        input_url=link.as_uri(),
        concat_input_urls=[(directory_link / outside.name).as_uri()],
    )
    violations = violations_of(request, policy)
    assert [v.field for v in violations] == ["input_url", "concat_input_urls[0]"]
    assert all("outside the allowed input roots" in v.description for v in violations)


def test_symlink_inside_root_passes(root, policy):
    link = root / "alias.mp4"
    link.symlink_to(root / "in.mp4")
    validate_create(request_for(root, input_url=link.as_uri()), policy, PRESETS)


def test_file_with_host_refused(root, policy):
    violation = only_violation(
        request_for(root, input_url=f"file://fileserver{root}/in.mp4"), policy
    )
    assert violation.field == "input_url"
    assert "host" in violation.description


def test_file_inputs_disabled_without_roots(root):
    violation = only_violation(request_for(root), InputPolicy.from_lists([], []))
    assert violation.field == "input_url"
    assert "KILN_INPUT_ROOTS" in violation.description


PRIVATE_URLS = [
    "http://127.0.0.1/in.mp4",
    "http://10.0.0.1/in.mp4",
    "http://[::1]/in.mp4",
    "https://192.168.1.20:8443/in.mp4",
    "http://169.254.169.254/latest/meta-data",
    "http://[::ffff:127.0.0.1]/in.mp4",
    "http://0.0.0.0/in.mp4",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_and_loopback_hosts_refused(root, policy, url):
    violation = only_violation(request_for(root, input_url=url), policy)
    assert violation.field == "input_url"
    assert "private or loopback" in violation.description
    assert "KILN_INPUT_ALLOW_HOSTS" in violation.description


def test_cloud_metadata_in_shared_address_space_refused(policy):
    # 100.64.0.0/10 is neither private nor global; 100.100.100.200 is a cloud
    # metadata endpoint, which the policy promises to refuse.
    with pytest.raises(InputRefused):
        policy.check_syntax("http://100.100.100.200/latest/meta-data")


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1/in.mp4", "127.0.0.1"),
        ("http://10.0.0.1/in.mp4", "10.0.0.1"),
        ("http://10.0.0.1/in.mp4", "10.0.0.0/8"),
        ("http://[::1]/in.mp4", "::1"),
        ("http://[::1]/in.mp4", "::1/128"),
        ("http://192.168.1.20/in.mp4", "192.168.0.0/16"),
    ],
)
def test_allowlisted_private_hosts_pass(root, url, allow):
    policy = InputPolicy.from_lists([str(root)], [allow])
    validate_create(request_for(root, input_url=url), policy, PRESETS)


def test_allowlist_does_not_open_other_addresses(root):
    policy = InputPolicy.from_lists([str(root)], ["10.0.0.0/8", "media.internal"])
    validate_create(request_for(root, input_url="http://10.200.3.4/in.mp4"), policy, PRESETS)
    violation = only_violation(request_for(root, input_url="http://127.0.0.1/in.mp4"), policy)
    assert violation.field == "input_url"
    assert "private or loopback" in violation.description
    # An allowlisted address is exact, not a prefix.
    single = InputPolicy.from_lists([str(root)], ["10.0.0.1"])
    violation = only_violation(request_for(root, input_url="http://10.0.0.10/in.mp4"), single)
    assert violation.field == "input_url"


@pytest.mark.parametrize(
    "url",
    ["https://example.com/in.mp4", "http://93.184.216.34/in.mp4", "gs://bucket/in.mp4"],
)
def test_public_inputs_pass(root, policy, url):
    validate_create(request_for(root, input_url=url), policy, PRESETS)


def test_gs_inputs_only_from_configured_input_buckets(root, policy):
    violation = only_violation(request_for(root, input_url="gs://other-bucket/in.mp4"), policy)
    assert violation.field == "input_url"
    assert "KILN_GCS_INPUT_BUCKETS" in violation.description
    closed = InputPolicy.from_lists([str(root)], [])
    with pytest.raises(InputRefused):
        closed.check_syntax("gs://bucket/in.mp4")


# -- many at once ---------------------------------------------------------------------


def test_several_violations_reported_at_once(root, policy):
    request = request_for(
        root,
        input_url="ftp://example.com/in.mp4",
        concat_input_urls=[(root / "in.mp4").as_uri(), "http://10.0.0.1/b.mp4"],
        outputs=[mp4(codec=99), mp4(resolution="1081x720"), mp4(codec=V.VIDEO_CODEC_VP9)],
        metadata={"k" * 65: "v"},
        priority=42,
    )
    violations = violations_of(request, policy)
    assert [v.field for v in violations] == [
        "input_url",
        "concat_input_urls[1]",
        "outputs[0].video[0].codec",
        "outputs[1].video[0].resolution",
        "outputs[2].video[0].codec",
        "priority",
        f"metadata[{'k' * 65!r}]",
    ]
    assert all(v.description for v in violations)


def test_message_summarises_every_violation(root, policy):
    request = request_for(root, input_url="", outputs=[])
    with pytest.raises(InvalidArgument) as raised:
        validate_create(request, policy, PRESETS)
    assert raised.value.violations == [
        FieldViolation("input_url", "is required"),
        FieldViolation("outputs", "at least one output is required"),
    ]
    assert "input_url: is required" in raised.value.message
    assert "outputs: at least one output is required" in raised.value.message


# -- image series ----------------------------------------------------------------------


def image(kind: job_pb2.OutputType, **thumbnail) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(type=kind, thumbnail=job_pb2.ThumbnailSpec(**thumbnail))


def test_image_series_pass(root, policy):
    outputs = [
        image(T.OUTPUT_TYPE_JPG, mode=job_pb2.THUMBNAIL_MODE_INTERVAL, interval_seconds=2),
        image(
            T.OUTPUT_TYPE_PNG, mode=job_pb2.THUMBNAIL_MODE_TIMESTAMPS, timestamps_seconds=[0, 1.5]
        ),
        image(
            T.OUTPUT_TYPE_WEBP, mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=1, columns=4
        ),
    ]
    validate_create(request_for(root, outputs=outputs), policy, PRESETS)


@pytest.mark.parametrize(
    ("output", "field", "reason"),
    [
        (
            image(T.OUTPUT_TYPE_GIF, mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=1),
            "mode",
            "GIF",
        ),
        (
            image(T.OUTPUT_TYPE_JPG, mode=job_pb2.THUMBNAIL_MODE_INTERVAL, interval_seconds=0.01),
            "interval_seconds",
            "at least 0.1",
        ),
        (
            image(
                T.OUTPUT_TYPE_JPG, mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=float("inf")
            ),
            "interval_seconds",
            "finite",
        ),
        (
            image(T.OUTPUT_TYPE_JPG, mode=job_pb2.THUMBNAIL_MODE_SPRITE),
            "interval_seconds",
            "required",
        ),
        (
            image(
                T.OUTPUT_TYPE_JPG,
                mode=job_pb2.THUMBNAIL_MODE_TIMESTAMPS,
                timestamps_seconds=[1, float("nan")],
            ),
            "timestamps_seconds",
            "finite",
        ),
        (image(T.OUTPUT_TYPE_JPG, time_seconds=float("nan")), "time_seconds", "finite"),
        (
            image(
                T.OUTPUT_TYPE_JPG,
                mode=job_pb2.THUMBNAIL_MODE_SPRITE,
                interval_seconds=1,
                columns=21,
            ),
            "columns",
            "between 1 and 20",
        ),
    ],
)
def test_bad_image_series_are_refused(root, policy, output, field, reason):
    violation = only_violation(request_for(root, outputs=[output]), policy)
    assert violation.field == f"outputs[0].thumbnail.{field}"
    assert reason in violation.description
