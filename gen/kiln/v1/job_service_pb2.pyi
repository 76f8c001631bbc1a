import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kiln.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanTaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_TASK_KIND_UNSPECIFIED: _ClassVar[PlanTaskKind]
    PLAN_TASK_KIND_PROBE: _ClassVar[PlanTaskKind]
    PLAN_TASK_KIND_TRANSCODE: _ClassVar[PlanTaskKind]
    PLAN_TASK_KIND_CHUNK: _ClassVar[PlanTaskKind]
    PLAN_TASK_KIND_AUDIO: _ClassVar[PlanTaskKind]
    PLAN_TASK_KIND_MERGE: _ClassVar[PlanTaskKind]
PLAN_TASK_KIND_UNSPECIFIED: PlanTaskKind
PLAN_TASK_KIND_PROBE: PlanTaskKind
PLAN_TASK_KIND_TRANSCODE: PlanTaskKind
PLAN_TASK_KIND_CHUNK: PlanTaskKind
PLAN_TASK_KIND_AUDIO: PlanTaskKind
PLAN_TASK_KIND_MERGE: PlanTaskKind

class CreateRequest(_message.Message):
    __slots__ = ("input_url", "concat_input_urls", "outputs", "priority", "delayed_start", "metadata", "webhook_url", "idempotency_key", "output_origin", "input_origin_id", "input_path", "output_origin_id", "output_path_prefix", "qc_policy")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INPUT_URL_FIELD_NUMBER: _ClassVar[int]
    CONCAT_INPUT_URLS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DELAYED_START_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    INPUT_ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    QC_POLICY_FIELD_NUMBER: _ClassVar[int]
    input_url: str
    concat_input_urls: _containers.RepeatedScalarFieldContainer[str]
    outputs: _containers.RepeatedCompositeFieldContainer[_job_pb2.OutputSpec]
    priority: _job_pb2.Priority
    delayed_start: bool
    metadata: _containers.ScalarMap[str, str]
    webhook_url: str
    idempotency_key: str
    output_origin: str
    input_origin_id: str
    input_path: str
    output_origin_id: str
    output_path_prefix: str
    qc_policy: _job_pb2.QcPolicy
    def __init__(self, input_url: _Optional[str] = ..., concat_input_urls: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Iterable[_Union[_job_pb2.OutputSpec, _Mapping]]] = ..., priority: _Optional[_Union[_job_pb2.Priority, str]] = ..., delayed_start: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ..., webhook_url: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., output_origin: _Optional[str] = ..., input_origin_id: _Optional[str] = ..., input_path: _Optional[str] = ..., output_origin_id: _Optional[str] = ..., output_path_prefix: _Optional[str] = ..., qc_policy: _Optional[_Union[_job_pb2.QcPolicy, str]] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "offset", "statuses")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    offset: int
    statuses: _containers.RepeatedScalarFieldContainer[_job_pb2.JobStatus]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., offset: _Optional[int] = ..., statuses: _Optional[_Iterable[_Union[_job_pb2.JobStatus, str]]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ConfirmRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ConfirmResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class RetryRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class DeleteOutputsRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteOutputsResponse(_message.Message):
    __slots__ = ("job", "deleted_files")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DELETED_FILES_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    deleted_files: int
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., deleted_files: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("id", "after_sequence")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_sequence: int
    def __init__(self, id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class SnapshotEvent(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class StatusChangeEvent(_message.Message):
    __slots__ = ("from_status", "to_status", "stage", "error")
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    from_status: _job_pb2.JobStatus
    to_status: _job_pb2.JobStatus
    stage: _job_pb2.JobStage
    error: _job_pb2.JobError
    def __init__(self, from_status: _Optional[_Union[_job_pb2.JobStatus, str]] = ..., to_status: _Optional[_Union[_job_pb2.JobStatus, str]] = ..., stage: _Optional[_Union[_job_pb2.JobStage, str]] = ..., error: _Optional[_Union[_job_pb2.JobError, _Mapping]] = ...) -> None: ...

class ProgressEvent(_message.Message):
    __slots__ = ("progress", "stage", "eta_seconds")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    progress: float
    stage: _job_pb2.JobStage
    eta_seconds: float
    def __init__(self, progress: _Optional[float] = ..., stage: _Optional[_Union[_job_pb2.JobStage, str]] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class OutputEvent(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: _job_pb2.Output
    def __init__(self, output: _Optional[_Union[_job_pb2.Output, _Mapping]] = ...) -> None: ...

class HeartbeatEvent(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CompletedEvent(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("sequence", "time", "snapshot", "status_change", "progress", "output", "heartbeat", "completed")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    snapshot: SnapshotEvent
    status_change: StatusChangeEvent
    progress: ProgressEvent
    output: OutputEvent
    heartbeat: HeartbeatEvent
    completed: CompletedEvent
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., snapshot: _Optional[_Union[SnapshotEvent, _Mapping]] = ..., status_change: _Optional[_Union[StatusChangeEvent, _Mapping]] = ..., progress: _Optional[_Union[ProgressEvent, _Mapping]] = ..., output: _Optional[_Union[OutputEvent, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatEvent, _Mapping]] = ..., completed: _Optional[_Union[CompletedEvent, _Mapping]] = ...) -> None: ...

class PlanJobRequest(_message.Message):
    __slots__ = ("request", "input")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    request: CreateRequest
    input: _job_pb2.InputInfo
    def __init__(self, request: _Optional[_Union[CreateRequest, _Mapping]] = ..., input: _Optional[_Union[_job_pb2.InputInfo, _Mapping]] = ...) -> None: ...

class PlanJobResponse(_message.Message):
    __slots__ = ("input", "tasks", "outputs", "estimated_cost", "placeholders")
    class PlaceholdersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDERS_FIELD_NUMBER: _ClassVar[int]
    input: _job_pb2.InputInfo
    tasks: _containers.RepeatedCompositeFieldContainer[PlanTask]
    outputs: _containers.RepeatedCompositeFieldContainer[PlanOutput]
    estimated_cost: _job_pb2.Money
    placeholders: _containers.ScalarMap[str, str]
    def __init__(self, input: _Optional[_Union[_job_pb2.InputInfo, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[PlanTask, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[PlanOutput, _Mapping]]] = ..., estimated_cost: _Optional[_Union[_job_pb2.Money, _Mapping]] = ..., placeholders: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PlanOutput(_message.Message):
    __slots__ = ("output_index", "estimated_cost", "chunked", "notes")
    OUTPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    CHUNKED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    output_index: int
    estimated_cost: _job_pb2.Money
    chunked: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, output_index: _Optional[int] = ..., estimated_cost: _Optional[_Union[_job_pb2.Money, _Mapping]] = ..., chunked: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanTask(_message.Message):
    __slots__ = ("index", "kind", "output_index", "chunk", "after", "commands", "notes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    kind: PlanTaskKind
    output_index: int
    chunk: PlanChunk
    after: _containers.RepeatedScalarFieldContainer[int]
    commands: _containers.RepeatedCompositeFieldContainer[PlanCommand]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., kind: _Optional[_Union[PlanTaskKind, str]] = ..., output_index: _Optional[int] = ..., chunk: _Optional[_Union[PlanChunk, _Mapping]] = ..., after: _Optional[_Iterable[int]] = ..., commands: _Optional[_Iterable[_Union[PlanCommand, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanChunk(_message.Message):
    __slots__ = ("index", "count", "start_seconds", "end_seconds")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    count: int
    start_seconds: float
    end_seconds: float
    def __init__(self, index: _Optional[int] = ..., count: _Optional[int] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class PlanCommand(_message.Message):
    __slots__ = ("argv", "filter_graphs")
    ARGV_FIELD_NUMBER: _ClassVar[int]
    FILTER_GRAPHS_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    filter_graphs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., filter_graphs: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePlaybackGrantRequest(_message.Message):
    __slots__ = ("id", "output_id", "ttl", "expire_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    output_id: str
    ttl: _duration_pb2.Duration
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., output_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PlaybackGrant(_message.Message):
    __slots__ = ("output_id", "playback_url", "playback_url_expire_time", "key_token", "key_token_expire_time", "key_url_prefix", "clearkey_license_url", "encryption")
    OUTPUT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_URL_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_URL_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_TOKEN_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_URL_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CLEARKEY_LICENSE_URL_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_FIELD_NUMBER: _ClassVar[int]
    output_id: str
    playback_url: str
    playback_url_expire_time: _timestamp_pb2.Timestamp
    key_token: str
    key_token_expire_time: _timestamp_pb2.Timestamp
    key_url_prefix: str
    clearkey_license_url: str
    encryption: _job_pb2.OutputEncryption
    def __init__(self, output_id: _Optional[str] = ..., playback_url: _Optional[str] = ..., playback_url_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_token: _Optional[str] = ..., key_token_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_url_prefix: _Optional[str] = ..., clearkey_license_url: _Optional[str] = ..., encryption: _Optional[_Union[_job_pb2.OutputEncryption, _Mapping]] = ...) -> None: ...

class CreatePlaybackGrantResponse(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[PlaybackGrant]
    def __init__(self, grants: _Optional[_Iterable[_Union[PlaybackGrant, _Mapping]]] = ...) -> None: ...
