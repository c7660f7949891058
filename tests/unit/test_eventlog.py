import dataclasses
import inspect
import json
import multiprocessing as mp
import sqlite3
import threading
import time

import pytest

from ltrr import constants as C
from ltrr.client import LtrrClient
from ltrr.errors import BackendTimeout, BackendUnavailable, InvalidRequest, NotFound
from ltrr.eventlog import FeedbackEvent, SearchEvent, Settlement, SQLiteEventLog
from tests.fixtures.postgres import open_log

# Every test that takes `log`, `slog` or `event_log_factory` runs twice: on SQLite and on a real
# PostgreSQL server (tests/fixtures/postgres.py). Tests that take `sqlite_log` or open SQLiteEventLog
# themselves check SQLite itself (PRAGMAs, its write lock, file migration): SQLite only, marked so below.
# Their PostgreSQL counterparts are in test_eventlog_pg.py.

#: Seconds: a deadline generous enough never to be reached.
GUARD_S = 30.0


@pytest.fixture
def log(event_log_factory):
    return event_log_factory(feedback_window_s=100.0)


@pytest.fixture
def slog(event_log_factory):
    """Reward window 10 s after the search, no expiry grace."""
    return event_log_factory(feedback_window_s=100.0, reward_window_s=10.0, expiry_grace_s=0.0)


@pytest.fixture
def sqlite_log(tmp_path):
    """SQLite only: the log of the tests that reach into SQLite itself."""
    lg = SQLiteEventLog(tmp_path / "events.sqlite", feedback_window_s=100.0)
    yield lg
    lg.close()


def search(rid="r1", ts=1000.0, query="radiohead", **kw):
    return SearchEvent(
        rid, ts, query, "u1", ("artist:a", "track:b"), ({"strategy": "lexical"},), {"lexical": ["artist:a"]}, **kw
    )


def fb(eid="e1", rid="r1", ts=1010.0, entity="artist:a", action="click"):
    return FeedbackEvent(eid, rid, entity, action, 1, ts)


def test_feedback_is_idempotent_and_durable(event_log_factory, log):
    log.record_search(search())
    assert log.record_feedback(fb()) is False
    assert log.record_feedback(fb()) is True
    assert log.counts() == {"searches": 1, "feedback": 1, "pending": 1, "settlements": 0}
    # A second connection (another process would be the same) sees the committed rows.
    assert event_log_factory.rows("SELECT seq, event_id, action FROM feedback") == [(1, "e1", "click")]
    if event_log_factory.backend == "sqlite":
        assert event_log_factory.rows("PRAGMA journal_mode") == [("wal",)]
        assert event_log_factory.rows("PRAGMA user_version") == [(3,)]
    else:  # commits wait for the WAL flush on every session the log opens, whatever the server's default
        assert event_log_factory.rows("SELECT version FROM schema_version") == [(3,)]
        conn = log._connection("write")
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    assert log.search("r1") == search()


def test_unknown_and_expired_requests_are_rejected(log):
    with pytest.raises(NotFound, match="request_id: unknown request 'nope'"):
        log.record_feedback(fb(rid="nope"))
    log.record_search(search())
    with pytest.raises(NotFound, match="request_id: request 'r1' expired \\(feedback is accepted for 100 s\\)"):
        log.record_feedback(fb(ts=1101.0))


def test_event_id_reuse_for_other_event_is_rejected(log):
    log.record_search(search())
    log.record_feedback(fb())
    with pytest.raises(InvalidRequest) as ei:
        log.record_feedback(fb(entity="track:b"))
    assert ei.value.field == "event_id"
    assert log.feedback_for("r1") == [fb()]


# -- records ------------------------------------------------------------------------------------


