"""The graph strategy on a small hand-built catalog: build, refresh, cache, search.

Build and cache run on both catalog backends (``catalog``: SQLite file and PostgreSQL, the
``catalog_factory`` fixture of tests/fixtures/postgres.py); the app-level tests check that every
factory of an app configured with a DSN builds the graph from the PostgreSQL catalog, not from the
SQLite file ``catalog_path``."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import networkx as nx
import pytest

from graph.build import apply_updates, build_graph, cache_key, load_or_build, save_cache
from graph.strategy import GraphConfig, GraphStrategy
from ltrr.catalog.store import CatalogBase, CatalogStore, open_catalog
from ltrr.catalog.store_pg import PgCatalogStore
from ltrr.config import AppConfig
from ltrr.errors import BackendUnavailable, ConfigError, InvalidRequest
from ltrr.event_store import DSN_ENV
from ltrr.eventlog import SQLiteEventLog
from ltrr.pgserver import PgServer
from ltrr.strategies.base import Strategy
from ltrr.strategies.registry import make_strategy
from ltrr.types import Entity, ParsedQuery, Query, Relation, UserProfile
from tests.fixtures.postgres import CatalogFactory

A, B, C, D = "artist:radiohead", "artist:muse", "artist:coldplay", "artist:portishead"
E, F = "artist:metallica", "artist:slayer"
T1, T2, T3 = "track:creep", "track:hysteria", "track:one"
PL, POD = "playlist:alt", "podcast:rocktalk"


def _entities() -> list[Entity]:
    return [
        Entity(A, "artist", "Radiohead", "Artist · alternative", popularity=90),
        Entity(B, "artist", "Muse", "Artist · alternative", popularity=80),
        Entity(C, "artist", "Coldplay", popularity=85),
        Entity(D, "artist", "Portishead", popularity=60),
        Entity(E, "artist", "Metallica", popularity=88),
        Entity(F, "artist", "Slayer", popularity=70),
        Entity(T1, "track", "Creep", "Radiohead", popularity=80),
        Entity(T2, "track", "Hysteria", "Muse", popularity=70),
        Entity(T3, "track", "One", "Metallica", popularity=75),
        Entity(PL, "playlist", "Alt Classics", popularity=50),
        Entity(POD, "podcast", "Rock Talk", popularity=40),
    ]


def _relations() -> list[Relation]:
    return [
        Relation(A, B, "similar", 0.8),
        Relation(B, A, "similar", 0.4),  # the reverse direction: the edge keeps the max, 0.8
        Relation(A, C, "similar", 0.6),
        Relation(B, C, "similar", 0.5),
        Relation(A, D, "similar", 0.3),
        Relation(E, F, "similar", 0.9),
        Relation(A, "tag:alternative", "tagged", 10),
        Relation(B, "tag:alternative", "tagged", 5),
        Relation(C, "tag:alternative", "tagged", 3),
        Relation(A, "tag:rock", "tagged", 1),
        Relation(E, "tag:rock", "tagged", 20),
        Relation(F, "tag:rock", "tagged", 2),
        Relation(POD, "tag:rock", "tagged", 1),
        Relation(A, T1, "performs", 1.0),
        Relation(B, T2, "performs", 1.0),
        Relation(E, T3, "performs", 1.0),
        Relation(PL, T1, "contains", 1.0),
        Relation(PL, T2, "contains", 1.0),
        Relation(A, A, "similar", 1.0),  # a self-loop is ignored
        Relation(A, "tag:x", "mentions", 1.0),  # an unknown kind is ignored
    ]


def _fill(s: CatalogBase) -> None:
    s.upsert_entities(_entities())
    s.upsert_relations(_relations())
    s.upsert_users([UserProfile("u1", top_artists=((E, 0.8), (F, 0.2)))])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    s = CatalogStore(tmp_path / "catalog.sqlite")
    _fill(s)
    yield s
    s.close()


@pytest.fixture
def catalog(catalog_factory: CatalogFactory) -> CatalogBase:
    """The same catalog as ``store``, on each backend (closed by the factory)."""
    s = catalog_factory()
    _fill(s)
    return s


@pytest.fixture
def strategy(store: CatalogStore, tmp_path: Path) -> Iterator[GraphStrategy]:
    st = GraphStrategy(GraphConfig(catalog_path=str(store.path), cache_dir=str(tmp_path / "cache")), store=store)
    yield st
    st.close()


def _q(text: str, seed: str = "", types: tuple[str, ...] = (), entity_types: tuple[str, ...] = (), **kw) -> Query:
    parsed = ParsedQuery(text=text, residual=text, seed=seed, types=types, personal=kw.pop("personal", False))
    return Query(text=text, parsed=parsed, entity_types=entity_types, **kw)


# -- build ------------------------------------------------------------------------


def test_build_graph_nodes_and_edges(catalog: CatalogBase) -> None:
    store = catalog
    G = build_graph(store)
    assert G.number_of_nodes() == 11 + 2  # entities + tag:alternative, tag:rock
    assert G.number_of_edges() == 17
    assert G.nodes[A] == {
        "entity_type": "artist",
        "title": "Radiohead",
        "subtitle": "Artist · alternative",
        "popularity": 90.0,
    }
    assert G.nodes["tag:rock"]["entity_type"] == "tag"
    assert G.nodes["tag:rock"]["title"] == "rock"
    assert not G.has_edge(A, A)
    assert "tag:x" not in G
    # both directions of A-B are kept (u < v as strings: "artist:muse" < "artist:radiohead")
    assert G[A][B] == {"similar": 0.4, "similar<": 0.8, "weight": 0.8}
    assert G[A]["tag:alternative"]["weight"] == pytest.approx(0.3 * 10)
    assert G.graph["seq"] == store.max_seq()


def test_apply_updates_is_incremental(catalog: CatalogBase) -> None:
    store = catalog
    G = build_graph(store)
    seq, version = G.graph["seq"], G.graph["edge_version"]
    assert apply_updates(G, store) == 0
    assert G.graph["edge_version"] == version
    store.upsert_relations([Relation(B, A, "similar", 0.95), Relation(D, "tag:trip hop", "tagged", 7)])
    store.upsert_entities([Entity("artist:new", "artist", "New Band")])
    assert apply_updates(G, store) == 3
    assert G.graph["seq"] == seq + 3
    assert G.graph["edge_version"] == version + 1
    assert G[A][B]["weight"] == 0.95  # max(0.8, 0.95)
    assert G.nodes["tag:trip hop"]["entity_type"] == "tag"
    assert G.nodes["artist:new"]["title"] == "New Band"
    with pytest.raises(ValueError, match="`since_seq` must be >= 0, got -1"):
        apply_updates(G, store, since_seq=-1)


def test_cache_round_trip_and_delta(catalog: CatalogBase, tmp_path: Path) -> None:
    store, cache = catalog, tmp_path / "cache"
    G, report = load_or_build(store, cache)
    assert not report.loaded and Path(report.cache_file).exists()
    G2, report2 = load_or_build(store, cache)
    assert report2.loaded and report2.applied == 0 and report2.cached_seq == store.max_seq()
    assert nx.utils.graphs_equal(G, G2)
    assert G2.nodes(data=True)[A] == G.nodes(data=True)[A]
    # a restart after a store write loads the cache and applies only the delta
    store.upsert_relations([Relation(D, F, "similar", 0.2)])
    G3, report3 = load_or_build(store, cache)
    assert report3.loaded and report3.applied == 1 and G3.has_edge(D, F)
    assert sorted(p.name for p in cache.glob("*.pkl")) == [
        Path(report3.cache_file).name.rsplit("-", 1)[0] + f"-{store.max_seq()}.pkl"
    ]
    # other kind weights are another cache key
    _, report4 = load_or_build(store, cache, kind_weights={"similar": 1.0})
    assert not report4.loaded


def test_cache_newer_than_store_is_ignored(catalog: CatalogBase, tmp_path: Path) -> None:
    store = catalog
    G = build_graph(store)
    G.graph["seq"] = store.max_seq() + 100  # e.g. the store was rebuilt from scratch
    save_cache(G, store, tmp_path / "cache")
    _, report = load_or_build(store, tmp_path / "cache")
    assert not report.loaded


# -- search -----------------------------------------------------------------------


def test_is_a_strategy(strategy: GraphStrategy) -> None:
    assert isinstance(strategy, Strategy)
    assert strategy.name == "graph"


def test_artists_like_a(strategy: GraphStrategy) -> None:
    got = strategy.search(_q("artists like radiohead", seed="radiohead", types=("artist",)), k=10)
    ids = [c.entity_id for c in got]
    assert ids[:3] == [B, C, D]  # the similar-neighbours, strongest first
    assert set(ids) == {B, C, D, E, F}  # the rock artists are reachable through tag:rock, after them
    assert A not in ids
    assert all(c.entity_type == "artist" for c in got)
    assert [c.rank for c in got] == [1, 2, 3, 4, 5]
    assert all(a.score > b.score > 0 for a, b in zip(got, got[1:], strict=False))
    assert got[0].title == "Muse" and got[0].subtitle == "Artist · alternative"


def test_default_result_type_follows_the_seed(strategy: GraphStrategy) -> None:
    got = strategy.search(_q("like radiohead", seed="radiohead"), k=10)
    assert got and all(c.entity_type == "artist" for c in got)
    got = strategy.search(_q("songs like creep", seed="creep"), k=10)  # a track seed: tracks
    assert [c.entity_id for c in got][:1] == [T2] and all(c.entity_type == "track" for c in got)


def test_entity_types_filter(strategy: GraphStrategy) -> None:
    # a name inside the text keeps the artist's own tracks ...
    got = strategy.search(_q("radiohead tracks", entity_types=("track",)), k=5)
    assert [c.entity_id for c in got][:2] == [T1, T2]
    assert all(c.entity_type == "track" for c in got)
    # ... "songs like radiohead" (a seed phrase) wants other artists' songs
    got = strategy.search(_q("songs like radiohead", seed="radiohead", entity_types=("track",)), k=5)
    assert [c.entity_id for c in got][:1] == [T2]
    assert T1 not in [c.entity_id for c in got]
    got = strategy.search(_q("radiohead playlists", seed="radiohead", types=("playlist",)), k=5)
    assert [c.entity_id for c in got] == [PL]
    # entity_types is a hard restriction; parsed types only narrow it
    got = strategy.search(_q("x", seed="radiohead", types=("playlist",), entity_types=("podcast",)), k=5)
    assert [c.entity_id for c in got] == [POD]
    got = strategy.search(_q("x", seed="radiohead", entity_types=("track", "podcast")), k=10)
    assert {c.entity_type for c in got} == {"track", "podcast"}


def test_tag_nodes_are_never_returned(strategy: GraphStrategy) -> None:
    got = strategy.search(_q("like alternative", seed="alternative", entity_types=("artist", "track")), k=20)
    ids = [c.entity_id for c in got]
    assert [i for i in ids if i.startswith("artist:")][:3] == [A, B, C]  # by tag count 10 : 5 : 3
    assert T1 in ids  # Radiohead's track, one step further
    assert not any(i.startswith("tag:") for i in ids)


def test_contained_name_and_profile(strategy: GraphStrategy) -> None:
    got = strategy.search(_q("more stuff like metallica please"), k=3)
    assert got[0].entity_id == F
    got = strategy.search(_q("my mix", personal=True, user_id="u1"), k=3)
    assert got and got[0].entity_id not in (E, F)  # the profile artists are the seeds, so excluded
    assert {c.entity_id for c in got} <= {A, B, C, D}


def test_no_seed_returns_nothing(strategy: GraphStrategy) -> None:
    assert strategy.search(_q("something chill"), k=10) == []
    assert strategy.search(_q("like nobody", seed="qqqqzzzz"), k=10) == []
    assert strategy.search(_q("something chill", user_id="no-such-user"), k=10) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k: must be an integer in [1, 1000], got 0"),
        ({"k": 1001}, "k: must be an integer in [1, 1000], got 1001"),
        ({"k": True}, "k: must be an integer in [1, 1000], got True"),
        ({"query": "radiohead"}, "query: must be a Query, got str"),
        (
            {"query": _q("x", entity_types=("album",))},
            "entity_types: must be among ['artist', 'track', 'playlist', 'podcast'], got ['album']",
        ),
    ],
)
def test_search_rejects_bad_input(strategy: GraphStrategy, kwargs: dict, message: str) -> None:
    args = {"query": _q("like radiohead", seed="radiohead"), "k": 5, **kwargs}
    with pytest.raises(InvalidRequest) as exc:
        strategy.search(**args)
    assert str(exc.value) == message


# -- freshness --------------------------------------------------------------------


def test_refresh_picks_up_new_relation(strategy: GraphStrategy, store: CatalogStore) -> None:
    query = _q("like radiohead", seed="radiohead", types=("artist",))
    store.upsert_entities([Entity("artist:thom", "artist", "Thom Yorke", popularity=55)])
    store.upsert_relations([Relation(A, "artist:thom", "similar", 0.99)])
    assert "artist:thom" not in [c.entity_id for c in strategy.search(query, k=10)]
    assert strategy.refresh() == 2
    ids = [c.entity_id for c in strategy.search(query, k=10)]
    assert ids.index("artist:thom") < ids.index(D)  # similarity 0.99 vs 0.3
    assert strategy.search(_q("like thom yorke", seed="thom yorke"), k=1)[0].entity_id == A
    assert strategy.refresh() == 0
    assert strategy.stats()["seq"] == store.max_seq()


def test_a_refresh_that_fails_halfway_is_redone_whole(
    strategy: GraphStrategy, store: CatalogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows read before the failure are in the graph already: the retry must still rebuild the walk."""
    query = _q("like radiohead", seed="radiohead", types=("artist",))
    before = [(c.entity_id, c.score) for c in strategy.search(query, k=3)]
    store.upsert_relations([Relation(A, F, "similar", 0.99)])
    real = store.relations_since

    def fails_at_the_end(seq: int = 0) -> Iterator[Relation]:
        yield from real(seq)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "relations_since", fails_at_the_end)
    with pytest.raises(BackendUnavailable, match="graph: catalog refresh failed: disk I/O error"):
        strategy.refresh()
    assert [(c.entity_id, c.score) for c in strategy.search(query, k=3)] == before  # the last published state
    monkeypatch.setattr(store, "relations_since", real)
    strategy.refresh()
    fresh = GraphStrategy(GraphConfig(catalog_path=str(store.path), cache_dir=None), store=store)
    expected = [(c.entity_id, c.score) for c in fresh.search(query, k=3)]
    assert expected != before and [(c.entity_id, c.score) for c in strategy.search(query, k=3)] == expected


