"""Rows to kiln.v1 messages. The only place that knows both shapes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from ..delivery.links import PlaybackLinks
from ..store.database import aware
from ..store.store import JobSnapshot, OutputRow
from . import eta, variant_costs

STATUS_PREFIX = "JOB_STATUS_"
OUTPUT_STATUS_PREFIX = "OUTPUT_STATUS_"

log = logging.getLogger(__name__)

# (origin, job_id, output_id, path) -> (url, expiry): one file's download URL.
FileUrl = Callable[[str, str, str, str], tuple[str, datetime]]


def job_status_enum(status: str) -> job_pb2.JobStatus:
    return job_pb2.JobStatus.Value(STATUS_PREFIX + status)


def job_status_name(value: int) -> str:
    return job_pb2.JobStatus.Name(value).removeprefix(STATUS_PREFIX)


def output_status_enum(status: str) -> job_pb2.OutputStatus:
    return job_pb2.OutputStatus.Value(OUTPUT_STATUS_PREFIX + status)


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def money(micros: int | None, currency: str) -> job_pb2.Money | None:
    if micros is None:
        return None
    return job_pb2.Money(micros=micros, currency=currency)


# {output id: seconds left} told from the queue and the fleet's speed (queue_eta.py).
QueueEstimates = Mapping[str, float | None]


def output_eta(
    output: OutputRow, moment: datetime, queued: QueueEstimates | None = None
) -> float | None:
    """From the output's own rate once it has one, else from the queue's estimates."""
    own = eta.output_eta(output.status, output.progress, aware(output.running_since), moment)
    if own is not None or queued is None or output.status not in eta.UNFINISHED:
        return own
    return queued.get(output.id)


def job_eta(
    record: JobSnapshot, moment: datetime, queued: QueueEstimates | None = None
) -> float | None:
    outputs = record.outputs
    return eta.job_eta(
        record.job.status, ((o.status, output_eta(o, moment, queued)) for o in outputs)
    )


def needs_queue(record: JobSnapshot, moment: datetime) -> bool:
    outputs = record.outputs
    return eta.needs_queue(record.job.status, ((o.status, output_eta(o, moment)) for o in outputs))


def output_message(
    output: OutputRow,
    currency: str,
    moment: datetime | None = None,
    queued: QueueEstimates | None = None,
) -> job_pb2.Output:
    """With `moment` (now, as the message is handed out), an unfinished output's ETA too
    (with `queued`, also one still waiting or just started)."""
    message = job_pb2.Output(
        id=output.id,
        spec=job_pb2.OutputSpec.FromString(output.spec),
        status=output_status_enum(output.status),
        progress=output.progress,
        # The origin's id, without the job's path prefix (Job.output_path_prefix holds it).
        origin_id=output.origin.partition("/")[0],
    )
    if (estimated := money(output.estimated_cost_micros, currency)) is not None:
        message.estimated_cost.CopyFrom(estimated)
    if (actual := money(output.actual_cost_micros, currency)) is not None:
        message.actual_cost.CopyFrom(actual)
    message.variant_pricing.extend(
        variant_costs.variant_messages(output.variant_pricing, message.spec, currency)
    )
    if message.spec.HasField("encryption"):
        requested = message.spec.encryption
        message.encryption.scheme = requested.scheme
        message.encryption.rotate_every_segments = requested.rotate_every_segments
        message.encryption.key_ids.extend(output.content_key_ids or ())
    if output.error:
        message.error.ParseFromString(output.error)
    if moment is not None and (left := output_eta(output, moment, queued)) is not None:
        message.eta_seconds = left
    if output.qc:
        message.qc.ParseFromString(output.qc)
    if output.result:
        result = worker_service_pb2.TranscodeResult.FromString(output.result)
        message.notes.extend(result.notes)
        message.quality.extend(result.quality)
        if result.HasField("loudness"):
            message.loudness.CopyFrom(result.loudness)
        message.track_loudness.extend(result.track_loudness)
        message.files.extend(result.files)
    return message


def output_place(job: job_pb2.Job, output: job_pb2.Output) -> str:
    """Where an output's files are, as the Origins name it: the output's origin with the
    job's path prefix, else the job's output_origin ("" for local storage)."""
    if not output.origin_id:
        return job.output_origin
    prefix = job.output_path_prefix
    return f"{output.origin_id}/{prefix}" if prefix else output.origin_id


def add_links(
    job: job_pb2.Job,
    file_url: FileUrl | None,
    playback: PlaybackLinks | None = None,
    public_base_url: Callable[[str], str] | None = None,
) -> None:
    """Give each file its download URL and each output its playback URL, in place.

    Links are made when a message is handed out, never stored: a logged event must not
    carry expired links.
    """
    for output in job.outputs:
        for file in output.files:
            if file_url is None:
                break
            try:
                url, expires = file_url(output_place(job, output), job.id, output.id, file.path)
            except FileNotFoundError:
                # The output's origin was deleted: its files cannot be reached any more.
                break
            except ValueError:
                # Never sign a key outside this output's prefix (results are checked when
                # recorded; this guards rows written before that check existed).
                log.error("not signing unsafe path %r of %s", file.path, output.id)
                continue
            file.url = url
            file.url_expire_time.FromDatetime(expires)
        if playback is None:
            continue
        public = public_base_url(output_place(job, output)) if public_base_url else ""
        link = playback.link(
            job.id,
            output.id,
            job.attempt,
            [file.path for file in output.files],
            public,
            # An encrypted output's playlists are rewritten per viewer, by kiln.
            through_kiln=output.spec.HasField("encryption"),
        )
        if link is None:
            continue
        output.playback_url = link.url
        output.playback_base_url = link.base_url
        if link.expires is not None:
            output.playback_url_expire_time.FromDatetime(link.expires)


def job_message(
    record: JobSnapshot,
    file_url: FileUrl | None = None,
    playback: PlaybackLinks | None = None,
    public_base_url: Callable[[str], str] | None = None,
    moment: datetime | None = None,
    queued: QueueEstimates | None = None,
) -> job_pb2.Job:
    """The job as one read type: a direct read's snapshot, or a transaction's JobRecord
    through its snapshot(). With `moment` (now, as the message is handed out), the ETAs of a
    running job too, and with `queued` those of its outputs that wait."""
    job = record.job
    message = job_pb2.Job(
        id=job.id,
        status=job_status_enum(job.status),
        stage=cast(job_pb2.JobStage, job.stage),
        progress=job.progress,
        priority=cast(job_pb2.Priority, job.priority),
        delayed_start=job.delayed_start,
        input_url=job.input_url,
        concat_input_urls=job.concat_input_urls,
        outputs=[output_message(output, job.currency, moment, queued) for output in record.outputs],
        metadata=job.job_metadata,
        webhook_url=job.webhook_url,
        attempt=job.attempt,
        idempotency_key=job.idempotency_key or "",
        output_origin=job.output_origin,
        input_origin_id=job.input_origin_id,
        input_path=job.input_path,
        output_origin_id=job.output_origin_id,
        output_path_prefix=job.output_path_prefix,
        qc_policy=cast(job_pb2.QcPolicy, job.qc_policy or job_pb2.QC_POLICY_REPORT),
    )
    if moment is not None and (left := job_eta(record, moment, queued)) is not None:
        message.eta_seconds = left
    if job.input_info:
        message.input_info.ParseFromString(job.input_info)
    if job.error:
        message.error.ParseFromString(job.error)
    if (estimated := money(job.estimated_cost_micros, job.currency)) is not None:
        message.estimated_cost.CopyFrom(estimated)
    if (actual := money(job.actual_cost_micros, job.currency)) is not None:
        message.actual_cost.CopyFrom(actual)
    for field, stamped_at in (
        ("create_time", job.created_at),
        ("probe_time", job.probed_at),
        ("confirm_time", job.confirmed_at),
        ("start_time", job.started_at),
        ("complete_time", job.completed_at),
        ("update_time", job.updated_at),
    ):
        if (stamp := timestamp(stamped_at)) is not None:
            getattr(message, field).CopyFrom(stamp)
    add_links(message, file_url, playback, public_base_url)
    return message
