"""Off-policy estimators by name (as obp's ``__all_estimators__``)."""

from __future__ import annotations

from typing import Any

from ltrr.errors import ConfigError
from ltrr.ope.base import BaseOffPolicyEstimator
from ltrr.ope.dr import DoublyRobust
from ltrr.ope.ipw import InverseProbabilityWeighting
from ltrr.ope.snipw import SelfNormalizedInverseProbabilityWeighting

ESTIMATORS: dict[str, type[BaseOffPolicyEstimator]] = {
    "ipw": InverseProbabilityWeighting,
    "snipw": SelfNormalizedInverseProbabilityWeighting,
    "dr": DoublyRobust,
}


def make_estimator(name: str, **params: Any) -> BaseOffPolicyEstimator:
    """Build estimator ``name`` with ``params`` (e.g. ``lambda_``); an unknown name raises
    :class:`~ltrr.errors.ConfigError` listing the valid ones."""
    try:
        cls = ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown estimator {name!r}; valid: {', '.join(ESTIMATORS)}") from None
    return cls(**params)
