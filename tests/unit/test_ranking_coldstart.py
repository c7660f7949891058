"""Cold-start predicted queries (ltrr.ranking.coldstart) on a small hand-built catalog."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

from ltrr.catalog.store import CatalogStore
from ltrr.ranking.coldstart import (
    DEFAULT_MIX,
    KINDS,
    PredictedQuery,
    predicted_queries,
    prefix_lengths,
)
from ltrr.strategies.memory import predict_queries
from ltrr.types import Entity, Relation

RH, MUSE, COLD, PORT, MASS, BLUR, OASIS, PULP, SUEDE = (
    "artist:radiohead", "artist:muse", "artist:coldplay", "artist:portishead", "artist:massive",
    "artist:blur", "artist:oasis", "artist:pulp", "artist:suede",
)  # fmt: skip
U2, GHOST_REF = "artist:u2", "artist:ghost"  # GHOST_REF is named by a relation but is no entity
CREEP, CREEP_TLC, LONG, EMOJI = "track:creep", "track:creep-tlc", "track:long", "track:emoji"
SHOEGAZE = [f"track:sg{i:02d}" for i in range(12)]  # 12 carriers of the genre "shoegaze"
POD = "podcast:rocktalk"


def _entities() -> list[Entity]:
    artists = [
        Entity(RH, "artist", "Radiohead", "Artist · alternative", tags=("alternative",), popularity=90),
        Entity(MUSE, "artist", "Muse", popularity=80),
        Entity(COLD, "artist", "Coldplay", popularity=85),
        Entity(PORT, "artist", "Portishead", popularity=60),
        Entity(MASS, "artist", "Massive Attack", popularity=70),
        Entity(BLUR, "artist", "Blur", popularity=50),
        Entity(OASIS, "artist", "Oasis", popularity=75),
        Entity(PULP, "artist", "Pulp", popularity=40),
        Entity(SUEDE, "artist", "Suede", popularity=30),
        Entity(U2, "artist", "U2", popularity=0),
    ]
    tracks = [
        Entity(CREEP, "track", "Creep - Remastered", "Radiohead", popularity=95),
        Entity(CREEP_TLC, "track", "Creep", "TLC", popularity=70),
        Entity(LONG, "track", "A" * 61, "Radiohead", popularity=10),
        Entity(EMOJI, "track", "🔥🔥🔥", "Radiohead", popularity=10),
    ]
    # Popularity 100, 95, ..., 45: the carriers' rank order is their index.
    shoegaze = [
        Entity(eid, "track", f"Dreamy Song Number {i}", "Slowdive", genres=("shoegaze",), popularity=100 - 5 * i)
        for i, eid in enumerate(SHOEGAZE)
    ]
    return [*artists, *tracks, *shoegaze, Entity(POD, "podcast", "Rock Talk Weekly", "BBC", popularity=20)]


def _relations() -> list[Relation]:
    # Radiohead's neighbours by weight: Oasis .95 (stored only as Oasis -> Radiohead: similar is read
    # as undirected), Muse .9, Coldplay .8 -> 2; Portishead .7, Massive .6, Blur .5 -> 1; Pulp .4,
    # Suede .3 -> 0. Muse -> Radiohead is stored at .85 too: the larger direction (.9) counts.
    # GHOST_REF is no catalog entity: dropped, although the heaviest.
    rh = [(MUSE, 0.9), (COLD, 0.8), (PORT, 0.7), (MASS, 0.6), (BLUR, 0.5), (PULP, 0.4), (SUEDE, 0.3), (GHOST_REF, 0.99)]
    rels = [Relation(RH, b, "similar", w) for b, w in rh]
    rels += [Relation(OASIS, RH, "similar", 0.95), Relation(MUSE, RH, "similar", 0.85)]
    # Muse: Radiohead, Coldplay, Portishead -> 3 neighbours, enough for a query. Coldplay has only
    # Radiohead and Muse (2): no "artists like coldplay".
    rels += [Relation(MUSE, COLD, "similar", 0.5), Relation(MUSE, PORT, "similar", 0.4)]
    rels += [Relation(RH, CREEP, "performs", 1.0)]
    return rels


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    s = CatalogStore(tmp_path / "catalog.sqlite")
    s.upsert_entities(_entities())
    s.upsert_relations(_relations())
    yield s
    s.close()


def _edits(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _only(kind: str) -> dict[str, float]:
    return {kind: 1.0}


def _by_text(queries: list[PredictedQuery]) -> dict[str, PredictedQuery]:
    by = {q.text: q for q in queries}
    assert len(by) == len(queries), "query texts must be unique"
    return by


# The typeable titles: every entity but LONG (61 characters) and EMOJI (normalises to "");
# "Creep - Remastered" is typed "creep", like TLC's "Creep": one query for both.
NAMES = {
    "radiohead", "muse", "coldplay", "portishead", "massive attack", "blur", "oasis", "pulp", "suede", "u2",
    "creep", "rock talk weekly", *(f"dreamy song number {i}" for i in range(12)),
}  # fmt: skip


def test_name_queries_are_the_typeable_titles(store: CatalogStore) -> None:
    qs = predicted_queries(store, 100, mix=_only("name"))
    by = _by_text(qs)
    assert set(by) == NAMES
    assert {q.kind for q in qs} == {"name"}
    assert by["radiohead"].relevant == {RH: 3.0}
    # Same text, two tracks: whichever was drawn is 3, the other 2.
    creep = by["creep"].relevant
    assert sorted(creep.values()) == [2.0, 3.0] and set(creep) == {CREEP, CREEP_TLC}


@pytest.mark.parametrize(
    ("text", "lengths"),
    [
        # L = 9: m >= max(4, ceil(4.5) = 5), m <= 8
        ("radiohead", (5, 6, 7, 8)),
        # L = 12: m in [6, 11], but "dance " (m = 6) ends in a space
        ("dance monkey", (7, 8, 9, 10, 11)),
        # L = 5: m in [4, 4]
        ("oasis", (4,)),
        # L = 4: m in [4, 3], empty
        ("muse", ()),
        ("u2", ()),
    ],
)
def test_prefix_lengths(text: str, lengths: tuple[int, ...]) -> None:
    assert prefix_lengths(text) == lengths


def test_prefix_queries(store: CatalogStore) -> None:
    qs = predicted_queries(store, 100, mix=_only("prefix"))
    titles = {"radiohead": RH, "massive attack": MASS, "oasis": OASIS, "suede": SUEDE, "coldplay": COLD}
    seen = set()
    for q in qs:
        assert q.kind == "prefix"
        ((eid, grade),) = q.relevant.items()
        assert grade == 3.0
        for title, tid in titles.items():
            if tid == eid:
                seen.add(title)
                assert title.startswith(q.text) and len(q.text) in prefix_lengths(title)
    assert seen == set(titles)  # every title of >= 5 characters has a prefix query; muse, blur, pulp, u2 none
    assert _by_text(qs)["oasi"].relevant == {OASIS: 3.0}
    assert all(len(q.text) >= 4 and not q.text.endswith(" ") for q in qs)


def test_typo_queries_are_one_edit_away(store: CatalogStore) -> None:
    qs = predicted_queries(store, 100, mix=_only("typo"))
    names = {"radiohead": RH, "muse": MUSE, "coldplay": COLD, "blur": BLUR, "oasis": OASIS, "suede": SUEDE}
    found = {}
    for q in qs:
        assert q.kind == "typo" and q.text not in NAMES
        intended = next(e for e, g in q.relevant.items() if g == 3.0)
        found[intended] = q.text
    assert U2 not in found  # no word of >= 4 letters to misspell
    for name, eid in names.items():
        typo = found[eid]
        assert typo != name and typo[0] == name[0]  # never the first letter
        assert _edits(typo, name) == 1


def test_similar_queries_grade_neighbours_not_the_seed(store: CatalogStore) -> None:
    by = _by_text(predicted_queries(store, 100, mix=_only("similar")))
    assert set(by) == {"artists like radiohead", "artists like muse"}  # the only artists with >= 3 neighbours
    assert by["artists like radiohead"].relevant == {OASIS: 2.0, MUSE: 2.0, COLD: 2.0, PORT: 1.0, MASS: 1.0, BLUR: 1.0}
    # Muse: Radiohead .9 (its larger direction), Coldplay .5, Portishead .4
    assert by["artists like muse"].relevant == {RH: 2.0, COLD: 2.0, PORT: 2.0}
    assert all(q.kind == "similar" for q in by.values())


def test_similar_query_needs_its_seed_parsed(tmp_path: Path) -> None:
    # "artists like chill music" parses with seed "chill" (a trailing "music" belongs to the query),
    # so it would ask for something else: no query for that artist.
    s = CatalogStore(tmp_path / "c.sqlite")
    ids = ["artist:chill", "artist:a1", "artist:a2", "artist:a3"]
    s.upsert_entities([Entity(ids[0], "artist", "Chill Music", popularity=50)]
                      + [Entity(e, "artist", f"Band {e[-1]}", popularity=10) for e in ids[1:]])  # fmt: skip
    s.upsert_relations(Relation(a, b, "similar", 0.5) for a in ids for b in ids if a != b)
    texts = {q.text for q in predicted_queries(s, 10, mix=_only("similar"))}
    s.close()
    assert texts == {"artists like band 1", "artists like band 2", "artists like band 3"}


def test_tag_queries_grade_carriers_by_popularity(store: CatalogStore) -> None:
    by = _by_text(predicted_queries(store, 100, mix=_only("tag")))
    assert set(by) == {"shoegaze"}  # "alternative" has one carrier, under MIN_TAG_CARRIERS
    expected = {**dict.fromkeys(SHOEGAZE[:3], 2.0), **dict.fromkeys(SHOEGAZE[3:10], 1.0)}
    assert by["shoegaze"].relevant == expected


def test_track_by_queries(store: CatalogStore) -> None:
    by = _by_text(predicted_queries(store, 100, mix=_only("track_by")))
    assert by["creep radiohead"].relevant == {CREEP: 3.0}
    assert by["creep tlc"].relevant == {CREEP_TLC: 3.0}
    assert by["dreamy song number 0 slowdive"].relevant == {SHOEGAZE[0]: 3.0}
    assert len(by) == 14  # 2 creeps + 12 shoegaze tracks; LONG and EMOJI are skipped


def test_same_seed_same_list_other_seed_other_list(store: CatalogStore) -> None:
    a = predicted_queries(store, 12, seed=7)
    assert a == predicted_queries(store, 12, seed=7)
    assert a != predicted_queries(store, 12, seed=8)


def test_n_and_mix_are_respected(store: CatalogStore) -> None:
    qs = predicted_queries(store, 10, mix={"name": 3.0, "prefix": 2.0})
    # 10 * 3/5 = 6 names, 10 * 2/5 = 4 prefixes
    assert Counter(q.kind for q in qs) == {"name": 6, "prefix": 4}
    # A pool that runs out gives fewer: 2 similar queries exist, not 5.
    assert Counter(q.kind for q in predicted_queries(store, 10, mix={"name": 1.0, "similar": 1.0})) == {
        "name": 5,
        "similar": 2,
    }
    default = Counter(q.kind for q in predicted_queries(store, 20))
    assert set(default) == set(KINDS) and sum(default.values()) <= 20
    assert "typo" not in Counter(q.kind for q in predicted_queries(store, 20, mix={**DEFAULT_MIX, "typo": 0.0}))


def test_popular_entities_are_drawn_more_often(store: CatalogStore) -> None:
    # One name per seed, drawn with weight 1 + popularity out of W = 590 (artists) + 167 (creeps)
    # + 882 (shoegaze) + 21 (podcast) = 1660. In 300 draws: Radiohead 300 * 91/1660 = 16.4 expected,
    # U2 300 * 1/1660 = 0.18 (uniform draws would give each 300/24 = 12.5).
    first = Counter(predicted_queries(store, 1, seed=s, mix=_only("name"))[0].text for s in range(300))
    assert first["radiohead"] >= 8
    assert first["u2"] <= 2
    assert len(first) > 10  # not only the top


def test_default_mix_is_mostly_not_in_the_query_memory(store: CatalogStore) -> None:
    memory = {q for e in _entities() for q, _ in predict_queries(e)}
    qs = predicted_queries(store, 40)
    outside = [q for q in qs if q.text not in memory]
    assert len(outside) >= len(qs) / 2
    assert {q.kind for q in outside} >= {"prefix", "typo", "similar", "tag"}


def test_round_trip() -> None:
    q = PredictedQuery("artists like muse", "similar", {RH: 2.0, COLD: 1.0})
    assert PredictedQuery.from_dict(q.to_dict()) == q
    assert q.to_dict() == {"text": "artists like muse", "kind": "similar", "relevant": {RH: 2.0, COLD: 1.0}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mix": {"name": -1.0}}, "`mix['name']` must be a finite number >= 0, got -1.0"),
        ({"mix": {"name": float("nan")}}, "`mix['name']` must be a finite number >= 0, got nan"),
        ({"mix": {"album": 1.0}}, "`mix` has unknown kind 'album'; valid: name, prefix, typo, similar, tag, track_by"),
        ({"mix": {"name": 0.0}}, "`mix` must give at least one kind a weight > 0"),
        ({"mix": {}}, "`mix` must give at least one kind a weight > 0"),
        ({"n": 0}, "`n` must be an int in [1, 1000000], got 0"),
        ({"n": 2.5}, "`n` must be an int in [1, 1000000], got 2.5"),
        ({"n": True}, "`n` must be an int in [1, 1000000], got True"),
        ({"seed": "1"}, "`seed` must be an int, got '1'"),
    ],
)
def test_invalid_arguments(store: CatalogStore, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"n": 10, **kwargs}
    with pytest.raises(ValueError) as exc:
        predicted_queries(store, **args)
    assert str(exc.value) == message
