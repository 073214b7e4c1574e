"""--offline's promise that nothing leaves the machine: an audit hook (PEP 578) that refuses, in this process, each
connection, datagram and name lookup for anything but this machine and the run's Redis. The HTTP clients never
get that far offline (they answer from the cassettes); this holds a worker's own sockets, or a library's, to it."""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from core.http.tape import OFFLINE_ENV

LOCAL_NAMES = frozenset({"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_allowed: set[str] | None = None  # None until the hook is in


class OfflineRefused(ConnectionRefusedError):
    """A connection or a lookup of another machine, refused because the run is offline."""


def is_local(host: object, allowed: Iterable[str] = ()) -> bool:
    """Whether `host` (a name or an address; None for "any") is this machine or one of `allowed`."""
    if host is None or isinstance(host, int):
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    name = name.strip("[]").lower().split("%")[0]
    if name in LOCAL_NAMES or name in allowed:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not event.startswith("socket."):
        return
    allowed = _allowed or set()
    if event in ("socket.connect", "socket.sendto"):
        address = args[1]
        host = address[0] if isinstance(address, tuple) and address else None  # AF_UNIX: a path, always local
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
    else:
        return
    if not is_local(host, allowed):
        raise OfflineRefused(
            f"offline: no network: {host} is not this machine (--offline answers HTTP from its folder)"
        )


def refuse_network(allowed_hosts: Iterable[str] = ()) -> None:
    """From now on, refuse in this process every connection and lookup but this machine's and `allowed_hosts`'."""
    global _allowed
    hosts = {host.lower() for host in allowed_hosts if host}
    if _allowed is None:
        _allowed = hosts
        sys.addaudithook(_hook)  # a hook stays for the life of the process
    else:
        _allowed |= hosts


def enter() -> None:
    """Refuse the network now if this process is of an offline run (the environment says so); else nothing."""
    if os.environ.get(OFFLINE_ENV):
        redis_host = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0").hostname
        refuse_network([redis_host or ""])
