"""Position bias: regression-EM and the swap estimator recover a known examination curve on seeded logs;
weights clip; the record round-trips; bad input is named."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from ltrr.ranking.position_bias import Examination, estimate_by_regression_em, estimate_from_swaps, swap_adjacent
from ltrr.sim.clicks import PositionClickModel

K = 10
#: the simulated users' examination curve, theta_k = k^-0.8 (the simulator's PBM): 1, 0.574, 0.415, ..., 0.158
MODEL = PositionClickModel(eta=0.8, depth=K)
THETA = MODEL.examination()
W, B = np.array([1.5, -1.0, 0.5]), -1.0  # true relevance: gamma(x) = sigmoid(W.x + B)


def ranks(score: np.ndarray) -> np.ndarray:
    """1-based position of each row's entries when sorted by ``score`` descending, shape as ``score``."""
    pos = np.empty(score.shape, dtype=np.int64)
    np.put_along_axis(pos, np.argsort(-score, axis=1), np.arange(1, score.shape[1] + 1)[None, :], axis=1)
    return pos


def naive_error(positions: np.ndarray, clicks: np.ndarray) -> float:
    """Max error of theta read as the click rate at k over the click rate at 1, ignoring relevance."""
    ctr = np.bincount(positions, clicks)[1:] / np.bincount(positions)[1:]
    return float(np.abs(ctr / ctr[0] - THETA).max())


def feature_log(n_searches: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_searches`` x K impressions of fresh documents with 3 features each.

    The logging ranker orders by the true relevance score plus N(0, 2^2) noise, so relevant documents sit
    high (the naive click-rate ratio is badly biased) yet a document of given features is shown at many
    positions across searches. That spread is what identifies theta: were each kind of document always at
    the same position, position and relevance would be confounded and no estimator could split them.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_searches, K, 3))
    score = x @ W
    pos = ranks(score + 2.0 * rng.normal(size=score.shape))
    gamma = 1.0 / (1.0 + np.exp(-(score + B)))
    clicks = (rng.random(score.shape) < THETA[pos - 1] * gamma).astype(np.int64)
    return pos.ravel(), clicks.ravel(), x.reshape(-1, 3)


# Measured over seeds 0-4 at 50k impressions: max |theta_hat - theta| 0.021-0.034 (expected labels),
# 0.021-0.034 (sampled), 0.006-0.008 at 400k (so the error is sampling noise, not bias); naive 0.13-0.15.
@pytest.mark.parametrize("labels", ["expected", "sampled"])
def test_regression_em_recovers_theta_from_features(labels: Any) -> None:
    positions, clicks, x = feature_log(5_000, seed=0)
    assert naive_error(positions, clicks) > 0.1  # the log is biased enough for the check to mean something
    ex = estimate_by_regression_em(positions, clicks, features=x, labels=labels, seed=0)
    assert ex.theta[0] == 1.0
    assert np.abs(ex.theta - THETA).max() <= 0.05
    assert ex.estimator == "regression_em"
    if labels == "expected":
        assert ex.converged and ex.iterations < 200


def test_regression_em_recovers_theta_from_pair_ids() -> None:
    # 200 (query, document) pairs of relevance U(0.05, 0.9); each search shows 10 of them, ordered by
    # relevance plus N(0, 0.3^2) noise, so a pair is seen ~250 times across several positions.
    # Measured over seeds 0-3: max error 0.011-0.024; naive 0.10-0.11.
    rng = np.random.default_rng(0)
    n_searches, n_pairs = 5_000, 200
    gamma_pair = rng.uniform(0.05, 0.9, n_pairs)
    pairs = np.argsort(rng.random((n_searches, n_pairs)), axis=1)[:, :K]
    gamma = gamma_pair[pairs]
    pos = ranks(gamma + 0.3 * rng.normal(size=gamma.shape))
    clicks = (rng.random(gamma.shape) < THETA[pos - 1] * gamma).astype(np.int64)
    assert naive_error(pos.ravel(), clicks.ravel()) > 0.09
    ex = estimate_by_regression_em(pos.ravel(), clicks.ravel(), pair_ids=pairs.ravel())
    assert ex.converged
    assert np.abs(ex.theta - THETA).max() <= 0.05


def test_regression_em_drops_impressions_deeper_than_max_position() -> None:
    positions, clicks, x = feature_log(5_000, seed=1)
    top5 = positions <= 5
    ex = estimate_by_regression_em(positions, clicks, features=x, max_position=5)
    same = estimate_by_regression_em(positions[top5], clicks[top5], features=x[top5], max_position=5)
    assert ex.theta.shape == (5,)
    assert ex.theta.tolist() == same.theta.tolist()
    assert np.abs(ex.theta - THETA[:5]).max() <= 0.05


