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
from ltrr.errors import ConfigError
from ltrr.eventlog import SCHEMA_VERSION, SQLiteEventLog
from ltrr.eventlog_pg import ADVISORY_LOCKS, TABLES, PostgresEventLog
from ltrr.pgmigrate import copy_sqlite

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
    """Copy the SQLite event log at ``sqlite_path`` into the PostgreSQL one at ``dsn`` (module docstring,
    :func:`ltrr.pgmigrate.copy_sqlite`); return the rows copied per table. A target with any row is refused
    (:class:`ValueError`) unless ``force``, which empties it first. Raises :class:`~ltrr.errors.Aborted` if the
    counts differ after."""
    return copy_sqlite(
        sqlite_path,
        dsn,
        force=force,
        progress=progress,
        tables={t: (t, _COLUMNS[t]) for t in TABLES},
        locks=[ADVISORY_LOCKS[name] for name in ("schema", *_SEQ_TABLES)],
        check=_check_version,
        create=lambda d: PostgresEventLog(d).close(),  # creates the schema if the database is empty
        occupied="is not empty",
        differs="the row counts differ",
        verified="verified: the row counts of all {n} tables are equal ({rows} rows)",
        after_copy=_move_sequences,
    )


def _check_version(src: sqlite3.Connection, path: Path) -> None:
    version = int(src.execute("PRAGMA user_version").fetchone()[0])
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"`sqlite` {str(path)!r} has event-log schema v{version}; open it once with this ltrr "
            f"(SQLiteEventLog upgrades it in place to v{SCHEMA_VERSION}), then migrate"
        )


def _move_sequences(src: sqlite3.Connection, cur: psycopg.Cursor[Any], say: Callable[[str], None]) -> None:
    """Each seq table's sequence past the largest seq the SQLite file ever handed out."""
    for table in _SEQ_TABLES:
        top = max(_max_seq(cur, table), _sqlite_sequence(src, table))
        cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'seq'), %s, %s)", (table, max(top, 1), top > 0))
        say(f"{table}: next seq {top + 1}")


def _max_seq(cur: psycopg.Cursor[Any], table: str) -> int:
    row = cur.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _sqlite_sequence(src: sqlite3.Connection, table: str) -> int:
    """The largest seq SQLite's AUTOINCREMENT ever handed out in ``table`` (0 if none)."""
    row = src.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row else 0
