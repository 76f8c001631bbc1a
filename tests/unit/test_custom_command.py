"""The custom-command allowlist (common/custom_command*.py) and its use at Create."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from common.custom_command import MAX_ARG_LENGTH, check_custom_args, covered_seconds, describe
from common.custom_command_filters import VIDEO_FILTERS, filtergraph_problem
from common.input_policy import InputPolicy
from server.domain.errors import InvalidArgument
from server.domain.validation import validate_create
from tests.custom_cases import ALLOWED, HOSTILE, IN, OUT

T = job_pb2.OutputType


def test_there_are_at_least_thirty_hostile_lists():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(
    ("args", "index"), [(a, i) for _, a, i in HOSTILE], ids=[n for n, _, _ in HOSTILE]
)
def test_hostile_list_is_refused_naming_the_argument(args, index):
    violations = check_custom_args(args, "MP4")
    assert violations
    assert index in [violation.index for violation in violations]
    assert describe(violations).startswith("custom command refused: ")


@pytest.mark.parametrize(
    ("args", "kind"), [(a, k) for _, a, k in ALLOWED], ids=[n for n, _, _ in ALLOWED]
)
def test_allowed_list_passes(args, kind):
    assert check_custom_args(args, kind) == []


@pytest.mark.parametrize(
    "middle",
    [
        ["-c:v", "libx265", "-preset", "veryfast", "-tag:v", "hvc1"],
        ["-c", "copy", "-map", "0", "-map", "-0:s", "-map_metadata", "-1"],
        ["-vcodec", "libx264", "-acodec", "aac", "-profile:v", "high", "-level", "4.1"],
        ["-c:v", "libx264", "-g", "48", "-keyint_min", "48", "-sc_threshold", "0", "-bf", "2"],
        ["-c:v", "libx264", "-b:v", "1.5M", "-maxrate", "2M", "-bufsize", "4M", "-minrate", "1M"],
        ["-r", "30000/1001", "-s", "640x360", "-pix_fmt", "yuv420p", "-tune", "film"],
        ["-filter:v", "crop=iw/2:ih/2:0:0,pad=w=640:h=480:x=-1:y=-1:color=black,setsar=1"],
        ["-vf", "yadif,hflip,vflip,transpose=1,eq=contrast=1.1,hqdn3d,unsharp,format=yuv420p"],
        ["-af", "loudnorm=i=-16:tp=-1.5,atempo=1.25,aformat=sample_fmts=fltp|s16"],
        ["-ac", "2", "-ar", "48000", "-shortest", "-sn", "-dn", "-threads", "2"],
        ["-ss", "00:00:01.5", "-to", "3", "-strict", "experimental"],
    ],
)
def test_more_allowed_forms(middle):
    args = ["-i", IN, *middle, OUT]
    violations = check_custom_args(args, "MP4")
    if "-tag:v" in middle:
        # -tag is not on the list: refused like anything unlisted.
        assert [v.index for v in violations] == [middle.index("-tag:v") + 2]
    else:
        assert violations == []


def test_muxer_must_fit_the_output_type():
    assert check_custom_args(["-i", IN, "-f", "ipod", OUT], "M4A") == []
    assert check_custom_args(["-i", IN, "-f", "ogg", OUT], "OPUS") == []
    (violation,) = check_custom_args(["-i", IN, "-f", "mp4", OUT], "WEBM")
    assert violation.index == 3 and "-f webm" in violation.message


def test_output_types_outside_the_list_are_refused():
    (violation,) = check_custom_args(["-i", IN, OUT], "HLS")
    assert violation.index is None and "not HLS" in violation.message


def test_arguments_are_bounded():
    assert (
        check_custom_args(
            ["-i", IN, "-metadata", "title=" + "a" * (MAX_ARG_LENGTH - 6), OUT], "MP4"
        )
        == []
    )
    (too_long,) = check_custom_args(
        ["-i", IN, "-metadata", "title=" + "a" * MAX_ARG_LENGTH, OUT], "MP4"
    )
    assert too_long.index == 3
    assert check_custom_args([], "MP4")[0].index is None


@pytest.mark.parametrize(
    ("graph", "fragment"),
    [
        ("scale=320:240:bicubic:0:extra", "unexpected value"),
        ("scale=w=320:240", "unexpected value"),
        ("scale=", "empty argument"),
        ("scale@x=320:240", "not an allowed video filter"),
        ("sws_flags=bicubic;scale=320:240", "not an allowed video filter"),
        ("scale=w=../x", "look like paths"),
        ("scale=w=%{pts}", "no quotes"),
        ("scale=[in]", "no quotes"),
        ("volume=2", "not an allowed video filter"),
    ],
)
def test_filtergraph_refusals(graph, fragment):
    problem = filtergraph_problem(graph, VIDEO_FILTERS, "video")
    assert problem is not None and fragment in problem


def test_covered_seconds_follows_ss_t_and_to():
    assert covered_seconds(["-i", IN, OUT], 10) == 10
    assert covered_seconds(["-ss", "2", "-i", IN, "-t", "3", OUT], 10) == 3
    assert covered_seconds(["-ss", "8", "-i", IN, "-t", "5", OUT], 10) == 2
    assert covered_seconds(["-i", IN, "-ss", "1", "-to", "00:00:04", OUT], 10) == 3
    assert covered_seconds(["-ss", "12", "-i", IN, OUT], 10) == 0


# -- at Create ------------------------------------------------------------------------------


@pytest.fixture
def policy(tmp_path: Path) -> InputPolicy:
    (tmp_path / "in.mp4").write_bytes(b"\x00")
    return InputPolicy.from_lists([str(tmp_path)], [], [])


def custom_request(tmp_path: Path, args: list[str], **spec) -> job_service_pb2.CreateRequest:
    spec.setdefault("type", T.OUTPUT_TYPE_MP4)
    return job_service_pb2.CreateRequest(
        input_url=(tmp_path / "in.mp4").as_uri(),
        outputs=[
            job_pb2.OutputSpec(type=T.OUTPUT_TYPE_MP3, audio=job_pb2.AudioSpec()),
            job_pb2.OutputSpec(custom=job_pb2.CustomCommand(args=args), **spec),
        ],
    )


def create_violations(request, policy) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as raised:
        validate_create(request, policy, set())
    return [(v.field, v.description) for v in raised.value.violations]


def test_create_accepts_an_allowed_command(tmp_path, policy):
    validate_create(custom_request(tmp_path, ALLOWED[0][1]), policy, set())


def test_create_names_the_refused_argument(tmp_path, policy):
    request = custom_request(tmp_path, ["-i", IN, "-vf", "movie=/etc/passwd", OUT])
    ((field, description),) = create_violations(request, policy)
    assert field == "outputs[1].custom.args[3]"
    assert "movie" in description


def test_create_refuses_video_variants_and_other_settings_with_custom(tmp_path, policy):
    request = custom_request(
        tmp_path,
        ["-i", IN, OUT],
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)],
        clip=job_pb2.ClipSpec(start_seconds=1),
    )
    fields = [field for field, _ in create_violations(request, policy)]
    assert fields == ["outputs[1].video", "outputs[1].clip"]


def test_create_refuses_custom_on_an_adaptive_type(tmp_path, policy):
    request = custom_request(tmp_path, ["-i", IN, OUT], type=T.OUTPUT_TYPE_HLS)
    assert [f for f, _ in create_violations(request, policy)] == ["outputs[1].type"]


def test_create_refuses_custom_with_concatenated_inputs(tmp_path, policy):
    request = custom_request(tmp_path, ["-i", IN, OUT])
    request.concat_input_urls.append((tmp_path / "in.mp4").as_uri())
    assert "outputs[1].custom" in [f for f, _ in create_violations(request, policy)]


# -- after probing: duration, input fit, price ------------------------------------------------


def test_server_expects_and_prices_what_the_command_covers():
    from server.domain import pricing
    from server.domain.input_fit import input_problem
    from server.jobs.outcomes import output_seconds

    trimmed = job_pb2.OutputSpec(
        type=T.OUTPUT_TYPE_MP4,
        custom=job_pb2.CustomCommand(args=["-ss", "1", "-i", IN, "-t", "2", OUT]),
    )
    assert output_seconds(trimmed, 10.0) == 2.0
    video_only = job_pb2.InputInfo(
        duration_seconds=10, streams=[job_pb2.StreamInfo(kind="video", codec="h264")]
    )
    # A custom MP4 wants video, not audio: a silent input suits it.
    assert input_problem(video_only, [trimmed]) is None
    audio_only = job_pb2.InputInfo(
        duration_seconds=10, streams=[job_pb2.StreamInfo(kind="audio", codec="aac")]
    )
    problem = input_problem(audio_only, [trimmed])
    assert problem is not None and problem.code == "INPUT_NO_VIDEO"
    h264 = job_pb2.OutputSpec(
        type=T.OUTPUT_TYPE_MP4, video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)]
    )
    arguments = {"seconds": 60.0, "source_height": 720, "source_fps": 30.0, "priority": 0}
    assert pricing.output_cost(trimmed, **arguments) == pricing.output_cost(h264, **arguments)
