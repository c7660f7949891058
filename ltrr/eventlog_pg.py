"""The event log on a PostgreSQL server: :class:`PostgresEventLog`, beside the embedded SQLite one.

What a cluster with ingress replicas on several nodes uses (issue 12, "State off the node"): every
replica and the learner open the same database. Every public method of
:class:`~ltrr.eventlog.SQLiteEventLog` is here with the same semantics, read its module docstring for
the settlement rule, the delivery guarantees and retention; this docstring says how each holds on
PostgreSQL (psycopg 3).

Tables (schema v3, the number in ``schema_version``): those of the SQLite log, with ``BIGSERIAL``
seqs, ``DOUBLE PRECISION`` times and the search as ``JSONB`` (which keeps no key order; every reader
looks keys up by name)::

    searches, search_seq, feedback, pending, settlements, query_stats, cursors, schema_version

Opening migrates the schema with ``CREATE TABLE IF NOT EXISTS`` in one transaction under
``pg_advisory_xact_lock`` (:data:`ADVISORY_LOCKS` ``schema``), so processes that open an empty database
at once neither fail nor race; a database of a newer schema is refused.

Durability. Each session sets ``synchronous_commit = on`` explicitly (whatever the server's default):
a commit returns once its WAL is flushed, and feedback is acknowledged only after its commit
returned, so an acknowledged event survives a crash of the server. Each also sets ``READ COMMITTED``
(whatever the server's ``default_transaction_isolation``): each statement sees every commit before it
began, which :mod:`ltrr.catalog.store_pg` numbers its rows by. Idempotency: the insert is
``INSERT ... ON CONFLICT (event_id) DO NOTHING`` after a look-up of the ``event_id``; a repeat is
reported as ``duplicate=True``, an ``event_id`` reused for another event is rejected
(:class:`~ltrr.errors.InvalidRequest`).

Sequence numbers in commit order. A ``BIGSERIAL`` hands out values when rows are inserted, not when
they commit: two writers may take 5 and 6, and 6 may commit first, so a reader that has passed 6 would
never see 5. Each insert that takes a seq therefore runs under a transaction-level advisory lock per
table (``pg_advisory_xact_lock``, :data:`ADVISORY_LOCKS`), taken at the start of its transaction and
released only after the commit is visible: the next writer takes its seq after every smaller one
committed, so a reader that has seen every row up to ``s`` never later sees a new row ``<= s``, with
any number of writer processes. It is simple and plainly correct, and the writes it serialises are
short (one row, then the commit's WAL flush, which a writer waits for anyway). The alternative, free
inserts with readers stopping below the oldest transaction still in flight
(``pg_snapshot_xmin(pg_current_snapshot())`` joined to each row's ``xmin``), lets writers run in
parallel but puts that reasoning, and xid wraparound, in every reader. ``search_seq``, ``feedback``
and ``settlements`` have a lock each, so searches, feedback and settling never wait for one another.
``settle`` holds the ``settlements`` lock for its whole transaction, so two processes settling at once
take turns and each search is settled exactly once (``settlements.request_id`` is also UNIQUE);
``prune`` takes the ``search_seq`` and ``feedback`` locks (in that order, the only place that takes two)
so no search or feedback is written beside the rows it deletes. A seq is never handed out twice, but
seqs may skip values: an insert rolled back, or up to 32 after a crash of the server (a sequence logs
its values ahead); consumers only compare them.

Timeouts and errors. A session waits ``busy_timeout_s`` at most for a lock (``lock_timeout``; 0 is
taken as 1 ms, as PostgreSQL reads 0 as "no limit"). A write given ``timeout_s`` (its caller's time
left) also sets ``lock_timeout`` and ``statement_timeout`` to the time left with ``SET LOCAL`` and
checks the deadline once more before ``COMMIT``: past it the call raises
:class:`~ltrr.errors.BackendTimeout`, having written nothing. Any other server failure (unreachable,
restarted, a lock past ``busy_timeout_s``) is :class:`~ltrr.errors.BackendUnavailable`; nothing was
acknowledged, the caller may retry. Messages never hold the DSN's password.

Threads and reconnects: like the SQLite log, one write connection and one read connection per
instance, each under a lock (reads never wait behind a write). A connection found broken (the server
restarted) is replaced by a new one on the next call; a call whose connection breaks before its
``COMMIT`` was sent (nothing was written) is run once more on a new connection, so a call right after
a restart succeeds. A break during ``COMMIT`` is reported (the outcome is unknown; feedback is
idempotent, so the caller's retry is safe).

Moving a SQLite log here: ``python -m ltrr.eventlog_pg migrate --sqlite PATH --dsn DSN``
(:func:`ltrr.event_store.copy_sqlite_to_postgres`). :func:`ltrr.event_store.open_event_log` picks the
backend from the config.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from typing import Any, Callable, ClassVar, Final, Iterable, Literal, Mapping, Sequence, TypeVar

import psycopg
from psycopg import conninfo
from psycopg.types.json import Jsonb

from ltrr import constants as C
from ltrr.errors import BackendUnavailable, InvalidRequest, LtrrError, NotFound
from ltrr.eventlog import _SETTLE_CURSOR, SCHEMA_VERSION
from ltrr.eventlog_base import EventLogBase, Query, _check_int, _late, take_lock
from ltrr.events import EXPIRED, POSITIVE, FeedbackEvent, SearchEvent, Settlement
from ltrr.validation import POSITIVE_ACTIONS

__all__ = ["ADVISORY_LOCKS", "PgSessions", "PostgresEventLog", "redact_dsn"]

T = TypeVar("T")
Cursor = psycopg.Cursor[Any]

#: ``pg_advisory_xact_lock(class, key)`` of each lock: the class is "ltrr" in ASCII, one key per table.
ADVISORY_LOCKS: Final = {
    "schema": (0x6C747272, 0),
    "search_seq": (0x6C747272, 1),
    "feedback": (0x6C747272, 2),
    "settlements": (0x6C747272, 3),
}
TABLES: Final = ("searches", "search_seq", "feedback", "pending", "settlements", "query_stats", "cursors")

_DDL = (
    """CREATE TABLE IF NOT EXISTS searches (
        request_id TEXT PRIMARY KEY,
        ts         DOUBLE PRECISION NOT NULL,
        query      TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        doc        JSONB NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS search_seq (seq BIGSERIAL PRIMARY KEY, request_id TEXT UNIQUE NOT NULL)",
    """CREATE TABLE IF NOT EXISTS feedback (
        seq        BIGSERIAL PRIMARY KEY,
        event_id   TEXT UNIQUE NOT NULL,
        request_id TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        action     TEXT NOT NULL,
        position   INTEGER NOT NULL,
        ts         DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id)",
    "CREATE TABLE IF NOT EXISTS pending (request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS pending_ts ON pending(ts)",
    """CREATE TABLE IF NOT EXISTS settlements (
        seq        BIGSERIAL PRIMARY KEY,
        request_id TEXT UNIQUE NOT NULL,
        outcome    TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        action     TEXT NOT NULL,
        ts         DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS query_stats (
        query     TEXT PRIMARY KEY,
        searches  BIGINT NOT NULL,
        positives BIGINT NOT NULL,
        last_ts   DOUBLE PRECISION NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
)
#: Whether a search's plan was forced by its caller (``SearchEvent.decision.forced``), in SQL.
_FORCED = "COALESCE(s.doc #> '{decision,forced}' IN ('true', '1'), false)"
_UPSERT_CURSOR = (
    "INSERT INTO cursors(name, seq) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq"
)


def redact_dsn(dsn: str) -> str:
    """``dsn`` as ``key=value`` pairs with the password replaced by ``***`` (what may be shown or logged)."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<a DSN that does not parse>"
    if params.get("password"):
        params["password"] = "***"
    return conninfo.make_conninfo("", **params)


def _check_dsn(dsn: str) -> dict[str, Any]:
    if isinstance(dsn, str) and dsn.strip():
        try:
            return conninfo.conninfo_to_dict(dsn)
        except psycopg.Error:
            pass
    shown = redact_dsn(dsn) if isinstance(dsn, str) and dsn.strip() else repr(dsn)
    raise ValueError(f"`dsn` must be a PostgreSQL connection string (key=value or postgresql:// URI), got {shown}")


class PgSessions:
    """One write session and one read session on a PostgreSQL database, each under a lock: the connections,
    transactions, retries and error messages of the module docstring ("Timeouts and errors", "Threads and
    reconnects"), which :class:`PostgresEventLog` and :class:`ltrr.catalog.store_pg.PgCatalogStore` share.

    A subclass sets ``busy_timeout_s``, calls :meth:`_open_sessions` in its ``__init__`` (nothing connects
    before the first call), or :meth:`_open_and_migrate` to also create its schema, and runs its SQL through
    :meth:`_write` and :meth:`_read`. ``_WHAT`` names the
    store in error messages ("event log write failed: ..."); ``_LOCKS`` are the advisory locks, by name,
    that :meth:`_write` may take."""

    _WHAT: ClassVar[str] = "event log"
    _LOCKS: ClassVar[Mapping[str, tuple[int, int]]] = ADVISORY_LOCKS

    busy_timeout_s: float
    #: The DSN as it may be shown (:func:`redact_dsn`).
    dsn: str

    def _open_sessions(self, dsn: str, application_name: str) -> None:
        """Check ``dsn`` (:class:`ValueError`) and set up the two sessions (``application_name`` unless the DSN
        sets one)."""
        params = _check_dsn(dsn)
        self._dsn = dsn
        self._password = str(params.get("password") or "")
        self.dsn = redact_dsn(dsn)  # what may be shown
        self._busy_ms = max(1, round(self.busy_timeout_s * 1000))
        self._connect_kw: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._connect_kw["connect_timeout"] = max(2, math.ceil(self.busy_timeout_s))
        if "application_name" not in params:
            self._connect_kw["application_name"] = application_name
        self._lock = threading.Lock()
        self._rlock = threading.Lock()
        self._conns: dict[str, psycopg.Connection[Any] | None] = {"write": None, "read": None}
        self._closed = False

    def _open_and_migrate(
        self, dsn: str, application_name: str, *, version_table: str, version: int, ddl: Sequence[str], what: str
    ) -> None:
        """:meth:`_open_sessions`, then bring the schema to ``version`` under the ``schema`` lock: ``version_table``
        created if absent, and ``ddl`` (``CREATE ... IF NOT EXISTS``) run when it holds an older version; a newer
        one is refused (:class:`ValueError`, "``dsn`` ... has ``what`` schema v..."). The sessions are closed if
        this fails."""
        self._open_sessions(dsn, application_name)

        def run(cur: Cursor) -> None:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {version_table} (version INTEGER NOT NULL)")
            found = int(_one(cur.execute(f"SELECT COALESCE(MAX(version), 0) FROM {version_table}")))
            if found == version:
                return
            if found > version:
                raise ValueError(f"`dsn` {self.dsn!r} has {what} schema v{found}; this code reads v{version}")
            for stmt in ddl:
                cur.execute(stmt)
            cur.execute(f"DELETE FROM {version_table}")
            cur.execute(f"INSERT INTO {version_table}(version) VALUES (%s)", (version,))

        try:
            self._write(run, locks=("schema",))
        except BaseException:
            self.close()
            raise

    # -- connections and transactions ----------------------------------------------------------------
    def _connection(self, role: Literal["write", "read"]) -> psycopg.Connection[Any]:
        """This role's connection, opened (again) if there is none or it broke."""
        if self._closed:
            raise BackendUnavailable(f"{self._WHAT} {role} failed: it is closed")
        conn = self._conns[role]
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
            self._conns[role] = None
        conn = psycopg.connect(self._dsn, **self._connect_kw)
        try:
            conn.execute(
                "SELECT set_config('synchronous_commit', 'on', false), set_config('lock_timeout', %s, false), "
                "set_config('default_transaction_read_only', %s, false), "
                "set_config('default_transaction_isolation', 'read committed', false)",
                (f"{self._busy_ms}ms", "on" if role == "read" else "off"),
            )
        except BaseException:
            conn.close()
            raise
        self._conns[role] = conn
        return conn

    def _write(
        self, fn: Callable[[Cursor], T], timeout_s: float | None = None, *, locks: Sequence[str] = ()
    ) -> T:
        """Run ``fn`` in one transaction on the write connection, after taking the advisory ``locks``.

        ``timeout_s`` (the caller's time left, None for no deadline) bounds the wait for this process's
        other writers, the locks and every statement; past it :class:`~ltrr.errors.BackendTimeout`, and
        the transaction is rolled back. A connection that breaks before ``COMMIT`` is replaced and ``fn``
        run once more (module docstring)."""
        start = take_lock(self._lock, timeout_s)
        try:
            for attempt in (1, 2):
                conn: psycopg.Connection[Any] | None = None
                committing = False
                try:
                    conn = self._connection("write")
                    with conn.transaction():
                        cur = conn.cursor()
                        if timeout_s is not None:
                            left_ms = math.floor((timeout_s - (time.monotonic() - start)) * 1000)
                            if left_ms <= 0:
                                raise _late(timeout_s)
                            cur.execute(  # SET LOCAL: this transaction only
                                "SELECT set_config('lock_timeout', %s, true), "
                                "set_config('statement_timeout', %s, true)",
                                (f"{min(left_ms, self._busy_ms)}ms", f"{left_ms}ms"),
                            )
                        for name in locks:
                            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", self._LOCKS[name])
                        out = fn(cur)
                        if timeout_s is not None and time.monotonic() - start >= timeout_s:
                            raise _late(timeout_s)  # its caller gave up: roll back rather than commit
                        committing = True
                    return out
                except psycopg.Error as exc:
                    if attempt == 1 and not committing and conn is not None and conn.broken:
                        continue  # the server went away before COMMIT: nothing was written; once more
                    raise self._translated(exc, "write", timeout_s) from exc
            raise AssertionError("unreachable")
        finally:
            self._lock.release()

    def _read(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn`` on the read connection (each statement sees the last commit); retried once on a new
        connection when the old one broke."""
        with self._rlock:
            for attempt in (1, 2):
                conn: psycopg.Connection[Any] | None = None
                try:
                    conn = self._connection("read")
                    return fn(conn.cursor())
                except psycopg.Error as exc:
                    if attempt == 1 and conn is not None and conn.broken:
                        continue
                    raise self._translated(exc, "read", None) from exc
            raise AssertionError("unreachable")

    def _translated(self, exc: psycopg.Error, what: str, timeout_s: float | None) -> Exception:
        if timeout_s is not None:
            ours = isinstance(exc, psycopg.errors.QueryCanceled) or (
                isinstance(exc, psycopg.errors.LockNotAvailable) and timeout_s < self.busy_timeout_s
            )
            if ours:
                return _late(timeout_s)
        text = " ".join(str(exc).split())  # libpq's messages span lines
        if self._password:
            text = text.replace(self._password, "***")
        return BackendUnavailable(f"{self._WHAT} {what} failed: {text}")

    def close(self) -> None:
        with self._lock, self._rlock:
            self._closed = True
            for role, conn in self._conns.items():
                if conn is not None:
                    conn.close()
                self._conns[role] = None


class PostgresEventLog(EventLogBase, PgSessions):
    """The :class:`~ltrr.events.EventLog` on PostgreSQL (module docstring); the arguments after ``dsn`` are
    those of :class:`~ltrr.eventlog.SQLiteEventLog`, validated the same way. ``busy_timeout_s`` is how long a
    statement waits for a lock (the session's ``lock_timeout``), by default the same 5 s, below the client's
    10 s deadline."""

    _MARK = "%s"
    _BYTE_ORDER = ' COLLATE "C"'

    def __init__(
        self,
        dsn: str,
        *,
        feedback_window_s: float = 86400.0,
        reward_window_s: float = 600.0,
        positive_actions: Iterable[str] = POSITIVE_ACTIONS,
        expiry_grace_s: float = 60.0,
        busy_timeout_s: float = C.SQLITE_BUSY_TIMEOUT_S,
    ) -> None:
        self._set_windows(feedback_window_s, reward_window_s, positive_actions, expiry_grace_s, busy_timeout_s)
        self._open_and_migrate(
            dsn, "ltrr-eventlog", version_table="schema_version", version=SCHEMA_VERSION, ddl=_DDL, what="event-log"
        )

    def __repr__(self) -> str:
        return f"PostgresEventLog({self.dsn!r})"

    def _reads(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        return self._read(lambda cur: [cur.execute(sql, params).fetchall() for sql, params in queries])

    @staticmethod
    def _decode_doc(doc: dict[str, Any]) -> dict[str, Any]:
        return doc  # JSONB comes back as a dict

    @staticmethod
    def _in_sql(column: str, values: Sequence[str]) -> tuple[str, tuple[object, ...]]:
        return f"{column} = ANY(%s)", (list(values),)

    # -- ingress: searches and feedback ----------------------------------------------------------
    def record_search(self, event: SearchEvent, *, timeout_s: float | None = None) -> None:
        """Store ``event`` (replacing an earlier doc with the same ``request_id``) and mark it pending.

        Only the first write of a request id makes it pending and takes a ``search_seq``, so a rewrite never
        settles it twice. ``timeout_s`` bounds the whole write (:class:`~ltrr.errors.BackendTimeout` past it).
        """
        doc = Jsonb(event.to_dict())
        rid = event.request_id

        def run(cur: Cursor) -> None:
            new = cur.execute(  # one round trip: the three inserts happen only if the search is new
                "WITH s AS (INSERT INTO searches(request_id, ts, query, user_id, doc) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (request_id) DO NOTHING RETURNING request_id, ts), "
                "p AS (INSERT INTO pending(request_id, ts) SELECT request_id, ts FROM s) "
                "INSERT INTO search_seq(request_id) SELECT request_id FROM s RETURNING seq",
                (rid, event.ts, event.query, event.user_id, doc),
            ).fetchone()
            if not new:
                cur.execute(
                    "UPDATE searches SET ts = %s, query = %s, user_id = %s, doc = %s WHERE request_id = %s",
                    (event.ts, event.query, event.user_id, doc, rid),
                )
                cur.execute("UPDATE pending SET ts = %s WHERE request_id = %s", (event.ts, rid))

        self._write(run, timeout_s, locks=("search_seq",))

    def record_feedback(self, event: FeedbackEvent, *, timeout_s: float | None = None) -> bool:
        """Store ``event`` durably; return True if its ``event_id`` was already stored.

        Raises :class:`NotFound` for an unknown or expired ``request_id`` and :class:`InvalidRequest` when
        an ``event_id`` is reused for a different event. ``timeout_s`` bounds the whole write
        (:class:`~ltrr.errors.BackendTimeout` past it)."""
        e = event

        def stored(cur: Cursor) -> bool | None:
            """True if ``event_id`` holds this event, None if it is free; raises if it holds another."""
            row = cur.execute(
                "SELECT request_id, entity_id, action FROM feedback WHERE event_id = %s", (e.event_id,)
            ).fetchone()
            if row is None:
                return None
            if tuple(row) != (e.request_id, e.entity_id, e.action):
                raise InvalidRequest("event_id", f"{e.event_id!r} was already used for a different event")
            return True

        def run(cur: Cursor) -> bool:
            if stored(cur):
                return True
            srow = cur.execute("SELECT ts FROM searches WHERE request_id = %s", (e.request_id,)).fetchone()
            if srow is None:
                raise NotFound(f"request_id: unknown request {e.request_id!r}")
            if e.ts - float(srow[0]) > self.feedback_window_s:
                raise NotFound(
                    f"request_id: request {e.request_id!r} expired "
                    f"(feedback is accepted for {self.feedback_window_s:.0f} s)"
                )
            inserted = cur.execute(
                "INSERT INTO feedback(event_id, request_id, entity_id, action, position, ts) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING RETURNING seq",
                (e.event_id, e.request_id, e.entity_id, e.action, e.position, e.ts),
            ).fetchone()
            # Under the lock no one else inserts; a conflict means a writer that does not take it: compare.
            return inserted is None and bool(stored(cur))

        return self._write(run, timeout_s, locks=("feedback",))

    # -- learner: settlements, positives, cursors ------------------------------------------------
    def settle(self, now_ts: float | None = None, *, limit: int = 10_000) -> list[Settlement]:
        """Settle up to ``limit`` pending searches as of ``now_ts`` (default: the clock); return the new settlements.

        The rule and the two steps are :meth:`ltrr.eventlog.SQLiteEventLog.settle`'s. The whole call holds
        the ``settlements`` advisory lock, so concurrent calls (in any process) settle each search once;
        searches and feedback are written meanwhile (they take other locks)."""
        t = self._settle_time(now_ts, limit)
        w = self.reward_window_s
        acts = list(self.positive_actions)

        def run(cur: Cursor) -> list[Settlement]:
            # 1. Positives among the feedback committed since the last scan, lowest seq first. Every seq
            # <= top is committed (seqs are handed out in commit order), so none is ever skipped.
            scanned = _cursor(cur, _SETTLE_CURSOR)
            top = int(_one(cur.execute("SELECT COALESCE(MAX(seq), 0) FROM feedback")))
            rows = cur.execute(
                f"SELECT f.seq, f.request_id, s.query, {_FORCED} FROM feedback f "
                "JOIN pending p ON p.request_id = f.request_id JOIN searches s ON s.request_id = f.request_id "
                "WHERE f.seq > %s AND f.seq <= %s AND f.action = ANY(%s) AND f.ts <= p.ts + %s ORDER BY f.seq",
                (scanned, top, acts, w),
            ).fetchall()
            chosen, top = self._first_positives(rows, limit, top)
            if top != scanned:
                cur.execute(_UPSERT_CURSOR, (_SETTLE_CURSOR, top))
            if chosen:
                cur.execute("DELETE FROM pending WHERE request_id = ANY(%s)", ([c[0] for c in chosen],))
            # 2. Old pending searches: a qualifying positive (if the scan missed it) or expired. Ties in ts
            # go in log order, as SQLite's index on pending(ts) returns them.
            if len(chosen) < limit:
                old = cur.execute(
                    "SELECT p.request_id, s.query, (SELECT f.seq FROM feedback f WHERE f.request_id = p.request_id "
                    f"AND f.action = ANY(%s) AND f.ts <= p.ts + %s ORDER BY f.seq LIMIT 1), {_FORCED} "
                    "FROM pending p JOIN searches s ON s.request_id = p.request_id "
                    "JOIN search_seq q ON q.request_id = p.request_id "
                    "WHERE p.ts < %s ORDER BY p.ts, q.seq LIMIT %s",
                    (acts, w, t - w - self.expiry_grace_s, limit - len(chosen)),
                ).fetchall()
                cur.execute("DELETE FROM pending WHERE request_id = ANY(%s)", ([r[0] for r in old],))
                chosen += [(rid, q, None if fseq is None else int(fseq), bool(f)) for rid, q, fseq, f in old]
            if not chosen:
                return []
            out = self._insert_settlements(cur, [(c[0], c[2]) for c in chosen], t)
            cur.executemany(
                "INSERT INTO query_stats(query, searches, positives, last_ts) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (query) DO UPDATE SET searches = query_stats.searches + EXCLUDED.searches, "
                "positives = query_stats.positives + EXCLUDED.positives, "
                "last_ts = GREATEST(query_stats.last_ts, EXCLUDED.last_ts)",
                self._query_stats_rows(chosen, t),
            )
            return out

        return self._write(run, locks=("settlements",))

    @staticmethod
    def _insert_settlements(cur: Cursor, chosen: list[tuple[str, int | None]], t: float) -> list[Settlement]:
        """Insert one settlement per ``(request_id, deciding feedback seq or None)``, with seqs in this order."""
        deciding = [fseq for _, fseq in chosen if fseq is not None]
        picked = {
            int(seq): (entity, action)
            for seq, entity, action in cur.execute(
                "SELECT seq, entity_id, action FROM feedback WHERE seq = ANY(%s)", (deciding,)
            ).fetchall()
        }
        seqs = sorted(
            int(r[0])
            for r in cur.execute(
                "SELECT nextval(pg_get_serial_sequence('settlements', 'seq')) FROM generate_series(1, %s)",
                (len(chosen),),
            ).fetchall()
        )
        out = []
        for seq, (rid, fseq) in zip(seqs, chosen, strict=True):
            outcome: Literal["positive", "expired"] = EXPIRED if fseq is None else POSITIVE
            entity_id, action = ("", "") if fseq is None else picked[fseq]
            out.append(Settlement(seq, rid, outcome, entity_id, action, t))
        cur.execute(
            "INSERT INTO settlements(seq, request_id, outcome, entity_id, action, ts) "
            "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[])",
            [list(col) for col in zip(*(_settlement_row(s) for s in out), strict=True)],
        )
        return out

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

        The rule is :meth:`ltrr.eventlog.SQLiteEventLog.prune`'s; ``BIGSERIAL`` values are never handed out
        twice, so deleting rows never makes a seq be reused. Runs under the ``search_seq`` and ``feedback``
        locks, so no search is rewritten and no feedback is accepted beside the rows it deletes."""
        self._check_prune(keep_newest, limit)

        def run(cur: Cursor) -> int:
            top = int(_one(cur.execute("SELECT COALESCE(MAX(seq), 0) FROM search_seq")))
            doomed = [
                r[0]
                for r in cur.execute(
                    self._prunable_sql(),
                    (before_ts, through_search_seq, top - keep_newest, through_settlement_seq,
                     through_feedback_seq, limit),  # fmt: skip
                ).fetchall()
            ]
            if doomed:
                for table in ("feedback", "settlements", "search_seq", "searches"):
                    cur.execute(f"DELETE FROM {table} WHERE request_id = ANY(%s)", (doomed,))
            return len(doomed)

        return self._write(run, locks=("search_seq", "feedback"))

    def set_cursor(self, name: str, seq: int) -> None:
        """Store consumer ``name``'s position durably (it may move back, to replay)."""
        self._check_cursor_name(name)
        _check_int("seq", seq, 0, 2**63 - 1)

        def run(cur: Cursor) -> None:
            cur.execute(_UPSERT_CURSOR, (name, seq))

        self._write(run)


def _settlement_row(s: Settlement) -> tuple[int, str, str, str, str, float]:
    return (s.seq, s.request_id, s.outcome, s.entity_id, s.action, s.ts)


def _one(cur: Cursor) -> Any:
    """The single value of a one-row, one-column result."""
    row = cur.fetchone()
    assert row is not None
    return row[0]


def _cursor(cur: Cursor, name: str) -> int:
    row = cur.execute("SELECT seq FROM cursors WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


# -- command line: migrate a SQLite log here -----------------------------------------------------------
def add_migrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sqlite", required=True, help="the SQLite event log to copy (read only)")
    p.add_argument("--dsn", default=None, help="target database (default: $LTRR_EVENTS_DSN; keeps it out of ps)")
    p.add_argument("--force", action="store_true", help="empty a non-empty target first")


def run_migrate(args: argparse.Namespace, copy: Callable[..., object] | None = None) -> int:
    """``migrate``: 0 when copied and verified, 2 for a refused input, 1 when the server or the check failed.
    ``copy(sqlite, dsn, force=, progress=)`` copies (default :func:`ltrr.event_store.copy_sqlite_to_postgres`;
    ``ltrr migrate-catalog`` passes :func:`ltrr.catalog.store_pg.copy_sqlite_catalog`)."""
    from ltrr.event_store import DSN_ENV, copy_sqlite_to_postgres

    dsn = args.dsn or os.environ.get(DSN_ENV, "").strip()
    if not dsn:
        print(f"error: --dsn: no target database (pass --dsn or set {DSN_ENV})", file=sys.stderr)
        return 2
    copy = copy or copy_sqlite_to_postgres
    try:
        copy(args.sqlite, dsn, force=args.force, progress=lambda s: print(s, file=sys.stderr))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LtrrError as exc:  # unreachable server (BackendUnavailable), counts that differ (Aborted)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ltrr.eventlog_pg", description="The PostgreSQL event log.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pm = sub.add_parser("migrate", help="copy a SQLite event log into PostgreSQL, seqs preserved")
    add_migrate_arguments(pm)
    args = p.parse_args(argv)
    return run_migrate(args)


if __name__ == "__main__":
    sys.exit(main())
