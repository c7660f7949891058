"""Durable log of searches, feedback and their settlements (SQLite in WAL mode).

Every ``Search`` writes one row before it answers; ``Feedback`` is joined to
that row by request id and is acknowledged only after its own row is committed
with ``synchronous=FULL`` (fsync of the WAL on every commit), so an
acknowledged event survives a crash of the replica or the machine.

Tables (schema v3, ``PRAGMA user_version = 3``)::

    searches    request_id PK, ts, query, user_id, doc (SearchEvent as JSON)
    search_seq  seq PK AUTOINCREMENT, request_id UNIQUE   the order searches were logged in
    feedback    seq PK AUTOINCREMENT, event_id UNIQUE, request_id, entity_id, action, position, ts
    pending     request_id PK, ts          searches not yet settled (index on ts)
    settlements seq PK AUTOINCREMENT, request_id UNIQUE, outcome, entity_id, action, ts
    query_stats query PK (normalised), searches, positives, last_ts   (searches the policy planned)
    cursors     name PK, seq

A v1 file (``feedback.event_id`` as primary key, only ``searches`` and
``feedback``) is migrated in place on open: feedback is copied in ``ts`` order
(so it gets ``seq`` 1..n) and the old searches count as already settled. A v2
file gains ``search_seq``, numbered in ``ts`` order.

Idempotency: writing the same feedback ``event_id`` twice stores it once and
reports ``duplicate=True``; reusing it for another event is rejected.

Settlement rule. Search ``r`` (logged at ``t_r``) gets exactly one settlement:

* ``positive`` if some feedback ``f`` on ``r`` has an action in
  ``positive_actions`` and ``f.ts <= t_r + reward_window_s``; the one with the
  lowest feedback ``seq`` gives ``entity_id`` and ``action``. Decided by the
  feedback's own ``ts``, not by when :meth:`SQLiteEventLog.settle` runs, so a
  late settle gives the same answer.
* ``expired`` (``entity_id = action = ""``) otherwise, once
  ``now > t_r + reward_window_s + expiry_grace_s``. The grace covers feedback
  stamped inside the window whose commit is still waiting for the write lock.

``settle`` runs in one ``BEGIN IMMEDIATE`` transaction: it reads the feedback
committed since its stored scan position (cursor ``_settle``), settles the
pending searches it finds a qualifying positive for, then expires the old ones,
removes them from ``pending`` and counts them in ``query_stats`` (unless their caller forced the plan). Rows are
never updated, so a settlement is immutable.

Delivery guarantees. ``seq`` values come from AUTOINCREMENT inside write
transactions, which SQLite serialises: they strictly increase in commit order
and are never reused, so a reader that has seen every row up to ``s`` never
sees a new row ``<= s``.

* Bandit updates, exactly once: the learner reads ``settlements_since(c)``,
  applies them, and stores the last ``seq`` in its own checkpoint together with
  the model. A settlement exists once per request (UNIQUE), and the checkpointed
  cursor makes the learner apply each one once, including after a restart.
* Searches, in log order, exactly once: :meth:`SQLiteEventLog.searches_since` over ``search_seq``
  (the learner counts each search as an observation the moment it is logged, and credits its
  positive settlement later: see ``deployments/learner.py``).
* Memory index, exactly once: ``positives_since(cursor("memory"))`` then
  ``set_cursor("memory", last_seq)`` after indexing. A crash between the two
  replays the batch (delivery is at least once), so the consumer is idempotent:
  each click carries its feedback ``seq`` and the memory document keeps the last
  ``seq`` it counted (:mod:`ltrr.strategies.memory`, "Exactly once").

Concurrency: several processes (ingress replicas, the learner) may open the same
file. Every read-modify-write runs in ``BEGIN IMMEDIATE`` under the busy timeout
(``busy_timeout_s``, default :data:`ltrr.constants.SQLITE_BUSY_TIMEOUT_S` = 5 s, below
the client's 10 s deadline, so a write its client gave up on fails instead of
committing later); within a process one connection is shared by threads under a
lock. A write given ``timeout_s`` (a caller's time left) waits for both at most
that long, then fails with :class:`~ltrr.errors.BackendTimeout` having written nothing.

The :class:`EventLog` protocol is what the service and the learner use; SQLite
is the embedded default. A cluster with ingress replicas on several nodes needs
a shared server database behind the same protocol (PostgreSQL is the
recommended one, see README): same tables, ``BIGSERIAL`` seqs assigned under a
table lock (or a single writer) to keep them in commit order.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

from ltrr import constants as C
from ltrr.errors import BackendUnavailable, InvalidRequest, NotFound
from ltrr.eventlog_base import EventLogBase, Query, _check_int, _late
from ltrr.events import EXPIRED, POSITIVE, EventLog, FeedbackEvent, SearchEvent, Settlement
from ltrr.validation import POSITIVE_ACTIONS

__all__ = [
    "EXPIRED",
    "POSITIVE",
    "EventLog",
    "FeedbackEvent",
    "SQLiteEventLog",
    "SearchEvent",
    "Settlement",
    "now",
]

SCHEMA_VERSION = 3
#: Cursor holding how far :meth:`SQLiteEventLog.settle` has scanned the feedback table.
_SETTLE_CURSOR = "_settle"

_V2_TABLES = (
    """CREATE TABLE IF NOT EXISTS searches (
        request_id TEXT PRIMARY KEY,
        ts         REAL NOT NULL,
        query      TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        doc        TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS feedback (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id   TEXT UNIQUE NOT NULL,
        request_id TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        action     TEXT NOT NULL,
        position   INTEGER NOT NULL,
        ts         REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id)",
    "CREATE TABLE IF NOT EXISTS pending (request_id TEXT PRIMARY KEY, ts REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS pending_ts ON pending(ts)",
    """CREATE TABLE IF NOT EXISTS settlements (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT UNIQUE NOT NULL,
        outcome    TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        action     TEXT NOT NULL,
        ts         REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS query_stats (
        query     TEXT PRIMARY KEY,
        searches  INTEGER NOT NULL,
        positives INTEGER NOT NULL,
        last_ts   REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS search_seq (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT UNIQUE NOT NULL)",
)
#: Whether a search's plan was forced by its caller (``SearchEvent.decision.forced``), in SQL.
_FORCED = "COALESCE(json_extract(s.doc, '$.decision.forced'), 0)"
#: v2 -> v3 (and v1 after its own step): number the searches already logged in ts order.
_NUMBER_SEARCHES = (
    "INSERT OR IGNORE INTO search_seq(request_id) SELECT request_id FROM searches ORDER BY ts, request_id"
)

#: v1 -> v2: rebuild feedback with a seq (in ts order); the old index goes with the old table.
_MIGRATE_V1 = (
    "ALTER TABLE feedback RENAME TO feedback_v1",
    _V2_TABLES[1],
    "INSERT INTO feedback(event_id, request_id, entity_id, action, position, ts) "
    "SELECT event_id, request_id, entity_id, action, position, ts FROM feedback_v1 ORDER BY ts, event_id",
    "DROP TABLE feedback_v1",
)


class SQLiteEventLog(EventLogBase):
    """The embedded :class:`EventLog`: one SQLite file in WAL mode, fsync on commit.

    ``feedback_window_s`` bounds how long after a search its feedback is accepted;
    ``reward_window_s`` how long after it a positive action still counts as its
    reward; ``expiry_grace_s`` how much longer :meth:`settle` waits before
    declaring it ``expired`` (see the module docstring). ``busy_timeout_s`` is how long a write
    waits for another connection's write lock (SQLite's busy timeout).
    """

    _MARK = "?"

    def __init__(
        self,
        path: str | Path,
        *,
        feedback_window_s: float = 86400.0,
        reward_window_s: float = 600.0,
        positive_actions: Iterable[str] = POSITIVE_ACTIONS,
        expiry_grace_s: float = 60.0,
        busy_timeout_s: float = C.SQLITE_BUSY_TIMEOUT_S,
    ) -> None:
        self._set_windows(feedback_window_s, reward_window_s, positive_actions, expiry_grace_s, busy_timeout_s)
        self._in_positive = f"({','.join('?' * len(self.positive_actions))})"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Writes and reads use separate connections, so a read (query_stats on the search path) never waits
        # behind a write that waits for SQLite's write lock; WAL readers see the last commit and block no one.
        self._lock = threading.Lock()
        self._rlock = threading.Lock()
        self._busy_ms = round(self.busy_timeout_s * 1000)  # the write connection's busy timeout now
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, timeout=self.busy_timeout_s, isolation_level=None
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
            self._rdb = sqlite3.connect(
                str(self.path), check_same_thread=False, timeout=self.busy_timeout_s, isolation_level=None
            )
            self._rdb.execute("PRAGMA query_only=ON")
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        with self._tx() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise ValueError(
                    f"`path` {str(self.path)!r} has event-log schema v{version}; this code reads v{SCHEMA_VERSION}"
                )
            has_v1 = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='feedback'").fetchone()
            if has_v1:
                for stmt in _MIGRATE_V1:
                    db.execute(stmt)
            for stmt in _V2_TABLES:
                db.execute(stmt)
            db.execute(_NUMBER_SEARCHES)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _tx(self, timeout_s: float | None = None) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: takes the write lock up front (waiting up to the busy timeout).

        A SQLite failure (the lock still held after the timeout, a full disk) is raised as
        :class:`~ltrr.errors.BackendUnavailable` (gRPC ``UNAVAILABLE``): nothing was committed,
        so nothing was acknowledged, and the caller may retry.

        ``timeout_s`` (a caller's time left, None for no deadline) bounds the whole wait, for this
        process's other writers and then for SQLite's write lock: past it the call raises
        :class:`~ltrr.errors.BackendTimeout` (``DEADLINE_EXCEEDED``), having written nothing."""
        start = self._take_write_lock(timeout_s)
        try:
            with _translated("write"):
                wait = self.busy_timeout_s
                if timeout_s is not None:
                    wait = max(0.0, min(wait, timeout_s - (time.monotonic() - start)))
                busy_ms = round(wait * 1000)
                if busy_ms != self._busy_ms:
                    self._db.execute(f"PRAGMA busy_timeout={busy_ms}")
                    self._busy_ms = busy_ms
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if timeout_s is not None and timeout_s < self.busy_timeout_s and _busy(exc):
                        raise _late(timeout_s) from exc
                    raise
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        finally:
            self._lock.release()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._rlock, _translated("read"):
            yield self._rdb

    def _reads(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        with self._read() as db:
            return [db.execute(sql, params).fetchall() for sql, params in queries]

    @staticmethod
    def _decode_doc(doc: str) -> dict[str, Any]:
        doc_dict: dict[str, Any] = json.loads(doc)
        return doc_dict

    @staticmethod
    def _in_sql(column: str, values: Sequence[str]) -> tuple[str, tuple[object, ...]]:
        return f"{column} IN ({','.join('?' * len(values))})", tuple(values)

    def close(self) -> None:
        with self._lock, self._rlock:
            self._db.close()
            self._rdb.close()

    # -- ingress: searches and feedback ----------------------------------------------------------
    def record_search(self, event: SearchEvent, *, timeout_s: float | None = None) -> None:
        """Store ``event`` (replacing an earlier doc with the same ``request_id``) and mark it pending.

        Only the first write of a request id makes it pending, so a rewrite never settles it twice.
        ``timeout_s`` bounds the wait for the write lock (:class:`~ltrr.errors.BackendTimeout` past it).
        """
        doc = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
        row = (event.ts, event.query, event.user_id, doc, event.request_id)
        with self._tx(timeout_s) as db:
            if db.execute("SELECT 1 FROM searches WHERE request_id=?", (event.request_id,)).fetchone():
                db.execute("UPDATE searches SET ts=?, query=?, user_id=?, doc=? WHERE request_id=?", row)
                db.execute("UPDATE pending SET ts=? WHERE request_id=?", (event.ts, event.request_id))
            else:
                db.execute("INSERT INTO searches(ts, query, user_id, doc, request_id) VALUES (?,?,?,?,?)", row)
                db.execute("INSERT INTO pending(request_id, ts) VALUES (?,?)", (event.request_id, event.ts))
                db.execute("INSERT INTO search_seq(request_id) VALUES (?)", (event.request_id,))

    def record_feedback(self, event: FeedbackEvent, *, timeout_s: float | None = None) -> bool:
        """Store ``event`` durably; return True if its ``event_id`` was already stored.

        Raises :class:`NotFound` for an unknown or expired ``request_id`` and
        :class:`InvalidRequest` when an ``event_id`` is reused for a different event.
        ``timeout_s`` bounds the wait for the write lock (:class:`~ltrr.errors.BackendTimeout` past it).
        """
        with self._tx(timeout_s) as db:
            row = db.execute(
                "SELECT request_id, entity_id, action FROM feedback WHERE event_id=?", (event.event_id,)
            ).fetchone()
            if row is not None:
                if tuple(row) != (event.request_id, event.entity_id, event.action):
                    raise InvalidRequest("event_id", f"{event.event_id!r} was already used for a different event")
                return True
            srow = db.execute("SELECT ts FROM searches WHERE request_id=?", (event.request_id,)).fetchone()
            if srow is None:
                raise NotFound(f"request_id: unknown request {event.request_id!r}")
            if event.ts - float(srow[0]) > self.feedback_window_s:
                raise NotFound(
                    f"request_id: request {event.request_id!r} expired "
                    f"(feedback is accepted for {self.feedback_window_s:.0f} s)"
                )
            db.execute(
                "INSERT INTO feedback(event_id, request_id, entity_id, action, position, ts) VALUES (?,?,?,?,?,?)",
                (event.event_id, event.request_id, event.entity_id, event.action, event.position, event.ts),
            )
        return False

    # -- learner: settlements, positives, cursors ------------------------------------------------
    def settle(self, now_ts: float | None = None, *, limit: int = 10_000) -> list[Settlement]:
        """Settle up to ``limit`` pending searches as of ``now_ts`` (default: the clock); return the new settlements.

        Idempotent: a settled search leaves ``pending`` in the same transaction, and
        ``settlements.request_id`` is UNIQUE. SQLite's write lock is held for the whole call
        (40-100 us per settlement on 2 cores, ``scripts/bench_eventlog.py``), and ingress writes
        wait for it: next to live traffic, call it often with a ``limit`` of about 1000.
        """
        t = self._settle_time(now_ts, limit)
        w = self.reward_window_s
        acts = self.positive_actions
        with self._tx() as db:
            # 1. Positives among the feedback committed since the last scan, lowest seq first.
            scanned = self._cursor(db, _SETTLE_CURSOR)
            top = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM feedback").fetchone()[0])
            rows = db.execute(
                f"SELECT f.seq, f.request_id, s.query, {_FORCED} FROM feedback f "
                "JOIN pending p ON p.request_id = f.request_id JOIN searches s ON s.request_id = f.request_id "
                f"WHERE f.seq > ? AND f.seq <= ? AND f.action IN {self._in_positive} AND f.ts <= p.ts + ? "
                "ORDER BY f.seq",
                (scanned, top, *acts, w),
            )
            chosen, top = self._first_positives(rows, limit, top)
            rows.close()
            if top != scanned:
                db.execute(
                    "INSERT INTO cursors(name, seq) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seq=excluded.seq",
                    (_SETTLE_CURSOR, top),
                )
            db.executemany("DELETE FROM pending WHERE request_id=?", [(c[0],) for c in chosen])
            # 2. Old pending searches: a qualifying positive (if the scan missed it) or expired.
            if len(chosen) < limit:
                old = db.execute(
                    "SELECT p.request_id, s.query, (SELECT f.seq FROM feedback f WHERE f.request_id = p.request_id "
                    f"AND f.action IN {self._in_positive} AND f.ts <= p.ts + ? ORDER BY f.seq LIMIT 1), {_FORCED} "
                    "FROM pending p JOIN searches s ON s.request_id = p.request_id "
                    "WHERE p.ts < ? ORDER BY p.ts LIMIT ?",
                    (*acts, w, t - w - self.expiry_grace_s, limit - len(chosen)),
                ).fetchall()
                db.executemany("DELETE FROM pending WHERE request_id=?", [(r[0],) for r in old])
                chosen += [(rid, q, None if fseq is None else int(fseq), bool(f)) for rid, q, fseq, f in old]
            out = [self._insert_settlement(db, rid, fseq, t) for rid, _, fseq, _ in chosen]
            db.executemany(
                "INSERT INTO query_stats(query, searches, positives, last_ts) VALUES (?,?,?,?) "
                "ON CONFLICT(query) DO UPDATE SET searches = searches + excluded.searches, "
                "positives = positives + excluded.positives, last_ts = max(last_ts, excluded.last_ts)",
                self._query_stats_rows(chosen, t),
            )
        return out

    @staticmethod
    def _insert_settlement(db: sqlite3.Connection, rid: str, fseq: int | None, t: float) -> Settlement:
        outcome: Literal["positive", "expired"] = EXPIRED
        entity_id = action = ""
        if fseq is not None:
            entity_id, action = db.execute("SELECT entity_id, action FROM feedback WHERE seq=?", (fseq,)).fetchone()
            outcome = POSITIVE
        cur = db.execute(
            "INSERT INTO settlements(request_id, outcome, entity_id, action, ts) VALUES (?,?,?,?,?)",
            (rid, outcome, entity_id, action, t),
        )
        assert cur.lastrowid is not None
        return Settlement(int(cur.lastrowid), rid, outcome, entity_id, action, t)

    def prune(
        self,
        *,
        before_ts: float,
        through_search_seq: int,
        through_settlement_seq: int,
        through_feedback_seq: int,
        keep_newest: int,
        limit: int = 5_000,
    ) -> int:
        """Delete up to ``limit`` old searches with their feedback and settlements; return how many.

        A search goes only if it was logged before ``before_ts``, its ``search_seq`` is at most
        ``through_search_seq`` and outside the newest ``keep_newest``, it is settled with a settlement
        ``seq`` at most ``through_settlement_seq``, and none of its feedback has a ``seq`` above
        ``through_feedback_seq``: every consumer's cursor has passed it. Sequence numbers are
        AUTOINCREMENT, so deleting rows never makes one be reused. ``query_stats`` is kept."""
        self._check_prune(keep_newest, limit)
        with self._tx() as db:
            top = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM search_seq").fetchone()[0])
            doomed = db.execute(
                self._prunable_sql(),
                (before_ts, through_search_seq, top - keep_newest, through_settlement_seq, through_feedback_seq, limit),
            ).fetchall()
            for table in ("feedback", "settlements", "search_seq", "searches"):
                db.executemany(f"DELETE FROM {table} WHERE request_id = ?", doomed)
        if doomed:
            with _translated("checkpoint"), self._lock:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # let the WAL's pages be reused
        return len(doomed)

    @staticmethod
    def _cursor(db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT seq FROM cursors WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, seq: int) -> None:
        """Store consumer ``name``'s position durably (it may move back, to replay)."""
        self._check_cursor_name(name)
        _check_int("seq", seq, 0, 2**63 - 1)
        with self._tx() as db:
            db.execute(
                "INSERT INTO cursors(name, seq) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seq=excluded.seq",
                (name, seq),
            )


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise BackendUnavailable(f"event log {what} failed: {exc}") from exc


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (the busy timeout ran out)."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


def now() -> float:
    return time.time()
