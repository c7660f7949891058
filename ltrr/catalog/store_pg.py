"""The catalog in PostgreSQL, off the node (issue 12): :class:`PgCatalogStore`, beside the SQLite file.

What :func:`ltrr.catalog.store.open_catalog` opens when a DSN is configured
(:func:`ltrr.event_store.events_dsn`): every ingress replica, strategy replica and the learner, on any
node, read and write the same catalog. Every public method of :class:`~ltrr.catalog.store.CatalogStore`
is here with the same semantics (its module docstring: change detection by content hash, one ``seq``
space for entities and relations, watermarks); this docstring says how they hold on PostgreSQL.

Tables (catalog schema v1, the number in ``catalog_schema_version``), those of the SQLite file with a
``catalog_`` prefix, ``BIGINT`` seqs and ``DOUBLE PRECISION`` weights; documents stay JSON text, as in
the file, so a migrated row is byte for byte the same::

    catalog_entities, catalog_relations, catalog_users, catalog_user_state, catalog_meta

The prefix keeps them apart from the event log's tables (``searches``, ``search_seq``, ``feedback``,
``pending``, ``settlements``, ``query_stats``, ``cursors``, ``schema_version``: :mod:`ltrr.eventlog_pg`)
and from ``ltrr_blobs`` (checkpoints, ranker models), which share the database. Opening creates them
with ``CREATE ... IF NOT EXISTS`` in one transaction under the catalog's ``schema`` advisory lock, so
processes that open an empty database at once neither fail nor race; a newer schema is refused.

Sequence numbers in commit order. :meth:`PgCatalogStore.upsert_entities` and
:meth:`~PgCatalogStore.upsert_relations` take the transaction-level advisory lock ``seq``
(``pg_advisory_xact_lock``, :data:`ADVISORY_LOCKS`) as their transaction's first statement, then read
``MAX(seq)`` over both tables, number their changed rows ``MAX + 1, MAX + 2, ...`` and commit. The lock
is released only after the commit is visible to other sessions (PostgreSQL releases a transaction's
locks after it marks it committed), and each statement of a ``READ COMMITTED`` transaction sees every
commit before it began, so the next writer's ``MAX(seq)`` includes the previous writer's rows: (a) no
two writers, in any process on any node, get the same seq, and (b) seqs are committed in increasing
order, so a reader that has seen ``seq = s`` (``entities_since``, a watermark) has seen, or will never
see, every row below ``s``: it never misses one. This is the SQLite store's rule (``BEGIN IMMEDIATE``
then ``MAX(seq)``) with PostgreSQL's lock, and the event log's (:mod:`ltrr.eventlog_pg`). Rejected: a
``SEQUENCE`` (or ``BIGSERIAL``) hands out values at insert, not at commit, so 6 may commit before 5 and a
reader past 6 would skip 5; letting writers run in parallel and readers stop below the oldest open
transaction (``pg_snapshot_xmin``) puts that reasoning in every reader. Writers of entities and
relations take turns; each holds the lock for one batch's round trips (the look-up of the stored
hashes, one ``INSERT ... SELECT FROM unnest`` and the commit's WAL flush). The hashes and documents
are computed before the transaction. As in the file, an entity written twice in one batch takes two
seqs and keeps the second; seqs are otherwise contiguous.

Users. :meth:`~PgCatalogStore.upsert_users`, :meth:`~PgCatalogStore.update_users` and
:meth:`~PgCatalogStore.delete_users` take the ``users`` lock (they never wait for the ``seq`` one), so a
learner's read-modify-write never interleaves with an import, as under SQLite's single writer.
``update_users`` also locks its cursor's row in ``catalog_meta`` (``SELECT ... FOR UPDATE``, inserted
first if absent and rolled back with the rest when the cursor is not ``expect``), so the
compare-and-set holds against a concurrent :meth:`~PgCatalogStore.set_meta` too.

Connections, durability and errors are the event log's (:class:`ltrr.eventlog_pg.PgSessions`): one
write and one read session per instance, each under a lock (lookups never wait behind a write),
``synchronous_commit = on``, a broken session replaced on the next call and a call retried once if its
session broke before ``COMMIT``; server failures raise :class:`~ltrr.errors.BackendUnavailable`
(``catalog write failed: ...``), never with the DSN's password. ``busy_timeout_s`` bounds each wait for
a lock (30 s by default, as the SQLite store's write timeout: batches of a build are long).

Moving a SQLite catalog here: ``ltrr migrate-catalog`` (:func:`copy_sqlite_catalog`): every row, seqs,
watermarks and the other meta keys kept, in one transaction holding all three locks.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, Final, Iterable, Iterator, Sequence

from ltrr.catalog.store import CatalogBase, UserUpdate
from ltrr.eventlog_base import _check_float
from ltrr.eventlog_pg import Cursor, PgSessions, _one
from ltrr.pgmigrate import copy_sqlite
from ltrr.types import Entity, Relation, UserProfile

__all__ = ["ADVISORY_LOCKS", "SCHEMA_VERSION", "TABLES", "PgCatalogStore", "copy_sqlite_catalog"]

#: The catalog schema this code reads and writes.
SCHEMA_VERSION: Final = 1
#: ``pg_advisory_xact_lock(class, key)`` of each lock: the class is "catl" in ASCII (the event log's is "ltrr").
ADVISORY_LOCKS: Final = {
    "schema": (0x6361746C, 0),
    "seq": (0x6361746C, 1),
    "users": (0x6361746C, 2),
}
#: Each SQLite table and its PostgreSQL one, with the columns copied (in this order).
TABLES: Final = {
    "entities": ("catalog_entities", ("entity_id", "entity_type", "doc", "hash", "seq")),
    "relations": ("catalog_relations", ("src", "dst", "kind", "weight", "seq")),
    "users": ("catalog_users", ("user_id", "doc")),
    "user_state": ("catalog_user_state", ("user_id", "doc")),
    "meta": ("catalog_meta", ("key", "value")),
}

_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS catalog_entities (
        entity_id   TEXT PRIMARY KEY,
        entity_type TEXT NOT NULL,
        doc         TEXT NOT NULL,
        hash        TEXT NOT NULL,
        seq         BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS catalog_entities_seq ON catalog_entities(seq)",
    """CREATE TABLE IF NOT EXISTS catalog_relations (
        src    TEXT NOT NULL,
        dst    TEXT NOT NULL,
        kind   TEXT NOT NULL,
        weight DOUBLE PRECISION NOT NULL,
        seq    BIGINT NOT NULL,
        PRIMARY KEY (src, dst, kind)
    )""",
    "CREATE INDEX IF NOT EXISTS catalog_relations_seq ON catalog_relations(seq)",
    "CREATE TABLE IF NOT EXISTS catalog_users (user_id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS catalog_user_state (user_id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_MAX_SEQ: Final = (
    "SELECT GREATEST((SELECT COALESCE(MAX(seq), 0) FROM catalog_entities), "
    "(SELECT COALESCE(MAX(seq), 0) FROM catalog_relations))"
)
_UPSERT_META: Final = (
    "INSERT INTO catalog_meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
_UPSERT_DOCS: Final = (
    "INSERT INTO {table}(user_id, doc) SELECT * FROM unnest(%s::text[], %s::text[]) "
    "ON CONFLICT (user_id) DO UPDATE SET doc = EXCLUDED.doc"
)


class _CursorMoved(Exception):
    """Inside :meth:`PgCatalogStore.update_users`: the cursor is not ``expect``; roll back, return False."""


def _columns(rows: Iterable[Sequence[object]], width: int) -> list[list[object]]:
    """Rows as ``width`` column lists, the parameters of ``SELECT * FROM unnest(%s, %s, ...)``."""
    cols: list[list[object]] = [[] for _ in range(width)]
    for row in rows:
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


class PgCatalogStore(PgSessions, CatalogBase):
    """The catalog in the PostgreSQL database at ``dsn`` (module docstring), the interface and semantics of
    :class:`~ltrr.catalog.store.CatalogStore`. Thread-safe; any number of processes may open the same database.
    Raises :class:`ValueError` for a DSN that does not parse or a database of a newer catalog schema."""

    _WHAT = "catalog"
    _LOCKS = ADVISORY_LOCKS

    def __init__(self, dsn: str, *, busy_timeout_s: float = 30.0) -> None:
        self.busy_timeout_s = _check_float("busy_timeout_s", busy_timeout_s, lo=0, strict=False)
        self._open_and_migrate(
            dsn,
            "ltrr-catalog",
            version_table="catalog_schema_version",
            version=SCHEMA_VERSION,
            ddl=_DDL,
            what="catalog",
        )

    def __repr__(self) -> str:
        return f"PgCatalogStore({self.dsn!r})"

    @property
    def location(self) -> str:
        return self.dsn

    # -- sequence --------------------------------------------------------
    def max_seq(self) -> int:
        return int(self._read(lambda cur: _one(cur.execute(_MAX_SEQ))))

    # -- entities --------------------------------------------------------
    def upsert_entities(self, entities: Iterable[Entity]) -> int:
        """Write entities whose content changed, in one transaction; return how many changed. Seqs are
        taken under the ``seq`` lock, after it (module docstring)."""
        items = [
            (e.entity_id, e.entity_type, json.dumps(e.to_dict(), ensure_ascii=False), e.content_hash())
            for e in entities
        ]
        if not items:
            return 0

        def run(cur: Cursor) -> int:
            top = seq = int(_one(cur.execute(_MAX_SEQ)))
            ids = sorted({item[0] for item in items})
            stored: dict[str, str] = dict(
                cur.execute("SELECT entity_id, hash FROM catalog_entities WHERE entity_id = ANY(%s)", (ids,))
            )
            rows: dict[str, tuple[str, str, str, str, int]] = {}
            for eid, etype, doc, h in items:  # in order, as the file's loop: a repeat compares with the one before
                if stored.get(eid) == h:
                    continue
                seq += 1
                stored[eid] = h
                rows[eid] = (eid, etype, doc, h, seq)
            if rows:
                cur.execute(
                    "INSERT INTO catalog_entities(entity_id, entity_type, doc, hash, seq) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[]) "
                    "ON CONFLICT (entity_id) DO UPDATE SET entity_type = EXCLUDED.entity_type, "
                    "doc = EXCLUDED.doc, hash = EXCLUDED.hash, seq = EXCLUDED.seq",
                    _columns(rows.values(), 5),
                )
            return seq - top  # one seq per changed row

        return self._write(run, locks=("seq",))

    def get(self, entity_id: str) -> Entity | None:
        row = self._read(
            lambda cur: cur.execute("SELECT doc FROM catalog_entities WHERE entity_id = %s", (entity_id,)).fetchone()
        )
        return Entity.from_dict(json.loads(row[0])) if row else None

    def get_many(self, entity_ids: Sequence[str]) -> dict[str, Entity]:
        ids = list(entity_ids)
        if not ids:
            return {}
        rows = self._read(
            lambda cur: cur.execute(
                "SELECT entity_id, doc FROM catalog_entities WHERE entity_id = ANY(%s)", (ids,)
            ).fetchall()
        )
        return {eid: Entity.from_dict(json.loads(doc)) for eid, doc in rows}

    def count(self, entity_type: str | None = None) -> int:
        if entity_type is None:
            return int(self._read(lambda cur: _one(cur.execute("SELECT COUNT(*) FROM catalog_entities"))))
        sql = "SELECT COUNT(*) FROM catalog_entities WHERE entity_type = %s"
        return int(self._read(lambda cur: _one(cur.execute(sql, (entity_type,)))))

    def vocabulary_rows(self) -> list[tuple[str, str, list[str], list[str]]]:
        """As :meth:`~ltrr.catalog.store.CatalogBase.vocabulary_rows`: every ``doc`` in one query, only these
        fields taken from it. On 58k entities (2 cores, beside a benchmark): 0.66 s, against 1.16 s building every
        :class:`Entity`, 1.5-2.4 s extracting the fields on the server with ``doc::jsonb``, and SQLite's 0.68 s."""
        rows = self._read(lambda cur: cur.execute("SELECT entity_type, doc FROM catalog_entities").fetchall())
        out = []
        for etype, doc in rows:
            d = json.loads(doc)
            out.append((str(etype), str(d.get("title") or ""), list(d.get("genres") or []), list(d.get("tags") or [])))
        return out

    def count_since(self, seq: int) -> int:
        sql = "SELECT COUNT(*) FROM catalog_entities WHERE seq > %s"
        return int(self._read(lambda cur: _one(cur.execute(sql, (int(seq),)))))

    def entities_since(self, seq: int = 0, batch_size: int = 1000) -> Iterator[tuple[int, list[Entity]]]:
        """Yield ``(max_seq_in_batch, entities)`` batches of entities with ``seq > seq``, in seq order; each
        batch is one query (no lock is held between batches)."""
        last = int(seq)

        def batch(cur: Cursor) -> list[tuple[Any, ...]]:
            sql = "SELECT seq, doc FROM catalog_entities WHERE seq > %s ORDER BY seq LIMIT %s"
            return cur.execute(sql, (last, batch_size)).fetchall()

        while True:
            rows = self._read(batch)
            if not rows:
                return
            last = int(rows[-1][0])
            yield last, [Entity.from_dict(json.loads(doc)) for _, doc in rows]

    # -- relations -------------------------------------------------------
    def upsert_relations(self, relations: Iterable[Relation]) -> int:
        """Write relations whose weight changed, in one transaction; return how many changed (seqs as
        :meth:`upsert_entities`)."""
        items = [(r.src, r.dst, r.kind, float(r.weight)) for r in relations]
        if not items:
            return 0

        def run(cur: Cursor) -> int:
            top = seq = int(_one(cur.execute(_MAX_SEQ)))
            keys = sorted({item[:3] for item in items})
            stored: dict[tuple[str, str, str], float] = {
                (s, d, k): float(w)
                for s, d, k, w in cur.execute(
                    "SELECT src, dst, kind, weight FROM catalog_relations WHERE (src, dst, kind) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
                    _columns(keys, 3),
                )
            }
            rows: dict[tuple[str, str, str], tuple[str, str, str, float, int]] = {}
            for src, dst, kind, weight in items:
                old = stored.get((src, dst, kind))
                if old is not None and abs(old - weight) < 1e-12:
                    continue
                seq += 1
                stored[(src, dst, kind)] = weight
                rows[(src, dst, kind)] = (src, dst, kind, weight, seq)
            if rows:
                cur.execute(
                    "INSERT INTO catalog_relations(src, dst, kind, weight, seq) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::bigint[]) "
                    "ON CONFLICT (src, dst, kind) DO UPDATE SET weight = EXCLUDED.weight, seq = EXCLUDED.seq",
                    _columns(rows.values(), 5),
                )
            return seq - top  # one seq per changed row

        return self._write(run, locks=("seq",))

    def relations_since(self, seq: int = 0) -> Iterator[Relation]:
        sql = "SELECT src, dst, kind, weight FROM catalog_relations WHERE seq > %s ORDER BY seq"
        rows = self._read(lambda cur: cur.execute(sql, (int(seq),)).fetchall())
        for src, dst, kind, weight in rows:
            yield Relation(src, dst, kind, float(weight))

    # -- users -----------------------------------------------------------
    def upsert_users(self, users: Iterable[UserProfile]) -> int:
        """Write profiles (one transaction, under the ``users`` lock); return how many were new or different
        from the stored one."""
        items = [(u.user_id, json.dumps(u.to_dict())) for u in users]
        if not items:
            return 0

        def run(cur: Cursor) -> int:
            stored = _docs(cur, "catalog_users", sorted({uid for uid, _ in items}))
            rows: dict[str, tuple[str, str]] = {}
            changed = 0
            for uid, doc in items:
                if stored.get(uid) == doc:
                    continue
                changed += 1
                stored[uid] = doc
                rows[uid] = (uid, doc)
            if rows:
                cur.execute(_UPSERT_DOCS.format(table="catalog_users"), _columns(rows.values(), 2))
            return changed

        return self._write(run, locks=("users",))

    def user(self, user_id: str) -> UserProfile | None:
        row = self._read(
            lambda cur: cur.execute("SELECT doc FROM catalog_users WHERE user_id = %s", (user_id,)).fetchone()
        )
        return UserProfile.from_dict(json.loads(row[0])) if row else None

    def users(self) -> Iterator[UserProfile]:
        rows = self._read(lambda cur: cur.execute("SELECT doc FROM catalog_users").fetchall())
        for (doc,) in rows:
            yield UserProfile.from_dict(json.loads(doc))

    def user_state(self, user_id: str) -> dict[str, Any] | None:
        row = self._read(
            lambda cur: cur.execute("SELECT doc FROM catalog_user_state WHERE user_id = %s", (user_id,)).fetchone()
        )
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
        """Read-modify-write profiles and their learner state, and move a cursor, in one transaction: the
        contract of :meth:`CatalogStore.update_users <ltrr.catalog.store.CatalogStore.update_users>`. Runs
        under the ``users`` lock with the cursor's row locked (module docstring); ``update`` is called
        inside the transaction, and once more if the session broke before ``COMMIT``."""
        ids = list(user_ids)

        def run(cur: Cursor) -> None:
            cur.execute(  # a row to lock even for a cursor never written (it reads as 0, as in the file)
                "INSERT INTO catalog_meta(key, value) VALUES (%s, '0') ON CONFLICT (key) DO NOTHING", (cursor_key,)
            )
            row = cur.execute("SELECT value FROM catalog_meta WHERE key = %s FOR UPDATE", (cursor_key,)).fetchone()
            if row is None or int(row[0]) != expect:
                raise _CursorMoved
            wanted = sorted(set(ids))
            profiles = _docs(cur, "catalog_users", wanted)
            states = _docs(cur, "catalog_user_state", wanted)
            new_profiles: dict[str, tuple[str, str]] = {}
            new_states: dict[str, tuple[str, str]] = {}
            for uid in ids:
                pdoc, sdoc = profiles.get(uid), states.get(uid)
                profile = UserProfile.from_dict(json.loads(pdoc)) if pdoc is not None else None
                result = update(uid, profile, json.loads(sdoc) if sdoc is not None else None)
                if result is None:
                    continue
                new_profile, state = result
                doc = json.dumps(new_profile.to_dict())
                if profiles.get(new_profile.user_id) != doc:
                    profiles[new_profile.user_id] = doc
                    new_profiles[new_profile.user_id] = (new_profile.user_id, doc)
                states[uid] = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
                new_states[uid] = (uid, states[uid])
            if new_profiles:
                cur.execute(_UPSERT_DOCS.format(table="catalog_users"), _columns(new_profiles.values(), 2))
            if new_states:
                cur.execute(_UPSERT_DOCS.format(table="catalog_user_state"), _columns(new_states.values(), 2))
            cur.execute("UPDATE catalog_meta SET value = %s WHERE key = %s", (str(int(to)), cursor_key))

        try:
            self._write(run, locks=("users",))
        except _CursorMoved:
            return False
        return True

    # -- watermarks and meta ----------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._read(lambda cur: cur.execute("SELECT value FROM catalog_meta WHERE key = %s", (key,)).fetchone())
        return str(row[0]) if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._write(lambda cur: cur.execute(_UPSERT_META, (key, value)))

    # -- retiring ----------------------------------------------------------
    def delete_users(self, user_ids: Iterable[str]) -> int:
        """Delete these profiles (one transaction, under the ``users`` lock); return how many existed."""
        ids = list(user_ids)
        if not ids:
            return 0
        return self._write(
            lambda cur: cur.execute("DELETE FROM catalog_users WHERE user_id = ANY(%s)", (ids,)).rowcount,
            locks=("users",),
        )


