"""Telling the server who this worker is (WorkerService/AnnounceWorker).

Every announcement doubles as a check that KILN_SERVER_ADDRESS names a worker listener: the
public gRPC port answers UNIMPLEMENTED to WorkerService calls, and a worker pointed there
would otherwise warn about failed claims once a second forever. It stops instead, saying what
to change — at the first announcement, or at the first one that gets an answer when the
server was unreachable at start. A server that is down or restarting (UNAVAILABLE) does not
hold the worker back: it starts, and announces itself once the server answers.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import socket
import subprocess
from collections.abc import Callable, Sequence
from functools import cache

import grpc
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from common.settings_env import BadSetting

log = logging.getLogger(__name__)

# Every kind this worker's code runs (worker.tasks.kinds).
TASK_KINDS = [kind for kind in wpb.TaskKind.values() if kind != wpb.TASK_KIND_UNSPECIFIED]


class NotAWorkerListener(BadSetting):
    """KILN_SERVER_ADDRESS answers, but not as a WorkerService: `kiln worker` exits 2."""


@cache
def kiln_version() -> str:
    try:
        return importlib.metadata.version("kiln")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@cache
def ffmpeg_encoders() -> tuple[str, ...]:
    """The encoders this machine's FFmpeg has (`ffmpeg -encoders`), for the fleet view."""
    try:
        listing = subprocess.run(
            ["ffmpeg", "-hide_banner", "-encoders"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    encoders = []
    # Rows look like " V....D libx264    libx264 H.264 / ...", after a legend ending "------".
    rows = listing.split("------", 1)[-1].splitlines()
    for row in rows:
        fields = row.split()
        if len(fields) >= 2 and len(fields[0]) == 6:
            encoders.append(fields[1])
    return tuple(sorted(encoders))


def announcement(
    worker_id: str,
    capacity: int,
    draining: bool,
    speeds: Sequence[wpb.EncodeSpeed] = (),
) -> wpb.AnnounceWorkerRequest:
    return wpb.AnnounceWorkerRequest(
        worker_id=worker_id,
        host=socket.gethostname()[:255],
        version=kiln_version()[:64],
        capacity=capacity,
        task_kinds=TASK_KINDS,
        encoders=list(ffmpeg_encoders()),
        state=wpb.WORKER_STATE_DRAINING if draining else wpb.WORKER_STATE_ACTIVE,
        speeds=speeds,
    )


async def announce_first(
    stub: worker_service_pb2_grpc.WorkerServiceStub,
    metadata: tuple,
    request: wpb.AnnounceWorkerRequest,
    address: str,
) -> bool:
    """The first announcement, tried once: True when the server took it, False when it is
    unreachable (a server restarting: the worker starts anyway and holds what it pulls, and
    `keep_announcing` tries again). A listener that is not a WorkerService raises
    NotAWorkerListener."""
    code = await _announce(stub, metadata, request)
    if code == grpc.StatusCode.OK:
        return True
    if code == grpc.StatusCode.UNIMPLEMENTED:
        raise not_a_worker_listener(address)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        # Said once, loudly; the worker goes on so that its refused claims take the
        # documented path (Pub/Sub messages handed back, then dead-lettered and their
        # jobs failed) rather than leaving them to wait unseen.
        log.error(
            "the server at %s refused this worker (%s): KILN_WORKER_TOKEN must be the server's",
            address,
            code.name,
        )
        return True
    log.warning("server at %s unreachable (%s) at start", address, code.name)
    return False


async def keep_announcing(
    stub: worker_service_pb2_grpc.WorkerServiceStub,
    metadata: tuple,
    current: Callable[[], wpb.AnnounceWorkerRequest],
    every_seconds: float,
    announced: bool,
    address: str,
) -> None:
    """Announces `current()` every `every_seconds` until cancelled (sooner, every second,
    while the first announcement has not got through); a missed one is only logged: the
    server judges a worker lost after a whole lease of silence. Raises NotAWorkerListener
    when the address answers as something else (the worker loop stops on it)."""
    while True:
        await asyncio.sleep(every_seconds if announced else min(every_seconds, 1.0))
        code = await _announce(stub, metadata, current())
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise not_a_worker_listener(address)
        if code == grpc.StatusCode.OK:
            announced = True
        else:
            log.warning("announcing this worker failed: %s", code.name)


async def announce_once(
    stub: worker_service_pb2_grpc.WorkerServiceStub,
    metadata: tuple,
    request: wpb.AnnounceWorkerRequest,
) -> bool:
    """One announcement outside the steady round (a new speed, draining): a failure is
    only logged; the announcer's next round says it again."""
    code = await _announce(stub, metadata, request)
    if code != grpc.StatusCode.OK:
        log.warning("announcing this worker failed: %s", code.name)
    return code == grpc.StatusCode.OK


def not_a_worker_listener(address: str) -> NotAWorkerListener:
    return NotAWorkerListener(
        f"KILN_SERVER_ADDRESS={address} answers, but not as kiln's worker "
        "listener (UNIMPLEMENTED): point it at the server's worker port "
        "(KILN_WORKER_PORT, 50052 by default), not its public gRPC port"
    )


async def _announce(
    stub: worker_service_pb2_grpc.WorkerServiceStub,
    metadata: tuple,
    request: wpb.AnnounceWorkerRequest,
) -> grpc.StatusCode:
    try:
        await stub.AnnounceWorker(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
