import asyncio

import pytest

from ltrr.errors import BackendUnavailable
from ltrr.fanout import Fanout
from ltrr.types import Candidate, ParsedQuery, Query

Q = Query("q", ParsedQuery("q", "q"))


def cand(eid, rank):
    return Candidate(eid, "track", eid, "", 1.0 / rank, rank).to_dict()


async def fast(query, k):
    return [cand(f"t{i}", i) for i in range(1, 10)]


async def slow(query, k):
    await asyncio.sleep(5)
    return [cand("late", 1)]


async def broken(query, k):
    raise BackendUnavailable("meilisearch at http://127.0.0.1:1 unreachable")


def test_fanout_reports_each_outcome():
    f = Fanout(
        {"a": fast, "b": slow, "c": broken, "d": fast},
        {"a": 1.0, "b": 0.05, "c": 1.0, "d": 1.0},
    )
    results, reports = asyncio.run(f.run(Q, {"a": 3, "b": 5, "c": 5, "d": 0}, {"a": 0.9}))
    by = {r.strategy: r for r in reports}
    assert [r.strategy for r in reports] == ["a", "b", "c", "d"]
    assert (by["a"].status, by["a"].requested, by["a"].returned, by["a"].propensity) == ("ok", 3, 3, 0.9)
    assert [c.entity_id for c in results["a"]] == ["t1", "t2", "t3"]
    assert (by["b"].status, by["b"].returned, by["b"].detail) == ("timeout", 0, "no answer within 50 ms")
    assert by["b"].latency_ms < 1000
    assert by["c"].status == "error"
    assert by["c"].detail == "BackendUnavailable: meilisearch at http://127.0.0.1:1 unreachable"
    assert (by["d"].status, by["d"].requested) == ("skipped", 0)
    assert "d" not in results


def test_fanout_runs_in_parallel():
    async def sleepy(query, k):
        await asyncio.sleep(0.2)
        return [cand("x", 1)]

    f = Fanout({"a": sleepy, "b": sleepy, "c": sleepy}, {"a": 1, "b": 1, "c": 1})
    loop = asyncio.new_event_loop()
    t0 = loop.time()
    loop.run_until_complete(f.run(Q, {"a": 1, "b": 1, "c": 1}))
    elapsed = loop.time() - t0
    loop.close()
    assert elapsed < 0.5  # three 0.2 s calls in sequence would take 0.6 s


def test_fanout_needs_deadlines():
    with pytest.raises(ValueError, match="lacks a deadline for \\['b'\\]"):
        Fanout({"a": fast, "b": fast}, {"a": 1.0})
