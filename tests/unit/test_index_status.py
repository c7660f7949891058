"""IndexBacklog against a real catalog store, and the search path reporting it."""

import asyncio

import pytest

from ltrr.catalog.store import CatalogStore
from ltrr.eventlog import SQLiteEventLog
from ltrr.fanout import OK, Fanout
from ltrr.index_status import IndexBacklog
from ltrr.service import SearchService
from ltrr.types import Entity
from ltrr.validation import validate_search
from tests.unit.test_service import NAMES, fake, parse, planner


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path):
    s = CatalogStore(tmp_path / "catalog.sqlite")
    s.upsert_entities([Entity(f"artist:{i}", "artist", f"A{i}") for i in range(10)])  # seq 1..10
    yield s
    s.close()


def test_backlog_counts_entities_after_each_watermark(store):
    clock = Clock()
    b = IndexBacklog(store, {"lexical": "lexical@x/idx", "vector": "vector@y/col"}, ttl_s=1.0, clock=clock)
    assert b.pending() == {"lexical": 10, "vector": 10}  # no watermark yet: nothing indexed
    store.set_watermark("lexical@x/idx", store.max_seq())
    store.set_watermark("vector@y/col", 4)
    assert b.pending() == {"lexical": 10, "vector": 10}  # cached for ttl_s
    clock.t = 1.0
    assert b.pending() == {"lexical": 0, "vector": 6}
    assert b.detail("lexical") == ""
    assert b.detail("vector") == "index catching up: 6 of 10 catalog entities not indexed yet"
    assert b.detail("graph") == ""  # unknown strategies have no backlog


def test_negative_ttl_is_rejected(store):
    with pytest.raises(ValueError, match=r"^`ttl_s` must be >= 0, got -1$"):
        IndexBacklog(store, {}, ttl_s=-1)


def test_search_reports_a_lagging_index_and_is_degraded(store, tmp_path):
    targets = {n: f"{n}@t/i" for n in NAMES}
    for n in NAMES:
        store.set_watermark(targets[n], store.max_seq())
    store.set_watermark(targets["vector"], 7)
    backlog = IndexBacklog(store, targets, ttl_s=0.0)
    callers = {n: fake(["a", "b"]) for n in NAMES}
    events = SQLiteEventLog(tmp_path / "ev.sqlite")
    svc = SearchService(
        Fanout(callers, {n: 1.0 for n in NAMES}), parse, events, {n: 2 for n in NAMES}, planner(), backlog=backlog
    )
    p = validate_search(query="q", k=3, strategies=NAMES, known_strategies=NAMES)
    out = asyncio.run(svc.search(p))
    by = {c.strategy: c for c in out.calls}
    assert all(c.status == OK for c in out.calls)
    assert by["vector"].detail == "index catching up: 3 of 10 catalog entities not indexed yet"
    assert [by[n].detail for n in ("lexical", "graph", "memory")] == ["", "", ""]
    assert out.degraded
    store.set_watermark(targets["vector"], store.max_seq())  # caught up: whole answers again
    out = asyncio.run(svc.search(p))
    assert not out.degraded and all(c.detail == "" for c in out.calls)
    events.close()
