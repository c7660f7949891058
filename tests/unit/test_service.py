import asyncio
import sqlite3
import threading

import pytest

from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy
from ltrr.bandit.planner import PolicyPlanner
from ltrr.catalog.store import CatalogStore
from ltrr.errors import BackendTimeout, BackendUnavailable, InvalidRequest, NotFound
from ltrr.eventlog import SQLiteEventLog
from ltrr.fanout import Fanout
from ltrr.index_status import IndexBacklog
from ltrr.ranking.features import FactsCache, RankFeaturizer
from ltrr.service import SearchService, static_plan
from ltrr.types import Candidate, Entity, ParsedQuery, UserProfile
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
    svc = SearchService(
        fan, parse, events, {"lexical": 2, "vector": 5, "graph": 5, "memory": 5}, planner(), users=users.get
    )
    yield svc
    svc.close()
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


# -- nothing blocking on the event loop, no search waiting for an upsert, deadlines ------------------

#: Seconds: only a guard that ends a test which would otherwise hang, never what a test measures.
GUARD = 30.0


def held_upsert(store, first, rest):
    """Start ``store.upsert_entities([first, *rest])`` in a thread and hold it inside its write transaction
    (``first`` written, the rest not yet) until the returned ``release`` is set. ``held`` is set while it waits."""
    held, release = threading.Event(), threading.Event()

    def entities():
        yield first
        held.set()  # upsert_entities asks for the next entity: `first` is written, the transaction is open
        release.wait(GUARD)
        held.clear()
        yield from rest

    thread = threading.Thread(target=store.upsert_entities, args=(entities(),))
    thread.start()
    assert held.wait(GUARD), "the upsert never started"
    return thread, held, release


def test_search_reads_the_catalog_while_an_upsert_holds_its_write_transaction(tmp_path):
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity("a", "artist", "A", tags=("rock",)), Entity("b", "artist", "B")])
    store.upsert_users([UserProfile("u1", top_tags=(("rock", 1.0),))])
    events = SQLiteEventLog(tmp_path / "ev.sqlite")
    fan = Fanout({n: fake(["a", "b"] if n == "lexical" else []) for n in NAMES}, {n: 1.0 for n in NAMES})
    svc = SearchService(
        fan,
        parse,
        events,
        {n: 2 for n in NAMES},
        planner(),
        users=store.user,
        featurizer=RankFeaturizer(FactsCache(store.get_many)),
        backlog=IndexBacklog(store, {"lexical": "lexical"}),
    )
    thread, held, release = held_upsert(store, Entity("c", "artist", "C"), [Entity("d", "artist", "D")])
    try:
        p = validate_search(query="q", user_id="u1", explain=True, strategies=["lexical"], known_strategies=NAMES)
        out = asyncio.run(svc.search(p))
        during = held.is_set()
    finally:
        release.set()
        thread.join(GUARD)
        svc.close()
    # Before: the profile, facts and backlog reads took the lock the upsert holds until it commits.
    assert during, "the search waited for the upsert to commit"
    # The profile (u1 likes rock) and a's facts (tagged rock) were read: user.tag_overlap = 1.0 * 1.
    assert out.features["a"]["user.tag_overlap"] == 1.0 and out.features["b"]["user.tag_overlap"] == 0.0
    # What the search saw was the last commit: 2 entities, all 2 behind the lexical watermark 0.
    assert out.calls[0].detail == "index catching up: 2 of 2 catalog entities not indexed yet"
    assert store.count() == 4  # and the upsert committed afterwards
    events.close()
    store.close()


class Blocking:
    """A lookup that returns only once the event loop has run ``release_from_loop``: on the loop it
    would wait for itself, until the guard."""

    def __init__(self) -> None:
        self.started, self.go = threading.Event(), threading.Event()
        self.saw: list[bool] = []

    def wait(self) -> None:
        self.started.set()
        self.saw.append(self.go.wait(GUARD))

    async def release_from_loop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.started.wait, GUARD)
        self.go.set()


class BackendStore:
    """The three reads IndexBacklog makes of a catalog store; ``count_since`` blocks."""

    def __init__(self, blocking: Blocking) -> None:
        self.blocking = blocking

    def watermark(self, target):
        return 0

    def count_since(self, seq):
        self.blocking.wait()
        return 0

    def count(self):
        return 0


class StatsEvents(SQLiteEventLog):
    blocking: Blocking

    def query_stats(self, query):
        self.blocking.wait()
        return super().query_stats(query)


