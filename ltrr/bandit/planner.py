"""What the search service asks for a decision: the :class:`Planner` seam.

The Serve ingress plugs in :class:`deployments.rlmodule.ModulePlanner` (the RLlib
RLModule's forward passes, parameters synced from the learner); tests and the
in-process benchmark use :class:`PolicyPlanner` over a bare :class:`~ltrr.bandit.Policy`.
"""

from __future__ import annotations

from typing import Mapping, Protocol

import numpy as np

from ltrr.bandit.base import Decision, Policy
from ltrr.bandit.features import QUERY_CLASSES, ContextFeaturizer


class Planner(Protocol):
    featurizer: ContextFeaturizer

    def decide(self, x: np.ndarray) -> Decision: ...

    def force(self, x: np.ndarray, budgets: Mapping[str, int]) -> Decision: ...

    def class_rates(self) -> np.ndarray: ...


class PolicyPlanner:
    """A :class:`Planner` over a policy held in this process (no learner, fixed version)."""

    def __init__(self, policy: Policy, featurizer: ContextFeaturizer, version: str = "") -> None:
        if featurizer.strategies != policy.space.strategies:
            raise ValueError(
                f"`featurizer` strategies {list(featurizer.strategies)} must match the policy's "
                f"{list(policy.space.strategies)}"
            )
        self.policy = policy
        self.featurizer = featurizer
        self.version = version or f"{policy.name}-local"

    def decide(self, x: np.ndarray) -> Decision:
        return self.policy.select(x).with_version(self.version)

    def force(self, x: np.ndarray, budgets: Mapping[str, int]) -> Decision:
        return self.policy.forced(x, budgets).with_version(self.version)

    def class_rates(self) -> np.ndarray:
        return np.full((len(QUERY_CLASSES), len(self.featurizer.strategies)), 0.5)
