"""Measured per-strategy latency: the :math:`\\ell_s` of the cost model (:class:`~ltrr.bandit.config.CostConfig`).

The learner feeds every call of every search it settles, once, in log order. Each call
gives one sample :math:`y` of what it cost the caller, in ms, with :math:`D_s` the
strategy's deadline (``strategies.<s>.timeout_ms``):

* ``ok`` or ``error``: :math:`y = \\min(t, D_s)`, ``t`` the measured ``latency_ms`` (the
  fan-out never waits longer than the deadline; a larger figure is scheduling noise);
* ``timeout``: :math:`y = \\max(t, D_s)`: the search waited for the full deadline;
* ``skipped`` (not called), or no ``latency_ms`` logged (an old log): no sample.

The estimate is an exponentially weighted mean whose step starts as a running mean
over the prior:

.. math::

    \\ell_{s,n} = \\ell_{s,n-1} + \\eta_n \\, (y_n - \\ell_{s,n-1}),
    \\qquad \\eta_n = \\max\\Bigl(\\alpha, \\frac{1}{n_0 + n}\\Bigr),
    \\qquad \\ell_{s,0} = \\text{prior}_s,

with ``n`` the number of samples of ``s`` so far (1 for the first), :math:`n_0` =
``latency_prior_weight`` pseudo-samples of the prior (``latency_ms[s]``, else
``default_latency_ms``) and :math:`\\alpha` = ``latency_alpha``. While
:math:`n \\le 1/\\alpha - n_0` this is exactly the mean of the prior's :math:`n_0`
pseudo-samples and the ``n`` samples; after that, old samples decay by
:math:`1 - \\alpha` per sample (half-life :math:`\\ln 2 / -\\ln(1 - \\alpha)`, 13.5
samples for :math:`\\alpha = 0.05`), so a strategy that became faster or slower is
re-priced within a few dozen calls.

**Why the mean and not a quantile.** The policy maximises the *expected* value
:math:`u(a \\mid x) - c(a)`, and the cost is linear in latency, so the plug-in that
makes :math:`c(a)` the expected cost is :math:`E[y]`. A p50 would under-charge a
strategy with a heavy tail (timeouts charged at the deadline are exactly that tail);
a p90 would over-charge a steady one. Outliers are bounded by the deadline clip.

State: ``mean (S,)`` and ``count (S,)`` float64 arrays, which may be views of an RLModule's
buffers (:mod:`deployments.rlmodule`), so the estimate is checkpointed and synced with the
policy's parameters.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ltrr.bandit.config import CostConfig

#: One latency sample: (strategy, ms).
Sample = tuple[str, float]


def latency_samples(calls: Iterable[Mapping[str, Any]], deadlines_ms: Mapping[str, float]) -> list[Sample]:
    """The samples of one logged search's ``calls`` (see the module docstring for the rule)."""
    out: list[Sample] = []
    for c in calls:
        status, name = c.get("status"), str(c.get("strategy", ""))
        raw = c.get("latency_ms")
        t = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else math.nan
        if not math.isfinite(t) or t < 0.0:
            continue
        deadline = deadlines_ms.get(name)
        if status in ("ok", "error"):
            out.append((name, t if deadline is None else min(t, float(deadline))))
        elif status == "timeout":
            out.append((name, t if deadline is None else max(t, float(deadline))))
    return out


class LatencyModel:
    """Per-strategy latency estimates :math:`\\ell_s` in ms (see the module docstring).

    ``mean`` and ``count`` (shape ``(S,)``, float64) are used in place: pass views of
    buffers to keep the state elsewhere."""

    def __init__(self, strategies: Sequence[str], costs: CostConfig, mean: np.ndarray, count: np.ndarray) -> None:
        self.strategies = tuple(strategies)
        shape = (len(self.strategies),)
        if mean.shape != shape or count.shape != shape:
            raise ValueError(f"`mean` and `count` must have shape {shape}, got {mean.shape} and {count.shape}")
        self.costs = costs
        self.mean = mean
        self.count = count
        self._index = {s: i for i, s in enumerate(self.strategies)}

    @classmethod
    def prior(cls, strategies: Sequence[str], costs: CostConfig) -> LatencyModel:
        """A model with its own arrays, at the prior."""
        model = cls(strategies, costs, np.zeros(len(strategies)), np.zeros(len(strategies)))
        model.reset()
        return model

    def reset(self) -> None:
        """Back to the prior: :math:`\\ell_s = \\text{prior}_s`, no samples."""
        self.mean[:] = [self.costs.prior_latency_ms(s) for s in self.strategies]
        self.count[:] = 0.0

    def check(self, samples: Iterable[Sample]) -> list[tuple[int, float]]:
        """Validate ``samples`` without applying them: ``[(strategy index, ms)]``; samples of
        strategies not in the model are dropped."""
        out = []
        for s, y in samples:
            if not isinstance(y, (int, float)) or isinstance(y, bool) or not math.isfinite(y) or y < 0:
                raise ValueError(f"latency sample of {s!r} must be a finite number >= 0 ms, got {y!r}")
            if s in self._index:
                out.append((self._index[s], float(y)))
        return out

    def apply(self, checked: Iterable[tuple[int, float]]) -> int:
        """Apply samples from :meth:`check`, in order (the update rule of the module docstring)."""
        alpha, n0 = self.costs.latency_alpha, self.costs.latency_prior_weight
        n = 0
        for i, y in checked:
            self.count[i] += 1.0
            eta = max(alpha, 1.0 / (n0 + self.count[i]))
            self.mean[i] += eta * (y - self.mean[i])
            n += 1
        return n

    def update(self, samples: Iterable[Sample]) -> int:
        """Check, then apply ``samples``; returns how many were applied (an invalid one applies nothing)."""
        return self.apply(self.check(samples))

    def as_dict(self) -> dict[str, float]:
        return {s: float(v) for s, v in zip(self.strategies, self.mean, strict=True)}
