"""The public JobService: its use cases, each built once, in one value the adapters take.

The use cases live by concept: create.py (replays, admission, the insert), reads.py (Get,
List), controls.py (Confirm, Cancel, Retry, DeleteOutputs), watch.py, plan.py (PlanJob) and
playback_grants.py (CreatePlaybackGrant). JobService builds each once, names the method each
RPC calls, and carries them, with the PresetService's catalog (the one Create reads saved
presets from), from the composition root to the adapters.
"""

from __future__ import annotations

from kiln.v1 import job_service_pb2

from common.input_policy import InputPolicy
from common.storage.origins import Origins

from ..delivery.links import PlaybackLinks
from ..domain.errors import FailedPrecondition
from .controls import JobControls, RemoveOutputFiles
from .create import Admission, JobCreation
from .lifecycle import Lifecycle
from .plan import ExplainOutput, JobPlanning
from .playback_grants import GrantSettings, PlaybackGrants
from .presets import PresetCatalog
from .queue_eta import QueueEta
from .reads import JobMessages, JobReads
from .views import FileUrl
from .watch import JobWatch


class JobService:
    """Built from the server's parts (app.py; the tests the same way), each use case once,
    over one Lifecycle and one way of making a job's message."""

    def __init__(
        self,
        life: Lifecycle,
        policy: InputPolicy,
        *,
        file_url: FileUrl,
        playback: PlaybackLinks | None = None,
        remove_output_files: RemoveOutputFiles | None = None,
        origins: Origins | None = None,
        default_origin: str = "",
        webhook_policy: InputPolicy | None = None,
        explain: ExplainOutput | None = None,
        placeholders: dict[str, str] | None = None,
        grant_settings: GrantSettings | None = None,
        lease_seconds: float = 30.0,  # KILN_LEASE_SECONDS's default
    ) -> None:
        # A worker silent for a lease is lost: its slots and speeds no longer count.
        queue_eta = QueueEta(life.store, lease_seconds)
        messages = JobMessages(file_url, playback, origins, queue_eta=queue_eta)
        self.presets = PresetCatalog(life.store)
        admission = Admission(
            life.store,
            self.presets,
            policy,
            webhook_policy=webhook_policy,
            origins=origins,
            default_origin=default_origin,
        )
        self.creation = JobCreation(life.store, admission, messages, life.dispatch.tasks_ready)
        self.planning = JobPlanning(
            life.store,
            admission,
            chunking=life.chunking,
            table=life.pricing,
            explain=explain,
            placeholders=placeholders,
        )
        self.reads = JobReads(life.store, messages)
        self.controls = JobControls(life, messages, remove_output_files)
        self.watching = JobWatch(life.store, life.hub, messages)
        self.grants = None
        if grant_settings is not None and playback is not None:
            self.grants = PlaybackGrants(self.reads, grant_settings, playback.server_url)
        # The RPCs by name, as rpc_table.py and in-process callers (the integration tests,
        # without a transport) call them: the use cases' own methods, not wrappers, so the
        # routing is these lines and nothing runs in between.
        self.create = self.creation.create
        self.get = self.reads.get
        self.list = self.reads.list
        self.confirm = self.controls.confirm
        self.cancel = self.controls.cancel
        self.retry = self.controls.retry
        self.delete_outputs = self.controls.delete_outputs
        self.watch = self.watching.watch
        self.plan = self.planning.plan
        self.create_playback_grant = self.grants.create if self.grants is not None else _no_grants


async def _no_grants(
    organization_id: str, request: job_service_pb2.CreatePlaybackGrantRequest
) -> job_service_pb2.CreatePlaybackGrantResponse:
    raise FailedPrecondition("this server makes no playback grants (no playback URLs)")
