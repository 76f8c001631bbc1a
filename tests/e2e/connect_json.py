"""A plain-HTTP Connect JSON client, as curl would speak it (no generated code)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

from tests.support import plain_http

END_STREAM_FLAG = 0x02


class ConnectJsonClient:
    def __init__(self, base_url: str, api_key: str | None, **headers: str) -> None:
        self.base_url = base_url
        self.headers = dict(headers)
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def call_service(self, service: str, method: str, body: dict) -> dict:
        """A unary call that must succeed; returns the JSON answer."""
        response = plain_http.post(
            f"{self.base_url}/{service}/{method}",
            json=body,
            headers={**self.headers, "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def call(self, method: str, body: dict) -> tuple[int, dict]:
        response = plain_http.post(
            f"{self.base_url}/kiln.v1.JobService/{method}",
            json=body,
            headers={**self.headers, "Content-Type": "application/json"},
            timeout=30,
        )
        return response.status_code, response.json()

    def watch(self, body: dict, timeout: float = 60) -> Iterator[dict]:
        """Server-streaming Watch: enveloped JSON frames; the end frame has flag 2."""
        payload = json.dumps(body).encode()
        envelope = struct.pack(">BI", 0, len(payload)) + payload
        with plain_http.stream(
            "POST",
            f"{self.base_url}/kiln.v1.JobService/Watch",
            content=envelope,
            headers={
                **self.headers,
                "Content-Type": "application/connect+json",
                "Connect-Protocol-Version": "1",
            },
            timeout=timeout,
        ) as response:
            buffer = b""
            for chunk in response.iter_bytes():
                buffer += chunk
                while len(buffer) >= 5:
                    flags, length = struct.unpack(">BI", buffer[:5])
                    if len(buffer) < 5 + length:
                        break
                    frame, buffer = buffer[5 : 5 + length], buffer[5 + length :]
                    message = json.loads(frame)
                    if flags & END_STREAM_FLAG:
                        if "error" in message:
                            raise ConnectStreamError(message["error"])
                        return
                    yield message


class ConnectStreamError(Exception):
    def __init__(self, error: dict) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.error = error
