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


def series(mode: job_pb2.ThumbnailMode, interval: float, **clip) -> job_pb2.OutputSpec:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_JPG,
        thumbnail=job_pb2.ThumbnailSpec(mode=mode, interval_seconds=interval),
    )
    if clip:
        spec.clip.CopyFrom(job_pb2.ClipSpec(**clip))
    return spec


def test_an_image_series_may_make_at_most_a_thousand_images():
    film = job_pb2.InputInfo(streams=[VIDEO, AUDIO], duration_seconds=7200)
    for mode in (job_pb2.THUMBNAIL_MODE_INTERVAL, job_pb2.THUMBNAIL_MODE_SPRITE):
        problem = input_problem(film, [MP4, series(mode, 1.0)])
        assert problem is not None and problem.code == "INPUT_TOO_LONG"
        assert "outputs[1]: 7200 images" in problem.message
        # Exactly the limit passes; so does the same interval over a clip of the film.
        assert input_problem(film, [series(mode, 7.2)]) is None
        assert (
            input_problem(film, [series(mode, 1.0, start_seconds=60, duration_seconds=600)]) is None
        )
    # No interval: the worker's default of one image every 10 s.
    assert input_problem(film, [series(job_pb2.THUMBNAIL_MODE_INTERVAL, 0)]) is None
    assert (
        input_problem(
            job_pb2.InputInfo(streams=[VIDEO], duration_seconds=20000),
            [series(job_pb2.THUMBNAIL_MODE_INTERVAL, 0)],
        ).code
        == "INPUT_TOO_LONG"
    )
