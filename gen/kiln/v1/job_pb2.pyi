import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_PENDING: _ClassVar[JobStatus]
    JOB_STATUS_PROBING: _ClassVar[JobStatus]
    JOB_STATUS_AWAITING_CONFIRMATION: _ClassVar[JobStatus]
    JOB_STATUS_PROCESSING: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED: _ClassVar[JobStatus]
    JOB_STATUS_PARTIAL: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_REJECTED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELED: _ClassVar[JobStatus]

class JobStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STAGE_UNSPECIFIED: _ClassVar[JobStage]
    JOB_STAGE_PROBING: _ClassVar[JobStage]
    JOB_STAGE_PLANNING: _ClassVar[JobStage]
    JOB_STAGE_TRANSCODING: _ClassVar[JobStage]
    JOB_STAGE_MERGING: _ClassVar[JobStage]
    JOB_STAGE_PACKAGING: _ClassVar[JobStage]
    JOB_STAGE_UPLOADING: _ClassVar[JobStage]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_ECONOMY: _ClassVar[Priority]
    PRIORITY_STANDARD: _ClassVar[Priority]
    PRIORITY_PREMIUM: _ClassVar[Priority]

class OutputStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STATUS_UNSPECIFIED: _ClassVar[OutputStatus]
    OUTPUT_STATUS_PENDING: _ClassVar[OutputStatus]
    OUTPUT_STATUS_PROCESSING: _ClassVar[OutputStatus]
    OUTPUT_STATUS_COMPLETED: _ClassVar[OutputStatus]
    OUTPUT_STATUS_FAILED: _ClassVar[OutputStatus]
    OUTPUT_STATUS_CANCELED: _ClassVar[OutputStatus]

class OutputType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_TYPE_UNSPECIFIED: _ClassVar[OutputType]
    OUTPUT_TYPE_MP4: _ClassVar[OutputType]
    OUTPUT_TYPE_WEBM: _ClassVar[OutputType]
    OUTPUT_TYPE_MOV: _ClassVar[OutputType]
    OUTPUT_TYPE_MKV: _ClassVar[OutputType]
    OUTPUT_TYPE_HLS: _ClassVar[OutputType]
    OUTPUT_TYPE_DASH: _ClassVar[OutputType]
    OUTPUT_TYPE_CMAF: _ClassVar[OutputType]
    OUTPUT_TYPE_MP3: _ClassVar[OutputType]
    OUTPUT_TYPE_M4A: _ClassVar[OutputType]
    OUTPUT_TYPE_OPUS: _ClassVar[OutputType]
    OUTPUT_TYPE_WAV: _ClassVar[OutputType]
    OUTPUT_TYPE_JPG: _ClassVar[OutputType]
    OUTPUT_TYPE_PNG: _ClassVar[OutputType]
    OUTPUT_TYPE_WEBP: _ClassVar[OutputType]
    OUTPUT_TYPE_GIF: _ClassVar[OutputType]

class VideoCodec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_CODEC_UNSPECIFIED: _ClassVar[VideoCodec]
    VIDEO_CODEC_H264: _ClassVar[VideoCodec]
    VIDEO_CODEC_H265: _ClassVar[VideoCodec]
    VIDEO_CODEC_VP9: _ClassVar[VideoCodec]
    VIDEO_CODEC_AV1: _ClassVar[VideoCodec]

class AudioCodec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_CODEC_UNSPECIFIED: _ClassVar[AudioCodec]
    AUDIO_CODEC_AAC: _ClassVar[AudioCodec]
    AUDIO_CODEC_OPUS: _ClassVar[AudioCodec]
    AUDIO_CODEC_MP3: _ClassVar[AudioCodec]
    AUDIO_CODEC_PCM: _ClassVar[AudioCodec]
    AUDIO_CODEC_EAC3: _ClassVar[AudioCodec]

class Quality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_UNSPECIFIED: _ClassVar[Quality]
    QUALITY_ECONOMY: _ClassVar[Quality]
    QUALITY_STANDARD: _ClassVar[Quality]
    QUALITY_PREMIUM: _ClassVar[Quality]

class HlsSegmentFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HLS_SEGMENT_FORMAT_UNSPECIFIED: _ClassVar[HlsSegmentFormat]
    HLS_SEGMENT_FORMAT_TS: _ClassVar[HlsSegmentFormat]
    HLS_SEGMENT_FORMAT_FMP4: _ClassVar[HlsSegmentFormat]

class ThumbnailMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THUMBNAIL_MODE_UNSPECIFIED: _ClassVar[ThumbnailMode]
    THUMBNAIL_MODE_SINGLE: _ClassVar[ThumbnailMode]
    THUMBNAIL_MODE_INTERVAL: _ClassVar[ThumbnailMode]
    THUMBNAIL_MODE_TIMESTAMPS: _ClassVar[ThumbnailMode]
    THUMBNAIL_MODE_SPRITE: _ClassVar[ThumbnailMode]

class LoudnessNormalization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOUDNESS_NORMALIZATION_UNSPECIFIED: _ClassVar[LoudnessNormalization]
    LOUDNESS_NORMALIZATION_LINEAR: _ClassVar[LoudnessNormalization]
    LOUDNESS_NORMALIZATION_DYNAMIC: _ClassVar[LoudnessNormalization]

class EncryptionScheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCRYPTION_SCHEME_UNSPECIFIED: _ClassVar[EncryptionScheme]
    ENCRYPTION_SCHEME_AES_128: _ClassVar[EncryptionScheme]
    ENCRYPTION_SCHEME_CENC: _ClassVar[EncryptionScheme]

class AudioTrackRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_TRACK_ROLE_UNSPECIFIED: _ClassVar[AudioTrackRole]
    AUDIO_TRACK_ROLE_MAIN: _ClassVar[AudioTrackRole]
    AUDIO_TRACK_ROLE_ALTERNATE: _ClassVar[AudioTrackRole]
    AUDIO_TRACK_ROLE_DESCRIPTION: _ClassVar[AudioTrackRole]

class TextTrackFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEXT_TRACK_FORMAT_UNSPECIFIED: _ClassVar[TextTrackFormat]
    TEXT_TRACK_FORMAT_WEBVTT: _ClassVar[TextTrackFormat]
    TEXT_TRACK_FORMAT_SRT: _ClassVar[TextTrackFormat]
    TEXT_TRACK_FORMAT_ASS: _ClassVar[TextTrackFormat]

class TextTrackKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEXT_TRACK_KIND_UNSPECIFIED: _ClassVar[TextTrackKind]
    TEXT_TRACK_KIND_SUBTITLES: _ClassVar[TextTrackKind]
    TEXT_TRACK_KIND_CAPTIONS: _ClassVar[TextTrackKind]

class QcPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QC_POLICY_UNSPECIFIED: _ClassVar[QcPolicy]
    QC_POLICY_REPORT: _ClassVar[QcPolicy]
    QC_POLICY_FAIL: _ClassVar[QcPolicy]

class QcVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QC_VERDICT_UNSPECIFIED: _ClassVar[QcVerdict]
    QC_VERDICT_PASS: _ClassVar[QcVerdict]
    QC_VERDICT_WARN: _ClassVar[QcVerdict]
    QC_VERDICT_FAIL: _ClassVar[QcVerdict]

class OverlayPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAY_POSITION_UNSPECIFIED: _ClassVar[OverlayPosition]
    OVERLAY_POSITION_TOP_LEFT: _ClassVar[OverlayPosition]
    OVERLAY_POSITION_TOP_RIGHT: _ClassVar[OverlayPosition]
    OVERLAY_POSITION_BOTTOM_LEFT: _ClassVar[OverlayPosition]
    OVERLAY_POSITION_BOTTOM_RIGHT: _ClassVar[OverlayPosition]
    OVERLAY_POSITION_CENTER: _ClassVar[OverlayPosition]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_PENDING: JobStatus
