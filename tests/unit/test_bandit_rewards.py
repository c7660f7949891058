"""Semi-bandit rewards from a settled search (ltrr.bandit.rewards): exact tables and the event join."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ltrr.bandit import ContextFeaturizer, Decision, semi_bandit_rewards, strategy_hits
from ltrr.bandit.rewards import Observation, observe
from ltrr.eventlog import SearchEvent

LADDER = (0, 10, 25, 50, 100)


def ids(n: int, prefix: str = "e") -> list[str]:
    return [f"{prefix}{i}" for i in range(1, n + 1)]  # e{r} is at rank r


@pytest.mark.parametrize(
    ("budgets", "candidates", "ok", "wanted", "expected"),
    [
        ({"lex": 50}, {"lex": ids(50)}, {"lex": True}, "e7", {("lex", 10): 1.0, ("lex", 25): 1.0, ("lex", 50): 1.0}),
        ({"lex": 50}, {"lex": ids(50)}, {"lex": True}, "e30", {("lex", 10): 0.0, ("lex", 25): 0.0, ("lex", 50): 1.0}),
        ({"lex": 50}, {"lex": ids(50)}, {"lex": True}, "e10", {("lex", 10): 1.0, ("lex", 25): 1.0, ("lex", 50): 1.0}),
        ({"lex": 50}, {"lex": ids(50)}, {"lex": True}, "e11", {("lex", 10): 0.0, ("lex", 25): 1.0, ("lex", 50): 1.0}),
        ({"lex": 50}, {"lex": ids(50)}, {"lex": True}, "x", {("lex", 10): 0.0, ("lex", 25): 0.0, ("lex", 50): 0.0}),
        ({"lex": 50}, {"lex": ids(50)}, {"lex": True}, None, {("lex", 10): 0.0, ("lex", 25): 0.0, ("lex", 50): 0.0}),
        ({"lex": 50}, {"lex": ids(50)}, {"lex": False}, "e7", {}),
        ({"lex": 50}, {"lex": ids(50)}, {}, "e7", {}),
        ({"lex": 0}, {"lex": ids(50)}, {"lex": True}, "e7", {}),
        ({"lex": 10}, {"lex": []}, {"lex": True}, "e7", {("lex", 10): 0.0}),
        ({"lex": 10}, {}, {"lex": True}, "e7", {("lex", 10): 0.0}),
        # fewer candidates than the budget: every budget up to k_s is still observed
        ({"lex": 50}, {"lex": ids(3)}, {"lex": True}, "e3", {("lex", 10): 1.0, ("lex", 25): 1.0, ("lex", 50): 1.0}),
        ({"lex": 50}, {"lex": ids(3)}, {"lex": True}, "e4", {("lex", 10): 0.0, ("lex", 25): 0.0, ("lex", 50): 0.0}),
        # more candidates than the budget: only the top k_s count
        ({"lex": 25}, {"lex": ids(60)}, {"lex": True}, "e30", {("lex", 10): 0.0, ("lex", 25): 0.0}),
        # a budget off the ladder observes the ladder budgets below it
        ({"lex": 30}, {"lex": ids(30)}, {"lex": True}, "e30", {("lex", 10): 0.0, ("lex", 25): 0.0}),
    ],
    ids=[
        "rank7",
        "rank30",
        "rank10",
        "rank11",
        "miss",
        "no-feedback",
        "failed",
        "ok-missing",
        "not-called",
        "empty-list",
        "no-list",
        "short-hit",
        "short-miss",
        "beyond-budget",
        "off-ladder",
    ],
)
def test_semi_bandit_rewards_table(
    budgets: dict[str, int],
    candidates: dict[str, list[str]],
    ok: dict[str, bool],
    wanted: str | None,
    expected: dict[tuple[str, int], float],
) -> None:
    assert semi_bandit_rewards(budgets, LADDER, candidates, ok, wanted) == expected


def test_semi_bandit_rewards_several_strategies() -> None:
    budgets = {"lex": 25, "vec": 10, "graph": 0, "mem": 100}
    candidates = {"lex": ids(25), "vec": ["v1", "e5"], "graph": ids(10), "mem": ["m1"]}
    ok = {"lex": True, "vec": True, "graph": True, "mem": False}
    assert semi_bandit_rewards(budgets, LADDER, candidates, ok, "e5") == {
        ("lex", 10): 1.0,
        ("lex", 25): 1.0,
        ("vec", 10): 1.0,
    }
    assert semi_bandit_rewards(budgets, LADDER, candidates, ok, None) == {
        ("lex", 10): 0.0,
        ("lex", 25): 0.0,
        ("vec", 10): 0.0,
    }


@pytest.mark.parametrize(
    ("rewards", "hits"),
    [
        ({}, {}),
        ({("a", 10): 0.0, ("a", 25): 1.0}, {"a": True}),
        ({("a", 25): 1.0, ("a", 10): 0.0}, {"a": True}),  # order does not matter: the largest budget decides
        ({("b", 10): 0.0}, {"b": False}),
        ({("a", 10): 1.0, ("a", 50): 1.0, ("b", 10): 0.0, ("b", 25): 0.0}, {"a": True, "b": False}),
    ],
)
def test_strategy_hits(rewards: dict[tuple[str, int], float], hits: dict[str, bool]) -> None:
    assert strategy_hits(rewards) == hits


# --------------------------------------------------------------------------- the event join
def decision_doc(**overrides: Any) -> dict[str, Any]:
    doc = Decision(
        budgets={"lexical": 25, "vector": 10, "graph": 0},
        action=0,
        propensity=0.25,
        inclusion={"lexical": 0.9, "vector": 0.5, "graph": 0.2},
        budget_prob={"lexical": 0.4, "vector": 0.3, "graph": 0.8},
        expected_recall=0.6,
        cost=0.03,
        algorithm="linear_ts",
        policy_version="linear_ts-3",
    ).to_dict()
    doc.update(overrides)
    return doc


def event(decision: dict[str, Any] | None, **overrides: Any) -> SearchEvent:
    fields: dict[str, Any] = {
        "request_id": "r1",
        "ts": 1.0,
        "query": "songs like daft punk",
        "user_id": "u1",
        "shown": ("e1", "e2"),
        "calls": (
            {"strategy": "lexical", "status": "ok", "k": 25},
            {"strategy": "vector", "status": "ok", "k": 10},
        ),
        "candidates": {"lexical": ids(25), "vector": ["v1", "v2", "e20"]},
        "features": {"bias": 1.0, "q_tokens": 0.5, "class.seed": 1.0, "hist.vector": 0.25},
        "decision": decision,
    }
    fields.update(overrides)
    return SearchEvent(**fields)


@pytest.fixture
def fz() -> ContextFeaturizer:
    return ContextFeaturizer(("lexical", "vector", "graph"))


def test_observe_hit(fz: ContextFeaturizer) -> None:
    obs = observe(event(decision_doc()), "e20", fz, LADDER)
    assert isinstance(obs, Observation)
    assert obs.decision == Decision.from_dict(decision_doc())
    assert obs.decision.policy_version == "linear_ts-3"
    assert obs.decision.x is not None
    np.testing.assert_array_equal(obs.decision.x, fz.vector(event(None).features))
    assert obs.decision.x[fz.names.index("hist.vector")] == 0.25
    # lexical: e20 at rank 20 of 25 -> 0 at 10, 1 at 25; vector: e20 at rank 3 of 10 -> 1
    assert obs.rewards == {("lexical", 10): 0.0, ("lexical", 25): 1.0, ("vector", 10): 1.0}
    assert obs.hits == {"lexical": True, "vector": True}
    assert obs.query_class == 3  # seed
    assert obs.union_hit == 1.0


def test_observe_failed_call_and_miss(fz: ContextFeaturizer) -> None:
    calls = ({"strategy": "lexical", "status": "timeout"}, {"strategy": "vector", "status": "ok"})
    obs = observe(event(decision_doc(), calls=calls), "e5", fz, LADDER)
    assert obs is not None
    assert obs.rewards == {("vector", 10): 0.0}
    assert obs.hits == {"vector": False}
    assert obs.union_hit == 0.0


def test_observe_no_feedback_and_no_candidates(fz: ContextFeaturizer) -> None:
    obs = observe(event(decision_doc(), candidates=None), None, fz, LADDER)
    assert obs is not None
    assert obs.rewards == {("lexical", 10): 0.0, ("lexical", 25): 0.0, ("vector", 10): 0.0}
    assert obs.union_hit == 0.0


def test_observe_without_features_is_text_class(fz: ContextFeaturizer) -> None:
    obs = observe(event(decision_doc(), features={}), "e1", fz, LADDER)
    assert obs is not None
    assert obs.query_class == 0
    np.testing.assert_array_equal(obs.decision.x, np.zeros(fz.dim))


@pytest.mark.parametrize("decision", [None, {}])
def test_observe_without_decision(fz: ContextFeaturizer, decision: dict[str, Any] | None) -> None:
    assert observe(event(decision), "e1", fz, LADDER) is None


def test_arm_visibility_by_hand():
    from ltrr.bandit.rewards import arm_visibility

    cands = {"lexical": ["a", "b", "x", "y"], "graph": ["c"], "vector": []}
    shown = ["a", "c", "b"]  # x and y were retrieved but not shown
    ok = {"lexical": True, "graph": True, "vector": True, "memory": False}
    budgets = {"lexical": 4, "graph": 2, "vector": 2, "memory": 2}
    v = arm_visibility(budgets, (0, 2, 4), cands, ok, shown, position_bias=1.0)
    assert v == pytest.approx(
        {
            ("lexical", 2): (1 + 1 / 3) / 2,  # a at 1, b at 3
            ("lexical", 4): (1 + 1 / 3 + 0 + 0) / 4,
            ("graph", 2): 1 / 2,  # its one candidate, c, at 2
            ("vector", 2): 1.0,  # nothing to see: an exact miss
        }
    ), "memory failed: not observed"
    flat = arm_visibility(budgets, (0, 2, 4), cands, ok, shown, position_bias=0.0)
    assert flat[("lexical", 4)] == 0.5 and flat[("lexical", 2)] == 1.0, "0: what was shown was seen"


def test_a_hidden_hit_teaches_little_and_a_seen_miss_teaches_fully():
    from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy

    fz = ContextFeaturizer(["lexical"])
    x = fz.vector({"bias": 1.0})
    pol = new_policy(PolicyConfig(ladder=(0, 10), ridge=1.0, prior_hit_rate=0.5), ["lexical"], fz.dim)
    d = pol.forced(x, {"lexical": 10})
    pol.update(d, {("lexical", 10): 0.0}, {("lexical", 10): 0.1})  # nearly invisible: barely moves
    assert pol.arms.mean(x)[0] == pytest.approx(0.5 / (1 + 0.01), rel=1e-9)
    pol.update(d, {("lexical", 10): 0.0}, {("lexical", 10): 1.0})  # seen and not clicked: a full miss
    assert pol.arms.mean(x)[0] == pytest.approx(0.5 / 2.01, rel=1e-9)
    with pytest.raises(ValueError, match=r"`visibility` must be in \[0, 1\], got 2.0"):
        pol.update(d, {("lexical", 10): 1.0}, {("lexical", 10): 2.0})


def test_soft_labels_teach_exact_labels_on_a_click_and_the_posterior_hit_chance_without_one():
    from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy

    fz = ContextFeaturizer(["lexical", "graph"])
    x = fz.vector({"bias": 1.0})
    cfg = PolicyConfig(ladder=(0, 10), ridge=1.0, prior_hit_rate=0.5, position_bias=0.5, soft_labels=True)
    pol = new_policy(cfg, ["lexical", "graph"], fz.dim)
    d = pol.forced(x, {"lexical": 10, "graph": 10})
    assert d.hit_probs == (0.5, 0.5) and Decision.from_dict(d.to_dict()).hit_probs == (0.5, 0.5)
    vis = {("lexical", 10): 0.5, ("graph", 10): 1.0}
    # no click: lexical's hit was seen half the time, so p(1-v)/(1-pv) = 0.25/0.75; graph's hit would
    # have been seen for sure, so it missed
    pol.update(d, {("lexical", 10): 0.0, ("graph", 10): 0.0}, vis)
    lex, graph = pol.arms.mean(x)
    assert lex == pytest.approx((0.5 + 1 / 3) / 2) and graph == pytest.approx(0.5 / 2)
    # a click on what graph found: graph hit and lexical missed, both exactly, visibility notwithstanding
    pol.update(d, {("lexical", 10): 0.0, ("graph", 10): 1.0}, vis)
    lex, graph = pol.arms.mean(x)
    assert lex == pytest.approx((0.5 + 1 / 3) / 3) and graph == pytest.approx((0.5 + 1.0) / 3)


def test_soft_open_then_credit_equals_update():
    from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy

    fz = ContextFeaturizer(["lexical", "graph"])
    x = fz.vector({"bias": 1.0, "class.name": 1.0})
    cfg = PolicyConfig(ladder=(0, 10, 50), position_bias=1.0, soft_labels=True)
    a, b = (new_policy(cfg, ["lexical", "graph"], fz.dim) for _ in range(2))
    d = a.forced(x, {"lexical": 50, "graph": 10})
    rewards = {("lexical", 10): 0.0, ("lexical", 50): 1.0, ("graph", 10): 0.0}
    vis = {("lexical", 10): 0.6, ("lexical", 50): 0.2, ("graph", 10): 0.9}
    a.update(d, rewards, vis)
    b.open(d, dict.fromkeys(rewards, 0.0), vis)
    assert b.credit(d, rewards, vis) == 1
    np.testing.assert_allclose(a.arms.b, b.arms.b, atol=1e-12)
    np.testing.assert_allclose(a.arms.a_inv, b.arms.a_inv, atol=1e-12)
    # a decision logged before soft labels (no hit_probs) keeps the visibility-weighted update
    old = Decision.from_dict({**d.to_dict(), "hit_probs": []}, x=x)
    c = new_policy(cfg, ["lexical", "graph"], fz.dim)
    c.update(old, rewards, vis)
    plain = new_policy(cfg.model_copy(update={"soft_labels": False}), ["lexical", "graph"], fz.dim)
    plain.update(old, rewards, vis)
    np.testing.assert_allclose(c.arms.b, plain.arms.b)
