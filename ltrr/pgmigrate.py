"""Copying a SQLite store into its PostgreSQL one: the steps the event log's migration
(:func:`ltrr.event_store.copy_sqlite_to_postgres`) and the catalog's
(:func:`ltrr.catalog.store_pg.copy_sqlite_catalog`) share.

:func:`copy_sqlite` opens the SQLite file read-only and reads it in one snapshot (the copy and the check
see the same rows), has the caller check it and create the target schema, then copies every table in
one PostgreSQL transaction holding the given advisory locks, so no writer interleaves. A target with
any row is refused (:class:`ValueError`) unless ``force``, which empties it first. After the commit the
row counts of both sides, and the largest seq of the tables named, are compared
(:class:`~ltrr.errors.Aborted` if they differ). A server failure during the copy is
:class:`~ltrr.errors.BackendUnavailable`, its message without the DSN's password.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable, Final, Iterable, Mapping, Sequence

import psycopg

from ltrr.errors import Aborted, BackendUnavailable
from ltrr.eventlog_pg import Cursor, _one, redact_dsn

__all__ = ["copy_sqlite"]

Say = Callable[[str], None]
#: Each SQLite table, in copy order, and its PostgreSQL table with the columns copied (in this order).
Tables = Mapping[str, tuple[str, Sequence[str]]]

_PROGRESS_EVERY: Final = 50_000


def copy_sqlite(
    sqlite_path: str | Path,
    dsn: str,
    *,
    force: bool,
    progress: Say | None,
    tables: Tables,
    locks: Iterable[tuple[int, int]],
    check: Callable[[sqlite3.Connection, Path], None],
    create: Callable[[str], None],
    occupied: str,
    differs: str,
    verified: str,
    max_seq_of: Sequence[str] = (),
    after_copy: Callable[[sqlite3.Connection, Cursor, Say], None] | None = None,
) -> dict[str, int]:
    """Copy the SQLite file at ``sqlite_path`` into the database at ``dsn`` (module docstring); return the
    rows copied per SQLite table.

    ``check(src, path)`` raises :class:`ValueError` for a file that is not what it should be;
    ``create(dsn)`` creates the target schema if there is none. The copy takes ``locks``
    (``pg_advisory_xact_lock(class, key)``, in this order) first; ``after_copy(src, cur, say)`` runs in its
    transaction before the commit. The messages: ``target <dsn> {occupied} (<rows> rows); --force replaces
    it`` for a held target, ``copied and committed, but {differs}: <diff>`` for a mismatch and ``verified``
    (``str.format``-ed with ``n``, the number of tables, and ``rows``, the rows copied) when all is equal."""
    say = progress or (lambda _: None)
    path = Path(sqlite_path)
    if not path.is_file():
        raise ValueError(f"`sqlite` {str(path)!r}: no such file")
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        src.execute("BEGIN")  # one snapshot for the copy and the check
        check(src, path)
        create(dsn)
        try:
            copied = _copy_into(src, dsn, tables, locks, force, occupied, after_copy, say)
            with psycopg.connect(dsn, autocommit=True) as pg, pg.cursor() as cur:
                target = _summary(lambda sql: int(_one(cur.execute(sql))), tables, max_seq_of, pg_names=True)
        except psycopg.Error as exc:
            raise BackendUnavailable(f"copy into {redact_dsn(dsn)} failed: {' '.join(str(exc).split())}") from exc
        source = _summary(lambda sql: int(src.execute(sql).fetchone()[0]), tables, max_seq_of, pg_names=False)
    finally:
        src.close()
    if target != source:
        diff = ", ".join(f"{k} {source[k]} -> {target[k]}" for k in source if source[k] != target[k])
        raise Aborted(f"copied and committed, but {differs}: {diff}")
    say(verified.format(n=len(tables), rows=sum(source[t] for t in tables)))
    return copied


def _copy_into(
    src: sqlite3.Connection,
    dsn: str,
    tables: Tables,
    locks: Iterable[tuple[int, int]],
    force: bool,
    occupied: str,
    after_copy: Callable[[sqlite3.Connection, Cursor, Say], None] | None,
    say: Say,
) -> dict[str, int]:
    """Every table of ``src`` into ``dsn`` in one transaction holding ``locks``."""
    with psycopg.connect(dsn) as pg, pg.cursor() as cur:
        cur.execute("SET synchronous_commit = on")
        for key in locks:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", key)
        held = {t: n for t, (pt, _) in tables.items() if (n := int(_one(cur.execute(f"SELECT COUNT(*) FROM {pt}"))))}
        if held and not force:
            rows = ", ".join(f"{t} {n}" for t, n in held.items())
            raise ValueError(f"target {redact_dsn(dsn)} {occupied} ({rows} rows); --force replaces it")
        if held:
            cur.execute(f"TRUNCATE {', '.join(pt for pt, _ in tables.values())} RESTART IDENTITY")
            say(f"emptied the target ({sum(held.values())} rows)")
        copied = {t: _copy_table(src, cur, t, pt, cols, say) for t, (pt, cols) in tables.items()}
        if after_copy is not None:
            after_copy(src, cur, say)
        pg.commit()
    return copied


def _copy_table(
    src: sqlite3.Connection, cur: Cursor, table: str, pg_table: str, columns: Sequence[str], say: Say
) -> int:
    cols = ", ".join(columns)
    n = 0
    with cur.copy(f"COPY {pg_table} ({cols}) FROM STDIN") as copy:
        for row in src.execute(f"SELECT {cols} FROM {table}"):
            copy.write_row(row)
            n += 1
            if n % _PROGRESS_EVERY == 0:
                say(f"{table}: {n} rows")
    say(f"{table}: {n} rows copied")
    return n


def _summary(one: Callable[[str], int], tables: Tables, max_seq_of: Sequence[str], *, pg_names: bool) -> dict[str, int]:
    """Row counts per SQLite table name, and ``max seq of <table>`` for each of ``max_seq_of``, read with
    ``one(sql)`` from the PostgreSQL tables (``pg_names``) or the SQLite ones."""
    name = {t: pt if pg_names else t for t, (pt, _) in tables.items()}
    out = {t: one(f"SELECT COUNT(*) FROM {name[t]}") for t in tables}
    for t in max_seq_of:
        out[f"max seq of {t}"] = one(f"SELECT COALESCE(MAX(seq), 0) FROM {name[t]}")
    return out
