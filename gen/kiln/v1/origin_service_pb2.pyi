import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OriginUse(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORIGIN_USE_UNSPECIFIED: _ClassVar[OriginUse]
    ORIGIN_USE_INPUT: _ClassVar[OriginUse]
    ORIGIN_USE_OUTPUT: _ClassVar[OriginUse]
    ORIGIN_USE_INPUT_AND_OUTPUT: _ClassVar[OriginUse]
ORIGIN_USE_UNSPECIFIED: OriginUse
ORIGIN_USE_INPUT: OriginUse
ORIGIN_USE_OUTPUT: OriginUse
ORIGIN_USE_INPUT_AND_OUTPUT: OriginUse

class Origin(_message.Message):
    __slots__ = ("id", "name", "use", "s3", "gcs", "http", "public_base_url", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    S3_FIELD_NUMBER: _ClassVar[int]
    GCS_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    use: OriginUse
    s3: S3Origin
    gcs: GcsOrigin
    http: HttpOrigin
    public_base_url: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., use: _Optional[_Union[OriginUse, str]] = ..., s3: _Optional[_Union[S3Origin, _Mapping]] = ..., gcs: _Optional[_Union[GcsOrigin, _Mapping]] = ..., http: _Optional[_Union[HttpOrigin, _Mapping]] = ..., public_base_url: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class S3Origin(_message.Message):
    __slots__ = ("endpoint_url", "region", "bucket", "prefix", "path_style", "access_key_id", "secret_access_key", "secret_access_key_fingerprint")
    ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PATH_STYLE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    path_style: bool
    access_key_id: str
    secret_access_key: str
    secret_access_key_fingerprint: str
    def __init__(self, endpoint_url: _Optional[str] = ..., region: _Optional[str] = ..., bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., path_style: _Optional[bool] = ..., access_key_id: _Optional[str] = ..., secret_access_key: _Optional[str] = ..., secret_access_key_fingerprint: _Optional[str] = ...) -> None: ...

class GcsOrigin(_message.Message):
    __slots__ = ("bucket", "prefix", "service_account_key_json", "service_account_key_fingerprint")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_KEY_JSON_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_KEY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    service_account_key_json: str
    service_account_key_fingerprint: str
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., service_account_key_json: _Optional[str] = ..., service_account_key_fingerprint: _Optional[str] = ...) -> None: ...

class HttpOrigin(_message.Message):
    __slots__ = ("base_url", "header_name", "header_value", "header_value_fingerprint")
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    HEADER_NAME_FIELD_NUMBER: _ClassVar[int]
    HEADER_VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADER_VALUE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    base_url: str
    header_name: str
    header_value: str
    header_value_fingerprint: str
    def __init__(self, base_url: _Optional[str] = ..., header_name: _Optional[str] = ..., header_value: _Optional[str] = ..., header_value_fingerprint: _Optional[str] = ...) -> None: ...

class CreateOriginRequest(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: Origin
    def __init__(self, origin: _Optional[_Union[Origin, _Mapping]] = ...) -> None: ...

class CreateOriginResponse(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: Origin
    def __init__(self, origin: _Optional[_Union[Origin, _Mapping]] = ...) -> None: ...

class GetOriginRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetOriginResponse(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: Origin
    def __init__(self, origin: _Optional[_Union[Origin, _Mapping]] = ...) -> None: ...

class ListOriginsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOriginsResponse(_message.Message):
    __slots__ = ("origins", "next_page_token")
    ORIGINS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    origins: _containers.RepeatedCompositeFieldContainer[Origin]
    next_page_token: str
    def __init__(self, origins: _Optional[_Iterable[_Union[Origin, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateOriginRequest(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: Origin
    def __init__(self, origin: _Optional[_Union[Origin, _Mapping]] = ...) -> None: ...

class UpdateOriginResponse(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: Origin
    def __init__(self, origin: _Optional[_Union[Origin, _Mapping]] = ...) -> None: ...

class DeleteOriginRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteOriginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
