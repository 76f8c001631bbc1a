"""How a task's run ends for the server: its result, its error, or the task given back."""

from __future__ import annotations

import asyncio
import logging

import grpc
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from .tracing import rpc_metadata

log = logging.getLogger(__name__)

COMPLETE_ATTEMPTS = 4
# What a finished task hands back, one message per kind: a probe the input's description, a
# transcode or merge its files, a chunk or audio piece its files and renditions.
TaskResult = job_pb2.InputInfo | wpb.TranscodeResult | wpb.ChunkResult


class Reporter:
    def __init__(self, stub: worker_service_pb2_grpc.WorkerServiceStub, metadata: tuple) -> None:
        self.stub = stub
        self.metadata = metadata

    async def complete(self, task: wpb.Task, result: TaskResult) -> None:
        request = wpb.CompleteTaskRequest(task_id=task.id, lease_token=task.lease_token)
        if isinstance(result, job_pb2.InputInfo):
            request.input_info.CopyFrom(result)
        elif isinstance(result, wpb.ChunkResult):
            request.chunk.CopyFrom(result)
        else:
            request.transcode.CopyFrom(result)
        await self._send(task, request)

    async def fail(self, task: wpb.Task, error: job_pb2.JobError) -> None:
        await self._send(
            task,
            wpb.CompleteTaskRequest(task_id=task.id, lease_token=task.lease_token, error=error),
        )

    async def grant_transfers(
        self, task: wpb.Task, put_paths: list[str], get_paths: list[str]
    ) -> wpb.GrantTransfersResponse:
        """Presigned URLs for the task's files on an organization's origin (the worker never
        holds the origin's keys)."""
        return await self.stub.GrantTransfers(
            wpb.GrantTransfersRequest(
                task_id=task.id,
                lease_token=task.lease_token,
                put_paths=put_paths,
                get_paths=get_paths,
            ),
            metadata=rpc_metadata(self.metadata, task),
            timeout=30,
        )

    async def release(self, task: wpb.Task, reason: str) -> None:
        """Gives the task back unfinished: the server queues it again at once."""
        try:
            await self.stub.ReleaseTask(
                wpb.ReleaseTaskRequest(
                    task_id=task.id, lease_token=task.lease_token, reason=reason
                ),
                metadata=rpc_metadata(self.metadata, task),
                timeout=10,
            )
            log.info("task %s given back to the server (%s)", task.id, reason)
        except grpc.aio.AioRpcError as error:
            # The lease then expires and the reaper requeues it: slower, nothing lost.
            log.warning("giving back task %s failed: %s", task.id, error.code().name)

    async def _send(self, task: wpb.Task, request: wpb.CompleteTaskRequest) -> None:
        """Reports the end of a task, retrying a slow or unreachable server.

        A finished encode is worth a few tries: giving up would let the lease expire and
        the whole task run again. A repeat is harmless, since the server ignores a result
        for a task that is no longer leased.
        """
        for attempt in range(1, COMPLETE_ATTEMPTS + 1):
            try:
                await self.stub.CompleteTask(
                    request, metadata=rpc_metadata(self.metadata, task), timeout=30
                )
                return
            except grpc.aio.AioRpcError as error:
                retriable = error.code() in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNAVAILABLE,
                )
                if not retriable or attempt == COMPLETE_ATTEMPTS:
                    raise
                log.warning("reporting task %s failed (%s); retrying", task.id, error.code().name)
                await asyncio.sleep(attempt)
