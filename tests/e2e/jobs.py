"""Small helpers for creating and following jobs in end-to-end tests."""

from __future__ import annotations

import grpc
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
    """Watch the job to its `completed` event and return the terminal job.

    A Watch that runs out of time fails with what Get says of the job then: a job still
    running (slow, or a task run again) and a finished job whose stream never ended are
    different bugs, and a bare DEADLINE_EXCEEDED told them apart in neither case."""
    try:
        events = list(
            server.job_stub().Watch(
                job_service_pb2.WatchRequest(id=job_id), metadata=auth, timeout=timeout
            )
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        raise AssertionError(
            f"Watch of {job_id} ended by its {timeout:g} s deadline; Get says: "
            f"{job_summary(server, auth, job_id)}"
        ) from error
    return events[-1].completed.job


def job_summary(server, auth, job_id: str) -> str:
    """The job's status, stage, progress and each output's status, for a failure message."""
    job = (
        server.job_stub().Get(job_service_pb2.GetRequest(id=job_id), metadata=auth, timeout=10).job
    )
    outputs = ", ".join(
        f"{output.id} {job_pb2.OutputStatus.Name(output.status)}" for output in job.outputs
    )
    status, stage = job_pb2.JobStatus.Name(job.status), job_pb2.JobStage.Name(job.stage)
    return f"{status} ({stage}) at {job.progress:.0f} % (outputs: {outputs})"
