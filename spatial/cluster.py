"""The project-local PostgreSQL + PostGIS cluster, used when ``DATABASE_URL`` is not set.

It lives in a git-ignored folder (``.citygrid/`` by default) and runs the machine's PostgreSQL
binaries on a free loopback port, with its unix socket in the same folder. ``initdb`` refuses to run
as root, so as root every server command runs as the ``postgres`` OS user, who owns the data folder.
Connections over TCP need the generated password kept in ``.citygrid/password`` (mode 0600).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from spatial.errors import SetupError

SUPERUSER = "citygrid"
SERVER_OS_USER = "postgres"


@dataclass(frozen=True)
class ClusterStatus:
    """What ``citygrid db status`` reports."""

    initialised: bool
    running: bool
    port: int | None
    data_dir: Path
    url: str | None


def find_bindir(configured: Path | None = None) -> Path:
    """Return the folder holding ``initdb`` and ``pg_ctl``: the configured one, Debian's newest, or PATH."""
    if configured is not None:
        candidates = [configured]
    else:
        debian = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        on_path = shutil.which("initdb")
        candidates = debian + ([Path(on_path).parent] if on_path else [])
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise SetupError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with "
        "'apt-get install postgresql postgresql-15-postgis-3', set CITYGRID_DB_PG_BINDIR to their folder, "
        "or set DATABASE_URL to an existing PostGIS server."
    )


def server_major(bindir: Path) -> int:
    """Return the major version of the PostgreSQL server in ``bindir``."""
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    if match is None:
        raise SetupError(f"cannot read the PostgreSQL version from {out.stdout!r}")
    return int(match.group(1))


