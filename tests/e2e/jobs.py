"""Small helpers for creating and following jobs in end-to-end tests."""

from __future__ import annotations

from kiln.v1 import job_pb2, job_service_pb2


def mp4_output(
    resolution: str = "240p", codec: job_pb2.VideoCodec = job_pb2.VIDEO_CODEC_H264
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=codec, resolution=resolution)],
    )


QC_JSON = "qc.json"


def media_files(output: job_pb2.Output) -> list[job_pb2.OutputFile]:
    """An output's files but its qc.json, which every video and audio output has (docs/qc.md)."""
    return [file for file in output.files if file.path != QC_JSON]


def create_job(server, auth, input_url: str, outputs=None, **fields) -> job_pb2.Job:
    """Create over gRPC; one 240p H.264 MP4 output unless `outputs` says otherwise."""
    request = job_service_pb2.CreateRequest(
        input_url=input_url, outputs=outputs or [mp4_output()], **fields
    )
    return server.job_stub().Create(request, metadata=auth).job


def run_to_end(server, auth, job_id: str, timeout: float = 60) -> job_pb2.Job:
    """Watch the job to its `completed` event and return the terminal job."""
    events = list(
        server.job_stub().Watch(
            job_service_pb2.WatchRequest(id=job_id), metadata=auth, timeout=timeout
        )
    )
    return events[-1].completed.job
