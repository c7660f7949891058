"""The vector strategy against a real Milvus standalone server (and Milvus Lite) and the real MiniLM model.

The catalog is 30 hand-made entities. The semantic queries share no word (nor
5-letter prefix) with the entity they must find; each was checked to rank its
entity first with all-MiniLM-L6-v2 by a clear margin (>= 0.1 cosine).
"""

from __future__ import annotations

import re
import time
from typing import Iterator

import numpy as np
import pytest
from pymilvus import MilvusClient

from ltrr.backends.milvus_lite_server import MilvusLiteServer
from ltrr.backends.milvus_server import MilvusStandaloneServer
from ltrr.embedder import Embedder, HashingEmbedder, MiniLMEmbedder
from ltrr.errors import BackendTimeout, BackendUnavailable, ConfigError, InvalidRequest
from ltrr.strategies.base import Strategy
from ltrr.strategies.vector import VectorConfig, VectorStrategy
from ltrr.types import Entity, ParsedQuery, Query

pytestmark = pytest.mark.integration

E = Entity
CATALOG = [
    E("artist:radiohead", "artist", "Radiohead", genres=("alternative rock",), tags=("british", "melancholic"),
      description="English rock band from Abingdon, Oxfordshire, formed in 1985.", popularity=85),
    E("artist:daft-punk", "artist", "Daft Punk", genres=("house", "electronic"), tags=("french", "dance", "robots"),
      description="French electronic music duo formed in Paris in 1993.", popularity=80),
    E("artist:metallica", "artist", "Metallica", genres=("thrash metal",), tags=("heavy", "guitar riffs"),
      description="American heavy metal band formed in Los Angeles in 1981.", popularity=82),
    E("artist:miles-davis", "artist", "Miles Davis", genres=("jazz",), tags=("trumpet", "bebop", "cool jazz"),
      description="American jazz trumpeter, bandleader and composer.", popularity=70),
    E("artist:bob-marley", "artist", "Bob Marley", genres=("reggae",), tags=("jamaican", "roots"),
      description="Jamaican singer, songwriter and musician.", popularity=78),
    E("artist:johnny-cash", "artist", "Johnny Cash", genres=("country",), tags=("outlaw", "americana"),
      description="American country singer, the Man in Black.", popularity=72),
    E("artist:mozart", "artist", "Wolfgang Amadeus Mozart", genres=("classical",), tags=("composer", "opera"),
      description="Prolific and influential composer of the classical period.", popularity=65),
    E("artist:kendrick-lamar", "artist", "Kendrick Lamar", genres=("hip hop", "rap"), tags=("compton",),
      description="American rapper and songwriter from Compton, California.", popularity=88),
    E("artist:bad-bunny", "artist", "Bad Bunny", genres=("reggaeton", "latin trap"), tags=("puerto rico",),
      description="Puerto Rican rapper and singer.", popularity=92),
    E("artist:enya", "artist", "Enya", genres=("new age",), tags=("ambient", "celtic", "relaxing"),
      description="Irish singer known for layered, atmospheric vocals.", popularity=60),
    E("track:bohemian-rhapsody", "track", "Bohemian Rhapsody", subtitle="Queen", genres=("rock",),
      tags=("opera", "classic rock", "epic"), description="Six-minute song from A Night at the Opera (1975).",
      popularity=90),
    E("track:happy", "track", "Happy", subtitle="Pharrell Williams", genres=("pop", "soul"),
      tags=("upbeat", "feel good", "cheerful"), popularity=75),
    E("track:hurt", "track", "Hurt", subtitle="Johnny Cash", genres=("country",), tags=("sad", "cover", "grief"),
      popularity=70),
    E("track:clair-de-lune", "track", "Clair de Lune", subtitle="Claude Debussy", genres=("classical",),
      tags=("piano", "calm", "impressionism"), popularity=68),
    E("track:lose-yourself", "track", "Lose Yourself", subtitle="Eminem", genres=("hip hop",),
      tags=("motivation", "rap", "8 mile"), popularity=85),
    E("track:despacito", "track", "Despacito", subtitle="Luis Fonsi", genres=("latin pop", "reggaeton"),
      tags=("spanish", "summer"), popularity=88),
    E("track:white-christmas", "track", "White Christmas", subtitle="Bing Crosby", genres=("holiday",),
      tags=("christmas", "winter", "crooner"), popularity=60),
    E("track:around-the-world", "track", "Around the World", subtitle="Daft Punk", genres=("house",),
      tags=("dance", "repetitive", "electronic"), popularity=70),
    E("playlist:workout", "playlist", "Beast Mode", subtitle="Spotify", genres=("hip hop", "edm"),
      tags=("gym", "workout", "energy"), description="Get your heart pumping with high-energy tracks.", popularity=70),
    E("playlist:sleep", "playlist", "Deep Sleep", subtitle="Spotify", genres=("ambient",),
      tags=("sleep", "calm", "night"), description="Soothing ambient soundscapes to help you drift off.",
      popularity=65),
    E("playlist:road-trip", "playlist", "Road Trip Classics", subtitle="Spotify", genres=("rock",),
      tags=("driving", "highway", "summer"), description="Windows down, volume up: classic songs for the open road.",
      popularity=60),
    E("playlist:study", "playlist", "Lo-Fi Beats", subtitle="Spotify", genres=("lo-fi", "chillhop"),
      tags=("study", "focus", "chill"), description="Mellow instrumental beats to relax and concentrate.",
      popularity=75),
    E("playlist:party", "playlist", "Party Hits", subtitle="Spotify", genres=("pop", "dance"), tags=("party", "club"),
      description="The biggest dance floor anthems.", popularity=72),
    E("podcast:true-crime", "podcast", "Serial", subtitle="Serial Productions",
      tags=("true crime", "investigative journalism"),
      description="Investigative journalism that tells one murder case over a season.", popularity=80),
    E("podcast:history", "podcast", "Hardcore History", subtitle="Dan Carlin", tags=("history", "war"),
      description="Long, deep dives into ancient empires, world wars and the past.", popularity=70),
    E("podcast:science", "podcast", "Radiolab", subtitle="WNYC Studios", tags=("science", "curiosity"),
      description="Investigating big questions about science, philosophy and the human experience.", popularity=68),
    E("podcast:comedy", "podcast", "Comedy Bang! Bang!", subtitle="Earwolf", tags=("comedy", "improv"),
      description="Improvised comedy with celebrity guests and silly characters.", popularity=62),
    E("podcast:business", "podcast", "How I Built This", subtitle="NPR", tags=("business", "entrepreneurs"),
      description="Founders tell the stories behind the companies they created.", popularity=66),
    E("podcast:meditation", "podcast", "Daily Meditation", subtitle="Mary Meckley", tags=("meditation", "wellness"),
      description="Short guided sessions to breathe, relax and find calm.", popularity=55),
    E("podcast:football", "podcast", "The Football Ramble", subtitle="Acast", tags=("soccer", "sports"),
      description="Weekly chat about the beautiful game.", popularity=50),
]  # fmt: skip
BY_ID = {e.entity_id: e for e in CATALOG}

