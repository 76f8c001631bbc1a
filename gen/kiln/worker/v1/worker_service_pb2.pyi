import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kiln.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_PROBE: _ClassVar[TaskKind]
    TASK_KIND_TRANSCODE: _ClassVar[TaskKind]
    TASK_KIND_CHUNK: _ClassVar[TaskKind]
    TASK_KIND_AUDIO: _ClassVar[TaskKind]
    TASK_KIND_MERGE: _ClassVar[TaskKind]

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_ACTIVE: _ClassVar[WorkerState]
    WORKER_STATE_DRAINING: _ClassVar[WorkerState]
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_PROBE: TaskKind
TASK_KIND_TRANSCODE: TaskKind
TASK_KIND_CHUNK: TaskKind
TASK_KIND_AUDIO: TaskKind
TASK_KIND_MERGE: TaskKind
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_ACTIVE: WorkerState
WORKER_STATE_DRAINING: WorkerState

class Task(_message.Message):
    __slots__ = ("id", "kind", "job_id", "output_id", "input_url", "concat_input_urls", "output_spec", "input_info", "lease_token", "lease_seconds", "output_prefix", "output_origin", "traceparent", "chunk", "merge", "storage_grants", "encryption")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_URL_FIELD_NUMBER: _ClassVar[int]
    CONCAT_INPUT_URLS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SPEC_FIELD_NUMBER: _ClassVar[int]
    INPUT_INFO_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_GRANTS_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: TaskKind
    job_id: str
    output_id: str
    input_url: str
    concat_input_urls: _containers.RepeatedScalarFieldContainer[str]
    output_spec: _job_pb2.OutputSpec
    input_info: _job_pb2.InputInfo
    lease_token: int
    lease_seconds: float
    output_prefix: str
    output_origin: str
    traceparent: str
    chunk: ChunkRange
    merge: MergePlan
    storage_grants: bool
    encryption: TaskEncryption
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., job_id: _Optional[str] = ..., output_id: _Optional[str] = ..., input_url: _Optional[str] = ..., concat_input_urls: _Optional[_Iterable[str]] = ..., output_spec: _Optional[_Union[_job_pb2.OutputSpec, _Mapping]] = ..., input_info: _Optional[_Union[_job_pb2.InputInfo, _Mapping]] = ..., lease_token: _Optional[int] = ..., lease_seconds: _Optional[float] = ..., output_prefix: _Optional[str] = ..., output_origin: _Optional[str] = ..., traceparent: _Optional[str] = ..., chunk: _Optional[_Union[ChunkRange, _Mapping]] = ..., merge: _Optional[_Union[MergePlan, _Mapping]] = ..., storage_grants: _Optional[bool] = ..., encryption: _Optional[_Union[TaskEncryption, _Mapping]] = ...) -> None: ...

class TaskEncryption(_message.Message):
    __slots__ = ("scheme", "rotate_every_segments", "keys")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    ROTATE_EVERY_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    scheme: _job_pb2.EncryptionScheme
    rotate_every_segments: int
    keys: _containers.RepeatedCompositeFieldContainer[ContentKey]
    def __init__(self, scheme: _Optional[_Union[_job_pb2.EncryptionScheme, str]] = ..., rotate_every_segments: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[ContentKey, _Mapping]]] = ...) -> None: ...

class ContentKey(_message.Message):
    __slots__ = ("key_id", "key", "uri", "first_segment")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    key: bytes
    uri: str
    first_segment: int
    def __init__(self, key_id: _Optional[bytes] = ..., key: _Optional[bytes] = ..., uri: _Optional[str] = ..., first_segment: _Optional[int] = ...) -> None: ...

class ChunkRange(_message.Message):
    __slots__ = ("index", "count", "start_seconds", "end_seconds", "first_segment", "timestamp_offset_seconds")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_OFFSET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    count: int
    start_seconds: float
    end_seconds: float
    first_segment: int
    timestamp_offset_seconds: float
    def __init__(self, index: _Optional[int] = ..., count: _Optional[int] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., first_segment: _Optional[int] = ..., timestamp_offset_seconds: _Optional[float] = ...) -> None: ...

