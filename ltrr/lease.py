"""Cluster-wide leases: one policy learner and one ranker trainer write at a time.

During a RayService blue/green upgrade two Ray clusters run at once, each with its own learner and
trainer, on one event log. Both would settle, apply, checkpoint and publish; the parameters would
fork. A lease makes the second wait instead: a writer's loop asks :meth:`LeaseGate.check` before each
round, and does nothing (no settling, applying, pruning, training, publishing) while another holds it.

Two implementations, one interface (:class:`Lease`: ``acquire(block=False) -> bool``, ``held``,
``release()``, a context manager that blocks until acquired), chosen by :func:`lease_for` like the
event log (:func:`ltrr.event_store.events_dsn`):

* :class:`PgLease`, when a DSN is configured: ``pg_try_advisory_lock(class, key)`` taken on a session
  of its own, held as long as that session lives (:func:`lease_key`: the class is "leas" in ASCII, the
  key 32 bits of BLAKE2b of the name; the event log's transaction locks use another class, so they
  never collide). A lock is per database: every process on the same database competes for it.
  ``held`` asks the server whether this session still holds it (one ``pg_locks`` read): if the
  session was cut (the server restarted, ``pg_terminate_backend``, the network), it is False and the
  holder must stop writing until it acquires again. A session pooler must not sit in between in
  transaction mode (PgBouncer ``pool_mode=session`` only): a session lock needs its own session.
* :class:`FileLease`, with no DSN (SQLite, one host): ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the file
  ``<events_path>.<name>.lease`` next to the event log, so two learners on one host cannot both write
  either. The kernel frees it when its holder's process dies, whatever the cause. ``held`` is False if
  the file was deleted or replaced (another process could lock the new one). The file is never deleted.

**How fast a crashed holder's lease frees** (PostgreSQL). The lock goes with the server's backend of
the holder's session, which ends when the server sees the client gone:

* the holder's process dies and its host lives (a pod killed, OOM, a crash): the kernel closes the
  socket (FIN/RST), the backend exits at once, and the lease is free within milliseconds;
* the holder's host or network vanishes (a node lost, a partition): nothing arrives, so the server
  finds out by TCP keepalive. The lease's session sets the server's ``tcp_keepalives_idle`` 10 s,
  ``tcp_keepalives_interval`` 5 s and ``tcp_keepalives_count`` 3 (:data:`KEEPALIVE`), so the backend
  exits at most 10 + 3 x 5 = **25 s** after the last packet (the holder's ``held`` checks, every poll,
  keep the session from idling before that). Without them the kernel's defaults apply: about 2 h 11 min.
* ``idle_session_timeout`` (and ``idle_in_transaction_session_timeout``): a server or role that sets
  one would cut an idle lease session and take the lease away from a live holder; the session sets
  both to 0 for itself.

The holder finds out on its side with libpq's ``keepalives`` (same figures) and ``tcp_user_timeout``
20 s: a ``held`` check that gets no answer fails within 20 s, before the server frees the lock (25 s),
so a holder cut off stops before another can start, if it checks between writes. A write that must
never overlap another holder's runs on the lease's own session (:meth:`PgLease.fenced`): it commits
only while that session, hence the lock, is alive (the policy checkpoint does,
:class:`ltrr.checkpoints.PgCheckpointStore`). On a Unix socket there is no TCP and the keepalive
settings read 0: a crashed holder's socket always closes at once there.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Final, Literal, Protocol, Self, TypeVar

import psycopg
from psycopg import conninfo

from ltrr.config import AppConfig
from ltrr.errors import Aborted, BackendUnavailable
from ltrr.event_store import events_dsn
from ltrr.eventlog_pg import redact_dsn

__all__ = [
    "TRAINER",
    "FileLease",
    "Lease",
    "LeaseGate",
    "PgLease",
    "acquire_within",
    "lease_for",
    "lease_key",
    "waiting_message",
]

T = TypeVar("T")
log = logging.getLogger("ltrr.lease")

#: The advisory-lock class of every lease: "leas" in ASCII (the event log's locks are class "ltrr").
LEASE_CLASS: Final = 0x6C656173
#: Seconds between two attempts of a waiting :class:`LeaseGate` to acquire its lease.
RETRY_S: Final = 5.0
#: The lease of the ranker's trainer: the trainer deployment and ``ltrr train-ranker`` publish only holding it.
TRAINER: Final = "trainer"
#: TCP keepalive of the lease's session, in seconds (module docstring): idle before the first probe,
#: between probes, and how many unanswered probes end the connection.
KEEPALIVE: Final = {"idle_s": 10, "interval_s": 5, "count": 3}
#: Milliseconds the holder's kernel waits for sent data to be acknowledged before it drops the connection.
CLIENT_TCP_USER_TIMEOUT_MS: Final = 20_000
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: The session settings of a lease's connection; applied only where the server knows them.
_SESSION: Final = {
    "idle_session_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "tcp_keepalives_idle": str(KEEPALIVE["idle_s"]),
    "tcp_keepalives_interval": str(KEEPALIVE["interval_s"]),
    "tcp_keepalives_count": str(KEEPALIVE["count"]),
}
_HELD_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2)"
)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"`name` must be 1 to 63 characters of a-z, 0-9, '_' or '-', starting with a letter, got {name!r}"
        )
    return name


def lease_key(name: str) -> tuple[int, int]:
    """The ``(class, key)`` of lease ``name``'s advisory lock: :data:`LEASE_CLASS` and the first 32 bits of
    BLAKE2b(name) as a signed int4, the same in every process."""
    digest = hashlib.blake2b(_check_name(name).encode(), digest_size=4).digest()
    return LEASE_CLASS, int.from_bytes(digest, "big", signed=True)


def waiting_message(name: str) -> str:
    """What a writer that does not hold lease ``name`` logs (once) and reports."""
    return f"waiting for the {name} lease (another one holds it)"


def acquire_within(
    lease: Lease, timeout_s: float | None, *, on_wait: Callable[[], None] | None = None, retry_s: float = 1.0
) -> bool:
    """Acquire ``lease``, waiting while another holds it: True once this one holds it, False if ``timeout_s``
    seconds passed first (None: no bound; then the wait is the lease's own blocking acquire). ``on_wait`` is
    called once, when the first attempt finds the lease taken; a bounded wait tries again every ``retry_s``."""
    if timeout_s is not None and not timeout_s >= 0:
        raise ValueError(f"`timeout_s` must be >= 0 or None, got {timeout_s!r}")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if lease.acquire():
        return True
    if on_wait is not None:
        on_wait()
    if deadline is None:
        return lease.acquire(block=True)
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(retry_s, left))
        if lease.acquire():
            return True
    return False


class Lease(Protocol):
    """What :class:`LeaseGate` and the writers need of a lease (module docstring)."""

    name: str

    def acquire(self, block: bool = False) -> bool: ...

    @property
    def held(self) -> bool: ...

    def release(self) -> None: ...


class _LeaseBase:
    name: str

    def acquire(self, block: bool = False) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Acquire, waiting as long as another holds the lease."""
        self.acquire(block=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class PgLease(_LeaseBase):
    """Lease ``name`` as a session-level advisory lock on the database of ``dsn`` (module docstring).

    One connection of its own, opened by :meth:`acquire` and kept while waiting (each retry reuses it)
    and while holding; :meth:`release` closes it. Thread-safe. Server failures while acquiring raise
    :class:`~ltrr.errors.BackendUnavailable` (messages never hold the password); ``held`` never raises."""

    def __init__(self, dsn: str, name: str) -> None:
        self.name = _check_name(name)
        self.key = lease_key(name)
        try:
            params = conninfo.conninfo_to_dict(dsn) if isinstance(dsn, str) and dsn.strip() else None
        except psycopg.Error:
            params = None
        if params is None:
            shown = redact_dsn(dsn) if isinstance(dsn, str) and dsn.strip() else repr(dsn)
            raise ValueError(
                f"`dsn` must be a PostgreSQL connection string (key=value or postgresql:// URI), got {shown}"
            )
        self._dsn = dsn
        self.dsn = redact_dsn(dsn)
        defaults: dict[str, Any] = {
            "application_name": f"ltrr-lease-{name}",
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": KEEPALIVE["idle_s"],
            "keepalives_interval": KEEPALIVE["interval_s"],
            "keepalives_count": KEEPALIVE["count"],
            "tcp_user_timeout": CLIENT_TCP_USER_TIMEOUT_MS,
        }
        self._connect_kw = {k: v for k, v in defaults.items() if k not in params}  # the DSN's own values win
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False

    def __repr__(self) -> str:
        return f"PgLease({self.name!r}, {self.dsn!r})"

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lease's session (what ``pg_terminate_backend`` takes); None if none."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def acquire(self, block: bool = False) -> bool:
        """Take the lock if it is free (``pg_try_advisory_lock``); with ``block``, wait until it is
        (``pg_advisory_lock``). True if this lease holds it now (also when it held it already)."""
        with self._lock:
            if self._held and self._check():
                return True
            try:
                conn = self._connection()
                sql = "SELECT pg_advisory_lock(%s, %s), true" if block else "SELECT 0, pg_try_advisory_lock(%s, %s)"
                row = conn.execute(sql, self.key).fetchone()
            except psycopg.Error as exc:
                self._drop()
                raise BackendUnavailable(f"lease {self.name!r} on {self.dsn}: {' '.join(str(exc).split())}") from exc
            self._held = bool(row and row[1])
            return self._held

    @property
    def held(self) -> bool:
        """Whether this lease holds the lock now, asked of the server: False once its session broke."""
        with self._lock:
            return self._held and self._check()

    def release(self) -> None:
        """Unlock and close the session (closing it alone would free the lock too)."""
        with self._lock:
            conn, self._conn, self._held = self._conn, None, False
            if conn is None:
                return
            try:
                if not conn.broken and not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", self.key)
            except psycopg.Error:
                pass  # the session is gone, and the lock with it
            finally:
                conn.close()

    def fenced(self, fn: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """Run ``fn`` in one transaction on the lease's own session, after checking there that the lock is
        held: it commits only while the lease is this process's (module docstring). Raises
        :class:`~ltrr.errors.Aborted` if the lease is not held or its session broke before the commit
        returned (nothing was written, or, if the break came during ``COMMIT``, the outcome is unknown),
        :class:`~ltrr.errors.BackendUnavailable` for any other server failure (rolled back)."""
        with self._lock:
            conn = self._conn
            if not self._held or conn is None or conn.closed or conn.broken:
                self._drop()
                raise Aborted(f"the {self.name} lease is not held: nothing was written")
            try:
                with conn.transaction():
                    cur = conn.cursor()
                    row = cur.execute(_HELD_SQL, self._lock_ids()).fetchone()
                    if not (row and row[0]):
                        raise Aborted(f"the {self.name} lease is not held: nothing was written")
                    return fn(cur)
            except psycopg.Error as exc:
                detail = " ".join(str(exc).split())
                if conn.broken:
                    self._drop()
                    raise Aborted(f"the {self.name} lease was lost while writing ({detail})") from exc
                raise BackendUnavailable(f"write under the {self.name} lease failed: {detail}") from exc

    # -- private (under self._lock) -----------------------------------------------------------------
    def _lock_ids(self) -> tuple[int, int]:
        """The lock's ``classid`` and ``objid`` as ``pg_locks`` shows them (oids: unsigned)."""
        return self.key[0] & 0xFFFFFFFF, self.key[1] & 0xFFFFFFFF

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        conn = psycopg.connect(self._dsn, autocommit=True, **self._connect_kw)
        try:
            conn.execute(
                "SELECT set_config(s.name, s.value, false) FROM (VALUES "
                + ", ".join(["(%s, %s)"] * len(_SESSION))
                + ") AS s(name, value) WHERE s.name IN (SELECT name FROM pg_settings)",  # only those it knows
                [x for kv in _SESSION.items() for x in kv],
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _check(self) -> bool:
        """Whether the session is alive and holds the lock; forgets the lease (and the session) if not."""
        conn = self._conn
        try:
            row = None if conn is None or conn.broken else conn.execute(_HELD_SQL, self._lock_ids()).fetchone()
        except psycopg.Error:
            row = None
        if row and row[0]:
            return True
        self._drop()
        return False

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            conn.close()

    def __del__(self) -> None:  # a lease dropped unreleased closes its session, which frees the lock
        if getattr(self, "_conn", None) is not None:
            self._drop()


class FileLease(_LeaseBase):
    """Lease ``name`` as an exclusive ``flock`` on the file ``path`` (module docstring). Thread-safe; a
    second :class:`FileLease` on the same file, in this process or another, does not acquire it."""

    def __init__(self, path: str | Path, name: str) -> None:
        self.name = _check_name(name)
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"FileLease({self.name!r}, {str(self.path)!r})"

    def acquire(self, block: bool = False) -> bool:
        """Lock the file if no one else has it (``LOCK_NB``); with ``block``, wait until it is free. True
        if this lease holds it now (also when it held it already). Writes ``<pid> <host>`` into it."""
        with self._lock:
            if self._fd is not None and self._same_file():
                return True
            self._drop()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            if not self._same_file():  # replaced between open and flock: that lock guards nothing
                self._drop()
                return False
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return True

    @property
    def held(self) -> bool:
        """Whether this lease holds the lock on the file that is at ``path`` now."""
        with self._lock:
            if self._fd is None:
                return False
            if self._same_file():
                return True
            self._drop()
            return False

    def release(self) -> None:
        with self._lock:
            self._drop()

    def _same_file(self) -> bool:
        assert self._fd is not None
        try:
            here, there = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock

    def __del__(self) -> None:  # a lease dropped unreleased frees the lock, as its process's death would
        if getattr(self, "_fd", None) is not None:
            self._drop()


def lease_for(app: AppConfig, name: str) -> PgLease | FileLease:
    """Lease ``name`` for the store ``app`` configures: on its PostgreSQL database when a DSN is set
    (:func:`ltrr.event_store.events_dsn`), else the file ``<events_path>.<name>.lease``."""
    _check_name(name)
    dsn = events_dsn(app)
    if dsn:
        return PgLease(dsn, name)
    return FileLease(f"{app.events_path}.{name}.lease", name)


class LeaseGate:
    """What a writer's loop asks before each round (module docstring): :meth:`check` says whether it holds
    ``lease``, re-checking it each time and trying to acquire it while it does not, at most every
    ``retry_s`` seconds (``clock``'s). Logs once when it starts waiting (:func:`waiting_message`), when it
    acquires and when it loses the lease. ``acquisitions`` counts the acquisitions: a writer whose state
    came from the store keeps the count it loaded under, and loads again when the count moved (another
    holder may have written in between). Thread-safe."""

    def __init__(
        self,
        lease: PgLease | FileLease,
        *,
        retry_s: float = RETRY_S,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.retry_s = retry_s
        self.acquisitions = 0
        self._log = logger or log
        self._clock = clock
        self._lock = threading.Lock()
        self._holding = False
        self._last_try = float("-inf")
        self._said: str | None = None  # what the waiting was last logged as: "waiting" or "error"

    @property
    def name(self) -> str:
        return self.lease.name

    @property
    def fence(self) -> PgLease | None:
        """The lease, if writes can be fenced by it (:meth:`PgLease.fenced`); None for a file lease."""
        return self.lease if isinstance(self.lease, PgLease) else None

    @property
    def state(self) -> Literal["held", "waiting"]:
        """As of the last :meth:`check`."""
        return "held" if self._holding else "waiting"

    def check(self) -> bool:
        """Whether this process may write now (class docstring)."""
        with self._lock:
            if self._holding:
                if self.lease.held:
                    return True
                self._holding, self._last_try = False, float("-inf")  # try again at once
                self._log.warning("lost the %s lease; writing stops until it is acquired again", self.name)
            now = self._clock()
            if now < self._last_try + self.retry_s:
                return False
            self._last_try = now
            try:
                got = self.lease.acquire()
            except BackendUnavailable as exc:
                self._say("error", f"cannot take the {self.name} lease, will retry: {exc}", logging.WARNING)
                return False
            if not got:
                self._say("waiting", waiting_message(self.name), logging.INFO)
                return False
            self._holding, self._said = True, None
            self.acquisitions += 1
            self._log.info("holds the %s lease (%r)", self.name, self.lease)
            return True

    def release(self) -> None:
        with self._lock:
            self.lease.release()
            self._holding, self._said = False, None

    def _say(self, kind: str, message: str, level: int) -> None:
        if self._said != kind:
            self._said = kind
            self._log.log(level, "%s", message)
