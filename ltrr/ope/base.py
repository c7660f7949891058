"""The off-policy estimator interface, its input checks and the bootstrap interval.

Follows Open Bandit Pipeline 0.5 (``obp.ope.estimators``): an estimator is a frozen
dataclass with a private, unchecked ``_estimate_round_rewards`` (the math) and the public,
validated ``estimate_policy_value`` and ``estimate_interval``.

Logged bandit data :math:`\\mathcal{D} = \\{(x_i, a_i, r_i)\\}_{i=1}^{n}` collected by a
logging policy :math:`\\pi_0` is passed as arrays:

=================================  ===============================  ==============================================
argument                           shape                            meaning
=================================  ===============================  ==============================================
``reward``                         ``(n_rounds,)``                  :math:`r_i`, finite
``action``                         ``(n_rounds,)``, int             :math:`a_i \\in [0, n_{actions})`
``pscore``                         ``(n_rounds,)``                  :math:`\\pi_0(a_i \\mid x_i) \\in (0, 1]`
``action_dist``                    ``(n_rounds, n_actions, L)``     :math:`\\pi_e(a \\mid x_i)`, sums to 1 over axis 1
``position``                       ``(n_rounds,)``, int             slot in ``[0, L)``; default all zeros (``L = 1``)
``estimated_rewards_by_reg_model`` ``(n_rounds, n_actions, L)``     :math:`\\hat{q}(x_i, a)`; required by DR
=================================  ===============================  ==============================================

The importance weight of round *i* is :math:`w_i = \\pi_e(a_i \\mid x_i) / \\pi_0(a_i \\mid x_i)`.
The policy value is the mean of the round rewards, :math:`\\hat{V} = \\frac{1}{n} \\sum_i \\hat{r}_i`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

#: Tolerance for ``action_dist`` summing to 1 over actions (``np.isclose`` defaults, as obp's ``np.allclose``).
_SUM_RTOL = 1e-5
_SUM_ATOL = 1e-8


def _fmt(value: float) -> str:
    return f"{float(value):g}"


def check_array(array: object, name: str, expected_dim: int) -> np.ndarray:
    """Check that ``array`` is a non-empty ``np.ndarray`` with ``expected_dim`` dimensions."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"`{name}` must be a numpy.ndarray, got {type(array).__name__}")
    if array.ndim != expected_dim:
        raise ValueError(f"`{name}` must be {expected_dim}-dimensional, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` must have at least one round, got shape {array.shape}")
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"`{name}` must be a real numeric array, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must contain only finite values, got {array[~np.isfinite(array)][0]}")


def _check_index(array: np.ndarray, name: str, upper: int, upper_name: str) -> None:
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"`{name}` must be an integer array, got dtype {array.dtype}")
    lo, hi = int(array.min()), int(array.max())
    if lo < 0:
        raise ValueError(f"`{name}` must be in [0, {upper_name}) = [0, {upper}), got min {lo}")
    if hi >= upper:
        raise ValueError(f"`{name}` must be in [0, {upper_name}) = [0, {upper}), got max {hi}")


def _check_same_rounds(array: np.ndarray, name: str, reward: np.ndarray) -> None:
    if array.shape[0] != reward.shape[0]:
        raise ValueError(
            f"`{name}` and `reward` must have the same number of rounds, got {array.shape[0]} and {reward.shape[0]}"
        )


def as_position(position: np.ndarray | None, n_rounds: int) -> np.ndarray:
    """``position``, or all zeros (``len_list == 1``) when it is ``None``."""
    return np.zeros(n_rounds, dtype=np.int64) if position is None else position


