"""A private, temporary PostgreSQL 15 server: what the event log's tests and benchmark run against.

:class:`PgServer` runs ``initdb`` into a fresh directory under ``/tmp`` and ``pg_ctl start`` with
``-k <dir> -c listen_addresses=''``: the server listens on a Unix socket in that directory only, never
on TCP, so it binds no port and collides with no other server. Authentication is ``trust``; the
directory is ``0700`` and owned by the server's user, so only that user (and root) reach the socket.
``stop`` is ``pg_ctl stop -m fast`` (the data is kept, ``start`` brings it back), ``restart`` is
``pg_ctl restart -m fast``, and leaving the ``with`` block stops it and deletes the directory.

Binaries come from ``/usr/lib/postgresql/15/bin`` (Debian's layout), else from ``initdb`` on
``PATH``; when neither exists :func:`find_bin_dir` raises :class:`~ltrr.errors.ConfigError` saying
to run ``make pg``, which installs them. ``initdb`` refuses to run as root: as root every server
command runs as the ``postgres`` user (``nobody`` if there is none) through ``runuser``, and that
user owns the directory; any other user runs the server as itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, LiteralString, Self

from ltrr.errors import BackendUnavailable, ConfigError

#: Where Debian's postgresql-15 package puts the server binaries; checked before ``PATH``.
PG_BIN_DIR: Final = Path("/usr/lib/postgresql/15/bin")
#: The superuser initdb creates (trust authentication, Unix socket only).
SUPERUSER: Final = "ltrr"
_TIMEOUT_S: Final = 120.0


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: :data:`PG_BIN_DIR`, else ``initdb``'s on ``PATH``."""
    if (PG_BIN_DIR / "initdb").is_file():
        return PG_BIN_DIR
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise ConfigError(f"PostgreSQL is not installed: no initdb under {PG_BIN_DIR} or on PATH; run `make pg`")


def server_user() -> str | None:
    """The user the server runs as when this process is root (``postgres``, else ``nobody``); None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ConfigError("running as root, and there is neither a `postgres` nor a `nobody` user to run PostgreSQL as")


class PgServer:
    """One temporary server (module docstring). ``fsync=False`` trades durability for speed (never for the
    benchmark: it measures what a commit costs); ``bin_dir`` defaults to :func:`find_bin_dir`."""

    def __init__(self, *, bin_dir: str | Path | None = None, fsync: bool = True, port: int = 5432) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir is not None else find_bin_dir()
        self.fsync = fsync
        self.port = port  # names the socket file only: listen_addresses='' opens no TCP port
        self.user = server_user()
        self.base: Path | None = None
        self.running = False

    # -- paths -----------------------------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        if self.base is None:
            raise BackendUnavailable("PostgreSQL test server: not started")
        return self.base

    @property
    def data_dir(self) -> Path:
        return self.socket_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.socket_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """The libpq connection string of database ``dbname`` (over the Unix socket, no password)."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname={dbname}"

    # -- commands ----------------------------------------------------------------------------------
    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        cmd = [*prefix, str(self.bin_dir / args[0]), *args[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no stray PGDATA, PGPORT, ...
        env["LC_ALL"] = "C"
        try:
            done = subprocess.run(
                cmd, cwd=self.socket_dir, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendUnavailable(f"PostgreSQL test server: {args[0]} failed: {exc}") from exc
        if done.returncode != 0:
            tail = ""
            if self.log_path.exists():
                tail = self.log_path.read_text(errors="replace")[-1500:]
            raise BackendUnavailable(
                f"PostgreSQL test server: {' '.join(args[:2])} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}\n{tail}"
            )

    def _options(self) -> str:
        return (
            f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c unix_socket_permissions=0700 "
            f"-c fsync={'on' if self.fsync else 'off'}"
        )

    def start(self) -> Self:
        """Create the cluster on first use, then start the server and wait until it accepts connections."""
        if self.running:
            return self
        if self.base is None:
            self.base = Path(tempfile.mkdtemp(prefix="ltrr-pg-", dir="/tmp"))  # short: a socket path has <= 107 bytes
            if self.user:
                entry = pwd.getpwnam(self.user)
                os.chown(self.base, entry.pw_uid, entry.pw_gid)
            self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")  # fmt: skip
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                  "-t", str(int(_TIMEOUT_S)), "-o", self._options())  # fmt: skip
        self.running = True
        return self

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """``pg_ctl stop -m fast``: roll back open transactions, close the sessions, checkpoint, exit.
        ``immediate`` is a crash: the processes quit at once, the next start replays the WAL."""
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(_TIMEOUT_S)))
            self.running = False

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every open session is cut; committed data stays."""
        self._run("pg_ctl", "restart", "-D", str(self.data_dir), "-l", str(self.log_path), "-m", "fast", "-w",
                  "-t", str(int(_TIMEOUT_S)), "-o", self._options())  # fmt: skip
        self.running = True

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- databases ---------------------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its DSN."""
        self._admin("CREATE DATABASE {}", name)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, cutting its sessions (``WITH (FORCE)``)."""
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def _admin(self, statement: LiteralString, name: str) -> None:
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(self.dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL(statement).format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise BackendUnavailable(f"PostgreSQL test server: {statement.format(name)!r} failed: {exc}") from exc
