"""Uniform random over valid actions: the logging baseline for off-policy evaluation.

:math:`\\pi(a \\mid x) = 1 / (L^S - 1)` for every valid action. It still learns
(its updates fit the same per-arm models), so a switch to a learning policy
starts from everything the uniform logs taught.
"""

from __future__ import annotations

import numpy as np

from ltrr.bandit.base import Policy


class UniformRandom(Policy):
    name = "uniform"

    def base_distribution(self, x: np.ndarray) -> tuple[np.ndarray, int | None]:
        return self.uniform, None