def test_upsert_updates_titles_and_seed_index(strategy: GraphStrategy) -> None:
    assert strategy.upsert([Entity(B, "artist", "Muse (band)", "Artist", popularity=80)]) == 1
    got = strategy.search(_q("like radiohead", seed="radiohead"), k=1)
    assert (got[0].entity_id, got[0].title, got[0].subtitle) == (B, "Muse (band)", "Artist")
    assert strategy.search(_q("like muse band", seed="muse band"), k=1)[0].entity_id == A
    with pytest.raises(InvalidRequest, match="entities: must hold only Entity records, got dict"):
        strategy.upsert([{"entity_id": B}])  # type: ignore[list-item]


def test_close_saves_refreshed_graph_and_restart_loads_it(catalog: CatalogBase, tmp_path: Path) -> None:
    store = catalog
    cfg = GraphConfig(catalog_path=str(tmp_path / "unused.sqlite"), cache_dir=str(tmp_path / "cache"))
    first = GraphStrategy(cfg, store=store)
    assert not first.load_report.loaded
    store.upsert_relations([Relation(C, D, "similar", 0.7)])
    first.refresh()
    first.close()
    second = GraphStrategy(cfg, store=store)
    assert second.load_report.loaded and second.load_report.applied == 0
    assert second.stats()["edges"] == first.stats()["edges"]
    assert not (tmp_path / "unused.sqlite").exists()  # a passed store is read, catalog_path never opened


