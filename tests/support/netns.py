"""Test hosts: Linux network namespaces joined to this one by veth links, so that a worker
reaches the server over a link the test can cut (a partition), as on another machine.

Each `NetworkHost` is a namespace with its own loopback and one veth pair: the host's end
(`10.77.N.2`) inside the namespace, the server's end (`10.77.N.1`) here. A process started
with `host.command(...)` runs inside; it shares the file system (scratch, storage, inputs)
but not the network. `host.cut()` takes the link down — packets are dropped, TCP connections
hang, as in a real partition — and `host.mend()` brings it back.

Needs root (CAP_NET_ADMIN) and iproute2's `ip`. Without them a test fails, saying so; it
never skips.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

_subnets = itertools.count(int(uuid.uuid4().int % 200) + 1)


def require_namespaces() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise RuntimeError(
            "network-namespace tests need root and iproute2's `ip` (CI runs as root; "
            "apt-get install iproute2)"
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class NetworkHost:
    """One namespace with a veth link to this one (see the module's docstring)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        subnet = next(_subnets) % 250 + 1
        self.namespace = f"kiln-{tag}"
        self.outer_link = f"kv{tag}o"
        self.inner_link = f"kv{tag}i"
        self.server_address = f"10.77.{subnet}.1"
        self.address = f"10.77.{subnet}.2"

    def up(self) -> None:
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.outer_link, "type", "veth", "peer", "name", self.inner_link)
        _ip("link", "set", self.inner_link, "netns", self.namespace)
        _ip("addr", "add", f"{self.server_address}/30", "dev", self.outer_link)
        _ip("link", "set", self.outer_link, "up")
        inside = ("-n", self.namespace)
        _ip(*inside, "addr", "add", f"{self.address}/30", "dev", self.inner_link)
        _ip(*inside, "link", "set", self.inner_link, "up")
        _ip(*inside, "link", "set", "lo", "up")

    def down(self) -> None:
        # Deleting the namespace deletes its end of the pair, and with it ours.
        for command in (["netns", "delete", self.namespace], ["link", "delete", self.outer_link]):
            # Already gone is fine: the first takes the pair with it.
            subprocess.run(["ip", *command], check=False, capture_output=True, timeout=30)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        """A partition: the link drops every packet both ways until mended."""
        _ip("link", "set", self.outer_link, "down")

    def mend(self) -> None:
        _ip("link", "set", self.outer_link, "up")


@contextmanager
def network_hosts(count: int) -> Iterator[list[NetworkHost]]:
    require_namespaces()
    hosts = [NetworkHost() for _ in range(count)]
    try:
        for host in hosts:
            host.up()
        yield hosts
    finally:
        for host in hosts:
            host.down()
