import asyncio

import pytest

from ltrr.errors import BackendUnavailable, NotFound
from ltrr.eventlog import SQLiteEventLog
from ltrr.fanout import Fanout
from ltrr.service import SearchService, static_plan
from ltrr.types import Candidate, ParsedQuery
from ltrr.validation import validate_feedback, validate_search

NAMES = ["lexical", "vector", "graph", "memory"]


def fake(ids, fail=False):
    async def call(query, k):
        if fail:
            raise BackendUnavailable("down")
        return [Candidate(e, "artist", e.upper(), "", 1.0, i).to_dict() for i, e in enumerate(ids[:k], 1)]

    return call


def parse(text):
    return ParsedQuery(text, text)


@pytest.fixture
def service(tmp_path):
    callers = {
        "lexical": fake(["a", "b", "c"]),
        "vector": fake(["b", "d"]),
        "graph": fake([]),
        "memory": fake([], fail=True),
    }
    fan = Fanout(callers, {n: 1.0 for n in NAMES})
    events = SQLiteEventLog(tmp_path / "ev.sqlite")
    yield SearchService(fan, parse, events, {"lexical": 2, "vector": 5, "graph": 5, "memory": 5})
    events.close()


def test_static_plan():
    assert static_plan(NAMES, (), {n: 7 for n in NAMES}) == {n: 7 for n in NAMES}
    assert static_plan(NAMES, ("graph",), {n: 7 for n in NAMES}) == {"lexical": 0, "vector": 0, "graph": 7, "memory": 0}


def test_search_fuses_logs_and_degrades(service):
    p = validate_search(query="q", k=3, explain=True, known_strategies=NAMES)
    out = asyncio.run(service.search(p))
    # lexical asked for k=2 -> a, b; vector -> b, d. RRF: b = 1/62 + 1/61, a = 1/61, d = 1/62.
    assert [r.entity_id for r in out.results] == ["b", "a", "d"]
    assert out.degraded is True
    assert {c.strategy: c.status for c in out.calls} == {
        "lexical": "ok",
        "vector": "ok",
        "graph": "ok",
        "memory": "error",
    }
    assert out.features["b"]["vector.rank"] == 1.0 and out.features["b"]["lexical.rank"] == 2.0
    logged = service.events.search(out.request_id)
    assert logged.shown == ("b", "a", "d")
    assert logged.candidates == {"lexical": ["a", "b"], "vector": ["b", "d"], "graph": [], "memory": []}


def test_forced_strategy_skips_the_rest_and_is_not_degraded(service):
    out = asyncio.run(service.search(validate_search(query="q", strategies=["vector"], known_strategies=NAMES)))
    assert {c.strategy: c.status for c in out.calls} == {
        "lexical": "skipped",
        "vector": "ok",
        "graph": "skipped",
        "memory": "skipped",
    }
    assert out.degraded is False
    assert [r.entity_id for r in out.results] == ["b", "d"]


def test_feedback_roundtrip(service):
    out = asyncio.run(service.search(validate_search(query="q", known_strategies=NAMES)))
    fb = validate_feedback(request_id=out.request_id, event_id="e1", entity_id="b", action="click", position=1)
    assert asyncio.run(service.feedback(fb)) is False
    assert asyncio.run(service.feedback(fb)) is True
    with pytest.raises(NotFound):
        asyncio.run(service.feedback(validate_feedback(request_id="x", event_id="e2", entity_id="b", action="click")))
