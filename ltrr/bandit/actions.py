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

    @classmethod
    def build(
        cls, strategies: Sequence[str], ladder: Sequence[int], costs: CostConfig | None = None, overlap: float = 0.0
    ) -> ActionSpace:
        """The space with its costs at the prior latencies of ``costs``; ``overlap`` in [0, 1] (module docstring)."""
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
        c = costs or CostConfig()
        latency = np.array([c.prior_latency_ms(s) for s in strategies], dtype=float)
        return cls(strategies, ladder, _action_costs(ladder, c, latency), c, latency, float(overlap))

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
        if self.overlap > 0.0:  # u = u_ind - overlap * (u_ind - max_s p_s)
            best = _outer(table, np.maximum)
            res -= self.overlap * (res - best)
        return res

    def union_value(self, table: np.ndarray, levels: Sequence[int]) -> float:
        """:math:`u_\\omega(a)` of the one action with level vector ``levels`` (not all :math:`L^S`)."""
        p = table[np.arange(self.n_strategies), list(levels)]
        ind = float(1.0 - np.prod(1.0 - p))
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
