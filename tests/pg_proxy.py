"""A TCP proxy in front of PostgreSQL that can lose a COMMIT's answer.

Once armed, it drops the next connection whose server sends "COMMIT" complete, before that reply
reaches the client: the transaction is committed, and the client only sees its connection lost.
That is the worst moment for a retrying writer, the one where a retry may store rows twice.
"""

from __future__ import annotations

import socket
import threading

# CommandComplete ('C', length 11, "COMMIT\0") as the server sends it (protocol 3).
COMMIT_COMPLETE = b"C\x00\x00\x00\x0bCOMMIT\x00"
JOIN_TIMEOUT_S = 5.0


class CommitCutter:
    """Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`target_port`; use as a context manager."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cuts = 0
        self._armed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False

    def arm(self) -> None:
        """Cut the connection that next confirms a COMMIT (once)."""
        self._armed.set()

    def __enter__(self) -> CommitCutter:
        self._spawn(self._accept, "CommitCutter")
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        _shut(self._listener)
        self._threads[0].join(JOIN_TIMEOUT_S)  # the acceptor: no connection is added after this
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)

    def _spawn(self, target, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                server.settimeout(None)
            except OSError:
                _shut(client)
                continue
            with self._lock:
                self._sockets += [client, server]
            self._spawn(self._pump, "CommitCutter-up", client, server, False)
            self._spawn(self._pump, "CommitCutter-down", server, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_server and COMMIT_COMPLETE in data and self._take_arm():
                    break  # the server committed; the client never hears it
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut(source)
            _shut(sink)

    def _take_arm(self) -> bool:
        with self._lock:
            if not self._armed.is_set():
                return False
            self._armed.clear()
            self.cuts += 1
            return True


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
