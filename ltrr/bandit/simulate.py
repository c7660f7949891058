"""A seeded retrieval simulator with known ground truth, for tests, benchmarks and OPE checks.

Each round draws a query class ``c``; its context vector is the class one-hot plus
Gaussian noise features. Strategy ``s`` finds the wanted item within its top
:math:`k_j` with probability ``hit[c, s, j]`` (non-decreasing in ``j``), drawn
independently per strategy with one uniform each, so the observed semi-bandit
rewards are consistent across budgets. The expected value of action ``a`` is
:math:`1 - \\prod_s (1 - \\mathrm{hit}[c, s, a_s]) - c(a)`, computed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.base import ArmRewards


@dataclass
class Simulator:
    space: ActionSpace
    hit: np.ndarray  # (n_classes, S, L), hit[:, :, 0] == 0
    n_noise: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        n_classes, s, levels = self.hit.shape
        if (s, levels) != (self.space.n_strategies, self.space.n_levels):
            raise ValueError(f"`hit` must have shape (C, {self.space.n_strategies}, {self.space.n_levels})")
        self.rng = np.random.default_rng(self.seed)
        self.values = np.stack([self.space.union_values(self.hit[c]) - self.space.costs for c in range(n_classes)])
        self.best = self.values.max(axis=1)

    @property
    def dim(self) -> int:
        return 1 + self.hit.shape[0] + self.n_noise

    def context(self) -> tuple[int, np.ndarray]:
        c = int(self.rng.integers(self.hit.shape[0]))
        x = np.zeros(self.dim)
        x[0] = 1.0
        x[1 + c] = 1.0
        x[1 + self.hit.shape[0] :] = self.rng.normal(0.0, 0.3, self.n_noise)
        return c, x

    def rewards(self, c: int, action: int) -> ArmRewards:
        """Semi-bandit rewards for every observed (strategy, budget) of ``action``."""
        out: dict[tuple[str, int], float] = {}
        for i, lv in enumerate(self.space.levels(action)):
            u = self.rng.random()
            for j in range(1, lv + 1):
                out[(self.space.strategies[i], self.space.ladder[j])] = float(u < self.hit[c, i, j])
        return out

    def regret(self, c: int, action: int) -> float:
        return float(self.best[c] - self.values[c, action])


def one_right_strategy(space: ActionSpace, right: int, *, others: float = 0.05) -> np.ndarray:
    """One class where strategy ``right`` always holds the wanted item (in its top 10); the others rarely."""
    hit = np.full((1, space.n_strategies, space.n_levels), others)
    hit[0, right, :] = 1.0
    hit[:, :, 0] = 0.0
    return hit