SEMANTIC = [
    ("homicide mystery series", "podcast:true-crime"),
    ("music for bedtime", "playlist:sleep"),
    ("sorrowful ballad", "track:hurt"),
    ("festive carol", "track:white-christmas"),
    ("laugh out loud", "podcast:comedy"),
]


def q(text: str, types: tuple[str, ...] = ()) -> Query:
    return Query(text=text, parsed=ParsedQuery(text=text, residual=text), entity_types=types)


def stems(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"\w+", text.lower())}


def make(uri: str, collection: str, embedder: Embedder, **kw: object) -> VectorStrategy:
    cfg = VectorConfig(uri=uri, collection=collection, embedding_cache="", progress=False, **kw)  # type: ignore[arg-type]
    return VectorStrategy(cfg, embedder=embedder)


@pytest.fixture
def loaded(
    milvus_server: MilvusStandaloneServer, milvus_collection: str, minilm: MiniLMEmbedder
) -> Iterator[VectorStrategy]:
    s = make(milvus_server.uri, milvus_collection, minilm)
    assert s.upsert(CATALOG) == len(CATALOG)
    yield s
    s.close()


@pytest.mark.parametrize(("text", "expected"), SEMANTIC)
def test_semantic_query_without_lexical_overlap(loaded: VectorStrategy, text: str, expected: str) -> None:
    assert not stems(text) & stems(BY_ID[expected].text()), "the example must share no word with its entity"
    top = loaded.search(q(text), 3)
    assert top[0].entity_id == expected
    assert top[0].score - top[1].score >= 0.05


