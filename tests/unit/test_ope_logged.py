"""Off-policy evaluation from a real (SQLite) event log written the way the service writes it."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.bandit import ActionSpace, ContextFeaturizer, PolicyConfig, new_policy
from ltrr.bandit.features import QUERY_CLASSES
from ltrr.cli import main
from ltrr.eventlog import FeedbackEvent, SearchEvent, SQLiteEventLog
from ltrr.ope.logged import collect, evaluate

STRATEGIES = ("lexical", "vector", "graph", "memory")
#: class -> strategy -> P(wanted item in top 10 / 25 / 50 / 100)
HIT = np.array(
    [
        [[0, 0.3, 0.5, 0.7, 0.9], [0, 0.02, 0.04, 0.06, 0.1], [0, 0.02, 0.02, 0.02, 0.02], [0, 0.05, 0.05, 0.05, 0.05]],
        [[0, 0.02, 0.02, 0.05, 0.05], [0, 0.05, 0.1, 0.1, 0.1], [0, 0.2, 0.4, 0.6, 0.8], [0, 0.02, 0.02, 0.02, 0.02]],
    ]
)
RANK_AT_LEVEL = {1: 5, 2: 20, 3: 40, 4: 80}


def write_log(path, n: int, algorithm: str, seed: int = 0, epsilon: float = 0.1) -> None:
    """``n`` searches decided by ``algorithm`` (not learning: its prior), clicked when the simulator says so."""
    fz = ContextFeaturizer(STRATEGIES)
    policy = new_policy(PolicyConfig(algorithm=algorithm, seed=seed, epsilon=epsilon), STRATEGIES, fz.dim)
    space = policy.space
    rng = np.random.default_rng(seed + 100)
    log = SQLiteEventLog(path, reward_window_s=1.0, expiry_grace_s=0.0)
    for i in range(n):
        c = int(rng.integers(2))
        features = {"bias": 1.0, f"class.{QUERY_CLASSES[c + 1]}": 1.0}
        d = policy.select(fz.vector(features))
        candidates, calls, found = {}, [], False
        for j, s in enumerate(STRATEGIES):
            lv = space.ladder.index(d.budgets[s])
            if lv == 0:
                continue
            u = rng.random()
            first = next((m for m in range(1, 5) if u < HIT[c, j, m]), None)
            ids = [f"{s}-{i}-{r}" for r in range(1, d.budgets[s] + 1)]
            if first is not None and first <= lv:
                ids[RANK_AT_LEVEL[first] - 1] = "wanted"
                found = True
            candidates[s] = ids
            calls.append({"strategy": s, "status": "ok"})
        rid = f"r{i}"
        log.record_search(
            SearchEvent(rid, float(i), "q", "", (), tuple(calls), candidates, "", "", features, d.to_dict())
        )
        if found:
            log.record_feedback(FeedbackEvent(f"e{i}", rid, "wanted", "click", 1, float(i) + 0.5))
    log.settle(now_ts=1e9)
    log.close()


def true_uniform_recall(space: ActionSpace) -> float:
    valid = np.arange(1, space.n_actions)
    return float(np.mean([space.union_values(HIT[c])[valid].mean() for c in range(2)]))


def test_uniform_target_on_a_uniform_log_is_the_logged_mean_exactly(tmp_path):
    write_log(tmp_path / "ev.sqlite", 300, "uniform")
    log = SQLiteEventLog(tmp_path / "ev.sqlite")
    rounds = collect(log.iter_settled(), STRATEGIES, PolicyConfig(), ["uniform"], progress=False)
    space = ActionSpace.build(STRATEGIES, PolicyConfig().ladder)
    res = evaluate(rounds, space, n_bootstrap_samples=200)
    assert res["rounds"] == 300
    mean = res["logged"]["recall"]
    # pi_e == pi_0 for every round, so every importance weight is 1
    for est in ("ipw", "snipw"):
        assert res["targets"]["uniform"][est]["recall"] == pytest.approx(mean, rel=1e-12)
    assert res["targets"]["uniform"]["effective_sample_size"] == pytest.approx(300)
    costs = np.where(np.isfinite(space.costs), space.costs, 0.0)
    assert res["targets"]["uniform"]["cost"] == pytest.approx(costs[1:].mean())


def test_uniform_target_from_a_greedy_policys_log_recovers_the_true_recall(tmp_path):
    """Logged by epsilon-greedy (epsilon 0.3): IPW/SNIPW/DR of the uniform policy land within 10%
    of its exact recall, which only works if the logged propensities are right."""
    write_log(tmp_path / "ev.sqlite", 4000, "epsilon_greedy", seed=0, epsilon=0.3)
    log = SQLiteEventLog(tmp_path / "ev.sqlite")
    space = ActionSpace.build(STRATEGIES, PolicyConfig().ladder)
    rounds = collect(log.iter_settled(), STRATEGIES, PolicyConfig(), ["uniform"], progress=False)
    res = evaluate(rounds, space, n_bootstrap_samples=300)
    truth = true_uniform_recall(space)
    logged = res["logged"]["recall"]
    assert abs(logged - truth) / truth > 0.1, "the learning logger differs from uniform; the test needs OPE"
    for est in ("ipw", "snipw", "dr"):
        v = res["targets"]["uniform"][est]
        assert abs(v["recall"] - truth) / truth < 0.1, (est, v, truth)
        assert v["lower"] <= v["recall"] <= v["upper"]


def test_cli_reports_every_policy_and_estimator(tmp_path, capsys):
    write_log(tmp_path / "ev.sqlite", 200, "uniform")
    code = main(["ope", "--events", str(tmp_path / "ev.sqlite"), "--bootstrap", "100", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    for name in ("linear_ts", "linucb", "epsilon_greedy", "uniform", "ipw recall", "snipw recall", "dr recall"):
        assert name in out
    assert (tmp_path / "o" / "ope.json").exists()
    assert main(["ope", "--events", str(tmp_path / "ev.sqlite"), "--policy", "greedy"]) == 2
    assert "unknown 'greedy'; valid: linear_ts" in capsys.readouterr().err
    assert main(["ope", "--events", str(tmp_path / "missing.sqlite")]) == 2


def test_searches_after_the_oldest_unsettled_one_are_left_out(tmp_path, capsys):
    """Clicked searches settle at once, unclicked ones only when their window passes: evaluating
    before then would see only the positives."""
    cfg = PolicyConfig(seed=0)
    fz = ContextFeaturizer(STRATEGIES)
    policy = new_policy(cfg, STRATEGIES, fz.dim)
    path = tmp_path / "ev.sqlite"
    log = SQLiteEventLog(path, reward_window_s=10.0, expiry_grace_s=0.0)
    for i, clicked in enumerate([False, True, True]):
        d = policy.select(fz.vector({"bias": 1.0}))
        called = [s for s in STRATEGIES if d.budgets[s] > 0]
        cands = {s: ["a"] for s in called}
        calls = tuple({"strategy": s, "status": "ok"} for s in called)
        log.record_search(
            SearchEvent(f"r{i}", 100.0 + i, "q", "", (), calls, cands, "", "", {"bias": 1.0}, d.to_dict())
        )
        if clicked:
            log.record_feedback(FeedbackEvent(f"e{i}", f"r{i}", "a", "click", 1, 100.5 + i))
    assert len(log.settle(now_ts=103.0)) == 2  # the two clicks; r0 waits for its window
    assert log.oldest_pending_ts() == 100.0
    log.close()
    assert main(["ope", "--events", str(path), "--bootstrap", "50"]) == 1
    assert "2 settled ones after it wait for it" in capsys.readouterr().err
    log = SQLiteEventLog(path, reward_window_s=10.0, expiry_grace_s=0.0)
    assert len(log.settle(now_ts=1e9)) == 1 and log.oldest_pending_ts() is None
    rounds = collect(log.iter_settled(), STRATEGIES, cfg, ["uniform"], progress=False, until_ts=None)
    log.close()
    assert rounds.n == 3 and rounds.reward == [1.0, 1.0, 0.0]  # in settlement order
    log = SQLiteEventLog(path)
    later = collect(log.iter_settled(), STRATEGIES, cfg, ["uniform"], progress=False, since_ts=101.0)
    log.close()
    assert (later.n, later.skipped, later.reward) == (2, 1, [1.0, 1.0])


def test_costs_use_the_latencies_each_decision_was_priced_with(tmp_path):
    """Round i is priced with the latencies its decider logged; a record without them (an older log)
    with the configured prior. Logged and target mean costs are then exact by hand."""
    cfg = PolicyConfig(seed=0)
    fz = ContextFeaturizer(STRATEGIES)
    policy = new_policy(cfg, STRATEGIES, fz.dim, algorithm="uniform")
    space = ActionSpace.build(STRATEGIES, cfg.ladder, cfg.costs)
    path = tmp_path / "ev.sqlite"
    log = SQLiteEventLog(path, reward_window_s=1.0, expiry_grace_s=0.0)
    priced = [{"lexical": 5.0, "vector": 300.0, "graph": 1.0, "memory": 5.0}, None, {"vector": 150.0}]
    logged_costs, uniform_costs = [], []
    for i, latency in enumerate(priced):
        policy.space.set_latency(latency or {})
        d = policy.select(fz.vector({"bias": 1.0}))
        doc = d.to_dict()
        if latency is None:
            del doc["latency_ms"]  # as a search logged before decisions carried latencies
        prices = space.costs_for(latency or {})  # a dict lacking a strategy: its prior (10 ms)
        assert d.cost == pytest.approx(prices[d.action], abs=1e-15)
        logged_costs.append(prices[d.action])
        uniform_costs.append(prices[1:].mean())
        called = [s for s in STRATEGIES if d.budgets[s] > 0]
        calls = tuple({"strategy": s, "status": "ok"} for s in called)
        log.record_search(
            SearchEvent(f"r{i}", float(i), "q", "", (), calls, {s: ["a"] for s in called}, "", "", {"bias": 1.0}, doc)
        )
    log.settle(now_ts=1e9)
    rounds = collect(log.iter_settled(), STRATEGIES, cfg, ["uniform"], progress=False)
    log.close()
    assert rounds.n == 3
    assert rounds.logged_cost == pytest.approx(logged_costs, abs=1e-15)
    res = evaluate(rounds, space, n_bootstrap_samples=50)
    assert res["logged"]["cost"] == pytest.approx(np.mean(logged_costs), abs=1e-15)
    assert res["targets"]["uniform"]["cost"] == pytest.approx(np.mean(uniform_costs), rel=1e-12)
    # 300 ms vector at per_ms 0.0005 costs 0.15 more per call than at 0 ms: the first round is dearer
    assert uniform_costs[0] > uniform_costs[1]