def test_search_event_new_fields_round_trip_and_old_docs_load():
    ev = search(
        features={"len": 2.0, "personal": 0.0},
        decision={"k": {"lexical": 25}, "propensity": 0.5},
        scores={"lexical": [3.5]},
        context={"device": "mobile"},
    )
    assert SearchEvent.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    assert list(ev.to_dict()) == [f.name for f in dataclasses.fields(SearchEvent)]
    assert ev.to_dict()["decision"] is not ev.decision
    old = {  # a doc written by the v1 code
        "request_id": "r0",
        "ts": 5.0,
        "query": "q",
        "user_id": "",
        "shown": ["a"],
        "calls": [{"strategy": "lexical"}],
        "candidates": {"lexical": ["a"]},
        "policy_version": "static-v1",
        "ranker_version": "rrf-c60",
    }
    loaded = SearchEvent.from_dict(old)
    assert loaded.shown == ("a",) and loaded.calls == ({"strategy": "lexical"},)
    assert (loaded.features, loaded.decision, loaded.scores, loaded.context) == ({}, None, None, {})
    # A newer writer's extra key does not break this reader.
    assert SearchEvent.from_dict({**old, "added_later": 1}) == loaded


def test_settlement_and_feedback_round_trip():
    s = Settlement(3, "r1", "positive", "artist:a", "click", 12.5)
    assert Settlement.from_dict(s.to_dict()) == s
    assert FeedbackEvent.from_dict(fb().to_dict()) == fb()


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feedback_window_s": 0}, "`feedback_window_s` must be a finite number > 0, got 0"),
        ({"reward_window_s": -1.0}, "`reward_window_s` must be a finite number > 0, got -1.0"),
        ({"reward_window_s": float("inf")}, "`reward_window_s` must be a finite number > 0, got inf"),
        ({"reward_window_s": "600"}, "`reward_window_s` must be a finite number > 0, got '600'"),
        ({"expiry_grace_s": -0.5}, "`expiry_grace_s` must be a finite number >= 0, got -0.5"),
        ({"busy_timeout_s": -1}, "`busy_timeout_s` must be a finite number >= 0, got -1"),
        ({"busy_timeout_s": float("inf")}, "`busy_timeout_s` must be a finite number >= 0, got inf"),
        (
            {"positive_actions": "click"},
            "`positive_actions` must be a non-empty collection of non-empty strings, got 'click'",
        ),
        ({"positive_actions": ()}, "`positive_actions` must be a non-empty collection of non-empty strings, got ()"),
        (
            {"positive_actions": ("click", "")},
            "`positive_actions` must be a non-empty collection of non-empty strings, got ('click', '')",
        ),
    ],
)
def test_constructor_validation(event_log_factory, kwargs, message):
    with pytest.raises(ValueError) as ei:
        event_log_factory(**kwargs)
    assert str(ei.value) == message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lg: lg.settle(limit=0), "`limit` must be an integer in [1, 100000], got 0"),
        (lambda lg: lg.settle(float("nan")), "`now_ts` must be a finite number, got nan"),
        (lambda lg: lg.settlements_since(-1), "`seq` must be an integer in [0, 9223372036854775807], got -1"),
        (lambda lg: lg.settlements_since(0, limit=100_001), "`limit` must be an integer in [1, 100000], got 100001"),
        (lambda lg: lg.positives_since(1.5), "`seq` must be an integer in [0, 9223372036854775807], got 1.5"),
        (lambda lg: list(lg.iter_settled(batch_size=0)), "`batch_size` must be an integer in [1, 100000], got 0"),
        (
            lambda lg: lg.set_cursor("", 1),
            "`name` must be a non-empty string not starting with '_' (reserved), got ''",
        ),
        (
            lambda lg: lg.cursor("_settle"),
            "`name` must be a non-empty string not starting with '_' (reserved), got '_settle'",
        ),
        (lambda lg: lg.set_cursor("memory", -3), "`seq` must be an integer in [0, 9223372036854775807], got -3"),
    ],
)
def test_method_validation(log, call, message):
    with pytest.raises(ValueError) as ei:
        call(log)
    assert str(ei.value) == message


# -- settlement ---------------------------------------------------------------------------------

