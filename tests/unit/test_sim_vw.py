"""The Vowpal Wabbit adapter: features, the shown list, and learning a 2-context problem."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.config import CostConfig
from ltrr.errors import InvalidRequest
from ltrr.sim.vw import DEFAULT_GRID, VWPolicy, VWSpec, action_lines, shared_line, shown_list

pytest.importorskip("vowpalwabbit")


def test_lines() -> None:
    space = ActionSpace.build(("lexical", "vector", "graph", "memory"), (0, 10, 25, 50, 100))
    lines = action_lines(space, space.costs)
    assert len(lines) == 624
    assert lines[0] == f"|a lexical_0 vector_0 graph_0 memory_10 cost:{space.costs[1]:.6g}"
    assert shared_line({"hist.graph": 0.5, "q chars": 0.25, "a:b|c": 1.0, "zero": 0.0}) == (
        "shared |s a_b_c:1 hist.graph:0.5 q_chars:0.25"
    )


def test_shown_list_is_rrf_over_the_prefixes() -> None:
    lists = {"a": ["x", "y", "z"], "b": ["y", "w"], "c": ["v"]}
    # a@2: x 1/61, y 1/62; b@1: y 1/61 -> y (1/61 + 1/62) before x; c not called.
    assert shown_list(lists, {"a": 2, "b": 1, "c": 0}) == ["y", "x"]
    assert shown_list(lists, {"a": 2, "b": 1}, k=1) == ["y"]
    assert shown_list(lists, {"c": 10}) == ["v"]


def test_shown_list_follows_the_rankers_order_then_rrf() -> None:
    lists = {"a": ["x", "y", "z"], "b": ["y", "w"], "c": ["v"]}
    # the ranker's order of the full union lists w, v, x (not y, z): the plan a@3 + b@2 shows its
    # own candidates among those first (w, x), then the rest by RRF (y before z); v is not in it
    assert shown_list(lists, {"a": 3, "b": 2}, order=["w", "v", "x"]) == ["w", "x", "y", "z"]
    assert shown_list(lists, {"a": 3, "b": 2}, order=["w", "v", "x"], k=2) == ["w", "x"]
    assert shown_list(lists, {"c": 1}, order=["w", "x"]) == ["v"]


@pytest.mark.parametrize("spec", [DEFAULT_GRID[0], DEFAULT_GRID[4]], ids=lambda s: s.name)
def test_vw_learns_a_two_context_problem(spec: VWSpec) -> None:
    # Two strategies at budget 10 or off: actions 1 = b only, 2 = a only, 3 = both (cost 0.3 per call).
    # Context "left" finds the item with a only, "right" with b only: the best plans are 2 (value 0.7) and 1;
    # calling both is worth 0.4, calling the wrong one -0.3.
    space = ActionSpace.build(("a", "b"), (0, 10), CostConfig(per_call=0.3, per_candidate=0.0, per_ms=0.0))
    policy = VWPolicy(space, spec, seed=0)
    rng = np.random.default_rng(0)
    best = {"left": 2, "right": 1}
    finds = {"left": "a", "right": "b"}
    late = []
    for t in range(600):
        side = "left" if rng.random() < 0.5 else "right"
        ctx = {"bias": 1.0, side: 1.0}
        a, p = policy.choose(ctx)
        hit = space.budgets(a)[finds[side]] > 0
        policy.learn(ctx, a, p, float(space.costs[a]) - hit)
        if t >= 500:
            late.append(a == best[side])
    for side, a in best.items():
        assert int(np.argmax(policy.pmf({"bias": 1.0, side: 1.0}))) + 1 == a
    assert np.mean(late) > 0.8
    policy.close()


def test_vw_draws_are_not_the_callers() -> None:
    # A caller seeding its own generator like the policy must not get the same uniforms (the policy's
    # draw would then be correlated with the caller's context draw).
    space = ActionSpace.build(("a", "b"), (0, 10))
    policy = VWPolicy(space, DEFAULT_GRID[0], seed=0)
    assert policy.rng.random() != np.random.default_rng(0).random()
    policy.close()


def test_vw_learn_rejects() -> None:
    space = ActionSpace.build(("a", "b"), (0, 10))
    policy = VWPolicy(space, DEFAULT_GRID[0], seed=0)
    with pytest.raises(InvalidRequest, match=r"^action: must be a valid action id in \[1, 3\], got 0$"):
        policy.learn({}, 0, 0.5, 0.0)
    with pytest.raises(InvalidRequest, match=r"^prob: must be in \(0, 1\], got 0.0$"):
        policy.learn({}, 1, 0.0, 0.0)
    with pytest.raises(InvalidRequest, match="^seed: must be an int"):
        VWPolicy(space, DEFAULT_GRID[0], seed=1.5)  # type: ignore[arg-type]
    policy.close()
