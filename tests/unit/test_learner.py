"""The policy learner without Serve: settle, learn exactly once, checkpoint, crash, restore, replay."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from typing import Any

import numpy as np
import pytest

from deployments.learner import PolicyLearner
from ltrr.bandit import ContextFeaturizer, PolicyConfig, features, new_policy
from ltrr.bandit.prior import fit_prior
from ltrr.catalog.store import CatalogStore
from ltrr.eventlog import FeedbackEvent, SearchEvent, SQLiteEventLog, now
from ltrr.types import Entity

NAMES = ["lexical", "graph"]


def app_args(tmp_path, **policy: Any) -> dict[str, Any]:
    return {
        "catalog_path": str(tmp_path / "catalog.sqlite"),
        "events_path": str(tmp_path / "events.sqlite"),
        "strategies": {
            "lexical": {"default_k": 50},
            "graph": {"default_k": 50, "config": {"cache_dir": str(tmp_path / "graph-cache")}},
            "vector": {"enabled": False},
            "memory": {"enabled": False},
        },
        "policy": {"checkpoint_dir": str(tmp_path / "policy"), "checkpoint_interval_s": 3600.0, "ridge": 1.0, **policy},
    }


def log_searches(tmp_path, n: int, start: int = 0, ms: dict[str, Any] | None = None) -> list[str]:
    """``n`` policy-decided searches, each clicked on an item only graph returned; ``ms``: each call's
    ``(status, latency_ms)`` by strategy (default ok, no latency logged)."""
    fz = ContextFeaturizer(NAMES)
    policy = new_policy(PolicyConfig(seed=start), NAMES, fz.dim)
    log = SQLiteEventLog(tmp_path / "events.sqlite")
    ids = []
    for i in range(start, start + n):
        features = {"bias": 1.0, "class.seed": 1.0}
        d = policy.forced(fz.vector(features), {"lexical": 10, "graph": 25})
        d = dataclasses.replace(d, forced=False)  # as if the policy had chosen it
        rid = f"r{i}"
        calls = tuple(
            {"strategy": s, "status": "ok"}
            if ms is None
            else {"strategy": s, "status": ms[s][0], "latency_ms": ms[s][1] + i}  # a different figure per search
            for s in ("lexical", "graph")
        )
        cands = {"lexical": [f"l{j}" for j in range(10)], "graph": [f"g{j}" for j in range(25)]}
        log.record_search(SearchEvent(rid, now(), "q", "", (), calls, cands, "", "", features, d.to_dict()))
        log.record_feedback(FeedbackEvent(f"e{i}", rid, "g3", "click", 1, now()))
        ids.append(rid)
    log.close()
    return ids


def test_learns_each_settlement_once_and_replays_after_a_crash(tmp_path):
    args = app_args(tmp_path)
    log_searches(tmp_path, 3)
    first = PolicyLearner(args, start=False)
    assert first.step() == {"settled": 3, "learned": 3, "credited": 3, "memory": 0, "profiles": 0, "pruned": 0}
    assert first.module.version == 6, "each search counted once and credited once"
    assert int(first.module.cursor) == 3 and int(first.module.open_cursor) == 3
    assert first.step() == {"settled": 0, "learned": 0, "credited": 0, "memory": 0, "profiles": 0, "pruned": 0}, (
        "nothing is learned twice"
    )
    arms = first.module.arms
    graph10, lex10 = first.module.space.arm(1, 1), first.module.space.arm(0, 1)
    assert arms.count[graph10] == 3 and arms.count[lex10] == 3
    x = ContextFeaturizer(NAMES).vector({"bias": 1.0, "class.seed": 1.0})
    assert arms.mean(x)[graph10] > 0.7 > 0.1 > arms.mean(x)[lex10]  # graph held the click at rank 4
    assert first.checkpoint() is not None

    log_searches(tmp_path, 2, start=3)
    assert first.step()["learned"] == 2 and first.module.version == 10  # not checkpointed: interval 3600 s
    first._stop.set()  # crash: no final checkpoint
    first.lease.release()  # and a dead process's lease goes with it
    second = PolicyLearner(args, start=False)
    assert second.module.version == 6 and int(second.module.cursor) == 3, "restored from the checkpoint"
    assert int(second.module.open_cursor) == 3
    assert second.step()["learned"] == 2, "replays exactly what the checkpoint had not learned"
    np.testing.assert_allclose(second.module.arms.theta, first.module.arms.theta, rtol=0, atol=1e-12)
    np.testing.assert_allclose(second.module.arms.a_inv, first.module.arms.a_inv, rtol=0, atol=1e-12)
    second.close()  # a clean shutdown checkpoints
    third = PolicyLearner(args, start=False)
    assert third.module.version == 10 and third.step()["learned"] == 0
    third.close()


def test_measures_latencies_once_per_settlement_across_a_crash(tmp_path):
    """Searches i = 0..4: lexical ok at 3 + i ms, graph timed out (counted at its 80 ms deadline)."""
    args = app_args(tmp_path)
    args["strategies"]["graph"]["timeout_ms"] = 80
    args["policy"]["costs"] = {"latency_ms": {"lexical": 10.0, "graph": 1.0}}
    ms = {"lexical": ("ok", 3.0), "graph": ("timeout", 20.0)}
    log_searches(tmp_path, 3, ms=ms)
    first = PolicyLearner(args, start=False)
    assert first.step()["learned"] == 3
    assert first.checkpoint() is not None
    log_searches(tmp_path, 2, start=3, ms=ms)
    assert first.step()["learned"] == 2
    # n0 5, alpha 0.05 -> eta_n = 1 / (5 + n) for these five: each is the mean of 5 prior pseudo-samples and n samples
    lexical = (5 * 10.0 + 3 + 4 + 5 + 6 + 7) / 10  # 7.5
    graph = (5 * 1.0 + 5 * 80.0) / 10  # 40.5
    assert first.module.latency.as_dict() == pytest.approx({"lexical": lexical, "graph": graph}, abs=1e-12)
    assert first.module.latency_n.tolist() == [5.0, 5.0]
    assert first.status()["latency_ms"] == first.module.latency.as_dict()
    first._stop.set()  # crash: the checkpoint holds the first three searches only
    first.lease.release()  # and a dead process's lease goes with it

    second = PolicyLearner(args, start=False)
    after_three = {"lexical": (5 * 10.0 + 3 + 4 + 5) / 8, "graph": (5 * 1.0 + 3 * 80.0) / 8}
    assert second.module.latency.as_dict() == pytest.approx(after_three, abs=1e-12), "restored with the checkpoint"
    assert second.module.space.latency_dict() == second.module.latency.as_dict(), "and the actions priced with it"
    assert second.step()["learned"] == 2, "replays the two the checkpoint lacked"
    assert second.module.latency.as_dict() == first.module.latency.as_dict(), "each settlement counted once"
    assert second.module.latency_n.tolist() == [5.0, 5.0]
    snap = second.snapshot(-1)
    assert snap["state"]["latency_ms"].tolist() == [pytest.approx(lexical), pytest.approx(graph)]
    second.close()
    third = PolicyLearner(args, start=False)
    assert third.step()["learned"] == 0 and third.module.latency_n.tolist() == [5.0, 5.0]
    third.close()


def test_forced_searches_still_measure_latencies(tmp_path):
    log = SQLiteEventLog(tmp_path / "events.sqlite")
    fz = ContextFeaturizer(NAMES)
    d = new_policy(PolicyConfig(), NAMES, fz.dim).forced(fz.vector({"bias": 1.0}), {"lexical": 10, "graph": 0})
    calls = ({"strategy": "lexical", "status": "ok", "latency_ms": 4.0}, {"strategy": "graph", "status": "skipped"})
    log.record_search(SearchEvent("f1", now(), "q", "", (), calls, {"lexical": ["a"]}, "", "", {}, d.to_dict()))
    log.record_feedback(FeedbackEvent("e1", "f1", "a", "click", 1, now()))
    log.close()
    learner = PolicyLearner(app_args(tmp_path), start=False)
    assert learner.step()["learned"] == 0
    # default prior 10 ms, eta 1/6: 10 - 6/6 = 9; graph was not called
    assert learner.module.latency.as_dict() == {"lexical": 9.0, "graph": 10.0}
    assert learner.module.version == 1, "the deciders must get the new prices"
    assert learner.checkpoint() is not None
    learner.close()


def test_snapshot_only_when_the_version_moved(tmp_path):
    args = app_args(tmp_path)
    log_searches(tmp_path, 1)
    learner = PolicyLearner(args, start=False)
    assert learner.snapshot(-1)["version"] == 0
    assert learner.snapshot(0) is None
    learner.step()
    snap = learner.snapshot(0)
    assert snap["version"] == 2 and snap["state"]["updates"] == 2, "counted, then credited"
    learner.close()


def test_a_config_change_relearns_from_the_log(tmp_path):
    log_searches(tmp_path, 4)
    first = PolicyLearner(app_args(tmp_path), start=False)
    first.step()
    first.close()
    other = PolicyLearner(app_args(tmp_path, ladder=[0, 10, 50, 100]), start=False)
    assert other.module.version == 0, "a checkpoint made for another ladder is not loaded"
    assert other.step()["learned"] == 4
    other.close()


def test_a_checkpoint_with_fewer_features_relearns_from_the_log(tmp_path, monkeypatch):
    """An upgrade that adds context features: with a fitted prior, rebuilding the older, narrower
    checkpoint raised in the module's setup and the learner never started."""
    log_searches(tmp_path, 4)
    names = ContextFeaturizer(NAMES).names
    records = [({"bias": 1.0, "class.seed": 1.0}, {"graph": 3}), ({"bias": 1.0, "class.name": 1.0}, {"lexical": 1})]
    prior = fit_prior(records * 5, NAMES, PolicyConfig().ladder, names).save(tmp_path / "prior.npz")
    args = app_args(tmp_path, prior_path=str(prior))
    with monkeypatch.context() as m:
        m.setattr(features, "BASE_FEATURES", features.BASE_FEATURES[:-1])
        old = PolicyLearner(args, start=False)
        old.step()
        assert old.checkpoint() is not None
        old_dim = old.featurizer.dim
        old.close()
    new = PolicyLearner(args, start=False)
    assert new.featurizer.dim == old_dim + 1
    assert new.module.version == 0, "the older checkpoint is not loaded"
    assert new.step()["learned"] == 4, "its searches are learned again from the event log"
    new.close()


