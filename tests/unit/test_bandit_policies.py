"""Bandit policies (ltrr.bandit.base, the registry and every policy in it) and the Decision record.

Every registered policy is built through ``make_policy`` and exercised; the
statistical regret/convergence checks live in test_bandit_learning.py.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import numpy as np
import pydantic
import pytest

from ltrr.bandit import POLICIES, ActionSpace, Decision, LinearArms, Policy, PolicyConfig, make_policy
from ltrr.bandit.features import ContextFeaturizer
from ltrr.bandit.planner import PolicyPlanner
from ltrr.errors import ConfigError

STRATEGIES = ("lexical", "vector", "graph")
LADDER = (0, 10, 25)
DIM = 4
X = np.array([1.0, 0.5, -0.25, 0.8])
#: true hit probabilities (S, L) used to give the arms a non-trivial trained state
TRUE_HIT = np.array([[0.0, 0.2, 0.35], [0.0, 0.4, 0.5], [0.0, 0.1, 0.15]])
#: 3 strategies x 3 budgets: u_min = (3^2 - 1) / 26, floor 0.01 -> epsilon_f = 0.01 * 26 / 8
EPS_FLOOR = 0.01 * 26 / 8
DETERMINISTIC_BASE = ("linucb", "epsilon_greedy", "uniform")


def build(name: str, *, seed: int = 0, trained: int = 30, **overrides: Any) -> Policy:
    config = PolicyConfig(ladder=LADDER, **overrides)
    space = ActionSpace.build(STRATEGIES, LADDER, config.costs)
    arms = LinearArms.zeros(space.n_arms, DIM)
    arms.reset(config.ridge, config.prior_hit_rate)
    train(space, arms, trained)
    return make_policy(config, space, arms, rng=np.random.default_rng(seed), algorithm=name)


def train(space: ActionSpace, arms: LinearArms, rounds: int, seed: int = 0) -> None:
    """Consistent semi-bandit rewards at every level of every strategy (one uniform per strategy)."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        x = np.array([1.0, *rng.uniform(-1.0, 1.0, DIM - 1)])
        for s in range(space.n_strategies):
            u = rng.random()
            for lv in range(1, space.n_levels):
                arms.update(space.arm(s, lv), x, float(u < TRUE_HIT[s, lv]))


def record(policy: Policy) -> list[np.ndarray]:
    """Wrap ``base_distribution`` to keep the mixed distribution each call actually used."""
    seen: list[np.ndarray] = []
    original: Callable[[np.ndarray], tuple[np.ndarray, int | None]] = policy.base_distribution

    def wrapped(x: np.ndarray) -> tuple[np.ndarray, int | None]:
        base, drawn = original(x)
        seen.append((1.0 - policy.epsilon) * base + policy.epsilon * policy.uniform)
        return base, drawn

    policy.base_distribution = wrapped  # type: ignore[method-assign]
    return seen


def brute_greedy(space: ActionSpace, table: np.ndarray) -> int:
    """argmax over valid ids of 1 - prod_s (1 - p[s, a_s]) - c(a), by looping."""
    best, best_value = -1, -np.inf
    for a in range(1, space.n_actions):
        miss = np.prod([1.0 - table[s, lv] for s, lv in enumerate(space.levels(a))])
        value = 1.0 - miss - space.costs[a]
        if value > best_value:
            best, best_value = a, value
    return best


def test_registry_names() -> None:
    assert list(POLICIES) == ["linear_ts", "linucb", "epsilon_greedy", "uniform"]
    for name, cls in POLICIES.items():
        assert cls.name == name


# --------------------------------------------------------------------------- every policy
@pytest.fixture(params=list(POLICIES))
def policy(request: pytest.FixtureRequest) -> Policy:
    return build(request.param)


def test_make_policy_builds_the_named_class(policy: Policy) -> None:
    assert type(policy) is POLICIES[policy.name]
    assert policy.space.strategies == STRATEGIES


def test_distribution_is_a_distribution(policy: Policy) -> None:
    dist = policy.distribution(X)
    assert dist.shape == (27,)
    assert dist.sum() == pytest.approx(1.0, abs=1e-12)
    assert dist[0] == 0.0
    assert dist[1:].min() >= policy.epsilon / 26 - 1e-15


