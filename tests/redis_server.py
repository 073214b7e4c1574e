"""A throwaway redis-server for tests that restart, stop, flush or misconfigure the server.

It listens on a free port (on 127.0.0.1, and on any other addresses given, e.g. the host side of a veth
pair), keeps its files in a folder of its own, and with `appendonly` on writes an AOF there, so that a
graceful restart on the same port and folder brings the run's state back. Stopping or restarting it
disturbs nothing else on the machine (the shared server on 6379 is never touched).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pg_cluster import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class RedisServer:
    """One redis-server: `start()`, `stop()`, `restart()`, `kill()`, `url()`, `client()`; a context manager
    that stops it and removes its folder at the end."""

    def __init__(
        self,
        *,
        appendonly: bool = True,
        password: str | None = None,
        maxmemory_policy: str = "noeviction",
        bind: tuple[str, ...] = ("127.0.0.1",),
        port: int | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        self.appendonly = appendonly
        self.config = dict(config or {})  # more settings, e.g. {"proto-max-bulk-len": "1mb"}
        self.password = password
        self.maxmemory_policy = maxmemory_policy
        self.bind = bind
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start on this server's port and folder (its AOF, if any, is loaded) and wait until it answers."""
        assert not self.running(), "already running"
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            *self.bind,
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--maxmemory-policy",
            self.maxmemory_policy,
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        for name, value in self.config.items():
            command += [f"--{name}", value]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}:\n{self.log_text()[-2000:]}"
                ) from None
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except Exception as error:  # noqa: BLE001 - not up yet (connection refused, or loading its AOF)
                if time.monotonic() > deadline:
                    self.kill()
                    log = self.log_text()[-2000:]
                    raise RuntimeError(f"redis-server not ready after {READY_TIMEOUT_S}s:\n{log}") from error
                time.sleep(0.05)

    def stop(self) -> None:
        """A graceful stop (SIGTERM: the AOF is flushed); SIGKILL if it does not stop in time."""
        if not self.running():
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server, if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop gracefully, stay down `down_s`, start again on the same port and folder."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def destroy(self) -> None:
        """Stop it for good and remove its folder."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- using it -------------------------------------------------------------------------------

    def url(self, host: str = "127.0.0.1") -> str:
        """redis://[:password@]host:port/0 for one of the addresses it listens on."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{host}:{self.port}/0"

    def client(self) -> Any:
        """A new redis-py client (a context manager that closes it)."""
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5, socket_connect_timeout=2
        )

    def keys(self, pattern: str = "*") -> list[str]:
        """The keys matching `pattern`, as text."""
        with self.client() as client:
            return sorted(key.decode() for key in client.scan_iter(match=pattern, count=1000))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