def _docs(cur: Cursor, table: str, ids: list[str]) -> dict[str, str]:
    """``user_id -> doc`` of the rows of ``table`` (``catalog_users`` or ``catalog_user_state``) among ``ids``."""
    return dict(cur.execute(f"SELECT user_id, doc FROM {table} WHERE user_id = ANY(%s)", (ids,)).fetchall())


# -- moving a SQLite catalog here ----------------------------------------------------------------------
def copy_sqlite_catalog(
    sqlite_path: str | Path, dsn: str, *, force: bool = False, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Copy the SQLite catalog at ``sqlite_path`` (read only, one snapshot) into the PostgreSQL one at ``dsn``;
    return the rows copied per SQLite table. Every row is copied as it is: seqs, so ``max_seq`` and every
    watermark (``meta``) mean the same rows and no index has to be rebuilt, and the learner's cursor. One
    transaction holding all of :data:`ADVISORY_LOCKS`, so no writer interleaves. A target with any row is
    refused (:class:`ValueError`) unless ``force``, which empties it first. Afterwards the row counts and the
    largest seq of both sides are compared (:class:`~ltrr.errors.Aborted` if they differ); a server failure
    is :class:`~ltrr.errors.BackendUnavailable`, without the password (:func:`ltrr.pgmigrate.copy_sqlite`)."""
    return copy_sqlite(
        sqlite_path,
        dsn,
        force=force,
        progress=progress,
        tables=TABLES,
        locks=ADVISORY_LOCKS.values(),
        check=_check_tables,
        create=lambda d: PgCatalogStore(d).close(),  # creates the schema if the database has none
        occupied="already has a catalog",
        differs="the target differs",
        verified="verified: the row counts of all {n} tables and the largest seqs are equal",
        max_seq_of=("entities", "relations"),
    )


def _check_tables(src: sqlite3.Connection, path: Path) -> None:
    present = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in TABLES if t not in present]
    if missing:
        raise ValueError(
            f"`sqlite` {str(path)!r} is not a catalog store (no table {', '.join(missing)}); if it is an old "
            "one, open it once with this ltrr (CatalogStore creates the missing tables), then migrate"
        )
