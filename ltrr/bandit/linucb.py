"""LinUCB (Li, Chu, Langford & Schapire 2010), disjoint linear models per arm.

Each arm scores :math:`\\hat p_i(x) = x^\\top \\hat\\theta_i + \\alpha \\sqrt{x^\\top A_i^{-1} x}`;
the base policy is deterministic: the action maximising :math:`u(a) - c(a)` on
those optimistic hit probabilities. Exploration beyond the optimism is only the
propensity-floor mixing of :class:`~ltrr.bandit.base.Policy`.
"""

from __future__ import annotations

import numpy as np

from ltrr.bandit.base import Policy


class LinUCB(Policy):
    name = "linucb"

    def base_distribution(self, x: np.ndarray) -> tuple[np.ndarray, int | None]:
        ucb = self.arms.mean(x) + self.config.ucb_alpha * self.arms.width(x)
        action = self.greedy(self.space.hit_table(ucb))
        return self.one_hot(action), action
