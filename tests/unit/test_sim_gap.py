"""Recall shortfall and budget raises (`ltrr.sim.gap`) on a hand-computed fixture.

Two strategies a, b, ladder (0, 10, 25), per_call 0.1 and per_candidate 0.01 (a strategy at 10 costs 0.2, at
25 costs 0.35). Four queries, the wanted item's ranks and live's plan:

    q   kind  ranks (a, b)   live     live hit  all-at-max hit  cause of the miss
    0   tag   (-, 20)        a@10     no        yes             not called (only b holds it)
    1   tag   (20, -)        a@10     no        yes             budget too small (a at 10 < 20)
    2   name  (5, -)         a@10     yes       yes
    3   name  (-, -)         b@10     no        no              (no strategy holds it: not a shortfall)

Raises on the two tag queries: a to 25 finds q1 (+1) for 2 x 0.15 -> net +0.7; b to 25 finds q0 (+1) for
2 x 0.35 -> +0.3; a to 10 changes nothing -> 0; b to 10 finds nothing for 2 x 0.2 -> -0.4.
Oracle values: q0 b@25 0.65, q1 a@25 0.65, q2 a@10 0.8, q3 (nothing holds it) a@10 -0.2: 1.9 in all.
Best plan in hindsight over all four: a@25, -0.35 + 0.65 + 0.65 - 0.35 = 0.6 (next: a@10 and a@25 + b@25, 0.2).
On the tag queries alone: a@25 + b@25, 0.3 + 0.3 = 0.6; on the name queries alone: a@10, 0.8 - 0.2 = 0.6.
On the name queries nothing new is found: a to 10 costs 0.2 (q3 only), b to 10 costs 0.2 (q2 only), a to 25
0.15 + 0.35 and b to 25 0.35 + 0.15.
"""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.config import CostConfig
from ltrr.errors import InvalidRequest
from ltrr.sim.gap import NOT_CALLED, TOO_SMALL, additions, query_class, router_regret, shortfall
from ltrr.sim.regret import QueryRecord, Scored, score_run


def _scored() -> Scored:
    space = ActionSpace.build(("a", "b"), (0, 10, 25), CostConfig(per_call=0.1, per_candidate=0.01, per_ms=0.0))
    rows = [
        ("tag", {"a": None, "b": 20}, {"a": 10}),
        ("tag", {"a": 20, "b": None}, {"a": 10}),
        ("name", {"a": 5, "b": None}, {"a": 10}),
        ("name", {"a": None, "b": None}, {"b": 10}),
    ]
    records = [
        QueryRecord(i, "sim:1", kind, "q", "e", ranks, {"live": plan}) for i, (kind, ranks, plan) in enumerate(rows)
    ]
    return score_run(space, records, latency_ms={"a": 0.0, "b": 0.0})


def test_shortfall_counts_needed_hits_and_each_miss_by_kind_and_cause() -> None:
    sf = shortfall(_scored(), "live")
    assert (sf.n, sf.hits, sf.top_hits) == (4, 1, 3)
    assert sf.ratio == pytest.approx(1 / 3)
    assert sf.needed == 2  # ceil(0.98 x 3 - 1)
    assert sf.misses == {("tag", NOT_CALLED): 1, ("tag", TOO_SMALL): 1}


def test_shortfall_on_a_subset_with_nothing_missing() -> None:
    sf = shortfall(_scored(), "live", np.array([False, False, True, True]))
    assert (sf.n, sf.hits, sf.top_hits, sf.needed, dict(sf.misses)) == (2, 1, 1, 0, {})
    assert shortfall(_scored(), "live", np.array([True, True, False, False]), target=0.5).needed == 1


def test_additions_rank_every_raise_per_group_by_net_value() -> None:
    out = additions(_scored(), "live", ["tag", "tag", "name", "name"])
    tag = [(a.strategy, a.k, a.hits, round(a.cost, 6), round(a.net, 6), a.n) for a in out["tag"]]
    assert tag == [
        ("a", 25, 1, 0.3, 0.7, 2),
        ("b", 25, 1, 0.7, 0.3, 2),
        ("a", 10, 0, 0.0, 0.0, 2),
        ("b", 10, 0, 0.4, -0.4, 2),
    ]
    name = [(a.strategy, a.k, a.hits, round(a.net, 6)) for a in out["name"]]
    assert name == [("a", 10, 0, -0.2), ("b", 10, 0, -0.2), ("a", 25, 0, -0.5), ("b", 25, 0, -0.5)]


def test_additions_only_over_the_selected_rows() -> None:
    out = additions(_scored(), "live", ["tag", "tag", "name", "name"], np.array([True, False, False, False]))
    assert list(out) == ["tag"]
    best = out["tag"][0]
    assert (best.strategy, best.k, best.hits, best.n) == ("b", 25, 1, 1)
    assert best.net == pytest.approx(1 - 0.35)


def test_bad_arguments_name_the_field() -> None:
    s = _scored()
    with pytest.raises(InvalidRequest, match="policy"):
        shortfall(s, "nobody")
    with pytest.raises(InvalidRequest, match="policy"):
        additions(s, "uniform", ["x"] * 4)  # an expectation over actions, not a played policy
    with pytest.raises(InvalidRequest, match="rows"):
        shortfall(s, "live", np.array([True]))
    with pytest.raises(InvalidRequest, match="groups"):
        additions(s, "live", ["tag"])


def test_query_class_is_the_largest_class_feature_with_a_recognised_tag() -> None:
    assert query_class({"class.text": 1.0, "class.name": 0.0, "has_tag": 0.0}) == "text"
    assert query_class({"class.text": 1.0, "has_genre": 0.6}) == "text+tag"
    assert query_class({"class.facet": 0.9, "has_tag": 0.94}) == "facet+tag"
    assert query_class({"class.b": 0.5, "class.a": 0.5}) == "a"
    assert query_class({"has_tag": 1.0}) == "unknown"


def test_router_regret_plays_each_groups_best_plan_in_hindsight() -> None:
    s = _scored()
    oracle = 0.65 + 0.65 + 0.8 - 0.2  # 1.9
    assert router_regret(s, ["x"] * 4) == pytest.approx(oracle - 0.6)  # one group: the best static plan
    assert router_regret(s, ["tag", "tag", "name", "name"]) == pytest.approx(oracle - 0.6 - 0.6)
    # one group per query: the oracle itself
    assert router_regret(s, ["a", "b", "c", "d"]) == pytest.approx(0.0)
    # over a subset only: q0 alone, best plan b@25 = the oracle
    assert router_regret(s, ["x"] * 4, np.array([True, False, False, False])) == pytest.approx(0.0)
    with pytest.raises(InvalidRequest, match="groups"):
        router_regret(s, ["x"])
