"""A small LAN of test hosts for the soak across hosts: one Linux bridge in this network
namespace and one network namespace per host, each joined to the bridge by a veth pair.

tests/support/netns.py gives each test host a point-to-point link to this namespace, which
is enough for workers talking to a server here. The soak puts the server replicas on hosts
too, so workers must reach other hosts: on a bridge they do, at layer 2, without turning on
IP forwarding in this namespace (a machine-wide setting others' processes share).

Addresses: the bridge holds `10.78.S.1/24` (S picked at random per run), where the shared
services listen (PostgreSQL, the Pub/Sub emulator, the object store): they stay in this
namespace and are reached over each host's link, so cutting a host's link cuts it from all
of them, as a partition of a machine would. Host n has `10.78.S.(10+n)`. `cut()` takes the
host's end on the bridge down (packets dropped both ways, TCP connections hang), `mend()`
brings it back.

Needs root (CAP_NET_ADMIN) and iproute2's `ip`.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _ip_quiet(*args: str) -> None:
    """Teardown: already gone is fine."""
    subprocess.run(["ip", *args], check=False, capture_output=True, timeout=30)


@dataclass
class LanHost:
    name: str
    namespace: str
    outer_link: str  # our end, on the bridge: the one cut() takes down
    address: str

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace (ip netns exec execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        _ip("link", "set", self.outer_link, "down")

    def mend(self) -> None:
        _ip("link", "set", self.outer_link, "up")


class Lan:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.subnet = random.randint(1, 250)
        self.bridge = f"kb{self.tag}"
        self.services_address = f"10.78.{self.subnet}.1"
        self.hosts: list[LanHost] = []

    def up(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise RuntimeError("the soak across hosts needs root and iproute2's `ip`")
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.services_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> LanHost:
        index = len(self.hosts)
        host = LanHost(
            name=name,
            namespace=f"kiln-{self.tag}-{name}",
            outer_link=f"kb{self.tag}o{index}",
            address=f"10.78.{self.subnet}.{10 + index}",
        )
        inner = f"kb{self.tag}i{index}"
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.outer_link, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", host.namespace)
        _ip("link", "set", host.outer_link, "master", self.bridge)
        _ip("link", "set", host.outer_link, "up")
        inside = ("-n", host.namespace)
        _ip(*inside, "addr", "add", f"{host.address}/24", "dev", inner)
        _ip(*inside, "link", "set", inner, "up")
        _ip(*inside, "link", "set", "lo", "up")
        self.hosts.append(host)
        return host

    def down(self) -> None:
        # Deleting a namespace deletes its end of the pair, and with it ours.
        for host in self.hosts:
            _ip_quiet("netns", "delete", host.namespace)
            _ip_quiet("link", "delete", host.outer_link)
        _ip_quiet("link", "delete", self.bridge)


@contextmanager
def lan(names: list[str]) -> Iterator[tuple[Lan, dict[str, LanHost]]]:
    network = Lan()
    try:
        network.up()
        hosts = {name: network.add_host(name) for name in names}
        yield network, hosts
    finally:
        network.down()
