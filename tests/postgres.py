"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary data directory,
loopback only, gone when the session ends.

Owns finding the server (Debian's `postgresql` package puts it in /usr/lib/postgresql/<version>/bin,
off PATH), starting and stopping it, and handing out empty databases. It knows nothing about the
app's schema; tests/conftest.py turns it into fixtures (`postgres_server`, and the `backend`
parametrization that runs the store tests on SQLite and on PostgreSQL).

PostgreSQL refuses to run as root, and CI runs the tests as root: then the server runs as the
`postgres` system user that the Debian package creates, in a data directory handed to that user.
Run as anyone else, it runs as the caller. It listens on 127.0.0.1 on a free port, with its unix
socket in its temporary folder (never /var/run/postgresql, which may not exist or be shared),
trusts loopback connections, and skips fsync: it holds nothing worth keeping. A test run killed
before its teardown leaves its server running; the next run stops it.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "postgresql"  # the Debian package `make postgres` installs
USER = "autodidact"  # the database superuser the tests connect as
PREFIX = "autodidact-postgres-"  # the temporary folders' names, under /tmp


class Unavailable(Exception):
    """The server cannot run here at all (not installed): the tests that need it are skipped."""


def binaries() -> Path:
    """The folder holding initdb and pg_ctl: Debian's newest version, else whatever is on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for folder in reversed(versions):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    on_path = shutil.which("pg_ctl")
    if on_path and Path(on_path).with_name("initdb").exists():
        return Path(on_path).parent
    raise Unavailable(
        f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): install Debian's "
        f"`{PACKAGE}` package (`make postgres`, which `make test` runs) to test the store on it"
    )


def server_user() -> pwd.struct_passwd | None:
    """Who the server runs as: None for the caller; the `postgres` user when the caller is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable(
            "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user "
            f"to run it as (Debian's `{PACKAGE}` package creates one)"
        ) from None


@dataclass
class PostgresServer:
    """One server on loopback. `start()` it, `create_database()` per test, `stop()` at the end."""

    port: int
    bin: Path = field(default_factory=binaries)
    runas: pwd.struct_passwd | None = field(default_factory=server_user)
    root: Path | None = None
    _names: itertools.count = field(default_factory=itertools.count)
    # DROP DATABASE waits for a checkpoint (about 0.1 s): done behind the next test's back.
    _dropper: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    def _run(self, *args: str, root: Path | None = None, check: bool = True) -> None:
        """Run one of the server's programs in `root` (this server's folder), as its user."""
        root = root or self.root
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.runas is not None:
            # runuser keeps the environment; HOME and the cwd must be the server user's to read.
            cmd = ["runuser", "-u", self.runas.pw_name, "--", *cmd]
        env = {**os.environ, "LC_ALL": "C", "HOME": str(root)}
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            log = root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}{done.stderr}{tail}"
            )

    def start(self) -> PostgresServer:
        self.reap_orphans()
        # Under /tmp, not pytest's tmp_path: that one is private to the caller (mode 0700).
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner").write_text(str(os.getpid()))
        if self.runas is not None:
            os.chown(self.root, self.runas.pw_uid, self.runas.pw_gid)
        data = self.root / "data"
        self._run(
            "initdb", "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        # The server's own timezone is as far from UTC as there is (+14:00), so a query that
        # depends on it (a day boundary, a naive timestamp) fails here rather than in Samoa.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200 -c timezone=Pacific/Kiritimati"
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l",
            str(self.root / "server.log"), "-o", options,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        self._dropper.shutdown(wait=True)
        try:
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.root / "data"))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def reap_orphans(self) -> None:
        """Stop the servers of test runs that were killed before their teardown (a timeout, a
        kill -9): their owner process is gone, their server is not."""
        for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
            try:
                os.kill(int((root / "owner").read_text()), 0)
                continue  # a live test run's server (another session's, perhaps)
            except ProcessLookupError:
                pass
            except (OSError, ValueError):
                continue
            self._run(
                "pg_ctl", "stop", "-m", "immediate", "-D", f"{root}/data", root=root, check=False
            )
            shutil.rmtree(root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        name = f"test_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop it soon, closing what is still connected (engines a test left open)."""
        name = url.rsplit("/", 1)[1]
        self._dropper.submit(self._admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
