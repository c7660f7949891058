"""Per-arm Bayesian linear regression (ridge), the statistics every policy shares.

For arm ``i`` with observations :math:`(x_t, r_t)`, :math:`x \\in \\mathbb{R}^d`:

.. math::

    A_i = \\lambda I + \\sum_t x_t x_t^\\top, \\quad
    b_i = \\lambda \\mu_0 e_0 + \\sum_t r_t x_t, \\quad
    \\hat\\theta_i = A_i^{-1} b_i

where :math:`e_0` is the bias feature, so before any data every arm predicts the
prior hit rate :math:`\\mu_0`. With Gaussian noise of std :math:`v` the posterior is
:math:`\\theta_i \\sim \\mathcal{N}(\\hat\\theta_i, v^2 A_i^{-1})` (Agrawal & Goyal 2013),
and :math:`\\sigma_i(x) = \\sqrt{x^\\top A_i^{-1} x}` is the LinUCB width (Li et al. 2010).

``A_inv`` is kept directly and updated by Sherman-Morrison in :math:`O(d^2)`:
:math:`A^{-1} \\leftarrow A^{-1} - \\frac{A^{-1} x x^\\top A^{-1}}{1 + x^\\top A^{-1} x}`.

Arrays (``n`` arms, ``d`` features): ``a_inv (n, d, d)``, ``b (n, d)``, ``theta (n, d)``,
``count (n,)``. They may be views of other storage (the RLModule's torch buffers):
every update writes them in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LinearArms:
    a_inv: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    count: np.ndarray

    @classmethod
    def zeros(cls, n_arms: int, dim: int) -> LinearArms:
        return cls(np.zeros((n_arms, dim, dim)), np.zeros((n_arms, dim)), np.zeros((n_arms, dim)), np.zeros(n_arms))

    def reset(self, ridge: float, prior_mean: float) -> None:
        """The prior: :math:`A = \\lambda I`, :math:`b = \\lambda \\mu_0 e_0`."""
        n, d = self.b.shape
        self.a_inv[...] = np.eye(d)[None] / ridge
        self.b[...] = 0.0
        self.b[:, 0] = ridge * prior_mean
        self.theta[...] = (self.a_inv @ self.b[..., None])[..., 0]
        self.count[...] = 0.0

    @property
    def dim(self) -> int:
        return int(self.b.shape[1])

    def mean(self, x: np.ndarray) -> np.ndarray:
        """:math:`x^\\top \\hat\\theta_i` for every arm: ``(d,)`` -> ``(n,)``."""
        return self.theta @ x

    def width(self, x: np.ndarray) -> np.ndarray:
        """:math:`\\sqrt{x^\\top A_i^{-1} x}` for every arm: ``(d,)`` -> ``(n,)``."""
        v = self.a_inv @ x
        return np.sqrt(np.maximum(v @ x, 0.0))

    def update(self, arm: int, x: np.ndarray, reward: float, weight: float = 1.0) -> None:
        """Add one observation to arm ``arm`` (in place): :meth:`observe` then :meth:`reward`.

        ``weight`` :math:`w`: a weighted least-squares observation of a reward scaled by
        :math:`\\sqrt w` (see :meth:`observe`); 1 is the plain update."""
        self.observe(arm, x, weight)
        if reward:
            self.reward(arm, x, reward * np.sqrt(weight))

    def observe(self, arm: int, x: np.ndarray, weight: float = 1.0) -> None:
        """Count one observation of arm ``arm`` at ``x`` with reward 0 (:math:`A \\mathrel{+}= w\\, x x^\\top`).

        The statistics are sums, so a reward that arrives later is exactly :meth:`reward` on top:
        ``observe`` now and ``reward(r)`` later leave ``A``, ``b`` and ``theta`` as ``update(r)`` would.
        A weight :math:`w = v^2` with the later reward scaled by :math:`v` fits :math:`y \\approx v\\,\\theta^\\top x`
        by weighted least squares: how the learner reads a click that the reward was only
        :math:`v`-likely to produce (``ltrr.bandit.rewards``, position bias)."""
        if weight <= 0.0:
            return
        ai = self.a_inv[arm]
        u = ai @ x
        ai -= weight * np.outer(u, u) / (1.0 + weight * float(x @ u))
        self.theta[arm] = ai @ self.b[arm]
        self.count[arm] += 1.0

    def reward(self, arm: int, x: np.ndarray, reward: float) -> None:
        """Add reward ``reward`` to an observation of arm ``arm`` at ``x`` already counted by :meth:`observe`
        (:math:`b \\mathrel{+}= r x`)."""
        self.b[arm] += reward * x
        self.theta[arm] = self.a_inv[arm] @ self.b[arm]
