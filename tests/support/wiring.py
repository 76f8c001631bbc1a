"""The one way integration tests wire the server's use cases over a real Store.

Built as `server/app.py` builds them (a hub reading the job's log, the lifecycle, JobService
and TaskService over local storage), so a test exercises the composition the server runs.
What tests vary — lease length, attempts, the progress rate, the heartbeat, how the hub reads
the log, how file URLs are signed — are arguments, not a second copy of the wiring.
"""

from __future__ import annotations

from pathlib import Path

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.input_policy import InputPolicy
from common.storage.local import LocalStorage
from common.storage.origins import Origins
from common.storage.signing import UrlSigner
from server.dispatch.queue import QueueDispatch
from server.events.hub import EventHub, EventReader
from server.jobs.content_keys import OutputKeys
from server.jobs.lifecycle import Lifecycle
from server.jobs.service import JobService
from server.jobs.tasks import TaskService
from server.jobs.views import FileUrl
from server.secrets_keyring import SecretsKey, SecretsKeyring
from server.store.store import Store

from . import ORG
from .events import event_reader
from .qc_reports import QC_JSON, QC_JSON_SIZE, measured_qc, qc_file
from .specs import mp4_request


class Services:
    """One server process's use cases over `store`, with its files under `root`.

    The hub is not started here: only tests that watch or subscribe need its loop, and
    they start and stop it (the `service` fixture does). Several instances may share a
    store and a root, as replicas share a database.
    """

    def __init__(
        self,
        store: Store,
        root: Path,
        *,
        lease_seconds: float = 60.0,
        attempts: int = 3,
        progress_events_per_second: float = 2.0,
        heartbeat_seconds: float = 3600.0,
        read_events: EventReader | None = None,
        file_url: FileUrl | None = None,
    ) -> None:
        self.store = store
        self.root = root
        self.storage = LocalStorage(root / "storage")
        origins = Origins(
            self.storage, UrlSigner(b"secret", "http://127.0.0.1:1", 60), ttl_seconds=60
        )
        inputs = root / "inputs"
        inputs.mkdir(exist_ok=True)
        (inputs / "in.mp4").write_bytes(b"not needed: nothing probes it")
        self.input_url = f"file://{inputs / 'in.mp4'}"
        self.hub = EventHub(read_events or event_reader(store), heartbeat_seconds)
        self.life = Lifecycle(store, self.hub, QueueDispatch())
        file_url = file_url or origins.url
        self.jobs = JobService(
            self.life, InputPolicy.from_lists([str(inputs)], []), file_url=file_url
        )
        # Encrypted outputs' keys, sealed with a fixed test key.
        self.content_keys = OutputKeys(store, SecretsKeyring(SecretsKey("test", bytes(32))))
        self.tasks = TaskService(
            self.life,
            lease_seconds=lease_seconds,
            max_task_attempts=attempts,
            stored_sizes=origins.stored_sizes,
            progress_events_per_second=progress_events_per_second,
            content_keys=self.content_keys,
        )

    async def create(self) -> job_pb2.Job:
        async with self.store.transaction() as tx:
            await tx.keys.ensure_organization(ORG)
        return await self.jobs.create(ORG, mp4_request(self.input_url), "")

    async def claim(self) -> wpb.Task:
        task = await self.tasks.claim("w", wait_seconds=0)
        assert task is not None
        return task

    async def probed_transcode(self) -> tuple[job_pb2.Job, wpb.Task]:
        """A job through its probe, with its one transcode task leased."""
        job = await self.create()
        probe = await self.claim()
        await self.tasks.complete_task(self.probed(probe))
        task = await self.claim()
        assert task.kind == wpb.TASK_KIND_TRANSCODE and task.job_id == job.id
        return job, task

    def probed(self, probe: wpb.Task) -> wpb.CompleteTaskRequest:
        """The probe's result: a 2 s, 640x360 H.264 input."""
        info = job_pb2.InputInfo(
            duration_seconds=2.0,
            streams=[job_pb2.StreamInfo(kind="video", codec="h264", width=640, height=360,
                                        frame_rate=30.0)],
        )  # fmt: skip
        return wpb.CompleteTaskRequest(
            task_id=probe.id, lease_token=probe.lease_token, input_info=info
        )

    def finished(self, task: wpb.Task) -> wpb.CompleteTaskRequest:
        """The transcode's result, its file and QC report written where the worker would put
        them."""
        path = self.storage.path_for(f"{task.output_prefix}/output.mp4")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 512)
        path.with_name(QC_JSON).write_bytes(b"\0" * QC_JSON_SIZE)
        return wpb.CompleteTaskRequest(
            task_id=task.id,
            lease_token=task.lease_token,
            transcode=wpb.TranscodeResult(
                files=[job_pb2.OutputFile(path="output.mp4", size_bytes=512), qc_file()],
                encoded_seconds=2.0,
                qc=measured_qc(2.0),
            ),
        )
