"""The drift report: the windows around a drift and each contender's regret and recall in them.

The scored run is test_sim_regret's hand-computed fixture (2 strategies, 3 queries): per query, the
oracle's values 0.8, 0.8, -0.2 and live's 0.6, -0.2, -0.35, so live's regrets are 0.2, 1.0, 0.15;
live's candidates hold the wanted item on query 0 only.
"""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.config import CostConfig
from ltrr.errors import InvalidRequest
from ltrr.sim.regret import QueryRecord, drift_windows, score_run
from ltrr.sim.report import drift_section


def _rows(w) -> list[int]:  # type: ignore[no-untyped-def]
    return np.flatnonzero(w.rows).tolist()


def test_drift_windows_split_before_after_and_later() -> None:
    ws = drift_windows(range(10), at=4, width=2)
    assert [(w.name, w.first, w.last, _rows(w)) for w in ws] == [
        ("before", 2, 3, [2, 3]),
        ("after", 4, 5, [4, 5]),
        ("later", 6, 9, [6, 7, 8, 9]),
    ]
    # A window holds only the queries the run has: clipped at both ends, "later" left out when empty.
    ws = drift_windows([0, 1, 2, 5, 8, 9], at=8, width=5)
    assert [(w.name, w.first, w.last, _rows(w)) for w in ws] == [("before", 5, 5, [3]), ("after", 8, 9, [4, 5])]


@pytest.mark.parametrize(
    "at, width, message",
    [
        (0, 2, r"^at: must split the queries \(indices 0\.\.9\), got 0$"),
        (10, 2, r"^at: must split the queries \(indices 0\.\.9\), got 10$"),
        (4, 0, r"^width: must be an int >= 1, got 0$"),
    ],
)
def test_drift_windows_reject(at: int, width: int, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        drift_windows(range(10), at=at, width=width)


def _scored():  # type: ignore[no-untyped-def]
    space = ActionSpace.build(("a", "b"), (0, 10, 25), CostConfig(per_call=0.1, per_candidate=0.01, per_ms=0.0))
    rows = [
        ({"a": 5, "b": None}, {"a": 10, "b": 10}, "name", "e"),
        ({"a": 20, "b": 3}, {"a": 10, "b": 0}, "like", "new"),
        ({"a": None, "b": None}, {"a": 0, "b": 25}, "name", "e"),
    ]
    records = [
        QueryRecord(i, "sim:1", kind, "q", wanted, ranks, {"live": plan}, {"live": None}, {"a": 1.0})
        for i, (ranks, plan, kind, wanted) in enumerate(rows)
    ]
    return score_run(space, records)


def test_drift_section_hand_computed() -> None:
    lines = drift_section(_scored(), at=1, new_entities=["new"])
    assert lines[0] == "## Drift at query index 1: mean regret and recall before and after"
    assert "1 new entities upserted before query 1; 1 queries want one." in lines
    assert (
        "| policy | mean regret before (0–0) | mean regret after (1–2) | recall before (0–0) | recall after (1–2) "
        "| recall, new entities |"
    ) in lines
    # live: regret 0.2 before; (1.0 + 0.15) / 2 = 0.575 after; recall 1 then 0; query 1 wants "new": a miss.
    assert "| live | 0.2000 | 0.5750 | 1.000 | 0.000 | 0.000 |" in lines
    # best static (a at 25, id 6): values 0.65, 0.65, -0.35 -> regrets 0.15, 0.15, 0.15; it finds query 1's item.
    assert "| best static | 0.1500 | 0.1500 | 1.000 | 0.500 | 1.000 |" in lines
    assert not any(line.startswith("| oracle |") for line in lines)
    without = drift_section(_scored(), at=1)
    assert "| live | 0.2000 | 0.5750 | 1.000 | 0.000 |" in without
