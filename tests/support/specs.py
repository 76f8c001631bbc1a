"""Create requests that integration tests build over and over."""

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
