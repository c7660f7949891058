"""Durable catalog store (SQLite, WAL mode).

The store is the single source of truth for entities, relations and user
profiles (and, in ``user_state``, the raw counts :mod:`ltrr.profiles` learns
profiles from). Every write of a *changed* entity bumps a global sequence number
``seq``; unchanged entities (same :meth:`Entity.content_hash`) are skipped.
Each index target (a Meilisearch index, a Milvus collection, a graph cache)
keeps a *watermark*: the highest ``seq`` it has indexed. Incremental ingest
is then ``entities_since(watermark)`` -> ``strategy.upsert`` -> ``set_watermark``.

Several processes may open the same file (one writer at a time, WAL readers).

Sequence numbers. Entities and relations share one ``seq`` space. An upsert takes them inside
its own write transaction: ``BEGIN IMMEDIATE`` (SQLite's write lock, which every connection of
every process waits for, up to the busy timeout), then ``MAX(seq)`` over both tables, then
``MAX + 1, MAX + 2, ...`` for the changed rows, then commit. Write transactions are serialised,
so each ``seq`` is given once and they increase in commit order: once a reader has seen a row
with ``seq = s``, every row with a lower ``seq`` is committed, and a later write gets more than
``s``. A watermark (the last ``seq`` seen) therefore never skips a row. (Reading ``MAX(seq)``
before the transaction, as this store once did, let two replicas take the same numbers, and a
reader that passed them skipped the slower replica's rows.) The schema is unchanged: files
written before open and go on as they are.

Backends. :class:`CatalogBase` is the interface every consumer takes; :class:`CatalogStore` is this
file, :class:`ltrr.catalog.store_pg.PgCatalogStore` the same catalog in PostgreSQL, what ingress
replicas on several nodes share (issue 12). :func:`open_catalog` opens the one an app config chooses:
PostgreSQL when a DSN is configured (:func:`ltrr.event_store.events_dsn`), else ``catalog_path``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from ltrr import constants as C
from ltrr.types import Entity, Relation, UserProfile

if TYPE_CHECKING:
    from ltrr.config import AppConfig

log = logging.getLogger("ltrr.catalog")

#: ``update(user_id, profile or None, learner state or None) -> (profile, state) or None``
#: (:meth:`CatalogStore.update_users`).
UserUpdate = Callable[[str, UserProfile | None, dict[str, Any] | None], tuple[UserProfile, dict[str, Any]] | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    entity_id   TEXT PRIMARY KEY,
    entity_type TEXT NOT NULL,
    doc         TEXT NOT NULL,
    hash        TEXT NOT NULL,
    seq         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entities_seq ON entities(seq);
CREATE TABLE IF NOT EXISTS relations (
    src    TEXT NOT NULL,
    dst    TEXT NOT NULL,
    kind   TEXT NOT NULL,
    weight REAL NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (src, dst, kind)
);
CREATE INDEX IF NOT EXISTS relations_seq ON relations(seq);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    doc     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_state (
    user_id TEXT PRIMARY KEY,
    doc     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class CatalogBase(ABC):
    """The catalog's interface, on either backend (:class:`CatalogStore`, SQLite;
    :class:`ltrr.catalog.store_pg.PgCatalogStore`, PostgreSQL): what the ingress, the strategies' sync,
    the learner and the builders take. The semantics are :class:`CatalogStore`'s on both (the module
    docstring: change detection, sequence numbers in commit order, watermarks)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the catalog is, as it may be shown: the file, or the DSN without its password."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def vocabulary_rows(self) -> list[tuple[str, str, list[str], list[str]]]:
        """``(entity_type, title, genres, tags)`` of every entity: what query understanding's vocabulary counts
        (:meth:`ltrr.query_understanding.Vocabulary.from_store`), without building every :class:`Entity` (from
        PostgreSQL, 58k entities: 0.66 s against 1.16 s for that walk)."""

    @abstractmethod
    def max_seq(self) -> int:
        """The highest ``seq`` of any entity or relation (0 when there is none)."""

    @abstractmethod
    def upsert_entities(self, entities: Iterable[Entity]) -> int:
        """Write entities whose content changed, in one transaction; return how many changed."""

    @abstractmethod
    def get(self, entity_id: str) -> Entity | None: ...

    @abstractmethod
    def get_many(self, entity_ids: Sequence[str]) -> dict[str, Entity]: ...

    @abstractmethod
    def count(self, entity_type: str | None = None) -> int: ...

    @abstractmethod
    def count_since(self, seq: int) -> int: ...

    @abstractmethod
    def entities_since(self, seq: int = 0, batch_size: int = 1000) -> Iterator[tuple[int, list[Entity]]]:
        """Yield ``(max_seq_in_batch, entities)`` batches of entities with ``seq > seq``, in seq order."""

    @abstractmethod
    def upsert_relations(self, relations: Iterable[Relation]) -> int:
        """Write relations whose weight changed, in one transaction; return how many changed."""

    @abstractmethod
    def relations_since(self, seq: int = 0) -> Iterator[Relation]: ...

    @abstractmethod
    def upsert_users(self, users: Iterable[UserProfile]) -> int:
        """Write profiles (one transaction); return how many were new or different from the stored one."""

    @abstractmethod
    def user(self, user_id: str) -> UserProfile | None: ...

    @abstractmethod
    def users(self) -> Iterator[UserProfile]: ...

    @abstractmethod
    def user_state(self, user_id: str) -> dict[str, Any] | None:
        """The profile learner's raw state of ``user_id`` (:mod:`ltrr.profiles`), None if it has none."""

    @abstractmethod
    def update_users(
        self, user_ids: Iterable[str], update: UserUpdate, *, cursor_key: str, expect: int, to: int
    ) -> bool:
        """Read-modify-write profiles and their learner state, and move a cursor, in one transaction
        (:meth:`CatalogStore.update_users`)."""

    @abstractmethod
    def get_meta(self, key: str, default: str | None = None) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    @abstractmethod
    def delete_users(self, user_ids: Iterable[str]) -> int:
        """Delete these profiles (one transaction); return how many existed."""

    def watermark(self, target: str) -> int:
        return int(self.get_meta(f"watermark:{target}", "0") or 0)

    def set_watermark(self, target: str, seq: int) -> None:
        self.set_meta(f"watermark:{target}", str(int(seq)))


