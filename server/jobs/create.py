"""Create: idempotent replays, admission, and the group-committed insert.

A Create goes through three steps, each in one place:

1. Replay. With an idempotency key, a repeat is answered from the job the key made, before
   anything else: its answer must not change because a preset was deleted or a host's
   address moved since.
2. Admission (`Admission.admit`): every check of the request, gathering its violations by
   field path, and what to write when there are none, as one value (an `AdmittedJob`: the
   job as a `NewJob` value and its probe task; the store makes the rows).
3. Insert: that value goes to the group-commit batcher (create_batch.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from kiln.v1 import job_pb2, job_service_pb2

from common.input_policy import InputPolicy, InputRefused
from common.storage.origins import OriginRefused, Origins

from ..domain import ids, validation
from ..domain.errors import FieldViolation, InvalidArgument, NotFound
from ..domain.idempotency import check_replay, request_fingerprint
from ..domain.new_records import NewJob, NewOutput
from ..domain.presets import SYSTEM_PRESETS, resolve
from ..origins.directory import origin_reference
from ..store.store import IdempotencyKeyTaken, Store, now
from ..tracing import stamp_tasks
from . import task_plan
from .create_batch import AdmittedJob, CreateBatcher, TasksReady
from .presets import PresetCatalog
from .reads import JobMessages


@dataclass(frozen=True)
class CheckedRequest:
    """What the checks of a request found that its job is made of."""

    # The output origin: the request's, or the server's default.
    origin: str
    # The organization's saved presets the outputs name, by name.
    saved: dict[str, job_pb2.OutputSpec]
    # Where each output's files go (an origin reference, or "" for the job's output_origin).
    places: list[str]

    def specs(self, request: job_service_pb2.CreateRequest) -> list[job_pb2.OutputSpec]:
        """Each output's spec with its preset resolved, as the job stores it."""
        return [resolve(spec, self.saved) for spec in request.outputs]


