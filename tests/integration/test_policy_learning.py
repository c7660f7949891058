"""Learning to retrieve, end to end: searches and clicks over gRPC move the policy, and it survives a restart.

Runs against the session app (real Meilisearch, Milvus Lite, Ray Serve, gRPC).
The fixture's policy settles unclicked searches after 5 s and checkpoints every second.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from ltrr.checkpoints import CheckpointDir
from ltrr.client import LtrrClient
from ltrr.eventlog import SQLiteEventLog
from ltrr.v1 import search_pb2 as pb
from tests.fixtures.app import popular_artists, wait_serving

pytestmark = pytest.mark.integration
ALL = ["lexical", "vector", "graph", "memory"]
OTHERS = ["lexical", "vector", "memory"]
ROUNDS = 40
HELD_OUT = 20
#: Learning rounds, then held-out queries for the first test, then others for the restart test: a
#: clicked query is remembered (its memory candidates and ``mem_*`` features change), so none repeats.
N_QUERIES = ROUNDS + 2 * HELD_OUT


def version(resp: pb.SearchResponse) -> int:
    algo, _, n = resp.policy_version.rpartition("-")
    assert algo == "linear_ts", resp.policy_version
    return int(n)


def inclusion(resp: pb.SearchResponse) -> dict[str, float]:
    return {s.strategy: s.propensity for s in resp.strategies}


def logged(events_path: str, request_ids: list[str]) -> list:
    log = SQLiteEventLog(events_path)
    try:
        return [log.search(r) for r in request_ids]
    finally:
        log.close()


def graph_only_target(client: LtrrClient, events_path: str, query: str) -> str | None:
    """An entity in graph's top 10 for ``query`` that no other strategy retrieves (read from the event log)."""
    resp = client.search(query, k=10, strategies=ALL)
    (event,) = logged(events_path, [resp.request_id])
    assert event is not None and event.candidates
    others = {e for s in OTHERS for e in event.candidates.get(s, [])}
    only = [e for e in event.candidates["graph"][:10] if e not in others]
    return only[0] if only else None


@pytest.fixture(scope="module")
def seed_queries(client, ltrr_app) -> list[tuple[str, str]]:
    """("artists like X", graph-only target) for popular artists X of the test catalog.

    Each learning round uses a new X, so the query memory (which learns every click) never
    holds the target for the query it is asked next: only graph does, for this kind of query."""
    out = []
    for e in popular_artists(ltrr_app.catalog_path):
        name = e.title.strip()
        if not name.isascii() or not name.replace(" ", "").isalnum():
            continue
        query = f"artists like {name.lower()}"
        target = graph_only_target(client, ltrr_app.args["events_path"], query)
        if target is not None:
            out.append((query, target))
        if len(out) == N_QUERIES:
            return out
    pytest.fail(f"only {len(out)} artists have a graph-only neighbour")


def learner_status() -> dict:
    from ray import serve

    return serve.get_deployment_handle("learner", app_name="ltrr").status.remote().result(timeout_s=30)


def wait_learned(client: LtrrClient, credited: int, probe: str, timeout_s: float = 60.0) -> int:
    """Block until the learner has credited ``credited`` clicks in all and the deciders serve its
    version (probed with a forced search, which the policy does not learn from); returns that version."""
    deadline = time.monotonic() + timeout_s
    while (status := learner_status())["credited"] < credited:
        assert time.monotonic() < deadline, f"learner credited {status['credited']} of {credited} clicks"
        time.sleep(0.2)
    want = int(status["policy_version"].rpartition("-")[2])
    while version(client.search(probe, k=10, strategies=["memory"])) < want:
        assert time.monotonic() < deadline, f"deciders still behind learner version {want}"
        time.sleep(0.2)
    return want


def search_and_click(client: LtrrClient, queries: list[tuple[str, str]]) -> list[pb.SearchResponse]:
    """Each user searches and clicks the neighbour they came for (graph's, whether or not it was called)."""
    out = []
    for query, target in queries:
        resp = client.search(query, k=10)
        out.append(resp)
        client.feedback(resp.request_id, target, "click", event_id=uuid.uuid4().hex)
    return out


