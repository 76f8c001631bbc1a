"""A Connect JSON client over plain HTTP (httpx): unary calls and the server-streaming Watch.

The CLI speaks the same protocol as curl: `POST {KILN_URL}/kiln.v1.<Service>/<Method>` with
a JSON body. Answers are parsed into the generated messages (unknown fields ignored, so an
older CLI keeps working against a newer server) and kept as the JSON the server sent, which
is what `--json` prints.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
from google.protobuf import json_format
from google.protobuf.message import Message

JOB_SERVICE = "kiln.v1.JobService"
PRESET_SERVICE = "kiln.v1.PresetService"

END_STREAM_FLAG = 0x02
ENVELOPE = struct.Struct(">BI")

M = TypeVar("M", bound=Message)

# Connect codes by HTTP status, for answers that carry no Connect error body (a proxy's 502).
_CODE_BY_STATUS = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    408: "deadline_exceeded",
    409: "aborted",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}


class ApiError(Exception):
    """A Connect error: the code (`not_found`, `unavailable`, ...) and the server's message."""

    def __init__(self, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or []


def message_to_json(message: Message) -> dict[str, Any]:
    """Connect JSON of a message (proto field names, as the server writes them)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def parse(payload: dict[str, Any], message_type: type[M]) -> M:
    return json_format.ParseDict(payload, message_type(), ignore_unknown_fields=True)


def _error_from_json(payload: Any, fallback_code: str) -> ApiError:
    if isinstance(payload, dict) and payload.get("code"):
        return ApiError(
            str(payload["code"]), str(payload.get("message", "")), payload.get("details")
        )
    return ApiError(fallback_code, str(payload)[:500])


class Client:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _headers(self, content_type: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": content_type,
            "Connect-Protocol-Version": "1",
        }

    def call(self, service: str, method: str, request: Message) -> dict[str, Any]:
        """A unary call; returns the answer's JSON or raises ApiError."""
        url = f"{self.base_url}/{service}/{method}"
        try:
            response = self.http.post(
                url,
                content=json.dumps(message_to_json(request)).encode(),
                headers=self._headers("application/json"),
            )
        except httpx.HTTPError as error:
            raise ApiError("unavailable", f"cannot reach {url}: {error}") from error
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        if response.status_code != 200:
            fallback = _CODE_BY_STATUS.get(response.status_code, "unknown")
            raise _error_from_json(payload, fallback)
        if not isinstance(payload, dict):
            raise ApiError("internal", f"{url} answered something that is not JSON")
        return payload

    def watch(
        self, job_id: str, after_sequence: int | None, *, read_timeout: float = 90.0
    ) -> Iterator[dict[str, Any]]:
        """One Watch stream: yields each event's JSON; raises ApiError when the stream ends
        with an error, and httpx.HTTPError when the connection drops."""
        body: dict[str, Any] = {"id": job_id}
        if after_sequence is not None:
            body["after_sequence"] = str(after_sequence)
        payload = json.dumps(body).encode()
        url = f"{self.base_url}/{JOB_SERVICE}/Watch"
        timeout = httpx.Timeout(30.0, read=read_timeout)
        with self.http.stream(
            "POST",
            url,
            content=ENVELOPE.pack(0, len(payload)) + payload,
            headers=self._headers("application/connect+json"),
            timeout=timeout,
        ) as response:
            if response.status_code != 200:
                response.read()
                try:
                    error = response.json()
                except ValueError:
                    error = response.text
                raise _error_from_json(error, _CODE_BY_STATUS.get(response.status_code, "unknown"))
            buffer = b""
            for chunk in response.iter_bytes():
                buffer += chunk
                while len(buffer) >= ENVELOPE.size:
                    flags, length = ENVELOPE.unpack(buffer[: ENVELOPE.size])
                    end = ENVELOPE.size + length
                    if len(buffer) < end:
                        break
                    frame, buffer = buffer[ENVELOPE.size : end], buffer[end:]
                    message = json.loads(frame)
                    if flags & END_STREAM_FLAG:
                        if isinstance(message, dict) and message.get("error"):
                            raise _error_from_json(message["error"], "unknown")
                        return
                    yield message
        # The body ended without an end-of-stream frame: the connection was cut.
        raise httpx.RemoteProtocolError("the Watch stream ended without its end frame")
