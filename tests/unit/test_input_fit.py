"""The server's post-probe check that an input can serve the job's outputs."""

from __future__ import annotations

from kiln.v1 import job_pb2

from server.domain.input_fit import input_problem

VIDEO = job_pb2.StreamInfo(kind="video", codec="h264", width=640, height=360)
UNKNOWN_VIDEO = job_pb2.StreamInfo(kind="video", codec="", width=640, height=360)
AUDIO = job_pb2.StreamInfo(kind="audio", codec="aac", channels=2)
MP4 = job_pb2.OutputSpec(
    type=job_pb2.OUTPUT_TYPE_MP4, video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)]
)
MP3 = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)
JPG = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_JPG)


def code(streams, specs) -> str | None:
    problem = input_problem(job_pb2.InputInfo(streams=streams, duration_seconds=2), specs)
    return problem.code if problem else None


def test_input_with_what_outputs_need_passes():
    assert code([VIDEO, AUDIO], [MP4, MP3, JPG]) is None
    assert code([VIDEO], [MP4]) is None  # no audio is fine: the output has none either
    assert code([AUDIO], [MP3]) is None


def test_video_or_image_output_needs_a_video_stream():
    assert code([AUDIO], [MP4]) == "INPUT_NO_VIDEO"
    assert code([AUDIO], [JPG]) == "INPUT_NO_VIDEO"


def test_video_streams_nobody_can_decode_are_unsupported():
    assert code([UNKNOWN_VIDEO, AUDIO], [MP4]) == "INPUT_UNSUPPORTED_CODEC"
    assert code([UNKNOWN_VIDEO, VIDEO], [MP4]) is None


def test_audio_only_outputs_need_an_audio_stream():
    assert code([VIDEO], [MP3]) == "INPUT_NO_AUDIO"