JOB_STATUS_PROBING: JobStatus
JOB_STATUS_AWAITING_CONFIRMATION: JobStatus
JOB_STATUS_PROCESSING: JobStatus
JOB_STATUS_COMPLETED: JobStatus
JOB_STATUS_PARTIAL: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_REJECTED: JobStatus
JOB_STATUS_CANCELED: JobStatus
JOB_STAGE_UNSPECIFIED: JobStage
JOB_STAGE_PROBING: JobStage
JOB_STAGE_PLANNING: JobStage
JOB_STAGE_TRANSCODING: JobStage
JOB_STAGE_MERGING: JobStage
JOB_STAGE_PACKAGING: JobStage
JOB_STAGE_UPLOADING: JobStage
PRIORITY_UNSPECIFIED: Priority
PRIORITY_ECONOMY: Priority
PRIORITY_STANDARD: Priority
PRIORITY_PREMIUM: Priority
OUTPUT_STATUS_UNSPECIFIED: OutputStatus
OUTPUT_STATUS_PENDING: OutputStatus
OUTPUT_STATUS_PROCESSING: OutputStatus
OUTPUT_STATUS_COMPLETED: OutputStatus
OUTPUT_STATUS_FAILED: OutputStatus
OUTPUT_STATUS_CANCELED: OutputStatus
OUTPUT_TYPE_UNSPECIFIED: OutputType
OUTPUT_TYPE_MP4: OutputType
OUTPUT_TYPE_WEBM: OutputType
OUTPUT_TYPE_MOV: OutputType
OUTPUT_TYPE_MKV: OutputType
OUTPUT_TYPE_HLS: OutputType
OUTPUT_TYPE_DASH: OutputType
OUTPUT_TYPE_CMAF: OutputType
OUTPUT_TYPE_MP3: OutputType
OUTPUT_TYPE_M4A: OutputType
OUTPUT_TYPE_OPUS: OutputType
OUTPUT_TYPE_WAV: OutputType
OUTPUT_TYPE_JPG: OutputType
OUTPUT_TYPE_PNG: OutputType
OUTPUT_TYPE_WEBP: OutputType
OUTPUT_TYPE_GIF: OutputType
VIDEO_CODEC_UNSPECIFIED: VideoCodec
VIDEO_CODEC_H264: VideoCodec
VIDEO_CODEC_H265: VideoCodec
VIDEO_CODEC_VP9: VideoCodec
VIDEO_CODEC_AV1: VideoCodec
AUDIO_CODEC_UNSPECIFIED: AudioCodec
AUDIO_CODEC_AAC: AudioCodec
AUDIO_CODEC_OPUS: AudioCodec
AUDIO_CODEC_MP3: AudioCodec
AUDIO_CODEC_PCM: AudioCodec
AUDIO_CODEC_EAC3: AudioCodec
QUALITY_UNSPECIFIED: Quality
QUALITY_ECONOMY: Quality
QUALITY_STANDARD: Quality
QUALITY_PREMIUM: Quality
HLS_SEGMENT_FORMAT_UNSPECIFIED: HlsSegmentFormat
HLS_SEGMENT_FORMAT_TS: HlsSegmentFormat
HLS_SEGMENT_FORMAT_FMP4: HlsSegmentFormat
THUMBNAIL_MODE_UNSPECIFIED: ThumbnailMode
THUMBNAIL_MODE_SINGLE: ThumbnailMode
THUMBNAIL_MODE_INTERVAL: ThumbnailMode
THUMBNAIL_MODE_TIMESTAMPS: ThumbnailMode
THUMBNAIL_MODE_SPRITE: ThumbnailMode
LOUDNESS_NORMALIZATION_UNSPECIFIED: LoudnessNormalization
LOUDNESS_NORMALIZATION_LINEAR: LoudnessNormalization
LOUDNESS_NORMALIZATION_DYNAMIC: LoudnessNormalization
ENCRYPTION_SCHEME_UNSPECIFIED: EncryptionScheme
ENCRYPTION_SCHEME_AES_128: EncryptionScheme
ENCRYPTION_SCHEME_CENC: EncryptionScheme
AUDIO_TRACK_ROLE_UNSPECIFIED: AudioTrackRole
AUDIO_TRACK_ROLE_MAIN: AudioTrackRole
AUDIO_TRACK_ROLE_ALTERNATE: AudioTrackRole
AUDIO_TRACK_ROLE_DESCRIPTION: AudioTrackRole
TEXT_TRACK_FORMAT_UNSPECIFIED: TextTrackFormat
TEXT_TRACK_FORMAT_WEBVTT: TextTrackFormat
TEXT_TRACK_FORMAT_SRT: TextTrackFormat
TEXT_TRACK_FORMAT_ASS: TextTrackFormat
TEXT_TRACK_KIND_UNSPECIFIED: TextTrackKind
TEXT_TRACK_KIND_SUBTITLES: TextTrackKind
TEXT_TRACK_KIND_CAPTIONS: TextTrackKind
QC_POLICY_UNSPECIFIED: QcPolicy
QC_POLICY_REPORT: QcPolicy
QC_POLICY_FAIL: QcPolicy
QC_VERDICT_UNSPECIFIED: QcVerdict
QC_VERDICT_PASS: QcVerdict
QC_VERDICT_WARN: QcVerdict
QC_VERDICT_FAIL: QcVerdict
OVERLAY_POSITION_UNSPECIFIED: OverlayPosition
OVERLAY_POSITION_TOP_LEFT: OverlayPosition
OVERLAY_POSITION_TOP_RIGHT: OverlayPosition
OVERLAY_POSITION_BOTTOM_LEFT: OverlayPosition
OVERLAY_POSITION_BOTTOM_RIGHT: OverlayPosition
OVERLAY_POSITION_CENTER: OverlayPosition

