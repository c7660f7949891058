"""Which event log a process opens, and moving a SQLite log to PostgreSQL.

:func:`open_event_log` returns a :class:`~ltrr.eventlog_pg.PostgresEventLog` when a DSN is configured,
else the :class:`~ltrr.eventlog.SQLiteEventLog` file ``events_path``. The DSN is ``$LTRR_EVENTS_DSN``
when that is set and non-empty (a Kubernetes Secret supplies it, password included), else the config's
``events_dsn``. The password is never logged: what is shown is :func:`~ltrr.eventlog_pg.redact_dsn`'s.

:func:`copy_sqlite_to_postgres` (``python -m ltrr.eventlog_pg migrate``, ``ltrr migrate-events``) copies
every table of a v3 SQLite log (read-only, from one snapshot) into an empty PostgreSQL log in one
transaction, holding every advisory lock of the log so no writer interleaves: seq values are kept, each
sequence is moved past the largest seq the SQLite file ever handed out (``sqlite_sequence``, so a pruned
seq is not handed out again), and the row counts of both sides are compared at the end.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Final

import psycopg

from ltrr.config import AppConfig
from ltrr.errors import Aborted, BackendUnavailable, ConfigError
from ltrr.eventlog import SCHEMA_VERSION, SQLiteEventLog
from ltrr.eventlog_pg import ADVISORY_LOCKS, TABLES, PostgresEventLog, redact_dsn

log = logging.getLogger("ltrr.eventlog")

#: The environment variable that, set and non-empty, overrides ``AppConfig.events_dsn``.
DSN_ENV: Final = "LTRR_EVENTS_DSN"
#: Every event log class: what a consumer that takes "an event log" accepts.
EVENT_LOG_TYPES: Final = (SQLiteEventLog, PostgresEventLog)
AnyEventLog = SQLiteEventLog | PostgresEventLog

#: The columns copied per table, in :data:`~ltrr.eventlog_pg.TABLES` order.
_COLUMNS: Final = {
    "searches": ("request_id", "ts", "query", "user_id", "doc"),
    "search_seq": ("seq", "request_id"),
    "feedback": ("seq", "event_id", "request_id", "entity_id", "action", "position", "ts"),
    "pending": ("request_id", "ts"),
    "settlements": ("seq", "request_id", "outcome", "entity_id", "action", "ts"),
    "query_stats": ("query", "searches", "positives", "last_ts"),
    "cursors": ("name", "seq"),
}
_SEQ_TABLES: Final = ("search_seq", "feedback", "settlements")
_PROGRESS_EVERY: Final = 50_000


def events_dsn(app: AppConfig) -> str:
    """The PostgreSQL DSN to use: ``$LTRR_EVENTS_DSN`` if set and non-empty, else ``app.events_dsn`` ("" for SQLite)."""
    return os.environ.get(DSN_ENV, "").strip() or app.events_dsn.strip()


def open_event_log(app: AppConfig, **kw: Any) -> AnyEventLog:
    """The event log ``app`` configures, opened with the keyword arguments both logs take
    (``feedback_window_s``, ``reward_window_s``, ``positive_actions``, ...)."""
    dsn = events_dsn(app)
    if not dsn:
        return SQLiteEventLog(app.events_path, **kw)
    where = DSN_ENV if os.environ.get(DSN_ENV, "").strip() else "events_dsn"
    try:
        events = PostgresEventLog(dsn, **kw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    log.info("event log: PostgreSQL %s (from %s)", events.dsn, where)
    return events


def copy_sqlite_to_postgres(
    sqlite_path: str | Path, dsn: str, *, force: bool = False, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Copy the SQLite event log at ``sqlite_path`` into the PostgreSQL one at ``dsn`` (module docstring);
    return the rows copied per table. A target with any row is refused (:class:`ValueError`) unless
    ``force``, which empties it first. Raises :class:`~ltrr.errors.Aborted` if the counts differ after."""
    say = progress or (lambda _: None)
    path = Path(sqlite_path)
    if not path.is_file():
        raise ValueError(f"`sqlite` {str(path)!r}: no such file")
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        src.execute("BEGIN")  # one snapshot for the copy and the check
        version = int(src.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"`sqlite` {str(path)!r} has event-log schema v{version}; open it once with this ltrr "
                f"(SQLiteEventLog upgrades it in place to v{SCHEMA_VERSION}), then migrate"
            )
        PostgresEventLog(dsn).close()  # creates the schema if the database is empty
        try:
            copied = _copy_into(src, dsn, force, say)
            target = _counts(dsn)
        except psycopg.Error as exc:
            raise BackendUnavailable(f"copy into {redact_dsn(dsn)} failed: {' '.join(str(exc).split())}") from exc
        source = {t: int(src.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES}
    finally:
        src.close()
    if target != source:
        diff = ", ".join(f"{t} {source[t]} -> {target[t]}" for t in TABLES if source[t] != target[t])
        raise Aborted(f"copied and committed, but the row counts differ: {diff}")
    say(f"verified: the row counts of all {len(TABLES)} tables are equal ({sum(source.values())} rows)")
    return copied


def _copy_into(src: sqlite3.Connection, dsn: str, force: bool, say: Callable[[str], None]) -> dict[str, int]:
    """Every table of ``src`` into ``dsn`` in one transaction holding the log's locks; the sequences moved on."""
    with psycopg.connect(dsn) as pg, pg.cursor() as cur:
        cur.execute("SET synchronous_commit = on")
        for name in ("schema", *_SEQ_TABLES):
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCKS[name])
        held = {t: n for t in TABLES if (n := _count(cur, t))}
        if held and not force:
            rows = ", ".join(f"{t} {n}" for t, n in held.items())
            raise ValueError(f"target {redact_dsn(dsn)} is not empty ({rows} rows); --force replaces it")
        if held:
            cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
            say(f"emptied the target ({sum(held.values())} rows)")
        copied = {t: _copy_table(src, cur, t, say) for t in TABLES}
        for table in _SEQ_TABLES:
            top = max(_max_seq(cur, table), _sqlite_sequence(src, table))
            cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'seq'), %s, %s)", (table, max(top, 1), top > 0))
            say(f"{table}: next seq {top + 1}")
        pg.commit()
    return copied


def _count(cur: psycopg.Cursor[Any], table: str) -> int:
    row = cur.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _max_seq(cur: psycopg.Cursor[Any], table: str) -> int:
    row = cur.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _sqlite_sequence(src: sqlite3.Connection, table: str) -> int:
    """The largest seq SQLite's AUTOINCREMENT ever handed out in ``table`` (0 if none)."""
    row = src.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row else 0


def _copy_table(src: sqlite3.Connection, cur: psycopg.Cursor[Any], table: str, say: Callable[[str], None]) -> int:
    cols = ", ".join(_COLUMNS[table])
    n = 0
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in src.execute(f"SELECT {cols} FROM {table}"):
            copy.write_row(row)
            n += 1
            if n % _PROGRESS_EVERY == 0:
                say(f"{table}: {n} rows")
    say(f"{table}: {n} rows copied")
    return n


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as pg, pg.cursor() as cur:
        return {t: _count(cur, t) for t in TABLES}