def swap_log(n_searches: int, seed: int, share: float) -> tuple[list[int | None], list[int | None]]:
    """Simulated users of :class:`PositionClickModel` each want one of 10 items, the ranker's j-th with
    probability proportional to j^-0.5 (so the naive click curve is biased); a ``share`` of the lists has
    one adjacent pair swapped by :func:`swap_adjacent`."""
    rng = np.random.default_rng(seed)
    ids = [f"d{j}" for j in range(1, K + 1)]
    p = np.arange(1, K + 1) ** -0.5
    wanted = rng.choice(K, size=n_searches, p=p / p.sum())
    swapped: list[int | None] = []
    clicked: list[int | None] = []
    for w in wanted:
        shown, k = swap_adjacent(ids, rng, share)
        swapped.append(k)
        clicked.append(MODEL.click(shown, ids[w], MODEL.draw(rng)))
    return swapped, clicked


# Every list swapped (share 1) to keep the test fast; a smaller share needs proportionally more traffic.
# Measured over seeds 0-7 at 100k searches: max |theta_hat - theta| 0.008-0.037, max relative error of a
# ratio theta_{k+1}/theta_k 0.013-0.097; the naive click curve is off by 0.16-0.17.
def test_swap_estimator_recovers_the_ratios() -> None:
    swapped, clicked = swap_log(100_000, seed=0, share=1.0)
    naive = np.bincount([c for c in clicked if c is not None], minlength=K + 1)[1:]
    assert np.abs(naive / naive[0] - THETA).max() > 0.1
    ex = estimate_from_swaps(swapped, clicked)
    assert ex.estimator == "swaps" and ex.theta[0] == 1.0
    ratio, true_ratio = ex.theta[1:] / ex.theta[:-1], THETA[1:] / THETA[:-1]
    assert np.abs(ratio / true_ratio - 1).max() <= 0.15
    assert np.abs(ex.theta - THETA).max() <= 0.05


def test_swap_estimator_exact_on_a_tiny_log() -> None:
    # max_position 3; the click at position 4 is ignored.
    #   search   0  1  2  3  4     5       6     7
    #   swapped  1  1  2  2  None  None    None  None
    #   clicked  1  2  2  3  1     (1, 2)  3     4
    # Pair (1, 2): swapped {0, 1}: c^s_1 = 1/2, c^s_2 = 1/2; untouched {4..7} (not 2, 3: their swap moved 2):
    #   c^u_1 = 2/4, c^u_2 = 1/4  ->  theta_2 / theta_1 = (1/2 + 1/4) / (1/2 + 2/4) = 3/4.
    # Pair (2, 3): swapped {2, 3}: c^s_2 = 1/2, c^s_3 = 1/2; untouched {4..7}: c^u_2 = 1/4, c^u_3 = 1/4
    #   ->  theta_3 / theta_2 = (1/2 + 1/4) / (1/2 + 1/4) = 1, so theta_3 = 3/4.
    swapped = [1, 1, 2, 2, None, None, None, None]
    clicked: list[Any] = [1, 2, 2, [3], 1, (1, 2), 3, 4]
    ex = estimate_from_swaps(swapped, clicked, max_position=3)
    assert ex.theta.tolist() == pytest.approx([1.0, 3 / 4, 3 / 4])
    assert (ex.iterations, ex.converged) == (0, True)


def test_swap_adjacent() -> None:
    rng = np.random.default_rng(0)
    ids = ["a", "b", "c", "d"]
    runs = [swap_adjacent(ids, rng, 0.3) for _ in range(20_000)]
    ks = np.array([k or 0 for _, k in runs])
    assert ids == ["a", "b", "c", "d"]  # not mutated
    assert abs(np.mean(ks > 0) - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 20_000)
    assert set(ks[ks > 0].tolist()) == {1, 2, 3}  # every adjacent pair, none outside the list
    for shown, k in runs[:200]:
        expected = list(ids)
        if k is not None:
            expected[k - 1], expected[k] = expected[k], expected[k - 1]
        assert shown == expected
    assert {swap_adjacent(ids, rng, 1.0, max_position=2)[1] for _ in range(100)} == {1}
    assert swap_adjacent(["a"], rng, 1.0) == (["a"], None)
    assert swap_adjacent(ids, rng, 0.0) == (ids, None)


def test_weight_clips_and_extends() -> None:
    ex = Examination(np.array([1.0, 0.5, 0.04]), max_weight=20.0)
    assert ex.weight(1) == 1.0
    assert ex.weight(2) == 2.0
    assert ex.weight(3) == 20.0  # 1 / 0.04 = 25, clipped
    assert ex.weight(9) == 20.0  # beyond K: theta_K
    assert ex.weight(np.array([2, 1, 4])).tolist() == [2.0, 1.0, 20.0]
    assert Examination(np.array([1.0, 0.04]), max_weight=100.0).weight(2) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="^`position` must be an integer >= 1, got 0$"):
        ex.weight(0)


def test_examination_round_trips_through_json() -> None:
    ex = Examination(np.array([1.0, 0.6, 0.3]), iterations=42, converged=False, max_weight=10.0)
    back = Examination.from_dict(json.loads(json.dumps(ex.to_dict())))
    assert back.to_dict() == ex.to_dict()
    assert back.theta.tolist() == [1.0, 0.6, 0.3]
    assert (back.iterations, back.converged, back.max_weight, back.estimator) == (42, False, 10.0, "regression_em")
    with pytest.raises(ValueError):
        back.theta[0] = 2.0  # read-only


