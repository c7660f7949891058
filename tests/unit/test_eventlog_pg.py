"""PostgreSQL-only behaviour of the event log, on a real server (tests/fixtures/postgres.py).

The shared behaviour runs on both backends in test_eventlog.py; this file checks what only a server
has: several writer processes at once (seqs in commit order, settle exactly once), the advisory
locks and the caller's deadline, a restart or a crash of the server, the schema table, and the copy
of a SQLite log.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from ltrr.errors import BackendTimeout, BackendUnavailable
from ltrr.eventlog import SQLiteEventLog
from ltrr.eventlog_pg import ADVISORY_LOCKS, TABLES, PostgresEventLog, main, redact_dsn
from ltrr.pgserver import PgServer
from tests.unit.test_eventlog import GUARD_S, fb, search

SPAWN = mp.get_context("spawn")


def hold_lock(dsn: str, name: str) -> psycopg.Connection:
    """Another session that holds advisory lock ``name`` (in an open transaction) until it is closed."""
    conn = psycopg.connect(dsn)
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCKS[name])
    return conn


# -- several writer processes: seqs in commit order --------------------------------------------------
N_WRITES = 120


def _write_many(dsn: str, k: int, go) -> None:
    """Writer ``k``: N_WRITES searches, each clicked; every third also an old search (settled at once)."""
    lg = PostgresEventLog(dsn, reward_window_s=5.0, expiry_grace_s=0.0)
    go.wait(GUARD_S)
    for i in range(N_WRITES):
        lg.record_search(search(f"w{k}-{i}", ts=float(i)))
        lg.record_feedback(fb(f"w{k}-e{i}", f"w{k}-{i}", ts=i + 1.0))
        if i % 3 == 0:
            lg.record_search(search(f"w{k}-old{i}", ts=-1000.0))
    lg.close()


def _settle_until(dsn: str, go, stop, out: str | None = None, limit: int = 9) -> None:
    """Settle as of ts=0 until ``stop`` is set, then once more; write what it settled to ``out``."""
    lg = PostgresEventLog(dsn, reward_window_s=5.0, expiry_grace_s=0.0)
    go.wait(GUARD_S)
    got = []
    while True:
        done = stop.is_set()
        got += [s.to_dict() for s in lg.settle(0.0, limit=limit)]
        if done:
            break
    lg.close()
    if out:
        with open(out, "w") as f:
            json.dump(got, f)


def test_concurrent_writers_hand_out_unique_seqs_and_a_polling_reader_misses_no_row(pg_dsn):
    reader = PostgresEventLog(pg_dsn)
    go, stop = SPAWN.Event(), SPAWN.Event()
    writers = [SPAWN.Process(target=_write_many, args=(pg_dsn, k, go)) for k in range(3)]
    settler = SPAWN.Process(target=_settle_until, args=(pg_dsn, go, stop))
    for p in [*writers, settler]:
        p.start()
    seen: dict[str, list[int]] = {"searches": [], "feedback": [], "settlements": []}

    def poll() -> None:
        """Read each table after the last seq this reader saw, as the learner and the memory do."""
        last = {t: (s[-1] if s else 0) for t, s in seen.items()}
        seen["searches"] += [q for q, _ in reader.searches_since(last["searches"], 50)]
        seen["feedback"] += [q for q, _, _ in reader.positives_since(last["feedback"], 50)]
        seen["settlements"] += [s.seq for s, _ in reader.settlements_since(last["settlements"], 50)]

    go.set()
    polls = 0
    while any(p.is_alive() for p in writers):
        poll()
        polls += 1
    stop.set()
    settler.join(60)
    assert [p.exitcode for p in [*writers, settler]] == [0, 0, 0, 0]
    before = {t: len(s) for t, s in seen.items()}
    while True:  # catch up with what was committed last
        poll()
        if {t: len(s) for t, s in seen.items()} == before:
            break
        before = {t: len(s) for t, s in seen.items()}

    with psycopg.connect(pg_dsn) as conn:
        stored = {
            "searches": [r[0] for r in conn.execute("SELECT seq FROM search_seq ORDER BY seq")],
            "feedback": [r[0] for r in conn.execute("SELECT seq FROM feedback ORDER BY seq")],
            "settlements": [r[0] for r in conn.execute("SELECT seq FROM settlements ORDER BY seq")],
        }
    n_old = len(range(0, N_WRITES, 3))
    assert [len(stored[t]) for t in stored] == [3 * (N_WRITES + n_old), 3 * N_WRITES, 3 * (N_WRITES + n_old)]
    # A reader that only ever asked for rows after the last seq it saw got every row, once, in order:
    # no row committed after the reader passed its seq (it would be missing here).
    assert seen == stored
    assert polls > 10, "the reader polled while the writers ran"
    reader.close()


def _settle_all(dsn: str, go, out: str) -> None:
    """Settle as of ts=0, 20 at a time, until nothing is left; write what it settled to ``out``."""
    lg = PostgresEventLog(dsn, reward_window_s=5.0, expiry_grace_s=0.0)
    go.wait(GUARD_S)
    got = []
    while batch := lg.settle(0.0, limit=20):
        got += [s.to_dict() for s in batch]
    lg.close()
    with open(out, "w") as f:
        json.dump(got, f)


def test_two_processes_settling_at_once_settle_each_search_exactly_once(tmp_path, pg_dsn):
    lg = PostgresEventLog(pg_dsn, reward_window_s=5.0, expiry_grace_s=0.0)
    for i in range(400):  # old searches: every one is due; a third were clicked in their window
        lg.record_search(search(f"r{i}", ts=-1000.0 + i * 1e-3, query=f"q{i % 5}"))
        if i % 3 == 0:
            lg.record_feedback(fb(f"e{i}", f"r{i}", ts=-999.0))
    go = SPAWN.Event()
    outs = [str(tmp_path / f"settled{j}.json") for j in (0, 1)]
    procs = [SPAWN.Process(target=_settle_all, args=(pg_dsn, go, out)) for out in outs]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    got = [d for out in outs for d in json.loads(Path(out).read_text())]
    stored = {s.request_id: s for s, _ in lg.iter_settled()}
    assert sorted(d["request_id"] for d in got) == sorted(stored) == sorted(f"r{i}" for i in range(400))
    assert {d["request_id"]: d["seq"] for d in got} == {r: s.seq for r, s in stored.items()}
    assert sum(s.outcome == "positive" for s in stored.values()) == len(range(0, 400, 3))
    assert lg.counts()["pending"] == 0
    assert sum(lg.query_stats(f"q{j}")[0] for j in range(5)) == 400, "each counted once in query_stats"
    lg.close()


# -- deadlines and the advisory locks ---------------------------------------------------------------
LATE = "event log write: no write lock within the caller's deadline ({:.3f} s left)"


def test_a_write_given_a_deadline_fails_behind_a_held_lock_and_writes_nothing(pg_dsn):
    log = PostgresEventLog(pg_dsn, feedback_window_s=100.0, busy_timeout_s=0.25)
    log.record_search(search())
    other = hold_lock(pg_dsn, "feedback")  # another process is committing feedback
    try:
        with pytest.raises(BackendTimeout) as ei:
            log.record_feedback(fb(), timeout_s=0.05)
        assert str(ei.value) == LATE.format(0.05)
        # Reads do not wait behind it, and neither do writes that take another lock.
        assert log.query_stats("radiohead") == (0, 0) and log.search("r1") == search()
        log.record_search(search("r2"), timeout_s=GUARD_S)
        # Without a deadline the write waits the busy timeout, then fails: nothing acknowledged.
        with pytest.raises(BackendUnavailable, match="^event log write failed: canceling statement due to lock"):
            log.record_feedback(fb())
    finally:
        other.close()
    with log._lock:  # another thread of this process is writing
        with pytest.raises(BackendTimeout) as ei:
            log.record_search(search("r3"), timeout_s=0.05)
        assert str(ei.value) == LATE.format(0.05)
    with pytest.raises(BackendTimeout) as ei:  # no time left: fails at once
        log.record_feedback(fb(), timeout_s=0.0)
    assert str(ei.value) == LATE.format(0.0)
    assert log.feedback_for("r1") == [] and log.search("r3") is None
    assert log.counts() == {"searches": 2, "feedback": 0, "pending": 2, "settlements": 0}
    # The deadline was that call's only (SET LOCAL): the session still waits its whole busy timeout.
    assert log._connection("write").execute("SHOW lock_timeout").fetchone() == ("250ms",)
    assert log.record_feedback(fb(), timeout_s=GUARD_S) is False
    assert [f.event_id for f in log.feedback_for("r1")] == ["e1"]
    log.close()


def test_settle_waits_for_the_settlements_lock(pg_dsn):
    log = PostgresEventLog(pg_dsn, busy_timeout_s=0.1)
    log.record_search(search(ts=-1e6))
    other = hold_lock(pg_dsn, "settlements")  # another learner is settling
    try:
        with pytest.raises(BackendUnavailable, match="lock timeout"):
            log.settle(0.0)
    finally:
        other.close()
    assert [s.request_id for s in log.settle(0.0)] == ["r1"]
    log.close()


# -- restarts and crashes ------------------------------------------------------------------------------
def test_acknowledged_feedback_survives_a_crash_and_the_log_reconnects(own_pg_server: PgServer):
    dsn = own_pg_server.create_database("events")
    log = PostgresEventLog(dsn)
    log.record_search(search())
    for i in range(20):
        assert log.record_feedback(fb(f"e{i}", ts=1010.0 + i)) is False  # acknowledged
    own_pg_server.stop("immediate")  # a crash: no shutdown checkpoint, the start replays the WAL
    with pytest.raises(BackendUnavailable, match="^event log read failed: "):
        log.counts()  # the server is down: an error, not a hang
    with pytest.raises(BackendUnavailable, match="^event log write failed: "):
        log.record_feedback(fb("e99"))
    own_pg_server.start()
    # The same instance works again on its next call (its connections broke: it opens new ones).
    assert log.counts() == {"searches": 1, "feedback": 20, "pending": 1, "settlements": 0}
    assert [f.event_id for f in log.feedback_for("r1")] == [f"e{i}" for i in range(20)]
    assert log.record_feedback(fb("e19", ts=1029.0)) is True  # both connections are open again
    own_pg_server.restart()  # pg_ctl restart: every session is cut while the log is idle
    # The first use of a cut session fails before anything is written: the call runs again on a new one.
    assert log.record_feedback(fb("e20", ts=1030.0)) is False, "a write right after the restart succeeds"
    assert log.feedback_for("r1")[-1].event_id == "e20", "so does a read"
    assert log.record_feedback(fb("e20", ts=1030.0)) is True
    other = PostgresEventLog(dsn)
    seqs = [seq for seq, _, _ in other.positives_since(0, 100)]
    # Strictly increasing, never reused; after a crash a sequence skips the values it had logged ahead.
    assert seqs[:20] == list(range(1, 21)) and seqs[20] > 20 and len(seqs) == 21
    other.close()
    log.close()


# -- schema ----------------------------------------------------------------------------------------------
def _open(dsn: str, go) -> None:
    go.wait(GUARD_S)
    PostgresEventLog(dsn).close()


def test_processes_opening_an_empty_database_at_once_create_the_schema_once(pg_dsn):
    go = SPAWN.Event()
    procs = [SPAWN.Process(target=_open, args=(pg_dsn, go)) for _ in range(4)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {*TABLES, "schema_version"}


def test_newer_schema_is_refused(pg_dsn):
    PostgresEventLog(pg_dsn).close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE schema_version SET version = 9")
    with pytest.raises(ValueError) as ei:
        PostgresEventLog(pg_dsn)
    assert str(ei.value) == f"`dsn` {redact_dsn(pg_dsn)!r} has event-log schema v9; this code reads v3"


def test_threads_sharing_one_log_write_every_event_once(pg_dsn):
    log = PostgresEventLog(pg_dsn, feedback_window_s=100.0)

    def work(k: int) -> None:
        for i in range(25):
            log.record_search(search(f"t{k}-{i}"))
            log.record_feedback(fb(f"t{k}-e{i}", f"t{k}-{i}"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [q for q, _ in log.searches_since(0, 1000)] == list(range(1, 101))
    assert len({f.request_id for _, f, _ in log.positives_since(0, 1000)}) == 100
    log.close()


# -- migration from SQLite ---------------------------------------------------------------------------
def populated_sqlite(path) -> None:
    """A log with history: settled and pending searches, clicks, skips, a forced plan, cursors, pruned rows."""
    lg = SQLiteEventLog(path, feedback_window_s=100.0, reward_window_s=10.0, expiry_grace_s=0.0)
    for i in range(30):
        decision = {"forced": True} if i == 7 else {"forced": False, "k": {"lexical": 10}}
        lg.record_search(search(f"r{i}", ts=1000.0 + i, query=("Radiohead", "bjork", "Björk ")[i % 3],
                                decision=decision, features={"f": i / 3}))  # fmt: skip
        if i % 4 == 0:
            lg.record_feedback(fb(f"e{i}", f"r{i}", ts=1001.0 + i))
        if i % 5 == 0:
            lg.record_feedback(fb(f"s{i}", f"r{i}", ts=1001.0 + i, action="skip"))
    lg.settle(1025.0)  # r0..r14 settled; r15.. pending
    lg.set_cursor("memory", 5)
    assert lg.prune(before_ts=1003.0, through_search_seq=30, through_settlement_seq=10**6,
                    through_feedback_seq=10**6, keep_newest=5) == 3  # fmt: skip
    lg.close()
    raw = sqlite3.connect(path)  # the newest settlement goes: its seq must never be handed out again
    raw.execute("DELETE FROM settlements WHERE seq = (SELECT MAX(seq) FROM settlements)")
    raw.commit()
    raw.close()


def views(lg) -> dict:
    """Everything a consumer reads of a log."""
    return {
        "settlements": [(s, e) for s, e in lg.iter_settled()],
        "searches": lg.searches_since(0, 1000),
        "positives": lg.positives_since(0, 1000),
        "credited": lg.positive_settlements_since(0, 1000),
        "cursor": lg.cursor("memory"),
        "stats": {q: lg.query_stats(q) for q in ("radiohead", "bjork", "björk", "none")},
        "counts": lg.counts(),
        "oldest": lg.oldest_pending_ts(),
        "feedback": {f"r{i}": lg.feedback_for(f"r{i}") for i in range(30)},
        "recent": list(lg.recent_searches(limit=100)),
        "labelled": lg.searches_with_feedback(),
    }


def test_migration_copies_a_sqlite_log_and_both_answer_alike(tmp_path, pg_dsn, capsys):
    path = tmp_path / "events.sqlite"
    populated_sqlite(path)
    assert main(["migrate", "--sqlite", str(path), "--dsn", pg_dsn]) == 0
    err = capsys.readouterr().err
    assert "searches: 27 rows copied" in err and "cursors: 2 rows copied" in err
    assert "verified: the row counts of all 7 tables are equal" in err
    src = SQLiteEventLog(path, reward_window_s=10.0, expiry_grace_s=0.0)
    dst = PostgresEventLog(pg_dsn, reward_window_s=10.0, expiry_grace_s=0.0)
    assert views(dst) == views(src)
    # Both go on alike: the sequences were moved past every seq SQLite handed out (a deleted one too).
    for lg in (src, dst):
        lg.record_search(search("n1", ts=1050.0))
        lg.record_feedback(fb("ne1", "n1", ts=1051.0))
    assert views(dst) == views(src)
    assert dst.settle(1100.0) == src.settle(1100.0)
    assert views(dst) == views(src)
    src.close()
    dst.close()

    # A non-empty target is refused; --force replaces it with the file's current content.
    assert main(["migrate", "--sqlite", str(path), "--dsn", pg_dsn]) == 2
    assert "is not empty (searches 28, search_seq 28, feedback" in capsys.readouterr().err
    assert main(["migrate", "--sqlite", str(path), "--dsn", pg_dsn, "--force"]) == 0
    assert "emptied the target" in capsys.readouterr().err
    src = SQLiteEventLog(path)
    dst = PostgresEventLog(pg_dsn)
    assert views(dst) == views(src)
    src.close()
    dst.close()


def test_ltrr_migrate_events_takes_the_dsn_from_the_environment(tmp_path, pg_dsn, monkeypatch, capsys):
    from ltrr.cli import main as ltrr_main

    path = tmp_path / "events.sqlite"
    populated_sqlite(path)
    monkeypatch.setenv("LTRR_EVENTS_DSN", pg_dsn)
    assert ltrr_main(["migrate-events", "--sqlite", str(path)]) == 0
    assert "verified" in capsys.readouterr().err
    dst = PostgresEventLog(pg_dsn)
    assert dst.counts()["searches"] == 27
    dst.close()


def test_migration_refuses_an_old_sqlite_schema_and_a_missing_file(tmp_path, pg_dsn, capsys):
    old = tmp_path / "v2.sqlite"
    raw = sqlite3.connect(old)
    raw.execute("PRAGMA user_version=2")
    raw.close()
    assert main(["migrate", "--sqlite", str(old), "--dsn", pg_dsn]) == 2
    assert "has event-log schema v2; open it once with this ltrr" in capsys.readouterr().err
    assert main(["migrate", "--sqlite", str(tmp_path / "nope.sqlite"), "--dsn", pg_dsn]) == 2
    assert "nope.sqlite': no such file" in capsys.readouterr().err
    SQLiteEventLog(tmp_path / "v3.sqlite").close()
    unreachable = f"host={tmp_path} port=1 user=ltrr password=s3cret dbname=events"
    assert main(["migrate", "--sqlite", str(tmp_path / "v3.sqlite"), "--dsn", unreachable]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: event log write failed: connection") and "s3cret" not in err
