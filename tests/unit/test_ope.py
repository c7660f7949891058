"""Off-policy estimators (ltrr.ope): hand-computed values, invalid inputs, seeded simulation, obp parity."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from ltrr.errors import ConfigError
from ltrr.ope import (
    ESTIMATORS,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedInverseProbabilityWeighting,
    estimate_confidence_interval_by_bootstrap,
    make_estimator,
)

# --------------------------------------------------------------------------- tiny log
# 3 rounds, 2 actions, len_list 1.
#   round  a  r  pscore  pi_e(.|x)    w = pi_e(a|x)/pscore   q_hat(x,.)
#   0      0  1  0.5     [0.2, 0.8]   0.2/0.5 = 0.4          [0.6, 0.3]
#   1      1  0  0.4     [0.6, 0.4]   0.4/0.4 = 1.0          [0.2, 0.5]
#   2      1  1  0.8     [0.5, 0.5]   0.5/0.8 = 0.625        [0.4, 0.9]


def tiny_log() -> dict[str, Any]:
    pi_e = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    q_hat = np.array([[0.6, 0.3], [0.2, 0.5], [0.4, 0.9]])
    return {
        "reward": np.array([1.0, 0.0, 1.0]),
        "action": np.array([0, 1, 1]),
        "pscore": np.array([0.5, 0.4, 0.8]),
        "action_dist": pi_e[:, :, None],
        "estimated_rewards_by_reg_model": q_hat[:, :, None],
    }


# IPW:   w*r = [0.4, 0, 0.625], sum 1.025          -> 1.025 / 3     = 41/120
# SNIPW: sum(w*r) / sum(w) = 1.025 / 2.025         -> 41/81
# DR:    q_hat(x, pi_e) = [0.2*0.6 + 0.8*0.3, 0.6*0.2 + 0.4*0.5, 0.5*0.4 + 0.5*0.9] = [0.36, 0.32, 0.65]
#        w*(r - q_hat(x, a)) = [0.4*0.4, 1.0*(-0.5), 0.625*0.1] = [0.16, -0.5, 0.0625]
#        rounds [0.52, -0.18, 0.7125], sum 1.0525 -> 1.0525 / 3    = 0.3508333...
# IPW, lambda_=0.5: w = [0.4, 0.5, 0.5], w*r = [0.4, 0, 0.5]    -> 0.9 / 3 = 0.3
# DR,  lambda_=0.5: corrections [0.16, -0.25, 0.05], rounds [0.52, 0.07, 0.70] -> 1.29 / 3 = 0.43
@pytest.mark.parametrize(
    ("estimator", "expected_rounds", "expected_value"),
    [
        (InverseProbabilityWeighting(), [0.4, 0.0, 0.625], 41 / 120),
        (SelfNormalizedInverseProbabilityWeighting(), [0.4 * 3 / 2.025, 0.0, 0.625 * 3 / 2.025], 41 / 81),
        (DoublyRobust(), [0.52, -0.18, 0.7125], 1.0525 / 3),
        (InverseProbabilityWeighting(lambda_=0.5), [0.4, 0.0, 0.5], 0.3),
        (DoublyRobust(lambda_=0.5), [0.52, 0.07, 0.70], 0.43),
    ],
    ids=["ipw", "snipw", "dr", "ipw-clipped", "dr-clipped"],
)
def test_tiny_log_exact_values(estimator: Any, expected_rounds: list[float], expected_value: float) -> None:
    log = tiny_log()
    rounds = estimator._estimate_round_rewards(**log)
    assert rounds.shape == (3,)
    assert rounds == pytest.approx(expected_rounds, abs=1e-12)
    assert estimator.estimate_policy_value(**log) == pytest.approx(expected_value, abs=1e-12)


def test_position_selects_the_slot() -> None:
    """With len_list 2, round i uses slot position[i] of action_dist; slot 1 here is the tiny log."""
    log = tiny_log()
    other = np.full_like(log["action_dist"], 0.5)  # slot 0: uniform, ignored
    log["action_dist"] = np.concatenate([other, log["action_dist"]], axis=2)
    log["estimated_rewards_by_reg_model"] = np.concatenate([other, log["estimated_rewards_by_reg_model"]], axis=2)
    position = np.ones(3, dtype=int)
    assert InverseProbabilityWeighting().estimate_policy_value(**log, position=position) == pytest.approx(41 / 120)
    assert DoublyRobust().estimate_policy_value(**log, position=position) == pytest.approx(1.0525 / 3)


def test_estimators_are_frozen_and_named_like_obp() -> None:
    ipw = InverseProbabilityWeighting(10.0)  # first positional field is lambda_, as in obp
    assert (ipw.lambda_, ipw.estimator_name) == (10.0, "ipw")
    assert SelfNormalizedInverseProbabilityWeighting().estimator_name == "snipw"
    assert DoublyRobust().estimator_name == "dr"
    with pytest.raises(AttributeError):
        ipw.lambda_ = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- invalid inputs
def _with(**changes: Any) -> dict[str, Any]:
    log: dict[str, Any] = tiny_log()
    log.update(changes)
    return log


_AD = tiny_log()["action_dist"]
_BAD_SUM = _AD.copy()
_BAD_SUM[1, :, 0] = [0.5, 0.4]
_NEGATIVE = _AD.copy()
_NEGATIVE[0, :, 0] = [-0.2, 1.2]

INVALID_INPUTS = [
    ("reward-list", _with(reward=[1.0, 0.0, 1.0]), "`reward` must be a numpy.ndarray, got list"),
    ("reward-2d", _with(reward=np.ones((3, 1))), "`reward` must be 1-dimensional, got shape (3, 1)"),
    (
        "empty",
        _with(
            reward=np.zeros(0),
            action=np.zeros(0, dtype=int),
            pscore=np.zeros(0),
            action_dist=np.zeros((0, 2, 1)),
            estimated_rewards_by_reg_model=np.zeros((0, 2, 1)),
        ),
        "`reward` must have at least one round, got shape (0,)",
    ),
    ("reward-nan", _with(reward=np.array([1.0, np.nan, 1.0])), "`reward` must contain only finite values, got nan"),
    (
        "action-short",
        _with(action=np.array([0, 1])),
        "`action` and `reward` must have the same number of rounds, got 2 and 3",
    ),
    (
        "pscore-short",
        _with(pscore=np.array([0.5, 0.5])),
        "`pscore` and `reward` must have the same number of rounds, got 2 and 3",
    ),
    (
        "action_dist-rounds",
        _with(action_dist=np.full((4, 2, 1), 0.5)),
        "`action_dist` and `reward` must have the same number of rounds, got 4 and 3",
    ),
    ("action_dist-2d", _with(action_dist=_AD[:, :, 0]), "`action_dist` must be 3-dimensional, got shape (3, 2)"),
    ("action-float", _with(action=np.array([0.0, 1.0, 1.0])), "`action` must be an integer array, got dtype float64"),
    ("action-high", _with(action=np.array([0, 2, 1])), "`action` must be in [0, n_actions) = [0, 2), got max 2"),
    ("action-negative", _with(action=np.array([0, -1, 1])), "`action` must be in [0, n_actions) = [0, 2), got min -1"),
    ("pscore-zero", _with(pscore=np.array([0.5, 0.0, 0.8])), "`pscore` must be in (0, 1], got min 0"),
    ("pscore-above-1", _with(pscore=np.array([0.5, 1.5, 0.8])), "`pscore` must be in (0, 1], got max 1.5"),
    ("pscore-nan", _with(pscore=np.array([0.5, np.nan, 0.8])), "`pscore` must contain only finite values, got nan"),
    ("action_dist-negative", _with(action_dist=_NEGATIVE), "`action_dist` must be in [0, 1], got -0.2"),
    (
        "action_dist-sum",
        _with(action_dist=_BAD_SUM),
        "`action_dist` must sum to 1 over actions (axis 1), got 0.9 at round 1, position 0",
    ),
    (
        "position-missing",
        _with(action_dist=np.full((3, 2, 2), 0.5), estimated_rewards_by_reg_model=np.zeros((3, 2, 2))),
        "`position` must be given when `action_dist.shape[2]` > 1, got 2",
    ),
    (
        "position-high",
        _with(position=np.array([0, 1, 0])),
        "`position` must be in [0, len_list) = [0, 1), got max 1",
    ),
    (
        "position-float",
        _with(position=np.zeros(3)),
        "`position` must be an integer array, got dtype float64",
    ),
    (
        "reg-model-shape",
        _with(estimated_rewards_by_reg_model=np.zeros((3, 3, 1))),
        "`estimated_rewards_by_reg_model` and `action_dist` must have the same shape, got (3, 3, 1) and (3, 2, 1)",
    ),
]


@pytest.mark.parametrize("method", ["estimate_policy_value", "estimate_interval"])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize(("inputs", "message"), [c[1:] for c in INVALID_INPUTS], ids=[c[0] for c in INVALID_INPUTS])
def test_invalid_inputs(method: str, name: str, inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(make_estimator(name), method)(**inputs)


@pytest.mark.parametrize("method", ["estimate_policy_value", "estimate_interval"])
def test_dr_requires_reg_model(method: str) -> None:
    log = _with(estimated_rewards_by_reg_model=None)
    with pytest.raises(
        ValueError, match=re.escape("`estimated_rewards_by_reg_model` must be given for estimator 'dr'")
    ):
        getattr(DoublyRobust(), method)(**log)


def test_snipw_rejects_all_zero_weights() -> None:
    action_dist = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])[:, :, None]  # never the logged action
    message = "`action_dist` must give positive probability to at least one logged action for SNIPW, got all"
    with pytest.raises(ValueError, match=re.escape(message)):
        SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**_with(action_dist=action_dist))


@pytest.mark.parametrize("cls", [InverseProbabilityWeighting, DoublyRobust])
@pytest.mark.parametrize("lambda_", [-1.0, float("nan"), "1", True])
def test_invalid_lambda(cls: type, lambda_: Any) -> None:
    message = f"`lambda_` must be a number >= 0 (np.inf disables clipping), got {lambda_!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(lambda_=lambda_)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "`alpha` must be in (0, 1), got 0.0"),
        ({"alpha": 1.5}, "`alpha` must be in (0, 1), got 1.5"),
        ({"n_bootstrap_samples": 0}, "`n_bootstrap_samples` must be an int >= 1, got 0"),
        ({"n_bootstrap_samples": 10.0}, "`n_bootstrap_samples` must be an int >= 1, got 10.0"),
        ({"random_state": -1}, "`random_state` must be None or an int >= 0, got -1"),
        ({"random_state": "7"}, "`random_state` must be None or an int >= 0, got '7'"),
    ],
)
def test_invalid_bootstrap_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        InverseProbabilityWeighting().estimate_interval(**tiny_log(), **kwargs)


# --------------------------------------------------------------------------- seeded simulation
@dataclass(frozen=True)
class SyntheticLog:
    log: dict[str, Any]  # reward, action, pscore, action_dist (the target policy)
    q: np.ndarray  # (n_rounds, n_actions) expected reward of each action in each round's context
    true_value: float  # V(pi_e), exact over the simulator's context distribution


def synthetic_log(n_rounds: int = 20_000, n_actions: int = 5, n_contexts: int = 50, seed: int = 12) -> SyntheticLog:
    """Contexts drawn uniformly from a finite set, so V(pi_e) is an exact finite sum.

    q(x, a) = sigmoid(x . theta_a); logging policy softmax(x . phi_0); target policy softmax(2 x . phi_e).
    V(pi_e) = (1 / n_contexts) sum_c sum_a pi_e(a | c) q(c, a).
    """
    rng = np.random.default_rng(seed)
    d = 4
    contexts = rng.normal(size=(n_contexts, d))
    theta, phi_0, phi_e = (rng.normal(size=(d, n_actions)) for _ in range(3))
    q_c = 1.0 / (1.0 + np.exp(-(contexts @ theta)))  # (n_contexts, n_actions)

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    pi_0_c = softmax(0.5 * contexts @ phi_0)
    pi_e_c = softmax(2.0 * contexts @ phi_e)
    true_value = float((pi_e_c * q_c).sum(axis=1).mean())

    c = rng.integers(0, n_contexts, size=n_rounds)
    cum = pi_0_c[c].cumsum(axis=1)
    action = np.minimum((rng.random(n_rounds)[:, None] > cum).sum(axis=1), n_actions - 1)
    reward = (rng.random(n_rounds) < q_c[c, action]).astype(float)
    log = {
        "reward": reward,
        "action": action,
        "pscore": pi_0_c[c, action],
        "action_dist": pi_e_c[c][:, :, None],
    }
    return SyntheticLog(log=log, q=q_c[c], true_value=true_value)


@pytest.fixture(scope="module")
def synthetic() -> SyntheticLog:
    return synthetic_log()


def imperfect_reg_model(s: SyntheticLog) -> np.ndarray:
    """q + 0.15 bias + N(0, 0.1) noise, clipped to [0, 1]: a reward model that is clearly wrong."""
    rng = np.random.default_rng(99)
    return np.clip(s.q + 0.15 + rng.normal(0.0, 0.1, size=s.q.shape), 0.0, 1.0)[:, :, None]


def test_synthetic_ground_truth_is_not_the_logging_value(synthetic: SyntheticLog) -> None:
    """The target policy differs from the logging one: the naive mean reward is off by more than 10%."""
    naive = synthetic.log["reward"].mean()
    assert abs(naive - synthetic.true_value) / synthetic.true_value > 0.10


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimators_within_10_percent_of_truth(synthetic: SyntheticLog, name: str) -> None:
    reg = imperfect_reg_model(synthetic)
    value = make_estimator(name).estimate_policy_value(**synthetic.log, estimated_rewards_by_reg_model=reg)
    assert abs(value - synthetic.true_value) / synthetic.true_value < 0.10


def test_dr_corrects_a_biased_reg_model(synthetic: SyntheticLog) -> None:
    """The reg model alone (direct method) is off by > 10%; DR's weighted residual brings it within 10%."""
    reg = imperfect_reg_model(synthetic)
    direct = float((synthetic.log["action_dist"][:, :, 0] * reg[:, :, 0]).sum(axis=1).mean())
    dr = DoublyRobust().estimate_policy_value(**synthetic.log, estimated_rewards_by_reg_model=reg)
    assert abs(direct - synthetic.true_value) / synthetic.true_value > 0.10
    assert abs(dr - synthetic.true_value) / synthetic.true_value < 0.10


