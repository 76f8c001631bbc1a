"""Create requests that tests build over and over."""

from __future__ import annotations

from typing import Any

from kiln.v1 import job_pb2, job_service_pb2


def mp4_request(input_url: str, **fields: Any) -> job_service_pb2.CreateRequest:
    """One 240p H.264 MP4 output: the smallest job that runs a probe and one transcode."""
    return job_service_pb2.CreateRequest(
        input_url=input_url,
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
            )
        ],
        **fields,
    )


def transcodely_body(input_url: str) -> dict[str, Any]:
    """Transcodely's documented Create body, verbatim but for its origin ids (`ori_…` ids are
    per deployment, so a test that wants them creates origins first and adds the fields): the
    short enum spellings (`mp4`, `h264`, `standard`, `fmp4`) its users paste."""
    return {
        "input_url": input_url,
        "outputs": [
            {
                "type": "mp4",
                "video": [{"codec": "h264", "resolution": "1080p", "quality": "standard"}],
            },
            {
                "type": "webm",
                "video": [{"codec": "vp9", "resolution": "720p", "quality": "economy"}],
            },
            {
                "type": "hls",
                "video": [
                    {"codec": "h264", "resolution": "1080p", "quality": "standard"},
                    {"codec": "h264", "resolution": "720p", "quality": "standard"},
                    {"codec": "h264", "resolution": "480p", "quality": "standard"},
                ],
                "hls": {"segment_format": "fmp4"},
            },
            {"preset": "h264_1080p_standard"},
        ],
        "priority": "standard",
        "delayed_start": True,
        "metadata": {"user_id": "usr_12345", "campaign": "summer-2026"},
    }