@pytest.mark.parametrize("solver", ["push", "power"])
def test_solvers_agree_on_top_results(store: CatalogStore, solver: str) -> None:
    st = GraphStrategy(GraphConfig(catalog_path=str(store.path), cache_dir=None, solver=solver), store=store)
    got = st.search(_q("like radiohead", seed="radiohead", types=("artist",)), k=3)
    assert [c.entity_id for c in got] == [B, C, D]


# -- config -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"alpha": 1.0}, "alpha"),
        ({"solver": "exact"}, "solver"),
        ({"kind_weights": {"similar": -1.0}}, "kind_weights"),
        ({"kind_weights": {"similar": 0.0}}, "kind_weights"),
        ({"kind_weights": {"weight": 1.0}}, "kind_weights"),
        ({"refresh_interval_s": -1}, "refresh_interval_s"),
        ({"no_such_field": 1}, "no_such_field"),
    ],
)
def test_config_errors_name_the_field(store: CatalogStore, config: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        GraphStrategy({"catalog_path": str(store.path), "cache_dir": None, **config}, store=store)


def test_unwritable_cache_dir_is_not_fatal(catalog: CatalogBase, tmp_path: Path) -> None:
    store = catalog
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    G, report = load_or_build(store, blocker / "cache")
    assert not report.loaded and report.cache_file == ""
    assert G.number_of_edges() == 17


# -- the catalog the app configures --------------------------------------------------


def test_cache_key_is_the_catalog_location(
    catalog_factory: CatalogFactory, pg_server: PgServer, tmp_path: Path
) -> None:
    """One key per catalog (file or database), whatever the spelling of the file's path; a catalog
    with the same rows at the same seqs never loads another's cache, and a write is applied to it."""
    kw = {"similar": 1.0}
    sqlite_a = CatalogStore(tmp_path / "a" / "catalog.sqlite")
    sqlite_b = CatalogStore(tmp_path / "b" / "catalog.sqlite")
    other = catalog_factory()  # a third file (tmp_path/catalog), or a third database
    pg_a = PgCatalogStore(pg_server.create_database("graph_a"))
    pg_b = PgCatalogStore(pg_server.create_database("graph_b"))
    pg_a_again = PgCatalogStore(pg_a.dsn)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    sqlite_a_again = CatalogStore(tmp_path / "link" / ".." / "a" / "catalog.sqlite")
    sqlite_a_link = CatalogStore(tmp_path / "link" / "catalog.sqlite")
    stores: list[CatalogBase] = [sqlite_a, sqlite_b, other, pg_a, pg_b, pg_a_again, sqlite_a_again, sqlite_a_link]
    try:
        keys = [cache_key(s, kw) for s in stores]
        assert len(set(keys[:5])) == 5  # two files, the factory's catalog and two databases: five keys
        assert keys[5] == keys[3]  # the same database, opened twice
        assert keys[6] == keys[7] == keys[0]  # the same file, however its path is spelled
        assert cache_key(pg_a, {"similar": 0.5}) != keys[3]
        for s in (other, pg_a, pg_b):
            _fill(s)
        cache = tmp_path / "cache"
        built = [load_or_build(s, cache)[1] for s in (other, pg_a, pg_b)]
        assert not any(r.loaded for r in built) and len({r.cache_file for r in built}) == 3
        # same rows at the same seqs: only the key tells the caches apart
        assert other.max_seq() == pg_a.max_seq() == pg_b.max_seq()
        # a write to one catalog: its next load applies it (a file at the new seq replaces the old one);
        # the other catalogs load their own cache, unchanged
        pg_a.upsert_relations([Relation(D, F, "similar", 0.2)])
        G, report = load_or_build(pg_a_again, cache)
        assert report.loaded and report.applied == 1 and G.has_edge(D, F)
        assert Path(report.cache_file) == Path(built[1].cache_file)
        now = sorted(p.name for p in cache.glob("*.pkl"))
        assert Path(built[1].cache_file).name not in now
        assert f"graph-{cache_key(pg_a, G.graph['kind_weights'])}-{pg_a.max_seq()}.pkl" in now
        for s, r in ((other, built[0]), (pg_b, built[2])):
            G2, again = load_or_build(s, cache)
            assert again.loaded and again.applied == 0 and again.cache_file == r.cache_file and not G2.has_edge(D, F)
    finally:
        for s in stores:
            s.close()
        pg_server.drop_database("graph_a")
        pg_server.drop_database("graph_b")


def _dsn_app(tmp_path: Path, dsn: str) -> AppConfig:
    """An app whose catalog is the database at ``dsn``, with only the graph strategy; its SQLite file
    ``catalog_path`` holds a stale catalog, what the graph read before it was given the app's store."""
    stale = CatalogStore(tmp_path / "var" / "catalog.sqlite")
    stale.upsert_entities([Entity(A, "artist", "Radiohead"), Entity(E, "artist", "Metallica")])
    stale.upsert_relations([Relation(A, E, "similar", 1.0)])
    stale.close()
    graph = {"config": {"cache_dir": str(tmp_path / "cache"), "refresh_interval_s": 0}}
    return AppConfig.model_validate(
        {
            "catalog_path": str(tmp_path / "var" / "catalog.sqlite"),
            "events_path": str(tmp_path / "var" / "events.sqlite"),
            "events_dsn": dsn,
            "strategies": {"graph": graph},
        }
    )


#: "like portishead" has a seed only in the PostgreSQL catalog; "like radiohead" answers B, C, D there
#: (and Metallica, E, from the stale file).
LIKE_PORTISHEAD = _q("like portishead", seed="portishead", types=("artist",))
LIKE_RADIOHEAD = _q("like radiohead", seed="radiohead", types=("artist",))


def _reads_postgres(strategy: Any) -> None:
    assert [c.entity_id for c in strategy.search(LIKE_RADIOHEAD, k=3)] == [B, C, D]
    assert [s.node_id for s in strategy.seeds(LIKE_PORTISHEAD).seeds] == [D]
    assert strategy.search(LIKE_PORTISHEAD, k=1)[0].entity_id == A


@pytest.fixture
def dsn_app(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AppConfig, CatalogBase]]:
    monkeypatch.delenv(DSN_ENV, raising=False)
    app = _dsn_app(tmp_path, pg_dsn)
    store = open_catalog(app)
    assert isinstance(store, PgCatalogStore)
    _fill(store)
    yield app, store
    store.close()


