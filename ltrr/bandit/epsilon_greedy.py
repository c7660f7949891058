"""Epsilon-greedy: with probability :math:`\\varepsilon` a uniformly random valid action,
otherwise the action maximising :math:`u(a) - c(a)` on posterior-mean hit probabilities.

The mixing itself is :class:`~ltrr.bandit.base.Policy`'s, with
:math:`\\varepsilon = \\max(\\varepsilon_\\text{config}, \\varepsilon_f)`.
"""

from __future__ import annotations

import numpy as np

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.base import Policy
from ltrr.bandit.config import PolicyConfig
from ltrr.bandit.linear import LinearArms


class EpsilonGreedy(Policy):
    name = "epsilon_greedy"

    def __init__(self, space: ActionSpace, config: PolicyConfig, arms: LinearArms, rng: np.random.Generator) -> None:
        self.own_epsilon = config.epsilon
        super().__init__(space, config, arms, rng)

    def base_distribution(self, x: np.ndarray) -> tuple[np.ndarray, int | None]:
        action = self.greedy(self.hit_table(x))
        return self.one_hot(action), action
