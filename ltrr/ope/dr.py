"""Doubly Robust (DR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ltrr.ope.base import BaseOffPolicyEstimator, as_position, check_lambda, importance_weights


@dataclass(frozen=True)
class DoublyRobust(BaseOffPolicyEstimator):
    """Doubly Robust estimator (as ``obp.ope.DoublyRobust``).

    With a reward model :math:`\\hat{q}(x, a)` (``estimated_rewards_by_reg_model``, shape
    ``(n_rounds, n_actions, len_list)``, required):

    .. math::

        \\hat{V}_\\mathrm{DR}(\\pi_e; \\mathcal{D}, \\hat{q}) = \\frac{1}{n} \\sum_{i=1}^{n}
        \\Big[ \\hat{q}(x_i, \\pi_e) + \\min\\{\\lambda, w_i\\} \\big( r_i - \\hat{q}(x_i, a_i) \\big) \\Big],

    where :math:`\\hat{q}(x_i, \\pi_e) = \\sum_{a} \\pi_e(a \\mid x_i)\\, \\hat{q}(x_i, a)` and
    :math:`w_i = \\pi_e(a_i \\mid x_i) / \\pi_0(a_i \\mid x_i)`. The model's prediction is the baseline and
    the importance-weighted residual corrects it: unbiased if the propensities are exact (whatever
    :math:`\\hat{q}`), and low-variance when :math:`\\hat{q}` is accurate.

    Parameters
    ----------
    lambda_:
        Largest allowed importance weight, >= 0; ``np.inf`` (default) means no clipping.
    estimator_name:
        Name of the estimator, ``"dr"``.

    References
    ----------
    Miroslav Dudík, Dumitru Erhan, John Langford, Lihong Li. "Doubly Robust Policy Evaluation
    and Optimization.", Statistical Science 29(4), 2014.
    """

    lambda_: float = np.inf
    estimator_name: str = "dr"
    requires_reg_model: ClassVar[bool] = True

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
        """:math:`\\hat{r}_i = \\hat{q}(x_i, \\pi_e) + \\min\\{\\lambda, w_i\\}(r_i - \\hat{q}(x_i, a_i))`,
        shape ``(n_rounds,)``."""
        if estimated_rewards_by_reg_model is None:
            raise ValueError(f"`estimated_rewards_by_reg_model` must be given for estimator {self.estimator_name!r}")
        n = action.shape[0]
        position = as_position(position, n)
        rows = np.arange(n)
        w = np.minimum(importance_weights(action, pscore, action_dist, position), self.lambda_)
        q_hat = estimated_rewards_by_reg_model[rows, :, position]  # (n_rounds, n_actions)
        pi_e = action_dist[rows, :, position]  # (n_rounds, n_actions)
        q_hat_pi_e = (pi_e * q_hat).sum(axis=1)
        q_hat_factual = estimated_rewards_by_reg_model[rows, action, position]
        rounds: np.ndarray = q_hat_pi_e + w * (reward - q_hat_factual)
        return rounds
