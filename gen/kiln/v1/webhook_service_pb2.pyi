import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WebhookSettings(_message.Message):
    __slots__ = ("default_url", "signing_secrets")
    DEFAULT_URL_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRETS_FIELD_NUMBER: _ClassVar[int]
    default_url: str
    signing_secrets: _containers.RepeatedCompositeFieldContainer[SigningSecret]
    def __init__(self, default_url: _Optional[str] = ..., signing_secrets: _Optional[_Iterable[_Union[SigningSecret, _Mapping]]] = ...) -> None: ...

class SigningSecret(_message.Message):
    __slots__ = ("id", "create_time", "expire_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetWebhookSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWebhookSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: WebhookSettings
    def __init__(self, settings: _Optional[_Union[WebhookSettings, _Mapping]] = ...) -> None: ...

class UpdateWebhookSettingsRequest(_message.Message):
    __slots__ = ("default_url",)
    DEFAULT_URL_FIELD_NUMBER: _ClassVar[int]
    default_url: str
    def __init__(self, default_url: _Optional[str] = ...) -> None: ...

class UpdateWebhookSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: WebhookSettings
    def __init__(self, settings: _Optional[_Union[WebhookSettings, _Mapping]] = ...) -> None: ...

class RotateWebhookSecretRequest(_message.Message):
    __slots__ = ("overlap_seconds",)
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    overlap_seconds: int
    def __init__(self, overlap_seconds: _Optional[int] = ...) -> None: ...

class RotateWebhookSecretResponse(_message.Message):
    __slots__ = ("secret", "settings")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    secret: str
    settings: WebhookSettings
    def __init__(self, secret: _Optional[str] = ..., settings: _Optional[_Union[WebhookSettings, _Mapping]] = ...) -> None: ...
