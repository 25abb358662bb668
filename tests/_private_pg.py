"""A private PostgreSQL server for tests that stop or restart it.

The shared server on 127.0.0.1:5432 must never be restarted by a test (other tests and other
runs use it), so a test that takes the database away creates its own cluster: ``initdb`` in a
temporary directory, ``pg_ctl`` on a free port of 127.0.0.1 with trust authentication and the
unix socket in the same directory. PostgreSQL refuses to run as root, so when the tests run
as root every server command runs as the ``postgres`` user (``runuser``), who owns the
directory. ``cleanup`` always stops the server and removes the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

import psycopg
import pytest
from psycopg import sql

from hephaestus.storage.postgres import install

if TYPE_CHECKING:
    from types import TracebackType

StopMode = Literal["smart", "fast", "immediate"]
"""``pg_ctl``'s shutdown modes: ``fast`` disconnects clients and checkpoints, ``immediate``
aborts every process at once (the next start runs crash recovery)."""

SERVER_USER = "postgres"
"""The operating-system user the server runs as when the tests run as root."""

SETTINGS = (
    "listen_addresses = '127.0.0.1'",
    "fsync = off",  # only an operating-system crash could lose data; a test cluster is throwaway
    "full_page_writes = off",
    "max_connections = 200",
    "shared_buffers = 32MB",
)
"""Appended to the cluster's ``postgresql.conf``. ``synchronous_commit`` stays on: an
``immediate`` stop must not lose a commit a client was told about."""


def binaries() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        candidates.append(Path(found))
    candidates.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def require_binaries() -> Path:
    """The server binaries; fail (under CI) or skip (elsewhere) when they are missing."""
    directory = binaries()
    if directory is not None:
        return directory
    reason = "initdb and pg_ctl not found (pg_config --bindir, /usr/lib/postgresql/*/bin)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI requires PostgreSQL")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateCluster:
    """A PostgreSQL cluster of one test: its own directory, port and server process.

    Use as a context manager (``with PrivateCluster.init() as cluster:``), or call
    ``cleanup`` yourself; either way the server is stopped and the directory removed.
    """

    def __init__(self, root: Path, bindir: Path, port: int) -> None:
        self.root = root
        self.bindir = bindir
        self.port = port
        self.data = root / "data"
        self.log = root / "server.log"

    @classmethod
    def init(cls, bindir: Path | None = None) -> PrivateCluster:
        """Create a cluster (``initdb``) in a new temporary directory; not started yet."""
        root = Path(tempfile.mkdtemp(prefix="hx_pg_"))
        cluster = cls(root, bindir or require_binaries(), free_port())
        try:
            if os.geteuid() == 0:
                shutil.chown(root, user=SERVER_USER, group=SERVER_USER)
            cluster._run(
                "initdb",
                "--pgdata",
                str(cluster.data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
            )
            with (cluster.data / "postgresql.conf").open("a") as conf:
                conf.write("\n".join((*SETTINGS, f"port = {cluster.port}", "")))
                conf.write(f"unix_socket_directories = '{root}'\n")
        except BaseException:
            cluster.cleanup()
            raise
        return cluster

    def _run(self, program: str, *args: str) -> None:
        """Run a server program, as ``postgres`` when we are root; its output on failure."""
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}\n"
                f"server log:\n{self.server_log()}"
            )

    def server_log(self) -> str:
        """The server's log so far (empty if it never started)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        """Whether the server's process is up (its pid file exists)."""
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server in ``mode`` and wait until it has exited."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop the server in ``mode`` (every client loses its connections), start it again,
        and wait until it accepts connections."""
        self._run(
            "pg_ctl",
            "restart",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
        )

    def dsn(self, database: str = "postgres") -> str:
        """The connection string of ``database`` on this server."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} connect_timeout=5"

    def create_database(self, name: str) -> str:
        """Create ``name`` with the storage (and ``oban``'s tables) installed; its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        asyncio.run(install(self.dsn(name)))
        return self.dsn(name)

    def cleanup(self) -> None:
        """Stop the server (at once) if it runs and remove the directory; never raises for a
        server already gone."""
        if self.running:
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
