"""A throwaway PostgreSQL server for a test: initdb into a temporary folder, listening on a free port of 127.0.0.1,
stopped and removed afterwards. Its binaries are Debian's (/usr/lib/postgresql/<version>/bin) or on PATH."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder of initdb and pg_ctl, the newest version's; None when PostgreSQL's server is not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unprivileged_user() -> str | None:
    """Who runs the server when the tests run as root (CI does): initdb refuses root, runuser switches."""
    if shutil.which("runuser") is None:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    return None


def why_not() -> str | None:
    """Why no server can be started here, or None."""
    if server_binaries() is None:
        return "PostgreSQL's server is not installed (no initdb in /usr/lib/postgresql/*/bin nor on PATH)"
    if os.geteuid() == 0 and unprivileged_user() is None:
        return "running as root, with no runuser or no postgres/nobody user to run initdb as"
    return None


@contextmanager
def postgres_server(binaries: Path) -> Iterator[str]:
    """Start a server; yields its SQLAlchemy URL (user digitnet, no password, database postgres)."""
    folder = Path(tempfile.mkdtemp(prefix="digitnet-postgres-"))  # not under pytest's tmp_path: root's alone
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root: the server runs as an unprivileged user
        user = unprivileged_user()
        shutil.chown(folder, user)
        as_user = ["runuser", "-u", user, "--"]
    data, log = folder / "data", folder / "server.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"  # sockets in the folder, not /run

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}{server_log}")

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "digitnet", "-A", "trust", "--no-sync", "-E", "UTF8")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            yield f"postgresql+psycopg://digitnet@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
