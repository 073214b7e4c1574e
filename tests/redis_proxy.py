"""A TCP proxy in front of a Redis server that can lose one reply: the command reaches the server and runs,
and the connection is cut before its answer reaches the client, as when a network drops a connection at the
wrong moment. The client sees the connection reset and cannot tell whether its command ran.

    with RedisProxy(server.port) as proxy:
        proxy.lose_reply(b"EVALSHA")   # the next command whose bytes hold EVALSHA runs, its reply is lost
        ...                            # use proxy.url()
        assert proxy.lost.wait(5)
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from pg_proxy import _shut  # the same way to drop a connection both proxies use

CHUNK = 65536
JOIN_TIMEOUT_S = 5.0


class RedisProxy:
    """Forwards 127.0.0.1:<port> to a Redis server on 127.0.0.1:`upstream_port`; a context manager that
    closes every connection and ends its threads at the end."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: list[bytes] = []  # markers: the next command holding each loses its reply
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        #: Set each time a reply was lost (cleared by lose_reply).
        self.lost = threading.Event()
        self.lost_count = 0
        self._accepter = threading.Thread(target=self._accept, name="RedisProxy", daemon=True)

    def __enter__(self) -> RedisProxy:
        self._accepter.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def lose_reply(self, marker: bytes, times: int = 1) -> None:
        """The next `times` commands whose bytes contain `marker` run on the server; their replies are lost."""
        with self._lock:
            self._armed.extend([marker] * times)
        self.lost.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        _shut(self._listener)  # shutdown() wakes the accept() waiting in the accepter thread
        for sock in sockets:
            _shut(sock)
        self._accepter.join(JOIN_TIMEOUT_S)
        for thread in list(self._threads):
            thread.join(JOIN_TIMEOUT_S)

    # --- forwarding ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=JOIN_TIMEOUT_S)
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    _shut(client), _shut(upstream)
                    return
                self._sockets += [client, upstream]
            state = {"drop": False}
            for source, target, name in ((client, upstream, "up"), (upstream, client, "down")):
                thread = threading.Thread(
                    target=self._pump,
                    args=(source, target, name, state, client, upstream),
                    name=f"RedisProxy-{name}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        direction: str,
        state: dict,
        client: socket.socket,
        upstream: socket.socket,
    ) -> None:
        try:
            while data := source.recv(CHUNK):
                if direction == "down" and state["drop"]:
                    # The server answered the armed command: its reply goes nowhere, the connection is cut.
                    with self._lock:
                        self.lost_count += 1
                    self.lost.set()
                    break
                if direction == "up":
                    with self._lock:
                        marker = next((m for m in self._armed if m in data), None)
                        if marker is not None:
                            self._armed.remove(marker)
                            state["drop"] = True
                target.sendall(data)
        except OSError:
            pass
        _shut(client)
        _shut(upstream)
