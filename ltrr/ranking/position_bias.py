r"""Examination probability per position, to weight ranker training against position bias.

A user clicks what they look at and like, and they look at the top more than the bottom, so a
click log says as much about the old ranking as about relevance. Under the position-based model

.. math::

    P(C = 1 \mid q, d, k) = P(E = 1 \mid k)\, P(R = 1 \mid q, d) = \theta_k\, \gamma_{q,d},
    \qquad k = 1 \dots K,

weighting each clicked training row by :math:`1 / \theta_k` makes the expected loss that of the
unbiased relevance (inverse propensity scoring; Joachims, Swaminathan & Schnabel, WSDM 2017).
:class:`Examination` holds :math:`\theta` and turns it into clipped weights. Only the ratios
:math:`\theta_k / \theta_1` are stored (:math:`\theta_1 = 1`): clicks fix the product
:math:`\theta_k \gamma` only, so scaling every :math:`\theta_k` up and every :math:`\gamma` down
explains the log equally well, and a common factor in the weights changes no ranking loss.

**Regression-EM, the default** (Wang, Golbandi, Bendersky, Metzler & Najork, "Position bias
estimation for unbiased learning to rank in personal search", WSDM 2018). With :math:`E` and
:math:`R` hidden, a click means :math:`E = R = 1`, and a non-click splits by Bayes' rule into

.. math::

    P(E{=}1, R{=}0 \mid C{=}0) = \frac{\theta_k (1 - \gamma)}{1 - \theta_k \gamma}, \quad
    P(E{=}0, R{=}1 \mid C{=}0) = \frac{(1 - \theta_k) \gamma}{1 - \theta_k \gamma}, \quad
    P(E{=}0, R{=}0 \mid C{=}0) = \frac{(1 - \theta_k)(1 - \gamma)}{1 - \theta_k \gamma}

(E-step). The M-step sets :math:`\theta_k` to the mean posterior :math:`P(E = 1 \mid c)` of the
observations at :math:`k`, and refits :math:`\gamma` to the posterior relevance
:math:`r = P(R = 1 \mid c)`: either a logistic regression :math:`\gamma = \sigma(w^\top x + b)` on
the (query, document) features, L2-penalised and fitted by a few warm-started Newton (IRLS) steps
per iteration, or, given pair ids instead, the mean of :math:`r` over each pair's observations.
The paper samples binary labels :math:`r \sim \mathrm{Bernoulli}` because its regression is a GBDT
classifier; a logistic regression takes the expected label directly, which is the exact M-step and
removes the sampling noise (``labels="sampled"`` keeps the paper's variant, seeded).

The estimate is identified only because the same kind of document is seen at different positions
across searches; if each document always sits at one position, position and relevance are
confounded and no estimator can split them.

**Swap interventions, for comparison.** :func:`swap_adjacent` swaps one random adjacent pair
:math:`(k, k + 1)` in a ``share`` of the shown lists. Because the swap ignores content, the
ranker's :math:`k`-th item (mean relevance :math:`\bar\gamma_a`) and :math:`(k+1)`-th
(:math:`\bar\gamma_b`) have the same distribution in swapped and untouched lists, and the per-search
click rates at the two positions are, in swapped lists (:math:`s`) and in lists whose swap left
:math:`k` and :math:`k + 1` alone (:math:`u`),

.. math::

    c^s_{k+1} = \theta_{k+1} \bar\gamma_a,\ c^s_k = \theta_k \bar\gamma_b,\
    c^u_{k+1} = \theta_{k+1} \bar\gamma_b,\ c^u_k = \theta_k \bar\gamma_a
    \quad\Rightarrow\quad
    \frac{\theta_{k+1}}{\theta_k} = \frac{c^s_{k+1} + c^u_{k+1}}{c^s_k + c^u_k},

and :func:`estimate_from_swaps` chains the ratios into :math:`\theta_k / \theta_1`. This is the
swap intervention of Joachims, Swaminathan & Schnabel (WSDM 2017, who swap rank 1 with rank k),
on adjacent pairs so a swapped list is barely worse than the original.

ltrr uses regression-EM by default because it needs no intervention: users never see a list
degraded on purpose, and every logged search counts. The swap estimator needs no model of
relevance, but only learns from the randomised share of traffic. Both are here so one can check
the other on the same system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Literal, Sequence, overload

import numpy as np

#: Probabilities are kept in [_EPS, 1 - _EPS] so the E-step never divides by 1 - theta * gamma = 0.
_EPS = 1e-6
#: Newton steps of the logistic regression per EM iteration, warm-started (a generalised EM step).
_NEWTON_STEPS = 3


@dataclass(frozen=True, eq=False)
class Examination:
    """Examination probabilities :math:`\\theta_1 \\dots \\theta_K` relative to position 1 (module docstring).

    ``theta`` has shape ``(K,)`` with ``theta[0] == 1``; entry ``k - 1`` is :math:`\\theta_k / \\theta_1`.
    ``max_weight`` bounds :meth:`weight`: an inverse propensity of 1/0.01 would let one click at a rarely
    examined position outweigh a hundred others, and the variance that adds costs more than the bias of
    clipping. ``iterations`` and ``converged`` describe the fit (a closed form: 0 and True).
    """

    theta: np.ndarray
    iterations: int = 0
    converged: bool = True
    max_weight: float = 20.0
    estimator: str = "regression_em"

    def __post_init__(self) -> None:
        theta = np.array(self.theta, dtype=float)  # a private copy, made read-only below
        if theta.ndim != 1 or theta.size == 0:
            raise ValueError(f"`theta` must be a non-empty 1-dimensional array, got shape {theta.shape}")
        if not np.all(np.isfinite(theta)) or np.any(theta <= 0):
            raise ValueError(f"`theta` must be finite and > 0, got {theta.tolist()}")
        if not np.isclose(theta[0], 1.0):
            raise ValueError(f"`theta` must be normalised so theta[0] == 1, got {theta[0]:g}")
        if not np.isfinite(self.max_weight) or self.max_weight < 1:
            raise ValueError(f"`max_weight` must be finite and >= 1, got {self.max_weight!r}")
        theta.flags.writeable = False
        object.__setattr__(self, "theta", theta)

    @overload
    def weight(self, position: int) -> float: ...

    @overload
    def weight(self, position: np.ndarray) -> np.ndarray: ...

    def weight(self, position: int | np.ndarray) -> float | np.ndarray:
        """:math:`\\min(1 / \\theta_k, \\text{max\\_weight})` for a 1-based position or an array of them.

        Positions beyond K take :math:`\\theta_K`: the estimate stops there, and examination keeps falling,
        so this under-weights deep clicks rather than inventing a rate nobody measured."""
        pos = np.asarray(position)
        if not np.issubdtype(pos.dtype, np.integer) or (pos.size and int(pos.min()) < 1):
            raise ValueError(f"`position` must be an integer >= 1, got {position!r}")
        w = np.minimum(1.0 / self.theta[np.minimum(pos, self.theta.size) - 1], self.max_weight)
        return float(w) if pos.ndim == 0 else w

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for storing with the model it weighted."""
        return {
            "theta": [float(t) for t in self.theta],
            "iterations": self.iterations,
            "converged": self.converged,
            "max_weight": self.max_weight,
            "estimator": self.estimator,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Examination:
        return cls(
            theta=np.asarray(d["theta"], dtype=float),
            iterations=int(d["iterations"]),
            converged=bool(d["converged"]),
            max_weight=float(d["max_weight"]),
            estimator=str(d["estimator"]),
        )


# --------------------------------------------------------------------------- regression-EM


def estimate_by_regression_em(
    positions: np.ndarray,
    clicks: np.ndarray,
    *,
    features: np.ndarray | None = None,
    pair_ids: np.ndarray | None = None,
    max_position: int = 10,
    iterations: int = 200,
    tolerance: float = 1e-5,
    l2: float = 1.0,
    labels: Literal["expected", "sampled"] = "expected",
    seed: int = 0,
    max_weight: float = 20.0,
) -> Examination:
    """Fit :math:`\\theta` by regression-EM (module docstring) on ``n`` logged impressions.

    ``positions`` ``(n,)``: 1-based shown position; ``clicks`` ``(n,)``: 0 or 1; exactly one of
    ``features`` ``(n, F)`` (relevance is a logistic regression on them, penalised by ``l2``) or
    ``pair_ids`` ``(n,)``, integers >= 0 naming the (query, document) pair (relevance is free per pair, so
    each pair needs impressions at several positions). Impressions deeper than ``max_position`` are dropped;
    every position 1..``max_position`` must be present. Stops when no :math:`\\theta_k / \\theta_1` moves by
    more than ``tolerance`` (``converged``) or after ``iterations``; with ``labels="sampled"`` (seeded by
    ``seed``) the estimate keeps jittering by the sampling noise and usually runs all ``iterations``.
    """
    pos = _int_array(positions, "positions")
    if int(pos.min()) < 1:
        raise ValueError(f"`positions` must be >= 1 (1-based), got {int(pos.min())}")
    c = np.asarray(clicks)
    if c.ndim != 1 or not np.isin(c, (0, 1)).all():
        bad = c[~np.isin(c, (0, 1))][:1].tolist() if c.ndim == 1 else f"shape {c.shape}"
        raise ValueError(f"`clicks` must be a 1-dimensional array of 0 and 1, got {bad}")
    _same_length(c, "clicks", pos)
    if (features is None) == (pair_ids is None):
        raise ValueError("exactly one of `features` and `pair_ids` must be given")
    x: np.ndarray | None = None
    pid: np.ndarray | None = None
    if features is not None:
        x = np.asarray(features, dtype=float)
        if x.ndim != 2 or not np.all(np.isfinite(x)):
            raise ValueError(f"`features` must be a finite 2-dimensional array (n, F), got shape {x.shape}")
        _same_length(x, "features", pos)
    else:
        pid = _int_array(pair_ids, "pair_ids")
        if pid.min() < 0:
            raise ValueError(f"`pair_ids` must be >= 0, got {int(pid.min())}")
        _same_length(pid, "pair_ids", pos)
    _check_int(max_position, "max_position", 1)
    _check_int(iterations, "iterations", 1)
    if not tolerance > 0:
        raise ValueError(f"`tolerance` must be > 0, got {tolerance!r}")
    if not l2 >= 0:
        raise ValueError(f"`l2` must be >= 0, got {l2!r}")
    if labels not in ("expected", "sampled"):
        raise ValueError(f"`labels` must be 'expected' or 'sampled', got {labels!r}")
    keep = pos <= max_position
    missing = sorted(set(range(1, max_position + 1)) - set(np.unique(pos[keep]).tolist()))
    if missing:
        raise ValueError(f"`positions` must hold every position 1..{max_position} (`max_position`), missing {missing}")
    if not c[keep].any():
        raise ValueError(f"`clicks` must hold at least one click at positions 1..{max_position}")
    design = None if x is None else np.column_stack([x[keep], np.ones(int(keep.sum()))])
    theta, n_iter, converged = _regression_em(
        pos[keep] - 1,
        c[keep].astype(float),
        design,
        None if pid is None else np.unique(pid[keep], return_inverse=True)[1],
        max_position,
        iterations,
        tolerance,
        l2,
        np.random.default_rng(seed) if labels == "sampled" else None,
    )
    return Examination(theta / theta[0], n_iter, converged, max_weight, "regression_em")


def _regression_em(
    k: np.ndarray,
    c: np.ndarray,
    design: np.ndarray | None,
    pair: np.ndarray | None,
    n_pos: int,
    iterations: int,
    tolerance: float,
    l2: float,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, int, bool]:
    """The EM loop on checked inputs: ``k`` 0-based positions, ``design`` ``(n, F + 1)`` with an intercept
    column, or ``pair`` ``(n,)`` dense pair indices. Returns unnormalised ``theta``, iterations, converged."""
    n_at = np.bincount(k, minlength=n_pos).astype(float)
    # Start from no position bias and a relevance equal to the click rate: the naive reading of the log.
    theta = np.full(n_pos, 0.5)
    gamma = np.full(k.size, np.clip(c.mean() / 0.5, _EPS, 1 - _EPS))
    w = np.zeros(0 if design is None else design.shape[1])
    ratio = theta / theta[0]
    for it in range(1, iterations + 1):
        t = theta[k]
        denom = 1.0 - t * gamma
        p_exam = np.where(c > 0, 1.0, t * (1.0 - gamma) / denom)  # P(E=1 | c)
        p_rel = np.where(c > 0, 1.0, (1.0 - t) * gamma / denom)  # P(R=1 | c)
        theta = np.clip(np.bincount(k, weights=p_exam, minlength=n_pos) / n_at, _EPS, 1.0)
        target = p_rel if rng is None else (rng.random(k.size) < p_rel).astype(float)
        if design is not None:
            w = _logistic_newton(design, target, w, l2)
            gamma = 1.0 / (1.0 + np.exp(-(design @ w)))
        else:
            assert pair is not None
            gamma = (np.bincount(pair, weights=target) / np.bincount(pair))[pair]
        gamma = np.clip(gamma, _EPS, 1 - _EPS)
        new_ratio = theta / theta[0]
        if np.max(np.abs(new_ratio - ratio)) < tolerance:
            return theta, it, True
        ratio = new_ratio
    return theta, iterations, False


def _logistic_newton(design: np.ndarray, target: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    """A few Newton steps on :math:`\\sum_i \\mathrm{CE}(r_i, \\sigma(x_i^\\top w)) + \\frac{l_2}{2} \\|w\\|^2`
    (soft targets ``r``; the intercept, the last column, is not penalised), from ``w``."""
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - target) + penalty * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(design.shape[1])
        w = w - np.linalg.solve(hess, grad)
    return w


# --------------------------------------------------------------------------- swap interventions


def swap_adjacent(
    ids: list[str], rng: np.random.Generator, share: float, *, max_position: int | None = None
) -> tuple[list[str], int | None]:
    """With probability ``share``, ``ids`` with one uniformly drawn adjacent pair swapped, and the pair's
    upper (1-based) position ``k`` (items ``k`` and ``k + 1`` traded places); else a copy and None.

    Pairs are drawn within the first ``max_position`` items (None: the whole list), the positions whose
    :math:`\\theta` is wanted. Log ``k`` with the search: :func:`estimate_from_swaps` needs it."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"`share` must be in [0, 1], got {share!r}")
    if max_position is not None:
        _check_int(max_position, "max_position", 2)
    out = list(ids)
    depth = len(out) if max_position is None else min(len(out), max_position)
    u = rng.random()  # drawn even when no swap is possible, so the stream does not depend on the list length
    if depth < 2 or u >= share:
        return out, None
    k = int(rng.integers(1, depth))
    out[k - 1], out[k] = out[k], out[k - 1]
    return out, k


def estimate_from_swaps(
    swapped: Sequence[int | None],
    clicked: Sequence[int | None | Collection[int]],
    *,
    max_position: int = 10,
    max_weight: float = 20.0,
) -> Examination:
    """:math:`\\theta_k / \\theta_1` from a log of searches, some with an adjacent swap (module docstring).

    One entry per search in both sequences: ``swapped[i]`` is the upper position ``k`` that
    :func:`swap_adjacent` returned (None: not swapped); ``clicked[i]`` is the *shown* position clicked,
    None for no click, or a collection of positions for a search with several clicks. For the pair
    :math:`(k, k + 1)` the untouched lists are all searches whose swap (if any) moved neither position.
    """
    _check_int(max_position, "max_position", 2)
    if len(clicked) != len(swapped):
        raise ValueError(f"`clicked` must have the same length as `swapped`, got {len(clicked)} and {len(swapped)}")
    n = len(swapped)
    swap = np.zeros(n, dtype=np.int64)  # 0: not swapped
    hits = np.zeros((n, max_position + 1))  # hits[i, j]: clicks at shown position j (column 0 unused)
    for i, (s, cl) in enumerate(zip(swapped, clicked, strict=True)):
        if s is not None:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
                raise ValueError(f"`swapped` must hold None or integers >= 1, got {s!r} at index {i}")
            swap[i] = s
        for j in _clicked_positions(cl):
            if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or j < 1:
                raise ValueError(f"`clicked` must hold None or positions >= 1, got {cl!r} at index {i}")
            if j <= max_position:
                hits[i, j] += 1
    theta = np.ones(max_position)
    for k in range(1, max_position):
        s = swap == k
        u = (swap == 0) | (swap < k - 1) | (swap > k + 1)
        if not s.any() or not u.any():
            raise ValueError(f"`swapped` must hold searches swapped at {k} and searches that left {k}, {k + 1} alone")
        down = hits[s, k].mean() + hits[u, k].mean()
        if down == 0:
            raise ValueError(f"`clicked` must hold clicks at position {k} to estimate theta_{k + 1} / theta_{k}")
        theta[k] = theta[k - 1] * (hits[s, k + 1].mean() + hits[u, k + 1].mean()) / down
    if not np.all(theta > 0):
        raise ValueError(f"`clicked` must hold clicks at every position 1..{max_position}, got theta {theta.tolist()}")
    return Examination(theta, 0, True, max_weight, "swaps")


def _clicked_positions(cl: int | None | Collection[int]) -> Collection[int]:
    if cl is None:
        return ()
    return (cl,) if isinstance(cl, (int, np.integer)) else cl


# --------------------------------------------------------------------------- input checks


def _int_array(value: object, name: str) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-dimensional array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(a == np.round(a)):
            raise ValueError(f"`{name}` must hold integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
    return a


def _same_length(a: np.ndarray, name: str, positions: np.ndarray) -> None:
    if a.shape[0] != positions.shape[0]:
        n, m = a.shape[0], positions.shape[0]
        raise ValueError(f"`{name}` must have the same length as `positions`, got {n} and {m}")


def _check_int(value: object, name: str, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"`{name}` must be an integer >= {lo}, got {value!r}")