class CatalogStore(CatalogBase):
    """SQLite-backed catalog. Thread-safe within a process.

    Writes share one connection under ``_lock``, which a write holds for its whole transaction. The
    lookups of the search path (:meth:`get`, :meth:`get_many`, :meth:`user`, :meth:`count`,
    :meth:`count_since`, :meth:`get_meta`) use a second, read-only connection under their own lock:
    in WAL mode they read the last commit while an upsert is open, and never wait for it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()
        self._rlock = threading.Lock()
        self._rdb = sqlite3.connect(
            str(self.path), check_same_thread=False, timeout=C.SQLITE_BUSY_TIMEOUT_S, isolation_level=None
        )
        self._rdb.execute("PRAGMA query_only=ON")

    def __repr__(self) -> str:
        return f"CatalogStore({str(self.path)!r})"

    @property
    def location(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with self._lock, self._rlock:
            self._db.close()
            self._rdb.close()

    def vocabulary_rows(self) -> list[tuple[str, str, list[str], list[str]]]:
        """As :meth:`CatalogBase.vocabulary_rows`, with SQLite's ``json_extract`` on the reading connection."""
        sql = (
            "SELECT entity_type, json_extract(doc, '$.title'), json_extract(doc, '$.genres'), "
            "json_extract(doc, '$.tags') FROM entities"
        )
        with self._rlock:
            rows = self._rdb.execute(sql).fetchall()
        return [(t, title or "", json.loads(g or "[]"), json.loads(tg or "[]")) for t, title, g, tg in rows]

    # -- sequence --------------------------------------------------------
    def max_seq(self) -> int:
        """The highest ``seq`` of any entity or relation (0 when there is none)."""
        with self._lock:
            return self._max_seq()

    def _max_seq(self) -> int:
        row = self._db.execute(
            "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM entities UNION ALL SELECT MAX(seq) FROM relations)"
        ).fetchone()
        return int(row[0] or 0)

    @contextmanager
    def _sequenced_write(self) -> Iterator[int]:
        """One write transaction that numbers rows: yields the ``MAX(seq)`` read *inside* it (see the
        module docstring), commits on exit, rolls back on an exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._max_seq()
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    # -- entities --------------------------------------------------------
    def upsert_entities(self, entities: Iterable[Entity]) -> int:
        """Write entities whose content changed, in one transaction; return how many changed."""
        changed = 0
        with self._sequenced_write() as seq:
            cur = self._db.cursor()
            for e in entities:
                h = e.content_hash()
                row = cur.execute("SELECT hash FROM entities WHERE entity_id=?", (e.entity_id,)).fetchone()
                if row is not None and row[0] == h:
                    continue
                seq += 1
                changed += 1
                cur.execute(
                    "INSERT INTO entities(entity_id, entity_type, doc, hash, seq) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(entity_id) DO UPDATE SET entity_type=excluded.entity_type, "
                    "doc=excluded.doc, hash=excluded.hash, seq=excluded.seq",
                    (e.entity_id, e.entity_type, json.dumps(e.to_dict(), ensure_ascii=False), h, seq),
                )
        return changed

    def get(self, entity_id: str) -> Entity | None:
        with self._rlock:
            row = self._rdb.execute("SELECT doc FROM entities WHERE entity_id=?", (entity_id,)).fetchone()
        return Entity.from_dict(json.loads(row[0])) if row else None

    def get_many(self, entity_ids: Sequence[str]) -> dict[str, Entity]:
        out: dict[str, Entity] = {}
        ids = list(entity_ids)
        with self._rlock:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = f"SELECT entity_id, doc FROM entities WHERE entity_id IN ({','.join('?' * len(chunk))})"
                for eid, doc in self._rdb.execute(q, chunk).fetchall():
                    out[eid] = Entity.from_dict(json.loads(doc))
        return out

    def count(self, entity_type: str | None = None) -> int:
        with self._rlock:
            if entity_type is None:
                return int(self._rdb.execute("SELECT COUNT(*) FROM entities").fetchone()[0])
            return int(
                self._rdb.execute("SELECT COUNT(*) FROM entities WHERE entity_type=?", (entity_type,)).fetchone()[0]
            )

    def count_since(self, seq: int) -> int:
        with self._rlock:
            return int(self._rdb.execute("SELECT COUNT(*) FROM entities WHERE seq>?", (seq,)).fetchone()[0])

    def entities_since(self, seq: int = 0, batch_size: int = 1000) -> Iterator[tuple[int, list[Entity]]]:
        """Yield ``(max_seq_in_batch, entities)`` batches of entities with ``seq > seq``, in seq order."""
        last = seq
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, doc FROM entities WHERE seq>? ORDER BY seq LIMIT ?", (last, batch_size)
                ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield last, [Entity.from_dict(json.loads(doc)) for _, doc in rows]

    # -- relations -------------------------------------------------------
    def upsert_relations(self, relations: Iterable[Relation]) -> int:
        """Write relations whose weight changed, in one transaction; return how many changed."""
        changed = 0
        with self._sequenced_write() as seq:
            cur = self._db.cursor()
            for r in relations:
                row = cur.execute(
                    "SELECT weight FROM relations WHERE src=? AND dst=? AND kind=?", (r.src, r.dst, r.kind)
                ).fetchone()
                if row is not None and abs(row[0] - r.weight) < 1e-12:
                    continue
                seq += 1
                changed += 1
                cur.execute(
                    "INSERT INTO relations(src, dst, kind, weight, seq) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(src, dst, kind) DO UPDATE SET weight=excluded.weight, seq=excluded.seq",
                    (r.src, r.dst, r.kind, float(r.weight), seq),
                )
        return changed

    def relations_since(self, seq: int = 0) -> Iterator[Relation]:
        with self._lock:
            rows = self._db.execute(
                "SELECT src, dst, kind, weight FROM relations WHERE seq>? ORDER BY seq", (seq,)
            ).fetchall()
        for src, dst, kind, weight in rows:
            yield Relation(src, dst, kind, float(weight))

    # -- users -----------------------------------------------------------
    def upsert_users(self, users: Iterable[UserProfile]) -> int:
        """Write profiles (one transaction); return how many were new or different from the stored one."""
        changed = 0
        with self._lock:
            for u in users:
                changed += self._put_user(u)
            self._db.commit()
        return changed

    def _put_user(self, u: UserProfile) -> bool:
        doc = json.dumps(u.to_dict())
        row = self._db.execute("SELECT doc FROM users WHERE user_id=?", (u.user_id,)).fetchone()
        if row is not None and row[0] == doc:
            return False
        self._db.execute(
            "INSERT INTO users(user_id, doc) VALUES (?,?) ON CONFLICT(user_id) DO UPDATE SET doc=excluded.doc",
            (u.user_id, doc),
        )
        return True

    def user(self, user_id: str) -> UserProfile | None:
        with self._rlock:
            row = self._rdb.execute("SELECT doc FROM users WHERE user_id=?", (user_id,)).fetchone()
        return UserProfile.from_dict(json.loads(row[0])) if row else None

    def users(self) -> Iterator[UserProfile]:
        with self._lock:
            rows = self._db.execute("SELECT doc FROM users").fetchall()
        for (doc,) in rows:
            yield UserProfile.from_dict(json.loads(doc))

    def user_state(self, user_id: str) -> dict[str, Any] | None:
        """The profile learner's raw state of ``user_id`` (:mod:`ltrr.profiles`), None if it has none."""
        with self._lock:
            row = self._db.execute("SELECT doc FROM user_state WHERE user_id=?", (user_id,)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def update_users(
        self,
        user_ids: Iterable[str],
        update: UserUpdate,
        *,
        cursor_key: str,
        expect: int,
        to: int,
    ) -> bool:
        """Read-modify-write profiles and their learner state, and move a cursor, in one transaction.

        ``update(user_id, profile, state)`` gets the stored profile and state (None when absent) and
        returns the new ``(profile, state)``, or None to leave both. Meta ``cursor_key`` moves from
        ``expect`` to ``to`` in the same ``BEGIN IMMEDIATE`` transaction, so a crash leaves either all of
        it or none of it; if the stored cursor is not ``expect`` (another learner got there first),
        nothing is written and the call returns False.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT value FROM meta WHERE key=?", (cursor_key,)).fetchone()
                if int(row[0] if row else 0) != expect:
                    self._db.rollback()
                    return False
                for uid in user_ids:
                    prow = self._db.execute("SELECT doc FROM users WHERE user_id=?", (uid,)).fetchone()
                    srow = self._db.execute("SELECT doc FROM user_state WHERE user_id=?", (uid,)).fetchone()
                    profile = UserProfile.from_dict(json.loads(prow[0])) if prow else None
                    result = update(uid, profile, json.loads(srow[0]) if srow else None)
                    if result is None:
                        continue
                    new_profile, state = result
                    self._put_user(new_profile)
                    self._db.execute(
                        "INSERT INTO user_state(user_id, doc) VALUES (?,?) "
                        "ON CONFLICT(user_id) DO UPDATE SET doc=excluded.doc",
                        (uid, json.dumps(state, ensure_ascii=False, separators=(",", ":"))),
                    )
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (cursor_key, str(int(to))),
                )
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise
        return True

    # -- watermarks and meta ----------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._rlock:
            row = self._rdb.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )
            self._db.commit()

    # -- retiring ----------------------------------------------------------
    def delete_users(self, user_ids: Iterable[str]) -> int:
        """Delete these profiles (one transaction); return how many existed. Only a build that
        changes the held-out split calls this (:mod:`ltrr.catalog.build`)."""
        ids = list(user_ids)
        n = 0
        with self._lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                cur = self._db.execute(f"DELETE FROM users WHERE user_id IN ({','.join('?' * len(chunk))})", chunk)
                n += cur.rowcount
            self._db.commit()
        return n


def open_catalog(app: AppConfig) -> CatalogBase:
    """The catalog ``app`` configures: :class:`~ltrr.catalog.store_pg.PgCatalogStore` on the database of
    :func:`ltrr.event_store.events_dsn` (``$LTRR_EVENTS_DSN``, else ``events_dsn``) when there is one, else
    :class:`CatalogStore` at ``catalog_path``. A DSN that does not parse, or a database whose catalog
    schema is newer than this code's, is a :class:`~ltrr.errors.ConfigError` naming where the DSN came from."""
    from ltrr.event_store import DSN_ENV, events_dsn

    dsn = events_dsn(app)
    if not dsn:
        return CatalogStore(app.catalog_path)
    from ltrr.catalog.store_pg import PgCatalogStore
    from ltrr.errors import ConfigError

    where = DSN_ENV if os.environ.get(DSN_ENV, "").strip() else "events_dsn"
    try:
        store = PgCatalogStore(dsn)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    log.info("catalog: PostgreSQL %s (from %s)", store.dsn, where)
    return store