class Admission:
    """Whether a Create may make its job, and the job's rows if it may.

    The checks, in order: the request's own fields (validation: syntax, recipes expanded,
    custom arguments, input URLs against the input policy), the output origin, the hosts of
    the inputs and the webhook (resolved off the event loop), and inputs naming another
    organization's outputs. Each reports every violation it finds, and runs only on a request
    the ones before it passed: a refused request costs no DNS lookup or database read, a host
    is looked up only once its URL parsed, and a request at fault in two places is answered
    with the first one's violations, as the API has always answered it.
    """

    def __init__(
        self,
        store: Store,
        presets: PresetCatalog,
        policy: InputPolicy,
        *,
        webhook_policy: InputPolicy | None = None,
        origins: Origins | None = None,
        default_origin: str = "",
    ) -> None:
        self.store = store
        self.presets = presets
        self.policy = policy
        # Webhook destinations: public hosts only, unless allowlisted (no file roots).
        self.webhook_policy = webhook_policy or InputPolicy.from_lists([], [])
        self.origins = origins
        self.default_origin = default_origin
        # Whether a file:// input inside the input roots can lie in the output storage.
        self.file_inputs_may_name_outputs = origins is not None and any(
            root == origins.local.root
            or root in origins.local.root.parents
            or origins.local.root in root.parents
            for root in policy.roots
        )

    async def admit(
        self,
        organization_id: str,
        request: job_service_pb2.CreateRequest,
        key: str | None,
        fingerprint: str,
    ) -> AdmittedJob:
        """The job to write, or InvalidArgument with the violations of the first failing check."""
        checked = await self.check(organization_id, request)
        return _new_job(organization_id, request, key, fingerprint, checked)

    async def check(
        self, organization_id: str, request: job_service_pb2.CreateRequest
    ) -> CheckedRequest:
        """Every check, in order (see the class); InvalidArgument with the violations of the
        first that fails. Writes nothing: PlanJob (plan.py) asks this too."""
        saved = await self.presets.saved_specs(
            organization_id, [output.preset for output in request.outputs if output.preset]
        )
        origin = request.output_origin or self.default_origin
        violations = self._request_violations(request, set(SYSTEM_PRESETS) | set(saved))
        if not violations:
            violations = self._origin_violations(origin)
        places: list[str] = []
        if not violations:
            violations, places = await self._origin_id_violations(organization_id, request, saved)
        if not violations:
            violations = await self._host_violations(request)
        if not violations:
            violations = await self._foreign_output_violations(organization_id, request)
        if violations:
            raise InvalidArgument(violations)
        return CheckedRequest(origin, saved, places)

    async def _origin_id_violations(
        self,
        organization_id: str,
        request: job_service_pb2.CreateRequest,
        saved: dict[str, job_pb2.OutputSpec],
    ) -> tuple[list[FieldViolation], list[str]]:
        """The organization's origins the request names, each fit for its use; and where
        each output's files go (an origin reference, or "" for the job's output_origin).
        An origin id of another organization is NotFound, like an unknown one."""
        output_ids = [
            output.output_origin_id
            or (saved.get(output.preset) or job_pb2.OutputSpec()).output_origin_id
            or request.output_origin_id
            for output in request.outputs
        ]
        named = {request.input_origin_id, request.output_origin_id, *output_ids} - {""}
        if not named:
            return [], ["" for _ in request.outputs]
        async with self.store.reading() as tx:
            rows = {
                origin_id: await tx.origins.origin_by_id(organization_id, origin_id)
                for origin_id in sorted(named)
            }
        for origin_id, row in rows.items():
            if row is None:
                raise NotFound(f"origin {origin_id!r} not found")
        violations = []
        if request.input_origin_id:
            row = rows[request.input_origin_id]
            assert row is not None
            if row.use == "output":
                violations.append(
                    FieldViolation("input_origin_id", f"origin {row.id} is for outputs only")
                )
        for index, origin_id in enumerate(output_ids):
            row = rows.get(origin_id)
            if row is not None and row.use == "input":
                where = (
                    f"outputs[{index}].output_origin_id"
                    if request.outputs[index].output_origin_id
                    else "output_origin_id"
                )
                violations.append(FieldViolation(where, f"origin {row.id} is for inputs only"))
        prefix = request.output_path_prefix.strip("/")
        places = [
            origin_reference(origin_id, prefix) if origin_id else "" for origin_id in output_ids
        ]
        return violations, places

    def _request_violations(
        self, request: job_service_pb2.CreateRequest, known_presets: set[str]
    ) -> list[FieldViolation]:
        # Validation raises with its whole list; taken back as a list, like the other checks'.
        try:
            validation.validate_create(request, self.policy, known_presets)
        except InvalidArgument as invalid:
            return invalid.violations
        return []

    def _origin_violations(self, origin: str) -> list[FieldViolation]:
        if self.origins is None:
            return []
        try:
            self.origins.check(origin)
        except OriginRefused as refused:
            return [FieldViolation("output_origin", str(refused))]
        return []

    async def _host_violations(
        self, request: job_service_pb2.CreateRequest
    ) -> list[FieldViolation]:
        """Resolve http(s) hosts off the event loop; refuse private destinations."""
        violations = []
        checks = [("input_url", request.input_url, self.policy)] + [
            (f"concat_input_urls[{i}]", url, self.policy)
            for i, url in enumerate(request.concat_input_urls)
        ]
        checks += [(path, url, self.policy) for path, url in overlay_image_urls(request)]
        if request.webhook_url:
            checks.append(("webhook_url", request.webhook_url, self.webhook_policy))
        for path, url, policy in checks:
            try:
                if _resolves_a_name(url):
                    await asyncio.to_thread(policy.check_resolved, url)
                elif policy is not self.policy:
                    # No DNS to wait for: checked here, without a thread hop. (An input's
                    # syntax was checked by validate_create with this very policy.)
                    policy.check_resolved(url)
            except InputRefused as refused:
                violations.append(FieldViolation(path, str(refused)))
        return violations

    async def _foreign_output_violations(
        self, organization_id: str, request: job_service_pb2.CreateRequest
    ) -> list[FieldViolation]:
        """An input inside kiln's own output storage must belong to one of the caller's jobs:
        one organization never reads another's renditions by naming them as input."""
        if self.origins is None:
            return []
        inputs = [("input_url", request.input_url)] + [
            (f"concat_input_urls[{i}]", url) for i, url in enumerate(request.concat_input_urls)
        ]
        # An overlay image is read like an input, so it may not name another's outputs either.
        inputs += overlay_image_urls(request)
        if not self.file_inputs_may_name_outputs:
            # Validation resolved each file:// input inside an input root, and no input root
            # overlaps the output storage: none can name outputs (no second path resolution).
            inputs = [(path, url) for path, url in inputs if not url.startswith("file:")]
        owners = {path: self.origins.output_job_ids(url) for path, url in inputs}
        named = {job_id for job_ids in owners.values() for job_id in job_ids}
        if not named:
            return []
        async with self.store.transaction() as tx:
            own = await tx.jobs.jobs_of_organization(organization_id, sorted(named))
        return [
            FieldViolation(path, "names output storage of a job that is not one of yours")
            for path, job_ids in owners.items()
            if not job_ids <= own
        ]