def test_select_decision(policy: Policy) -> None:
    seen = record(policy)
    sp = policy.space
    table = sp.hit_table(policy.arms.mean(X))
    for i in range(40):
        d = policy.select(X)
        dist = seen[i]
        assert set(d.budgets) == set(STRATEGIES)
        assert all(k in LADDER for k in d.budgets.values())
        assert any(k > 0 for k in d.budgets.values())
        assert d.action == sp.action_for_budgets(d.budgets)
        assert d.algorithm == policy.name and d.policy_version == "" and d.forced is False
        assert d.x is not None and np.array_equal(d.x, X)
        # the logged propensity is the distribution the choice was drawn from, at the chosen action
        assert d.propensity == dist[d.action]
        assert d.propensity >= policy.epsilon / 26 - 1e-15
        marg = sp.marginals(dist)
        for s, name in enumerate(STRATEGIES):
            assert d.inclusion[name] == pytest.approx(1.0 - marg[s, 0], abs=1e-12)
            assert d.budget_prob[name] == pytest.approx(marg[s, sp.levels(d.action)[s]], abs=1e-12)
            assert d.budget_prob[name] >= policy.config.propensity_floor - 1e-12
        assert d.expected_recall == pytest.approx(sp.union_values(table)[d.action], abs=1e-12)
        assert d.cost == sp.costs[d.action]


@pytest.mark.parametrize("name", DETERMINISTIC_BASE)
def test_propensity_equals_distribution(name: str) -> None:
    policy = build(name)
    dist = policy.distribution(X)
    chosen = set()
    for _ in range(60):
        d = policy.select(X)
        chosen.add(d.action)
        assert d.propensity == pytest.approx(dist[d.action], rel=1e-12)
    assert len(chosen) > 1  # exploration happened, so off-greedy propensities were checked too


def test_decision_round_trip(policy: Policy) -> None:
    d = policy.select(X).with_version("v7")
    doc = d.to_dict()
    assert "x" not in doc
    assert json.loads(json.dumps(doc)) == doc
    back = Decision.from_dict(json.loads(json.dumps(doc)), x=X)
    assert back == d
    assert back.to_dict() == doc
    assert back.x is X
    assert back.policy_version == "v7"
    assert Decision.from_dict(doc).x is None
    # the latencies the action was priced with travel with the decision
    assert doc["latency_ms"] == policy.space.latency_dict() == {"lexical": 10.0, "vector": 10.0, "graph": 10.0}


def test_decision_carries_the_latencies_it_was_priced_with(policy: Policy) -> None:
    policy.space.set_latency({"lexical": 5.0, "vector": 300.0, "graph": 1.0})
    d = policy.forced(X, {"vector": 10})
    assert d.latency_ms == {"lexical": 5.0, "vector": 300.0, "graph": 1.0}
    # per_call 0.01 + per_ms 0.0005 * 300 + per_candidate 0.0002 * 10
    assert d.cost == pytest.approx(0.01 + 0.15 + 0.002, abs=1e-15)


def test_decision_from_old_dict_defaults() -> None:
    doc = {
        "budgets": {"lexical": 10},
        "action": 9,
        "propensity": 0.5,
        "inclusion": {"lexical": 1.0},
        "budget_prob": {"lexical": 0.5},
        "expected_recall": 0.2,
        "cost": 0.012,
        "algorithm": "uniform",
    }
    d = Decision.from_dict(doc)
    assert (d.policy_version, d.forced, d.x, d.latency_ms) == ("", False, None, {})


def test_forced(policy: Policy) -> None:
    d = policy.forced(X, {"lexical": 25, "graph": 10})
    assert d.budgets == {"lexical": 25, "vector": 0, "graph": 10}
    assert d.action == policy.space.action([2, 0, 1]) == 19
    assert d.propensity == 1.0 and d.forced is True
    assert d.inclusion == {"lexical": 1.0, "vector": 0.0, "graph": 1.0}
    assert d.budget_prob == {"lexical": 1.0, "vector": 1.0, "graph": 1.0}
    assert d.cost == policy.space.costs[19]
    assert d.algorithm == policy.name
    assert Decision.from_dict(d.to_dict()).forced is True


def test_forced_rejects_bad_budgets(policy: Policy) -> None:
    with pytest.raises(ValueError, match=re.escape("`budgets['vector']` must be on the ladder [0, 10, 25], got 50")):
        policy.forced(X, {"vector": 50})
    with pytest.raises(ValueError, match=re.escape("`budgets` must call at least one strategy")):
        policy.forced(X, {"vector": 0})


