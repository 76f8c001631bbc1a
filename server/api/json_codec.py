"""The `json` codec of kiln's Connect applications: requests read strictly.

connectrpc's stock JSON codec parses with `ignore_unknown_fields=True`, which also drops
string enum values it does not know. A body pasted from a hosted service's docs
(`"type": "mp4"`) or with a typo (`"OUTPUT_TYPE_MP5"`) then lost those parts without a word
and was refused later for something else (`outputs[0].type: is required`), or worse,
accepted without what the client asked for.

This codec, plugged into every public kiln.v1 Connect application for the `json` content
types (`application/json`, `application/connect+json`), reads bodies with
domain.request_json (short enum spellings; unknown values and fields named) and answers
INVALID_ARGUMENT with google.rpc.BadRequest details like every other field violation
(errors.connect_error). Answers are encoded as before. Binary protobuf and gRPC never come
here.
"""

from __future__ import annotations

from typing import TypeVar

from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from google.protobuf.message import Message

from ..domain.errors import InvalidArgument
from ..domain.request_json import RequestJsonError, parse_request
from .errors import connect_error

M = TypeVar("M", bound=Message)

CODEC_NAME_JSON = "json"

# The answers are encoded exactly as before (connectrpc's google.protobuf JSON codec).
_ANSWER_CODEC = google_protobuf_json_codec()


class StrictJsonCodec:
    """The `json` codec of kiln's Connect applications (see the module docstring)."""

    def name(self) -> str:
        return CODEC_NAME_JSON

    def encode(self, message: Message) -> bytes:
        return _ANSWER_CODEC.encode(message)

    def decode(self, data: bytes | bytearray, message_class: type[M]) -> M:
        try:
            return parse_request(data, message_class)
        except InvalidArgument as error:
            raise connect_error(error) from None
        except RequestJsonError as error:
            raise ConnectError(Code.INVALID_ARGUMENT, str(error)) from None


def connect_codecs() -> list:
    """Binary protobuf as generated, and the strict JSON codec."""
    return [google_protobuf_binary_codec(), StrictJsonCodec()]
