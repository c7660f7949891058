"""End to end over gRPC: real Meilisearch, Milvus Lite, Ray Serve and a gRPC client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ltrr.catalog.store import CatalogStore
from ltrr.v1 import search_pb2 as pb

pytestmark = pytest.mark.integration
OK = pb.StrategyCall.OK
#: Forcing every strategy makes a test independent of what the learned policy would call.
ALL = ["lexical", "vector", "graph", "memory"]


def titles(resp):
    return [r.title for r in resp.results]


def test_standard_health_and_reflection(ltrr_app):
    ch = grpc.insecure_channel(ltrr_app.target)
    health = health_pb2_grpc.HealthStub(ch)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    svc = health.Check(health_pb2.HealthCheckRequest(service="ltrr.v1.SearchService"))
    assert svc.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as ei:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    first = next(iter(health.Watch(health_pb2.HealthCheckRequest(), timeout=10)))
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    # Per-strategy index health: every index is up to date after the fixture's ingest.
    for name in ("lexical", "vector", "graph", "memory"):
        index = health.Check(health_pb2.HealthCheckRequest(service=f"ltrr.index.{name}"))
        assert index.status == health_pb2.HealthCheckResponse.SERVING, name
    with pytest.raises(grpc.RpcError) as ei:
        health.Check(health_pb2.HealthCheckRequest(service="ltrr.index.nope"))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    (answer,) = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"ltrr.v1.SearchService", "grpc.health.v1.Health"} <= names
    ch.close()


def test_forcing_every_strategy_calls_and_reports_each(client):
    resp = client.search("radiohead", k=10, strategies=ALL)
    by = {s.strategy: s for s in resp.strategies}
    assert set(by) == {"lexical", "vector", "graph", "memory"}
    for name, call in by.items():
        assert call.status == OK, (name, call.detail)
        assert call.candidates_requested == 50
        assert call.propensity == 1.0
    assert not resp.degraded and resp.propensity == 1.0
    assert resp.request_id and resp.policy_version and resp.ranker_version
    assert len(resp.results) == 10


def test_the_policy_decides_budgets_and_reports_propensities(client):
    ladder = {0, 10, 25, 50, 100}
    for _ in range(5):
        resp = client.search("radiohead", k=10)
        by = {s.strategy: s for s in resp.strategies}
        assert set(by) == set(ALL)
        assert {c.candidates_requested for c in by.values()} <= ladder
        called = [c for c in by.values() if c.candidates_requested > 0]
        assert called, "at least one strategy is always called"
        assert all(c.status != pb.StrategyCall.SKIPPED for c in called)
        assert all(0.0 < c.propensity < 1.0 for c in by.values()), "every inclusion probability is explored"
        assert 0.0 < resp.propensity <= 1.0
        assert resp.policy_version.startswith("linear_ts-")


def test_known_item_with_typo_finds_the_artist(client):
    # Lexical alone: typo tolerance puts the artist first.
    top = client.search("radiohaed", k=5, strategies=["lexical"]).results[0]
    assert (top.title, top.entity_type) == ("Radiohead", "artist")
    # All strategies: RRF (the order until the ranker exists) keeps it in the answer,
    # ranked first by both strategies that know the name.
    resp = client.search("radiohaed", k=10, explain=True, strategies=ALL)
    (artist,) = [r for r in resp.results if (r.title, r.entity_type) == ("Radiohead", "artist")]
    assert {"lexical", "memory"} <= set(artist.retrieved_by)
    assert artist.features["lexical.rank"] == 1.0 and artist.features["memory.rank"] == 1.0


def test_artists_like_x_returns_graph_neighbours(client, ltrr_app):
    store = CatalogStore(ltrr_app.catalog_path)
    (radiohead,) = [
        e
        for e in store.entities_since(0, batch_size=100000).__next__()[1]
        if e.title == "Radiohead" and e.entity_type == "artist"
    ]
    neighbours = {r.dst for r in store.relations_since(0) if r.src == radiohead.entity_id and r.kind == "similar"}
    neighbours |= {r.src for r in store.relations_since(0) if r.dst == radiohead.entity_id and r.kind == "similar"}
    store.close()
    assert len(neighbours) >= 5
    resp = client.search("artists like radiohead", k=10, strategies=["graph"])
    ids = [r.entity_id for r in resp.results]
    assert radiohead.entity_id not in ids
    assert all(r.entity_type == "artist" for r in resp.results)
    assert all(r.retrieved_by == ["graph"] for r in resp.results)
    # Most of the top 10 are Radiohead's direct co-listening neighbours.
    assert len(set(ids[:10]) & neighbours) >= 6, titles(resp)


def test_semantic_query_is_found_by_the_vector_strategy(client):
    resp = client.search("podcast about solving real murder cases", k=10, strategies=["vector"])
    assert [s.strategy for s in resp.strategies if s.status == OK] == ["vector"]
    assert all(r.retrieved_by == ["vector"] for r in resp.results)
    assert any(r.entity_type == "podcast" for r in resp.results[:5]), titles(resp)


def test_explain_returns_features(client):
    resp = client.search("radiohead", k=3, explain=True, strategies=ALL)
    f = resp.results[0].features
    assert f["model.score"] == pytest.approx(resp.results[0].score), "the score is the ranker's"
    assert resp.ranker_version.startswith("catboost-"), "the cold-start model ranks"
    assert 0 < f["rrf"] <= 4 / 61 and f["lexical.rank"] == 1.0 and f["title.exact"] == 1.0


INVALID = [
    (pb.SearchRequest(query=""), "query: must not be empty"),
    (pb.SearchRequest(query="x" * 300), "query: must be at most 256 characters, got 300"),
    (pb.SearchRequest(query="ok", k=101), "k: must be in [1, 100] (0 means 10), got 101"),
    (pb.SearchRequest(query="ok", k=-3), "k: must be in [1, 100] (0 means 10), got -3"),
    (
        pb.SearchRequest(query="ok", entity_types=["album"]),
        "entity_types: unknown entity type 'album'; valid: artist, track, playlist, podcast",
    ),
    (
        pb.SearchRequest(query="ok", strategies=["bm25"]),
        "strategies: unknown strategy 'bm25'; valid: lexical, vector, graph, memory",
    ),
    (
        pb.SearchRequest(query="ok", context={f"k{i}": "v" for i in range(40)}),
        "context: must have at most 32 entries, got 40",
    ),
    (
        pb.SearchRequest(query="ok", context={"hour": "9" * 300}),
        "context: value of 'hour' must be at most 256 characters, got 300",
    ),
]


@pytest.mark.parametrize(
    "request_, message", INVALID, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(INVALID)]
)
def test_invalid_search_gets_invalid_argument(client, request_, message):
    with pytest.raises(grpc.RpcError) as ei:
        client.stub.Search(request_, timeout=10, metadata=client.metadata(10))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == message


def test_feedback_validation_idempotency_and_unknown_request(client):
    resp = client.search("coldplay", k=3)
    target = resp.results[0].entity_id
    event = uuid.uuid4().hex
    assert client.feedback(resp.request_id, target, "click", position=1, event_id=event).duplicate is False
    assert client.feedback(resp.request_id, target, "click", position=1, event_id=event).duplicate is True
    cases = [
        (
            pb.FeedbackRequest(event_id="e", entity_id=target, action="click"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "request_id: is required",
        ),
        (
            pb.FeedbackRequest(request_id=resp.request_id, event_id="e2", entity_id=target, action="like"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "action: unknown action 'like'; valid: click, play, favorite, skip",
        ),
        (
            pb.FeedbackRequest(request_id="nope", event_id="e3", entity_id=target, action="click"),
            grpc.StatusCode.NOT_FOUND,
            "request_id: unknown request 'nope'",
        ),
    ]
    for req, code, message in cases:
        with pytest.raises(grpc.RpcError) as ei:
            client.stub.Feedback(req, timeout=10, metadata=client.metadata(10))
        assert (ei.value.code(), ei.value.details()) == (code, message)
    # The replica survived all of it.
    assert client.search("coldplay", k=1).results


def test_upsert_reaches_every_shared_index(client):
    uid = uuid.uuid4().hex[:8]
    entity = pb.Entity(
        entity_id=f"artist:test{uid}",
        entity_type="artist",
        title=f"Zyxqor Quartet {uid}",
        subtitle="Artist · test",
        tags=["experimental"],
        description="A string quartet that plays glitchy electronic chamber music.",
        popularity=10.0,
    )
    summary = client.upsert([entity])
    assert (summary.received, summary.changed) == (1, 1)
    assert list(summary.failed) == []
    assert summary.indexed["lexical"] >= 1 and summary.indexed["vector"] >= 1
    resp = client.search(f"zyxqor quartet {uid}", k=5, strategies=["lexical"])
    assert resp.results[0].entity_id == entity.entity_id
    resp = client.search(f"Zyxqor Quartet {uid}", k=5, strategies=["vector"])
    assert entity.entity_id in [r.entity_id for r in resp.results]
    # Same content again: nothing changes.
    assert client.upsert([entity]).changed == 0
    bad = pb.Entity(entity_id="album:1", entity_type="album", title="x")
    with pytest.raises(grpc.RpcError) as ei:
        client.upsert([entity, bad])
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details().startswith("entities[1].entity_type: unknown entity type 'album'")


def test_a_lagging_index_is_reported_until_it_catches_up(client, ltrr_app):
    """What a background ingest looks like: the catalog is ahead of the indexes (written here straight
    into the catalog, as `ltrr ingest` does before it indexes); answers say so and are degraded."""
    from ltrr.types import Entity

    uid = uuid.uuid4().hex[:8]
    store = CatalogStore(ltrr_app.catalog_path)
    total = store.count() + 1
    store.upsert_entities([Entity(f"artist:lag{uid}", "artist", f"Qwyzzle Lagging {uid}")])
    store.close()
    time.sleep(1.2)  # the ingress reads the watermarks at most once a second
    resp = client.search(f"qwyzzle lagging {uid}", k=5, strategies=["lexical"])
    (call,) = [c for c in resp.strategies if c.strategy == "lexical"]
    assert call.status == OK
    assert call.detail == f"index catching up: 1 of {total} catalog entities not indexed yet"
    assert resp.degraded
    assert client.health("ltrr.index.lexical") == "NOT_SERVING"
    assert client.health() == "SERVING"  # the service itself still answers
    client.upsert([])  # an empty stream still syncs every strategy
    time.sleep(1.2)
    assert client.health("ltrr.index.lexical") == "SERVING"
    resp = client.search(f"qwyzzle lagging {uid}", k=5, strategies=["lexical"])
    assert not resp.degraded
    assert resp.results[0].entity_id == f"artist:lag{uid}"


def test_cli_client_in_another_process(ltrr_app):
    env = dict(os.environ)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ltrr.cli",
            "search",
            "radiohaed",
            "-k",
            "3",
            "--strategy",
            "lexical",
            "--target",
            ltrr_app.target,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    ).stdout
    assert "Radiohead" in out.splitlines()[2]
    assert "lexical" in out and "OK" in out


def test_backend_outage_degrades_instead_of_failing(client, ltrr_app):
    """Stop Meilisearch mid-test: lexical and memory fail, the answer still comes back."""
    ltrr_app.meili.stop()
    try:
        t0 = time.monotonic()
        resp = client.search("radiohead", k=5, strategies=ALL)
        elapsed = time.monotonic() - t0
        by = {s.strategy: s for s in resp.strategies}
        assert resp.degraded
        assert by["lexical"].status in (pb.StrategyCall.ERROR, pb.StrategyCall.TIMEOUT)
        assert by["memory"].status in (pb.StrategyCall.ERROR, pb.StrategyCall.TIMEOUT)
        assert by["vector"].status == OK and by["graph"].status == OK
        assert resp.results, "vector/graph still answer"
        assert elapsed < 5.0
        for s in (by["lexical"], by["memory"]):
            assert "Traceback" not in s.detail and "pid=" not in s.detail
    finally:
        ltrr_app.meili.start()
    resp = client.search("radiohead", k=5, strategies=ALL)
    assert {s.strategy: s.status for s in resp.strategies}["lexical"] == OK
    ltrr_app.milvus.stop()
    try:
        resp = client.search("radiohead", k=5, strategies=ALL)
        by = {s.strategy: s for s in resp.strategies}
        assert resp.degraded and by["vector"].status in (pb.StrategyCall.ERROR, pb.StrategyCall.TIMEOUT)
        assert resp.results[0].title == "Radiohead"
    finally:
        ltrr_app.milvus.start()


UPSERT_USERS_CHILD = """
import json, sys
from ltrr.client import LtrrClient
from ltrr.types import UserProfile
target, user_id, artist = sys.argv[1:4]
profile = UserProfile(user_id, ((artist, 3.0),), (("Post-Rock", 2.0), ("ambient", 1.0)))
with LtrrClient(target, timeout=20.0) as c:
    s = c.upsert_users([profile])
