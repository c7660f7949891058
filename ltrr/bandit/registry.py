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
from ltrr.bandit.prior import read_prior
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


def pair_matrix(config: PolicyConfig, strategies: Sequence[str]) -> np.ndarray | None:
    """``config.pair_overlap`` as an ``(S, S)`` matrix over ``strategies``: the fitted prior's pairs by
    name (``"prior"``; a prior file without them is a :class:`~ltrr.errors.ConfigError`), the named pairs of a
    map (a pair naming a strategy that is not enabled is ignored), or None (the scalar ``overlap``)."""
    spec = config.pair_overlap
    if spec is None:
        return None
    strategies = tuple(strategies)
    if spec == "prior":
        pairs = read_prior(str(config.prior_path)).pairs_for(strategies)
        if pairs is None:
            raise ConfigError(
                f"policy.pair_overlap: the prior at {config.prior_path!r} holds no pairs; "
                "refit it with scripts/fit_prior.py"
            )
        return pairs
    m = np.zeros((len(strategies), len(strategies)))
    for key, w in spec.items():
        a, _, b = key.partition("+")
        if a in strategies and b in strategies:
            i, j = strategies.index(a), strategies.index(b)
            m[i, j] = m[j, i] = float(w)
    return m


def space_for(config: PolicyConfig, strategies: Sequence[str]) -> ActionSpace:
    """The action space of ``config`` over ``strategies``: ladder, costs and the union model
    (``overlap`` or ``pair_overlap``). Every holder of a policy builds it here."""
    return ActionSpace.build(strategies, config.ladder, config.costs, config.overlap, pair_matrix(config, strategies))


def new_policy(
    config: PolicyConfig,
    strategies: Sequence[str],
    dim: int,
    rng: np.random.Generator | None = None,
    algorithm: str | None = None,
) -> Policy:
    """A policy over ``strategies`` with ``dim`` context features, its arms at the prior
    (``config.ridge``, ``config.prior_hit_rate``); its action space is ``policy.space``."""
    space = space_for(config, strategies)
    arms = LinearArms.zeros(space.n_arms, dim)
    arms.reset(config.ridge, config.prior_hit_rate)
    return make_policy(config, space, arms, rng, algorithm)