# --------------------------------------------------------------------------- update
def test_update_applies_semi_bandit_rewards(policy: Policy) -> None:
    d = policy.forced(X, {"lexical": 25, "vector": 10})
    arms = policy.arms
    expected = LinearArms(np.copy(arms.a_inv), np.copy(arms.b), np.copy(arms.theta), np.copy(arms.count))
    rewards = {("lexical", 10): 0.0, ("lexical", 25): 1.0, ("vector", 10): 1}
    assert policy.update(d, rewards) == 3
    expected.update(0, X, 0.0)
    expected.update(1, X, 1.0)
    expected.update(2, X, 1.0)
    for name in ("a_inv", "b", "theta", "count"):
        np.testing.assert_array_equal(getattr(policy.arms, name), getattr(expected, name))
    assert policy.update(d, {}) == 0


def _decision_without_x(policy: Policy) -> Decision:
    return Decision.from_dict(policy.forced(X, {"lexical": 10}).to_dict())


def _decision_bad_x(policy: Policy) -> Decision:
    return Decision.from_dict(policy.forced(X, {"lexical": 10}).to_dict(), x=np.ones(3))


@pytest.mark.parametrize(
    ("decision", "rewards", "message"),
    [
        (None, {("nope", 10): 1.0}, "`rewards` names unknown strategy 'nope'; known: ['lexical', 'vector', 'graph']"),
        (None, {("lexical", 0): 1.0}, "`rewards` budget for 'lexical' must be a positive ladder budget, got 0"),
        (None, {("lexical", 30): 1.0}, "`rewards` budget for 'lexical' must be a positive ladder budget, got 30"),
        (None, {("lexical", 10): 2}, "`rewards` must be 0 or 1, got 2 for ('lexical', 10)"),
        (None, {("lexical", 10): 0.5}, "`rewards` must be 0 or 1, got 0.5 for ('lexical', 10)"),
        # a valid reward before the invalid one must not be applied either
        (
            None,
            {("vector", 10): 1.0, ("graph", 25): -1.0},
            "`rewards` must be 0 or 1, got -1.0 for ('graph', 25)",
        ),
        (_decision_without_x, {("lexical", 10): 1.0}, "`decision.x` must hold the context vector to update from it"),
        (_decision_bad_x, {("lexical", 10): 1.0}, "`x` must have shape (4,), got (3,)"),
    ],
    ids=["strategy", "budget-0", "off-ladder", "reward-2", "reward-half", "partial", "no-x", "x-shape"],
)
def test_update_rejects(
    policy: Policy, decision: Callable[[Policy], Decision] | None, rewards: dict[Any, Any], message: str
) -> None:
    d = decision(policy) if decision else policy.forced(X, {"lexical": 25, "vector": 10, "graph": 25})
    before = [np.copy(a) for a in (policy.arms.a_inv, policy.arms.b, policy.arms.theta, policy.arms.count)]
    with pytest.raises(ValueError, match=re.escape(message)):
        policy.update(d, rewards)
    after = (policy.arms.a_inv, policy.arms.b, policy.arms.theta, policy.arms.count)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.ones(3), "`x` must have shape (4,), got (3,)"),
        (np.ones((1, 4)), "`x` must have shape (4,), got (1, 4)"),
        (np.array([1.0, np.nan, 0.0, 0.0]), "`x` must be finite"),
        (np.array([1.0, np.inf, 0.0, 0.0]), "`x` must be finite"),
    ],
)
def test_context_vector_rejected(policy: Policy, x: np.ndarray, message: str) -> None:
    for call in (policy.select, policy.distribution, lambda v: policy.forced(v, {"lexical": 10})):
        with pytest.raises(ValueError, match=re.escape(message)):
            call(x)


# --------------------------------------------------------------------------- construction errors
@pytest.mark.parametrize(
    ("strategies", "ladder", "floor", "message"),
    [
        (["a"], (0, 1, 2, 3, 4, 5, 6), 0.2, "`propensity_floor` must be at most 0.1667 for 1 strategies x 7 budgets"),
        (["a", "b"], tuple(range(11)), 0.1, "`propensity_floor` must be at most 0.0833 for 2 strategies x 11 budgets"),
        (["a", "b", "c", "d"], (0, 10, 25, 50, 100), 0.2, "must be at most 0.1987 for 4 strategies x 5 budgets"),
    ],
)
def test_propensity_floor_too_large(strategies: list[str], ladder: tuple[int, ...], floor: float, message: str) -> None:
    config = PolicyConfig(ladder=ladder, propensity_floor=floor)
    space = ActionSpace.build(strategies, ladder)
    arms = LinearArms.zeros(space.n_arms, DIM)
    for name in POLICIES:
        with pytest.raises(ValueError, match=re.escape(f"{message}, got {floor}")):
            make_policy(config, space, arms, algorithm=name)


