"""A throwaway PostgreSQL cluster for tests that restart or stop the server.

initdb + pg_ctl in a temporary folder, listening on 127.0.0.1 on a free port with trust
authentication (any password is accepted, so a test can use a canary password), its unix socket
inside the data folder. Restarting or stopping it disturbs nothing else on the machine.
initdb and the server refuse to run as root, so as root they run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

PG_CTL_TIMEOUT_S = 30
SERVER_USER = "postgres"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder ($PG_BIN wins), or None."""
    configured = os.environ.get("PG_BIN")
    if configured:
        return Path(configured)

    def major(pg_ctl: str) -> int:
        version = Path(pg_ctl).parent.parent.name
        return int(version) if version.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=major)
    return Path(found[-1]).parent if found else None


def server_version() -> str:
    """`postgres --version` of the binaries a cluster would use."""
    folder = bin_dir()
    if folder is None:
        return "not installed"
    result = subprocess.run([str(folder / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
    return result.stdout.strip() or result.stderr.strip()


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgCluster:
    """One cluster: `start()`, `restart()`, `stop()`, `url(database, password)`; `destroy()` at the end."""

    def __init__(self) -> None:
        folder = bin_dir()
        if folder is None:
            raise FileNotFoundError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin (set PG_BIN)")
        self.bin = folder
        self.root = Path(tempfile.mkdtemp(prefix="pgcluster-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
        self._pg(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"
        )

    def start(self) -> None:
        """Start on a free port (a fresh one if the chosen port was taken meanwhile); waits until ready."""
        for _ in range(3):
            self.port = free_port() if not self.port else self.port
            options = (
                f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off"
            )
            result = self._pg(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(PG_CTL_TIMEOUT_S),
                "-o",
                options,
                "start",
                check=False,
            )
            if result.returncode == 0:
                return
            self.port = 0  # perhaps someone took the port: try another
        raise RuntimeError(
            f"the throwaway PostgreSQL did not start: {result.stdout}{result.stderr}"
            f"{self.log.read_text() if self.log.exists() else ''}"
        )

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: open sessions are ended, the server is back when this returns."""
        # -l again: without it the new server would keep our pipes open and this call would never return.
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(PG_CTL_TIMEOUT_S),
            "-m",
            "fast",
            "restart",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and wait until it is down."""
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-t", str(PG_CTL_TIMEOUT_S), "-m", mode, "stop")

    def running(self) -> bool:
        """True while the postmaster is up."""
        return self._pg("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        """A postgresql:// URL for `database` over TCP, with `password` (trust accepts any)."""
        return sa.URL.create(
            "postgresql+psycopg2",
            username="postgres",
            password=password,
            host="127.0.0.1",
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def destroy(self) -> None:
        """Stop the server (killing it if pg_ctl cannot) and delete every file."""
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        except (subprocess.SubprocessError, OSError):
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def _pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_S + 10,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C"},
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}"
            )
        return result