class Money(_message.Message):
    __slots__ = ("micros", "currency")
    MICROS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    micros: int
    currency: str
    def __init__(self, micros: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class VideoVariant(_message.Message):
    __slots__ = ("codec", "resolution", "quality", "bitrate_kbps", "fps", "gop_frames", "allow_upscale", "crf")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    BITRATE_KBPS_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    GOP_FRAMES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UPSCALE_FIELD_NUMBER: _ClassVar[int]
    CRF_FIELD_NUMBER: _ClassVar[int]
    codec: VideoCodec
    resolution: str
    quality: Quality
    bitrate_kbps: int
    fps: float
    gop_frames: int
    allow_upscale: bool
    crf: int
    def __init__(self, codec: _Optional[_Union[VideoCodec, str]] = ..., resolution: _Optional[str] = ..., quality: _Optional[_Union[Quality, str]] = ..., bitrate_kbps: _Optional[int] = ..., fps: _Optional[float] = ..., gop_frames: _Optional[int] = ..., allow_upscale: _Optional[bool] = ..., crf: _Optional[int] = ...) -> None: ...

class AudioSpec(_message.Message):
    __slots__ = ("codec", "bitrate_kbps", "channels", "sample_rate", "disabled", "loudness")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    BITRATE_KBPS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    codec: AudioCodec
    bitrate_kbps: int
    channels: int
    sample_rate: int
    disabled: bool
    loudness: LoudnessSpec
    def __init__(self, codec: _Optional[_Union[AudioCodec, str]] = ..., bitrate_kbps: _Optional[int] = ..., channels: _Optional[int] = ..., sample_rate: _Optional[int] = ..., disabled: _Optional[bool] = ..., loudness: _Optional[_Union[LoudnessSpec, _Mapping]] = ...) -> None: ...

class LoudnessSpec(_message.Message):
    __slots__ = ("preset", "integrated_lufs", "true_peak_dbtp", "lra")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    INTEGRATED_LUFS_FIELD_NUMBER: _ClassVar[int]
    TRUE_PEAK_DBTP_FIELD_NUMBER: _ClassVar[int]
    LRA_FIELD_NUMBER: _ClassVar[int]
    preset: str
    integrated_lufs: float
    true_peak_dbtp: float
    lra: float
    def __init__(self, preset: _Optional[str] = ..., integrated_lufs: _Optional[float] = ..., true_peak_dbtp: _Optional[float] = ..., lra: _Optional[float] = ...) -> None: ...

class AudioLoudness(_message.Message):
    __slots__ = ("target_integrated_lufs", "target_true_peak_dbtp", "target_lra", "input_integrated_lufs", "input_true_peak_dbtp", "input_lra", "output_integrated_lufs", "output_true_peak_dbtp", "output_lra", "normalization", "audio_track_index")
    TARGET_INTEGRATED_LUFS_FIELD_NUMBER: _ClassVar[int]
    TARGET_TRUE_PEAK_DBTP_FIELD_NUMBER: _ClassVar[int]
    TARGET_LRA_FIELD_NUMBER: _ClassVar[int]
    INPUT_INTEGRATED_LUFS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TRUE_PEAK_DBTP_FIELD_NUMBER: _ClassVar[int]
    INPUT_LRA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INTEGRATED_LUFS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUE_PEAK_DBTP_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LRA_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TRACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    target_integrated_lufs: float
    target_true_peak_dbtp: float
    target_lra: float
    input_integrated_lufs: float
    input_true_peak_dbtp: float
    input_lra: float
    output_integrated_lufs: float
    output_true_peak_dbtp: float
    output_lra: float
    normalization: LoudnessNormalization
    audio_track_index: int
    def __init__(self, target_integrated_lufs: _Optional[float] = ..., target_true_peak_dbtp: _Optional[float] = ..., target_lra: _Optional[float] = ..., input_integrated_lufs: _Optional[float] = ..., input_true_peak_dbtp: _Optional[float] = ..., input_lra: _Optional[float] = ..., output_integrated_lufs: _Optional[float] = ..., output_true_peak_dbtp: _Optional[float] = ..., output_lra: _Optional[float] = ..., normalization: _Optional[_Union[LoudnessNormalization, str]] = ..., audio_track_index: _Optional[int] = ...) -> None: ...

class SegmentSpec(_message.Message):
    __slots__ = ("duration_seconds",)
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    duration_seconds: float
    def __init__(self, duration_seconds: _Optional[float] = ...) -> None: ...

class HlsSpec(_message.Message):
    __slots__ = ("segment_format",)
    SEGMENT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    segment_format: HlsSegmentFormat
    def __init__(self, segment_format: _Optional[_Union[HlsSegmentFormat, str]] = ...) -> None: ...

class ClipSpec(_message.Message):
    __slots__ = ("start_seconds", "duration_seconds")
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    start_seconds: float
    duration_seconds: float
    def __init__(self, start_seconds: _Optional[float] = ..., duration_seconds: _Optional[float] = ...) -> None: ...

class ThumbnailSpec(_message.Message):
    __slots__ = ("mode", "time_seconds", "interval_seconds", "timestamps_seconds", "width", "columns")
    MODE_FIELD_NUMBER: _ClassVar[int]
    TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    mode: ThumbnailMode
    time_seconds: float
    interval_seconds: float
    timestamps_seconds: _containers.RepeatedScalarFieldContainer[float]
    width: int
    columns: int
    def __init__(self, mode: _Optional[_Union[ThumbnailMode, str]] = ..., time_seconds: _Optional[float] = ..., interval_seconds: _Optional[float] = ..., timestamps_seconds: _Optional[_Iterable[float]] = ..., width: _Optional[int] = ..., columns: _Optional[int] = ...) -> None: ...

class CustomCommand(_message.Message):
    __slots__ = ("args",)
    ARGS_FIELD_NUMBER: _ClassVar[int]
    args: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, args: _Optional[_Iterable[str]] = ...) -> None: ...

