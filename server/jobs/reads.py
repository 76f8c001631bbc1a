"""Get and List: a job as its owner sees it, and the owner's jobs a page at a time.

Also the one way every JobService use case turns a stored job into its message, links
included (JobMessages): Create, the controls and Watch answer with the same message a Get
would give.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from kiln.v1 import job_pb2, job_service_pb2

from common.storage.origins import Origins

from ..delivery.links import PlaybackLinks
from ..domain.errors import FieldViolation, InvalidArgument
from ..domain.states import JobStatus
from ..origins.directory import ServerOrigins
from ..store.database import now
from ..store.store import JobRecord, JobSnapshot, Store
from . import views
from .paging import page_limit, page_size_violation
from .queue_eta import QueueEta
from .views import FileUrl

DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class JobMessages:
    """How a job is handed out: links are signed at that moment, never stored. Outputs on
    an organization's origin are signed with its keys, loaded first (`origins.ensure`)."""

    file_url: FileUrl
    playback: PlaybackLinks | None = None
    origins: Origins | None = None
    # The moment a message is handed out, for the ETAs in it.
    clock: Callable[[], datetime] = now
    # Estimates of outputs that wait (None: from their own rate only).
    queue_eta: QueueEta | None = None

    async def message(self, record: JobRecord | JobSnapshot) -> job_pb2.Job:
        """The answer for a job a transaction holds (its rows) or a direct read gave."""
        snapshot = record.snapshot() if isinstance(record, JobRecord) else record
        await self._load_origins(output.origin for output in snapshot.outputs)
        moment = self.clock()
        queued = None
        if self.queue_eta is not None and views.needs_queue(snapshot, moment):
            queued = await self.queue_eta.estimates(moment)
        return views.job_message(
            snapshot, self.file_url, self.playback, self._public_base_url, moment, queued
        )

    async def add_links(self, job: job_pb2.Job) -> None:
        await self._load_origins(views.output_place(job, output) for output in job.outputs)
        views.add_links(job, self.file_url, self.playback, self._public_base_url)

    async def _load_origins(self, places: Iterable[str]) -> None:
        if self.origins is not None:
            await self.origins.ensure([place for place in places if place])

    def _public_base_url(self, place: str) -> str:
        origins = self.origins
        return origins.public_base_url(place) if isinstance(origins, ServerOrigins) else ""


class JobReads:
    """Get and List, read directly (no transaction): a read takes no lock."""

    def __init__(self, store: Store, messages: JobMessages) -> None:
        self.store = store
        self.messages = messages

    async def get(self, organization_id: str, job_id: str) -> job_pb2.Job:
        return await self.messages.message(await self.store.read_job(organization_id, job_id))

    async def list(
        self, organization_id: str, request: job_service_pb2.ListRequest
    ) -> job_service_pb2.ListResponse:
        violations = []
        if (bad_size := page_size_violation(request.page_size, DEFAULT_PAGE_SIZE)) is not None:
            violations.append(bad_size)
        if request.offset < 0:
            violations.append(FieldViolation("offset", "must not be negative"))
        statuses = []
        for index, status in enumerate(request.statuses):
            if status not in job_pb2.JobStatus.values() or status == 0:
                violations.append(FieldViolation(f"statuses[{index}]", f"unknown status {status}"))
            else:
                statuses.append(JobStatus(views.job_status_name(status)))
        before = None
        if request.page_token:
            before = _decode_page_token(request.page_token)
            if before is None:
                violations.append(FieldViolation("page_token", "is not a token this server issued"))
        if violations:
            raise InvalidArgument(violations)
        limit = page_limit(request.page_size, DEFAULT_PAGE_SIZE)
        async with self.store.reading() as tx:
            records = await tx.jobs.list_jobs(
                organization_id, statuses, limit + 1, request.offset, before
            )
        response = job_service_pb2.ListResponse(
            jobs=[await self.messages.message(record) for record in records[:limit]]
        )
        if len(records) > limit:
            last = records[limit - 1].job
            response.next_page_token = _encode_page_token(last.created_at, last.id)
        return response


# A job page token is the position after the page's last job (newest first): its creation
# time and id, so a page does not shift when jobs are created while a client pages.
def _encode_page_token(created: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{job_id}".encode()).decode()


def _decode_page_token(token: str) -> tuple[datetime, str] | None:
    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError):
        return None
