"""What a worker holds instead of an organization's credentials.

A task whose input or output is on an organization's origin reaches the worker with a
presigned URL of the input and a flag saying its outputs go through grants; the worker then
asks GrantTransfers for one presigned URL per file, each for a name under that task's own
output prefix, while it holds the lease. URLs are signed here with the origin's keys and
never stored.
"""

from __future__ import annotations

import asyncio

from kiln.worker.v1 import worker_service_pb2

from common.storage.grants import TransferGrant
from common.storage.keys import safe_relative_path
from common.storage.origins import Origins

from ..domain.errors import FieldViolation, InvalidArgument, StaleLease
from ..domain.states import TaskStatus
from ..origins.directory import ServerOrigins, is_origin_reference, output_origin_of
from ..store.store import Store

# Names one GrantTransfers may ask for: a ladder of a few hours has a few thousand segments.
MAX_GRANTED_PATHS = 10_000


def output_prefix(job_id: str, output_id: str) -> str:
    """Where an output's files live in storage; a worker may write nowhere else."""
    return f"{job_id}/{output_id}"


class OriginTransfers:
    def __init__(self, store: Store, files: Origins | None) -> None:
        self.store = store
        # None only in unit wiring that never meets an origin.
        self.files = files

    async def hand_out(
        self, message: worker_service_pb2.Task, input_origin_id: str, input_path: str
    ) -> None:
        """Replace what names an organization's origin in a claimed task by what a worker
        may hold: a presigned URL of the input, and `storage_grants` for its output. Made
        after the claim's commit."""
        if self.files is None:
            return
        output_on_origin = is_origin_reference(message.output_origin)
        if not input_origin_id and not output_on_origin:
            return
        await self.files.ensure([input_origin_id, message.output_origin])
        if input_origin_id:
            assert isinstance(self.files, ServerOrigins)
            message.input_url = self.files.input_url(input_origin_id, input_path)
            # Text tracks on the same origin are read like the input: through a presigned URL.
            for track in message.output_spec.text_tracks:
                if track.origin_path:
                    track.url = self.files.input_url(input_origin_id, track.origin_path)
                    track.origin_path = ""
        if output_on_origin:
            message.output_origin = ""
            message.storage_grants = True

    async def grant(
        self, request: worker_service_pb2.GrantTransfersRequest
    ) -> worker_service_pb2.GrantTransfersResponse:
        """Presigned URLs for files under the leased task's own output prefix, nothing else."""
        _check_paths(request)
        async with self.store.reading() as tx:
            task = await tx.tasks.leased_task(request.task_id, request.lease_token)
            if task.status != TaskStatus.LEASED or task.output_id is None:
                raise StaleLease(f"task {request.task_id} is not leased for an output")
            record = await tx.jobs.get_job(None, task.job_id)
        output = next(o for o in record.outputs if o.id == task.output_id)
        origin = output_origin_of(record.job, output)
        files = self.files
        if not is_origin_reference(origin) or not isinstance(files, ServerOrigins):
            raise InvalidArgument(
                [FieldViolation("task_id", "the task's output is not on an origin: no grants")]
            )
        await files.ensure([origin])
        puts, gets, expires = await asyncio.to_thread(
            files.grants,
            origin,
            output_prefix(record.job.id, output.id),
            list(request.put_paths),
            list(request.get_paths),
        )
        response = worker_service_pb2.GrantTransfersResponse(
            puts=[_grant_message(grant) for grant in puts],
            gets=[_grant_message(grant) for grant in gets],
        )
        response.expire_time.FromDatetime(expires)
        return response


def _check_paths(request: worker_service_pb2.GrantTransfersRequest) -> None:
    paths = [*request.put_paths, *request.get_paths]
    if len(paths) > MAX_GRANTED_PATHS:
        raise InvalidArgument(
            [FieldViolation("put_paths", f"at most {MAX_GRANTED_PATHS} names in all")]
        )
    violations = [
        FieldViolation(
            "put_paths" if i < len(request.put_paths) else "get_paths",
            f"{path!r} is not a file name inside the output",
        )
        for i, path in enumerate(paths)
        if not safe_relative_path(path)
    ]
    if violations:
        raise InvalidArgument(violations[:10])


def _grant_message(grant: TransferGrant) -> worker_service_pb2.TransferGrant:
    return worker_service_pb2.TransferGrant(
        path=grant.path, method=grant.method, url=grant.url, headers=grant.headers
    )
