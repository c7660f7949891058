"""Learning to retrieve: a contextual bandit over per-strategy candidate budgets.

Pure numpy, no Ray: :mod:`deployments.rlmodule` adapts it to an RLlib RLModule.

* :mod:`~ltrr.bandit.actions`: the action space (a budget per strategy from a ladder) and its value;
* :mod:`~ltrr.bandit.linear`: per-arm Bayesian linear regression;
* :mod:`~ltrr.bandit.base`: the :class:`Policy` interface and the :class:`Decision` record;
* :mod:`~ltrr.bandit.linear_ts`, :mod:`~ltrr.bandit.linucb`, :mod:`~ltrr.bandit.epsilon_greedy`,
  :mod:`~ltrr.bandit.uniform`: the policies, by name in :mod:`~ltrr.bandit.registry`;
* :mod:`~ltrr.bandit.features`: context features; :mod:`~ltrr.bandit.rewards`: semi-bandit rewards;
* :mod:`~ltrr.bandit.latency`: the measured per-strategy latencies that price the actions.
"""

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.base import ArmRewards, Decision, Policy
from ltrr.bandit.config import CostConfig, PolicyConfig
from ltrr.bandit.features import QUERY_CLASSES, ContextFeaturizer
from ltrr.bandit.latency import LatencyModel, latency_samples
from ltrr.bandit.linear import LinearArms
from ltrr.bandit.registry import POLICIES, make_policy, new_policy, space_for
from ltrr.bandit.rewards import semi_bandit_rewards, strategy_hits

__all__ = [
    "POLICIES",
    "QUERY_CLASSES",
    "ActionSpace",
    "ArmRewards",
    "ContextFeaturizer",
    "CostConfig",
    "Decision",
    "LatencyModel",
    "LinearArms",
    "Policy",
    "PolicyConfig",
    "latency_samples",
    "make_policy",
    "new_policy",
    "semi_bandit_rewards",
    "space_for",
    "strategy_hits",
]