class MergePlan(_message.Message):
    __slots__ = ("chunks", "audio", "has_audio")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    HAS_AUDIO_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkResult]
    audio: ChunkResult
    has_audio: bool
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkResult, _Mapping]]] = ..., audio: _Optional[_Union[ChunkResult, _Mapping]] = ..., has_audio: _Optional[bool] = ...) -> None: ...

class ChunkResult(_message.Message):
    __slots__ = ("files", "encoded_seconds", "renditions", "notes", "frame_count", "loudness")
    FILES_FIELD_NUMBER: _ClassVar[int]
    ENCODED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RENDITIONS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[_job_pb2.OutputFile]
    encoded_seconds: float
    renditions: _containers.RepeatedCompositeFieldContainer[RenditionPart]
    notes: _containers.RepeatedScalarFieldContainer[str]
    frame_count: int
    loudness: _job_pb2.AudioLoudness
    def __init__(self, files: _Optional[_Iterable[_Union[_job_pb2.OutputFile, _Mapping]]] = ..., encoded_seconds: _Optional[float] = ..., renditions: _Optional[_Iterable[_Union[RenditionPart, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ..., frame_count: _Optional[int] = ..., loudness: _Optional[_Union[_job_pb2.AudioLoudness, _Mapping]] = ...) -> None: ...

class RenditionPart(_message.Message):
    __slots__ = ("name", "codec", "width", "height", "frame_rate", "segments", "init_path", "init_sha256", "timescale", "decode_times", "decode_durations", "init_size_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    INIT_PATH_FIELD_NUMBER: _ClassVar[int]
    INIT_SHA256_FIELD_NUMBER: _ClassVar[int]
    TIMESCALE_FIELD_NUMBER: _ClassVar[int]
    DECODE_TIMES_FIELD_NUMBER: _ClassVar[int]
    DECODE_DURATIONS_FIELD_NUMBER: _ClassVar[int]
    INIT_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    codec: str
    width: int
    height: int
    frame_rate: float
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    init_path: str
    init_sha256: str
    timescale: int
    decode_times: _containers.RepeatedScalarFieldContainer[int]
    decode_durations: _containers.RepeatedScalarFieldContainer[int]
    init_size_bytes: int
    def __init__(self, name: _Optional[str] = ..., codec: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frame_rate: _Optional[float] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., init_path: _Optional[str] = ..., init_sha256: _Optional[str] = ..., timescale: _Optional[int] = ..., decode_times: _Optional[_Iterable[int]] = ..., decode_durations: _Optional[_Iterable[int]] = ..., init_size_bytes: _Optional[int] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("path", "duration_seconds", "size_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    duration_seconds: float
    size_bytes: int
    def __init__(self, path: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ClaimTaskRequest(_message.Message):
    __slots__ = ("worker_id", "wait_seconds", "task_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    wait_seconds: float
    task_id: str
    def __init__(self, worker_id: _Optional[str] = ..., wait_seconds: _Optional[float] = ..., task_id: _Optional[str] = ...) -> None: ...

class ClaimTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("task_id", "lease_token", "progress", "stage", "audio_so_far")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SO_FAR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: int
    progress: float
    stage: _job_pb2.JobStage
    audio_so_far: RenditionPart
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[int] = ..., progress: _Optional[float] = ..., stage: _Optional[_Union[_job_pb2.JobStage, str]] = ..., audio_so_far: _Optional[_Union[RenditionPart, _Mapping]] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("canceled",)
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    canceled: bool
    def __init__(self, canceled: _Optional[bool] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("task_id", "lease_token", "input_info", "transcode", "error", "chunk")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INPUT_INFO_FIELD_NUMBER: _ClassVar[int]
    TRANSCODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: int
    input_info: _job_pb2.InputInfo
    transcode: TranscodeResult
    error: _job_pb2.JobError
    chunk: ChunkResult
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[int] = ..., input_info: _Optional[_Union[_job_pb2.InputInfo, _Mapping]] = ..., transcode: _Optional[_Union[TranscodeResult, _Mapping]] = ..., error: _Optional[_Union[_job_pb2.JobError, _Mapping]] = ..., chunk: _Optional[_Union[ChunkResult, _Mapping]] = ...) -> None: ...

class TranscodeResult(_message.Message):
    __slots__ = ("files", "notes", "encoded_seconds", "quality", "loudness", "track_loudness", "qc")
    FILES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    ENCODED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    TRACK_LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    QC_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[_job_pb2.OutputFile]
    notes: _containers.RepeatedScalarFieldContainer[str]
    encoded_seconds: float
    quality: _containers.RepeatedCompositeFieldContainer[_job_pb2.VariantQuality]
    loudness: _job_pb2.AudioLoudness
    track_loudness: _containers.RepeatedCompositeFieldContainer[_job_pb2.AudioLoudness]
    qc: _job_pb2.QcReport
    def __init__(self, files: _Optional[_Iterable[_Union[_job_pb2.OutputFile, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ..., encoded_seconds: _Optional[float] = ..., quality: _Optional[_Iterable[_Union[_job_pb2.VariantQuality, _Mapping]]] = ..., loudness: _Optional[_Union[_job_pb2.AudioLoudness, _Mapping]] = ..., track_loudness: _Optional[_Iterable[_Union[_job_pb2.AudioLoudness, _Mapping]]] = ..., qc: _Optional[_Union[_job_pb2.QcReport, _Mapping]] = ...) -> None: ...

class CompleteTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReleaseTaskRequest(_message.Message):
    __slots__ = ("task_id", "lease_token", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: int
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GrantTransfersRequest(_message.Message):
    __slots__ = ("task_id", "lease_token", "put_paths", "get_paths")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PUT_PATHS_FIELD_NUMBER: _ClassVar[int]
    GET_PATHS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: int
    put_paths: _containers.RepeatedScalarFieldContainer[str]
    get_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[int] = ..., put_paths: _Optional[_Iterable[str]] = ..., get_paths: _Optional[_Iterable[str]] = ...) -> None: ...

class TransferGrant(_message.Message):
    __slots__ = ("path", "method", "url", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    path: str
    method: str
    url: str
    headers: _containers.ScalarMap[str, str]
    def __init__(self, path: _Optional[str] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GrantTransfersResponse(_message.Message):
    __slots__ = ("puts", "gets", "expire_time")
    PUTS_FIELD_NUMBER: _ClassVar[int]
    GETS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    puts: _containers.RepeatedCompositeFieldContainer[TransferGrant]
    gets: _containers.RepeatedCompositeFieldContainer[TransferGrant]
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, puts: _Optional[_Iterable[_Union[TransferGrant, _Mapping]]] = ..., gets: _Optional[_Iterable[_Union[TransferGrant, _Mapping]]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AnnounceWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "host", "version", "capacity", "task_kinds", "encoders", "state", "speeds")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    TASK_KINDS_FIELD_NUMBER: _ClassVar[int]
    ENCODERS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEEDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    host: str
    version: str
    capacity: int
    task_kinds: _containers.RepeatedScalarFieldContainer[TaskKind]
    encoders: _containers.RepeatedScalarFieldContainer[str]
    state: WorkerState
    speeds: _containers.RepeatedCompositeFieldContainer[EncodeSpeed]
    def __init__(self, worker_id: _Optional[str] = ..., host: _Optional[str] = ..., version: _Optional[str] = ..., capacity: _Optional[int] = ..., task_kinds: _Optional[_Iterable[_Union[TaskKind, str]]] = ..., encoders: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[WorkerState, str]] = ..., speeds: _Optional[_Iterable[_Union[EncodeSpeed, _Mapping]]] = ...) -> None: ...

class EncodeSpeed(_message.Message):
    __slots__ = ("speed_class", "realtime_factor", "samples")
    SPEED_CLASS_FIELD_NUMBER: _ClassVar[int]
    REALTIME_FACTOR_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    speed_class: str
    realtime_factor: float
    samples: int
    def __init__(self, speed_class: _Optional[str] = ..., realtime_factor: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...

class AnnounceWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