def check_ope_inputs(
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    position: np.ndarray | None = None,
    estimated_rewards_by_reg_model: np.ndarray | None = None,
) -> np.ndarray:
    """Check the logged data against the shapes and rules in the module docstring.

    Raises :class:`ValueError` naming the argument and the rule. Returns ``position``,
    filled with zeros when it was ``None`` (allowed only when ``len_list == 1``).
    """
    check_array(reward, "reward", 1)
    check_array(action, "action", 1)
    check_array(pscore, "pscore", 1)
    check_array(action_dist, "action_dist", 3)
    _check_same_rounds(action, "action", reward)
    _check_same_rounds(pscore, "pscore", reward)
    _check_same_rounds(action_dist, "action_dist", reward)
    n_rounds, n_actions, len_list = action_dist.shape

    _check_finite(reward, "reward")
    _check_index(action, "action", n_actions, "n_actions")

    _check_finite(pscore, "pscore")
    if pscore.min() <= 0:
        raise ValueError(f"`pscore` must be in (0, 1], got min {_fmt(pscore.min())}")
    if pscore.max() > 1:
        raise ValueError(f"`pscore` must be in (0, 1], got max {_fmt(pscore.max())}")

    _check_finite(action_dist, "action_dist")
    if action_dist.min() < 0 or action_dist.max() > 1:
        bad = action_dist.min() if action_dist.min() < 0 else action_dist.max()
        raise ValueError(f"`action_dist` must be in [0, 1], got {_fmt(bad)}")
    sums = action_dist.sum(axis=1)  # (n_rounds, len_list)
    off = np.argwhere(~np.isclose(sums, 1.0, rtol=_SUM_RTOL, atol=_SUM_ATOL))
    if off.size:
        i, k = (int(v) for v in off[0])
        raise ValueError(
            f"`action_dist` must sum to 1 over actions (axis 1), got {_fmt(sums[i, k])} at round {i}, position {k}"
        )

    if position is None:
        if len_list > 1:
            raise ValueError(f"`position` must be given when `action_dist.shape[2]` > 1, got {len_list}")
        position = as_position(None, n_rounds)
    else:
        check_array(position, "position", 1)
        _check_same_rounds(position, "position", reward)
        _check_index(position, "position", len_list, "len_list")

    if estimated_rewards_by_reg_model is not None:
        name = "estimated_rewards_by_reg_model"
        check_array(estimated_rewards_by_reg_model, name, 3)
        if estimated_rewards_by_reg_model.shape != action_dist.shape:
            raise ValueError(
                f"`{name}` and `action_dist` must have the same shape, "
                f"got {estimated_rewards_by_reg_model.shape} and {action_dist.shape}"
            )
        _check_finite(estimated_rewards_by_reg_model, name)
    return position