def test_arms_must_fit_the_space() -> None:
    config = PolicyConfig(ladder=LADDER)
    space = ActionSpace.build(STRATEGIES, LADDER)
    with pytest.raises(ValueError, match=re.escape("`arms` must hold 6 arms for this action space, got 5")):
        make_policy(config, space, LinearArms.zeros(5, DIM))


def test_unknown_algorithm() -> None:
    config = PolicyConfig(ladder=LADDER)
    space = ActionSpace.build(STRATEGIES, LADDER)
    arms = LinearArms.zeros(space.n_arms, DIM)
    message = "unknown policy 'thompson'; valid: linear_ts, linucb, epsilon_greedy, uniform"
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_policy(config, space, arms, algorithm="thompson")
    with pytest.raises(pydantic.ValidationError, match="algorithm"):
        PolicyConfig(algorithm="thompson")  # type: ignore[arg-type]


def test_make_policy_defaults_to_config_algorithm() -> None:
    config = PolicyConfig(ladder=LADDER, algorithm="linucb")
    space = ActionSpace.build(STRATEGIES, LADDER)
    assert type(make_policy(config, space, LinearArms.zeros(space.n_arms, DIM))).__name__ == "LinUCB"


# --------------------------------------------------------------------------- epsilon and determinism
@pytest.mark.parametrize(
    ("name", "overrides", "epsilon"),
    [
        ("linear_ts", {}, EPS_FLOOR),
        ("linucb", {}, EPS_FLOOR),
        ("uniform", {}, EPS_FLOOR),
        ("epsilon_greedy", {"epsilon": 0.1}, 0.1),
        ("epsilon_greedy", {"epsilon": 0.0}, EPS_FLOOR),
        ("linucb", {"propensity_floor": 0.0}, 0.0),
        ("epsilon_greedy", {"epsilon": 0.5, "propensity_floor": 0.2}, 0.2 * 26 / 8),
    ],
)
def test_epsilon_by_hand(name: str, overrides: dict[str, Any], epsilon: float) -> None:
    assert build(name, **overrides).epsilon == pytest.approx(epsilon, abs=1e-15)


@pytest.mark.parametrize("name", list(POLICIES))
def test_seeded_determinism(name: str) -> None:
    config = PolicyConfig(ladder=LADDER, seed=7, algorithm=name)  # type: ignore[arg-type]
    space = ActionSpace.build(STRATEGIES, LADDER)
    runs = []
    for _ in range(2):
        arms = LinearArms.zeros(space.n_arms, DIM)
        arms.reset(config.ridge, config.prior_hit_rate)
        train(space, arms, 10)
        policy = make_policy(config, space, arms)  # rng from config.seed
        runs.append([policy.select(X).to_dict() for _ in range(25)])
    assert runs[0] == runs[1]


def test_select_action_is_select() -> None:
    a, b = build("linear_ts", seed=3), build("linear_ts", seed=3)
    assert [a.select(X).to_dict() for _ in range(5)] == [b.select_action(X).to_dict() for _ in range(5)]


# --------------------------------------------------------------------------- exact base policies
def test_greedy_by_hand() -> None:
    space = ActionSpace.build(["a", "b"], [0, 10, 25])
    policy = make_policy(PolicyConfig(ladder=(0, 10, 25)), space, LinearArms.zeros(space.n_arms, DIM))
    # only "a" finds anything, already in its top 10: call "a" with 10 (cheapest), not "b"
    assert policy.greedy(np.array([[0.0, 0.9, 0.9], [0.0, 0.0, 0.0]])) == space.action([1, 0]) == 3
    # "b" gains 0.3 at 25 over 10 for 0.003 more: (0, 2)
    assert policy.greedy(np.array([[0.0, 0.0, 0.0], [0.0, 0.2, 0.5]])) == space.action([0, 2]) == 2
    # both help: 1 - 0.1 * 0.5 = 0.95 - 0.024 beats 0.9 - 0.012
    assert policy.greedy(np.array([[0.0, 0.9, 0.9], [0.0, 0.5, 0.5]])) == space.action([1, 1]) == 4


