"""The action space: one candidate budget per strategy, from a ladder.

With ``S`` strategies and a ladder of ``L`` budgets :math:`(0 = k_0 < k_1 < \\dots < k_{L-1})`
an action is a level vector :math:`a \\in \\{0..L-1\\}^S`; strategy ``s`` is asked
for :math:`k_{a_s}` candidates, and level 0 means it is not called. Actions are
numbered in mixed radix, :math:`\\mathrm{id}(a) = \\sum_s a_s L^{S-1-s}`; id 0 (call
nothing) is not a valid action, so at least one strategy is always called.

An *arm* is a (strategy, level > 0) pair, numbered :math:`s (L-1) + a_s - 1`;
each arm has its own hit model :math:`p_{s,j}(x) = P(\\text{wanted item in the top } k_j \\text{ of } s \\mid x)`.

**Value of an action.** Assuming strategies miss independently given ``x``, the
chance the wanted item is in the union of the candidate sets is

.. math::

    u(a \\mid x) = 1 - \\prod_s \\bigl(1 - p_{s, a_s}(x)\\bigr), \\qquad p_{s,0} = 0,

**Overlap.** Strategies do not miss independently: lexical and memory find the same names.
With ``overlap`` :math:`\\omega \\in [0, 1]` (``policy.overlap``) the value interpolates between
independent misses and nested hits (the best strategy's hits contain the others'):

.. math::

    u_\\omega(a \\mid x) = (1 - \\omega)\\, u(a \\mid x) + \\omega \\max_s p_{s, a_s}(x),

so a second strategy that finds what the first finds adds little. Both are equal on 0/1 tables
(full-information scoring), so only the policy's estimate changes.

**Pairwise overlap.** One :math:`\\omega` for all strategies cannot say that lexical and memory
find the same names while lexical and graph find different things. With a symmetric matrix
:math:`\\Omega` (``pair_overlap``, entries in [-1, 1], fitted on full-information searches by
:func:`ltrr.bandit.prior.fit_prior`) each pair's joint hit interpolates between independence and
nesting (:math:`\\omega > 0`) or towards disjoint hits (:math:`\\omega < 0`),

.. math::

    P(s \\cap t) = p_s p_t + \\omega_{st}\\,(\\min(p_s, p_t) - p_s p_t) \\;\\; (\\omega_{st} \\ge 0), \\qquad
    P(s \\cap t) = (1 + \\omega_{st})\\, p_s p_t \\;\\; (\\omega_{st} < 0),

and the value corrects the independent union by each pair's excess overlap, kept within the
bounds every union obeys:

.. math::

    u_\\Omega(a) = \\operatorname{clip}\\Bigl(u(a) - \\sum_{s<t} \\bigl(P(s \\cap t) - p_s p_t\\bigr),\\;
    \\max_s p_s,\\; \\min(1, \\textstyle\\sum_s p_s)\\Bigr).

It is exact for two strategies, and on 0/1 tables it equals the true union. When ``pair_overlap``
is set it replaces the scalar ``overlap``.

and the policy maximises :math:`u(a \\mid x) - c(a)` (cost, :class:`~ltrr.bandit.config.CostConfig`;
its latency term uses the measured latencies of :mod:`~ltrr.bandit.latency`, installed with
:meth:`ActionSpace.set_latency`, which re-prices all actions in place).
Because a bigger budget contains the smaller one, hit probabilities are made
monotone in the level (running maximum) before use. The maximisation is exact:
every one of the :math:`L^S - 1` actions is scored by broadcasting (625 for
4 strategies and 5 budgets, a few microseconds), so no greedy approximation is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ltrr.bandit.config import CostConfig

MAX_ACTIONS = 1 << 16


@dataclass(frozen=True)
class ActionSpace:
    """Strategies x budget ladder. ``costs`` is :math:`c(a)` for every action id (``inf`` for id 0),
    computed from ``cost_model`` with the latencies ``latency_ms (S,)``; :meth:`set_latency`
    recomputes it in place when the measured latencies change."""

    strategies: tuple[str, ...]
    ladder: tuple[int, ...]
    costs: np.ndarray = field(repr=False, compare=False)
    cost_model: CostConfig = field(repr=False, compare=False)
    latency_ms: np.ndarray = field(repr=False, compare=False)
    overlap: float = 0.0
    #: (S, S) symmetric pairwise overlap in [-1, 1] (module docstring); None: the scalar ``overlap``
    pair_overlap: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        strategies: Sequence[str],
        ladder: Sequence[int],
        costs: CostConfig | None = None,
        overlap: float = 0.0,
        pair_overlap: np.ndarray | None = None,
    ) -> ActionSpace:
        """The space with its costs at the prior latencies of ``costs``; ``overlap`` in [0, 1], or
        ``pair_overlap`` ``(S, S)`` symmetric in [-1, 1] (module docstring)."""
        strategies, ladder = tuple(strategies), tuple(int(k) for k in ladder)
        if not strategies:
            raise ValueError("`strategies` must name at least one strategy")
        if len(set(strategies)) != len(strategies):
            raise ValueError(f"`strategies` must be unique, got {list(strategies)}")
        if len(ladder) < 2 or ladder[0] != 0 or any(b <= a for a, b in zip(ladder, ladder[1:], strict=False)):
            raise ValueError(f"`ladder` must start with 0 and increase strictly, got {list(ladder)}")
        if len(ladder) ** len(strategies) > MAX_ACTIONS:
            raise ValueError(
                f"`ladder` x `strategies` gives {len(ladder)}^{len(strategies)} actions; at most {MAX_ACTIONS}"
            )
        if not 0.0 <= overlap <= 1.0:
            raise ValueError(f"`overlap` must be in [0, 1], got {overlap}")
        pairs = None if pair_overlap is None else _check_pairs(pair_overlap, len(strategies))
        c = costs or CostConfig()
        latency = np.array([c.prior_latency_ms(s) for s in strategies], dtype=float)
        return cls(strategies, ladder, _action_costs(ladder, c, latency), c, latency, float(overlap), pairs)

    def latency_vector(self, latency_ms: Mapping[str, float]) -> np.ndarray:
        """``(S,)`` latencies from a ``{strategy: ms}`` dict; a strategy it lacks gets its prior
        (so a decision logged before latencies were recorded is costed as configured)."""
        return np.array([float(latency_ms.get(s, self.cost_model.prior_latency_ms(s))) for s in self.strategies])

    def costs_for(self, latency_ms: Mapping[str, float] | np.ndarray) -> np.ndarray:
        """:math:`c(a)` for every action id with the latencies ``latency_ms`` (a dict or ``(S,)``)."""
        lat = self.latency_vector(latency_ms) if isinstance(latency_ms, Mapping) else np.asarray(latency_ms, float)
        if lat.shape != (self.n_strategies,) or not np.all(np.isfinite(lat)) or np.any(lat < 0):
            raise ValueError(f"`latency_ms` must be {self.n_strategies} finite values >= 0, got {lat.tolist()}")
        return _action_costs(self.ladder, self.cost_model, lat)

    def set_latency(self, latency_ms: Mapping[str, float] | np.ndarray) -> None:
        """Re-price every action with new latencies, in place (``costs`` and ``latency_ms``
        keep their identity, so every holder of this space sees the new prices)."""
        new = self.costs_for(latency_ms)
        self.latency_ms[:] = self.latency_vector(latency_ms) if isinstance(latency_ms, Mapping) else latency_ms
        self.costs[:] = new

    def latency_dict(self) -> dict[str, float]:
        """The latencies the current ``costs`` were computed with, ``{strategy: ms}``."""
        return {s: float(v) for s, v in zip(self.strategies, self.latency_ms, strict=True)}

    @property
    def n_strategies(self) -> int:
        return len(self.strategies)

    @property
    def n_levels(self) -> int:
        return len(self.ladder)

    @property
    def n_arms(self) -> int:
        return self.n_strategies * (self.n_levels - 1)

    @property
    def n_actions(self) -> int:
        """Size of the id range, including the invalid id 0."""
        return self.n_levels**self.n_strategies

    def arm(self, strategy: int, level: int) -> int:
        return strategy * (self.n_levels - 1) + level - 1

    def levels(self, action: int) -> tuple[int, ...]:
        """Level vector of action id ``action``."""
        out = []
        for _ in range(self.n_strategies):
            action, r = divmod(action, self.n_levels)
            out.append(r)
        return tuple(reversed(out))

    def action(self, levels: Sequence[int]) -> int:
        a = 0
        for lv in levels:
            a = a * self.n_levels + int(lv)
        return a

    def budgets(self, action: int) -> dict[str, int]:
        return {s: self.ladder[lv] for s, lv in zip(self.strategies, self.levels(action), strict=True)}

    def action_for_budgets(self, budgets: Mapping[str, int]) -> int:
        """The action id of a plan ``{strategy: k}``; every k must be on the ladder."""
        unknown = sorted(set(budgets) - set(self.strategies))
        if unknown:
            raise ValueError(f"`budgets` names unknown strategy {unknown[0]!r}; known: {list(self.strategies)}")
        lv = []
        for s in self.strategies:
            k = int(budgets.get(s, 0))
            if k not in self.ladder:
                raise ValueError(f"`budgets[{s!r}]` must be on the ladder {list(self.ladder)}, got {k}")
            lv.append(self.ladder.index(k))
        a = self.action(lv)
        if a == 0:
            raise ValueError("`budgets` must call at least one strategy")
        return a

    def hit_table(self, arm_probs: np.ndarray) -> np.ndarray:
        """Arm hit probabilities ``(..., n_arms)`` -> monotone table ``(..., S, L)`` with level 0 = 0."""
        p = np.clip(arm_probs, 0.0, 1.0).reshape(*arm_probs.shape[:-1], self.n_strategies, self.n_levels - 1)
        p = np.maximum.accumulate(p, axis=-1)
        zero = np.zeros((*p.shape[:-1], 1))
        return np.concatenate([zero, p], axis=-1)

    def union_values(self, table: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """:math:`u(a)` for every action id: ``(..., S, L)`` -> ``(..., n_actions)``.

        ``out``, if given, receives the result (reusing one buffer avoids a fresh
        page-faulted allocation per call, which costs more than the math here)."""
        res = _outer(1.0 - table, np.multiply, out)
        res = np.subtract(1.0, res, out=res)
        if self.pair_overlap is not None:
            return self._pairwise(table, res)
        if self.overlap > 0.0:  # u = u_ind - overlap * (u_ind - max_s p_s)
            best = _outer(table, np.maximum)
            res -= self.overlap * (res - best)
        return res

    def _pairwise(self, table: np.ndarray, res: np.ndarray) -> np.ndarray:
        """:math:`u_\\Omega` in place of the independent union ``res (..., n_actions)``."""
        n, lead = self.n_strategies, table.shape[:-2]
        cube = res.reshape(*lead, *(self.n_levels,) * n)
        for i in range(n):
            for j in range(i + 1, n):
                w = float(self.pair_overlap[i, j])  # type: ignore[index]  # set when called
                if w == 0.0:
                    continue
                pi, pj = table[..., i, :, None], table[..., j, None, :]  # (..., L, 1), (..., 1, L)
                prod = pi * pj
                excess = w * (np.minimum(pi, pj) - prod) if w > 0.0 else w * prod
                shape = [*lead] + [1] * n
                shape[len(lead) + i], shape[len(lead) + j] = self.n_levels, self.n_levels
                cube -= excess.reshape(shape)
        if not np.shares_memory(cube, res):  # reshape copied (a non-contiguous ``out``)
            res[...] = cube.reshape(res.shape)
        np.maximum(res, _outer(table, np.maximum), out=res)  # np.clip with array bounds is 3x slower
        np.minimum(res, _outer(table, np.add), out=res)
        return np.minimum(res, 1.0, out=res)

    def union_value(self, table: np.ndarray, levels: Sequence[int]) -> float:
        """:math:`u_\\omega(a)` (:math:`u_\\Omega` with ``pair_overlap``) of the one action with level
        vector ``levels`` (not all :math:`L^S`)."""
        p = table[np.arange(self.n_strategies), list(levels)]
        ind = float(1.0 - np.prod(1.0 - p))
        if self.pair_overlap is not None:
            u = ind
            for i in range(self.n_strategies):
                for j in range(i + 1, self.n_strategies):
                    w, prod = float(self.pair_overlap[i, j]), float(p[i] * p[j])
                    u -= w * (min(float(p[i]), float(p[j])) - prod) if w > 0.0 else w * prod
            return float(np.clip(u, float(p.max()), min(1.0, float(p.sum()))))
        return ind - self.overlap * (ind - float(p.max()))

    def marginals(self, dist: np.ndarray) -> np.ndarray:
        """Per-strategy level probabilities ``(S, L)`` of a distribution over action ids."""
        cube = dist.reshape((self.n_levels,) * self.n_strategies)
        axes = tuple(range(self.n_strategies))
        return np.stack([cube.sum(axis=tuple(a for a in axes if a != s)) for s in axes])

    def uniform_level_floor(self) -> float:
        """Smallest per-strategy level probability under the uniform distribution over valid actions."""
        n, per = self.n_actions - 1, self.n_levels ** (self.n_strategies - 1)
        return (per - 1) / n if self.n_strategies > 1 else 1.0 / n


def _check_pairs(pair_overlap: np.ndarray, n: int) -> np.ndarray:
    """``pair_overlap`` as a float ``(n, n)`` matrix, checked: symmetric, finite, in [-1, 1]."""
    m = np.array(pair_overlap, dtype=float)
    if m.shape != (n, n):
        raise ValueError(f"`pair_overlap` must be a ({n}, {n}) matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(np.abs(m) > 1.0):
        raise ValueError("`pair_overlap` must hold finite values in [-1, 1]")
    if not np.allclose(m, m.T):
        raise ValueError("`pair_overlap` must be symmetric")
    return m


def _action_costs(ladder: tuple[int, ...], c: CostConfig, latency_ms: np.ndarray) -> np.ndarray:
    """:math:`c(a)` for every action id: per strategy and level
    :math:`c_\\text{call} + c_\\text{ms} \\ell_s + c_\\text{cand} k_j` (0 at level 0), summed over strategies."""
    per_level = np.zeros((len(latency_ms), len(ladder)))
    fixed = c.per_call + c.per_ms * np.asarray(latency_ms, dtype=float)
    per_level[:, 1:] = fixed[:, None] + c.per_candidate * np.asarray(ladder[1:], dtype=float)[None, :]
    total = _outer(per_level, np.add)
    total[0] = np.inf
    return total


def _outer(per_level: np.ndarray, op: np.ufunc, out: np.ndarray | None = None) -> np.ndarray:
    """``(..., S, L)`` -> ``(..., L**S)``: :math:`\\bigodot_s t_{s, a_s}` for every level vector
    (``op`` is add or multiply), in mixed-radix order. Halves are combined recursively
    so each intermediate is small (:math:`O(L^S)` work, no transcendental calls)."""
    s_count = per_level.shape[-2]
    if s_count == 1:
        if out is None:
            return np.asarray(per_level[..., 0, :])
        out[...] = per_level[..., 0, :]
        return out
    half = s_count // 2
    left, right = _outer(per_level[..., :half, :], op), _outer(per_level[..., half:, :], op)
    shape = (*left.shape, right.shape[-1])
    if out is None:
        return np.asarray(op(left[..., :, None], right[..., None, :]).reshape(*shape[:-2], -1))
    op(left[..., :, None], right[..., None, :], out=out.reshape(shape))
    return out
