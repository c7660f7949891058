"""Inverse Probability Weighting (IPW / IPS)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltrr.ope.base import BaseOffPolicyEstimator, as_position, check_lambda, importance_weights


@dataclass(frozen=True)
class InverseProbabilityWeighting(BaseOffPolicyEstimator):
    """Inverse Probability Weighting estimator (as ``obp.ope.InverseProbabilityWeighting``).

    .. math::

        \\hat{V}_\\mathrm{IPW}(\\pi_e; \\mathcal{D}) = \\frac{1}{n} \\sum_{i=1}^{n} \\min\\{\\lambda, w_i\\}\\, r_i,
        \\qquad w_i = \\frac{\\pi_e(a_i \\mid x_i)}{\\pi_0(a_i \\mid x_i)}.

    Shapes: ``reward``, ``action``, ``pscore`` are ``(n_rounds,)``, ``action_dist`` is
    ``(n_rounds, n_actions, len_list)`` (see :mod:`ltrr.ope.base`). Unbiased when the
    logged propensities are exact and :math:`\\lambda = \\infty`; clipping at a finite
    :math:`\\lambda` trades bias (downwards for non-negative rewards) for variance.

    Parameters
    ----------
    lambda_:
        Largest allowed importance weight, >= 0; ``np.inf`` (default) means no clipping.
    estimator_name:
        Name of the estimator, ``"ipw"``.

    References
    ----------
    Doina Precup, Richard S. Sutton, Satinder Singh. "Eligibility Traces for Off-Policy Policy
    Evaluation.", ICML 2000.
    Alex Strehl, John Langford, Lihong Li, Sham M. Kakade. "Learning from Logged Implicit
    Exploration Data.", NeurIPS 2010.
    """

    lambda_: float = np.inf
    estimator_name: str = "ipw"

    def __post_init__(self) -> None:
        check_lambda(self.lambda_)

    def _estimate_round_rewards(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
    ) -> np.ndarray:
        """:math:`\\hat{r}_i = \\min\\{\\lambda, w_i\\}\\, r_i`, shape ``(n_rounds,)``."""
        position = as_position(position, action.shape[0])
        w = np.minimum(importance_weights(action, pscore, action_dist, position), self.lambda_)
        rounds: np.ndarray = reward * w
        return rounds
