"""Simulated users: the held-out split, the query stream's kinds and wanted ids, misspellings.

The tiny world below is written by hand: imported users 1-3 and held-out users 8 and 20
(``is_held_out``), five artists, two tracks and one podcast in a catalog store.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ltrr.catalog.lastfm import is_held_out, split_held_out
from ltrr.catalog.normalize import artist_entity_id
from ltrr.catalog.readers import LastfmData, read_lastfm
from ltrr.catalog.store import CatalogStore
from ltrr.errors import InvalidRequest
from ltrr.sim.typos import NEIGHBOURS, can_misspell, misspell
from ltrr.sim.users import KINDS, QueryMix, QueryStream, SimQuery, build_world, short_title
from ltrr.types import Entity

REAL_DATA = Path(__file__).resolve().parents[2] / "data"
NAMES = {1: "Radiohead", 2: "Muse", 3: "Coldplay", 4: "Portishead", 5: "U2"}
RH, MUSE, CP, PH, U2 = (artist_entity_id(NAMES[i]) for i in range(1, 6))
DESCRIPTION = "A weekly show about the history of ancient Rome and its emperors"


def _lastfm() -> LastfmData:
    plays = [
        (1, 1, 10), (1, 2, 10), (1, 3, 10),  # imported: Radiohead+Muse co-listened by users 1, 2;
        (2, 1, 10), (2, 2, 10),  # Radiohead+Coldplay by 1, 3; Muse+Coldplay by 1 only
        (3, 1, 10), (3, 3, 10), (3, 4, 10),
        (8, 1, 100), (8, 2, 50), (8, 3, 10), (8, 5, 5),  # held out
        (20, 4, 30), (20, 2, 5),  # held out; Portishead and Muse share no imported listener
    ]  # fmt: skip
    tags = [(8, 1, 1), (8, 2, 2), (8, 3, 3), (1, 2, 1)]  # "seen live" and "Coldplay" on Coldplay are skipped
    return LastfmData(
        artist_names=dict(NAMES),
        artist_urls={},
        tags={1: "alternative", 2: "seen live", 3: "Coldplay"},
        plays=np.array(plays, dtype=np.int64),
        tag_assignments=np.array(tags, dtype=np.int64),
    )


@pytest.fixture()
def store(tmp_path: Path) -> CatalogStore:
    s = CatalogStore(tmp_path / "c.sqlite")
    ents = [Entity(artist_entity_id(n), "artist", n) for n in NAMES.values()]
    ents += [
        Entity("track:t1", "track", "Creep - Remastered", popularity=80, attrs={"artist_id": RH}),
        Entity("track:t2", "track", "Uprising", popularity=70, attrs={"artist_id": MUSE}),
        Entity("podcast:p1", "podcast", "Rome", description=DESCRIPTION),
        Entity("podcast:p2", "podcast", "Short", description="Too short to quote."),
    ]
    s.upsert_entities(ents)
    return s


def test_the_fixture_users_are_split_as_intended() -> None:
    assert [u for u in (1, 2, 3, 8, 20) if is_held_out(u)] == [8, 20]


def test_world_holds_only_held_out_users_and_catalog_items(store: CatalogStore) -> None:
    world = build_world(_lastfm(), store)
    assert [u.lastfm_id for u in world.users] == [8, 20]
    u8, u20 = world.users
    assert u8.user_id == "sim:8"
    assert u8.artists == ((RH, "Radiohead", 100), (MUSE, "Muse", 50), (CP, "Coldplay", 10), (U2, "U2", 5))
    assert u8.tags == (("alternative", RH),)  # the stop tag and the artist's own name are skipped
    assert u20.artists == ((PH, "Portishead", 30), (MUSE, "Muse", 5)) and u20.tags == ()
    assert world.tracks == {RH: (("track:t1", "Creep - Remastered", 80.0),), MUSE: (("track:t2", "Uprising", 70.0),)}
    assert [p for p, _ in world.podcasts] == ["podcast:p1"]  # p2 has fewer than 8 words
    assert world.listeners[RH] == {1, 2, 3}  # imported users only
    # co-listeners of Radiohead: Muse 2 (users 1, 2), Coldplay 2 (1, 3): tie -> more plays by user 8 (Muse)
    assert world.co_listened(u8, RH) == MUSE
    assert world.co_listened(u8, MUSE) == RH and world.co_listened(u8, CP) == RH
    assert world.co_listened(u8, U2) is None  # no imported user played U2
    assert world.co_listened(u20, PH) is None and world.co_listened(u20, MUSE) is None


def test_stream_kinds_follow_the_mix_and_wanted_ids_exist(store: CatalogStore) -> None:
    world = build_world(_lastfm(), store)
    queries = QueryStream(world, seed=3).generate(3000)
    assert [q.index for q in queries] == list(range(3000))
    shares = Counter(q.kind for q in queries)
    for kind, w in QueryMix().weights().items():
        assert abs(shares[kind] / 3000 - w) < 0.035, kind  # > 4 binomial sd
    ids = {e.entity_id for _, batch in store.entities_since(0) for e in batch}
    like = {RH: MUSE, MUSE: RH, CP: RH}
    for q in queries:
        assert q.wanted in ids and q.user_id in ("sim:8", "sim:20")
        if q.kind == "name":
            assert artist_entity_id(q.text) == q.wanted
        elif q.kind == "typo":
            assert q.text != NAMES[[i for i, n in NAMES.items() if artist_entity_id(n) == q.wanted][0]]
        elif q.kind == "tag":
            assert (q.user_id, q.text, q.wanted) == ("sim:8", "alternative", RH)
        elif q.kind == "like":
            seed_name = q.text.removeprefix("artists like ")
            assert q.user_id == "sim:8" and like[artist_entity_id(seed_name)] == q.wanted
        elif q.kind == "track":
            assert (q.text, q.wanted) in {("Creep", "track:t1"), ("Uprising", "track:t2")}
        else:
            assert q.kind == "podcast" and q.wanted == "podcast:p1" and q.text in DESCRIPTION.lower()
            assert 3 <= len(q.text.split()) <= 6
    names = Counter(q.text for q in queries if q.kind == "name" and q.user_id == "sim:8")
    assert names["Radiohead"] > names["Muse"] > names["Coldplay"]  # by plays: 100, 50, 10
    assert SimQuery.from_dict(queries[5].to_dict()) == queries[5]


def test_stream_is_deterministic_and_mix_configurable(store: CatalogStore) -> None:
    world = build_world(_lastfm(), store)
    assert QueryStream(world, seed=1).generate(50) == QueryStream(world, seed=1).generate(50)
    assert QueryStream(world, seed=1).generate(50) != QueryStream(world, seed=2).generate(50)
    only = QueryStream(world, QueryMix.parse("name=0,typo=0,tag=0,like=1,track=0,podcast=0"), seed=0)
    assert {q.kind for q in only.generate(40)} == {"like"}
    assert set(KINDS) == set(QueryMix().weights())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name", "mix: entries must be kind=weight, got 'name'"),
        ("name=x", "mix: weight of 'name' must be a number, got 'x'"),
        ("name=-1", "mix.name: Input should be greater than or equal to 0"),
        ("colour=1", "mix.colour: Extra inputs are not permitted"),
        ("name=0,typo=0,tag=0,like=0,track=0,podcast=0", "mix: Value error, at least one kind must have a weight > 0"),
    ],
)
def test_mix_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        QueryMix.parse(text)
    assert str(err.value) == message


def test_stream_rejects_bad_arguments(store: CatalogStore) -> None:
    world = build_world(_lastfm(), store)
    with pytest.raises(InvalidRequest, match=r"^n: must be an int in \[1, 1000000\], got 0$"):
        QueryStream(world).generate(0)
    with pytest.raises(InvalidRequest, match=r"^seed: must be an int, got 1.5$"):
        QueryStream(world, seed=1.5)  # type: ignore[arg-type]
    no_pods = build_world(_lastfm(), CatalogStore(store.path.parent / "empty.sqlite"))
    with pytest.raises(InvalidRequest, match="^mix: no held-out user can ask kind 'name'"):
        QueryStream(no_pods)


def test_short_title() -> None:
    assert short_title("Creep - Remastered") == "Creep"
    assert short_title("Uprising (Live)") == "Uprising"
    assert short_title("Up-Rising") == "Up-Rising" and short_title("(Intro)") == "(Intro)"


# -- misspellings ----------------------------------------------------------------------------------


def _damerau_one(a: str, b: str) -> bool:
    """True iff ``b`` is one insertion, deletion, substitution or adjacent transposition from ``a``."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def test_misspell_makes_one_edit_after_the_first_letter() -> None:
    rng = random.Random(0)
    for name in ["Radiohead", "Britney Spears", "Daft Punk", "The Killers", "Sigur Rós", "Muse"]:
        for _ in range(50):
            typo = misspell(name, rng)
            assert _damerau_one(name, typo), (name, typo)
            words, twords = name.split(), typo.split()
            assert [w[0] for w in words] == [w[0] for w in twords]  # first letters untouched
    assert misspell("U2", rng) == "U2" and not can_misspell("U2") and can_misspell("Muse")
    assert misspell("Radiohead", random.Random(7)) == misspell("Radiohead", random.Random(7))
    assert set(NEIGHBOURS["s"]) == set("adewxz") and set(NEIGHBOURS["q"]) == set("aw")


# -- the held-out split on the real data -------------------------------------------------------------


def test_real_held_out_users_are_disjoint_from_imported_profiles(tmp_path: Path) -> None:
    if not (REAL_DATA / "lastfm-hetrec2011" / "user_artists.dat").is_file():
        pytest.skip("real data not present")
    from ltrr.catalog.assemble import assemble_catalog

    lfm = read_lastfm(REAL_DATA)
    imported, held = split_held_out(lfm)
    held_ids = set(held.plays[:, 0].tolist()) | set(held.tag_assignments[:, 0].tolist())
    all_ids = set(lfm.plays[:, 0].tolist()) | set(lfm.tag_assignments[:, 0].tolist())
    assert len(held_ids) == 377 and len(all_ids) == 1892  # 19.9%
    assert held_ids == {u for u in all_ids if is_held_out(u)}
    built = assemble_catalog(lfm, [], [], max_artists=500)
    profiles = {int(u.user_id.removeprefix("lfm:")) for u in built.users}
    assert profiles and not profiles & held_ids and built.held_out_users == 377
