"""The graph strategy on genre and tag queries: tag-node seeds, mixing with names, types, the tag-vector cache."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from graph.build import build_graph
from graph.ppr import build_snapshot, ppr_power, restart_vector
from graph.strategy import GraphStrategy
from ltrr.catalog.store import CatalogStore
from ltrr.errors import ConfigError
from ltrr.types import Entity, ParsedQuery, Query, Relation

RH, MUSE, COLD = "artist:radiohead", "artist:muse", "artist:coldplay"
MBV, SLOW, RIDE, OBSC = "artist:mbv", "artist:slowdive", "artist:ride", "artist:obscure"
COCT, BH = "artist:cocteau", "artist:beachhouse"
T_MBV, T_SLOW, PL, POD = "track:only-shallow", "track:alison", "playlist:gaze", "podcast:gazecast"
SHOEGAZE, DREAM = "tag:shoegaze", "tag:dream pop"
ALL_TYPES = ("artist", "track", "playlist", "podcast")


def _entities() -> list[Entity]:
    return [
        Entity(RH, "artist", "Radiohead", popularity=90),
        Entity(MUSE, "artist", "Muse", popularity=80),
        Entity(COLD, "artist", "Coldplay", popularity=95),
        Entity(MBV, "artist", "My Bloody Valentine", popularity=60),
        Entity(SLOW, "artist", "Slowdive", popularity=55),
        Entity(RIDE, "artist", "Ride", popularity=40),
        Entity(OBSC, "artist", "Obscure Gaze", popularity=2),
        Entity(COCT, "artist", "Cocteau Twins", popularity=50),
        Entity(BH, "artist", "Beach House", popularity=58),
        Entity(T_MBV, "track", "Only Shallow", "My Bloody Valentine", popularity=50),
        Entity(T_SLOW, "track", "Alison", "Slowdive", popularity=45),
        Entity(PL, "playlist", "Gaze", popularity=30),
        Entity(POD, "podcast", "Gazecast", popularity=10),
    ]


def _relations() -> list[Relation]:
    return [
        # tag assignments: shoegaze 50 : 30 : 10 : 1 (Obscure Gaze was tagged once)
        Relation(MBV, SHOEGAZE, "tagged", 50),
        Relation(SLOW, SHOEGAZE, "tagged", 30),
        Relation(RIDE, SHOEGAZE, "tagged", 10),
        Relation(OBSC, SHOEGAZE, "tagged", 1),
        Relation(PL, SHOEGAZE, "tagged", 20),
        Relation(POD, SHOEGAZE, "tagged", 1),
        Relation(COCT, DREAM, "tagged", 40),
        Relation(BH, DREAM, "tagged", 20),
        Relation(SLOW, DREAM, "tagged", 5),
        # co-listening
        Relation(MBV, COCT, "similar", 0.9),
        Relation(MBV, SLOW, "similar", 0.5),
        Relation(SLOW, RIDE, "similar", 0.6),
        Relation(COCT, BH, "similar", 0.8),
        Relation(RH, MUSE, "similar", 0.9),
        Relation(RH, COLD, "similar", 0.5),
        Relation(RH, SLOW, "similar", 0.4),  # the one shoegaze band Radiohead's listeners play
        Relation(MUSE, COLD, "similar", 0.7),
        Relation(MBV, T_MBV, "performs", 1.0),
        Relation(SLOW, T_SLOW, "performs", 1.0),
        Relation(PL, T_MBV, "contains", 1.0),
        Relation(PL, T_SLOW, "contains", 1.0),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    s = CatalogStore(tmp_path / "catalog.sqlite")
    s.upsert_entities(_entities())
    s.upsert_relations(_relations())
    yield s
    s.close()


def _strategy(store: CatalogStore, **cfg: object) -> GraphStrategy:
    return GraphStrategy({"catalog_path": str(store.path), "cache_dir": None, **cfg}, store=store)


@pytest.fixture
def strategy(store: CatalogStore) -> Iterator[GraphStrategy]:
    st = _strategy(store)
    yield st
    st.close()


def _q(
    text: str,
    genres: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    seed: str = "",
    types: tuple[str, ...] = (),
    entity_types: tuple[str, ...] = (),
    conf: dict[str, float] | None = None,
) -> Query:
    parsed = ParsedQuery(
        text=text, residual="", genres=genres, tags=tags, seed=seed, types=types, confidence=conf or {}
    )
    return Query(text=text, parsed=parsed, entity_types=entity_types)


def _ids(strategy: GraphStrategy, query: Query, k: int = 10) -> list[str]:
    return [c.entity_id for c in strategy.search(query, k)]


def test_tag_query_ranks_the_most_tagged_artists_first(strategy: GraphStrategy) -> None:
    got = strategy.search(_q("shoegaze", tags=("shoegaze",), conf={"tag:shoegaze": 0.8}), k=10)
    ids = [c.entity_id for c in got]
    assert strategy.seeds(_q("shoegaze", tags=("shoegaze",))).method == "tag"
    assert ids[:2] == [MBV, SLOW]  # tagged 50 and 30 times
    assert [i for i in ids if i in (MBV, SLOW, RIDE, OBSC)] == [MBV, SLOW, RIDE, OBSC]  # by assignments
    # co-listening adds artists the tag's listeners play (Cocteau Twins, next to My Bloody Valentine);
    # an artist tagged once is last, below all of them
    assert COCT in ids and ids[-1] == OBSC
    assert all(c.entity_type == "artist" for c in got)  # tag seeds -> artists
    assert [c.rank for c in got] == list(range(1, len(got) + 1))
    assert all(a.score > b.score > 0 for a, b in zip(got, got[1:], strict=False))


def test_genre_facet_seeds_the_tag_node_of_its_label(strategy: GraphStrategy) -> None:
    as_genre = strategy.search(_q("dream pop", genres=("dream pop",), conf={"genre:dream pop": 0.9}), k=10)
    assert as_genre[0].entity_id == COCT  # tagged 40 times
    assert [c.entity_id for c in as_genre if c.entity_id in (COCT, BH, SLOW)] == [COCT, BH, SLOW]  # 40 : 20 : 5
    as_tag = strategy.search(_q("dream pop", tags=("dream pop",)), k=10)
    assert [(c.entity_id, c.score) for c in as_genre] == [(c.entity_id, c.score) for c in as_tag]


def test_two_facets_are_the_confidence_weighted_walk(store: CatalogStore) -> None:
    st = _strategy(store, solver="power", max_iter=1000, tol=1e-13)
    q = _q("shoegaze dream pop", tags=("shoegaze", "dream pop"), conf={"tag:shoegaze": 0.9, "tag:dream pop": 0.3})
    got = st.search(q, k=20)
    # the cached per-tag vectors summed with weights 0.75 : 0.25 equal one walk from that restart vector
    snap = build_snapshot(build_graph(store))
    pi, _ = ppr_power(snap, *restart_vector(snap, {SHOEGAZE: 0.75, DREAM: 0.25}), max_iter=1000, tol=1e-13)
    assert [c.score for c in got] == pytest.approx([pi[snap.index[c.entity_id]] for c in got], abs=1e-10)
    assert got[0].entity_id == MBV and len(got) == 9  # every artist but none of the tag nodes


def test_name_and_tag_rank_what_is_tied_to_both_first(strategy: GraphStrategy) -> None:
    q = _q("radiohead shoegaze", tags=("shoegaze",))
    assert [(s.node_id, s.weight, s.method) for s in strategy.seeds(q).seeds] == [
        (RH, 0.5, "contained"),
        (SHOEGAZE, 0.5, "tag"),
    ]
    ids = _ids(strategy, q)
    assert ids[0] == SLOW  # the shoegaze band Radiohead's listeners play
    # then the tag's most tagged band before Radiohead's nearest neighbour, which is no shoegaze band
    # (a linear mix of the two walks puts Muse second)
    assert ids.index(MBV) < ids.index(MUSE)
    assert RH not in ids
    # the name alone ranks Muse first
    assert _ids(strategy, _q("radiohead"))[0] == MUSE


def test_facet_mix_zero_is_the_name_alone(store: CatalogStore) -> None:
    st = _strategy(store, facet_mix=0.0)
    with_tag = st.search(_q("radiohead shoegaze", tags=("shoegaze",)), k=10)
    alone = st.search(_q("radiohead shoegaze"), k=10)
    assert [(c.entity_id, c.score) for c in with_tag] == [(c.entity_id, c.score) for c in alone]
    assert with_tag[0].entity_id == MUSE


def test_entity_types_filter_on_tag_queries(strategy: GraphStrategy) -> None:
    assert _ids(strategy, _q("shoegaze", tags=("shoegaze",), entity_types=("track",))) == [T_MBV, T_SLOW]
    assert _ids(strategy, _q("shoegaze", tags=("shoegaze",), entity_types=("playlist",))) == [PL]
    assert _ids(strategy, _q("shoegaze", tags=("shoegaze",), entity_types=("podcast",))) == [POD]
    # parsed types narrow ("shoegaze songs")
    assert _ids(strategy, _q("shoegaze songs", tags=("shoegaze",), types=("track",))) == [T_MBV, T_SLOW]
    # a named track decides the result type; the tag seed does not vote ("shoegaze like alison")
    got = strategy.search(_q("shoegaze like alison", tags=("shoegaze",), seed="alison"), k=10)
    assert strategy.seeds(_q("x", tags=("shoegaze",), seed="alison")).method == "exact+tag"
    assert [c.entity_id for c in got] == [T_MBV]


def test_tag_nodes_are_never_candidates(strategy: GraphStrategy) -> None:
    for q in (
        _q("shoegaze", tags=("shoegaze",), entity_types=ALL_TYPES),
        _q("shoegaze dream pop", genres=("dream pop",), tags=("shoegaze",), entity_types=ALL_TYPES),
        _q("radiohead dream pop", genres=("dream pop",), entity_types=ALL_TYPES),
        _q("like shoegaze", seed="shoegaze", entity_types=ALL_TYPES),
    ):
        ids = _ids(strategy, q, k=100)
        assert ids and not any(i.startswith("tag:") for i in ids)
    assert len(_ids(strategy, _q("shoegaze", tags=("shoegaze",), entity_types=ALL_TYPES), k=100)) == 13


def test_facets_without_a_tag_node_change_nothing(strategy: GraphStrategy) -> None:
    plain = strategy.search(_q("radiohead"), k=10)
    unknown = strategy.search(_q("radiohead vaporwave", tags=("vaporwave",)), k=10)
    assert [(c.entity_id, c.score) for c in unknown] == [(c.entity_id, c.score) for c in plain]
    assert strategy.search(_q("vaporwave", tags=("vaporwave",)), k=10) == []


def test_tag_vectors_are_cached_per_snapshot(store: CatalogStore) -> None:
    cached, uncached = _strategy(store), _strategy(store, tag_cache_size=0)
    q = _q("shoegaze", tags=("shoegaze",))
    first = cached.search(q, k=10)
    assert [c.entity_id for c in first][:3] == [MBV, SLOW, COCT]
    assert cached.stats()["tag_vectors_cached"] == 1
    assert [(c.entity_id, c.score) for c in cached.search(q, k=10)] == [(c.entity_id, c.score) for c in first]
    assert [(c.entity_id, c.score) for c in uncached.search(q, k=10)] == [(c.entity_id, c.score) for c in first]
    assert uncached.stats()["tag_vectors_cached"] == 0
    cached.search(_q("dream pop", genres=("dream pop",)), k=10)
    assert cached.stats()["tag_vectors_cached"] == 2
    # an edge change makes a new snapshot: the cache is dropped and the new assignment counts at once
    store.upsert_relations([Relation(RIDE, SHOEGAZE, "tagged", 500)])
    assert cached.refresh() == 1
    assert cached.stats()["tag_vectors_cached"] == 0
    ids = _ids(cached, q)
    assert ids.index(RIDE) < ids.index(MBV)  # was third, behind My Bloody Valentine (50) and Slowdive (30)
    small = _strategy(store, tag_cache_size=1)  # LRU: the older vector is evicted
    small.search(q, k=10)
    small.search(_q("dream pop", genres=("dream pop",)), k=10)
    assert small.stats()["tag_vectors_cached"] == 1


@pytest.mark.parametrize(
    ("config", "field"),
    [({"facet_mix": 1.5}, "facet_mix"), ({"facet_mix": -0.1}, "facet_mix"), ({"tag_cache_size": -1}, "tag_cache_size")],
)
def test_config_errors_name_the_field(store: CatalogStore, config: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        _strategy(store, **config)


def test_solvers_agree_on_tag_queries(store: CatalogStore) -> None:
    q = _q("radiohead shoegaze", tags=("shoegaze",))
    push, power = _strategy(store), _strategy(store, solver="power", max_iter=500, tol=1e-12)
    assert _ids(push, q) == _ids(power, q)
    np.testing.assert_allclose([c.score for c in push.search(q, 10)], [c.score for c in power.search(q, 10)], rtol=0.02)
