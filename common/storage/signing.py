"""Signed, expiring download URLs for local storage: HMAC-SHA256 over key and expiry."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from urllib.parse import quote


class UrlSigner:
    def __init__(self, secret: bytes, base_url: str, ttl_seconds: int) -> None:
        self.secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl_seconds = ttl_seconds

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, job_id: str, output_id: str, path: str) -> tuple[str, datetime]:
        expires = int(time.time()) + self.ttl_seconds
        key = f"{job_id}/{output_id}/{path}"
        signature = self._signature(key, expires)
        url = f"{self.base_url}/files/{quote(key)}?expires={expires}&sig={signature}"
        return url, datetime.fromtimestamp(expires, UTC)

    def verify(self, key: str, expires: str, signature: str) -> bool:
        """True only for an untampered signature that has not expired."""
        # isdigit() alone admits "²", which int() refuses: check ASCII first.
        if not (expires.isascii() and expires.isdigit()) or int(expires) < time.time():
            return False
        # Bytes, because compare_digest raises on non-ASCII str.
        return hmac.compare_digest(self._signature(key, int(expires)).encode(), signature.encode())
