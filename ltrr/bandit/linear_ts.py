"""Linear Thompson sampling (Agrawal & Goyal 2013), disjoint Bayesian linear models per arm.

Posterior :math:`\\theta_i \\sim \\mathcal{N}(\\hat\\theta_i, v^2 A_i^{-1})`. Only the
projection on the current context matters, and it is exactly Gaussian:

.. math::

    \\tilde p_i = x^\\top \\tilde\\theta_i \\sim \\mathcal{N}\\bigl(x^\\top \\hat\\theta_i,\\;
    v^2 \\, x^\\top A_i^{-1} x\\bigr),

so a draw costs one normal per arm instead of a ``d``-dimensional one. Arms are
independent, so draws are too.

**Propensities by resampling.** ``M`` (``ts_resamples``) draws ``(M, n_arms)``
give ``M`` greedy actions; :math:`\\pi_\\text{base}` is their empirical
distribution and the action played is one of the ``M`` picked uniformly, i.e. a
draw from :math:`\\pi_\\text{base}`. The logged propensity is therefore exact for
this procedure; as ``M`` grows it converges to the Thompson-sampling probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ltrr.bandit.base import Policy


class LinearTS(Policy):
    name = "linear_ts"
    _buffers: dict[int, np.ndarray]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffers = {}

    def base_distribution(self, x: np.ndarray) -> tuple[np.ndarray, int | None]:
        m = self.config.ts_resamples
        mean = self.arms.mean(x)
        std = self.config.ts_scale * self.arms.width(x)
        draws = mean + std * self.rng.standard_normal((m, mean.shape[0]))
        buf = self._buffers.get(m)
        if buf is None:
            buf = self._buffers[m] = np.empty((m, self.space.n_actions))
        values = self.space.union_values(self.space.hit_table(draws), out=buf)
        values -= self.space.costs
        greedy = np.argmax(values, axis=1)
        dist = np.bincount(greedy, minlength=self.space.n_actions) / float(m)
        return dist, int(greedy[self.rng.integers(m)])
