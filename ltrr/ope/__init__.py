"""Off-policy evaluation of a target policy from logged bandit data (pure numpy, no Ray).

Follows Open Bandit Pipeline 0.5 (``obp.ope``): build an estimator by name with
:func:`make_estimator` and call ``estimate_policy_value`` or ``estimate_interval`` with the
logged arrays described in :mod:`ltrr.ope.base`.
"""

from ltrr.ope.base import (
    BaseOffPolicyEstimator,
    check_ope_inputs,
    estimate_confidence_interval_by_bootstrap,
)
from ltrr.ope.dr import DoublyRobust
from ltrr.ope.ipw import InverseProbabilityWeighting
from ltrr.ope.registry import ESTIMATORS, make_estimator
from ltrr.ope.snipw import SelfNormalizedInverseProbabilityWeighting

__all__ = [
    "ESTIMATORS",
    "BaseOffPolicyEstimator",
    "DoublyRobust",
    "InverseProbabilityWeighting",
    "SelfNormalizedInverseProbabilityWeighting",
    "check_ope_inputs",
    "estimate_confidence_interval_by_bootstrap",
    "make_estimator",
]
