"""The egress proxy's wire side: one client connection, its requests, their responses.

HTTP/1.1 framing (Content-Length, chunked, close-delimited, HEAD, keep-alive) is h11's
job on both sides, so this module only decides what to forward. A plain request names an
absolute http:// URI; it goes upstream on a fresh connection to the pinned address with the
client's own Host header. CONNECT opens a byte tunnel to a pinned address (TLS stays
end to end, so a tunnel's contents cannot be inspected: see docs/inputs.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import h11

from common.egress_refusal import Refused
from common.manifests import ManifestSniffer, is_hls_playlist

if TYPE_CHECKING:
    from common.egress import EgressSession
    from common.input_policy import IPAddress

READ_SIZE = 64 * 1024
# A silent peer is given up after this long (matches the worker's own read timeout).
IDLE_SECONDS = 120.0
CONNECT_SECONDS = 30.0
MAX_REQUEST_BODY = 16 << 20
# Real playlists are kilobytes; a long VOD one with thousands of segments stays far below.
MAX_PLAYLIST_BYTES = 4 << 20
# Enough leading bytes to see "#EXTM3U" behind a BOM and some blank lines.
PLAYLIST_SNIFF_BYTES = 64

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class _Closed(Exception):
    """The connection cannot go on (peer gone, broken framing, a body cut off on purpose)."""


async def serve_client(
    session: EgressSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    client = h11.Connection(h11.SERVER)
    try:
        while True:
            event = await _next_event(client, reader)
            if not isinstance(event, h11.Request):
                return
            body = await _request_body(client, reader)
            if event.method == b"CONNECT":
                await _tunnel(session, client, event, reader, writer)
                return
            await _forward(session, client, event, body, writer)
            if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
                return
            client.start_next_cycle()
    except (_Closed, h11.ProtocolError, ConnectionError, TimeoutError):
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# --- Plain requests ----------------------------------------------------------------------------


async def _forward(
    session: EgressSession,
    client: h11.Connection,
    request: h11.Request,
    body: bytes,
    writer: asyncio.StreamWriter,
) -> None:
    url = request.target.decode("ascii", "replace")
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        await _answer(client, writer, 400, "only absolute http:// URIs (or CONNECT) are proxied")
        return
    try:
        port = parts.port or 80
    except ValueError:
        await _answer(client, writer, 400, "invalid port")
        return
    upstream_streams = await _open_upstream(
        session, client, writer, parts.hostname, port, url, "request for"
    )
    if upstream_streams is None:
        return
    up_reader, up_writer = upstream_streams
    try:
        upstream = h11.Connection(h11.CLIENT)
        path = parts.path or "/"
        target = f"{path}?{parts.query}" if parts.query else path
        await _send(
            upstream,
            up_writer,
            h11.Request(
                method=request.method, target=target, headers=_upstream_headers(request, body)
            ),
        )
        if body:
            await _send(upstream, up_writer, h11.Data(data=body))
        await _send(upstream, up_writer, h11.EndOfMessage())
        await _relay_response(session, url, client, writer, upstream, up_reader)
    finally:
        up_writer.close()


def _upstream_headers(request: h11.Request, body: bytes) -> list[tuple[bytes, bytes]]:
    # The body is re-framed by length; identity encoding keeps the response inspectable; one
    # request per upstream connection keeps pinning trivially per request.
    dropped = HOP_BY_HOP | {b"content-length", b"accept-encoding"}
    headers = [(name, value) for name, value in request.headers if name not in dropped]
    headers += [(b"accept-encoding", b"identity"), (b"connection", b"close")]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    return headers


async def _relay_response(
    session: EgressSession,
    url: str,
    client: h11.Connection,
    writer: asyncio.StreamWriter,
    upstream: h11.Connection,
    up_reader: asyncio.StreamReader,
) -> None:
    response = await _next_event(upstream, up_reader)
    while isinstance(response, h11.InformationalResponse):
        response = await _next_event(upstream, up_reader)
    if not isinstance(response, h11.Response):
        raise _Closed
    headers = [(name, value) for name, value in response.headers if name not in HOP_BY_HOP]
    location = _header(headers, b"location")
    if 300 <= response.status_code < 400 and location:
        session.note_redirect(urljoin(url, location.decode("latin-1")))
    if not session.inspect_bodies:
        await _send(client, writer, h11.Response(status_code=response.status_code, headers=headers))
        await _stream_body(client, writer, upstream, up_reader, lambda chunk: None)
        return
    encoding = (_header(headers, b"content-encoding") or b"identity").lower()
    if encoding != b"identity":
        refused = session.refuse(
            url, f"came back with Content-Encoding {encoding.decode()}, which cannot be inspected"
        )
        await _answer(client, writer, 403, f"refused: {refused}")
        return
    head, ended = await _read_body(upstream, up_reader, PLAYLIST_SNIFF_BYTES)
    if is_hls_playlist(head):
        if not ended:
            rest, ended = await _read_body(upstream, up_reader, MAX_PLAYLIST_BYTES + 1)
            head += rest
        await _relay_playlist(session, url, client, writer, response, head, ended)
        return
    sniffer = ManifestSniffer()
    if kind := sniffer.feed(head):
        refused = session.refuse(url, _manifest_reason(kind), context="")
        await _answer(client, writer, 403, f"refused: {refused}")
        return
    await _send(client, writer, h11.Response(status_code=response.status_code, headers=headers))
    await _send(client, writer, h11.Data(data=head))
    if ended:
        await _send(client, writer, h11.EndOfMessage())
        return

    def cut_off_manifests(chunk: bytes) -> None:
        if kind := sniffer.feed(chunk):
            session.refuse(url, _manifest_reason(kind), context="")
            raise _Closed

    await _stream_body(client, writer, upstream, up_reader, cut_off_manifests)


async def _relay_playlist(
    session: EgressSession,
    url: str,
    client: h11.Connection,
    writer: asyncio.StreamWriter,
    response: h11.Response,
    playlist: bytes,
    ended: bool,
) -> None:
    """Checks every URI of a buffered playlist, then forwards it unchanged, or refuses it."""
    try:
        if not ended or len(playlist) > MAX_PLAYLIST_BYTES:
            raise session.refuse(url, "is an HLS playlist larger than 4 MiB", context="")
        text = playlist.decode("utf-8", "replace")
        if response.status_code == 206 and not _whole_body(response):
            # A cut-off last line is part of a URI, not one; the client holds no more either.
            text = text.rpartition("\n")[0]
        await session.check_playlist(url, text)
    except Refused as refused:
        await _answer(client, writer, 403, f"refused: {refused}")
        return
    dropped = HOP_BY_HOP | {b"content-length"}
    headers = [(name, value) for name, value in response.headers if name not in dropped]
    headers.append((b"content-length", str(len(playlist)).encode()))
    await _send(client, writer, h11.Response(status_code=response.status_code, headers=headers))
    await _send(client, writer, h11.Data(data=playlist))
    await _send(client, writer, h11.EndOfMessage())


def _manifest_reason(kind: str) -> str:
    if "DASH" in kind:
        return (
            f"is {kind}; DASH manifests are refused as inputs because their BaseURLs "
            "can name other protocols (tcp://, file://)"
        )
    return f"is {kind}, which is refused as an input because it names further files"


async def _stream_body(
    client: h11.Connection,
    writer: asyncio.StreamWriter,
    upstream: h11.Connection,
    up_reader: asyncio.StreamReader,
    check_chunk: Callable[[bytes], None],
) -> None:
    """Forwards the rest of a body chunk by chunk, each only after check_chunk let it pass
    (it raises _Closed to cut the body off there)."""
    while True:
        event = await _next_event(upstream, up_reader)
        if isinstance(event, h11.Data):
            check_chunk(event.data)
            await _send(client, writer, h11.Data(data=event.data))
        elif isinstance(event, h11.EndOfMessage):
            await _send(client, writer, h11.EndOfMessage())
            return
        else:
            raise _Closed


# --- CONNECT tunnels -----------------------------------------------------------------------


async def _tunnel(
    session: EgressSession,
    client: h11.Connection,
    request: h11.Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    authority = request.target.decode("ascii", "replace")
    parts = urlsplit(f"//{authority}")
    try:
        if not parts.hostname or not parts.port:
            raise ValueError(authority)
        host, port = parts.hostname, parts.port
    except ValueError:
        await _answer(client, writer, 400, "CONNECT needs host:port")
        return
    upstream_streams = await _open_upstream(
        session, client, writer, host, port, authority, "connection to"
    )
    if upstream_streams is None:
        return
    up_reader, up_writer = upstream_streams
    try:
        await _send(client, writer, h11.Response(status_code=200, headers=[]))
        leftover, _ = client.trailing_data
        if leftover:
            up_writer.write(leftover)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        up_writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, TimeoutError):
        while data := await asyncio.wait_for(source.read(READ_SIZE), IDLE_SECONDS):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(ConnectionError, OSError):
        if sink.can_write_eof():
            sink.write_eof()


# --- Plumbing ----------------------------------------------------------------------------------


async def _open_upstream(
    session: EgressSession,
    client: h11.Connection,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    target: str,
    context: str,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """Checks `host` against the policy and connects to an address it pinned; on a refusal
    or a dead origin the client gets its answer (403, 502) and this returns None."""
    try:
        addresses = await session.pinned_addresses(host, port, target, context=context)
    except Refused as refused:
        await _answer(client, writer, 403, f"refused: {refused}")
        return None
    try:
        return await _connect(addresses, port)
    except OSError:
        await _answer(client, writer, 502, "the origin cannot be reached")
        return None


async def _connect(
    addresses: list[IPAddress], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connects to the first reachable checked address; never resolves a name again."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(str(address), port), CONNECT_SECONDS
            )
        except (OSError, TimeoutError) as failure:
            error = failure if isinstance(failure, OSError) else OSError(str(failure))
    raise error


async def _next_event(connection: h11.Connection, reader: asyncio.StreamReader):
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_SECONDS)
        connection.receive_data(data)


async def _request_body(client: h11.Connection, reader: asyncio.StreamReader) -> bytes:
    body, ended = await _read_body(client, reader, MAX_REQUEST_BODY + 1)
    if not ended or len(body) > MAX_REQUEST_BODY:
        raise _Closed
    return body


async def _read_body(
    connection: h11.Connection, reader: asyncio.StreamReader, at_least: int
) -> tuple[bytes, bool]:
    """Body bytes until `at_least` are in hand or the message ends; (bytes, ended)."""
    chunks: list[bytes] = []
    size = 0
    while size < at_least:
        event = await _next_event(connection, reader)
        if isinstance(event, h11.Data):
            chunks.append(event.data)
            size += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks), True
        else:
            raise _Closed
    return b"".join(chunks), False


async def _send(connection: h11.Connection, writer: asyncio.StreamWriter, event) -> None:
    data = connection.send(event)
    if data:
        writer.write(data)
        await writer.drain()


async def _answer(
    client: h11.Connection, writer: asyncio.StreamWriter, status: int, text: str
) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await _send(client, writer, h11.Response(status_code=status, headers=headers))
    with contextlib.suppress(h11.LocalProtocolError):  # a HEAD request gets no body
        await _send(client, writer, h11.Data(data=body))
    await _send(client, writer, h11.EndOfMessage())


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


def _whole_body(response: h11.Response) -> bool:
    """Whether a 206 covers its whole resource ("bytes 0-99/100")."""
    content_range = _header(list(response.headers), b"content-range") or b""
    try:
        span, _, total = content_range.decode().removeprefix("bytes ").partition("/")
        start, _, end = span.partition("-")
        return int(start) == 0 and int(end) + 1 == int(total)
    except ValueError:
        return False
