"""Seed finding: exact, fuzzy, contained names, user profiles, nothing."""

from __future__ import annotations

import time

import networkx as nx
import pytest

from graph.seeds import SeedIndex, find_seeds
from ltrr.types import ParsedQuery, Query, UserProfile

NODES = [
    ("artist:radiohead", "artist", "Radiohead", 90.0),
    ("artist:muse", "artist", "Muse", 80.0),
    ("artist:portishead", "artist", "Portishead", 60.0),
    ("artist:beatles", "artist", "The Beatles", 95.0),
    ("artist:love", "artist", "Love", 25.0),
    ("artist:rem", "artist", "R.E.M.", 70.0),
    ("artist:daftpunk", "artist", "Daft Punk", 85.0),
    ("artist:daft", "artist", "Daft", 5.0),
    ("track:muse", "track", "Muse", 99.0),  # a popular track with an artist's name
    ("track:creep1", "track", "Creep", 80.0),
    ("track:creep2", "track", "Creep", 30.0),
    ("tag:shoegaze", "tag", "shoegaze", 0.0),
]

PROFILES = {
    "u1": UserProfile("u1", top_artists=(("artist:muse", 0.6), ("artist:gone", 0.3), ("artist:beatles", 0.2))),
}


@pytest.fixture(scope="module")
def index() -> SeedIndex:
    G = nx.Graph()
    for node, etype, title, pop in NODES:
        G.add_node(node, entity_type=etype, title=title, popularity=pop)
    return SeedIndex.from_graph(G)


def _query(text: str, seed: str = "", personal: bool = False, user: str = "", genres: tuple[str, ...] = ()) -> Query:
    return Query(
        text=text,
        parsed=ParsedQuery(text=text, residual=text, seed=seed, personal=personal, genres=genres),
        user_id=user,
    )


def _find(index: SeedIndex, q: Query) -> list[tuple[str, float, str]]:
    res = find_seeds(q, index, profile_lookup=PROFILES.get, has_node=index.__contains__)  # drops artist:gone
    return [(s.node_id, round(s.weight, 6), s.method) for s in res.seeds]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # (a) a seed phrase: exact normalised title, artists before a more popular track
        (_query("artists like radiohead", seed="radiohead"), [("artist:radiohead", 1.0, "exact")]),
        (_query("like RADIOHEAD", seed="RADIOHEAD"), [("artist:radiohead", 1.0, "exact")]),
        (_query("like the beatles", seed="the beatles"), [("artist:beatles", 1.0, "exact")]),
        (_query("like rem", seed="R.E.M"), [("artist:rem", 1.0, "exact")]),
        (_query("like muse", seed="muse"), [("artist:muse", 1.0, "exact")]),
        (_query("songs like creep", seed="creep"), [("track:creep1", 1.0, "exact")]),  # the more popular one
        (_query("like shoegaze", seed="shoegaze"), [("tag:shoegaze", 1.0, "exact")]),
        # fuzzy fallback for typos
        (_query("like radiohed", seed="radiohed"), [("artist:radiohead", 1.0, "fuzzy")]),
        (_query("like portishaed", seed="portishaed"), [("artist:portishead", 1.0, "fuzzy")]),
        (_query("like beatels", seed="beatels"), [("artist:beatles", 1.0, "fuzzy")]),
        # an unresolvable phrase falls back to names inside it
        (_query("like radiohead and stuff", seed="radiohead and stuff"), [("artist:radiohead", 1.0, "contained")]),
        # (b) no phrase: artist names contained in the text, longest match first
        (_query("music that sounds like portishead please"), [("artist:portishead", 1.0, "contained")]),
        (_query("daft punk deep cuts"), [("artist:daftpunk", 1.0, "contained")]),
        (
            _query("radiohead and muse"),
            [("artist:radiohead", 0.5, "contained"), ("artist:muse", 0.5, "contained")],
        ),
        # common words that are also artist names are not seeds
        (_query("love songs for a live night"), []),
        # genres query understanding recognised are not names (and "daft" has no tag node)
        (_query("daft music", genres=("daft",)), []),
        # (c) profile seeds: personal query, or nothing found but the user has a profile
        (
            _query("my mix", personal=True, user="u1"),
            [("artist:muse", 0.75, "profile"), ("artist:beatles", 0.25, "profile")],
        ),
        (_query("something chill", user="u1"), [("artist:muse", 0.75, "profile"), ("artist:beatles", 0.25, "profile")]),
        # a personal query naming a seed mixes 70 / 30
        (
            _query("like radiohead for me", seed="radiohead", personal=True, user="u1"),
            [
                ("artist:radiohead", 0.7, "exact"),
                ("artist:muse", 0.225, "profile"),
                ("artist:beatles", 0.075, "profile"),
            ],
        ),
        # nothing at all
        (_query("something chill"), []),
        (_query("something chill", user="unknown-user"), []),
        (_query("like zzzzqqq", seed="zzzzqqq"), []),
    ],
)
def test_seed_table(index: SeedIndex, query: Query, expected: list[tuple[str, float, str]]) -> None:
    assert _find(index, query) == expected