def check_bootstrap_arguments(alpha: float, n_bootstrap_samples: int, random_state: int | None) -> None:
    """``alpha`` in (0, 1), ``n_bootstrap_samples`` an int >= 1, ``random_state`` None or an int >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha!r}")
    if isinstance(n_bootstrap_samples, bool) or not isinstance(n_bootstrap_samples, (int, np.integer)):
        raise ValueError(f"`n_bootstrap_samples` must be an int >= 1, got {n_bootstrap_samples!r}")
    if n_bootstrap_samples < 1:
        raise ValueError(f"`n_bootstrap_samples` must be an int >= 1, got {n_bootstrap_samples}")
    if random_state is not None and (
        isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0
    ):
        raise ValueError(f"`random_state` must be None or an int >= 0, got {random_state!r}")


def estimate_confidence_interval_by_bootstrap(
    samples: np.ndarray,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 10000,
    random_state: int | None = None,
) -> dict[str, float]:
    """Percentile bootstrap interval of the mean of ``samples`` (shape ``(n,)``), as obp's function of that name.

    Draw ``B = n_bootstrap_samples`` resamples of size ``n`` with replacement, take each mean
    :math:`\\bar{s}^{(b)}`, and return

    * ``"mean"``: :math:`\\frac{1}{B} \\sum_b \\bar{s}^{(b)}` (the bootstrap mean, as obp; not the point estimate),
    * ``f"{100 * (1 - alpha)}% CI (lower)"``: the :math:`100 \\alpha / 2` percentile of :math:`\\bar{s}^{(b)}`,
    * ``f"{100 * (1 - alpha)}% CI (upper)"``: the :math:`100 (1 - \\alpha / 2)` percentile.

    Resampling uses ``np.random.default_rng(random_state)`` (obp uses the legacy
    ``RandomState``), so a fixed ``random_state`` gives the same interval every time,
    but not obp's numbers. Resamples are drawn in chunks of about 2**22 indices.
    """
    check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
    samples = check_array(samples, "samples", 1)
    rng = np.random.default_rng(random_state)
    n = samples.shape[0]
    chunk = max(1, (1 << 22) // n)
    means = np.empty(n_bootstrap_samples, dtype=np.float64)
    for start in range(0, n_bootstrap_samples, chunk):
        stop = min(start + chunk, n_bootstrap_samples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = samples[idx].mean(axis=1)
    level = 100 * (1.0 - alpha)
    return {
        "mean": float(means.mean()),
        f"{level}% CI (lower)": float(np.percentile(means, 100 * (alpha / 2))),
        f"{level}% CI (upper)": float(np.percentile(means, 100 * (1.0 - alpha / 2))),
    }


def check_lambda(lambda_: float) -> None:
    """The clipping threshold: a real number >= 0, not NaN; ``np.inf`` (the default) disables clipping."""
    if isinstance(lambda_, bool) or not isinstance(lambda_, (int, float)) or not lambda_ >= 0:
        raise ValueError(f"`lambda_` must be a number >= 0 (np.inf disables clipping), got {lambda_!r}")


def importance_weights(
    action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """:math:`w_i = \\pi_e(a_i \\mid x_i, k_i) / \\pi_0(a_i \\mid x_i)`, shape ``(n_rounds,)``."""
    w: np.ndarray = action_dist[np.arange(action.shape[0]), action, position] / pscore
    return w


class BaseOffPolicyEstimator(ABC):
    """An off-policy estimator of :math:`V(\\pi_e) = \\mathbb{E}_{x} \\mathbb{E}_{a \\sim \\pi_e(\\cdot|x)}[q(x, a)]`.

    Subclasses implement :meth:`_estimate_round_rewards` (unchecked math, shape ``(n_rounds,)``);
    the public methods check the inputs first. Subclasses that need a reward model set
    :attr:`requires_reg_model`. Each subclass is a frozen dataclass whose last field is
    ``estimator_name`` (as in obp, so ``InverseProbabilityWeighting(10.0)`` sets ``lambda_``).
    """

    estimator_name: str
    requires_reg_model: ClassVar[bool] = False

    @abstractmethod
    def _estimate_round_rewards(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
    ) -> np.ndarray:
        """Round rewards :math:`\\hat{r}_i`, shape ``(n_rounds,)``; their mean is the estimate."""

    def _check_inputs(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        position: np.ndarray | None,
        estimated_rewards_by_reg_model: np.ndarray | None,
    ) -> np.ndarray:
        """Check the inputs and return ``position`` (zeros if ``None``). Subclasses may add rules."""
        if self.requires_reg_model and estimated_rewards_by_reg_model is None:
            raise ValueError(f"`estimated_rewards_by_reg_model` must be given for estimator {self.estimator_name!r}")
        return check_ope_inputs(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)

    def estimate_policy_value(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
    ) -> float:
        """The estimated policy value :math:`\\hat{V}(\\pi_e) = \\frac{1}{n} \\sum_i \\hat{r}_i`."""
        pos = self._check_inputs(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)
        return float(
            self._estimate_round_rewards(
                reward, action, pscore, action_dist, pos, estimated_rewards_by_reg_model
            ).mean()
        )

    def estimate_interval(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 10000,
        random_state: int | None = None,
    ) -> dict[str, float]:
        """Bootstrap interval of :math:`\\hat{V}`: the round rewards are resampled with
        :func:`estimate_confidence_interval_by_bootstrap` (keys ``"mean"``, ``"95.0% CI (lower)"``,
        ``"95.0% CI (upper)"`` for ``alpha=0.05``)."""
        check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
        pos = self._check_inputs(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)
        rounds = self._estimate_round_rewards(reward, action, pscore, action_dist, pos, estimated_rewards_by_reg_model)
        return estimate_confidence_interval_by_bootstrap(rounds, alpha, n_bootstrap_samples, random_state)