def test_forced_searches_are_not_learned_from_unless_configured(tmp_path):
    log = SQLiteEventLog(tmp_path / "events.sqlite")
    fz = ContextFeaturizer(NAMES)
    d = new_policy(PolicyConfig(), NAMES, fz.dim).forced(fz.vector({"bias": 1.0}), {"lexical": 10, "graph": 0})
    calls = ({"strategy": "lexical", "status": "ok"},)
    log.record_search(SearchEvent("f1", now(), "q", "", (), calls, {"lexical": ["a"]}, "", "", {}, d.to_dict()))
    log.record_feedback(FeedbackEvent("e1", "f1", "a", "click", 1, now()))
    log.close()
    skip = PolicyLearner(app_args(tmp_path), start=False)
    assert (
        skip.step() == {"settled": 1, "learned": 0, "credited": 0, "memory": 0, "profiles": 0, "pruned": 0}
        and int(skip.module.cursor) == 1
    )
    skip._stop.set()
    skip.lease.release()  # a dead process's lease goes with it
    learn = PolicyLearner(app_args(tmp_path, learn_from_forced=True), start=False)
    assert learn.step() == {"settled": 0, "learned": 1, "credited": 1, "memory": 0, "profiles": 0, "pruned": 0}
    learn.close()


@pytest.mark.parametrize("replicas", [2, 3])
def test_one_learner_only(tmp_path, replicas):
    from ltrr.config import AppConfig

    with pytest.raises(ValueError, match="learner.num_replicas: must be 1"):
        AppConfig.model_validate({**app_args(tmp_path), "learner": {"num_replicas": replicas}})


