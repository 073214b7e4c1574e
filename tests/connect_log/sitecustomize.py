"""Put first on PYTHONPATH by tests that check where a `python main.py` connects: every socket connection, datagram
and name lookup of the interpreter (and of its worker processes, which start with the same environment) is written,
one per line, to the file CONNECT_LOG names. An audit hook (PEP 578) sees them whichever library makes them."""

import os
import sys

_LOG = os.environ.get("CONNECT_LOG")


def _hook(event, args):
    if not event.startswith("socket.") or _LOG is None:
        return
    if event in ("socket.connect", "socket.sendto"):
        address = args[1]
        line = f"{event} {address[0]} {address[1]}" if isinstance(address, tuple) else f"{event} unix:{address}"
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        line = f"{event} {args[0]}"
    else:
        return
    with open(_LOG, "a", encoding="utf-8") as file:
        file.write(line + "\n")


if _LOG:
    sys.addaudithook(_hook)
