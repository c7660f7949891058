"""Regret scoring on a hand-computed fixture: 2 strategies, ladder (0, 10, 25), 3 queries.

Costs (per_call 0.1, per_candidate 0.01, no latency term): a strategy at 10 costs 0.2, at 25
costs 0.35. Action id = 3 * level(a) + level(b):

    id  plan (a, b)  cost   q1 (a@5)  q2 (a@20, b@3)  q3 (none)
    1   (0, 10)      0.20   -0.20     0.80            -0.20
    2   (0, 25)      0.35   -0.35     0.65            -0.35
    3   (10, 0)      0.20    0.80    -0.20            -0.20
    4   (10, 10)     0.40    0.60     0.60            -0.40
    5   (10, 25)     0.55    0.45     0.45            -0.55
    6   (25, 0)      0.35    0.65     0.65            -0.35
    7   (25, 10)     0.55    0.45     0.45            -0.55
    8   (25, 25)     0.70    0.30     0.30            -0.70

Oracle: id 3, id 1, id 1 (the tie with id 3 goes to the lower id): 0.8 + 0.8 - 0.2 = 1.4.
Sums per action: 0.4, -0.05, 0.4, 0.8, 0.35, 0.95, 0.35, -0.1: best static = id 6 (a at 25), regret 0.45.
All at max = id 8, regret 1.5. Uniform: mean values 0.3375, 0.4625, -0.4125 (sum 0.3875), regret 1.0125.
Live plays id 4, id 3, id 2: values 0.6, -0.2, -0.35, regret 0.2 + 1.0 + 0.15 = 1.35.
"""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.config import CostConfig
from ltrr.errors import InvalidRequest
from ltrr.sim.regret import (
    ALL_MAX,
    ORACLE,
    STATIC,
    UNIFORM,
    QueryRecord,
    action_hits,
    cumulative_regret,
    played,
    rank_matrix,
    routing,
    run_latency,
    score_run,
)
from ltrr.sim.report import markdown, summary


def _space() -> ActionSpace:
    return ActionSpace.build(("a", "b"), (0, 10, 25), CostConfig(per_call=0.1, per_candidate=0.01, per_ms=0.0))


def _records() -> list[QueryRecord]:
    rows = [
        ({"a": 5, "b": None}, {"a": 10, "b": 10}, "name"),
        ({"a": 20, "b": 3}, {"a": 10, "b": 0}, "like"),
        ({"a": None, "b": None}, {"a": 0, "b": 25}, "name"),
    ]
    return [
        QueryRecord(i, "sim:1", kind, "q", "e", ranks, {"live": plan}, {"live": None}, {"a": 1.0})
        for i, (ranks, plan, kind) in enumerate(rows)
    ]