class StuckMemory:
    """A query memory whose writes hang until released (Meilisearch's tasks take about a second each)."""

    def __init__(self) -> None:
        self.entered, self.release, self.recorded = threading.Event(), threading.Event(), []

    def record_many(self, events, entities) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.recorded.extend(events)


def test_a_slow_query_memory_does_not_hold_back_the_policy(tmp_path):
    log_searches(tmp_path, 3)
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity("g3", "artist", "G3")])  # the clicked item, so the memory is taught it
    store.close()
    learner = PolicyLearner(app_args(tmp_path), start=False)
    learner.memory = memory = StuckMemory()
    learner.start()
    try:
        assert memory.entered.wait(10), "the memory is being taught the first clicks"
        log_searches(tmp_path, 2, start=3)  # two more searches and clicks arrive meanwhile
        learner.notify()
        deadline = time.monotonic() + 10
        while int(learner.module.cursor) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int(learner.module.cursor) == 5 and learner.module.version == 10, "all five counted and credited"
        assert memory.recorded == [] and learner.status()["memory"] == 0, "while the memory write still hangs"
        memory.release.set()
        deadline = time.monotonic() + 10
        while learner.status()["memory"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(q, e, seq) for q, e, _, seq in memory.recorded] == [("q", "g3", seq) for seq in range(1, 6)]
    finally:
        memory.release.set()
        learner.close()


