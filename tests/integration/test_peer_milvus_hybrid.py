"""The Milvus hybrid peers against a real Milvus Lite database (a temp-dir ``*.db``) and the real MiniLM model.

The catalog is the vector strategy's 30 hand-made entities (``test_vector.CATALOG``, with its
semantic queries, each checked there to rank its entity first with all-MiniLM-L6-v2) plus two
entities carrying a rare word. Every search goes through Milvus Lite's own BM25 function and
``hybrid_search``; nothing is faked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest
from milvus_lite.server_manager import server_manager_instance
from pydantic import ValidationError

from ltrr.backends._process import free_port
from ltrr.embedder import Embedder, MiniLMEmbedder
from ltrr.errors import BackendUnavailable, InvalidRequest
from ltrr.peers.milvus_hybrid import (
    MilvusHybridConfig,
    MilvusHybridIndex,
    MilvusHybridPeer,
    bench_peers,
    bm25_capable,
    bm25_text,
    milvus_hybrid_peers,
)
from ltrr.types import Entity
from tests.integration.test_vector import CATALOG as VECTOR_CATALOG
from tests.integration.test_vector import SEMANTIC, stems

pytestmark = pytest.mark.integration

E = Entity
RARE = [
    # the rare word is the 9th tag / past the 300th description character: in the BM25 text,
    # not in ``entity.text()``, which the dense vector embeds (8 tags, 300 characters)
    E("artist:clara-rockmore", "artist", "Clara Rockmore", genres=("classical",),
      tags=("virtuoso", "violin", "soviet", "vintage", "instrumental", "female", "lithuanian", "1930s", "martenot"),
      description="Lithuanian-American virtuoso who toured the concert halls of New York.", popularity=30),
    E("podcast:bell-ringing", "podcast", "The Ringing World", subtitle="CCCBR", tags=("hobbies",),
      description="Weekly news from the towers: " + "peals rung, ringers met, bands formed, " * 8
      + "and the long history of campanology.", popularity=20),
]  # fmt: skip
CATALOG = [*VECTOR_CATALOG, *RARE]
IDS = {e.entity_id for e in CATALOG}
#: (query, entity): a word of that entity's BM25 text alone, not in what its vector embeds.
KEYWORD = [("martenot", "artist:clara-rockmore"), ("campanology", "podcast:bell-ringing")]


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to encode (to see whether a rebuild happened)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts)


def config(uri: str, collection: str, **kw: object) -> MilvusHybridConfig:
    return MilvusHybridConfig(uri=uri, collection=collection, embedding_cache="", progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def db_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("milvus-hybrid") / "peers.db")
    yield path
    server_manager_instance.release_server(path)  # the in-process Milvus Lite server of this database


@pytest.fixture(scope="module")
def peers(db_uri: str, minilm: MiniLMEmbedder) -> Iterator[tuple[MilvusHybridPeer, MilvusHybridPeer]]:
    rrf, weighted = milvus_hybrid_peers(config(db_uri, "peers"), minilm)
    report = rrf.index(CATALOG)
    assert (report.documents, report.skipped) == (len(CATALOG), {})
    yield rrf, weighted
    rrf.close()
    weighted.close()


@pytest.fixture
def rrf(peers: tuple[MilvusHybridPeer, MilvusHybridPeer]) -> MilvusHybridPeer:
    return peers[0]


@pytest.fixture(params=["rrf", "weighted"])
def peer(request: pytest.FixtureRequest, peers: tuple[MilvusHybridPeer, MilvusHybridPeer]) -> MilvusHybridPeer:
    return peers[0] if request.param == "rrf" else peers[1]


def test_peer_names(peers: tuple[MilvusHybridPeer, MilvusHybridPeer]) -> None:
    assert [p.name for p in peers] == ["milvus hybrid rrf", "milvus hybrid weighted"]
    assert peers[0].shared is peers[1].shared  # one collection


@pytest.mark.parametrize(("text", "expected"), KEYWORD)
def test_rare_keyword_is_found_by_bm25(peer: MilvusHybridPeer, text: str, expected: str) -> None:
    entity = next(e for e in CATALOG if e.entity_id == expected)
    assert text in bm25_text(entity).lower() and text not in entity.text().lower()
    assert not any(text in bm25_text(e).lower() for e in CATALOG if e is not entity), "in one entity only"
    # the BM25 route alone finds exactly that entity: the server's BM25 function tokenized both sides
    assert peer.shared.search_route(text, 5, "sparse") == [expected]
    # the dense route alone does not rank it first (the word is not in what it embeds), so the fused
    # first place is BM25's doing
    assert peer.shared.search_route(text, 5, "dense")[0] != expected
    assert peer.search(text, 5)[0] == expected


@pytest.mark.parametrize(("text", "expected"), SEMANTIC)
def test_semantic_query_without_shared_words_is_found(peer: MilvusHybridPeer, text: str, expected: str) -> None:
    entity = next(e for e in CATALOG if e.entity_id == expected)
    assert not stems(text) & stems(bm25_text(entity)), "the example must share no word with its entity"
    assert expected not in peer.shared.search_route(text, len(CATALOG), "sparse")  # BM25 cannot find it
    assert peer.shared.search_route(text, 1, "dense") == [expected]
    # found through the dense route; top 5, not first: "music for bedtime" also has BM25 hits for
    # "music" and "for" (three other entities), which both rankers put above it (4th)
    assert expected in peer.search(text, 5)


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_k_is_respected_and_ids_are_real(peer: MilvusHybridPeer, k: int) -> None:
    got = peer.search("songs to dance to at a club", k)
    # the dense route returns every entity (route_limit 100 > 32), so the fusion always has enough
    assert len(got) == min(k, len(CATALOG))
    assert len(set(got)) == len(got)
    assert set(got) <= IDS


def test_rrf_fuses_the_two_routes_by_reciprocal_rank(rrf: MilvusHybridPeer) -> None:
    text = "dance music for a party"
    dense = rrf.shared.search_route(text, 100, "dense")
    sparse = rrf.shared.search_route(text, 100, "sparse")
    assert len(dense) == len(CATALOG) and len(sparse) >= 3  # both routes contribute

    def score(eid: str) -> float:  # RRF with k = 60 and 1-based ranks
        return sum(1.0 / (60 + route.index(eid) + 1) for route in (dense, sparse) if eid in route)

    got = rrf.search(text, 10)
    expected = sorted((score(e) for e in IDS), reverse=True)[:10]
    np.testing.assert_allclose([score(e) for e in got], expected, rtol=1e-6)  # ties may swap ids, not scores


def test_weighted_ranker_weights_select_the_routes(
    db_uri: str, minilm: MiniLMEmbedder, peers: tuple[MilvusHybridPeer, MilvusHybridPeer]
) -> None:
    text = "dance music for a party"  # on the collection the `peers` fixture built
    dense_only = MilvusHybridIndex(config(db_uri, "peers", dense_weight=1.0, sparse_weight=0.0), minilm)
    sparse_only = MilvusHybridIndex(config(db_uri, "peers", dense_weight=0.0, sparse_weight=1.0), minilm)
    try:
        # score = w_dense (1 + cos) / 2 + w_sparse (2 / pi) atan(bm25): one weight at 0 leaves the other route's order
        assert dense_only.search(text, 10, "weighted") == dense_only.search_route(text, 10, "dense")
        bm25 = sparse_only.search_route(text, 100, "sparse")
        assert len(bm25) >= 3
        assert sparse_only.search(text, len(bm25), "weighted") == bm25
        balanced = MilvusHybridIndex(config(db_uri, "peers"), minilm)
        try:
            mixed = balanced.search(text, 10, "weighted")
        finally:
            balanced.close()
        assert mixed != dense_only.search(text, 10, "weighted") and mixed != bm25[:10]
    finally:
        dense_only.close()
        sparse_only.close()


def test_reindexing_is_idempotent(db_uri: str, minilm: MiniLMEmbedder) -> None:
    counting = CountingEmbedder(minilm)
    rrf, weighted = milvus_hybrid_peers(config(db_uri, "reindex"), counting)
    try:
        first = rrf.index(CATALOG)
        assert counting.texts > 0
        before = {t: rrf.search(t, 10) for t, _ in [*KEYWORD, *SEMANTIC]}
        encoded = counting.texts
        # the sibling peer (and any later run) finds the same rows and settings: no rebuild, no embedding
        again = weighted.index(CATALOG)
        assert (again.documents, again.skipped) == (first.documents, first.skipped)
        assert counting.texts == encoded
        assert {t: rrf.search(t, 10) for t in before} == before
        assert rrf.shared.count() == len(CATALOG)
        # a changed catalog rebuilds: a removed entity is gone, a changed one is found by its new text
        changed = [e for e in CATALOG if e.entity_id not in {"artist:clara-rockmore", "track:happy"}]
        changed.append(E("track:happy", "track", "Happy", subtitle="Pharrell Williams", tags=("glockenspiel",)))
        assert rrf.index(changed).documents == len(CATALOG) - 1
        assert rrf.shared.count() == len(CATALOG) - 1
        assert "artist:clara-rockmore" not in rrf.search("martenot", 50)
        assert rrf.shared.search_route("glockenspiel", 5, "sparse") == ["track:happy"]
        # and back: the same results as the first build
        rrf.index(CATALOG)
        assert {t: rrf.search(t, 10) for t in before} == before
    finally:
        rrf.close()
        weighted.close()


def test_skipped_entities_are_reported(db_uri: str, minilm: MiniLMEmbedder) -> None:
    index = MilvusHybridIndex(config(db_uri, "skipped"), minilm)
    try:
        dup = E("track:hurt", "track", "Hurt", subtitle="Nine Inch Nails", tags=("industrial",))
        bad = [E("", "track", "No id"), E("track:" + "x" * 600, "track", "Long id"), dup]
        report = index.index([*CATALOG, *bad])
        assert report.documents == len(CATALOG)
        assert report.skipped == {
            "empty entity_id": 1,
            "entity_id over 512 UTF-8 bytes": 1,
            "duplicate entity_id (the last one is indexed)": 1,
        }
        assert index.count() == len(CATALOG)
        assert index.search_route("industrial", 5, "sparse") == ["track:hurt"]  # the last one won
    finally:
        index.close()


def test_invalid_arguments_name_the_field(rrf: MilvusHybridPeer) -> None:
    for k in (0, 1001, True):
        with pytest.raises(InvalidRequest, match=rf"^k: must be an integer in \[1, 1000\], got {k!r}$"):
            rrf.search("jazz", k)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^text: must be a str, got NoneType$"):
        rrf.search(None, 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^entities\[1\]: must be an Entity, got dict$"):
        rrf.index([CATALOG[0], {"entity_id": "x"}])  # type: ignore[list-item]


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError, match="must not both be 0"):
        MilvusHybridConfig(dense_weight=0.0, sparse_weight=0.0)
    with pytest.raises(ValidationError, match="sparse_weight"):
        MilvusHybridConfig(sparse_weight=1.5)
    with pytest.raises(ValidationError, match="weights"):
        MilvusHybridConfig(weights=[0.5, 0.5])  # type: ignore[call-arg]


def test_bench_peers_use_a_database_in_the_directory(tmp_path: Path) -> None:
    rrf, weighted = bench_peers(tmp_path / "peers", embedder="hashing", embedding_cache="", progress=False)
    try:
        assert [rrf.name, weighted.name] == ["milvus hybrid rrf", "milvus hybrid weighted"]
        report = rrf.index(CATALOG[:3])
        assert report.documents == 3
        assert (tmp_path / "peers" / "milvus-hybrid.db").is_dir()
        assert set(weighted.search("radiohead", 3)) <= IDS
    finally:
        rrf.close()
        weighted.close()
        server_manager_instance.release_server(str(tmp_path / "peers" / "milvus-hybrid.db"))


def test_unreachable_server_is_backend_unavailable(minilm: MiniLMEmbedder) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    rrf, weighted = milvus_hybrid_peers(config(uri, "nowhere", connect_timeout_s=1.0), minilm)
    try:
        with pytest.raises(BackendUnavailable, match=r"^milvus hybrid connect "):
            rrf.index(CATALOG)
        with pytest.raises(BackendUnavailable, match=r"^milvus hybrid connect "):
            weighted.search("jazz", 5)
    finally:
        rrf.close()
        weighted.close()


def test_missing_collection_is_backend_unavailable(db_uri: str, minilm: MiniLMEmbedder) -> None:
    index = MilvusHybridIndex(config(db_uri, "never_built"), minilm)
    try:
        with pytest.raises(BackendUnavailable, match=r"^milvus hybrid hybrid_search .*never_built"):
            index.search("jazz", 5)
    finally:
        index.close()


@pytest.mark.parametrize(
    ("version", "capable"),
    [("v2.3.5", False), ("2.4.13", False), ("v2.5.0", True), ("v2.6.1", True), ("milvus_lite-3.2.2", True),
     ("", None), ("unknown", None)],
)  # fmt: skip
def test_bm25_capable_reads_the_server_version(version: str, capable: bool | None) -> None:
    assert bm25_capable(version) is capable
