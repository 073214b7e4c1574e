"""A network namespace with veth links to the host: a second "machine" on this one, for partition tests.

`Namespace()` makes a namespace of its own (a random name); `link()` adds a veth pair whose host side and
namespace side get the two usable addresses of a private /30 under 10.231.0.0/16 (one not in use on this
host), so the namespace reaches exactly the host addresses of its links, through them alone. Taking a
link's host side down is pulling its cable: the namespace's packets on it go nowhere, silently, until it is
up again. `command()` prefixes a command to run inside. `destroy()` (or leaving the `with` block) deletes
its veth pairs, then the namespace. Needs root (CI runs as root).
"""

from __future__ import annotations

import random
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

IP_TIMEOUT_S = 10
SUBNET = "10.231"


@dataclass(frozen=True)
class Link:
    """One veth pair: the host side and its address, the namespace side and its address."""

    host_dev: str
    host_ip: str
    ns_dev: str
    ns_ip: str


def ip(*args: str) -> str:
    """Run `ip ARGS`; its stdout; CalledProcessError (with stderr) if it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, ["ip", *args], result.stdout, result.stderr)
    return result.stdout


class Namespace:
    """A network namespace with veth links to the host; a context manager that deletes it at the end."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.name = f"yp-test-{self.tag}"
        self.links: list[Link] = []
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    def link(self) -> Link:
        """A new veth pair between the host and the namespace, on a /30 of its own, both sides up."""
        index = len(self.links)
        prefix, base = _free_subnet()
        link = Link(
            host_dev=f"yp{self.tag}h{index}",
            host_ip=f"{prefix}{base + 1}",
            ns_dev=f"yp{self.tag}n{index}",
            ns_ip=f"{prefix}{base + 2}",
        )
        ip("link", "add", link.host_dev, "type", "veth", "peer", "name", link.ns_dev)
        self.links.append(link)
        ip("link", "set", link.ns_dev, "netns", self.name)
        ip("addr", "add", f"{link.host_ip}/30", "dev", link.host_dev)
        ip("link", "set", link.host_dev, "up")
        ip("-n", self.name, "addr", "add", f"{link.ns_ip}/30", "dev", link.ns_dev)
        ip("-n", self.name, "link", "set", link.ns_dev, "up")
        return link

    def cut(self, link: Link) -> None:
        """Pull the link's cable: its host side goes down."""
        ip("link", "set", link.host_dev, "down")

    def mend(self, link: Link) -> None:
        """Plug it back in."""
        ip("link", "set", link.host_dev, "up")

    def command(self, *argv: str) -> list[str]:
        """`argv` to run inside the namespace (ip netns exec execs it: the process is the command itself)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def destroy(self) -> None:
        """Delete the veth pairs (deleting the host side deletes both sides, at once), then the namespace.

        In this order nothing is left to the kernel's deferred clean-up of a deleted namespace, which
        removes its veth pairs some time after `ip netns del` returns: a link seen then deleted could be
        gone in between (seen in CI as `ip link del` failing).
        """
        for link in self.links:
            if (
                subprocess.run(
                    ["ip", "link", "show", link.host_dev], capture_output=True, timeout=IP_TIMEOUT_S
                ).returncode
                == 0
            ):
                ip("link", "del", link.host_dev)
        if self.name in ip("netns", "list").split():
            ip("netns", "del", self.name)


def _free_subnet() -> tuple[str, int]:
    """("10.231.X.", Y), Y a multiple of 4, such that no address of 10.231.X.Y/30 is in use on the host."""
    used = ip("-4", "-o", "addr", "show")
    for _ in range(100):
        prefix, base = f"{SUBNET}.{random.randrange(256)}.", random.randrange(0, 256, 4)
        if not any(f" {prefix}{base + offset}/" in used for offset in range(4)):
            return prefix, base
    raise RuntimeError(f"no free /30 under {SUBNET}.0.0/16")
