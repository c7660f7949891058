"""Self-Normalized Inverse Probability Weighting (SNIPW / SNIPS)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltrr.ope.base import BaseOffPolicyEstimator, as_position, importance_weights


@dataclass(frozen=True)
class SelfNormalizedInverseProbabilityWeighting(BaseOffPolicyEstimator):
    """Self-normalized IPW estimator (as ``obp.ope.SelfNormalizedInverseProbabilityWeighting``).

    .. math::

        \\hat{V}_\\mathrm{SNIPW}(\\pi_e; \\mathcal{D}) = \\frac{\\sum_{i=1}^{n} w_i r_i}{\\sum_{i=1}^{n} w_i},
        \\qquad w_i = \\frac{\\pi_e(a_i \\mid x_i)}{\\pi_0(a_i \\mid x_i)},

    computed as the mean of the round rewards :math:`\\hat{r}_i = w_i r_i / \\bar{w}` with
    :math:`\\bar{w} = \\frac{1}{n} \\sum_j w_j` (shapes as in :mod:`ltrr.ope.base`). Biased but
    consistent; the estimate always lies within the range of the observed rewards.

    **Bootstrap caveat (mirrors obp):** :meth:`estimate_interval` resamples the
    *already normalised* round rewards :math:`\\hat{r}_i`, so :math:`\\bar{w}` is computed once
    on the full log and not re-computed per resample. The interval therefore ignores the
    variability of the normaliser and is, in general, narrower than a bootstrap that
    re-normalises each resample.

    There is no clipping parameter: obp's SNIPW inherits ``lambda_`` from IPW but ignores it.

    References
    ----------
    Adith Swaminathan, Thorsten Joachims. "The Self-Normalized Estimator for Counterfactual
    Learning.", NeurIPS 2015.
    """

    estimator_name: str = "snipw"

    def _check_inputs(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        position: np.ndarray | None,
        estimated_rewards_by_reg_model: np.ndarray | None,
    ) -> np.ndarray:
        """The base checks, plus: some logged action has positive probability under :math:`\\pi_e`."""
        pos = super()._check_inputs(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)
        if not np.any(importance_weights(action, pscore, action_dist, pos) > 0):
            raise ValueError(
                "`action_dist` must give positive probability to at least one logged action for SNIPW, "
                "got all importance weights 0"
            )
        return pos

    def _estimate_round_rewards(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
    ) -> np.ndarray:
        """:math:`\\hat{r}_i = w_i r_i / \\bar{w}`, shape ``(n_rounds,)``."""
        position = as_position(position, action.shape[0])
        w = importance_weights(action, pscore, action_dist, position)
        rounds: np.ndarray = reward * w / w.mean()
        return rounds