def recall(events_path: str, responses: list[pb.SearchResponse], targets: list[str]) -> float:
    """How often the union of the called strategies' candidates held the target."""
    events = logged(events_path, [r.request_id for r in responses])
    held = [any(t in ids for ids in e.candidates.values()) for e, t in zip(events, targets, strict=True)]
    return float(np.mean(held))


def test_clicks_on_one_strategys_items_shift_decisions_toward_it(client, ltrr_app, seed_queries):
    """Users of "artists like X" always click a neighbour that only graph retrieves: the policy
    learns to call graph for such queries, stops calling the others, and recall of the clicked item rises."""
    events_path = ltrr_app.args["events_path"]
    credited = learner_status()["credited"]
    trace = search_and_click(client, seed_queries[:ROUNDS])
    wait_learned(client, credited + ROUNDS, seed_queries[0][0])
    # New users of new X, who click as the others did: each search counts as a miss for the arms it
    # called until its click lands, so an unclicked search here would honestly teach graph a miss.
    held_out = seed_queries[ROUNDS : ROUNDS + HELD_OUT]
    after = search_and_click(client, held_out)
    assert version(after[-1]) > version(trace[0]), "policy_version advances as feedback is learned"
    first = trace[:10]
    g_first = np.mean([inclusion(r)["graph"] for r in first])
    g_after = np.mean([inclusion(r)["graph"] for r in after])
    trend = [round(inclusion(r)["graph"], 2) for r in trace + after]
    # The fitted prior already calls graph on most "artists like X" searches (0.81 over the first ten
    # in one CI run, which then reached 0.954), so a fixed gain of +0.15 can be out of reach: learning
    # must at least halve the share of searches that skip graph.
    assert g_after > 0.85 and 1 - g_after <= 0.5 * (1 - g_first), (g_first, g_after, trend)
    for s in OTHERS:
        first_s = np.mean([inclusion(r)[s] for r in first])
        after_s = np.mean([inclusion(r)[s] for r in after])
        assert after_s < 0.2 and after_s <= first_s + 0.05, (s, first_s, after_s)
    # Held-out queries: the clicked-for item is in the candidates (graph may still be skipped to explore).
    assert recall(events_path, after, [t for _, t in held_out]) >= 0.8
    # The query memory learned the same clicks: a clicked item is now a memory candidate for its query.
    query, target = seed_queries[0]
    mem = client.search(query, k=10, strategies=["memory"])
    assert target in [r.entity_id for r in mem.results[:3]]


def test_restart_resumes_from_the_saved_parameters(client, ltrr_app, seed_queries):
    from ray import serve
    from ray.rllib.core.rl_module.rl_module import RLModule

    from deployments.app import build_app

    before = client.search(seed_queries[0][0], k=10)  # a learning query: the held-out ones stay unseen
    ckpts = CheckpointDir(ltrr_app.args["policy"]["checkpoint_dir"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        latest = ckpts.latest()
        if latest is not None and int(latest.name.split("-")[1]) >= version(before):
            break
        time.sleep(0.5)
    serve.delete("ltrr")
    latest = ckpts.latest()
    assert latest is not None
    saved = RLModule.from_checkpoint(latest)  # RLlib's own checkpoint API
    assert saved.version >= version(before) > 0

    serve.run(build_app(ltrr_app.args), name="ltrr", route_prefix="/", blocking=False)
    wait_serving(ltrr_app.target)
    held_out = seed_queries[ROUNDS + HELD_OUT :]
    after = search_and_click(client, held_out)
    assert version(after[0]) >= saved.version, "decisions continue from the checkpoint, not from the prior"
    # What was learned before the restart still decides: graph is called for "artists like X" far
    # more often than before the clicks (about 0.4 in development runs).
    g_after = [round(inclusion(r)["graph"], 2) for r in after]
    assert np.mean(g_after) > 0.75, g_after
    assert recall(ltrr_app.args["events_path"], after, [t for _, t in held_out]) >= 0.8
    greedy = saved.forward_inference({"obs": np.zeros((1, saved.arms.dim))})  # the module itself still works
    assert greedy["actions"].shape == (1, len(ALL))