class Recipe(_message.Message):
    __slots__ = ("name", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class OutputSpec(_message.Message):
    __slots__ = ("preset", "type", "video", "audio", "segments", "hls", "clip", "thumbnail", "custom", "recipe", "measure_quality", "output_origin_id", "overlays", "text_tracks", "audio_tracks", "encryption")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    HLS_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    MEASURE_QUALITY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    OVERLAYS_FIELD_NUMBER: _ClassVar[int]
    TEXT_TRACKS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TRACKS_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_FIELD_NUMBER: _ClassVar[int]
    preset: str
    type: OutputType
    video: _containers.RepeatedCompositeFieldContainer[VideoVariant]
    audio: AudioSpec
    segments: SegmentSpec
    hls: HlsSpec
    clip: ClipSpec
    thumbnail: ThumbnailSpec
    custom: CustomCommand
    recipe: Recipe
    measure_quality: bool
    output_origin_id: str
    overlays: _containers.RepeatedCompositeFieldContainer[Overlay]
    text_tracks: _containers.RepeatedCompositeFieldContainer[TextTrack]
    audio_tracks: _containers.RepeatedCompositeFieldContainer[AudioTrack]
    encryption: Encryption
    def __init__(self, preset: _Optional[str] = ..., type: _Optional[_Union[OutputType, str]] = ..., video: _Optional[_Iterable[_Union[VideoVariant, _Mapping]]] = ..., audio: _Optional[_Union[AudioSpec, _Mapping]] = ..., segments: _Optional[_Union[SegmentSpec, _Mapping]] = ..., hls: _Optional[_Union[HlsSpec, _Mapping]] = ..., clip: _Optional[_Union[ClipSpec, _Mapping]] = ..., thumbnail: _Optional[_Union[ThumbnailSpec, _Mapping]] = ..., custom: _Optional[_Union[CustomCommand, _Mapping]] = ..., recipe: _Optional[_Union[Recipe, _Mapping]] = ..., measure_quality: _Optional[bool] = ..., output_origin_id: _Optional[str] = ..., overlays: _Optional[_Iterable[_Union[Overlay, _Mapping]]] = ..., text_tracks: _Optional[_Iterable[_Union[TextTrack, _Mapping]]] = ..., audio_tracks: _Optional[_Iterable[_Union[AudioTrack, _Mapping]]] = ..., encryption: _Optional[_Union[Encryption, _Mapping]] = ...) -> None: ...

class Encryption(_message.Message):
    __slots__ = ("scheme", "rotate_every_segments")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    ROTATE_EVERY_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    scheme: EncryptionScheme
    rotate_every_segments: int
    def __init__(self, scheme: _Optional[_Union[EncryptionScheme, str]] = ..., rotate_every_segments: _Optional[int] = ...) -> None: ...

class OutputEncryption(_message.Message):
    __slots__ = ("scheme", "rotate_every_segments", "key_ids")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    ROTATE_EVERY_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    scheme: EncryptionScheme
    rotate_every_segments: int
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scheme: _Optional[_Union[EncryptionScheme, str]] = ..., rotate_every_segments: _Optional[int] = ..., key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AudioTrack(_message.Message):
    __slots__ = ("url", "stream_index", "stream_language", "language", "name", "default", "role", "codec", "bitrate_kbps", "channels")
    URL_FIELD_NUMBER: _ClassVar[int]
    STREAM_INDEX_FIELD_NUMBER: _ClassVar[int]
    STREAM_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    BITRATE_KBPS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    url: str
    stream_index: int
    stream_language: str
    language: str
    name: str
    default: bool
    role: AudioTrackRole
    codec: AudioCodec
    bitrate_kbps: int
    channels: int
    def __init__(self, url: _Optional[str] = ..., stream_index: _Optional[int] = ..., stream_language: _Optional[str] = ..., language: _Optional[str] = ..., name: _Optional[str] = ..., default: _Optional[bool] = ..., role: _Optional[_Union[AudioTrackRole, str]] = ..., codec: _Optional[_Union[AudioCodec, str]] = ..., bitrate_kbps: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class TextTrack(_message.Message):
    __slots__ = ("url", "origin_path", "stream_index", "stream_language", "format", "language", "name", "default", "forced", "kind", "burn_in")
    URL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_PATH_FIELD_NUMBER: _ClassVar[int]
    STREAM_INDEX_FIELD_NUMBER: _ClassVar[int]
    STREAM_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BURN_IN_FIELD_NUMBER: _ClassVar[int]
    url: str
    origin_path: str
    stream_index: int
    stream_language: str
    format: TextTrackFormat
    language: str
    name: str
    default: bool
    forced: bool
    kind: TextTrackKind
    burn_in: bool
    def __init__(self, url: _Optional[str] = ..., origin_path: _Optional[str] = ..., stream_index: _Optional[int] = ..., stream_language: _Optional[str] = ..., format: _Optional[_Union[TextTrackFormat, str]] = ..., language: _Optional[str] = ..., name: _Optional[str] = ..., default: _Optional[bool] = ..., forced: _Optional[bool] = ..., kind: _Optional[_Union[TextTrackKind, str]] = ..., burn_in: _Optional[bool] = ...) -> None: ...

class VariantQuality(_message.Message):
    __slots__ = ("variant_index", "width", "height", "ssim", "psnr_db")
    VARIANT_INDEX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SSIM_FIELD_NUMBER: _ClassVar[int]
    PSNR_DB_FIELD_NUMBER: _ClassVar[int]
    variant_index: int
    width: int
    height: int
    ssim: float
    psnr_db: float
    def __init__(self, variant_index: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., ssim: _Optional[float] = ..., psnr_db: _Optional[float] = ...) -> None: ...

class OutputFile(_message.Message):
    __slots__ = ("path", "size_bytes", "mime_type", "container", "codec", "width", "height", "duration_seconds", "bitrate", "url", "url_expire_time")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BITRATE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    URL_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    mime_type: str
    container: str
    codec: str
    width: int
    height: int
    duration_seconds: float
    bitrate: int
    url: str
    url_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., mime_type: _Optional[str] = ..., container: _Optional[str] = ..., codec: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., bitrate: _Optional[int] = ..., url: _Optional[str] = ..., url_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("stage", "code", "message", "retryable")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    code: str
    message: str
    retryable: bool
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("id", "spec", "status", "progress", "estimated_cost", "actual_cost", "error", "files", "notes", "quality", "variant_pricing", "playback_url", "playback_url_expire_time", "playback_base_url", "origin_id", "loudness", "track_loudness", "eta_seconds", "encryption", "qc")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_COST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    VARIANT_PRICING_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_URL_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_URL_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    TRACK_LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_FIELD_NUMBER: _ClassVar[int]
    QC_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: OutputSpec
    status: OutputStatus
    progress: float
    estimated_cost: Money
    actual_cost: Money
    error: JobError
    files: _containers.RepeatedCompositeFieldContainer[OutputFile]
    notes: _containers.RepeatedScalarFieldContainer[str]
    quality: _containers.RepeatedCompositeFieldContainer[VariantQuality]
    variant_pricing: _containers.RepeatedCompositeFieldContainer[VariantPricing]
    playback_url: str
    playback_url_expire_time: _timestamp_pb2.Timestamp
    playback_base_url: str
    origin_id: str
    loudness: AudioLoudness
    track_loudness: _containers.RepeatedCompositeFieldContainer[AudioLoudness]
    eta_seconds: float
    encryption: OutputEncryption
    qc: QcReport
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[OutputSpec, _Mapping]] = ..., status: _Optional[_Union[OutputStatus, str]] = ..., progress: _Optional[float] = ..., estimated_cost: _Optional[_Union[Money, _Mapping]] = ..., actual_cost: _Optional[_Union[Money, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., files: _Optional[_Iterable[_Union[OutputFile, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ..., quality: _Optional[_Iterable[_Union[VariantQuality, _Mapping]]] = ..., variant_pricing: _Optional[_Iterable[_Union[VariantPricing, _Mapping]]] = ..., playback_url: _Optional[str] = ..., playback_url_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., playback_base_url: _Optional[str] = ..., origin_id: _Optional[str] = ..., loudness: _Optional[_Union[AudioLoudness, _Mapping]] = ..., track_loudness: _Optional[_Iterable[_Union[AudioLoudness, _Mapping]]] = ..., eta_seconds: _Optional[float] = ..., encryption: _Optional[_Union[OutputEncryption, _Mapping]] = ..., qc: _Optional[_Union[QcReport, _Mapping]] = ...) -> None: ...

class QcCheck(_message.Message):
    __slots__ = ("name", "value", "unit", "threshold", "verdict", "source_value", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VALUE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    unit: str
    threshold: float
    verdict: QcVerdict
    source_value: float
    detail: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., unit: _Optional[str] = ..., threshold: _Optional[float] = ..., verdict: _Optional[_Union[QcVerdict, str]] = ..., source_value: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class QcReport(_message.Message):
    __slots__ = ("verdict", "checks")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    verdict: QcVerdict
    checks: _containers.RepeatedCompositeFieldContainer[QcCheck]
    def __init__(self, verdict: _Optional[_Union[QcVerdict, str]] = ..., checks: _Optional[_Iterable[_Union[QcCheck, _Mapping]]] = ...) -> None: ...

class VariantPricing(_message.Message):
    __slots__ = ("index", "name", "resolution", "codec", "quality", "priced_height", "fps", "rate_per_minute", "estimated_cost", "actual_cost", "estimated_seconds", "billed_seconds", "dropped")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    PRICED_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_COST_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BILLED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    resolution: str
    codec: VideoCodec
    quality: Quality
    priced_height: int
    fps: float
    rate_per_minute: Money
    estimated_cost: Money
    actual_cost: Money
    estimated_seconds: float
    billed_seconds: float
    dropped: bool
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., resolution: _Optional[str] = ..., codec: _Optional[_Union[VideoCodec, str]] = ..., quality: _Optional[_Union[Quality, str]] = ..., priced_height: _Optional[int] = ..., fps: _Optional[float] = ..., rate_per_minute: _Optional[_Union[Money, _Mapping]] = ..., estimated_cost: _Optional[_Union[Money, _Mapping]] = ..., actual_cost: _Optional[_Union[Money, _Mapping]] = ..., estimated_seconds: _Optional[float] = ..., billed_seconds: _Optional[float] = ..., dropped: _Optional[bool] = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ("index", "kind", "codec", "width", "height", "frame_rate", "rotation", "channels", "sample_rate", "bitrate", "pixel_format", "is_default", "variable_frame_rate", "language")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    BITRATE_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    kind: str
    codec: str
    width: int
    height: int
    frame_rate: float
    rotation: int
    channels: int
    sample_rate: int
    bitrate: int
    pixel_format: str
    is_default: bool
    variable_frame_rate: bool
    language: str
    def __init__(self, index: _Optional[int] = ..., kind: _Optional[str] = ..., codec: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frame_rate: _Optional[float] = ..., rotation: _Optional[int] = ..., channels: _Optional[int] = ..., sample_rate: _Optional[int] = ..., bitrate: _Optional[int] = ..., pixel_format: _Optional[str] = ..., is_default: _Optional[bool] = ..., variable_frame_rate: _Optional[bool] = ..., language: _Optional[str] = ...) -> None: ...

class InputInfo(_message.Message):
    __slots__ = ("container", "duration_seconds", "size_bytes", "bitrate", "streams", "supports_byte_ranges")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BITRATE_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_BYTE_RANGES_FIELD_NUMBER: _ClassVar[int]
    container: str
    duration_seconds: float
    size_bytes: int
    bitrate: int
    streams: _containers.RepeatedCompositeFieldContainer[StreamInfo]
    supports_byte_ranges: bool
    def __init__(self, container: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., size_bytes: _Optional[int] = ..., bitrate: _Optional[int] = ..., streams: _Optional[_Iterable[_Union[StreamInfo, _Mapping]]] = ..., supports_byte_ranges: _Optional[bool] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "status", "stage", "progress", "priority", "delayed_start", "input_url", "concat_input_urls", "outputs", "input_info", "estimated_cost", "actual_cost", "metadata", "webhook_url", "error", "attempt", "idempotency_key", "output_origin", "create_time", "probe_time", "confirm_time", "start_time", "complete_time", "update_time", "input_origin_id", "input_path", "output_origin_id", "output_path_prefix", "eta_seconds", "qc_policy")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DELAYED_START_FIELD_NUMBER: _ClassVar[int]
    INPUT_URL_FIELD_NUMBER: _ClassVar[int]
    CONCAT_INPUT_URLS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_INFO_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_COST_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROBE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    INPUT_ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QC_POLICY_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: JobStatus
    stage: JobStage
    progress: float
    priority: Priority
    delayed_start: bool
    input_url: str
    concat_input_urls: _containers.RepeatedScalarFieldContainer[str]
    outputs: _containers.RepeatedCompositeFieldContainer[Output]
    input_info: InputInfo
    estimated_cost: Money
    actual_cost: Money
    metadata: _containers.ScalarMap[str, str]
    webhook_url: str
    error: JobError
    attempt: int
    idempotency_key: str
    output_origin: str
    create_time: _timestamp_pb2.Timestamp
    probe_time: _timestamp_pb2.Timestamp
    confirm_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    complete_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    input_origin_id: str
    input_path: str
    output_origin_id: str
    output_path_prefix: str
    eta_seconds: float
    qc_policy: QcPolicy
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., stage: _Optional[_Union[JobStage, str]] = ..., progress: _Optional[float] = ..., priority: _Optional[_Union[Priority, str]] = ..., delayed_start: _Optional[bool] = ..., input_url: _Optional[str] = ..., concat_input_urls: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Iterable[_Union[Output, _Mapping]]] = ..., input_info: _Optional[_Union[InputInfo, _Mapping]] = ..., estimated_cost: _Optional[_Union[Money, _Mapping]] = ..., actual_cost: _Optional[_Union[Money, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., webhook_url: _Optional[str] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., attempt: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., output_origin: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., probe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confirm_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., input_origin_id: _Optional[str] = ..., input_path: _Optional[str] = ..., output_origin_id: _Optional[str] = ..., output_path_prefix: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., qc_policy: _Optional[_Union[QcPolicy, str]] = ...) -> None: ...

class Overlay(_message.Message):
    __slots__ = ("image", "text", "position", "margin", "x", "y", "opacity", "start_seconds", "end_seconds")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    OPACITY_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    image: OverlayImage
    text: OverlayText
    position: OverlayPosition
    margin: float
    x: float
    y: float
    opacity: float
    start_seconds: float
    end_seconds: float
    def __init__(self, image: _Optional[_Union[OverlayImage, _Mapping]] = ..., text: _Optional[_Union[OverlayText, _Mapping]] = ..., position: _Optional[_Union[OverlayPosition, str]] = ..., margin: _Optional[float] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., opacity: _Optional[float] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class OverlayImage(_message.Message):
    __slots__ = ("url", "width_fraction")
    URL_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FRACTION_FIELD_NUMBER: _ClassVar[int]
    url: str
    width_fraction: float
    def __init__(self, url: _Optional[str] = ..., width_fraction: _Optional[float] = ...) -> None: ...

class OverlayText(_message.Message):
    __slots__ = ("text", "timecode", "height_fraction")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMECODE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    text: str
    timecode: bool
    height_fraction: float
    def __init__(self, text: _Optional[str] = ..., timecode: _Optional[bool] = ..., height_fraction: _Optional[float] = ...) -> None: ...
