"""A worker the test plays by hand against a real server's WorkerService: it claims and
reports what the test decides (an honest result, a forged one, a failure), with the token a
cluster started with `settings={"KILN_WORKER_TOKEN": TOKEN}` expects."""

from __future__ import annotations

import grpc
import pytest
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

TOKEN = "played-worker-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


class PlayedWorker:
    """The test's side of the WorkerService."""

    def __init__(self, server) -> None:
        self.stub = worker_service_pb2_grpc.WorkerServiceStub(
            grpc.insecure_channel(server.worker_target)
        )

    def claim(self) -> wpb.Task:
        task = self.stub.ClaimTask(
            wpb.ClaimTaskRequest(worker_id="played", wait_seconds=5), metadata=AUTH
        ).task
        assert task.id, "no task was handed out"
        return task

    def complete(self, task: wpb.Task, **result) -> None:
        self.stub.CompleteTask(
            wpb.CompleteTaskRequest(task_id=task.id, lease_token=task.lease_token, **result),
            metadata=AUTH,
        )

    def refused(self, task: wpb.Task, **result) -> str:
        """Report a forged result; it must be refused. Returns the refusal message."""
        with pytest.raises(grpc.RpcError) as caught:
            self.complete(task, **result)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        return caught.value.details()
