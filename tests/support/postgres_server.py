"""A throwaway PostgreSQL 15 on a free loopback port, in a fresh temporary directory.

`PostgresServer.start()` runs `initdb` once (trust auth, superuser `gateway`, UTF8, C locale) and starts
`postgres` listening on 127.0.0.1 only, with its unix socket inside the directory and fsync and
full_page_writes off so start-up and tests are fast. `synchronous_commit` stays on: a commit's WAL is
written (to the page cache) before it is acknowledged, so an acknowledged row survives `kill()` or an
immediate stop, as it would in production; with it off, the last ~0.2 s of acknowledged commits vanish.
The server binaries refuse to run as root: when the suite runs as root they run as the `postgres` OS
user (on a directory chowned to it); otherwise as the current user. When the binaries are missing
they are installed with apt-get (CI runs as root), so the tests that need Postgres never skip.

`stop()` takes the server down and keeps its data; `start()` on the same object brings it back on the
same port (tests stop Postgres mid-run). `close()` stops it and removes the directory (the lifecycle is
`ScratchServer`'s). Databases are created with `psql` from the same installation, so this module needs no
Python driver.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from tests.support.scratch_server import ScratchServer, apt_install, free_port

BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin")
OS_USER = "postgres"
ShutdownMode = Literal["smart", "fast", "immediate"]
SHUTDOWN_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,  # waits for clients to disconnect
    "fast": signal.SIGINT,  # disconnects clients, checkpoints: a clean shutdown
    "immediate": signal.SIGQUIT,  # no checkpoint: the next start runs crash recovery, like after a crash
}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def find_bin_dir() -> Path:
    """The directory holding initdb, postgres and psql of PostgreSQL 15 (apt-get installs it when missing)."""

    def lookup() -> Path | None:
        for directory in BIN_DIRS:
            if all((Path(directory) / name).exists() for name in ("initdb", "postgres")):
                return Path(directory)
        initdb = shutil.which("initdb")
        return Path(initdb).resolve().parent if initdb else None

    found = lookup()
    if found is None and os.geteuid() == 0:
        apt_install("postgresql-15")
        found = lookup()
    if found is None:
        raise RuntimeError(f"PostgreSQL 15 is not installed (looked in {', '.join(BIN_DIRS)} and PATH)")
    return found


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after its last ')'
            fields = stat_file.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat_file.parent.name))
    return found


def tool(bin_dir: Path, name: str) -> str:
    candidate = bin_dir / name
    if candidate.exists():
        return str(candidate)
    for directory in BIN_DIRS:
        if (Path(directory) / name).exists():
            return str(Path(directory) / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (looked in {bin_dir}, {', '.join(BIN_DIRS)} and PATH)")
    return found


def traversable_temp_root() -> str:
    """A temp root that another OS user can traverse (TMPDIR may sit under root's 0700 home)."""
    path = Path(tempfile.gettempdir()).resolve()
    for part in (path, *path.parents):
        if not part.stat().st_mode & stat.S_IXOTH:
            return "/tmp"
    return str(path)


def quote_identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


@dataclass
class PostgresServer(ScratchServer):
    name: ClassVar[str] = "postgres"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    user: str = "gateway"
    database: str = "gateway"
    directory: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="postgres-test-", dir=traversable_temp_root()))
    )
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    # -- running the server binaries as a non-root user -------------------------------------------------

    def _as_server_user(self) -> dict[str, Any]:
        """Popen keyword arguments that drop root to the `postgres` OS user (nothing when not root)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "HOME": str(self.directory)}
        if os.geteuid() != 0:
            return {"env": env}
        try:
            entry = pwd.getpwnam(OS_USER)
        except KeyError:
            raise RuntimeError(f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL as") from None
        return {"env": env, "user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _initdb(self, bin_dir: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o700)
        result = subprocess.run(
            [
                tool(bin_dir, "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=self.directory,
            capture_output=True,
            timeout=120,
            **self._as_server_user(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}")

    # -- lifecycle (the rest is ScratchServer's) ----------------------------------------------------------

    def _popen_options(self) -> dict[str, Any]:
        return self._as_server_user()

    def _prepare(self) -> list[str]:
        bin_dir = find_bin_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "100",
            "max_wal_size": "256MB",
            "checkpoint_timeout": "1h",
            "autovacuum": "off",
            "jit": "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        return [
            tool(bin_dir, "postgres"),
            "-D",
            str(self.data_dir),
            *(arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")),
        ]

    def _ready(self) -> bool:
        """Ready when postmaster.pid says so (what `pg_ctl -w` checks) and the TCP port accepts connections."""
        assert self.process is not None
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        if len(lines) < 8 or lines[0].strip() != str(self.process.pid) or lines[7].strip() != "ready":
            return False
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
            return True
        return False

    def start(self, timeout_s: float = 30.0) -> Self:
        """Starts the server (running initdb and creating `database` the first time); returns self."""
        first_start = not (self.data_dir / "PG_VERSION").exists()
        super().start(timeout_s)
        if first_start and self.database != "postgres":
            self.psql(f"CREATE DATABASE {quote_identifier(self.database)}", database="postgres")
        return self

    def stop(self, mode: ShutdownMode = "fast", timeout_s: float = 30.0) -> None:
        """Takes the server down; the port, directory and data stay, so `start()` brings the same server back.

        `fast` is a clean shutdown; `immediate` skips the checkpoint (crash recovery on the next start)."""
        self._stop_process((SHUTDOWN_SIGNALS[mode], timeout_s), (signal.SIGQUIT, 10.0))

    def kill(self) -> None:
        """An abrupt outage: immediate shutdown, no checkpoint; `start()` then runs crash recovery."""
        self.stop(mode="immediate")

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """A server that hangs (SIGSTOP to the postmaster and every process it forked): connections are still
        accepted (by the kernel) and queries still sent, but nothing answers until the block exits (SIGCONT)."""
        assert self.process is not None
        processes = [self.process.pid, *children(self.process.pid)]
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)

    def restart(self, mode: ShutdownMode = "fast") -> None:
        self.stop(mode=mode)
        self.start()

    # -- SQL over psql (no Python driver needed) ---------------------------------------------------------

    def psql(self, sql: str, database: str | None = None, timeout_s: float = 60.0) -> str:
        """Runs `sql` with psql over TCP; returns the unaligned, tuples-only output (`|`-separated columns)."""
        env = {**os.environ, "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "tests"}
        env.pop("PGPASSWORD", None)
        result = subprocess.run(
            [
                tool(find_bin_dir(), "psql"),
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--set",
                "ON_ERROR_STOP=1",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--username",
                self.user,
                "--dbname",
                database or self.database,
                "--command",
                sql,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}) on {sql!r}: {result.stderr.strip()}")
        return result.stdout.rstrip("\n")

    def fresh_database(self, name: str | None = None) -> str:
        """Creates an empty database (dropping one of the same name first); returns its DSN."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        quoted = quote_identifier(name)
        self.psql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)", database="postgres")
        self.psql(f"CREATE DATABASE {quoted} TEMPLATE template0 ENCODING 'UTF8'", database="postgres")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)", database="postgres")
