"""Learning to rank, end to end: the cold-start model serves from the first query, clicks retrain it,
and a newly published model is swapped in under load without a failed request.

Runs against the session app (real Meilisearch, Milvus Lite, Ray Serve, gRPC); the fixture's
ingest trained the cold-start model, and its ingress replicas look for new models every 0.5 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from ltrr.client import LtrrClient
from ltrr.config import AppConfig
from ltrr.ranking.registry import BaseModelRegistry, registry_for
from ltrr.v1 import search_pb2 as pb
from tests.fixtures.app import ROOT, popular_artists

pytestmark = pytest.mark.integration
ALL = ["lexical", "vector", "graph", "memory"]


@pytest.fixture(scope="module")
def registry(ltrr_app) -> BaseModelRegistry:
    return registry_for(AppConfig.model_validate(ltrr_app.args))  # the app's: files, or PostgreSQL with a DSN


def wait_version(client: LtrrClient, version: str, timeout_s: float = 30.0) -> pb.SearchResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        resp = client.search("radiohead", k=10, strategies=["lexical"])
        if resp.ranker_version == version:
            return resp
        assert time.monotonic() < deadline, f"ingress still serves {resp.ranker_version}, not {version}"
        time.sleep(0.2)


def test_the_cold_start_model_ranks_from_the_first_query(client, registry):
    current = registry.current()
    assert current is not None and current.meta.training["source"] == "cold start"
    assert set(current.meta.training["strategies"]) == set(ALL), "every strategy was indexed before the cold start"
    assert current.meta.validation_metrics["new"]["ndcg@10"] >= current.meta.validation_metrics["rrf"]["ndcg@10"]
    resp = client.search("radiohead", k=10, explain=True)
    assert resp.ranker_version == current.version
    feats = resp.results[0].features
    assert {"rrf", "title.ratio", "popularity", "model.score"} <= set(feats)
    scores = [r.score for r in resp.results]
    assert scores == sorted(scores, reverse=True), "results come in the model's order"
    assert scores[0] == pytest.approx(feats["model.score"])


def artist_names(ltrr_app, n: int) -> list[str]:
    artists = popular_artists(ltrr_app.catalog_path)
    return [e.title.lower() for e in artists if e.title.isascii() and e.title.replace(" ", "").isalnum()][:n]


def first_track(resp: pb.SearchResponse) -> int | None:
    """The 1-based position of the first track in the results."""
    return next((i for i, r in enumerate(resp.results, 1) if r.entity_type == "track"), None)


def test_clicks_on_one_kind_of_result_shift_the_order_after_a_retrain(client, ltrr_app, registry):
    """Users searching an artist's name always play the first *track* shown, never the artist: after
    the trainer retrains on those clicks, tracks rise for other artists' names too."""
    from ray import serve

    names = artist_names(ltrr_app, 120)
    train, held_out = names[:90], names[90:]
    before = [client.search(q, k=10, strategies=ALL) for q in held_out]
    for q in train:
        resp = client.search(q, k=10, strategies=ALL)
        pos = first_track(resp)
        if pos is not None:
            client.feedback(resp.request_id, resp.results[pos - 1].entity_id, "play", position=pos)
    trainer = serve.get_deployment_handle("trainer", app_name="ltrr")
    report = trainer.train_now.remote().result(timeout_s=300)
    assert report["published"], report["reason"]
    assert report["metrics"]["new"]["ndcg@10"] > report["metrics"]["current"]["ndcg@10"], report["metrics"]
    wait_version(client, report["published"])
    after = [client.search(q, k=10, strategies=ALL) for q in held_out]
    pos_before = [first_track(r) or 11 for r in before]
    pos_after = [first_track(r) or 11 for r in after]
    assert np.mean(pos_after) < np.mean(pos_before) - 1.0, (pos_before, pos_after)
    assert np.mean([p == 1 for p in pos_after]) > np.mean([p == 1 for p in pos_before]) + 0.3


LOAD = r"""
import json, sys, time
from ltrr.client import LtrrClient
target, seconds = sys.argv[1], float(sys.argv[2])
seen, errors, n = [], [], 0
deadline = time.monotonic() + seconds
with LtrrClient(target, timeout=10.0) as c:
    while time.monotonic() < deadline:
        try:
            v = c.search("the beatles", k=10).ranker_version
            n += 1
            if not seen or seen[-1] != v:
                seen.append(v)
        except Exception as exc:
            errors.append(repr(exc))
print(json.dumps({"n": n, "seen": seen, "errors": errors}))
"""


def test_a_hot_swap_under_load_loses_no_request(client, ltrr_app, registry):
    """A client in another process searches non-stop while a new model is published and then rolled
    back: every request succeeds, and ``ranker_version`` moves old -> new -> old in that order."""
    old = registry.current()
    assert old is not None
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD, ltrr_app.target, "12"], stdout=subprocess.PIPE, text=True, cwd=str(ROOT)
    )
    try:
        time.sleep(3)
        loaded = registry.load(old.version)
        new = registry.publish(loaded.model, replace(old.meta, training={**old.meta.training, "source": "hot swap"}))
        wait_version(client, new)
        time.sleep(2)
        assert registry.rollback() == old.version
        wait_version(client, old.version)
        out, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
    result = json.loads(out)
    assert result["errors"] == [] and result["n"] > 20, result
    assert result["seen"] == [old.version, new, old.version], result["seen"]