# Search at ts=1000, reward window 10 s, no grace. Feedback: (action, seconds after the search, entity),
# recorded in this order. Expected: (outcome, entity_id, action) or None (still pending).
RULES = [
    ("first positive wins", [("click", 1, "a"), ("play", 2, "b")], 1005.0, ("positive", "a", "click")),
    ("lowest seq, not lowest ts", [("play", 8, "b"), ("click", 3, "a")], 1005.0, ("positive", "b", "play")),
    ("skip is not positive", [("skip", 1, "a"), ("play", 3, "b")], 1005.0, ("positive", "b", "play")),
    ("only a skip: pending in window", [("skip", 1, "a")], 1005.0, None),
    ("only a skip: expired after", [("skip", 1, "a")], 1010.5, ("expired", "", "")),
    ("positive on the window edge", [("favorite", 10, "a")], 1011.0, ("positive", "a", "favorite")),
    ("positive after the window", [("click", 11, "a")], 1020.0, ("expired", "", "")),
    ("positive after the window, then none", [("click", 11, "a")], 1005.0, None),
    ("no feedback, window not over", [], 1010.0, None),
    ("no feedback, window over", [], 1010.001, ("expired", "", "")),
    ("positive in window, settled late", [("skip", 2, "b"), ("click", 5, "a")], 5000.0, ("positive", "a", "click")),
]


