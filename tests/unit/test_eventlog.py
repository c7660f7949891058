import sqlite3

import pytest

from ltrr.errors import InvalidRequest, NotFound
from ltrr.eventlog import FeedbackEvent, SearchEvent, SQLiteEventLog


@pytest.fixture
def log(tmp_path):
    lg = SQLiteEventLog(tmp_path / "events.sqlite", feedback_window_s=100.0)
    yield lg
    lg.close()


def search(rid="r1", ts=1000.0):
    return SearchEvent(
        rid, ts, "radiohead", "u1", ("artist:a", "track:b"), ({"strategy": "lexical"},), {"lexical": ["artist:a"]}
    )


def fb(eid="e1", rid="r1", ts=1010.0, entity="artist:a", action="click"):
    return FeedbackEvent(eid, rid, entity, action, 1, ts)


def test_feedback_is_idempotent_and_durable(tmp_path, log):
    log.record_search(search())
    assert log.record_feedback(fb()) is False
    assert log.record_feedback(fb()) is True
    assert log.counts() == {"searches": 1, "feedback": 1}
    # A second connection (another process would be the same) sees the committed rows.
    other = sqlite3.connect(tmp_path / "events.sqlite")
    assert other.execute("SELECT event_id, action FROM feedback").fetchall() == [("e1", "click")]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
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
