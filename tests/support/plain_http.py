"""The tests' one-off HTTP requests (downloads, readiness polls, Connect JSON calls), each on
a client of its own as `httpx.get` makes them, but sharing one TLS context.

`httpx.get` and its siblings build a new client per call, and every new client builds a TLS
context (reading certifi's CA bundle) even for an http:// URL: 20-40 ms of CPU each, measured
under the suite's load, which the readiness poll of every server start paid ten times a
second. Sharing the context keeps what a fresh client gives (no cookies or connections carried
from one request to the next) without that cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

TLS = httpx.create_ssl_context()


def request(method: str, url: str, **options: Any) -> httpx.Response:
    options.setdefault("verify", TLS)
    return httpx.request(method, url, **options)


def get(url: str, **options: Any) -> httpx.Response:
    return request("GET", url, **options)


def head(url: str, **options: Any) -> httpx.Response:
    return request("HEAD", url, **options)


def options(url: str, **options: Any) -> httpx.Response:
    return request("OPTIONS", url, **options)


def post(url: str, **options: Any) -> httpx.Response:
    return request("POST", url, **options)


def put(url: str, **options: Any) -> httpx.Response:
    return request("PUT", url, **options)


def delete(url: str, **options: Any) -> httpx.Response:
    return request("DELETE", url, **options)


@contextmanager
def stream(method: str, url: str, **options: Any) -> Iterator[httpx.Response]:
    options.setdefault("verify", TLS)
    with httpx.stream(method, url, **options) as response:
        yield response