@pytest.mark.parametrize(("feedback", "now_ts", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_settlement_rules(slog, feedback, now_ts, expected):
    slog.record_search(search(ts=1000.0))
    for i, (action, dt, entity) in enumerate(feedback):
        slog.record_feedback(fb(f"e{i}", ts=1000.0 + dt, entity=entity, action=action))
    out = slog.settle(now_ts)
    if expected is None:
        assert out == [] and slog.counts()["pending"] == 1
    else:
        assert out == [Settlement(1, "r1", *expected, now_ts)]
        assert slog.counts()["pending"] == 0
    assert slog.settle(now_ts) == []


def test_expiry_grace_and_custom_positive_actions(event_log_factory):
    lg = event_log_factory(reward_window_s=10.0, expiry_grace_s=5.0, positive_actions=["skip"])
    lg.record_search(search("r1", ts=1000.0))
    lg.record_search(search("r2", ts=1000.0))
    lg.record_feedback(fb("e1", "r1", ts=1001.0, action="click"))
    assert lg.settle(1014.0) == []  # past the window, inside the grace
    lg.record_feedback(fb("e2", "r2", ts=1009.0, entity="track:b", action="skip"))  # stamped in the window
    assert [(s.request_id, s.outcome, s.action) for s in lg.settle(1015.5)] == [
        ("r2", "positive", "skip"),
        ("r1", "expired", ""),
    ]


def test_settle_is_idempotent_with_strictly_increasing_seqs(slog):
    for i in range(6):
        slog.record_search(search(f"r{i}", ts=1000.0 + i))
    slog.record_feedback(fb("e1", "r3", ts=1004.0))
    slog.record_feedback(fb("e2", "r1", ts=1002.0, action="play"))
    first = slog.settle(1005.0)
    assert [(s.seq, s.request_id, s.outcome) for s in first] == [(1, "r3", "positive"), (2, "r1", "positive")]
    assert slog.settle(1005.0) == []
    slog.record_feedback(fb("e3", "r1", ts=1003.0))  # r1 is settled: a later click changes nothing
    second = slog.settle(1013.5)  # r0 (1000), r2 (1002) expire; r4, r5 still pending
    assert [(s.seq, s.request_id, s.outcome) for s in second] == [(3, "r0", "expired"), (4, "r2", "expired")]
    third = slog.settle(1100.0)
    assert [(s.seq, s.request_id) for s in third] == [(5, "r4"), (6, "r5")]
    assert slog.settle(1100.0) == []
    assert slog.counts() == {"searches": 6, "feedback": 3, "pending": 0, "settlements": 6}
    # Rewriting a settled search does not make it pending again.
    slog.record_search(search("r3", ts=2000.0))
    assert slog.settle(5000.0) == [] and slog.counts()["settlements"] == 6


def test_settle_limit_resumes_in_feedback_order(slog):
    for i in range(4):
        slog.record_search(search(f"r{i}", ts=1000.0))
    for i in (2, 0, 3):
        slog.record_feedback(fb(f"e{i}", f"r{i}", ts=1001.0))
        slog.record_feedback(fb(f"x{i}", f"r{i}", ts=1001.5, action="play"))  # a second positive, same request
    assert [s.request_id for s in slog.settle(1002.0, limit=2)] == ["r2", "r0"]
    assert [s.request_id for s in slog.settle(1002.0, limit=2)] == ["r3"]
    assert [(s.request_id, s.outcome) for s in slog.settle(2000.0, limit=1)] == [("r1", "expired")]
    assert [s.action for s, _ in slog.settlements_since(0)] == ["click", "click", "click", ""]


def test_settlements_since_joins_the_search(slog):
    kw = {"features": {"f": 1.5}, "decision": {"arm": 3}, "scores": {"lexical": [0.25]}, "context": {"lang": "en"}}
    slog.record_search(search("r1", ts=1000.0, **kw))
    slog.record_search(search("r2", ts=1001.0))
    slog.record_feedback(fb("e1", "r2", ts=1002.0))
    slog.settle(1003.0)
    slog.settle(1020.0)
    rows = slog.settlements_since(0)
    assert [(s.seq, s.request_id, s.outcome) for s, _ in rows] == [(1, "r2", "positive"), (2, "r1", "expired")]
    assert rows[1][1] == search("r1", ts=1000.0, **kw)
    assert [s.seq for s, _ in slog.settlements_since(1)] == [2]
    assert [s.seq for s, _ in slog.settlements_since(0, limit=1)] == [1]
    assert slog.settlements_since(2) == []


def test_iter_settled_reads_in_batches(slog):
    for i in range(5):
        slog.record_search(search(f"r{i}", ts=1000.0 + i))
    slog.settle(2000.0)
    assert [s.request_id for s, _ in slog.iter_settled(batch_size=2)] == ["r0", "r1", "r2", "r3", "r4"]
    assert [s.seq for s, _ in slog.iter_settled(1, limit=3, batch_size=2)] == [2, 3, 4]
    assert [ev.request_id for _, ev in slog.iter_settled(4)] == ["r4"]


def test_positives_since_and_cursors(event_log_factory, slog):
    slog.record_search(search("r1", query="Radiohead"))
    slog.record_search(search("r2", query="bjork"))
    slog.record_feedback(fb("e1", "r1"))
    slog.record_feedback(fb("e2", "r1", action="skip"))
    slog.record_feedback(fb("e3", "r2", entity="artist:b", action="favorite"))
    assert slog.positives_since(0) == [
        (1, fb("e1", "r1"), "Radiohead"),
        (3, fb("e3", "r2", entity="artist:b", action="favorite"), "bjork"),
    ]
    assert slog.cursor("memory") == 0
    slog.set_cursor("memory", 1)
    assert [seq for seq, _, _ in slog.positives_since(slog.cursor("memory"))] == [3]
    assert [seq for seq, _, _ in slog.positives_since(0, limit=1)] == [1]
    slog.set_cursor("memory", 3)
    assert slog.positives_since(3) == []
    # Settling does not move a consumer's cursor, and cursors survive a reopen (another process).
    slog.settle(5000.0)
    other = event_log_factory()
    assert other.cursor("memory") == 3 and other.cursor("other") == 0


def test_query_stats_count_settled_searches_by_normalised_query(slog):
    for i, q in enumerate(["Radiohead ", "radiohead", "RADIOHEAD!", "bjork"]):
        slog.record_search(search(f"r{i}", ts=1000.0, query=q))
    slog.record_feedback(fb("e1", "r1", ts=1001.0))
    slog.settle(1002.0)
    assert slog.query_stats("radiohead") == (1, 1)
    slog.settle(1020.0)
    assert slog.query_stats("radiohead") == (3, 1)
    assert slog.query_stats("  RadioHead") == (3, 1)
    assert slog.query_stats("Björk") == (0, 0)
    assert slog.query_stats("bjork") == (1, 0)
    assert slog.query_stats("never searched") == (0, 0)


def test_query_stats_leave_out_searches_whose_caller_forced_the_plan(slog):
    forced = {"budgets": {"lexical": 100}, "forced": True}
    slog.record_search(search("f1", ts=1000.0, decision=forced))
    slog.record_search(search("f2", ts=1000.0, decision=forced))
    slog.record_search(search("p1", ts=1000.0, decision={"budgets": {"lexical": 10}, "forced": False}))
    slog.record_feedback(fb("e1", "f1", ts=1001.0))
    slog.record_feedback(fb("e2", "p1", ts=1001.0))
    assert len(slog.settle(1020.0)) == 3, "all settle"
    assert slog.query_stats("radiohead") == (1, 1), "only the search the policy planned counts"


def test_searches_are_read_in_log_order_with_their_positive_settlements(slog):
    for i, ts in enumerate([1003.0, 1001.0, 1002.0]):  # logged in this order, whatever their ts
        slog.record_search(search(f"r{i}", ts=ts))
    assert [(q, e.request_id) for q, e in slog.searches_since(0)] == [(1, "r0"), (2, "r1"), (3, "r2")]
    assert [e.request_id for _, e in slog.searches_since(1, limit=1)] == ["r1"]
    slog.record_feedback(fb("e1", "r2", ts=1002.5))
    slog.settle(1020.0)  # r2 positive, r0 and r1 expired
    [(st, ev, q)] = slog.positive_settlements_since(0)
    assert (st.outcome, ev.request_id, q) == ("positive", "r2", 3)
    assert slog.positive_settlements_since(st.seq) == []


# SQLite only: another connection holds SQLite's write lock (test_eventlog_pg.py holds the advisory lock).
def test_reads_do_not_wait_behind_a_blocked_write(tmp_path, sqlite_log):
    log = sqlite_log
    log.record_search(search())
    raw = sqlite3.connect(tmp_path / "events.sqlite", isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    writer = threading.Thread(target=log.record_search, args=(search("r2"),))
    writer.start()
    while not log._lock.locked():  # the writer is inside its transaction, waiting for the lock
        time.sleep(0.001)
    assert log.query_stats("radiohead") == (0, 0)
    assert log.search("r1") == search() and log.search("r2") is None
    assert writer.is_alive()
    raw.execute("COMMIT")
    writer.join()
    raw.close()
    assert log.search("r2") == search("r2")


# -- schema migration (SQLite only: files of older versions; test_eventlog_pg.py has PostgreSQL's) --------

V1_DDL = """
CREATE TABLE IF NOT EXISTS searches (
    request_id TEXT PRIMARY KEY,
    ts         REAL NOT NULL,
    query      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    event_id   TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    action     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    ts         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id);
"""


def test_v1_file_is_migrated_in_place(tmp_path):
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V1_DDL)
    new_fields = ("features", "decision", "scores", "context")
    old_doc = {k: v for k, v in search("old", ts=10.0).to_dict().items() if k not in new_fields}
    db.execute("INSERT INTO searches VALUES (?,?,?,?,?)", ("old", 10.0, "radiohead", "u1", json.dumps(old_doc)))
    for eid, ts, action in [("zz", 11.0, "click"), ("aa", 13.0, "play"), ("mm", 12.0, "skip")]:
        db.execute("INSERT INTO feedback VALUES (?,?,?,?,?,?)", (eid, "old", "artist:a", action, 1, ts))
    db.commit()
    db.close()

    lg = SQLiteEventLog(path, reward_window_s=10.0, expiry_grace_s=0.0)
    assert lg.counts() == {"searches": 1, "feedback": 3, "pending": 0, "settlements": 0}
    assert lg.search("old") == search("old", ts=10.0)
    assert [seq for seq, _, _ in lg.positives_since(0)] == [1, 3]  # zz (11.0), mm (12.0, skip), aa (13.0)
    assert lg.record_feedback(fb("aa", "old", ts=13.0, action="play")) is True
    assert lg.settle(1e9) == []  # old searches count as settled
    lg.record_search(search("new", ts=100.0))
    lg.record_feedback(fb("e4", "new", ts=101.0))
    assert [(s.seq, s.request_id, s.outcome) for s in lg.settle(101.0)] == [(1, "new", "positive")]
    assert [seq for seq, _, _ in lg.positives_since(3)] == [4]
    lg.close()

    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 3
    assert raw.execute("SELECT seq, event_id FROM feedback ORDER BY seq").fetchall() == [
        (1, "zz"),
        (2, "mm"),
        (3, "aa"),
        (4, "e4"),
    ]
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    assert {"pending", "pending_ts", "settlements", "query_stats", "cursors", "feedback_request"} <= tables
    assert "feedback_v1" not in tables
    raw.close()
    again = SQLiteEventLog(path)  # reopening a v2 file changes nothing
    assert again.counts() == {"searches": 2, "feedback": 4, "pending": 0, "settlements": 1}
    again.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "v9.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=9")
    raw.close()
    with pytest.raises(ValueError, match=r"has event-log schema v9; this code reads v3"):
        SQLiteEventLog(path)


# -- several processes on one store ------------------------------------------------------------

N_PER_WRITER = 24


def _writer(spec, k: int, ready) -> None:
    """Searches w{k}-{i} at ts=i with a click (i % 3 == 0), a skip (i % 3 == 1) or nothing; plus old searches."""
    lg = open_log(spec, reward_window_s=5.0, expiry_grace_s=0.0)
    ready.wait(30)  # start once the settler is running, so they overlap
    for i in range(N_PER_WRITER):
        lg.record_search(search(f"w{k}-{i}", ts=float(i), query=f"q{i % 4}"))
        if i % 3 < 2:
            lg.record_feedback(
                fb(f"w{k}-e{i}", f"w{k}-{i}", ts=i + 1.0, entity=f"e{i}", action=("click", "skip")[i % 3])
            )
        if i % 2 == 0:
            lg.record_search(search(f"w{k}-old{i}", ts=-1000.0, query=f"q{i % 4}"))
    lg.close()


def _settler(spec, out: str, ready, stop) -> None:
    """Settles as of ts=0 until told to stop: old searches expire, the others settle only when clicked."""
    lg = open_log(spec, reward_window_s=5.0, expiry_grace_s=0.0)
    got = [s.to_dict() for s in lg.settle(0.0, limit=7)]
    ready.set()
    while True:
        done = stop.is_set()  # one last pass after the writers finished
        got += [s.to_dict() for s in lg.settle(0.0, limit=7)]
        if done:
            break
    lg.close()
    with open(out, "w") as f:
        json.dump(got, f)


def test_concurrent_writers_and_settler_settle_each_search_once(tmp_path, event_log_factory):
    spec = event_log_factory.spec
    event_log_factory()  # the schema exists before the processes start
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    settler = ctx.Process(target=_settler, args=(spec, str(tmp_path / "settled.json"), ready, stop))
    writers = [ctx.Process(target=_writer, args=(spec, k, ready)) for k in (1, 2)]
    for p in [settler, *writers]:
        p.start()
    for p in writers:
        p.join(60)
    stop.set()
    settler.join(60)
    assert [p.exitcode for p in [settler, *writers]] == [0, 0, 0]

    lg = event_log_factory(reward_window_s=5.0, expiry_grace_s=0.0)
    during = [Settlement.from_dict(d) for d in json.loads((tmp_path / "settled.json").read_text())]
    after = lg.settle(1e6)
    returned = during + after
    stored = [s for s, _ in lg.iter_settled(batch_size=10)]
    assert returned == stored  # every settlement returned exactly once, in seq order
    seqs = [s.seq for s in stored]
    assert seqs == sorted(set(seqs))
    expected = {}
    for k in (1, 2):
        for i in range(N_PER_WRITER):
            expected[f"w{k}-{i}"] = ("positive", f"e{i}", "click") if i % 3 == 0 else ("expired", "", "")
            if i % 2 == 0:
                expected[f"w{k}-old{i}"] = ("expired", "", "")
    assert {s.request_id: (s.outcome, s.entity_id, s.action) for s in stored} == expected
    assert len(stored) == len(expected)
    # While the writers ran, only old searches expired and clicked ones settled positive.
    assert all(s.outcome == "positive" or "-old" in s.request_id for s in during)
    assert lg.counts()["pending"] == 0
    assert sum(lg.query_stats(f"q{j}")[0] for j in range(4)) == len(expected)
    assert sum(lg.query_stats(f"q{j}")[1] for j in range(4)) == 2 * 8


# SQLite only (test_eventlog_pg.py stops the server instead).
def test_sqlite_failures_are_backend_unavailable_and_nothing_is_acknowledged(tmp_path):
    broken = SQLiteEventLog(tmp_path / "broken.sqlite")
    broken._db.close()  # stands for any SQLite failure: a lock past the busy timeout, a full disk
    broken._rdb.close()
    with pytest.raises(BackendUnavailable, match="^event log write failed: "):
        broken.record_feedback(FeedbackEvent("e1", "r1", "a", "click", 1, 0.0))
    with pytest.raises(BackendUnavailable, match="^event log read failed: "):
        broken.query_stats("radiohead")


def test_recent_searches_are_the_newest_oldest_first_with_all_their_feedback(log):
    for i, ts in enumerate([1000.0, 1003.0, 1001.0, 1002.0]):
        log.record_search(search(f"r{i}", ts=ts))
    log.record_feedback(fb("e1", "r1", ts=1004.0))
    log.record_feedback(fb("e2", "r1", ts=1005.0, entity="track:b", action="play"))
    log.record_feedback(fb("e3", "r3", ts=1006.0, action="skip"))
    got = list(log.recent_searches(limit=3, batch_size=2))
    assert [e.request_id for e, _ in got] == ["r2", "r3", "r1"], "the 3 newest by ts, oldest first"
    by = {e.request_id: [(f.event_id, f.action) for f in fbs] for e, fbs in got}
    assert by == {"r2": [], "r3": [("e3", "skip")], "r1": [("e1", "click"), ("e2", "play")]}
    assert log.searches_with_feedback() == 2
    with pytest.raises(ValueError, match="`limit` must be an integer"):
        list(log.recent_searches(limit=0))


# -- busy timeout and deadlines (SQLite only: test_eventlog_pg.py has PostgreSQL's) -------------------


def busy_ms(db):
    return db.execute("PRAGMA busy_timeout").fetchone()[0]


def test_busy_timeout_is_configurable_and_by_default_below_the_clients_deadline(tmp_path, sqlite_log):
    log = sqlite_log
    assert C.SQLITE_BUSY_TIMEOUT_S == 5.0 < C.CLIENT_TIMEOUT_S == 10.0
    assert inspect.signature(LtrrClient).parameters["timeout"].default == C.CLIENT_TIMEOUT_S
    # Both connections wait 5 s for a lock (it was 30 s: longer than the client waits for the answer).
    assert (log.busy_timeout_s, busy_ms(log._db), busy_ms(log._rdb)) == (5.0, 5000, 5000)
    short = SQLiteEventLog(tmp_path / "short.sqlite", busy_timeout_s=0.25)
    assert (busy_ms(short._db), busy_ms(short._rdb)) == (250, 250)
    short.close()


def test_a_write_given_a_deadline_stops_waiting_for_the_write_lock_and_writes_nothing(tmp_path, sqlite_log):
    log = sqlite_log
    log.record_search(search())
    other = sqlite3.connect(tmp_path / "events.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock past the deadline
    try:
        with pytest.raises(BackendTimeout) as ei:  # without the deadline: 5 s, then BackendUnavailable
            log.record_feedback(fb(), timeout_s=0.05)
        assert str(ei.value) == "event log write: no write lock within the caller's deadline (0.050 s left)"
    finally:
        other.execute("ROLLBACK")
        other.close()
    with log._lock:  # another thread of this process is writing
        with pytest.raises(BackendTimeout) as ei:
            log.record_search(search("r2"), timeout_s=0.05)
        assert str(ei.value) == "event log write: no write lock within the caller's deadline (0.050 s left)"
    with pytest.raises(BackendTimeout) as ei:  # no time left: fails at once
        log.record_feedback(fb(), timeout_s=0.0)
    assert str(ei.value) == "event log write: no write lock within the caller's deadline (0.000 s left)"
    assert log.feedback_for("r1") == [] and log.search("r2") is None
    # The deadline was that call's only: the next write waits the whole busy timeout again.
    assert log.record_feedback(fb()) is False
    assert busy_ms(log._db) == 5000
    assert log.record_search(search("r2"), timeout_s=GUARD_S) is None and log.search("r2") == search("r2")


# -- retention ---------------------------------------------------------------------------------
def _pruned_log(slog):
    """Searches r0..r9 at ts 1000..1009 (search_seq 1..10); r1, r3 clicked; all settled but r9."""
    for i in range(10):
        slog.record_search(search(f"r{i}", ts=1000.0 + i), timeout_s=None)
    for i in (1, 3):
        slog.record_feedback(fb(f"e{i}", f"r{i}", ts=1001.0 + i))
    slog.settle(now_ts=1018.5)  # r0..r8 settled (window 10 s), r9 still pending


def _left(store):
    return {
        t: sorted(r[0] for r in store.rows(f"SELECT request_id FROM {t}"))
        for t in ("searches", "search_seq", "settlements", "feedback")
    }


def test_prune_deletes_only_what_every_consumer_has_passed(event_log_factory, slog):
    _pruned_log(slog)
    n = slog.prune(
        before_ts=1006.0,  # r0..r5 are old enough
        through_search_seq=5,  # the learner counted r0..r4
        through_settlement_seq=10**9,
        through_feedback_seq=1,  # the memory/profiles folded e1 (r1) but not e3 (r3)
        keep_newest=2,
    )
    left = _left(event_log_factory)
    # r0, r1, r2, r4 go; r3 has unfolded feedback; r5 is not counted; r6.. are young; r9 is pending.
    assert n == 4
    assert left["searches"] == ["r3", "r5", "r6", "r7", "r8", "r9"]
    assert left["search_seq"] == left["searches"]
    assert left["settlements"] == ["r3", "r5", "r6", "r7", "r8"]
    assert left["feedback"] == ["r3"]
    # What the consumers read after their cursors is untouched, and seqs are never reused.
    assert [seq for seq, _ in slog.searches_since(5)] == [6, 7, 8, 9, 10]
    slog.record_search(search("r10", ts=1020.0))
    assert slog.searches_since(10)[0][0] == 11


def test_prune_keeps_the_newest_and_unapplied_settlements(event_log_factory, slog):
    _pruned_log(slog)
    common = dict(before_ts=10**9, through_search_seq=10, through_feedback_seq=10**9)
    assert slog.prune(**common, through_settlement_seq=0, keep_newest=1) == 0  # the learner applied none
    assert slog.prune(**common, through_settlement_seq=10**9, keep_newest=7) == 3  # seq 1..3 only
    assert _left(event_log_factory)["searches"] == ["r3", "r4", "r5", "r6", "r7", "r8", "r9"]
    assert slog.prune(**common, through_settlement_seq=10**9, keep_newest=1, limit=2) == 2  # in batches
    with pytest.raises(ValueError, match=r"`keep_newest` must be an integer in \[1, "):
        slog.prune(**common, through_settlement_seq=0, keep_newest=0)
