"""The bandit action space (ltrr.bandit.actions): ids, costs, hit tables, union values, marginals."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from ltrr.bandit import ActionSpace, CostConfig

S3 = ("lexical", "vector", "graph")
LADDER3 = (0, 10, 25)


@pytest.fixture
def space() -> ActionSpace:
    """3 strategies x 3 budgets: 27 ids, 26 valid actions, 6 arms."""
    return ActionSpace.build(S3, LADDER3)


def brute_levels(n_strategies: int, n_levels: int) -> list[tuple[int, ...]]:
    """Every level vector in mixed-radix id order (first strategy most significant)."""
    return list(itertools.product(range(n_levels), repeat=n_strategies))


# --------------------------------------------------------------------------- build validation
@pytest.mark.parametrize(
    ("strategies", "ladder", "message"),
    [
        ([], [0, 10], "`strategies` must name at least one strategy"),
        (["a", "b", "a"], [0, 10], "`strategies` must be unique, got ['a', 'b', 'a']"),
        (["a"], [10, 25], "`ladder` must start with 0 and increase strictly, got [10, 25]"),
        (["a"], [0], "`ladder` must start with 0 and increase strictly, got [0]"),
        (["a"], [], "`ladder` must start with 0 and increase strictly, got []"),
        (["a"], [0, 25, 10], "`ladder` must start with 0 and increase strictly, got [0, 25, 10]"),
        (["a"], [0, 10, 10], "`ladder` must start with 0 and increase strictly, got [0, 10, 10]"),
        (["a", "b", "c", "d"], list(range(17)), "`ladder` x `strategies` gives 17^4 actions; at most 65536"),
        ([f"s{i}" for i in range(17)], [0, 1], "`ladder` x `strategies` gives 2^17 actions; at most 65536"),
    ],
    ids=["no-strategies", "duplicate", "no-zero", "only-zero", "empty", "decreasing", "repeated", "4x17", "17x2"],
)
def test_build_rejects(strategies: list[str], ladder: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ActionSpace.build(strategies, ladder)


def test_build_accepts_max_actions() -> None:
    sp = ActionSpace.build([f"s{i}" for i in range(16)], [0, 1])
    assert sp.n_actions == 65536
    assert sp.costs.shape == (65536,)


def test_sizes(space: ActionSpace) -> None:
    assert (space.n_strategies, space.n_levels, space.n_arms, space.n_actions) == (3, 3, 6, 27)
    assert space.strategies == S3 and space.ladder == LADDER3
    # arm s * (L - 1) + level - 1
    assert [space.arm(s, lv) for s in range(3) for lv in (1, 2)] == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- mixed-radix ids
def test_levels_and_action_round_trip_every_id(space: ActionSpace) -> None:
    expected = brute_levels(3, 3)
    for a in range(space.n_actions):
        assert space.levels(a) == expected[a]
        assert space.action(expected[a]) == a


def test_levels_by_hand(space: ActionSpace) -> None:
    # 11 = 1 * 9 + 0 * 3 + 2
    assert space.levels(11) == (1, 0, 2)
    assert space.budgets(11) == {"lexical": 10, "vector": 0, "graph": 25}
    assert space.action([2, 2, 2]) == 26


def test_budgets_round_trip_every_valid_id(space: ActionSpace) -> None:
    for a in range(1, space.n_actions):
        budgets = space.budgets(a)
        assert list(budgets) == list(S3)
        assert all(k in LADDER3 for k in budgets.values())
        assert space.action_for_budgets(budgets) == a
    # strategies left out are not called
    assert space.action_for_budgets({"vector": 25}) == space.action([0, 2, 0]) == 6


def test_id_zero_is_invalid(space: ActionSpace) -> None:
    assert space.levels(0) == (0, 0, 0)
    assert space.costs[0] == np.inf
    assert np.all(np.isfinite(space.costs[1:]))
    with pytest.raises(ValueError, match=re.escape("`budgets` must call at least one strategy")):
        space.action_for_budgets({"lexical": 0, "vector": 0, "graph": 0})
    with pytest.raises(ValueError, match=re.escape("`budgets` must call at least one strategy")):
        space.action_for_budgets({})


@pytest.mark.parametrize(
    ("budgets", "message"),
    [
        ({"lexical": 30}, "`budgets['lexical']` must be on the ladder [0, 10, 25], got 30"),
        ({"lexical": 10, "graph": -10}, "`budgets['graph']` must be on the ladder [0, 10, 25], got -10"),
        ({"vector": 100}, "`budgets['vector']` must be on the ladder [0, 10, 25], got 100"),
        ({"lexcal": 10}, "`budgets` names unknown strategy 'lexcal'; known: ['lexical', 'vector', 'graph']"),
    ],
)
def test_action_for_budgets_rejects_off_ladder(space: ActionSpace, budgets: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        space.action_for_budgets(budgets)


# --------------------------------------------------------------------------- costs
def test_costs_by_hand() -> None:
    costs = CostConfig(per_call=0.01, per_candidate=0.001, per_ms=0.002, latency_ms={"a": 5.0, "other": 99.0})
    sp = ActionSpace.build(["a", "b"], [0, 10, 25], costs)
    # a: fixed 0.01 + 0.002 * 5 = 0.02 -> levels (0, 0.03, 0.045)
    # b (no prior: default_latency_ms 10): fixed 0.01 + 0.002 * 10 = 0.03 -> (0, 0.04, 0.055)
    # id = 3 * level_a + level_b
    expected = [np.inf, 0.04, 0.055, 0.03, 0.07, 0.085, 0.045, 0.085, 0.1]
    assert sp.costs.tolist() == pytest.approx(expected)
    assert sp.latency_dict() == {"a": 5.0, "b": 10.0}


def test_set_latency_reprices_in_place() -> None:
    costs = CostConfig(per_call=0.01, per_candidate=0.001, per_ms=0.002, latency_ms={"a": 5.0})
    sp = ActionSpace.build(["a", "b"], [0, 10, 25], costs)
    held = sp.costs
    sp.set_latency({"a": 0.0, "b": 20.0})
    # a: fixed 0.01 -> (0, 0.02, 0.035); b: 0.01 + 0.002 * 20 = 0.05 -> (0, 0.06, 0.075)
    expected = [np.inf, 0.06, 0.075, 0.02, 0.08, 0.095, 0.035, 0.095, 0.11]
    assert held is sp.costs and sp.costs.tolist() == pytest.approx(expected)
    assert sp.latency_dict() == {"a": 0.0, "b": 20.0}
    # a dict that lacks a strategy prices it at its prior (an old log); costs_for does not install
    assert sp.costs_for({"b": 20.0}).tolist() == pytest.approx(
        [np.inf, 0.06, 0.075, 0.03, 0.09, 0.105, 0.045, 0.105, 0.12]
    )
    assert sp.costs.tolist() == pytest.approx(expected)
    sp.set_latency(np.array([5.0, 10.0]))
    np.testing.assert_allclose(sp.costs, ActionSpace.build(["a", "b"], [0, 10, 25], costs).costs, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("latency", "message"),
    [
        (np.array([1.0]), "`latency_ms` must be 2 finite values >= 0, got [1.0]"),
        (np.array([1.0, -2.0]), "`latency_ms` must be 2 finite values >= 0, got [1.0, -2.0]"),
        ({"a": float("nan")}, "`latency_ms` must be 2 finite values >= 0, got [nan, 10.0]"),
    ],
)
def test_set_latency_rejects(latency, message: str) -> None:
    sp = ActionSpace.build(["a", "b"], [0, 10, 25])
    before = sp.costs.copy()
    with pytest.raises(ValueError, match=re.escape(message)):
        sp.set_latency(latency)
    np.testing.assert_array_equal(sp.costs, before)


def test_default_costs_by_hand(space: ActionSpace) -> None:
    # per_call 0.01 + per_ms 0.0005 * 10 ms (default_latency_ms) = 0.015, per_candidate 0.0002:
    # level 1 (k 10) -> 0.017, level 2 (k 25) -> 0.020
    per = (0.0, 0.017, 0.020)
    expected = [sum(per[lv] for lv in levels) for levels in brute_levels(3, 3)]
    assert space.costs[1:].tolist() == pytest.approx(expected[1:])


def test_costs_single_strategy() -> None:
    # per_ms 0: this checks the one-strategy shape, not the latency term
    sp = ActionSpace.build(["only"], [0, 10, 100], CostConfig(per_call=0.1, per_candidate=0.001, per_ms=0.0))
    assert sp.costs.tolist() == pytest.approx([np.inf, 0.11, 0.2])


# --------------------------------------------------------------------------- hit tables
def test_hit_table_by_hand() -> None:
    sp = ActionSpace.build(["a", "b"], [0, 10, 25])
    table = sp.hit_table(np.array([0.3, 0.2, 0.1, 0.4]))
    # running max per strategy, level 0 = 0
    np.testing.assert_array_equal(table, [[0.0, 0.3, 0.3], [0.0, 0.1, 0.4]])


def test_hit_table_clips() -> None:
    sp = ActionSpace.build(["a", "b"], [0, 10, 25])
    np.testing.assert_array_equal(sp.hit_table(np.array([-0.5, 1.5, 0.2, -0.1])), [[0, 0, 1], [0, 0.2, 0.2]])


def test_hit_table_batched_monotone(space: ActionSpace) -> None:
    probs = np.random.default_rng(0).uniform(-0.2, 1.2, (7, 5, space.n_arms))
    table = space.hit_table(probs)
    assert table.shape == (7, 5, 3, 3)
    np.testing.assert_array_equal(table[..., 0], 0.0)
    assert np.all(np.diff(table, axis=-1) >= 0.0)
    assert table.min() >= 0.0 and table.max() <= 1.0
    clipped = np.clip(probs, 0.0, 1.0).reshape(7, 5, 3, 2)
    np.testing.assert_array_equal(table[..., 1], clipped[..., 0])
    np.testing.assert_array_equal(table[..., 2], np.maximum(clipped[..., 0], clipped[..., 1]))


# --------------------------------------------------------------------------- union values
def brute_union(table: np.ndarray) -> np.ndarray:
    """``(S, L)`` -> ``(L**S,)``: 1 - prod_s (1 - p[s, a_s]) by looping over every level vector."""
    s_count, n_levels = table.shape
    out = []
    for levels in brute_levels(s_count, n_levels):
        miss = 1.0
        for s, lv in enumerate(levels):
            miss *= 1.0 - table[s, lv]
        out.append(1.0 - miss)
    return np.array(out)


def test_union_values_by_hand() -> None:
    sp = ActionSpace.build(["a", "b"], [0, 10, 25])
    table = np.array([[0.0, 0.5, 0.6], [0.0, 0.2, 0.5]])
    # id 4 = (1, 1): 1 - 0.5 * 0.8 = 0.6; id 8 = (2, 2): 1 - 0.4 * 0.5 = 0.8
    expected = [0.0, 0.2, 0.5, 0.5, 0.6, 0.75, 0.6, 0.68, 0.8]
    assert sp.union_values(table).tolist() == pytest.approx(expected)


@pytest.mark.parametrize(("n_strategies", "n_levels"), [(1, 4), (2, 3), (3, 3), (4, 3), (5, 2)])
def test_union_values_equal_brute_force(n_strategies: int, n_levels: int) -> None:
    sp = ActionSpace.build([f"s{i}" for i in range(n_strategies)], [0, *range(10, 10 * n_levels, 10)])
    rng = np.random.default_rng(n_strategies)
    table = sp.hit_table(rng.uniform(0.0, 1.0, sp.n_arms))
    values = sp.union_values(table)
    assert values.shape == (sp.n_actions,)
    np.testing.assert_allclose(values, brute_union(table), rtol=0, atol=1e-12)
    assert values[0] == 0.0


@pytest.mark.parametrize(("n_strategies", "n_levels"), [(1, 4), (3, 3), (4, 3)])
def test_union_values_batched_and_out_buffer(n_strategies: int, n_levels: int) -> None:
    sp = ActionSpace.build([f"s{i}" for i in range(n_strategies)], [0, *range(10, 10 * n_levels, 10)])
    m = 6
    tables = sp.hit_table(np.random.default_rng(1).uniform(0.0, 1.0, (m, sp.n_arms)))
    assert tables.shape == (m, n_strategies, n_levels)
    expected = np.stack([brute_union(t) for t in tables])

    values = sp.union_values(tables)
    assert values.shape == (m, sp.n_actions)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)

    buf = np.full((m, sp.n_actions), -7.0)
    res = sp.union_values(tables, out=buf)
    assert np.shares_memory(res, buf)
    np.testing.assert_allclose(buf, expected, rtol=0, atol=1e-12)
    # the buffer is reusable: a second call overwrites it completely
    sp.union_values(tables[::-1].copy(), out=buf)
    np.testing.assert_allclose(buf, expected[::-1], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- marginals and floor
def test_marginals_brute_force(space: ActionSpace) -> None:
    dist = np.random.default_rng(2).uniform(0.0, 1.0, space.n_actions)
    dist[0] = 0.0
    dist /= dist.sum()
    marg = space.marginals(dist)
    assert marg.shape == (3, 3)
    np.testing.assert_allclose(marg.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    expected = np.zeros((3, 3))
    for a, levels in enumerate(brute_levels(3, 3)):
        for s, lv in enumerate(levels):
            expected[s, lv] += dist[a]
    np.testing.assert_allclose(marg, expected, rtol=0, atol=1e-12)


def test_marginals_one_hot(space: ActionSpace) -> None:
    dist = np.zeros(space.n_actions)
    dist[11] = 1.0  # levels (1, 0, 2)
    np.testing.assert_array_equal(space.marginals(dist), [[0, 1, 0], [1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize(
    ("n_strategies", "n_levels", "expected"),
    [(1, 2, 1.0), (1, 5, 1 / 4), (2, 2, 1 / 3), (2, 3, 2 / 8), (3, 3, 8 / 26), (4, 5, 124 / 624), (2, 11, 10 / 120)],
)
def test_uniform_level_floor_brute_force(n_strategies: int, n_levels: int, expected: float) -> None:
    sp = ActionSpace.build([f"s{i}" for i in range(n_strategies)], list(range(n_levels)))
    valid = brute_levels(n_strategies, n_levels)[1:]
    counts = np.zeros((n_strategies, n_levels))
    for levels in valid:
        for s, lv in enumerate(levels):
            counts[s, lv] += 1
    probs = counts / len(valid)
    # with one strategy level 0 cannot occur at all: the floor is over the levels that can
    possible = probs[:, 1:] if n_strategies == 1 else probs
    assert sp.uniform_level_floor() == pytest.approx(possible.min())
    assert sp.uniform_level_floor() == pytest.approx(expected)


def test_overlap_interpolates_between_independent_misses_and_nested_hits():
    table = np.array([[0.0, 0.9], [0.0, 0.6]])  # two strategies, one budget each
    both = 3  # levels (1, 1)
    for overlap, expected in ((0.0, 1 - 0.1 * 0.4), (1.0, 0.9), (0.5, 0.5 * 0.96 + 0.5 * 0.9)):
        sp = ActionSpace.build(("a", "b"), (0, 10), overlap=overlap)
        assert sp.union_values(table)[both] == pytest.approx(expected)
        assert sp.union_value(table, (1, 1)) == pytest.approx(expected)
        assert sp.union_values(table)[sp.action((1, 0))] == pytest.approx(0.9), "one strategy: its own p"
    zero_one = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert ActionSpace.build(("a", "b"), (0, 10), overlap=0.7).union_values(zero_one)[both] == 1.0
    with pytest.raises(ValueError, match=r"`overlap` must be in \[0, 1\], got 1.5"):
        ActionSpace.build(("a", "b"), (0, 10), overlap=1.5)


def test_pairwise_overlap_by_hand_for_two_strategies():
    table = np.array([[0.0, 0.4], [0.0, 0.3]])
    both = 3  # levels (1, 1)
    for w, joint in ((0.0, 0.12), (1.0, 0.3), (0.5, 0.12 + 0.5 * (0.3 - 0.12)), (-1.0, 0.0), (-0.5, 0.06)):
        sp = ActionSpace.build(("a", "b"), (0, 10), pair_overlap=np.array([[0.0, w], [w, 0.0]]))
        expected = 0.4 + 0.3 - joint  # inclusion-exclusion, exact for two strategies
        assert sp.union_values(table)[both] == pytest.approx(expected), w
        assert sp.union_value(table, (1, 1)) == pytest.approx(expected), w
        assert sp.union_values(table)[sp.action((0, 1))] == pytest.approx(0.3), "one strategy: its own p"


def test_pairwise_overlap_names_each_pair_and_stays_within_union_bounds():
    rng = np.random.default_rng(3)
    om = np.array([[0, 0.9, -0.4, 1.0], [0.9, 0, -0.3, 0.8], [-0.4, -0.3, 0, 0.1], [1.0, 0.8, 0.1, 0]])
    sp = ActionSpace.build(("lexical", "vector", "graph", "memory"), (0, 10, 25, 50, 100), pair_overlap=om)
    table = sp.hit_table(rng.random((6, sp.n_arms)))
    u = sp.union_values(table, out=np.empty((6, sp.n_actions)))
    lv = np.array([sp.levels(a) for a in range(sp.n_actions)])
    p = table[:, np.arange(4)[None, :], lv]  # (6, A, S)
    assert np.all(u >= p.max(axis=2) - 1e-12) and np.all(u <= np.minimum(p.sum(axis=2), 1.0) + 1e-12)
    for t, a in ((0, 7), (3, 311), (5, 624)):
        assert u[t, a] == pytest.approx(sp.union_value(table[t], sp.levels(a)))
    # lexical and memory nest fully: adding memory to lexical adds nothing when it is the weaker one
    t01 = np.zeros((4, 5))
    t01[0, 1:], t01[3, 1:] = 0.8, 0.5
    assert sp.union_value(t01, (1, 0, 0, 1)) == pytest.approx(0.8)
    # on 0/1 tables every model is the true union
    zero_one = sp.hit_table((rng.random((9, sp.n_arms)) < 0.4).astype(float))
    np.testing.assert_array_equal(
        sp.union_values(zero_one), ActionSpace.build(sp.strategies, sp.ladder).union_values(zero_one)
    )


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.zeros((3, 3)), r"`pair_overlap` must be a \(2, 2\) matrix, got shape \(3, 3\)"),
        (np.array([[0.0, 1.5], [1.5, 0.0]]), r"`pair_overlap` must hold finite values in \[-1, 1\]"),
        (np.array([[0.0, 0.5], [0.2, 0.0]]), r"`pair_overlap` must be symmetric"),
    ],
)
def test_pairwise_overlap_rejects(matrix, message):
    with pytest.raises(ValueError, match=message):
        ActionSpace.build(("a", "b"), (0, 10), pair_overlap=matrix)
