"""The measured latency model (ltrr.bandit.latency): samples from logged calls and the estimate, by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ltrr.bandit import ActionSpace, CostConfig, LatencyModel, latency_samples

DEADLINES = {"lexical": 500.0, "vector": 200.0}


def test_samples_from_calls_by_hand() -> None:
    calls = [
        {"strategy": "lexical", "status": "ok", "latency_ms": 4.5},
        {"strategy": "vector", "status": "ok", "latency_ms": 250.0},  # over its 200 ms deadline: clipped
        {"strategy": "graph", "status": "skipped", "latency_ms": 0.0},  # not called: no sample
        {"strategy": "vector", "status": "timeout", "latency_ms": 199.0},  # the search waited the deadline
        {"strategy": "lexical", "status": "error", "latency_ms": 1.25},  # failed fast: what it cost
        {"strategy": "memory", "status": "timeout", "latency_ms": 30.0},  # no known deadline: as measured
        {"strategy": "lexical", "status": "ok"},  # an old log without latencies
        {"strategy": "lexical", "status": "ok", "latency_ms": float("nan")},
        {"strategy": "lexical", "status": "ok", "latency_ms": -1.0},
        {"strategy": "lexical", "status": "ok", "latency_ms": True},
    ]
    assert latency_samples(calls, DEADLINES) == [
        ("lexical", 4.5),
        ("vector", 200.0),
        ("vector", 200.0),
        ("lexical", 1.25),
        ("memory", 30.0),
    ]


def test_estimate_by_hand() -> None:
    # prior 10 ms with weight n0 = 2, alpha = 0.25: eta_n = max(0.25, 1 / (2 + n))
    costs = CostConfig(latency_ms={"a": 10.0}, latency_prior_weight=2.0, latency_alpha=0.25)
    m = LatencyModel.prior(["a", "b"], costs)
    assert m.as_dict() == {"a": 10.0, "b": 10.0}  # b: default_latency_ms
    assert m.update([("a", 40.0)]) == 1  # eta 1/3: 10 + (40 - 10) / 3 = 20   (= (2 * 10 + 40) / 3)
    assert m.mean[0] == pytest.approx(20.0, abs=1e-12)
    m.update([("a", 0.0)])  # eta 1/4: 20 + (0 - 20) / 4 = 15   (= (2 * 10 + 40 + 0) / 4)
    assert m.mean[0] == pytest.approx(15.0, abs=1e-12)
    m.update([("a", 35.0)])  # eta max(0.25, 1/5) = 0.25: 15 + 0.25 * 20 = 20
    assert m.mean[0] == pytest.approx(20.0, abs=1e-12)
    m.update([("a", 0.0)])  # eta 0.25: 20 - 5 = 15
    assert m.mean[0] == pytest.approx(15.0, abs=1e-12)
    assert m.count.tolist() == [4.0, 0.0] and m.mean[1] == 10.0  # b untouched


def test_zero_prior_weight_takes_the_first_sample() -> None:
    m = LatencyModel.prior(["a"], CostConfig(latency_prior_weight=0.0, latency_alpha=0.5))
    m.update([("a", 7.0)])  # eta max(0.5, 1/1) = 1
    assert m.mean[0] == 7.0
    m.update([("a", 3.0)])  # eta 0.5
    assert m.mean[0] == 5.0


def test_converges_to_a_new_level() -> None:
    """150 ms -> 5 ms (the vector strategy's change): within a few dozen calls the estimate follows."""
    m = LatencyModel.prior(["vector"], CostConfig(latency_ms={"vector": 150.0}))  # alpha 0.05, n0 5
    m.update([("vector", 5.0)] * 60)
    assert 5.0 < m.mean[0] < 10.0
    m.update([("vector", 300.0)] * 60)
    assert 280.0 < m.mean[0] < 300.0


def test_update_ignores_unknown_strategies_and_validates_first() -> None:
    m = LatencyModel.prior(["a"], CostConfig())
    assert m.update([("zzz", 1.0)]) == 0
    with pytest.raises(ValueError, match=re.escape("latency sample of 'a' must be a finite number >= 0 ms, got -1.0")):
        m.update([("a", 5.0), ("a", -1.0)])
    assert m.count.tolist() == [0.0] and m.mean.tolist() == [10.0], "an invalid batch applies nothing"


def test_views_and_shapes() -> None:
    mean, count = np.zeros(2), np.zeros(2)
    m = LatencyModel(["a", "b"], CostConfig(), mean, count)
    m.reset()
    m.update([("b", 20.0)])
    assert mean.tolist() == [10.0, pytest.approx(10.0 + 10.0 / 6)] and count.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match=re.escape("`mean` and `count` must have shape (2,), got (3,) and (2,)")):
        LatencyModel(["a", "b"], CostConfig(), np.zeros(3), count)


def test_measured_latency_reprices_a_strategy() -> None:
    """What the learner does after an update: the costs follow the estimate (per_ms 0.0005)."""
    costs = CostConfig()
    space = ActionSpace.build(["vector"], [0, 10], costs)
    m = LatencyModel.prior(["vector"], costs)
    assert space.costs[1] == pytest.approx(0.01 + 0.0005 * 10.0 + 0.0002 * 10)
    m.update([("vector", 150.0)] * 200)
    space.set_latency(m.mean)
    assert m.mean[0] == pytest.approx(150.0, abs=0.01)
    assert space.costs[1] == pytest.approx(0.01 + 0.0005 * m.mean[0] + 0.0002 * 10, abs=1e-15)  # ~0.087