@pytest.mark.parametrize("lookup", ["profile", "query_stats", "facts", "backlog"])
def test_search_lookups_run_off_the_event_loop(tmp_path, lookup):
    b = Blocking()
    events = StatsEvents(tmp_path / "ev.sqlite")
    events.blocking = b if lookup == "query_stats" else Blocking()
    if lookup != "query_stats":
        events.blocking.go.set()
    fan = Fanout({n: fake(["a", "b"]) for n in NAMES}, {n: 1.0 for n in NAMES})
    svc = SearchService(
        fan,
        parse,
        events,
        {n: 2 for n in NAMES},
        planner(),
        users=(lambda uid: b.wait()) if lookup == "profile" else None,
        featurizer=RankFeaturizer(FactsCache(lambda ids: b.wait() or {})) if lookup == "facts" else None,
        backlog=IndexBacklog(BackendStore(b), {"lexical": "lexical"}) if lookup == "backlog" else None,
    )
    p = validate_search(query="q", user_id="u1", strategies=["lexical"], known_strategies=NAMES)

    async def both():
        out, _ = await asyncio.gather(svc.search(p), b.release_from_loop())
        return out

    try:
        out = asyncio.run(both())
    finally:
        b.go.set()
        svc.close()
        events.close()
    assert b.saw == [True], f"the {lookup} lookup blocked the event loop"
    assert [r.entity_id for r in out.results] == ["a", "b"]


def test_a_search_out_of_time_fails_before_reading_and_logs_nothing(service):
    p = validate_search(query="q", known_strategies=NAMES)
    with pytest.raises(BackendTimeout) as ei:
        asyncio.run(service.search(p, deadline=0.0))
    assert str(ei.value) == "search: reading the profile and query stats: the caller's deadline passed"
    assert service.events.counts()["searches"] == 0


def test_a_fan_out_longer_than_the_deadline_is_cut_and_logs_nothing(tmp_path):
    async def never(query, k):
        await asyncio.Event().wait()

    events = SQLiteEventLog(tmp_path / "ev.sqlite")
    fan = Fanout({n: never for n in NAMES}, {n: GUARD for n in NAMES})
    svc = SearchService(fan, parse, events, {n: 2 for n in NAMES}, planner())
    p = validate_search(query="q", strategies=["lexical"], known_strategies=NAMES)
    try:
        with pytest.raises(BackendTimeout) as ei:
            asyncio.run(svc.search(p, deadline=0.05))
        assert str(ei.value) == "search: fan-out: the caller's deadline passed"
        assert events.counts()["searches"] == 0
    finally:
        svc.close()
        events.close()


def test_feedback_waits_for_the_write_lock_no_longer_than_its_deadline(service, tmp_path):
    out = asyncio.run(service.search(validate_search(query="q", known_strategies=NAMES)))
    fb = validate_feedback(request_id=out.request_id, event_id="e1", entity_id="b", action="click")
    other = sqlite3.connect(tmp_path / "ev.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the caller's deadline
    try:
        # Without the deadline this would wait the 5 s busy timeout, then fail as BackendUnavailable.
        with pytest.raises(BackendTimeout, match=r"^event log write: no write lock within the caller's deadline"):
            asyncio.run(service.feedback(fb, deadline=0.2))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert service.events.feedback_for(out.request_id) == []  # nothing was stored
    assert asyncio.run(service.feedback(fb, deadline=GUARD)) is False  # so the retry is not a duplicate


@pytest.mark.parametrize(
    ("deadline", "message"),
    [
        ("5", "`deadline` must be a number of seconds or None, got '5'"),
        (True, "`deadline` must be a number of seconds or None, got True"),
        (float("nan"), "`deadline` must be a number of seconds or None, got nan"),
    ],
)
def test_deadline_must_be_a_number_of_seconds(service, deadline, message):
    p = validate_search(query="q", known_strategies=NAMES)
    with pytest.raises(ValueError) as ei:
        asyncio.run(service.search(p, deadline=deadline))
    assert str(ei.value) == message
    fb = validate_feedback(request_id="r", event_id="e1", entity_id="b", action="click")
    with pytest.raises(ValueError) as ei:
        asyncio.run(service.feedback(fb, deadline=deadline))
    assert str(ei.value) == message


def test_forget_facts_makes_the_next_search_read_the_catalog_again(tmp_path):
    asked: list[list[str]] = []
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity("a", "artist", "A"), Entity("b", "artist", "B")])

    def get_many(ids):
        asked.append(sorted(ids))
        return store.get_many(ids)

    events = SQLiteEventLog(tmp_path / "ev.sqlite")
    fan = Fanout({n: fake(["a", "b"] if n == "lexical" else []) for n in NAMES}, {n: 1.0 for n in NAMES})
    svc = SearchService(
        fan, parse, events, {n: 2 for n in NAMES}, planner(), featurizer=RankFeaturizer(FactsCache(get_many))
    )
    p = validate_search(query="q", strategies=["lexical"], known_strategies=NAMES)
    try:
        asyncio.run(svc.search(p))
        asyncio.run(svc.search(p))  # both cached now
        asyncio.run(svc.forget_facts(["a"]))
        asyncio.run(svc.search(p))
    finally:
        svc.close()
        events.close()
        store.close()
    assert asked == [["a", "b"], ["a"]]