# --------------------------------------------------------------------------- bootstrap interval
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_interval_on_synthetic_log(synthetic: SyntheticLog, name: str) -> None:
    inputs = {**synthetic.log, "estimated_rewards_by_reg_model": imperfect_reg_model(synthetic)}
    estimator = make_estimator(name)
    ci = estimator.estimate_interval(**inputs, n_bootstrap_samples=500, random_state=3)
    assert list(ci) == ["mean", "95.0% CI (lower)", "95.0% CI (upper)"]
    lower, upper = ci["95.0% CI (lower)"], ci["95.0% CI (upper)"]
    assert lower <= ci["mean"] <= upper
    assert lower <= estimator.estimate_policy_value(**inputs) <= upper
    assert lower <= synthetic.true_value <= upper
    assert ci == estimator.estimate_interval(**inputs, n_bootstrap_samples=500, random_state=3)


def test_interval_key_names_follow_alpha() -> None:
    ci = InverseProbabilityWeighting().estimate_interval(**tiny_log(), alpha=0.1, n_bootstrap_samples=50)
    assert list(ci) == ["mean", "90.0% CI (lower)", "90.0% CI (upper)"]


def test_bootstrap_hand_checks() -> None:
    # Constant samples: every resample mean is 2, so all three numbers are 2.
    assert estimate_confidence_interval_by_bootstrap(np.full(5, 2.0), random_state=0) == {
        "mean": 2.0,
        "95.0% CI (lower)": 2.0,
        "95.0% CI (upper)": 2.0,
    }
    # Two values 0 and 1, n = 2: resample means are 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4.
    ci = estimate_confidence_interval_by_bootstrap(np.array([0.0, 1.0]), n_bootstrap_samples=4000, random_state=0)
    assert (ci["95.0% CI (lower)"], ci["95.0% CI (upper)"]) == (0.0, 1.0)
    assert ci["mean"] == pytest.approx(0.5, abs=0.03)
    # Seeded: identical for the same random_state, different for another.
    samples = np.random.default_rng(1).normal(size=200)
    a = estimate_confidence_interval_by_bootstrap(samples, n_bootstrap_samples=300, random_state=5)
    assert a == estimate_confidence_interval_by_bootstrap(samples, n_bootstrap_samples=300, random_state=5)
    assert a != estimate_confidence_interval_by_bootstrap(samples, n_bootstrap_samples=300, random_state=6)


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_registry_builds_and_runs_every_estimator(name: str) -> None:
    estimator = make_estimator(name)
    assert estimator.estimator_name == name
    assert isinstance(estimator, ESTIMATORS[name])
    expected = {"ipw": 41 / 120, "snipw": 41 / 81, "dr": 1.0525 / 3}[name]
    assert estimator.estimate_policy_value(**tiny_log()) == pytest.approx(expected)
    ci = estimator.estimate_interval(**tiny_log(), n_bootstrap_samples=200, random_state=0)
    assert ci["95.0% CI (lower)"] <= ci["mean"] <= ci["95.0% CI (upper)"]


