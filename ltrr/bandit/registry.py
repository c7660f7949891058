"""Policies by name (``policy.algorithm`` in the config)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.base import Policy
from ltrr.bandit.config import PolicyConfig
from ltrr.bandit.epsilon_greedy import EpsilonGreedy
from ltrr.bandit.linear import LinearArms
from ltrr.bandit.linear_ts import LinearTS
from ltrr.bandit.linucb import LinUCB
from ltrr.bandit.uniform import UniformRandom
from ltrr.errors import ConfigError

POLICIES: dict[str, type[Policy]] = {
    "linear_ts": LinearTS,
    "linucb": LinUCB,
    "epsilon_greedy": EpsilonGreedy,
    "uniform": UniformRandom,
}


def make_policy(
    config: PolicyConfig,
    space: ActionSpace,
    arms: LinearArms,
    rng: np.random.Generator | None = None,
    algorithm: str | None = None,
) -> Policy:
    """Build the policy ``algorithm`` (default: ``config.algorithm``) over shared ``arms``."""
    name = algorithm or config.algorithm
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ConfigError(f"unknown policy {name!r}; valid: {', '.join(POLICIES)}") from None
    return cls(space, config, arms, rng if rng is not None else np.random.default_rng(config.seed))


def new_policy(
    config: PolicyConfig,
    strategies: Sequence[str],
    dim: int,
    rng: np.random.Generator | None = None,
    algorithm: str | None = None,
) -> Policy:
    """A policy over ``strategies`` with ``dim`` context features, its arms at the prior
    (``config.ridge``, ``config.prior_hit_rate``); its action space is ``policy.space``."""
    space = ActionSpace.build(strategies, config.ladder, config.costs, config.overlap)
    arms = LinearArms.zeros(space.n_arms, dim)
    arms.reset(config.ridge, config.prior_hit_rate)
    return make_policy(config, space, arms, rng, algorithm)