def postgis_missing_message(bindir: Path) -> str | None:
    """Return why PostGIS cannot be used with the server in ``bindir``, or None when it is installed."""
    sharedir = subprocess.run(
        [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    major = server_major(bindir)
    if not sharedir:
        sharedir = f"/usr/share/postgresql/{major}"
    if (Path(sharedir) / "extension" / "postgis.control").exists():
        return None
    return (
        f"PostGIS is not installed for PostgreSQL {major}. Install it with "
        f"'apt-get install -y postgresql-{major}-postgis-3' (as root), "
        "or set DATABASE_URL to a PostGIS server."
    )


class LocalCluster:
    """A PostgreSQL cluster in a project folder, started and stopped by ``citygrid db``."""

    def __init__(self, root: Path, *, bindir: Path | None = None, database: str = "citygrid") -> None:
        self.root = root
        self.data_dir = root / "pgdata"
        self.run_dir = root / "run"
        self.log_file = self.run_dir / "postgres.log"
        self.password_file = root / "password"
        self.state_file = root / "cluster.json"
        self.database = database
        self._bindir = bindir

    @property
    def bindir(self) -> Path:
        """Return the PostgreSQL binaries' folder, found on first use."""
        return find_bindir(self._bindir)

    # -- running commands as the right OS user --------------------------------------------------

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _server_cmd(self, *args: str) -> list[str]:
        if self._as_root():
            return ["runuser", "-u", SERVER_OS_USER, "--", *args]
        return list(args)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self._server_cmd(*args), capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise SetupError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
        return proc

    def _hand_to_server_user(self, path: Path) -> None:
        if not self._as_root():
            return
        entry = pwd.getpwnam(SERVER_OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self) -> None:
        """Fail early when the server's OS user cannot reach the project folder."""
        if not self._as_root():
            return
        probe = subprocess.run(["runuser", "-u", SERVER_OS_USER, "--", "test", "-x", str(self.root)], check=False)
        if probe.returncode != 0:
            raise SetupError(
                f"The '{SERVER_OS_USER}' user cannot enter {self.root}: a parent folder is private. "
                "Clone the project under /tmp or /srv, set CITYGRID_DB_CLUSTER_DIR to a folder it can reach, "
                "or set DATABASE_URL."
            )

    # -- state ------------------------------------------------------------------------------------

    def initialised(self) -> bool:
        """Return True when ``initdb`` has run in the data folder."""
        return (self.data_dir / "PG_VERSION").exists()

    def _state(self) -> dict[str, int]:
        if not self.state_file.exists():
            return {}
        loaded: dict[str, int] = json.loads(self.state_file.read_text())
        return loaded

    def port(self) -> int | None:
        """Return the port the cluster was last started on."""
        return self._state().get("port")

    def running(self) -> bool:
        """Return True when the server process of this data folder is alive."""
        if not self.initialised():
            return False
        proc = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "status", check=False)
        return proc.returncode == 0

    def password(self) -> str:
        """Return the superuser's password, generated at initialisation."""
        return self.password_file.read_text().strip()

    def url(self, database: str | None = None) -> str:
        """Return the SQLAlchemy URL of a database in this cluster (default: the project database)."""
        port = self.port()
        if port is None:
            raise SetupError("The local database has never been started: run 'citygrid db start'.")
        return (
            f"postgresql+psycopg2://{SUPERUSER}:{quote(self.password(), safe='')}"
            f"@127.0.0.1:{port}/{database or self.database}"
        )

    def status(self) -> ClusterStatus:
        """Return whether the cluster exists and runs, and where."""
        running = self.running()
        return ClusterStatus(
            initialised=self.initialised(),
            running=running,
            port=self.port(),
            data_dir=self.data_dir,
            url=self.url() if running else None,
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the data folder with ``initdb`` (UTF-8, scram passwords over TCP)."""
        missing = postgis_missing_message(self.bindir)
        if missing:
            raise SetupError(missing)
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
        for folder in (self.data_dir, self.run_dir):
            folder.mkdir(mode=0o700, exist_ok=True)
            self._hand_to_server_user(folder)
        with tempfile.NamedTemporaryFile("w", dir=self.run_dir, delete=False) as pwfile:
            pwfile.write(self.password() + "\n")
        self._hand_to_server_user(Path(pwfile.name))
        try:
            self._run(
                str(self.bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "--pwfile", pwfile.name,
                "-E", "UTF8",
                "--locale", "C.UTF-8",
                "--auth-local", "peer" if self._as_root() else "trust",
                "--auth-host", "scram-sha-256",
            )  # fmt: skip
        finally:
            Path(pwfile.name).unlink(missing_ok=True)
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            # Sized for one city on a small server; fsync stays on: an acknowledged report must survive.
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.run_dir}'\n"
                "max_connections = 200\n"
                "shared_buffers = '512MB'\n"
                "work_mem = '32MB'\n"
                "maintenance_work_mem = '256MB'\n"
                "max_wal_size = '4GB'\n"  # bulk imports: fewer forced checkpoints than the default 1GB
                "jit = off\n"
            )

    def start(self, timeout_s: float = 60.0) -> ClusterStatus:
        """Initialise if needed, start the server on a free port, create the database; idempotent."""
        if not self.initialised():
            self.init()
        if not self.running():
            port = self.port()
            if port is None or not _port_free(port):
                port = _free_port()
            self.state_file.write_text(json.dumps({"port": port}) + "\n")
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
                "-o", f"-p {port}",
                "-w", "-t", str(int(timeout_s)),
                "start",
            )  # fmt: skip
        self._wait_ready(timeout_s)
        self._ensure_database()
        return self.status()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it is running (``mode``: smart, fast, or immediate as in a crash)."""
        if self.running():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port()), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise SetupError(f"PostgreSQL did not become ready in {timeout_s:.0f} s; see {self.log_file}")
            time.sleep(0.2)

    def _ensure_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres").replace("postgresql+psycopg2", "postgresql"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')  # the name is ours, never user input
        finally:
            conn.close()


def _port_free(port: int) -> bool:
    # SO_REUSEADDR as PostgreSQL itself binds: connections of a stopped server left in TIME_WAIT must not
    # make its port look taken, or a restart would move the database to another port (and URL).
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