def test_scores_are_exact_cosine_similarities_best_first(loaded: VectorStrategy, minilm: MiniLMEmbedder) -> None:
    got = loaded.search(q("songs to dance to at a club"), 10)
    x = minilm.encode([e.text() for e in CATALOG])
    sims = x @ minilm.encode(["songs to dance to at a club"])[0]
    order = np.argsort(-sims)[:10]
    assert [c.entity_id for c in got] == [CATALOG[i].entity_id for i in order]
    assert [c.rank for c in got] == list(range(1, 11))
    np.testing.assert_allclose([c.score for c in got], sims[order], atol=1e-4)
    first = BY_ID[got[0].entity_id]
    assert (got[0].entity_type, got[0].title, got[0].subtitle) == (first.entity_type, first.title, first.subtitle)


@pytest.mark.parametrize("partition_by_type", [True, False])
def test_entity_types_restrict_results(
    milvus_server: MilvusStandaloneServer, milvus_collection: str, minilm: MiniLMEmbedder, partition_by_type: bool
) -> None:
    s = make(milvus_server.uri, milvus_collection, minilm, partition_by_type=partition_by_type)
    s.upsert(CATALOG)
    unrestricted = s.search(q("festive carol"), 30)
    assert unrestricted[0].entity_id == "track:white-christmas"
    for types in [("playlist",), ("artist", "podcast")]:
        got = s.search(q("festive carol", types), 5)
        expected = [c.entity_id for c in unrestricted if c.entity_type in types][:5]
        assert [c.entity_id for c in got] == expected
        assert [c.rank for c in got] == [1, 2, 3, 4, 5]
    assert len(s.search(q("festive carol", ("podcast",)), 30)) == 7  # every podcast, nothing else
    s.close()


def test_search_many_equals_single_searches(loaded: VectorStrategy) -> None:
    queries = [q("music for bedtime"), q("sorrowful ballad", ("track",)), q("laugh out loud", ("podcast",)),
               q("festive carol", ("track",)), q("trumpet", ("artist", "track"))]  # fmt: skip
    ks = [3, 2, 4, 1, 5]
    batched = loaded.search_many(queries, ks)
    assert [len(r) for r in batched] == ks
    for query, k, got in zip(queries, ks, batched, strict=True):
        single = loaded.search(query, k)
        assert [c.entity_id for c in got] == [c.entity_id for c in single]
        np.testing.assert_allclose([c.score for c in got], [c.score for c in single], atol=1e-5)
    assert loaded.search_many([], []) == []


def test_invalid_arguments_name_the_field(loaded: VectorStrategy) -> None:
    with pytest.raises(InvalidRequest, match=r"^k: must be an integer in \[1, 1000\], got 0$"):
        loaded.search(q("x"), 0)
    with pytest.raises(InvalidRequest, match=r"^ks: must have one k per query: 1 ks for 2 queries$"):
        loaded.search_many([q("a"), q("b")], [3])
    with pytest.raises(InvalidRequest, match=r"^queries\[0\]\.entity_types: unknown entity type 'album'"):
        loaded.search(q("x", ("album",)), 3)
    with pytest.raises(InvalidRequest, match=r"^entities\[0\]\.entity_type: unknown entity type 'album'"):
        loaded.upsert([Entity("album:1", "album", "An album")])


def test_upsert_replaces_a_changed_entity(loaded: VectorStrategy) -> None:
    assert isinstance(loaded, Strategy)
    assert loaded.count() == 30
    changed = Entity("podcast:football", "podcast", "Kitchen Talk", subtitle="Acast", tags=("cooking", "recipes"),
                     description="Chefs share recipes and kitchen secrets.", popularity=50)  # fmt: skip
    assert loaded.upsert([changed, changed]) == 1  # a repeated id is written once
    assert loaded.count() == 30
    top = loaded.search(q("culinary show about baking and chefs"), 1)[0]
    assert (top.entity_id, top.title) == ("podcast:football", "Kitchen Talk")
    hits = loaded.search(q("soccer chat"), 30)
    assert [c.title for c in hits if c.entity_id == "podcast:football"] == ["Kitchen Talk"]
    assert len({c.entity_id for c in hits}) == 30


def test_embedding_cache_skips_unchanged_entities(
    milvus_server: MilvusStandaloneServer, milvus_collection: str, tmp_path: object
) -> None:
    calls: list[int] = []

    class Counting(HashingEmbedder):
        def encode(self, texts):  # type: ignore[no-untyped-def,override]
            calls.append(len(texts))
            return super().encode(texts)

    cfg = VectorConfig(uri=milvus_server.uri, collection=milvus_collection, progress=False,
                       embedding_cache=f"{tmp_path}/emb.sqlite")  # fmt: skip
    s = VectorStrategy(cfg, embedder=Counting(64))
    s.upsert(CATALOG)
    s.upsert(CATALOG[:10] + [Entity("track:new", "track", "Brand New")])
    assert calls == [30, 1]
    s.search(q("anything"), 1)  # queries are never cached
    assert calls == [30, 1, 1]
    s.close()


