"""The egress proxy: the only way an input's (or a webhook's) bytes leave this machine.

Checking a URL once and then handing it to FFmpeg is not enough: FFmpeg follows redirects,
fetches whatever an HLS playlist names, and resolves host names again when it connects, so
the destination it reaches is not the one that was checked. Instead every outbound http(s)
request goes through a small forward proxy on loopback that

- resolves each host once per session and pins it: the addresses checked against the
  policy are the ones connected to, for the whole session (no second DNS answer, so no
  rebinding between check and connect);
- passes redirects through unchanged, so the client's next request comes back here and is
  checked like the first (hop by hop);
- reads HLS playlists before the client sees them and refuses one naming anything that is
  not http(s) or not allowed; refuses DASH/IMF manifests and ffconcat lists outright;
- answers a refused request 403 without ever opening a connection to the refused address,
  and records the refusal on the session, whose `refused` event lets the caller stop at once.

    async with egress.session(policy) as session:
        run_ffmpeg(..., env={"http_proxy": session.proxy_url})
        if session.refusals: ...

Each session has its own listener (127.0.0.1, port 0), so refusals belong to one task.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from common.egress_refusal import Refusal, Refused
from common.egress_relay import serve_client
from common.input_policy import InputPolicy, IPAddress
from common.manifests import playlist_uris

# (host, port) -> the addresses it resolves to, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo, in the loop's thread pool (it blocks)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


class EgressSession:
    """One task's (or one delivery's) proxy: its listener, its pinned hosts, its refusals."""

    def __init__(
        self, policy: InputPolicy, resolver: Resolver, *, inspect_bodies: bool = True
    ) -> None:
        self.policy = policy
        self.inspect_bodies = inspect_bodies
        self.refusals: list[Refusal] = []
        self.refused = asyncio.Event()
        self._resolver = resolver
        self._pinned: dict[str, list[IPAddress]] = {}
        self._redirect_targets: set[str] = set()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task] = set()
        self.proxy_url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.proxy_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            client.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._clients.add(current)
        try:
            await serve_client(self, reader, writer)
        except asyncio.CancelledError:
            # Closed with its session. Ending normally: asyncio's stream callback (3.11) would
            # log a cancelled connection task as an error.
            writer.close()
        finally:
            self._clients.discard(current)

    # --- Decisions ---------------------------------------------------------------------------

    async def pinned_addresses(
        self, host: str, port: int, url: str, context: str = "request for"
    ) -> list[IPAddress]:
        """The checked addresses to connect to for `host`; raises Refused.

        A name is resolved once per session and every address it gave must pass: later
        requests (FFmpeg's seeks, the next segment) reuse the same answer.
        """
        context = "redirect to" if url in self._redirect_targets else context
        host = host.lower().strip("[]")
        addresses = self._pinned.get(host)
        if addresses is None:
            addresses = await self._resolve(host, port, url, context)
            self._pinned[host] = addresses
        for address in addresses:
            problem = self.policy.address_refusal(host, address)
            if problem is not None:
                raise self.refuse(url, f"resolves to {problem}", context, address=str(address))
        return addresses

    async def _resolve(self, host: str, port: int, url: str, context: str) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            answers = await self._resolver(host, port)
        except OSError:
            answers = []
        if not answers:
            raise self.refuse(url, "does not resolve", context)
        return [ipaddress.ip_address(answer) for answer in dict.fromkeys(answers)]

    async def check_playlist(self, playlist_url: str, text: str) -> None:
        """Every URI of an HLS playlist must be http(s) and allowed; raises Refused."""
        context = f"playlist {playlist_url} names"
        for uri in playlist_uris(text, playlist_url):
            parts = urlsplit(uri)
            if parts.scheme.lower() not in ("http", "https"):
                raise self.refuse(uri, "is not an http(s) URL", context)
            if not parts.hostname:
                raise self.refuse(uri, "has no host", context)
            try:
                port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            except ValueError:
                raise self.refuse(uri, "has an invalid port", context) from None
            await self.pinned_addresses(parts.hostname, port, uri, context)

    def note_redirect(self, target: str) -> None:
        """A 3xx went through: when its target is refused, the message says it was a redirect."""
        self._redirect_targets.add(target)

    def refuse(
        self, url: str, reason: str, context: str = "request for", *, address: str = ""
    ) -> Refused:
        refusal = Refusal(url=url, reason=reason, address=address, context=context)
        self.refusals.append(refusal)
        self.refused.set()
        return Refused(refusal)


@asynccontextmanager
async def session(
    policy: InputPolicy, *, resolver: Resolver | None = None, inspect_bodies: bool = True
) -> AsyncIterator[EgressSession]:
    """A proxy listening on loopback for as long as the block runs.

    inspect_bodies=False passes response bodies through unread (webhook answers are never
    parsed by anything, so only destinations are checked).
    """
    egress = EgressSession(policy, resolver or system_resolver, inspect_bodies=inspect_bodies)
    await egress.start()
    try:
        yield egress
    finally:
        await egress.close()