print(json.dumps({"received": s.received, "changed": s.changed}))
"""


def test_upsert_users_is_what_the_next_search_uses(client, ltrr_app):
    from ltrr.catalog.normalize import artist_entity_id

    uid = f"test:{uuid.uuid4().hex[:8]}"
    radiohead = artist_entity_id("Radiohead")
    before = client.search("radiohead", k=3, user_id=uid, explain=True, strategies=["lexical"])
    assert before.context_features["user_known"] == 0.0, "an id never seen is anonymous"

    def upsert_from_another_process() -> dict[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", UPSERT_USERS_CHILD, ltrr_app.target, uid, radiohead],
            capture_output=True, text=True, timeout=60, env=dict(os.environ), check=True,
        ).stdout  # fmt: skip
        return dict(json.loads(out))

    assert upsert_from_another_process() == {"received": 1, "changed": 1}
    after = client.search("radiohead", k=3, user_id=uid, explain=True, strategies=["lexical"])
    f = after.context_features
    assert (f["user_known"], f["user_artists"], f["user_tags"]) == (1.0, 1 / 50, 2 / 20)
    store = CatalogStore(ltrr_app.catalog_path)
    assert store.user(uid).top_tags == (("post rock", 2 / 3), ("ambient", 1 / 3)), "labels normalised, weights sum 1"
    store.close()
    assert upsert_from_another_process() == {"received": 1, "changed": 0}, "the same profile again changes nothing"
    good = pb.UserProfile(user_id=uid, top_tags=[pb.WeightedName(name="rock", weight=1.0)])
    cases = [
        (
            [good, pb.UserProfile(user_id=uid, top_artists=[pb.WeightedName(name=radiohead, weight=-1.0)])],
            "users[1].top_artists[0].weight: must be a finite number > 0, got -1.0",
        ),
        (
            [pb.UserProfile(user_id=uid, top_artists=[pb.WeightedName(name="artist:000000000000", weight=1.0)])],
            "users[0].top_artists[0].name: unknown artist 'artist:000000000000': not in the catalog",
        ),
        ([pb.UserProfile(user_id="")], "users[0].user_id: is required"),
    ]
    for msgs, message in cases:
        with pytest.raises(grpc.RpcError) as ei:
            client.upsert_users(msgs)
        assert (ei.value.code(), ei.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    f = client.search("radiohead", k=3, user_id=uid, explain=True, strategies=["lexical"]).context_features
    assert f["user_tags"] == 2 / 20, "a rejected stream writes nothing, not even its valid profiles"


def test_a_profile_learned_from_clicks_shows_in_the_next_search(client, ltrr_app):
    """ProfileLearner on the app's own files (as the policy learner runs it): no cache keeps the old profile."""
    from ltrr.eventlog import SQLiteEventLog
    from ltrr.profiles import ProfileLearner

    uid = f"new:{uuid.uuid4().hex[:8]}"
    resp = client.search("radiohead", k=3, user_id=uid, explain=True, strategies=["lexical"])
    assert resp.context_features["user_known"] == 0.0
    top = resp.results[0]
    assert (top.title, top.entity_type) == ("Radiohead", "artist")
    client.feedback(resp.request_id, top.entity_id, "click", position=1)
    events = SQLiteEventLog(ltrr_app.args["events_path"])
    store = CatalogStore(ltrr_app.catalog_path)
    try:
        ProfileLearner(events, store).step()  # 0 if the app's own learner already folded it in: the cursor is shared
        assert store.user(uid).top_artists == ((top.entity_id, 1.0),)
    finally:
        store.close()
        events.close()
    f = client.search("radiohead", k=3, user_id=uid, explain=True, strategies=["lexical"]).context_features
    assert (f["user_known"], f["user_artists"]) == (1.0, 1 / 50)
    assert f["user_tags"] > 0.0, "tags come from the clicked artist"