def test_existing_collection_with_other_dim_is_a_config_error(
    milvus_server: MilvusStandaloneServer, milvus_collection: str
) -> None:
    make(milvus_server.uri, milvus_collection, HashingEmbedder(64)).ensure_collection()
    with pytest.raises(ConfigError, match=r"has vectors of dim 64 but embedder 'hashing-32-.*' makes dim 32"):
        make(milvus_server.uri, milvus_collection, HashingEmbedder(32)).ensure_collection()


def test_restart_keeps_data_and_reloads(
    restartable_milvus_server: MilvusStandaloneServer, milvus_collection: str
) -> None:
    own_milvus_server = restartable_milvus_server
    s = make(own_milvus_server.uri, milvus_collection, HashingEmbedder())
    s.upsert(CATALOG)
    before = s.search(q("jazz trumpet"), 5)

    def same_as_before() -> None:  # scores agree to float32 rounding (brute force before, the index after)
        after = s.search(q("jazz trumpet"), 5)
        assert [c.entity_id for c in after] == [c.entity_id for c in before]
        np.testing.assert_allclose([c.score for c in after], [c.score for c in before], atol=1e-5)

    own_milvus_server.stop()
    own_milvus_server.start()
    same_as_before()  # the released collection is loaded again
    own_milvus_server.stop(kill=True)  # no clean shutdown: etcd and RocksMQ keep the rows
    own_milvus_server.start()
    same_as_before()
    assert s.count() == 30
    s.close()


def test_stopped_server_is_backend_unavailable_within_the_timeout(
    restartable_milvus_server: MilvusStandaloneServer, milvus_collection: str
) -> None:
    own_milvus_server = restartable_milvus_server
    s = make(own_milvus_server.uri, milvus_collection, HashingEmbedder(), timeout_s=2.0)
    s.upsert(CATALOG[:5])
    own_milvus_server.stop()
    t0 = time.perf_counter()
    where = rf"\(http://127\.0\.0\.1:\d+, collection '{milvus_collection}'\)"
    with pytest.raises(BackendUnavailable, match=rf"^milvus search {where}"):
        s.search(q("x"), 3)
    assert time.perf_counter() - t0 < 2.0
    fresh = make(own_milvus_server.uri, milvus_collection, HashingEmbedder(), timeout_s=2.0)
    t0 = time.perf_counter()
    with pytest.raises(BackendUnavailable, match=r"^milvus connect "):
        fresh.upsert(CATALOG[:1])
    assert time.perf_counter() - t0 < 2.0
    own_milvus_server.start()  # and it recovers without a new strategy
    assert len(s.search(q("x"), 3)) == 3
    s.close()


def test_deadline_exceeded_is_backend_timeout(milvus_server: MilvusStandaloneServer, milvus_collection: str) -> None:
    make(milvus_server.uri, milvus_collection, HashingEmbedder()).upsert(CATALOG)
    s = make(milvus_server.uri, milvus_collection, HashingEmbedder(), timeout_s=1e-4)
    with pytest.raises(BackendTimeout, match="did not answer within its deadline"):
        s.search_many([q("jazz")] * 16, [10] * 16)


def test_missing_collection_is_backend_unavailable(
    milvus_server: MilvusStandaloneServer, milvus_collection: str
) -> None:
    s = make(milvus_server.uri, milvus_collection, HashingEmbedder())
    assert s.count() == 0
    with pytest.raises(BackendUnavailable, match="collection not found|does not exist"):  # Milvus | Milvus Lite
        s.search(q("x"), 3)
    client = MilvusClient(uri=milvus_server.uri, timeout=5, dedicated=True)
    assert not client.has_collection(milvus_collection)  # search never creates the collection
    client.close()


def test_milvus_lite_by_uri_is_an_option(milvus_lite_server: MilvusLiteServer) -> None:
    """The documented lightweight option: the same strategy against Milvus Lite, only ``uri`` changes."""
    s = make(milvus_lite_server.uri, "lite_option", HashingEmbedder())
    assert s.upsert(CATALOG) == 30
    assert s.count() == 30
    got = s.search(q("jazz trumpet", ("artist",)), 3)
    assert got[0].entity_id == "artist:miles-davis"
    assert {c.entity_type for c in got} == {"artist"}
    s.close()
