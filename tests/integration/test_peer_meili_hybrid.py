"""The Meilisearch hybrid peer against a real Meilisearch 1.21 and the real MiniLM model.

The catalog and the semantic queries are the vector strategy's (``test_vector``): 30 hand-made
entities, and queries that share no word (nor 5-letter prefix) with the entity they must find.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from ltrr.backends.meili_server import MeiliServer
from ltrr.embedder import EmbeddingCache, HashingEmbedder, MiniLMEmbedder
from ltrr.errors import BackendUnavailable, ConfigError, InvalidRequest
from ltrr.peers import Peer
from ltrr.peers.meili_hybrid import MeiliHybridConfig, MeiliHybridIndex, MeiliHybridPeer
from ltrr.strategies._meili import doc_id
from ltrr.types import Entity
from tests.integration.test_vector import BY_ID, CATALOG, SEMANTIC, stems

pytestmark = pytest.mark.integration


def make(server: MeiliServer, index: str, embedder: object, **kw: object) -> MeiliHybridIndex:
    kw = {"embedding_cache": "", "progress": False, **kw}
    cfg = MeiliHybridConfig(url=server.url, api_key=server.api_key, index=index, **kw)  # type: ignore[arg-type]
    return MeiliHybridIndex(cfg, embedder=embedder)  # type: ignore[arg-type]


@pytest.fixture
def shared(meili_server: MeiliServer, meili_index_prefix: str, minilm: MiniLMEmbedder) -> Iterator[MeiliHybridIndex]:
    s = make(meili_server, f"{meili_index_prefix}hybrid", minilm)
    report = s.index(CATALOG)
    assert (report.documents, report.skipped) == (len(CATALOG), {})
    yield s
    s._client.delete_index(s.config.index)
    s.close()


@pytest.fixture
def peers(shared: MeiliHybridIndex) -> dict[float, MeiliHybridPeer]:
    return {p.ratio: p for p in shared.peers()}


def test_one_peer_per_ratio_on_one_index(shared: MeiliHybridIndex) -> None:
    peers: list[Peer] = list(shared.peers())
    assert [p.name for p in peers] == ["meili hybrid 0.0", "meili hybrid 0.5", "meili hybrid 0.9"]
    for p in peers:  # the first peer's index() wrote the catalog; the others find it there
        report = p.index(CATALOG)
        assert (report.documents, report.skipped) == (0, {"unchanged (already indexed)": 30})
    assert shared.count() == 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [("bohemian rhapsdy", "track:bohemian-rhapsody"), ("Despacito", "track:despacito"),
     ("radiohed", "artist:radiohead"), ("hardcore history", "podcast:history")],
)  # fmt: skip
def test_keyword_ratio_finds_title_with_typo(peers: dict[float, MeiliHybridPeer], text: str, expected: str) -> None:
    assert peers[0.0].search(text, 5)[0] == expected


@pytest.mark.parametrize(("text", "expected"), SEMANTIC)
def test_semantic_ratio_finds_meaning_without_shared_words(
    peers: dict[float, MeiliHybridPeer], text: str, expected: str
) -> None:
    assert not stems(text) & stems(BY_ID[expected].text()), "the example must share no word with its entity"
    assert peers[0.9].search(text, 5)[0] == expected


def test_zero_ratio_is_keyword_only(peers: dict[float, MeiliHybridPeer], shared: MeiliHybridIndex) -> None:
    """Meilisearch answers ``r = 0`` with its keyword search alone (so the peer sends no vector)."""
    assert peers[0.0].search("festive carol", 10) == []  # no word matches
    assert peers[0.9].search("festive carol", 10)[0] == "track:white-christmas"
    keyword = shared._client.search(shared.config.index, {"q": "daft punk", "limit": 10})["hits"]
    assert peers[0.0].search("daft punk", 10) == [h["entity_id"] for h in keyword]
    assert peers[0.0].search("daft punk", 10) == ["artist:daft-punk", "track:around-the-world"]


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("k", [1, 3, 30, 100])
def test_every_id_is_an_entity_and_k_is_respected(
    peers: dict[float, MeiliHybridPeer], shared: MeiliHybridIndex, ratio: float, k: int
) -> None:
    for text in ["sorrowful ballad", "daft punk", "", "zzzz qqqq"]:
        got = peers[ratio].search(text, k)
        # the semantic side ranks every document; at r = 0 only the keyword hits come back
        keyword = shared._client.search(shared.config.index, {"q": text, "limit": 100})["hits"]
        assert len(got) == min(k, 30 if ratio > 0 else len(keyword))
        assert len(set(got)) == len(got)
        assert set(got) <= set(BY_ID)


def test_documents_carry_the_embedders_vectors(shared: MeiliHybridIndex, minilm: MiniLMEmbedder) -> None:
    res = shared._client.search(shared.config.index, {"q": "", "limit": 30, "retrieveVectors": True})
    got = {h["entity_id"]: h["_vectors"]["minilm"] for h in res["hits"]}
    assert len(got) == 30
    assert all(v["regenerate"] is False for v in got.values())  # userProvided
    x = minilm.encode([e.text() for e in CATALOG])
    np.testing.assert_allclose([got[e.entity_id]["embeddings"][0] for e in CATALOG], x, atol=1e-6)
    settings = shared._client.request("GET", f"indexes/{shared.config.index}/settings")
    assert settings["embedders"] == {"minilm": {"source": "userProvided", "dimensions": 384}}
    assert settings["searchableAttributes"] == ["title", "subtitle", "tags", "genres", "description"]


def test_reindexing_is_idempotent_and_syncs_changes(
    shared: MeiliHybridIndex, peers: dict[float, MeiliHybridPeer]
) -> None:
    settings = shared._client.get_settings(shared.config.index)
    again = shared.index(CATALOG)
    assert (again.documents, again.skipped, shared.count()) == (0, {"unchanged (already indexed)": 30}, 30)
    assert shared._client.get_settings(shared.config.index) == settings
    changed = Entity("podcast:football", "podcast", "Kitchen Talk", subtitle="Acast", tags=("cooking", "recipes"),
                     description="Chefs share recipes and kitchen secrets.", popularity=50)  # fmt: skip
    new = Entity("track:new", "track", "Brand New Tune", subtitle="Nobody", genres=("pop",))
    catalog = [e for e in CATALOG if e.entity_id not in ("podcast:football", "artist:enya")] + [changed, new, new]
    report = shared.index(catalog)
    assert report.documents == 2  # the changed and the new entity; Enya is deleted
    assert report.skipped == {"duplicate entity_id (last kept)": 1, "unchanged (already indexed)": 28}
    assert shared.count() == 30
    assert peers[0.0].search("kitchen talk", 1) == ["podcast:football"]
    assert peers[0.0].search("brand new tune", 1) == ["track:new"]
    assert "artist:enya" not in peers[0.5].search("enya", 30)
    assert shared._client.get_document(shared.config.index, doc_id("artist:enya")) is None


def test_document_vectors_come_from_the_embedding_cache(
    meili_server: MeiliServer, meili_index_prefix: str, minilm: MiniLMEmbedder, tmp_path: Path
) -> None:
    calls: list[int] = []

    class Counting:
        name, dim = minilm.name, minilm.dim

        def encode(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            return minilm.encode(texts)

    cache = str(tmp_path / "emb.sqlite")
    first = make(meili_server, f"{meili_index_prefix}a", Counting(), embedding_cache=cache, batch_size=7)
    assert first.index(CATALOG).documents == 30
    assert calls == [7, 7, 7, 7, 2]  # batches of 7, each encoded once
    assert len(EmbeddingCache(cache)) == 30
    second = make(meili_server, f"{meili_index_prefix}b", Counting(), embedding_cache=cache)
    assert second.index(CATALOG).documents == 30
    assert calls == [7, 7, 7, 7, 2]  # every vector came from the cache
    assert second.search("music for bedtime", 1, 0.9) == ["playlist:sleep"]
    assert len(calls) == 6  # the query is encoded, never cached
    for s in (first, second):
        s._client.delete_index(s.config.index)
        s.close()


def test_invalid_arguments(meili_server: MeiliServer, meili_index_prefix: str) -> None:
    s = make(meili_server, f"{meili_index_prefix}x", HashingEmbedder(384))
    with pytest.raises(InvalidRequest, match=r"^k: must be an integer in \[1, 1000\], got 0$"):
        s.search("x", 0, 0.5)
    with pytest.raises(InvalidRequest, match=r"^ratio: must be in \[0, 1\], got 1.5$"):
        s.search("x", 3, 1.5)
    with pytest.raises(InvalidRequest, match=r"^entities\[1\]: must be an Entity, got str$"):
        s.index([CATALOG[0], "artist:radiohead"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"^`ratio` must be a number in \[0, 1\], got -0.1$"):
        MeiliHybridPeer(s, -0.1)
    with pytest.raises(ValueError, match="ratios must be distinct, got \\[0.5, 0.5\\]"):
        MeiliHybridConfig(ratios=(0.5, 0.5))
    s.close()


def test_stopped_server_raises_backend_unavailable(own_meili_server: MeiliServer) -> None:
    s = make(own_meili_server, "peer_meili_hybrid", HashingEmbedder(384))
    (peer,) = [p for p in s.peers() if p.ratio == 0.5]
    assert peer.index(CATALOG[:5]).documents == 5
    own_meili_server.stop()
    unreachable = rf"^meilisearch at {re.escape(own_meili_server.url)} is unreachable"
    with pytest.raises(BackendUnavailable, match=unreachable):
        peer.search("radiohead", 3)
    with pytest.raises(BackendUnavailable, match=unreachable):
        peer.index(CATALOG)
    own_meili_server.start()  # same port and data: back in business
    assert peer.search("radiohead", 1) == ["artist:radiohead"]
    peer.close()
