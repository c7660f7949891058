"""Delayed feedback: the learner's estimates are unbiased while negatives have not settled yet.

A seeded stream on the real event log and the real learner: clicks come seconds after their
search, "no click" is only settled when the 600 s reward window passes. Read mid-stream, the log
holds only positive settlements (a learner that learned from settlements would rate every arm
at ~1); the learner counts each search at once and credits the clicks, so its estimate is the
true hit rate, and once the clicks in flight land its statistics equal a fit with every outcome
known up front.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deployments.learner import PolicyLearner
from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy
from ltrr.bandit.rewards import semi_bandit_rewards
from ltrr.eventlog import FeedbackEvent, SearchEvent, now
from tests.unit.test_learner import NAMES, app_args, log_searches

HIT = {"lexical": 0.1, "graph": 0.3}  # chance the wanted item is in each strategy's top 10
FEATURES = {"bias": 1.0, "class.seed": 1.0}


def stream(open_log, seed: int, n: int = 400, delay_s: float = 2.0):
    """``n`` searches one second apart ending now; each strategy holds the wanted item with its
    ``HIT`` chance; a hit is clicked after an exponential delay of mean ``delay_s``. Logs what the
    log would hold now (clicks still in flight are returned, not logged)."""
    rng = np.random.default_rng(seed)
    fz = ContextFeaturizer(NAMES)
    policy = new_policy(PolicyConfig(seed=seed), NAMES, fz.dim)
    log = open_log()
    t_now = now()
    in_flight, outcomes = [], []
    for i in range(n):
        ts = t_now - n + i
        d = dataclasses.replace(policy.forced(fz.vector(FEATURES), {"lexical": 10, "graph": 10}), forced=False)
        found = {s: bool(rng.random() < p) for s, p in HIT.items()}
        cands = {s: (["w"] if found[s] else []) + [f"{s}{j}" for j in range(9)] for s in NAMES}
        calls = tuple({"strategy": s, "status": "ok"} for s in NAMES)
        rid = f"r{i}"
        log.record_search(SearchEvent(rid, ts, "q", "", (), calls, cands, "", "", FEATURES, d.to_dict()))
        outcomes.append((d, cands))
        if any(found.values()):
            fb = FeedbackEvent(f"e{i}", rid, "w", "click", 1, ts + float(rng.exponential(delay_s)))
            (in_flight if fb.ts > t_now else []).append(fb)
            if fb.ts <= t_now:
                log.record_feedback(fb)
    log.close()
    return outcomes, in_flight


def estimates(learner: PolicyLearner) -> dict[str, float]:
    x = ContextFeaturizer(NAMES).vector(FEATURES)
    mean = learner.module.arms.mean(x)
    sp = learner.module.space
    return {s: float(mean[sp.arm(i, 1)]) for i, s in enumerate(sp.strategies)}


def learner_args(tmp_path, event_log_factory):
    """The learner's config, on the factory's store (its SQLite file is ``app_args``' events_path)."""
    args = app_args(tmp_path)
    if event_log_factory.backend == "postgres":
        args["events_dsn"] = event_log_factory.target
    return args


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimates_are_unbiased_before_any_negative_settles(tmp_path, seed, event_log_factory, monkeypatch):
    monkeypatch.delenv("LTRR_EVENTS_DSN", raising=False)  # the backend is this test's parameter
    outcomes, in_flight = stream(event_log_factory, seed)
    learner = PolicyLearner(learner_args(tmp_path, event_log_factory), start=False)
    learner.step()
    settled = learner.events.settlements_since(0, 10_000)
    assert settled and all(st.outcome == "positive" for st, _ in settled), "mid-stream only clicks have settled"
    est = estimates(learner)
    # the empirical hit rate of this stream (what a learner with every outcome known estimates)
    truth = {s: np.mean([cands[s][0] == "w" for _, cands in outcomes]) for s in NAMES}
    assert est == pytest.approx(truth, abs=0.03), "unbiased: the in-flight clicks are the only misses"
    assert est["graph"] == pytest.approx(HIT["graph"], abs=0.08) and est["lexical"] == pytest.approx(0.1, abs=0.06)

    # the clicks in flight land: the statistics now equal a fit with every outcome known up front
    log = event_log_factory()
    for fb in in_flight:
        log.record_feedback(fb)
    log.close()
    learner.step()
    reference = new_policy(PolicyConfig(**app_args(tmp_path)["policy"]), NAMES, ContextFeaturizer(NAMES).dim)
    fz = ContextFeaturizer(NAMES)
    for d, cands in outcomes:
        wanted = "w" if any(c[0] == "w" for c in cands.values()) else None
        ok = dict.fromkeys(NAMES, True)
        rewards = semi_bandit_rewards(d.budgets, reference.space.ladder, cands, ok, wanted)
        reference.update(dataclasses.replace(d, x=fz.vector(FEATURES)), rewards)
    np.testing.assert_allclose(learner.module.arms.theta, reference.arms.theta, rtol=0, atol=1e-9)
    np.testing.assert_allclose(learner.module.arms.a_inv, reference.arms.a_inv, rtol=0, atol=1e-9)
    learner.close()


# SQLite only: test_learner.log_searches writes the SQLite file.
def test_a_click_settled_before_its_search_was_counted_waits_for_it(tmp_path):
    """The learner counts searches, then credits clicks; a click whose search it has not counted
    yet (logged between the two reads) is credited on the next step, never lost or applied twice."""
    log_searches(tmp_path, 2)  # every search clicked on an item only graph returned (at rank 4)
    learner = PolicyLearner(app_args(tmp_path), start=False)
    assert learner._open_searches() == 2
    log_searches(tmp_path, 3, start=2)  # logged after the learner counted
    assert len(learner.events.settle()) == 5
    assert learner._credit_positives() == 2, "stops at the first click whose search it has not counted"
    assert int(learner.module.cursor) == 2
    assert learner.step() == {"settled": 0, "learned": 3, "credited": 3, "memory": 0, "profiles": 0, "pruned": 0}
    graph10 = learner.module.space.arm(NAMES.index("graph"), 1)
    assert learner.module.arms.count[graph10] == 5 and learner.module.version == 10
    x = ContextFeaturizer(NAMES).vector({"bias": 1.0, "class.seed": 1.0})
    assert learner.module.arms.mean(x)[graph10] > 0.8, "all five clicks credited"
    learner.close()