def test_seed_result_method_and_weights(index: SeedIndex) -> None:
    res = find_seeds(_query("like radiohead for me", seed="radiohead", personal=True, user="u1"), index, PROFILES.get)
    assert res.method == "exact+profile"
    assert sum(res.weights().values()) == pytest.approx(1.0)
    assert find_seeds(_query("nothing here"), index).method == "none"


def test_index_update_moves_renamed_node(index: SeedIndex) -> None:
    idx = SeedIndex.from_graph(nx.Graph())
    idx.add("artist:x", "Old Name", "artist", 10.0)
    assert idx.exact("old name") == ["artist:x"]
    idx.add("artist:x", "Brand New", "artist", 10.0)
    assert idx.exact("old name") == []
    assert idx.exact("brand new") == ["artist:x"]
    # a pending (not yet compacted) title is found by the fuzzy lookup too
    assert idx.pending == 2
    assert idx.fuzzy("brand neww") == ("artist:x", pytest.approx(2 * 9 / 19))
    idx.compact()
    assert idx.pending == 0
    assert idx.fuzzy("brand neww") == ("artist:x", pytest.approx(2 * 9 / 19))


def test_exact_type_filter(index: SeedIndex) -> None:
    assert index.exact("muse") == ["artist:muse", "track:muse"]
    assert index.exact("muse", types=["track"]) == ["track:muse"]


def test_lookup_is_fast_on_many_titles() -> None:
    G = nx.Graph()
    for i in range(20_000):
        G.add_node(f"track:{i}", entity_type="track", title=f"song number {i} of the collection", popularity=1.0)
    G.add_node("artist:target", entity_type="artist", title="Portishead", popularity=50.0)
    idx = SeedIndex.from_graph(G)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        hit = idx.fuzzy("portisheed")
        best = min(best, time.perf_counter() - t0)
    assert hit is not None and hit[0] == "artist:target"
    assert best < 0.02  # typically ~1 ms; generous for a loaded CI box


# -- facets: genre and tag seeds ------------------------------------------------------

FACET_NODES = [
    ("artist:radiohead", "artist", "Radiohead", 90.0),
    ("artist:death", "artist", "Death", 50.0),
    ("artist:ironjesus", "artist", "Iron Jesus", 5.0),
    ("tag:shoegaze", "tag", "shoegaze", 0.0),
    ("tag:rock", "tag", "rock", 0.0),
    ("tag:hip hop", "tag", "hip hop", 0.0),
    ("tag:death metal", "tag", "death metal", 0.0),
    ("tag:jesus", "tag", "jesus", 0.0),
]


@pytest.fixture(scope="module")
def facet_index() -> SeedIndex:
    G = nx.Graph()
    for node, etype, title, pop in FACET_NODES:
        G.add_node(node, entity_type=etype, title=title, popularity=pop)
    return SeedIndex.from_graph(G)


def _facet_query(
    text: str,
    genres: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    conf: dict[str, float] | None = None,
    personal: bool = False,
    user: str = "",
) -> Query:
    parsed = ParsedQuery(text=text, residual="", genres=genres, tags=tags, personal=personal, confidence=conf or {})
    return Query(text=text, parsed=parsed, user_id=user)


FACET_PROFILES = {"u1": UserProfile("u1", top_artists=(("artist:radiohead", 0.6), ("artist:death", 0.4)))}


