"""The RLlib adapter (deployments.rlmodule): spaces, forward passes, learning, state and checkpoints.

The only unit test module that imports ray.rllib (slow to import): fixtures are module-scoped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pydantic
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from deployments.rlmodule import DECISIONS, HIT_PROBS, BanditRLModule, ModulePlanner
from ltrr.bandit import POLICIES, ContextFeaturizer, Decision, strategy_hits

STRATEGIES = ("lexical", "vector", "graph")
LADDER = (0, 10, 25)
POLICY: dict[str, Any] = {"ladder": list(LADDER), "seed": 3, "ridge": 1.0}
FZ = ContextFeaturizer(STRATEGIES)
DIM = FZ.dim
BUFFERS = ("a_inv", "b", "theta", "count", "class_hits", "class_trials", "latency_ms", "latency_n")
ARMS = ("a_inv", "b", "theta", "count")
#: true hit probabilities (S, L) of the simulated searches the trained module learns from
TRUE_HIT = np.array([[0.0, 0.2, 0.35], [0.0, 0.5, 0.6], [0.0, 0.1, 0.15]])
#: latency (ms) of each strategy's calls in those searches
TRUE_MS = {"lexical": 4.0, "vector": 8.0, "graph": 0.5}


def contexts(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1.0, 1.0, (n, DIM))
    obs[:, 0] = 1.0
    return obs


def settle(module: BanditRLModule, rounds: int, seed: int = 0, ms: dict[str, float] = TRUE_MS) -> None:
    """``rounds`` simulated settled searches through ``module.learn`` (each call taking ``ms[s]``)."""
    rng = np.random.default_rng(seed)
    for x in contexts(rounds, seed + 100):
        decision = module.policy.select(x)
        rewards: dict[tuple[str, int], float] = {}
        for s, name in enumerate(STRATEGIES):
            u = rng.random()
            for lv in range(1, LADDER.index(decision.budgets[name]) + 1):
                rewards[(name, LADDER[lv])] = float(u < TRUE_HIT[s, lv])
        latencies = [(name, ms[name]) for name in STRATEGIES if decision.budgets[name] > 0]
        module.learn(decision, rewards, int(rng.integers(5)), strategy_hits(rewards), latencies)


def fresh(**policy: Any) -> BanditRLModule:
    return BanditRLModule.build(STRATEGIES, DIM, {**POLICY, **policy})


@pytest.fixture(scope="module")
def trained() -> BanditRLModule:
    """A module after 40 settled searches (read-only: tests that mutate build their own)."""
    module = fresh()
    settle(module, 40)
    module.cursor.fill_(42)
    return module


@pytest.fixture(scope="module")
def obs() -> np.ndarray:
    return contexts(8, seed=7)


def assert_same_state(a: BanditRLModule, b: BanditRLModule) -> None:
    for name in BUFFERS:
        np.testing.assert_array_equal(getattr(a, name).numpy(), getattr(b, name).numpy(), err_msg=name)
    assert (a.version, int(a.cursor)) == (b.version, int(b.cursor))


def assert_views(module: BanditRLModule) -> None:
    for name in ARMS:
        buf = getattr(module, name)
        assert buf.dtype == torch.float64
        assert np.shares_memory(buf.numpy(), getattr(module.arms, name)), name
    assert module.policy.arms is module.arms


# --------------------------------------------------------------------------- build
def test_build_spaces_and_initial_state() -> None:
    module = fresh()
    assert isinstance(module.observation_space, gym.spaces.Box)
    assert module.observation_space.shape == (DIM,)
    assert module.observation_space.dtype == np.float64
    np.testing.assert_array_equal(module.observation_space.low, -1.0)
    np.testing.assert_array_equal(module.observation_space.high, 1.0)
    assert isinstance(module.action_space, gym.spaces.MultiDiscrete)
    assert module.action_space.nvec.tolist() == [3, 3, 3]
    assert isinstance(module.model_config, dict)
    assert module.model_config["strategies"] == list(STRATEGIES)
    assert module.model_config["dim"] == DIM
    assert module.space.strategies == STRATEGIES and module.space.ladder == LADDER
    assert (module.version, module.policy_version, int(module.cursor)) == (0, "linear_ts-0", 0)
    assert module.a_inv.shape == (6, DIM, DIM)
    # the prior: every arm predicts the prior hit rate on the bias
    expected_theta = np.zeros((6, DIM))
    expected_theta[:, 0] = 0.3
    np.testing.assert_allclose(module.theta.numpy(), expected_theta, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(module.class_rates(), np.full((5, 3), 0.5))
    assert_views(module)


@pytest.mark.parametrize(
    ("policy", "field"),
    [({"algorithm": "nope"}, "algorithm"), ({"ladder": [10, 25]}, "ladder"), ({"extra": 1}, "extra")],
)
def test_build_rejects_bad_policy(policy: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        BanditRLModule.build(STRATEGIES, DIM, policy)


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_algorithm(name: str, obs: np.ndarray) -> None:
    module = fresh(algorithm=name)
    assert module.policy.name == name
    out = module.forward_exploration({Columns.OBS: torch.from_numpy(obs)})
    assert [d.policy_version for d in out[DECISIONS]] == [f"{name}-0"] * len(obs)


# --------------------------------------------------------------------------- forward passes
def test_forward_exploration(trained: BanditRLModule, obs: np.ndarray) -> None:
    out = trained.forward_exploration({Columns.OBS: torch.from_numpy(obs)})
    actions, logp, decisions = out[Columns.ACTIONS], out[Columns.ACTION_LOGP], out[DECISIONS]
    assert actions.shape == (8, 3) and actions.dtype == torch.int64
    assert logp.shape == (8,) and logp.dtype == torch.float64
    assert len(decisions) == 8
    for i, d in enumerate(decisions):
        assert isinstance(d, Decision)
        assert tuple(actions[i].tolist()) == trained.space.levels(d.action)
        assert logp[i].item() == pytest.approx(np.log(d.propensity), abs=1e-12)
        assert d.policy_version == "linear_ts-40" and d.algorithm == "linear_ts"
        assert d.x is not None
        np.testing.assert_array_equal(d.x, obs[i])
        assert set(d.budgets.values()) <= set(LADDER) and any(d.budgets.values())


def test_forward_exploration_accepts_numpy_and_one_row(trained: BanditRLModule, obs: np.ndarray) -> None:
    out = trained.forward_exploration({Columns.OBS: obs[0].astype(np.float32)})
    assert out[Columns.ACTIONS].shape == (1, 3)
    assert len(out[DECISIONS]) == 1


def test_forward_exploration_first_decisions_version_0(obs: np.ndarray) -> None:
    out = fresh().forward_exploration({Columns.OBS: torch.from_numpy(obs[:2])})
    assert [d.policy_version for d in out[DECISIONS]] == ["linear_ts-0", "linear_ts-0"]


def test_forward_inference_is_greedy(trained: BanditRLModule, obs: np.ndarray) -> None:
    out = trained.forward_inference({Columns.OBS: torch.from_numpy(obs)})
    np.testing.assert_array_equal(out[Columns.ACTION_LOGP].numpy(), np.zeros(8))
    for i, d in enumerate(out[DECISIONS]):
        greedy = trained.policy.greedy(trained.policy.hit_table(obs[i]))
        assert d.action == greedy
        assert tuple(out[Columns.ACTIONS][i].tolist()) == trained.space.levels(greedy)
        assert d.propensity == 1.0 and d.forced is False
        assert d.policy_version == "linear_ts-40"
    again = trained.forward_inference({Columns.OBS: torch.from_numpy(obs)})
    assert torch.equal(again[Columns.ACTIONS], out[Columns.ACTIONS])


def test_forward_train_hit_probs(trained: BanditRLModule, obs: np.ndarray) -> None:
    out = trained.forward_train({Columns.OBS: torch.from_numpy(obs)})
    probs = out[HIT_PROBS]
    assert probs.shape == (8, 6) and probs.dtype == torch.float64
    raw = np.clip(obs @ trained.theta.numpy().T, 0.0, 1.0).reshape(8, trained.space.n_strategies, -1)
    expected = np.maximum.accumulate(raw, axis=-1).reshape(8, -1)  # a bigger budget never hits less often
    np.testing.assert_allclose(probs.numpy(), expected, rtol=0, atol=1e-12)
    assert np.all(np.diff(probs.numpy().reshape(8, trained.space.n_strategies, -1), axis=-1) >= 0)


# --------------------------------------------------------------------------- learning
def test_learn_by_hand() -> None:
    module = fresh()
    x = contexts(1, seed=1)[0]
    decision = module.policy.forced(x, {"lexical": 25, "vector": 10})
    rewards = {
        ("lexical", 10): 0.0,
        ("lexical", 25): 1.0,
        ("vector", 10): 1.0,
        ("unknown", 10): 1.0,  # ignored: not a strategy of this module
        ("vector", 30): 1.0,  # ignored: not on the ladder
    }
    hits = {"lexical": True, "vector": True, "unknown": True}
    assert module.learn(decision, rewards, 2, hits) == 3
    # arms: lexical@10 = 0, lexical@25 = 1, vector@10 = 2
    assert module.count.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    a = np.eye(DIM) + np.outer(x, x)  # ridge 1
    for arm in (0, 1, 2):
        np.testing.assert_allclose(module.a_inv[arm].numpy(), np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    b_lex25 = np.zeros(DIM)
    b_lex25[0] = 0.3
    np.testing.assert_allclose(module.b[1].numpy(), b_lex25 + x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(module.b[0].numpy(), b_lex25, rtol=0, atol=1e-15)
    assert module.class_trials[2].tolist() == [1.0, 1.0, 0.0]
    assert module.class_hits[2].tolist() == [1.0, 1.0, 0.0]
    assert (module.version, module.policy_version) == (1, "linear_ts-1")
    rates = np.full((5, 3), 0.5)
    rates[2, :2] = 2 / 3  # (1 + 1) / (1 + 2)
    np.testing.assert_allclose(module.class_rates(), rates, rtol=0, atol=1e-15)

    # a miss in another class; no arm rewards still moves the version
    assert module.learn(decision, {}, 4, {"graph": False}) == 0
    assert module.class_rates()[4].tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    assert module.version == 2
    assert module.forward_exploration({Columns.OBS: x[None]})[DECISIONS][0].policy_version == "linear_ts-2"
    assert_views(module)


def test_open_then_credit_equals_learn_exactly() -> None:
    """Counting searches at once as misses and crediting clicks later, in any order, gives the
    statistics of learning each outcome at once (what the learner relies on under delayed feedback)."""
    at_once, delayed = fresh(), fresh()
    rng = np.random.default_rng(7)
    pending = []
    for x in contexts(60, seed=2):
        d = at_once.policy.select(x)
        rewards = {}
        for s, name in enumerate(STRATEGIES):
            u = rng.random()
            for lv in range(1, LADDER.index(d.budgets[name]) + 1):
                rewards[(name, LADDER[lv])] = float(u < TRUE_HIT[s, lv])
        cls = int(rng.integers(5))
        at_once.learn(d, rewards, cls, strategy_hits(rewards))
        delayed.open(d, dict.fromkeys(rewards, 0.0), cls)
        pending.append((d, rewards, cls))
    for i in rng.permutation(len(pending)):  # the clicks land in another order
        d, rewards, cls = pending[i]
        delayed.credit(d, rewards, cls, strategy_hits(rewards))
    for name in BUFFERS[:6]:
        np.testing.assert_allclose(getattr(delayed, name).numpy(), getattr(at_once, name).numpy(), atol=1e-9)
    with pytest.raises(ValueError, match="`observed` must hold only 0 rewards"):
        delayed.open(pending[0][0], {("lexical", 10): 1.0}, 0)
    assert_views(delayed)


def test_learn_measures_latencies_by_hand() -> None:
    module = fresh(costs={"latency_ms": {"vector": 150.0}})  # n0 5, alpha 0.05, default prior 10 ms
    assert module.latency.as_dict() == {"lexical": 10.0, "vector": 150.0, "graph": 10.0}
    x = contexts(1, seed=1)[0]
    decision = module.policy.forced(x, {"lexical": 10, "vector": 10})
    assert decision.latency_ms == {"lexical": 10.0, "vector": 150.0, "graph": 10.0}
    module.learn(decision, {("lexical", 10): 1.0}, 0, {"lexical": True}, [("lexical", 4.0), ("vector", 6.0)])
    # eta_1 = 1 / (5 + 1): lexical 10 - 6 / 6 = 9, vector 150 - 144 / 6 = 126
    assert module.latency.as_dict() == {"lexical": 9.0, "vector": 126.0, "graph": 10.0}
    assert module.latency_n.tolist() == [1.0, 1.0, 0.0] and module.version == 1
    # the actions are re-priced at once: vector@10 alone = per_call + per_ms * 126 + per_candidate * 10
    assert module.space.costs[module.space.action([0, 1, 0])] == pytest.approx(0.01 + 0.0005 * 126 + 0.002)
    assert module.policy.forced(x, {"vector": 10}).latency_ms["vector"] == 126.0

    # a search not learned from (e.g. forced) still measures its calls, and moves the version
    assert module.learn_latencies([("graph", 0.0), ("unknown", 3.0)]) == 1
    assert module.latency.as_dict()["graph"] == pytest.approx(10.0 - 10.0 / 6)
    assert module.version == 2
    assert module.learn_latencies([]) == 0 and module.version == 2

    # an invalid sample changes nothing, not even the arms
    with pytest.raises(ValueError, match=re.escape("latency sample of 'lexical' must be a finite number >= 0 ms")):
        module.learn(decision, {("lexical", 10): 1.0}, 0, {"lexical": True}, [("lexical", float("nan"))])
    assert module.version == 2 and module.count.tolist()[0] == 1.0 and module.latency_n.tolist() == [1.0, 1.0, 1.0]


def test_decider_avoids_a_strategy_whose_measured_latency_rose(obs: np.ndarray) -> None:
    """vector is the best strategy (hit 0.5 at k 10). Measured at 5 ms it is called most of the time;
    once the learner measures 300 ms (per_ms 0.005: cost 1.5, more than any gain) the deciders drop it."""
    learner = fresh(costs={"per_ms": 0.005})
    settle(learner, 300, ms={"lexical": 5.0, "vector": 5.0, "graph": 5.0})
    fast, slow = ModulePlanner(fresh(costs={"per_ms": 0.005}), FZ), ModulePlanner(fresh(costs={"per_ms": 0.005}), FZ)
    fast.load(learner.state_copy())
    learner.learn_latencies([("vector", 300.0)] * 200)
    slow.load(learner.state_copy())
    assert fast.module.latency.as_dict()["vector"] == pytest.approx(5.0, abs=0.5)
    assert slow.module.latency.as_dict()["vector"] == pytest.approx(300.0, abs=0.5)
    xs = contexts(200, seed=11)
    with_fast = [fast.decide(x) for x in xs]
    with_slow = [slow.decide(x) for x in xs]
    # seed 3: 0.74 and 0.02 of the 200 decisions call vector
    assert np.mean([d.budgets["vector"] > 0 for d in with_fast]) > 0.6
    assert np.mean([d.budgets["vector"] > 0 for d in with_slow]) < 0.1
    assert {d.latency_ms["vector"] for d in with_slow} == {slow.module.latency.as_dict()["vector"]}


@pytest.mark.parametrize("query_class", [-1, 5])
def test_learn_rejects_an_unknown_query_class(query_class: int) -> None:
    module = fresh()
    decision = module.policy.forced(contexts(1, seed=1)[0], {"lexical": 10})
    with pytest.raises(ValueError, match=re.escape(f"`query_class` must be in [0, 5), got {query_class}")):
        module.learn(decision, {("lexical", 10): 1.0}, query_class, {"lexical": True})
    assert module.version == 0


def test_learn_rejects_bad_reward_without_side_effects() -> None:
    module = fresh()
    decision = module.policy.forced(contexts(1, seed=2)[0], {"lexical": 10})
    with pytest.raises(ValueError, match=re.escape("`rewards` must be 0 or 1, got 3.0 for ('lexical', 10)")):
        module.learn(decision, {("lexical", 10): 3.0}, 0, {"lexical": True})
    assert module.count.tolist() == [0.0] * 6
    assert module.version == 0


# --------------------------------------------------------------------------- state
def test_get_state_is_float64(trained: BanditRLModule) -> None:
    state = trained.get_state()
    assert set(state) == {*BUFFERS, "updates", "cursor", "open_cursor"}
    assert state["latency_n"].sum() > 0 and set(state["latency_ms"]) != {10.0}, "the trained module measured calls"
    for name in BUFFERS:
        assert state[name].dtype == np.float64
        np.testing.assert_array_equal(state[name], getattr(trained, name).numpy())
    assert (state["updates"], state["cursor"]) == (40, 42)


def test_set_state_keeps_views_and_values(trained: BanditRLModule, obs: np.ndarray) -> None:
    module = fresh()
    module.set_state(trained.state_copy())
    assert_same_state(module, trained)
    assert_views(module)
    assert module.policy_version == "linear_ts-40"
    # the math sees the new parameters at once
    mine = module.forward_inference({Columns.OBS: torch.from_numpy(obs)})[Columns.ACTIONS]
    theirs = trained.forward_inference({Columns.OBS: torch.from_numpy(obs)})[Columns.ACTIONS]
    assert torch.equal(mine, theirs)


def test_set_state_partial_and_unknown_keys() -> None:
    module = fresh()
    module.set_state({"cursor": 9, "not_a_buffer": np.zeros(3)})
    assert int(module.cursor) == 9
    assert module.version == 0


def test_set_state_rejects_wrong_shape() -> None:
    module = fresh()
    with pytest.raises(ValueError, match=re.escape(f"`state['b']` must have shape (6, {DIM}), got (2, 2)")):
        module.set_state({"b": np.zeros((2, 2))})


def test_state_copy_is_deep() -> None:
    module = fresh()
    settle(module, 5)
    copy = module.state_copy()
    snapshot = {k: np.array(v, copy=True) for k, v in copy.items()}
    for name in BUFFERS:
        assert not np.shares_memory(copy[name], getattr(module, name).numpy())
    settle(module, 5, seed=1)
    module.cursor.fill_(7)
    assert module.version == 10
    for k, v in snapshot.items():
        np.testing.assert_array_equal(copy[k], v, err_msg=k)
    assert int(copy["updates"]) == 5 and int(copy["cursor"]) == 0


# --------------------------------------------------------------------------- RLlib checkpoints
def test_checkpoint_round_trip(trained: BanditRLModule, obs: np.ndarray, tmp_path: Path) -> None:
    trained.save_to_path(tmp_path)
    restored = RLModule.from_checkpoint(tmp_path)
    assert isinstance(restored, BanditRLModule)
    assert_same_state(restored, trained)
    assert (restored.version, int(restored.cursor), restored.policy_version) == (40, 42, "linear_ts-40")
    assert restored.policy_config == trained.policy_config
    assert_views(restored)
    # the measured latencies are restored, and the actions re-priced with them
    assert restored.latency.as_dict() == trained.latency.as_dict() == restored.space.latency_dict()
    np.testing.assert_array_equal(restored.space.costs, trained.space.costs)
    assert not np.array_equal(restored.space.costs, fresh().space.costs)
    batch = {Columns.OBS: torch.from_numpy(obs)}
    assert torch.equal(
        restored.forward_inference(batch)[Columns.ACTIONS], trained.forward_inference(batch)[Columns.ACTIONS]
    )
    assert torch.equal(restored.forward_train(batch)[HIT_PROBS], trained.forward_train(batch)[HIT_PROBS])


# --------------------------------------------------------------------------- ModulePlanner
def test_module_planner(trained: BanditRLModule, obs: np.ndarray) -> None:
    planner = ModulePlanner(fresh(), FZ)
    assert planner.featurizer is FZ
    assert planner.version == 0
    np.testing.assert_array_equal(planner.class_rates(), np.full((5, 3), 0.5))

    planner.load(trained.state_copy())
    assert planner.version == 40
    np.testing.assert_array_equal(planner.class_rates(), trained.class_rates())
    assert_same_state(planner.module, trained)
    assert_views(planner.module)

    d = planner.decide(obs[0])
    assert isinstance(d, Decision)
    assert d.policy_version == "linear_ts-40" and d.forced is False
    assert 0.0 < d.propensity <= 1.0
    assert d.action == planner.module.space.action_for_budgets(d.budgets)

    f = planner.force(obs[0], {"graph": 25})
    assert f.budgets == {"lexical": 0, "vector": 0, "graph": 25}
    assert (f.propensity, f.forced, f.policy_version) == (1.0, True, "linear_ts-40")

    # class rates are a snapshot taken at load time
    decision = planner.module.policy.forced(obs[1], {"lexical": 10})
    planner.module.learn(decision, {("lexical", 10): 1.0}, 0, {"lexical": True})
    np.testing.assert_array_equal(planner.class_rates(), trained.class_rates())
    assert planner.version == 41


def test_a_fitted_prior_is_installed_at_build_and_a_bad_one_fails_at_start(tmp_path: Path, obs: np.ndarray) -> None:
    from ltrr.bandit.prior import fit_prior
    from ltrr.errors import ConfigError

    recs = [({"bias": 1.0}, {"vector": 5})] * 50  # vector holds the item at rank 5, the others miss
    path = fit_prior(recs, STRATEGIES, LADDER, FZ.names).save(tmp_path / "prior.npz")
    module = fresh(prior_path=str(path), prior_weight=500.0)
    table = module.space.hit_table(module.arms.mean(FZ.vector({"bias": 1.0})))
    np.testing.assert_allclose(table[:, 1:], [[0, 0], [1, 1], [0, 0]], atol=0.01)
    assert module.count.tolist() == [0.0] * 6 and module.version == 0
    assert module.forward_inference({Columns.OBS: FZ.vector({"bias": 1.0})[None]})[DECISIONS][0].budgets == {
        "lexical": 0,
        "vector": 10,
        "graph": 0,
    }, "the prior alone picks the one strategy that finds it, at its smallest budget"
    with pytest.raises(ConfigError, match="policy.prior_path: no prior file"):
        fresh(prior_path=str(tmp_path / "missing.npz"))
