import asyncio

import pytest

from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy
from ltrr.bandit.planner import PolicyPlanner
from ltrr.errors import BackendUnavailable, InvalidRequest, NotFound
from ltrr.eventlog import SQLiteEventLog
from ltrr.fanout import Fanout
from ltrr.service import SearchService, static_plan
from ltrr.types import Candidate, ParsedQuery, UserProfile
from ltrr.validation import validate_feedback, validate_search

NAMES = ["lexical", "vector", "graph", "memory"]


def fake(ids, fail=False):
    async def call(query, k):
        if fail:
            raise BackendUnavailable("down")
        return [Candidate(e, "artist", e.upper(), "", 1.0, i).to_dict() for i, e in enumerate(ids[:k], 1)]

    return call


def parse(text):
    return ParsedQuery(text, text)


@pytest.fixture
def service(tmp_path):
    callers = {
        "lexical": fake(["a", "b", "c"]),
        "vector": fake(["b", "d"]),
        "graph": fake([]),
        "memory": fake([], fail=True),
    }
    fan = Fanout(callers, {n: 1.0 for n in NAMES})
    events = SQLiteEventLog(tmp_path / "ev.sqlite")
    users = {"u1": UserProfile("u1", top_tags=(("rock", 1.0),))}
    yield SearchService(
        fan, parse, events, {"lexical": 2, "vector": 5, "graph": 5, "memory": 5}, planner(), users=users.get
    )
    events.close()


def planner(seed=0):
    fz = ContextFeaturizer(NAMES)
    policy = new_policy(PolicyConfig(ladder=(0, 2, 5), seed=seed), NAMES, fz.dim)
    return PolicyPlanner(policy, fz, version="test-3")


def test_static_plan():
    assert static_plan(NAMES, (), {n: 7 for n in NAMES}) == {n: 7 for n in NAMES}
    assert static_plan(NAMES, ("graph",), {n: 7 for n in NAMES}) == {"lexical": 0, "vector": 0, "graph": 7, "memory": 0}


def test_search_fuses_logs_and_degrades(service):
    p = validate_search(query="q", k=3, explain=True, strategies=NAMES, known_strategies=NAMES)
    out = asyncio.run(service.search(p))
    # lexical asked for k=2 -> a, b; vector -> b, d. RRF: b = 1/62 + 1/61, a = 1/61, d = 1/62.
    assert [r.entity_id for r in out.results] == ["b", "a", "d"]
    assert out.degraded is True
    assert {c.strategy: c.status for c in out.calls} == {
        "lexical": "ok",
        "vector": "ok",
        "graph": "ok",
        "memory": "error",
    }
    assert out.features["b"]["vector.rank"] == 1.0 and out.features["b"]["lexical.rank"] == 2.0
    logged = service.events.search(out.request_id)
    assert logged.shown == ("b", "a", "d")
    assert logged.candidates == {"lexical": ["a", "b"], "vector": ["b", "d"], "graph": [], "memory": []}
    assert logged.decision["forced"] is True and logged.decision["propensity"] == 1.0
    assert out.policy_version == logged.policy_version == "test-3"


def test_policy_decides_and_the_log_holds_features_decision_and_propensities(service):
    p = validate_search(query="q", user_id="u1", context={"hour": "6"}, known_strategies=NAMES)
    out = asyncio.run(service.search(p))
    d = out.decision
    assert d is not None and not d.forced and 0.0 < d.propensity <= 1.0
    assert any(k > 0 for k in d.budgets.values()) and set(d.budgets.values()) <= {0, 2, 5}
    by = {c.strategy: c for c in out.calls}
    for s in NAMES:
        assert by[s].requested == d.budgets[s]
        assert by[s].propensity == d.inclusion[s]
        assert by[s].status == ("skipped" if d.budgets[s] == 0 else by[s].status)
    logged = service.events.search(out.request_id)
    assert logged.decision == d.to_dict()
    assert logged.features["user_known"] == 1.0 and logged.features["time_known"] == 1.0
    assert logged.features["hour_cos"] == pytest.approx(0.0, abs=1e-12)  # 06:00 is a quarter turn
    assert logged.context == {"hour": "6"}
    assert set(logged.scores) == {s for s in NAMES if d.budgets[s] > 0}


def test_bad_context_is_invalid_argument_naming_the_field(service):
    p = validate_search(query="q", context={"hour": "25"}, known_strategies=NAMES)
    with pytest.raises(InvalidRequest, match="context.hour"):
        asyncio.run(service.search(p))


def test_planner_must_decide_for_the_strategies_the_fanout_calls(tmp_path):
    fan = Fanout({"lexical": fake(["a"])}, {"lexical": 1.0})
    with pytest.raises(ValueError, match="decides for"):
        SearchService(fan, parse, SQLiteEventLog(tmp_path / "e.sqlite"), {"lexical": 2}, planner())


def test_forced_strategy_skips_the_rest_and_is_not_degraded(service):
    out = asyncio.run(service.search(validate_search(query="q", strategies=["vector"], known_strategies=NAMES)))
    assert {c.strategy: c.status for c in out.calls} == {
        "lexical": "skipped",
        "vector": "ok",
        "graph": "skipped",
        "memory": "skipped",
    }
    assert out.degraded is False
    assert [r.entity_id for r in out.results] == ["b", "d"]


def test_forced_budgets_and_explain_return_each_strategys_candidates_and_the_context(service):
    p = validate_search(
        query="q", budgets={"lexical": 2, "vector": 5}, explain=True, known_strategies=NAMES, ladder=(0, 2, 5)
    )
    out = asyncio.run(service.search(p))
    assert out.decision is not None and out.decision.forced and out.decision.propensity == 1.0
    assert out.decision.budgets == {"lexical": 2, "vector": 5, "graph": 0, "memory": 0}
    assert {c.strategy: c.requested for c in out.calls} == {"lexical": 2, "vector": 5, "graph": 0, "memory": 0}
    assert out.candidates == {"lexical": ["a", "b"], "vector": ["b", "d"]}
    assert out.context["bias"] == 1.0 and set(out.context) == set(service.planner.featurizer.names)
    plain = asyncio.run(service.search(validate_search(query="q", budgets={"vector": 5}, known_strategies=NAMES)))
    assert plain.candidates == {} and plain.context == {}, "only explain returns them"


def test_feedback_roundtrip(service):
    woken = []
    service.on_feedback = lambda: woken.append(1)
    out = asyncio.run(service.search(validate_search(query="q", known_strategies=NAMES)))
    fb = validate_feedback(request_id=out.request_id, event_id="e1", entity_id="b", action="click", position=1)
    assert asyncio.run(service.feedback(fb)) is False
    assert asyncio.run(service.feedback(fb)) is True
    assert woken == [1]  # the learner is woken once, not for the duplicate
    with pytest.raises(NotFound):
        asyncio.run(service.feedback(validate_feedback(request_id="x", event_id="e2", entity_id="b", action="click")))