def test_registry_passes_params() -> None:
    assert make_estimator("ipw", lambda_=0.5).estimate_policy_value(**tiny_log()) == pytest.approx(0.3)


def test_registry_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown estimator 'ips'; valid: ipw, snipw, dr")):
        make_estimator("ips")


# --------------------------------------------------------------------------- obp parity
def test_obp_parity(synthetic: SyntheticLog) -> None:
    """Same point values as obp 0.5.x on the synthetic log (obp pins numpy 1.23 / Python < 3.11, so this
    runs only in a separate environment with obp installed). obp's bootstrap draws with the legacy
    RandomState, ours with a Generator: the intervals agree only up to Monte Carlo error."""
    obp_ope = pytest.importorskip("obp.ope")
    reg = imperfect_reg_model(synthetic)
    log = synthetic.log
    pairs = [
        (InverseProbabilityWeighting(), obp_ope.InverseProbabilityWeighting()),
        (InverseProbabilityWeighting(lambda_=5.0), obp_ope.InverseProbabilityWeighting(lambda_=5.0)),
        (SelfNormalizedInverseProbabilityWeighting(), obp_ope.SelfNormalizedInverseProbabilityWeighting()),
        (DoublyRobust(), obp_ope.DoublyRobust()),
        (DoublyRobust(lambda_=5.0), obp_ope.DoublyRobust(lambda_=5.0)),
    ]
    for ours, theirs in pairs:
        assert ours.estimator_name == theirs.estimator_name
        kwargs = dict(log, estimated_rewards_by_reg_model=reg)
        assert ours.estimate_policy_value(**kwargs) == pytest.approx(
            theirs.estimate_policy_value(**kwargs), rel=1e-12, abs=1e-12
        )
        ci_ours = ours.estimate_interval(**kwargs, n_bootstrap_samples=2000, random_state=0)
        ci_theirs = theirs.estimate_interval(**kwargs, n_bootstrap_samples=2000, random_state=0)
        assert list(ci_ours) == list(ci_theirs)
        width = ci_theirs["95.0% CI (upper)"] - ci_theirs["95.0% CI (lower)"]
        for key in ci_ours:
            assert ci_ours[key] == pytest.approx(ci_theirs[key], abs=0.1 * width)