def test_make_strategy_passes_the_app_catalog_to_graph(dsn_app: tuple[AppConfig, CatalogBase], tmp_path: Path) -> None:
    app, store = dsn_app
    graph = make_strategy("graph", app.strategy_config("graph"), store=store)
    try:
        _reads_postgres(graph)
        store.upsert_relations([Relation(D, F, "similar", 5.0)])  # a later write reaches it on refresh
        assert graph.refresh() == 1  # type: ignore[attr-defined]
        assert graph.search(LIKE_PORTISHEAD, k=1)[0].entity_id == F
    finally:
        graph.close()
    assert store.count() == len(_entities())  # the caller's store is not closed with the strategy
    # without a store, graph reads its catalog_path: the stale file
    stale = make_strategy("graph", app.strategy_config("graph"))
    try:
        assert [c.entity_id for c in stale.search(LIKE_RADIOHEAD, k=3)] == [E]
    finally:
        stale.close()


def test_strategy_deployment_of_a_dsn_app_reads_postgres(dsn_app: tuple[AppConfig, CatalogBase]) -> None:
    """The Serve replica's constructor (also the ``placement: ingress`` one): its graph and its sync
    read the same PostgreSQL catalog."""
    from deployments.strategy import StrategyServer

    app, store = dsn_app
    server = StrategyServer("graph", app.model_dump())
    try:
        assert isinstance(server.store, PgCatalogStore)
        _reads_postgres(server.strategy)
        assert asyncio.run(server.sync()) == len(_entities())
        assert store.watermark(server.target) == len(_entities())  # seqs 1..11: the entities, written first
    finally:
        server.__del__()


def test_local_service_and_ingest_of_a_dsn_app_read_postgres(
    dsn_app: tuple[AppConfig, CatalogBase], tmp_path: Path
) -> None:
    from ltrr.builder import local_service
    from ltrr.ingest import index_target, sync_all
    from ltrr.ranking.rrf import RRFRanker

    app, store = dsn_app
    events = SQLiteEventLog(tmp_path / "events.sqlite")
    _, strategies = local_service(app, store, events, names=["graph"], ranker=RRFRanker(app.ingress.rrf_c))
    try:
        _reads_postgres(strategies["graph"])
    finally:
        for s in strategies.values():
            s.close()
        events.close()
    # `ltrr ingest`: the graph it syncs is the PostgreSQL one, and the cache it leaves is that catalog's
    assert sync_all(app, store, only=["graph"]) == {"graph": len(_entities())}
    assert store.watermark(index_target("graph", app.strategy_config("graph"))) == len(_entities())
    G, report = load_or_build(store, tmp_path / "cache")
    assert report.loaded and report.cached_seq == store.max_seq() and G.has_edge(A, D)