class FakeMeili:
    """The Meilisearch calls :meth:`MemoryStrategy.record_many` makes, in memory: the documents it creates
    and the click weights its edit tasks add (a click document's ``clicks`` after the task ran)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.clicks: dict[str, float] = {}
        self.last_seq: dict[str, int] = {}

    def fetch_documents(self, uid, filter_, fields, limit=1000) -> list[dict[str, Any]]:
        return [{"id": i} for i in self.docs if f'"{i}"' in filter_]

    def update_documents(self, uid, docs) -> int:
        self.docs.update({d["id"]: dict(d) for d in docs})
        return 0

    def edit_documents(self, uid, filter_, function, context) -> int:
        from ltrr.strategies.memory import ClickEdit  # the rule the edit function runs on the server

        for i, edit in context["c"].items():
            state = (self.clicks.get(i, 0.0), self.last_seq.get(i, 0))
            self.clicks[i], self.last_seq[i] = ClickEdit.from_context(edit).apply(*state)
        return 0

    def wait_tasks(self, tasks, timeout_s=None) -> None:
        pass

    def close(self) -> None:
        pass

    def taught(self) -> dict[tuple[str, str], float]:
        return {(self.docs[i]["query"], self.docs[i]["entity_id"]): w for i, w in self.clicks.items()}


def memory_over(client: FakeMeili):
    """The real :class:`MemoryStrategy` (its own checks: a query must normalise to a word) over ``client``."""
    from ltrr.strategies.memory import MemoryConfig, MemoryStrategy

    mem = MemoryStrategy(MemoryConfig(url="http://127.0.0.1:9", timeout_s=0.2))
    mem._client, mem._ready = client, True
    return mem


def log_queries(tmp_path, queries: list[str], *, entity: str = "g3", user: str = "u1") -> None:
    """One policy-decided search per query (request ``r<i>``), each clicked (event ``e<i>``) on ``entity``."""
    fz = ContextFeaturizer(NAMES)
    policy = new_policy(PolicyConfig(seed=0), NAMES, fz.dim)
    log = SQLiteEventLog(tmp_path / "events.sqlite")
    for i, query in enumerate(queries):
        features = {"bias": 1.0, "class.seed": 1.0}
        d = dataclasses.replace(policy.forced(fz.vector(features), {"lexical": 10, "graph": 25}), forced=False)
        calls = ({"strategy": "lexical", "status": "ok"}, {"strategy": "graph", "status": "ok"})
        cands = {"lexical": [f"l{j}" for j in range(10)], "graph": [f"g{j}" for j in range(25)]}
        log.record_search(SearchEvent(f"r{i}", now(), query, user, (), calls, cands, "", "", features, d.to_dict()))
        log.record_feedback(FeedbackEvent(f"e{i}", f"r{i}", entity, "click", 1, now()))
    log.close()


def test_a_query_that_normalises_to_nothing_is_skipped_counted_and_passed(tmp_path, caplog):
    # "!!!" passed the ingress before it checked normalised queries; the memory refuses to learn it
    # (InvalidRequest), which used to fail every step_side: memory cursor, profiles and the final checkpoint stopped.
    log_queries(tmp_path, ["!!!", "Radiohead", "\u200b", "creep"])
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity("g3", "artist", "G3")])
    store.close()
    learner = PolicyLearner(app_args(tmp_path), start=False)
    learner.memory = memory_over(client := FakeMeili())
    with caplog.at_level("WARNING", logger="ray.serve"):
        assert learner.step() == {"settled": 4, "learned": 4, "credited": 4, "memory": 2, "profiles": 4, "pruned": 0}
    assert client.taught() == {("radiohead", "g3"): 1.0, ("creep", "g3"): 1.0}, "the good clicks are taught"
    assert learner.events.cursor("memory") == 4, "the cursor moved past the bad ones"
    status = learner.status()
    assert status["skipped_events"] == 2 and status["skipped_by_stage"] == {"memory": 2}
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skips) == 2, "each bad event is logged once"
    assert "memory event feedback e0 (seq 1)" in skips[0] and "must contain a word, got '!!!'" in skips[0]
    assert "memory event feedback e2 (seq 3)" in skips[1]
    assert learner.step()["memory"] == 0 and learner.status()["skipped_events"] == 2, "never retried"
    assert client.taught() == {("radiohead", "g3"): 1.0, ("creep", "g3"): 1.0}
    learner.close()
    assert learner.checkpoints.latest() is not None, "the final checkpoint is written"


class DownMeili(FakeMeili):
    def fetch_documents(self, uid, filter_, fields, limit=1000):
        from ltrr.errors import BackendUnavailable

        raise BackendUnavailable("meilisearch at http://127.0.0.1:9 is unreachable (refused)")


def test_a_memory_outage_skips_nothing(tmp_path):
    log_queries(tmp_path, ["radiohead", "!!!"])
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity("g3", "artist", "G3")])
    store.close()
    learner = PolicyLearner(app_args(tmp_path), start=False)
    learner.memory = memory_over(DownMeili())
    from ltrr.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        learner.step_side()
    assert learner.events.cursor("memory") == 0 and learner.status()["skipped_events"] == 0, "retried next poll"
    learner.memory = memory_over(client := FakeMeili())  # the server is back
    assert learner.step_side()["memory"] == 1
    assert client.taught() == {("radiohead", "g3"): 1.0} and learner.status()["skipped_by_stage"] == {"memory": 1}
    learner.close()


def test_a_malformed_decision_is_skipped_when_counted_and_credited(tmp_path):
    log_queries(tmp_path, ["a", "b", "c"])
    db = sqlite3.connect(tmp_path / "events.sqlite")  # a doc written by another version: budgets unreadable
    doc = json.loads(db.execute("SELECT doc FROM searches WHERE request_id='r1'").fetchone()[0])
    doc["decision"]["budgets"] = "lexical=10"
    db.execute("UPDATE searches SET doc=? WHERE request_id='r1'", (json.dumps(doc),))
    db.commit()
    db.close()
    learner = PolicyLearner(app_args(tmp_path), start=False)
    assert learner.step() == {"settled": 3, "learned": 2, "credited": 2, "memory": 0, "profiles": 0, "pruned": 0}
    assert int(learner.module.open_cursor) == 3 and int(learner.module.cursor) == 3
    assert learner.module.version == 4, "the two good searches counted and credited once each"
    assert learner.status()["skipped_by_stage"] == {"open": 1, "credit": 1}
    assert learner.step()["learned"] == 0 and learner.status()["skipped_events"] == 2
    learner.close()


def test_an_entity_that_fails_to_fold_is_skipped_by_the_profiles(tmp_path):
    log_queries(tmp_path, ["x"], entity="artist:bad")
    log = SQLiteEventLog(tmp_path / "events.sqlite")  # then a good click of the same user after it
    log.record_search(SearchEvent("r9", now(), "y", "u1", (), (), {}, "", "", {}, {}))
    log.record_feedback(FeedbackEvent("e9", "r9", "artist:good", "click", 1, now()))
    log.close()
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity("artist:bad", "artist", "Bad"), Entity("artist:good", "artist", "G")])
    store.close()
    db = sqlite3.connect(tmp_path / "catalog.sqlite")  # a document of the wrong shape (no title): reading it raises
    db.execute("UPDATE entities SET doc=? WHERE entity_id='artist:bad'", ('{"entity_id": "artist:bad"}',))
    db.commit()
    db.close()
    learner = PolicyLearner(app_args(tmp_path), start=False)
    assert learner.step_side() == {"memory": 0, "profiles": 1, "pruned": 0}
    assert learner.store.user("u1").top_artists == (("artist:good", 1.0),)
    assert learner.profiles.cursor() == 2 and learner.status()["skipped_by_stage"] == {"profiles": 1}
    assert learner.step_side()["profiles"] == 0 and learner.status()["skipped_events"] == 1
    learner.close()


def test_prunes_with_the_saved_checkpoints_cursors_and_at_most_every_interval(tmp_path):
    """Retention deletes only what a restart from the last *saved* checkpoint will not replay."""
    args = app_args(tmp_path)
    log_searches(tmp_path, 3)
    learner = PolicyLearner(args, start=False)
    learner.retention = learner.retention.model_copy(update={"max_age_s": 1e-9, "min_searches": 1})
    try:
        t = time.monotonic()
        out = learner.step()  # counts, credits and folds the 3 searches; no checkpoint saved yet
        assert (out["settled"], out["learned"], out["pruned"]) == (3, 3, 0), "the saved checkpoint passed none"
        learner.checkpoint()
        assert learner.prune_if_due(now=t + 1.0) == 0, "not due: at most every interval_s"
        assert learner.prune_if_due(now=t + 700.0) == 2, "the newest search is always kept"
        assert learner.events.counts()["searches"] == 1
        assert learner.status()["pruned"] == 0  # totals count the loop's prunes; this one was called directly
    finally:
        learner.close()