def test_action_hits_and_values_by_hand() -> None:
    space = _space()
    hits = action_hits(space, rank_matrix(space, _records()))
    assert hits.tolist() == [
        [0, 0, 0, 1, 1, 1, 1, 1, 1],
        [0, 1, 1, 0, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
    assert space.costs[1:].round(6).tolist() == [0.2, 0.35, 0.2, 0.4, 0.55, 0.35, 0.55, 0.7]


def test_score_run_exact_regret_oracle_static_uniform() -> None:
    scored = score_run(_space(), _records(), latency_ms={"a": 0.0, "b": 0.0})
    table = {s.policy: s for s in scored.table()}
    assert list(table) == [ORACLE, "live", STATIC, ALL_MAX, UNIFORM]
    assert scored.oracle.actions is not None and scored.oracle.actions.tolist() == [3, 1, 1]
    assert table[ORACLE].regret == 0.0 and table[ORACLE].value == pytest.approx(1.4 / 3)
    assert scored.static_budgets() == {"a": 25, "b": 0}
    assert table[STATIC].regret == pytest.approx(0.45)
    assert table[ALL_MAX].regret == pytest.approx(1.5)
    assert table[UNIFORM].regret == pytest.approx(1.0125)
    assert table[UNIFORM].recall == pytest.approx((6 / 8 + 7 / 8 + 0) / 3)
    assert table[UNIFORM].cost == pytest.approx(3.3 / 8)
    assert table[UNIFORM].candidates == pytest.approx(2 * (3 * 10 + 3 * 25) / 8)  # levels 10, 25: 3 actions of 8 each
    live = table["live"]
    assert live.regret == pytest.approx(1.35) and live.mean_regret == pytest.approx(0.45)
    assert live.recall == pytest.approx(1 / 3)
    assert live.candidates == pytest.approx(55 / 3) and live.calls == pytest.approx(4 / 3)
    assert cumulative_regret(scored.trajectories["live"], scored.oracle) == pytest.approx([0.2, 1.2, 1.35])
    assert routing(scored.space, scored.trajectories["live"]) == pytest.approx({"a": 2 / 3, "b": 2 / 3})
    half = {s.policy: s for s in scored.table(slice(1, None))}
    assert half["live"].regret == pytest.approx(1.15) and half[STATIC].n == 2
    assert scored.kinds() == ["like", "name"] and scored.kind_rows("name").tolist() == [True, False, True]


def test_latency_prices_the_actions() -> None:
    space = ActionSpace.build(("a", "b"), (0, 10, 25), CostConfig(per_call=0.1, per_candidate=0.01, per_ms=0.001))
    recs = [
        QueryRecord(0, "u", "name", "q", "e", {"a": 1}, {"live": {"a": 10}}, live_latency_ms={"a": 10.0}),
        QueryRecord(1, "u", "name", "q", "e", {"a": 1}, {"live": {"a": 10}}, live_latency_ms={"a": 30.0},
                    full_latency_ms={"a": 99.0, "b": 50.0}),
    ]  # fmt: skip
    # a: mean of its live calls (20 ms); b never called live: mean of its full-information calls.
    assert run_latency(space, recs) == {"a": 20.0, "b": 50.0}
    assert run_latency(space, recs[:1]) == {"a": 10.0, "b": 10.0}  # b: the configured prior
    scored = score_run(space, recs)
    assert scored.space.costs[space.action_for_budgets({"a": 10})] == pytest.approx(0.1 + 0.02 + 0.1)
    assert scored.trajectories["live"].value == pytest.approx([1 - 0.22, 1 - 0.22])


def test_records_round_trip() -> None:
    rec = _records()[1]
    assert QueryRecord.from_dict(rec.to_dict()) == rec


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "records: must hold at least one query"),
        (
            [QueryRecord(0, "u", "k", "q", "e", {"a": 0}, {"live": {"a": 10}})],
            "records[0].ranks['a']: must be >= 1 or None, got 0",
        ),
        (
            [
                QueryRecord(0, "u", "k", "q", "e", {}, {"live": {"a": 10}}),
                QueryRecord(1, "u", "k", "q", "e", {}, {"vw": {"a": 10}}),
            ],
            "records: policy 'live' has no action for query 1",
        ),
    ],
)
def test_score_run_rejects(records: list[QueryRecord], message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        score_run(_space(), records)
    assert str(err.value) == message


def test_played_rejects_bad_actions() -> None:
    space = _space()
    hits = np.zeros((2, space.n_actions))
    with pytest.raises(InvalidRequest, match=r"^actions: must hold one action per query \(2\), got shape \(3,\)$"):
        played(space, hits, space.costs, [1, 2, 3])
    with pytest.raises(InvalidRequest, match=r"^actions: must be valid action ids in \[1, 8\]$"):
        played(space, hits, space.costs, [0, 2])


def test_report_renders_every_table() -> None:
    scored = score_run(_space(), _records(), latency_ms={"a": 0.0, "b": 0.0})
    md = markdown(scored, {"queries": 3}, families={})
    for title in ("## All queries", "## Second half", "## First 3 queries", "## Recall per query kind",
                  "## Routing per query kind: share of queries on which **live**", "## Full information"):  # fmt: skip
        assert title in md
    assert "| live | 1.4 | 0.4500 | 0.333 | 18.3 | 1.33 |" in md  # cumulative regret 1.35, one decimal
    js = summary(scored)
    assert js["best_static"] == {"a": 25, "b": 0} and js["routing_live"]["like"] == {"a": 1.0, "b": 0.0}


def test_every_strategy_at_its_default_k_is_scored_when_given() -> None:
    from ltrr.sim.regret import ALL_DEFAULT

    scored = score_run(_space(), _records(), latency_ms={"a": 0.0, "b": 0.0}, default_k={"a": 10, "b": 10})
    tr = scored.trajectories[ALL_DEFAULT]  # id 4 (10, 10): values 0.6, 0.6, -0.4 against the oracle's 1.4
    assert tr.actions.tolist() == [4, 4, 4] and tr.candidates.tolist() == [20.0, 20.0, 20.0]
    assert float(cumulative_regret(tr, scored.oracle)[-1]) == pytest.approx(1.4 - 0.8)
    assert ALL_DEFAULT not in score_run(_space(), _records()).trajectories