def overlay_image_urls(request: job_service_pb2.CreateRequest) -> list[tuple[str, str]]:
    """(field path, URL) of every image overlay of the request's inline outputs."""
    return [
        (f"outputs[{index}].overlays[{position}].image.url", overlay.image.url)
        for index, output in enumerate(request.outputs)
        for position, overlay in enumerate(output.overlays)
        if overlay.image.url
    ]


class JobCreation:
    def __init__(
        self,
        store: Store,
        admission: Admission,
        messages: JobMessages,
        tasks_ready: TasksReady,
    ) -> None:
        self.store = store
        self.admission = admission
        self.messages = messages
        # Concurrent Creates share a transaction (group commit).
        self.creates = CreateBatcher(store, tasks_ready)

    async def create(
        self, organization_id: str, request: job_service_pb2.CreateRequest, header_key: str
    ) -> job_pb2.Job:
        key = idempotency_key(request, header_key)
        # Only a keyed Create is ever compared with another: no fingerprint without a key.
        fingerprint = request_fingerprint(request) if key else ""
        if key and (first := await self._job_for_key(organization_id, key, fingerprint)):
            return first
        new = await self.admission.admit(organization_id, request, key, fingerprint)
        try:
            record = await self.creates.insert(new)
        except IdempotencyKeyTaken as taken:
            # A Create with the same key committed between our look-up and our insert, and
            # ours rolled back: answer as if we had arrived after it.
            first = await self._job_for_key(organization_id, taken.key, fingerprint)
            if first is None:
                raise  # jobs are never deleted, so the winner cannot have vanished
            return first
        return await self.messages.message(record)

    async def _job_for_key(
        self, organization_id: str, key: str, fingerprint: str
    ) -> job_pb2.Job | None:
        """The job this key already made, if any; AlreadyExists if made from another request."""
        async with self.store.transaction() as tx:
            existing = await tx.jobs.job_by_idempotency_key(organization_id, key)
        if existing is None:
            return None
        check_replay(key, existing.job.id, existing.job.request_hash, fingerprint)
        return await self.messages.message(existing)


def idempotency_key(request: job_service_pb2.CreateRequest, header_key: str) -> str | None:
    """The request's idempotency key (the field wins over the header), checked."""
    key = request.idempotency_key or header_key or None
    if key and len(key) > validation.MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument([FieldViolation("idempotency_key", "at most 128 characters")])
    return key


def _new_job(
    organization_id: str,
    request: job_service_pb2.CreateRequest,
    key: str | None,
    fingerprint: str,
    checked: CheckedRequest,
) -> AdmittedJob:
    """An admitted request's job, its outputs (each with its resolved spec) and the probe
    task that starts it."""
    job = NewJob(
        id=ids.job_id(),
        organization_id=organization_id,
        priority=request.priority or job_pb2.PRIORITY_STANDARD,
        delayed_start=request.delayed_start,
        input_url=request.input_url,
        concat_input_urls=tuple(request.concat_input_urls),
        metadata=dict(request.metadata),
        webhook_url=request.webhook_url,
        idempotency_key=key,
        request_hash=fingerprint or None,
        output_origin=checked.origin,
        input_origin_id=request.input_origin_id,
        input_path=request.input_path,
        output_origin_id=request.output_origin_id,
        output_path_prefix=request.output_path_prefix.strip("/"),
        created_at=now(),
        qc_policy=request.qc_policy,
        outputs=tuple(
            NewOutput(
                id=ids.output_id(),
                position=position,
                spec=spec.SerializeToString(),
                origin=checked.places[position],
            )
            for position, spec in enumerate(checked.specs(request))
        ),
    )
    # Stamped here, in the caller's trace: the batch is written from another task.
    (probe,) = stamp_tasks([task_plan.probe_task(job.id, job.priority)])
    return AdmittedJob(job, probe)


def _resolves_a_name(url: str) -> bool:
    """Whether checking `url` looks a host name up (the one slow, blocking part)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False  # the check itself refuses it, quickly
    if parts.scheme.lower() not in ("http", "https") or not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False