def test_linucb_distribution_exact() -> None:
    policy = build("linucb", ucb_alpha=0.7)
    arms = policy.arms
    action = brute_greedy(policy.space, policy.space.hit_table(arms.mean(X) + 0.7 * arms.width(X)))
    expected = np.full(27, EPS_FLOOR / 26)
    expected[0] = 0.0
    expected[action] += 1.0 - EPS_FLOOR
    np.testing.assert_allclose(policy.distribution(X), expected, rtol=0, atol=1e-15)


def test_epsilon_greedy_distribution_exact() -> None:
    policy = build("epsilon_greedy", epsilon=0.2)
    action = brute_greedy(policy.space, policy.space.hit_table(policy.arms.mean(X)))
    expected = np.full(27, 0.2 / 26)
    expected[0] = 0.0
    expected[action] += 0.8
    np.testing.assert_allclose(policy.distribution(X), expected, rtol=0, atol=1e-15)


def test_linucb_without_floor_is_deterministic() -> None:
    policy = build("linucb", propensity_floor=0.0)
    actions = {policy.select(X).action for _ in range(20)}
    assert len(actions) == 1
    assert policy.select(X).propensity == 1.0


def test_uniform_distribution_exact() -> None:
    policy = build("uniform")
    expected = np.full(27, 1 / 26)
    expected[0] = 0.0
    np.testing.assert_allclose(policy.distribution(X), expected, rtol=0, atol=1e-15)
    assert policy.select(X).propensity == pytest.approx(1 / 26)


# --------------------------------------------------------------------------- seeded sampling checks
def test_epsilon_greedy_select_frequencies() -> None:
    policy = build("epsilon_greedy", epsilon=0.3, seed=11)
    dist = policy.distribution(X)
    greedy = int(np.argmax(dist))
    n = 2000
    freq = np.bincount([policy.select(X).action for _ in range(n)], minlength=27) / n
    # P(greedy) = 0.7 + 0.3 / 26 ~ 0.7115, binomial std ~ 0.010
    assert freq[greedy] == pytest.approx(dist[greedy], abs=0.04)
    assert freq[0] == 0.0


def test_uniform_select_frequencies() -> None:
    policy = build("uniform", seed=12)
    n = 2600
    freq = np.bincount([policy.select(X).action for _ in range(n)], minlength=27) / n
    assert freq[0] == 0.0
    # each 1/26 ~ 0.0385, binomial std ~ 0.0038
    np.testing.assert_allclose(freq[1:], 1 / 26, atol=0.02)


def test_linear_ts_propensity_matches_choice_frequency() -> None:
    """For a fixed trained state and context, the chance of each action is the mean of
    the distributions its propensities were read from; the choices must match it."""
    policy = build("linear_ts", seed=5, trained=30)
    seen = record(policy)
    n = 3000
    decisions = [policy.select(X) for _ in range(n)]
    actions = np.array([d.action for d in decisions])
    logged = np.array([d.propensity for d in decisions])
    dists = np.stack(seen)
    assert np.array_equal(logged, dists[np.arange(n), actions])  # logged == distribution used, exactly
    freq = np.bincount(actions, minlength=27) / n
    mean_dist = dists.mean(axis=0)
    # binomial std <= sqrt(0.25 / 3000) ~ 0.009
    np.testing.assert_allclose(freq, mean_dist, atol=0.03)
    assert (freq > 0.05).sum() >= 3  # Thompson sampling spreads over several actions here
    # the mean logged propensity of an often-chosen action is close to its frequency
    # (size-biased by the resampling noise, a few percent at M = 64)
    for a in np.flatnonzero(freq > 0.05):
        assert logged[actions == a].mean() == pytest.approx(freq[a], abs=0.05)


# --------------------------------------------------------------------------- PolicyPlanner
def test_policy_planner() -> None:
    policy = build("linucb")
    featurizer = ContextFeaturizer(STRATEGIES)
    planner = PolicyPlanner(policy, featurizer)
    assert planner.version == "linucb-local"
    d = planner.decide(X)
    assert d.policy_version == "linucb-local" and d.forced is False
    f = planner.force(X, {"graph": 25})
    assert f.policy_version == "linucb-local" and f.forced is True and f.propensity == 1.0
    np.testing.assert_array_equal(planner.class_rates(), np.full((5, 3), 0.5))
    assert PolicyPlanner(policy, featurizer, version="v3").decide(X).policy_version == "v3"


def test_policy_planner_rejects_other_strategies() -> None:
    message = (
        "`featurizer` strategies ['vector', 'lexical', 'graph'] must match the policy's ['lexical', 'vector', 'graph']"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        PolicyPlanner(build("uniform"), ContextFeaturizer(("vector", "lexical", "graph")))
