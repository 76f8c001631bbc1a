"""Real HTTP origins on loopback addresses for input and webhook tests, with request logs.

An origin serves a table of routes; each request is logged (method, path, headers) before
it is answered, so a test can assert that an address was never asked for anything.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

# A route answers a request itself: (handler, origin) -> None.
Route = Callable[[http.server.BaseHTTPRequestHandler, "Origin"], None]


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Origin:
    host: str = "127.0.0.1"
    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                with origin.arrived:
                    origin.log.append(LoggedRequest(self.command, self.path, headers))
                    origin.arrived.notify_all()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    self.rfile.read(length)
                route = origin.routes.get(self.path.split("?")[0])
                if route is None:
                    send(self, 404, b"not found\n", "text/plain")
                else:
                    route(self, origin)

            def do_GET(self) -> None:
                self._any()

            def do_POST(self) -> None:
                self._any()

            def do_HEAD(self) -> None:
                self._any()

        self.server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def requests_for(self, path: str) -> list[LoggedRequest]:
        return [request for request in self.log if request.path.split("?")[0] == path]

    def wait_for(self, path: str, count: int, timeout: float) -> list[LoggedRequest]:
        """Blocks until `count` requests for `path` arrived."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests_for(path)) >= count, timeout)
            return self.requests_for(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def twin_origins(first: str, second: str) -> tuple[Origin, Origin]:
    """Two origins on the same port at two addresses: what one name would reach at either
    address (DNS rebinding)."""
    for _ in range(20):
        one = Origin(first)
        try:
            return one, Origin(second, one.port)
        except OSError:
            one.close()  # that port is taken on the second address; try another
    raise RuntimeError(f"no port free on both {first} and {second}")


def send(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "application/octet-stream",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def requested_range(
    handler: http.server.BaseHTTPRequestHandler, size: int
) -> tuple[int, int] | None:
    """(first, last) byte of a single-range request for `size` bytes; None: no Range."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range", ""))
    if not match:
        return None
    return int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)


def range_headers(first: int, last: int, size: int) -> dict[str, str]:
    return {"Accept-Ranges": "bytes", "Content-Range": f"bytes {first}-{last}/{size}"}


def static(data: bytes, content_type: str = "video/mp4") -> Route:
    """Serves `data`, honouring single byte ranges (206) like a CDN."""

    def route(handler: http.server.BaseHTTPRequestHandler, origin: Origin) -> None:
        wanted = requested_range(handler, len(data))
        if wanted is None:
            send(handler, 200, data, content_type, {"Accept-Ranges": "bytes"})
            return
        first, last = wanted
        send(
            handler,
            206,
            data[first : last + 1],
            content_type,
            range_headers(first, last, len(data)),
        )

    return route


@dataclass
class HeldMedia:
    """A media file served with byte ranges that stops partway until the test releases it:
    an encode reading it stays mid-way for as long as the test needs, however short the
    clip (a long clip only made that likely, at the price of encoding all of it).

    A read that starts before `hold_at` (a fraction of the bytes) gets the bytes up to it
    spread over `lead_in_seconds`, then waits for `release()`; a read that starts after it
    (the index at the end of a non-faststart MP4) is answered at once. The lead-in is
    there because FFmpeg reports progress twice a second and not while a read blocks: a
    clip read up to the hold within half a second would leave its job at 0 % progress.
    """

    data: bytes
    # Where an origin serves it.
    url: str = ""
    hold_at: float = 0.5
    lead_in_seconds: float = 1.5
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()

    def route(self, handler: http.server.BaseHTTPRequestHandler, origin: Origin) -> None:
        size = len(self.data)
        wanted = requested_range(handler, size)
        first, last = wanted or (0, size - 1)
        handler.send_response(200 if wanted is None else 206)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header("Content-Length", str(last - first + 1))
        headers = {"Accept-Ranges": "bytes"} if wanted is None else range_headers(*wanted, size)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command == "HEAD":
            return
        hold = int(size * self.hold_at)
        try:
            sent = first
            if first < hold <= last:
                sent = self._lead_in(handler, first, hold)
                self.released.wait()
            handler.wfile.write(self.data[sent : last + 1])
        except OSError:
            pass  # the reader went away (it seeked elsewhere, or its FFmpeg was stopped)

    def _lead_in(self, handler: http.server.BaseHTTPRequestHandler, first: int, hold: int) -> int:
        """Sends bytes from `first` towards `hold` at the lead-in's pace, all at once when
        released meanwhile; returns where it stopped."""
        steps = 15
        sent = first
        for step in range(1, steps + 1):
            if self.released.is_set():
                break
            end = first + (hold - first) * step // steps
            handler.wfile.write(self.data[sent:end])
            handler.wfile.flush()
            sent = end
            # The origin's pace (a slow start), not synchronisation: nothing waits on it.
            time.sleep(self.lead_in_seconds / steps)
        return sent


def redirect(location: str, status: int = 302) -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler, origin: Origin) -> None:
        send(handler, status, b"", "text/plain", {"Location": location})

    return route


def slow_for_ffmpeg(route: Route, seconds: float, requests: int) -> Route:
    """The first `requests` requests from FFmpeg (User-Agent Lavf/…) wait `seconds` before
    the answer starts: an origin slow to respond, which makes the probe slow."""
    remaining = [requests]
    lock = threading.Lock()

    def slow(handler: http.server.BaseHTTPRequestHandler, origin: Origin) -> None:
        with lock:
            delay = remaining[0] > 0 and handler.headers.get("User-Agent", "").startswith("Lavf")
            remaining[0] -= delay
        if delay:
            time.sleep(seconds)  # the slowness under test, not synchronisation
        route(handler, origin)

    return slow


def hold_on(origin: Origin, data: bytes) -> HeldMedia:
    """`data` served held (HeldMedia) at a path of its own on `origin`."""
    path = f"/held-{uuid.uuid4().hex[:12]}.mp4"
    held = HeldMedia(data, url=origin.url(path))
    origin.routes[path] = held.route
    return held