@pytest.mark.parametrize(
    ("theta", "max_weight", "message"),
    [
        ([0.5, 0.25], 20.0, "`theta` must be normalised so theta[0] == 1, got 0.5"),
        ([1.0, 0.0], 20.0, "`theta` must be finite and > 0, got [1.0, 0.0]"),
        ([], 20.0, "`theta` must be a non-empty 1-dimensional array, got shape (0,)"),
        ([1.0], 0.5, "`max_weight` must be finite and >= 1, got 0.5"),
    ],
)
def test_examination_rejects(theta: list[float], max_weight: float, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Examination(np.array(theta), max_weight=max_weight)
    assert str(err.value) == message


def small_log() -> dict[str, Any]:
    return {"positions": np.array([1, 2, 1, 2]), "clicks": np.array([1, 0, 0, 1]), "pair_ids": np.array([0, 0, 1, 1])}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"clicks": np.array([1, 0, 0])}, "`clicks` must have the same length as `positions`, got 3 and 4"),
        ({"pair_ids": np.array([0, 1])}, "`pair_ids` must have the same length as `positions`, got 2 and 4"),
        ({"positions": np.array([0, 1, 2, 1])}, "`positions` must be >= 1 (1-based), got 0"),
        ({"positions": np.array([1.5, 1, 2, 1])}, "`positions` must hold integers, got dtype float64"),
        ({"positions": np.array([], dtype=int)}, "`positions` must be a non-empty 1-dimensional array, got shape (0,)"),
        ({"clicks": np.array([1, 2, 0, 0])}, "`clicks` must be a 1-dimensional array of 0 and 1, got [2]"),
        ({"clicks": np.array([1.0, 0.5, 0.0, 0.0])}, "`clicks` must be a 1-dimensional array of 0 and 1, got [0.5]"),
        ({"clicks": np.zeros(4, dtype=int)}, "`clicks` must hold at least one click at positions 1..2"),
        ({"pair_ids": np.array([0, -1, 1, 1])}, "`pair_ids` must be >= 0, got -1"),
        ({"features": np.zeros((4, 2))}, "exactly one of `features` and `pair_ids` must be given"),
        ({"pair_ids": None}, "exactly one of `features` and `pair_ids` must be given"),
        (
            {"pair_ids": None, "features": np.zeros((3, 2))},
            "`features` must have the same length as `positions`, got 3 and 4",
        ),
        (
            {"pair_ids": None, "features": np.zeros(4)},
            "`features` must be a finite 2-dimensional array (n, F), got shape (4,)",
        ),
        ({"max_position": 3}, "`positions` must hold every position 1..3 (`max_position`), missing [3]"),
        ({"max_position": 0}, "`max_position` must be an integer >= 1, got 0"),
        ({"iterations": 0}, "`iterations` must be an integer >= 1, got 0"),
        ({"tolerance": 0.0}, "`tolerance` must be > 0, got 0.0"),
        ({"l2": -1.0}, "`l2` must be >= 0, got -1.0"),
        ({"labels": "binary"}, "`labels` must be 'expected' or 'sampled', got 'binary'"),
    ],
)
def test_regression_em_rejects(change: dict[str, Any], message: str) -> None:
    kwargs = {"max_position": 2, **small_log(), **change}
    with pytest.raises(ValueError) as err:
        estimate_by_regression_em(**kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("swapped", "clicked", "kwargs", "message"),
    [
        ([1, None], [1], {}, "`clicked` must have the same length as `swapped`, got 1 and 2"),
        ([0, None], [1, 1], {}, "`swapped` must hold None or integers >= 1, got 0 at index 0"),
        ([1, None], [1, 0], {}, "`clicked` must hold None or positions >= 1, got 0 at index 1"),
        ([1, None], [1, [1, True]], {}, "`clicked` must hold None or positions >= 1, got [1, True] at index 1"),
        ([None, None], [1, 2], {}, "`swapped` must hold searches swapped at 1 and searches that left 1, 2 alone"),
        ([1, None], [2, None], {}, "`clicked` must hold clicks at position 1 to estimate theta_2 / theta_1"),
        ([1, None], [1, 1], {}, "`clicked` must hold clicks at every position 1..2, got theta [1.0, 0.0]"),
        ([1, None], [1, 1], {"max_position": 1}, "`max_position` must be an integer >= 2, got 1"),
    ],
)
def test_estimate_from_swaps_rejects(
    swapped: list[Any], clicked: list[Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as err:
        estimate_from_swaps(swapped, clicked, **({"max_position": 2} | kwargs))
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("share", "max_position", "message"),
    [
        (1.5, None, "`share` must be in [0, 1], got 1.5"),
        (-0.1, None, "`share` must be in [0, 1], got -0.1"),
        (0.5, 1, "`max_position` must be an integer >= 2, got 1"),
    ],
)
def test_swap_adjacent_rejects(share: float, max_position: int | None, message: str) -> None:
    with pytest.raises(ValueError) as err:
        swap_adjacent(["a", "b"], np.random.default_rng(0), share, max_position=max_position)
    assert str(err.value) == message
