"""A directory of versioned checkpoints with an atomically updated ``LATEST`` pointer.

``new(version)`` gives a fresh temporary path to write into (RLlib's
``save_to_path`` writes several files); ``commit`` renames it into place and then
replaces ``LATEST`` with ``os.replace``, so a crash at any point leaves either
the previous or the new checkpoint as the latest, never a half-written one.
Older checkpoints beyond ``keep`` are removed.

:class:`PgCheckpointStore` is the same interface with the checkpoints in PostgreSQL, off the pod's disk
(issue 12): what a cluster uses, so a learner started on another node, or in the other cluster of a
blue/green upgrade, restores what the last one saved. :func:`checkpoint_store` picks one by the DSN.

:class:`PgBlobs` is the blob store under it: versioned rows of one ``kind`` in the table ``ltrr_blobs``.
The ranker's published models are kept there too (kind ``ranker``,
:class:`ltrr.ranking.registry_pg.PgModelRegistry`), so PostgreSQL holds one blob table, not two.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import threading
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Callable, Final, Protocol, Sequence, TypeVar

import psycopg

from ltrr.errors import BackendUnavailable
from ltrr.eventlog_pg import ADVISORY_LOCKS, redact_dsn

LATEST = "LATEST"
T = TypeVar("T")


class CheckpointDir:
    def __init__(self, root: str | Path, *, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1, got {keep}")
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def new(self) -> Path:
        """A fresh temporary directory path (not yet created) to save into."""
        return self.root / f".tmp-{uuid.uuid4().hex}"

    def commit(self, tmp: Path, version: int) -> Path:
        final = self.root / f"ckpt-{version:010d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        pointer = self.root / f".{LATEST}.{uuid.uuid4().hex}"
        pointer.write_text(final.name + "\n")
        with open(pointer, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, self.root / LATEST)
        fsync_dir(self.root)  # make the rename and the new pointer durable
        self._prune(final)
        return final

    def latest(self) -> Path | None:
        try:
            name = (self.root / LATEST).read_text().strip()
        except FileNotFoundError:
            return None
        path = self.root / name
        return path if name and path.is_dir() else None

    def _prune(self, current: Path) -> None:
        ckpts = sorted(p for p in self.root.glob("ckpt-*") if p.is_dir())
        for old in ckpts[: max(0, len(ckpts) - self.keep)]:
            if old != current:
                shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        for stale in self.root.glob(f".{LATEST}.*"):  # a pointer left by a crash before os.replace
            stale.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: The table of checkpoints (and other versioned blobs), one row per ``(kind, version)``.
BLOBS_DDL: Final = """CREATE TABLE IF NOT EXISTS ltrr_blobs (
    kind    TEXT NOT NULL,
    version BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (kind, version)
)"""
#: A local copy of :class:`PgCheckpointStore`: ``ckpt-<version>-<created in µs>``.
_CACHED: Final = re.compile(r"^ckpt-\d{10,}-\d+$")
#: The newest first: the last committed (``created``, the server's clock, kept increasing per kind).
_NEWEST_FIRST: Final = "ORDER BY created DESC, version DESC"
#: The advisory-lock class of :meth:`PgBlobs.lock`: "blob" in ASCII (the event log's is "ltrr", the leases' "leas").
BLOB_LOCK_CLASS: Final = 0x626C6F62


class Fence(Protocol):
    """Runs a write in a transaction that commits only while a lease is held (:meth:`ltrr.lease.PgLease.fenced`)."""

    def fenced(self, fn: Callable[[psycopg.Cursor[Any]], T]) -> T: ...


class PgBlobs:
    """The rows of ``kind`` in the ``ltrr_blobs`` table of the database at ``dsn`` (created if missing): the one
    store of versioned blobs in PostgreSQL, under the policy's checkpoints (:class:`PgCheckpointStore`) and the
    ranker's published models (:class:`ltrr.ranking.registry_pg.PgModelRegistry`).

    :meth:`run` runs ``fn(cursor)`` in one transaction. With ``fenced`` and a ``fence`` (the writer's lease,
    :meth:`ltrr.lease.PgLease.fenced`) it runs on the lease's session and commits only while the lease is held
    (else :class:`~ltrr.errors.Aborted`, nothing written); otherwise on a connection of its own, opened for the
    call, or, for reads with ``keep_connection`` (a reader that polls every second or so), one connection kept
    from call to call and opened again once if the server cut it. The other methods are the SQL to call in
    ``fn``. Rows are ordered by ``created``: the server's clock when the row was written, moved past the kind's
    previous ``created`` so the order holds even if the clock steps back; the newest is the last written.
    Server failures raise :class:`~ltrr.errors.BackendUnavailable`, ``"<label> '<kind>' on <dsn>: <what>
    failed: <detail>"`` (the DSN without its password). Thread-safe."""

    def __init__(
        self,
        dsn: str,
        kind: str,
        *,
        fence: Fence | None = None,
        label: str = "checkpoints",
        keep_connection: bool = False,
    ) -> None:
        if not isinstance(kind, str) or not kind.strip():
            raise ValueError(f"`kind` must be a non-empty string, got {kind!r}")
        self.kind = kind
        self.fence = fence
        self.label = label
        self._dsn = dsn
        self.dsn = redact_dsn(dsn)
        self._keep_connection = keep_connection
        self._connect_kw: dict[str, Any] = {"connect_timeout": 10, "application_name": f"ltrr-{label}"}
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        digest = hashlib.blake2b(kind.encode(), digest_size=4).digest()
        self.lock_key = (BLOB_LOCK_CLASS, int.from_bytes(digest, "big", signed=True))

        def create(cur: psycopg.Cursor[Any]) -> None:  # two processes creating it at once take turns
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCKS["schema"])
            cur.execute(BLOBS_DDL)

        self.run(create, "create the table", fenced=False)

    def run(self, fn: Callable[[psycopg.Cursor[Any]], T], what: str, *, fenced: bool) -> T:
        """``fn`` in one transaction (class docstring): a write if ``fenced``, else a read."""
        if fenced and self.fence is not None:
            return self.fence.fenced(fn)
        try:
            if fenced or not self._keep_connection:
                with psycopg.connect(self._dsn, **self._connect_kw) as conn:
                    with conn.transaction():
                        return fn(conn.cursor())
            with self._lock:
                return self._read(fn)
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            raise BackendUnavailable(f"{self.label} {self.kind!r} on {self.dsn}: {what} failed: {detail}") from exc

    def close(self) -> None:
        """Close the kept connection, if any (a later read opens another)."""
        with self._lock:
            self._drop()

    # -- the SQL, on the cursor of :meth:`run`'s transaction ---------------------------------------------
    def lock(self, cur: psycopg.Cursor[Any]) -> None:
        """Wait for, and hold until the transaction ends, the kind's advisory lock: writers take turns."""
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", self.lock_key)

    def put(self, cur: psycopg.Cursor[Any], version: int, data: bytes) -> float:
        """Upsert row ``version`` (the same version again replaces it) as the newest; returns its ``created``."""
        cur.execute("SET LOCAL synchronous_commit = on")
        row = cur.execute(
            "INSERT INTO ltrr_blobs (kind, version, created, data) VALUES (%s, %s, GREATEST("
            "EXTRACT(EPOCH FROM clock_timestamp())::double precision, "
            "(SELECT MAX(created) + 1e-6 FROM ltrr_blobs WHERE kind = %s)), %s) "
            "ON CONFLICT (kind, version) DO UPDATE SET created = EXCLUDED.created, data = EXCLUDED.data "
            "RETURNING created",
            (self.kind, int(version), self.kind, data),
        ).fetchone()
        assert row is not None
        return float(row[0])

    def touch(self, cur: psycopg.Cursor[Any], version: int) -> float | None:
        """Make row ``version`` the newest, its data unchanged; returns its new ``created``, None if there is none."""
        cur.execute("SET LOCAL synchronous_commit = on")
        row = cur.execute(
            "UPDATE ltrr_blobs SET created = GREATEST(EXTRACT(EPOCH FROM clock_timestamp())::double precision, "
            "(SELECT MAX(created) + 1e-6 FROM ltrr_blobs WHERE kind = %s)) WHERE kind = %s AND version = %s "
            "RETURNING created",
            (self.kind, self.kind, int(version)),
        ).fetchone()
        return None if row is None else float(row[0])

    def prune(self, cur: psycopg.Cursor[Any], keep: int) -> None:
        """Delete all but the newest ``keep`` rows of the kind."""
        cur.execute(
            "DELETE FROM ltrr_blobs WHERE kind = %s AND version NOT IN "
            f"(SELECT version FROM ltrr_blobs WHERE kind = %s {_NEWEST_FIRST} LIMIT %s)",
            (self.kind, self.kind, keep),
        )

    def delete(self, cur: psycopg.Cursor[Any], versions: Sequence[int]) -> None:
        """Delete the rows of ``versions``."""
        cur.execute(
            "DELETE FROM ltrr_blobs WHERE kind = %s AND version = ANY(%s::bigint[])",
            (self.kind, [int(v) for v in versions]),
        )

    def head(self, cur: psycopg.Cursor[Any]) -> tuple[int, float] | None:
        """The newest row's ``(version, created)``, or None if the kind has none."""
        row = cur.execute(
            f"SELECT version, created FROM ltrr_blobs WHERE kind = %s {_NEWEST_FIRST} LIMIT 1", (self.kind,)
        ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    def rows(self, cur: psycopg.Cursor[Any]) -> list[tuple[int, float]]:
        """Every row's ``(version, created)``, the newest first."""
        rows = cur.execute(f"SELECT version, created FROM ltrr_blobs WHERE kind = %s {_NEWEST_FIRST}", (self.kind,))
        return [(int(v), float(c)) for v, c in rows]

    def created(self, cur: psycopg.Cursor[Any], version: int) -> float | None:
        """Row ``version``'s ``created``, or None if there is none."""
        row = cur.execute(
            "SELECT created FROM ltrr_blobs WHERE kind = %s AND version = %s", (self.kind, int(version))
        ).fetchone()
        return None if row is None else float(row[0])

    def read(self, cur: psycopg.Cursor[Any], version: int, created: float | None = None) -> tuple[float, bytes] | None:
        """Row ``version``'s ``(created, data)``, or None if there is none (with ``created``: none written then)."""
        sql = "SELECT created, data FROM ltrr_blobs WHERE kind = %s AND version = %s"
        args: tuple[Any, ...] = (self.kind, int(version))
        if created is not None:
            sql, args = sql + " AND created = %s", (*args, created)
        row = cur.execute(sql, args).fetchone()
        return None if row is None else (float(row[0]), bytes(row[1]))

    # -- private -----------------------------------------------------------------------------------
    def _read(self, fn: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """``fn`` on the kept connection (under ``_lock``); on a new one, once, if the kept one was found cut."""
        for again in (True, False):
            conn = self._conn
            reused = conn is not None and not conn.closed and not conn.broken
            if conn is None or not reused:
                self._drop()
                conn = self._conn = psycopg.connect(self._dsn, autocommit=True, **self._connect_kw)
            try:
                with conn.transaction():
                    return fn(conn.cursor())
            except psycopg.Error:
                if not (conn.closed or conn.broken):
                    raise
                self._drop()
                if not (reused and again):
                    raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __del__(self) -> None:  # a store dropped unclosed closes its kept connection
        if getattr(self, "_conn", None) is not None:
            self._drop()


class PgCheckpointStore:
    """Checkpoints of ``kind`` in the ``ltrr_blobs`` table of the database at ``dsn``; the interface of
    :class:`CheckpointDir` (``new``, ``commit``, ``latest``, ``keep`` >= 1).

    ``commit(tmp, version)`` packs the directory ``tmp`` as tar.gz and, in one transaction, upserts it as
    row ``(kind, version)`` (the same version again replaces it, as :class:`CheckpointDir` does) and
    deletes all but the newest ``keep`` rows of ``kind``; then ``tmp`` becomes the local copy. "Newest" is
    the last committed, as ``LATEST`` is in :class:`CheckpointDir` (not the largest version: a learner that
    relearns from scratch after a config change commits small versions, and those are the ones to
    restore): ``created`` is the server's clock at commit, moved past the kind's previous ``created``
    so the order holds even if the clock steps back. With ``fence`` (the writer's lease,
    :meth:`ltrr.lease.PgLease.fenced`) the transaction runs on the lease's session and commits only while
    the lease is held; a lost lease raises :class:`~ltrr.errors.Aborted` and writes nothing.

    ``latest()`` reads the newest row's version and time (a small query), and on first sight extracts it
    once into ``cache_dir`` (``ckpt-<version>-<created in µs>``, renamed into place when complete) and
    returns that path; other copies there are removed. ``cache_dir`` is this process's own (a pod's
    ``emptyDir``): nothing in it is needed after a restart. Server failures raise
    :class:`~ltrr.errors.BackendUnavailable` (the message never holds the password). Thread-safe."""

    def __init__(
        self, dsn: str, kind: str, *, cache_dir: str | Path, keep: int = 3, fence: Fence | None = None
    ) -> None:
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1, got {keep}")
        if not isinstance(kind, str) or not kind.strip():
            raise ValueError(f"`kind` must be a non-empty string, got {kind!r}")
        self.kind = kind
        self.keep = keep
        self.root = Path(cache_dir)
        self.fence = fence
        self.dsn = redact_dsn(dsn)
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        self._blobs = PgBlobs(dsn, kind, fence=fence)  # creates the table

    def __repr__(self) -> str:
        return f"PgCheckpointStore({self.kind!r}, {self.dsn!r})"

    def new(self) -> Path:
        """A fresh temporary directory path (not yet created) to save into."""
        return self.root / f".tmp-{uuid.uuid4().hex}"

    def commit(self, tmp: Path, version: int) -> Path:
        """Store directory ``tmp`` as ``version`` (class docstring); returns its local copy."""
        data = pack_dir(Path(tmp))

        def write(cur: psycopg.Cursor[Any]) -> float:
            created = self._blobs.put(cur, int(version), data)
            self._blobs.prune(cur, self.keep)
            return created

        with self._lock:
            created = self._blobs.run(write, f"commit version {version}", fenced=True)
            final = self._cache_path(int(version), created)
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            self._prune_cache(final, tmp_too=True)
        return final

    def latest(self) -> Path | None:
        """The local copy of the newest checkpoint of ``kind`` (class docstring), or None if there is none."""
        with self._lock:
            for _ in range(3):  # the newest may be replaced or pruned between the two reads: look again
                head = self._blobs.run(self._blobs.head, "read the newest version", fenced=False)
                if head is None:
                    return None
                version, created = head
                final = self._cache_path(version, created)
                if final.is_dir():
                    return final
                read = partial(self._blobs.read, version=version, created=created)
                row = self._blobs.run(read, f"read {version}", fenced=False)
                if row is None:
                    continue
                materialise(row[1], final)
                self._prune_cache(final, tmp_too=False)
                return final
        raise BackendUnavailable(f"checkpoints {self.kind!r} on {self.dsn}: the newest changed on every read")

    # -- private -----------------------------------------------------------------------------------
    def _cache_path(self, version: int, created: float) -> Path:
        return self.root / f"ckpt-{version:010d}-{round(created * 1e6)}"

    def _prune_cache(self, current: Path, *, tmp_too: bool) -> None:
        """Remove every other local copy (and, after a commit, what crashed saves left, as CheckpointDir does).
        A :class:`CheckpointDir`'s ``ckpt-<version>`` in the same directory (before a DSN was set) is kept."""
        for old in self.root.glob("ckpt-*-*"):
            if old != current and _CACHED.match(old.name):
                shutil.rmtree(old, ignore_errors=True)
        for debris in (*self.root.glob(".dl-*"), *(self.root.glob(".tmp-*") if tmp_too else ())):
            shutil.rmtree(debris, ignore_errors=True)


def checkpoint_store(
    root: str | Path, dsn: str, kind: str, *, keep: int = 3, fence: Fence | None = None
) -> CheckpointDir | PgCheckpointStore:
    """Where a writer keeps its checkpoints: in PostgreSQL when ``dsn`` is non-empty
    (:class:`PgCheckpointStore` of ``kind``, with ``root`` as its local cache, fenced by ``fence``), else
    the directory ``root`` (:class:`CheckpointDir`; one host, where a file lease cannot be lost silently)."""
    if dsn.strip():
        return PgCheckpointStore(dsn, kind, cache_dir=root, keep=keep, fence=fence)
    return CheckpointDir(root, keep=keep)


def pack_dir(directory: Path) -> bytes:
    """The files under ``directory`` (its name left out) as tar.gz."""
    if not directory.is_dir():
        raise ValueError(f"`tmp` must be a directory to commit, got {str(directory)!r}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for child in sorted(directory.iterdir()):
            tar.add(child, arcname=child.name)
    return buf.getvalue()


def materialise(data: bytes, final: Path) -> Path:
    """Extract the tar.gz ``data`` as the directory ``final``: into a hidden ``.dl-`` sibling first, renamed
    into place when complete, so no reader sees it half-written. If another process put ``final`` there
    meanwhile (a cache shared by the processes of one host), that one is kept."""
    part = final.parent / f".dl-{uuid.uuid4().hex}"
    _unpack(data, part)
    try:
        os.rename(part, final)
    except OSError:
        shutil.rmtree(part, ignore_errors=True)
        if not final.is_dir():
            raise
    return final


def _unpack(data: bytes, directory: Path) -> None:
    """Extract the tar.gz ``data`` into the new directory ``directory`` (regular files and directories only:
    tarfile's ``data`` filter refuses absolute paths, ``..``, links out of it and devices)."""
    directory.mkdir()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(directory, filter="data")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
