"""Skipping poison events: bisection down to the bad items, infrastructure errors propagate, counts and logs."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from ltrr.errors import BackendTimeout, InvalidRequest
from ltrr.poison import SkippedEvents, apply_or_skip


class Batches:
    """``apply`` over items ``0..n-1`` that raises ValueError for a range holding a bad item."""

    def __init__(self, bad: set[int], error: Exception | None = None) -> None:
        self.bad, self.error = bad, error
        self.calls: list[tuple[int, int]] = []
        self.applied: list[int] = []
        self.skipped: list[tuple[int, str]] = []

    def apply(self, lo: int, hi: int) -> int:
        self.calls.append((lo, hi))
        if self.bad.intersection(range(lo, hi)):
            raise self.error or ValueError(f"bad in [{lo}, {hi})")
        self.applied.extend(range(lo, hi))
        return hi - lo

    def skip(self, i: int, exc: Exception) -> int:
        self.skipped.append((i, str(exc)))
        return 0


def test_bisects_down_to_the_bad_items_and_keeps_the_order():
    b = Batches({2})
    assert apply_or_skip(8, b.apply, b.skip) == 7
    # [0,8) fails -> [0,4) fails -> [0,2) ok, [2,4) fails -> [2,3) skipped, [3,4) ok -> [4,8) ok
    assert b.calls == [(0, 8), (0, 4), (0, 2), (2, 4), (2, 3), (3, 4), (4, 8)]
    assert b.applied == [0, 1, 3, 4, 5, 6, 7] and b.skipped == [(2, "bad in [2, 3)")]


def test_every_item_bad_and_nothing_bad():
    worst = Batches({0, 1, 2})
    assert apply_or_skip(3, worst.apply, worst.skip) == 0
    assert [i for i, _ in worst.skipped] == [0, 1, 2] and worst.applied == []
    good = Batches(set())
    assert apply_or_skip(500, good.apply, good.skip) == 500 and good.calls == [(0, 500)], "one call when all is well"
    assert apply_or_skip(0, good.apply, good.skip) == 0 and len(good.calls) == 1, "no call for no items"


def test_one_bad_item_in_a_large_batch_costs_logarithmically_many_calls():
    b = Batches({317})
    assert apply_or_skip(500, b.apply, b.skip) == 499
    assert len(b.calls) == 1 + 2 * 9  # ceil(log2(500)) = 9 levels, two calls each


@pytest.mark.parametrize(
    "error",
    [BackendTimeout("meilisearch task 7 (documentEdition) is still processing"), sqlite3.OperationalError("locked"),
     ConnectionRefusedError("refused")],  # fmt: skip
)
def test_infrastructure_errors_propagate_and_skip_nothing(error):
    b = Batches({2}, error)
    with pytest.raises(type(error)):
        apply_or_skip(8, b.apply, b.skip)
    assert b.skipped == [] and b.calls == [(0, 8)]


def test_none_stops_at_once():
    b = Batches({0})
    assert apply_or_skip(4, b.apply, lambda i, exc: None) is None
    assert b.calls == [(0, 4), (0, 2), (0, 1)], "the cursor moved under us: nothing more is applied"


def test_skipped_events_count_by_stage_and_log_once(caplog):
    skipped = SkippedEvents(logging.getLogger("ltrr.test"))
    with caplog.at_level("WARNING", logger="ltrr.test"):
        with skipped.guard("open", "search r1", 4):
            raise InvalidRequest("query", "must not be empty")
        with skipped.guard("open", "search r2", 5):
            pass
        skipped.record("memory", "feedback e9", 12, KeyError("x"))
    assert skipped.total == 2 and skipped.by_stage() == {"open": 1, "memory": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "learner: skipped open event search r1 (seq 4), which failed to apply "
        "(InvalidRequest: query: must not be empty); not retried",
        "learner: skipped memory event feedback e9 (seq 12), which failed to apply (KeyError: 'x'); not retried",
    ]
    with pytest.raises(BackendTimeout), skipped.guard("credit", "settlement of r3", 6):
        raise BackendTimeout("slow")
    assert skipped.total == 2, "an infrastructure error is not the event's fault"
