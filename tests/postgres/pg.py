"""A throwaway PostgreSQL 15 server from the machine's own binaries (Debian's postgresql-15).

The server refuses to run as root: when the tests run as root (CI does), the data folder is
given to the ``postgres`` system user the package created (or ``PG_TEST_USER``) and every server
command runs through ``runuser``. It listens on 127.0.0.1 on a free port with ``trust``
authentication (a test-only server that nothing else can reach) and is stopped and deleted
afterwards. ``benchmarks/bench_scale.py`` uses it too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass(frozen=True)
class Postgres:
    """Where a running test server answers."""

    host: str
    port: int
    user: str
    db_name: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": "unused-trust-auth", "DAGSTER_PG_DB": self.db_name,
        }


def available() -> str | None:
    """None when a server can be started here, else why not."""
    if not (PG_BIN / "postgres").is_file():
        return f"no PostgreSQL server binaries in {PG_BIN} (Debian: apt-get install postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(os.environ.get("PG_TEST_USER", "postgres"))
        except KeyError:
            return "running as root and no 'postgres' user to run the server as (set PG_TEST_USER)"
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_postgres(db_name: str = "dagster") -> Iterator[Postgres]:
    """Start a fresh server with database ``db_name``; stop and delete it on exit."""
    reason = available()
    if reason:
        raise RuntimeError(reason)
    as_user: list[str] = []
    # Not under pytest's tmp_path: its parents are root-only (0700), the server user could not enter.
    base = Path(tempfile.mkdtemp(prefix="framesearch-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        account = pwd.getpwnam(os.environ.get("PG_TEST_USER", "postgres"))
        for path in (base, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", account.pw_name, "--"]
    port, user = _free_port(), "framesearch"
    log = base / "server.log"
    try:
        subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, text=True)
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, text=True)
        subprocess.run([*as_user, str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db_name],
                       check=True, capture_output=True, text=True)
        yield Postgres("127.0.0.1", port, user, db_name)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"{exc.cmd[len(as_user)]} failed: {exc.stderr}\n{tail}") from exc
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
            deadline = time.monotonic() + 10
            while (data / "postmaster.pid").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)


def write_dagster_home(home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml, unchanged."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home
