"""Statistical checks of the policies on seeded simulations (ltrr.bandit.simulate)."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.bandit import ActionSpace, PolicyConfig, new_policy
from ltrr.bandit.simulate import Simulator, one_right_strategy

STRATEGIES = ("lexical", "vector", "graph", "memory")
LEARNERS = ("linear_ts", "linucb", "epsilon_greedy")


def run(algorithm: str, hit: np.ndarray, rounds: int, *, floor: float = 0.01, seed: int = 7):
    cfg = PolicyConfig(algorithm=algorithm, propensity_floor=floor, seed=seed)
    space = ActionSpace.build(STRATEGIES, cfg.ladder, cfg.costs)
    sim = Simulator(space, hit, seed=seed)
    policy = new_policy(cfg, STRATEGIES, sim.dim)
    log = []
    for _ in range(rounds):
        c, x = sim.context()
        d = policy.select(x)
        policy.update(d, sim.rewards(c, d.action))
        log.append((c, d, sim.regret(c, d.action)))
    return policy, sim, log


@pytest.mark.parametrize("algorithm", ["linear_ts", "linucb"])
def test_regret_grows_sublinearly_when_one_strategy_is_always_right(algorithm):
    space = ActionSpace.build(STRATEGIES, (0, 10, 25, 50, 100))
    _, _, log = run(algorithm, one_right_strategy(space, 2), 4000, floor=0.0)
    regret = np.cumsum([r for _, _, r in log])
    quarters = [regret[i * 1000 - 1] - (regret[(i - 1) * 1000 - 1] if i > 1 else 0.0) for i in range(1, 5)]
    # Regret per 1000 rounds must shrink: the last quarter pays far less than the first.
    assert quarters[3] < 0.25 * quarters[0], quarters
    assert regret[-1] / 4000 < 0.5 * regret[999] / 1000


@pytest.mark.parametrize("algorithm", LEARNERS)
def test_after_2000_rounds_the_right_strategy_is_called_over_90_percent(algorithm):
    space = ActionSpace.build(STRATEGIES, (0, 10, 25, 50, 100))
    _, _, log = run(algorithm, one_right_strategy(space, 2), 2500)
    called = [d.budgets["graph"] > 0 for _, d, _ in log[2000:]]
    assert np.mean(called) > 0.9
    # and it stops paying for the strategies that never help
    others = [sum(d.budgets[s] > 0 for s in ("lexical", "vector", "memory")) for _, d, _ in log[2000:]]
    assert np.mean(others) < 0.5


def test_learns_a_different_right_strategy_per_context():
    hit = np.full((3, 4, 5), 0.03)
    hit[0, 0], hit[1, 2], hit[2, 3] = 0.95, 0.95, 0.95  # class 0: lexical, 1: graph, 2: memory
    hit[:, :, 0] = 0.0
    _, _, log = run("linear_ts", hit, 3000)
    right = {0: "lexical", 1: "graph", 2: "memory"}
    for c in range(3):
        late = [d for cc, d, _ in log[2000:] if cc == c]
        assert np.mean([d.budgets[right[c]] > 0 for d in late]) > 0.85, c


@pytest.mark.parametrize("algorithm", [*LEARNERS, "uniform"])
def test_exploration_never_drops_below_the_floor(algorithm):
    floor = 0.02
    space = ActionSpace.build(STRATEGIES, (0, 10, 25, 50, 100))
    policy, sim, log = run(algorithm, one_right_strategy(space, 2), 1500, floor=floor)
    n_valid = space.n_actions - 1
    min_joint = floor / space.uniform_level_floor() / n_valid
    for _, d, _ in log:
        assert min(d.budget_prob.values()) >= floor - 1e-12
        assert min(min(p, 1.0 - p) for p in d.inclusion.values()) >= floor - 1e-12
        assert d.propensity >= min_joint - 1e-15
    # and the full distribution keeps every (strategy, budget) above the floor at the end of learning
    for _ in range(20):
        _, x = sim.context()
        marg = space.marginals(policy.distribution(x))
        assert marg.min() >= floor - 1e-12