@pytest.mark.parametrize(
    ("query", "facet_mix", "expected"),
    [
        # one tag: its node, whatever the confidence; `matched` is the confidence key
        (_facet_query("shoegaze", tags=("shoegaze",), conf={"tag:shoegaze": 0.8}), 0.5,
         [("tag:shoegaze", 1.0, "tag", "tag:shoegaze")]),
        # a genre and a tag with one label are one node, with the larger confidence's key
        (_facet_query("rock", genres=("rock",), tags=("rock",), conf={"genre:rock": 0.9, "tag:rock": 0.7}), 0.5,
         [("tag:rock", 1.0, "tag", "genre:rock")]),
        # several facets: weights proportional to their confidences, 0.9 : 0.6
        (_facet_query("rock shoegaze", genres=("rock",), tags=("shoegaze",),
                      conf={"genre:rock": 0.9, "tag:shoegaze": 0.6}), 0.5,
         [("tag:rock", 0.6, "tag", "genre:rock"), ("tag:shoegaze", 0.4, "tag", "tag:shoegaze")]),
        # a missing confidence counts DEFAULT_FACET_CONFIDENCE (0.5): 1.0 : 0.5
        (_facet_query("rock shoegaze", genres=("rock",), tags=("shoegaze",), conf={"genre:rock": 1.0}), 0.5,
         [("tag:rock", 0.666667, "tag", "genre:rock"), ("tag:shoegaze", 0.333333, "tag", "tag:shoegaze")]),
        # a label is keyed like the catalog's tag nodes (normalize_tag): "Hip-Hop" -> tag:hip hop
        (_facet_query("hip-hop", genres=("Hip-Hop",)), 0.5, [("tag:hip hop", 1.0, "tag", "genre:Hip-Hop")]),
        # a facet without a tag node is no seed
        (_facet_query("vaporwave", tags=("vaporwave",), conf={"tag:vaporwave": 0.9}), 0.5, []),
        # a word inside a facet phrase is no artist name: "death metal" does not seed the artist Death ...
        (_facet_query("death metal", genres=("death metal",)), 0.5,
         [("tag:death metal", 1.0, "tag", "genre:death metal")]),
        # ... but a name around a facet is: "iron jesus" (tag "jesus"); names and facets split 1 - mix : mix
        (_facet_query("iron jesus", tags=("jesus",)), 0.5,
         [("artist:ironjesus", 0.5, "contained", "iron jesus"), ("tag:jesus", 0.5, "tag", "tag:jesus")]),
        (_facet_query("radiohead shoegaze", tags=("shoegaze",)), 0.5,
         [("artist:radiohead", 0.5, "contained", "radiohead"), ("tag:shoegaze", 0.5, "tag", "tag:shoegaze")]),
        (_facet_query("radiohead shoegaze", tags=("shoegaze",)), 0.2,
         [("artist:radiohead", 0.8, "contained", "radiohead"), ("tag:shoegaze", 0.2, "tag", "tag:shoegaze")]),
        # a facet is enough: the profile joins only a personal query, with profile_mix 0.3
        (_facet_query("shoegaze", tags=("shoegaze",), user="u1"), 0.5, [("tag:shoegaze", 1.0, "tag", "tag:shoegaze")]),
        (_facet_query("shoegaze for me", tags=("shoegaze",), personal=True, user="u1"), 0.5,
         [("tag:shoegaze", 0.7, "tag", "tag:shoegaze"), ("artist:radiohead", 0.18, "profile", "u1"),
          ("artist:death", 0.12, "profile", "u1")]),
    ],
)  # fmt: skip
def test_facet_seed_table(
    facet_index: SeedIndex, query: Query, facet_mix: float, expected: list[tuple[str, float, str, str]]
) -> None:
    res = find_seeds(query, facet_index, profile_lookup=FACET_PROFILES.get, facet_mix=facet_mix)
    assert [(s.node_id, round(s.weight, 6), s.method, s.matched) for s in res.seeds] == expected
    if expected:
        assert sum(res.weights().values()) == pytest.approx(1.0)


def test_facet_method_names_the_seed_kinds(facet_index: SeedIndex) -> None:
    assert find_seeds(_facet_query("shoegaze", tags=("shoegaze",)), facet_index).method == "tag"
    assert find_seeds(_facet_query("radiohead shoegaze", tags=("shoegaze",)), facet_index).method == "contained+tag"


def test_facets_use_has_node_when_given(facet_index: SeedIndex) -> None:
    # a tag node the graph gained after the index was built (a refresh) is found through has_node
    q = _facet_query("vaporwave", tags=("vaporwave",))
    res = find_seeds(q, facet_index, has_node=lambda n: n == "tag:vaporwave")
    assert [s.node_id for s in res.seeds] == ["tag:vaporwave"]
    assert find_seeds(_facet_query("rock", genres=("rock",)), facet_index, has_node=lambda n: False).seeds == ()
