"""Catalog builder: normalisation, parsing quirks, cross-source linking, slices, invariants.

Most tests run on a hand-made miniature of the four data sets (written to a
temporary ``data_dir`` with the real files' quirks), so every expected value
below is computed by hand from the rows in :func:`_write_fixture`. One module-
scoped test builds a small slice of the real data in ``data/``.
"""

from __future__ import annotations

import gc
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from ltrr.catalog.assemble import assemble_catalog
from ltrr.catalog.build import CatalogStats, build_catalog, catalog_summary
from ltrr.catalog.lastfm import HELD_OUT_FRACTION, HELD_OUT_SPEC, held_out_mask, is_held_out, split_held_out
from ltrr.catalog.normalize import artist_entity_id, normalize_name, normalize_tag, strip_private_use
from ltrr.catalog.readers import read_lastfm, read_podcasts, read_spotify_songs
from ltrr.catalog.similarity import cosine_top_k
from ltrr.catalog.store import CatalogStore
from ltrr.errors import ConfigError, InvalidRequest
from ltrr.types import ENTITY_TYPES, Entity, Relation, UserProfile

REAL_DATA = Path(__file__).resolve().parents[2] / "data"

# -- normalisation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Radiohead", "radiohead"),
        ("The Beatles", "beatles"),
        ("Beatles, The", "beatles"),
        ("The The", "the"),
        ("The", "the"),
        ("Beyoncé", "beyonce"),
        ("Tiësto", "tiesto"),
        ("Sigur Rós", "sigur ros"),
        ("Mötley Crüe", "motley crue"),
        ("Ｂｊörk", "bjork"),  # full-width letters fold under NFKC
        ("R.E.M.", "rem"),
        ("Guns N' Roses", "guns n roses"),
        ("Guns N’ Roses", "guns n roses"),
        ("Simon & Garfunkel", "simon and garfunkel"),
        ("Florence + the Machine", "florence and the machine"),
        ("Ke$ha", "kesha"),
        ("AC/DC", "ac dc"),
        ("blink-182", "blink 182"),
        ("Panic! At the Disco", "panic at the disco"),
        ("  Daft   Punk  ", "daft punk"),
        ("Katy Perry\ue216", "katy perry"),  # private-use char dropped
        ("Мумий Тролль", "мумий тролль"),  # Cyrillic kept, only casefolded
        ("ガゼット", "ガゼット"),  # kana dakuten is not an accent: kept
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("!!!", "!!!"),  # all punctuation: fall back to the folded name
        ("", ""),
    ],
)
def test_normalize_name_table(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


@pytest.mark.parametrize("name", ["The The Band", "Beatles, The", "Ｂｊörk", "!!!", "A$AP Rocky", "The Killers"])
def test_normalize_name_is_idempotent(name: str) -> None:
    once = normalize_name(name)
    assert normalize_name(once) == once


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("Hip-Hop", "hip hop"),
        ("hiphop", "hip hop"),
        ("R&B", "r&b"),
        ("rnb", "r&b"),
        ("  Post_Rock ", "post rock"),
        ("Tropicália", "tropicalia"),
        ("Fußball", "fussball"),
        ("drum n bass", "drum and bass"),
        ("seen live", "seen live"),
        ("indie/rock", "indie rock"),
    ],
)
def test_normalize_tag_table(tag: str, expected: str) -> None:
    assert normalize_tag(tag) == expected


def test_artist_entity_id_is_sha1_of_normalised_name() -> None:
    import hashlib

    assert artist_entity_id("The Beatles") == "artist:" + hashlib.sha1(b"beatles").hexdigest()[:12]
    assert artist_entity_id("Beatles, The") == artist_entity_id("the beatles")
    assert strip_private_use("Glee Cast\uf800") == "Glee Cast"


# -- similarity (hand-computed cosine) ------------------------------------------------------


def test_cosine_top_k_exact_values() -> None:
    # x = log1p(w): A = (u1: 1, u2: 1), B = (u1: 1), C = (u2: 2).
    # cos(A,B) = 1/sqrt2, cos(A,C) = 2/(sqrt2 * 2) = 1/sqrt2, cos(B,C) = 0; one co-listener each.
    w = np.expm1(np.array([1.0, 1.0, 1.0, 2.0]))
    a = np.array([0, 0, 1, 2])
    u = np.array([10, 20, 10, 20])
    c = round(1 / math.sqrt(2), 6)
    plain = cosine_top_k(a, u, w, 3, top_k=5, gamma=1.0)
    assert plain == [[(1, c), (2, c)], [(0, c)], [(0, c)]]  # tie broken by the smaller index
    damped = cosine_top_k(a, u, w, 3, top_k=1, gamma=5.0)
    assert damped == [[(1, round(1 / math.sqrt(2) / 5, 6))], [(0, round(1 / math.sqrt(2) / 5, 6))], [(0, 0.141421)]]
    assert cosine_top_k(np.array([], dtype=np.int64), np.array([]), np.array([]), 2) == [[], []]


# -- a miniature data directory with the real files' quirks ---------------------------------

SONG_HEADER = (
    "track_id,track_name,track_artist,track_popularity,track_album_id,track_album_name,track_album_release_date,"
    "playlist_name,playlist_id,playlist_genre,playlist_subgenre,danceability,energy,key,loudness,mode,speechiness,"
    "acousticness,instrumentalness,liveness,valence,tempo,duration_ms"
)
AUDIO = "0.5,0.5,1,-5.0,1,0.05,6.26e-4,0,0.1,0.5,120.0,200000"


def _write_fixture(root: Path) -> Path:
    lfm = root / "lastfm-hetrec2011"
    lfm.mkdir(parents=True)
    artists = [
        (1, "Radiohead"),
        (2, "Muse"),
        (3, "The Killers"),
        (4, "Killers"),
        (5, "Katy Perry\ue216"),
        (6, "Sigur Rós"),
    ]
    (lfm / "artists.dat").write_bytes(
        ("id\tname\turl\tpictureURL\n" + "".join(f"{i}\t{n}\thttp://last.fm/{i}\t\n" for i, n in artists)).encode()
    )
    tags = [(1, "rock"), (2, "alternative"), (3, "seen live"), (4, "Radiohead"), (5, "tropicália"), (7, "Hip-Hop")]
    (lfm / "tags.dat").write_bytes(
        ("tagID\ttagValue\r\n" + "".join(f"{i}\t{t}\r\n" for i, t in tags)).encode("latin-1")
    )
    plays = [
        (1, 1, 100), (1, 2, 50), (1, 3, 10),
        (2, 1, 30), (2, 4, 20), (2, 5, 5),
        (3, 2, 70), (3, 6, 40), (3, 1, 1),
        (4, 6, 10), (4, 2, 10),
        # User 8 is held out (is_held_out(8)): were its rows counted, Muse would have 4 listeners (so
        # Radiohead's popularity < 100), Katy Perry 2 and Muse the tag "hip hop" (assigned twice).
        (8, 2, 1000), (8, 5, 300), (8, 6, 5),
    ]  # fmt: skip
    (lfm / "user_artists.dat").write_bytes(
        ("userID\tartistID\tweight\r\n" + "".join(f"{u}\t{a}\t{w}\r\n" for u, a, w in plays)).encode()
    )
    assigned = [
        (1, 1, 1), (2, 1, 1), (3, 1, 1),
        (1, 1, 2), (2, 1, 2),
        (1, 1, 3),
        (1, 1, 4), (2, 1, 4),
        (1, 6, 5), (3, 6, 5),
        (1, 999, 1),
        (2, 2, 7),
        (8, 2, 7), (8, 5, 1),
    ]  # fmt: skip
    (lfm / "user_taggedartists.dat").write_bytes(
        (
            "userID\tartistID\ttagID\tday\tmonth\tyear\r\n"
            + "".join(f"{u}\t{a}\t{t}\t1\t4\t2009\r\n" for u, a, t in assigned)
        ).encode()
    )
    (lfm / "user_friends.dat").write_bytes(b"userID\tfriendID\n1\t2\n2\t1\n")
    creep = ("t1", "Creep", "Radiohead", 80, "al1", "Pablo Honey", "1993-02-22")
    # "perm" stands for "permanent wave" (line length); expanded below.
    songs = [
        (*creep, "Indie Mix", "P1", "rock", "permanent wave"),
        (*creep, "Indie Mix", "P1", "rock", "permanent wave"),  # a repeated (track, playlist) row
        ("t2", "Mr. Brightside", "The Killers", 85, "al2", "Hot Fuss", "2004", "Indie Mix", "P1", "rock", "perm"),
        (*creep, "Rock Hits", "P2", "rock", "album rock"),
        ("t3", "NA", "NA", 0, "al3", "NA", "2012-01-05", "Rock Hits", "P2", "rock", "album rock"),
        ("t4", "Callaita", "Bad Bunny", 90, "al4", "Callaita", "2019-05", "Latin Party", "P3", "latin", "reggaeton"),
    ]  # fmt: skip
    sp = root / "tidytuesday-spotify-songs-2020"
    sp.mkdir()
    songs = [(*r[:10], "permanent wave" if r[10] == "perm" else r[10]) for r in songs]
    lines = [SONG_HEADER] + [",".join([*(str(x) for x in r), AUDIO]) for r in songs]
    (sp / "spotify_songs.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    charts = root / "spotify-podcast-charts-2024"
    charts.mkdir()
    (charts / "podcast_details.csv").write_text(
        "podcast_id,podcast_name,podcast_description,podcast_publisher,podcast_languages,podcast_total_episodes,"
        "podcast_explicit,podcast_image_url,podcast_url,genre\n"
        "S1,Comedy Hour,\"Jokes, weekly.\",Funny Inc,['en'],100,True,http://i/1,http://s/1,Comedy\n"
        "S2,Laugh Track,Sketches.,Giggle Co,['en-US'],10,False,http://i/2,http://s/2,Comedy\n"
        "S3,News Now,Headlines.,Daily Corp,['es'],500,False,http://i/3,http://s/3,News\n",
        encoding="utf-8",
    )
    cats = root / "spotify-podcasts-628group4"
    cats.mkdir()
    (cats / "podcasts.csv").write_bytes(
        b"Parent_Category,Category,Podcast_Name,Description,Publisher,Episode_Count,ID,Cover_URL\r\n"
        b"Arts & Entertainment,comedy,Laugh Track,Sketches.,Giggle Co,12,S2,http://c/2\r\n"
        b"Arts & Entertainment,comedy,Laugh Track,Sketches.,Giggle Co,12,S2,http://c/2\r\n"
        b"Educational,other,Deep Dive,,Learn Ltd,1000,S4,http://c/4\r\n"
    )
    return root


@pytest.fixture()
def mini(tmp_path: Path) -> Path:
    return _write_fixture(tmp_path / "data")


def _all_relations(store: CatalogStore) -> list[Relation]:
    return list(store.relations_since(0))


def _all_entities(store: CatalogStore) -> dict[str, Entity]:
    return {e.entity_id: e for _, batch in store.entities_since(0) for e in batch}


# -- readers: the files' quirks --------------------------------------------------------------


def test_readers_handle_latin1_crlf_na_and_private_use(mini: Path) -> None:
    lfm = read_lastfm(mini)
    assert lfm.tags[5] == "tropicália"  # Latin-1 byte 0xE1, CRLF stripped
    assert lfm.artist_names[5] == "Katy Perry"  # private-use U+E216 stripped
    assert lfm.plays.shape == (14, 3) and lfm.plays[0].tolist() == [1, 1, 100]
    assert lfm.tag_assignments.shape == (14, 3)
    songs = read_spotify_songs(mini)
    na = [s for s in songs if s.track_id == "t3"][0]
    assert (na.name, na.artist, na.album, na.popularity) == ("", "", "", 0)
    pods = read_podcasts(mini)
    assert [(p.show_id, p.chart_rank, p.source) for p in pods] == [
        ("S1", 1, "podcast-charts"),
        ("S2", 2, "podcast-charts"),
        ("S3", 1, "podcast-charts"),
        ("S2", 0, "podcast-categories"),
        ("S2", 0, "podcast-categories"),
        ("S4", 0, "podcast-categories"),
    ]
    assert pods[3].categories == ("Arts & Entertainment", "comedy")
    assert pods[5].categories == ("Educational",) and pods[5].description == "" and pods[5].episodes == 1000
    assert pods[2].languages == "es"


def test_missing_data_dir_and_bad_arguments(tmp_path: Path, mini: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    with pytest.raises(ConfigError, match="`data_dir` must be a directory"):
        build_catalog(store, tmp_path / "nope", progress=False)
    (mini / "spotify-podcasts-628group4" / "podcasts.csv").unlink()
    with pytest.raises(ConfigError, match="missing the data file .*podcasts.csv"):
        build_catalog(store, mini, progress=False)
    assert gc.isenabled()  # the build pauses the collector and restores it on error
    for bad in (0, -3, True, 2.5, "10"):
        with pytest.raises(InvalidRequest) as err:
            build_catalog(store, mini, max_artists=bad, progress=False)  # type: ignore[arg-type]
        assert str(err.value) == f"max_artists: must be None or an int >= 1, got {bad!r}"
    with pytest.raises(InvalidRequest, match="store: must be a CatalogStore, got str"):
        build_catalog("catalog.sqlite", mini)  # type: ignore[arg-type]


# -- the miniature build, value by value -------------------------------------------------------


def test_mini_build_exact_entities(tmp_path: Path, mini: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    stats = build_catalog(store, mini, progress=False)
    assert isinstance(stats, CatalogStats)
    assert (stats.artists, stats.tracks, stats.playlists, stats.podcasts) == (6, 3, 3, 4)
    assert stats.entities == stats.changed == 16
    assert stats.users == 4 and stats.held_out_users == 1  # user 8
    assert store.user("lfm:8") is None and (stats.relations_retired, stats.users_removed) == (0, 0)
    assert catalog_summary(store) == {"artist": 6, "track": 3, "playlist": 3, "podcast": 4, "total": 16}
    ents = _all_entities(store)

    # Listeners: Radiohead 3, Muse 3, Killers 2, Sigur Rós 2, Katy Perry 1; max 3.
    radiohead = ents[artist_entity_id("Radiohead")]
    assert radiohead.sources == ("lastfm", "spotify")
    assert radiohead.popularity == 100.0
    assert radiohead.tags == ("rock", "alternative")  # "seen live" and the own name are dropped
    assert radiohead.genres == ("rock", "album rock", "permanent wave", "alternative")
    assert radiohead.subtitle == "Artist · rock, alternative"
    assert radiohead.description == "Top tracks: Creep."
    assert radiohead.attrs == {
        "listeners": "3",
        "plays": "131",
        "lastfm_id": "1",
        "url": "http://last.fm/1",
        "tracks": "1",
    }

    killers = ents[artist_entity_id("The Killers")]  # ids 3 and 4 merge, and link to Spotify
    assert killers.title == "The Killers"
    assert killers.sources == ("lastfm", "spotify")
    assert killers.popularity == 85.0  # max(100 ln3/ln4 = 79.2481, Spotify 85)
    assert killers.attrs["listeners"] == "2" and killers.attrs["plays"] == "30"
    assert killers.genres == ("permanent wave", "rock") and killers.tags == ()

    sigur = ents[artist_entity_id("Sigur Rós")]
    assert sigur.sources == ("lastfm",) and sigur.popularity == round(100 * math.log(3) / math.log(4), 4)
    assert sigur.tags == ("tropicalia",)
    katy = ents[artist_entity_id("Katy Perry")]
    assert katy.title == "Katy Perry" and katy.popularity == 50.0
    muse = ents[artist_entity_id("Muse")]
    assert muse.tags == ()  # "hip hop" assigned once and rare overall: dropped
    bad_bunny = ents[artist_entity_id("Bad Bunny")]
    assert bad_bunny.sources == ("spotify",) and bad_bunny.popularity == 90.0 and bad_bunny.attrs == {"tracks": "1"}

    creep = ents["track:t1"]
    assert (creep.title, creep.subtitle, creep.popularity) == ("Creep", "Radiohead", 80.0)
    assert creep.genres == ("rock", "album rock", "permanent wave")
    assert creep.tags == ("rock", "alternative")
    assert creep.attrs == {
        "artist_id": radiohead.entity_id,
        "album": "Pablo Honey",
        "album_id": "al1",
        "release_date": "1993-02-22",
        "release_year": "1993",
    }
    assert "track:t3" not in ents  # the NA row
    p1, p2 = ents["playlist:P1"], ents["playlist:P2"]
    assert p1.popularity == 82.5 and p1.attrs["tracks"] == "2"  # the repeated t1 row counts once
    assert p2.popularity == 80.0 and p2.subtitle == "Playlist · rock" and p2.genres == ("rock", "album rock")
    assert p1.description == "2 tracks featuring Radiohead, The Killers."

    s1, s2, s4 = ents["podcast:S1"], ents["podcast:S2"], ents["podcast:S4"]
    assert (s1.popularity, s2.popularity, s4.popularity) == (100.0, 99.0, 50.0)
    assert s2.genres == ("comedy", "arts & entertainment")
    assert s2.sources == ("podcast-categories", "podcast-charts")
    assert s2.subtitle == "Giggle Co" and s2.attrs["episodes"] == "12" and s2.attrs["chart_rank"] == "2"
    assert s4.genres == ("educational",) and s4.description == ""


def test_mini_build_relations_and_users(tmp_path: Path, mini: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    stats = build_catalog(store, mini, progress=False)
    rels = _all_relations(store)
    assert stats.relations == len(rels)
    key = {(r.src, r.dst, r.kind): r.weight for r in rels}
    rh = artist_entity_id("Radiohead")
    assert key[(rh, "tag:rock", "tagged")] == 5.0  # 3 Last.fm assignments + 2 playlist rows
    assert key[(rh, "tag:alternative", "tagged")] == 2.0
    assert key[(rh, "track:t1", "performs")] == 1.0
    assert {(r.src, r.dst) for r in rels if r.kind == "contains"} == {
        ("playlist:P1", "track:t1"),
        ("playlist:P1", "track:t2"),
        ("playlist:P2", "track:t1"),
        ("playlist:P3", "track:t4"),
    }
    assert key[("podcast:S2", "tag:comedy", "tagged")] == 2.0  # listed by both sources
    assert key[("podcast:S2", "tag:arts & entertainment", "tagged")] == 1.0  # the duplicate row counts once
    similar = {(r.src, r.dst) for r in rels if r.kind == "similar"}
    assert (rh, artist_entity_id("Muse")) in similar
    assert all(0 < r.weight <= 1 for r in rels if r.kind == "similar")
    assert all(artist_entity_id("Bad Bunny") not in pair for pair in similar)  # no Last.fm listening

    u1 = store.user("lfm:1")
    assert u1 is not None
    assert u1.top_artists == ((rh, 0.625), (artist_entity_id("Muse"), 0.3125), (artist_entity_id("Killers"), 0.0625))
    assert u1.top_tags == (("alternative", 0.25), ("radiohead", 0.25), ("rock", 0.25), ("tropicalia", 0.25))
    u4 = store.user("lfm:4")  # never tagged: tags inferred from the artists' kept tags
    assert u4 is not None and u4.top_tags == (("tropicalia", 1.0),)
    assert u4.top_artists == tuple((a, 0.5) for a in sorted([artist_entity_id("Muse"), artist_entity_id("Sigur Rós")]))


def _check_invariants(store: CatalogStore) -> tuple[dict[str, Entity], list[Relation]]:
    ents = _all_entities(store)
    rels = _all_relations(store)
    assert len(ents) == store.count()
    for e in ents.values():
        assert e.entity_type in ENTITY_TYPES and e.entity_id.startswith(e.entity_type + ":")
        assert 0.0 <= e.popularity <= 100.0 and e.title
        assert all(isinstance(v, str) for v in e.attrs.values())
    for r in rels:
        for end in (r.src, r.dst):
            assert end in ents or (end.startswith("tag:") and end[4:] == normalize_tag(end[4:])), end
    tagged: dict[str, set[str]] = {}
    for r in rels:
        if r.kind == "tagged":
            tagged.setdefault(r.src, set()).add(r.dst[4:])
    for e in ents.values():
        want = set(e.genres) if e.entity_type == "track" else set(e.genres) | set(e.tags)
        assert tagged.get(e.entity_id, set()) == want, e.entity_id
    assert {r.kind for r in rels} <= {"similar", "tagged", "performs", "contains"}
    return ents, rels


def test_mini_invariants_rerun_and_slice(tmp_path: Path, mini: Path) -> None:
    full = CatalogStore(tmp_path / "full.sqlite")
    first = build_catalog(full, mini, progress=False)
    ents, _ = _check_invariants(full)
    again = build_catalog(full, mini, progress=False)
    assert (again.changed, again.relations_changed) == (0, 0)
    assert again.relations == first.relations and set(_all_entities(full)) == set(ents)

    part = CatalogStore(tmp_path / "slice.sqlite")
    stats = build_catalog(part, mini, max_artists=2, progress=False)
    sliced, rels = _check_invariants(part)
    assert (stats.artists, stats.tracks, stats.playlists, stats.podcasts) == (2, 1, 2, 4)
    assert set(sliced) == {
        artist_entity_id("Radiohead"),
        artist_entity_id("Muse"),
        "track:t1",
        "playlist:P1",
        "playlist:P2",
        "podcast:S1",
        "podcast:S2",
        "podcast:S3",
        "podcast:S4",
    }
    for eid, e in sliced.items():  # slice entities are exactly their full-build versions
        assert e.content_hash() == ents[eid].content_hash()
    assert {(r.src, r.dst) for r in rels if r.kind == "contains"} == {
        ("playlist:P1", "track:t1"),
        ("playlist:P2", "track:t1"),
    }
    assert stats.users == 4  # every user played Radiohead or Muse


# -- the held-out split -------------------------------------------------------------------------


def test_held_out_split_is_a_fixed_hash_of_the_user_id() -> None:
    import hashlib

    # sha256("held-out-v1:8")[:8] / 2^64 = 0.0434 < 0.2; users 1-4 of the fixture are imported.
    assert [u for u in range(1, 13) if is_held_out(u)] == [8]
    digest = hashlib.sha256(b"held-out-v1:8").digest()
    assert int.from_bytes(digest[:8], "big") / 2**64 == pytest.approx(0.0434, abs=5e-5)
    assert is_held_out(np.int64(8)) and held_out_mask(np.array([1, 8, 8, 2])).tolist() == [False, True, True, False]
    share = held_out_mask(np.arange(20_000)).mean()
    assert abs(share - HELD_OUT_FRACTION) < 0.01  # 20% +- 1 point (3.5 binomial sd)
    with pytest.raises(TypeError, match="`user_id` must be a Last.fm user id"):
        is_held_out("8")  # type: ignore[arg-type]


def test_split_held_out_partitions_the_rows(mini: Path) -> None:
    lfm = read_lastfm(mini)
    imported, held = split_held_out(lfm)
    assert sorted(set(held.plays[:, 0].tolist())) == [8] and len(held.plays) == 3 and len(held.tag_assignments) == 2
    assert 8 not in imported.plays[:, 0] and 8 not in imported.tag_assignments[:, 0]
    assert len(imported.plays) + len(held.plays) == len(lfm.plays)
    assert imported.artist_names == lfm.artist_names == held.artist_names


def test_build_migrates_a_store_built_without_the_split(tmp_path: Path, mini: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    muse = artist_entity_id("Muse")
    # What an older build (every user imported) left: user 8's profile and Muse's tag "hip hop".
    store.upsert_users([UserProfile("lfm:8", ((muse, 1.0),)), UserProfile("sim:7", ((muse, 1.0),))])
    store.upsert_relations([Relation(muse, "tag:hip hop", "tagged", 2.0)])
    first = build_catalog(store, mini, progress=False)
    assert (first.relations_retired, first.users_removed) == (1, 1)
    assert store.user("lfm:8") is None and store.user("sim:7") is not None  # only lfm: profiles are the build's
    retired = [r for r in _all_relations(store) if r.weight == 0.0]
    assert retired == [Relation(muse, "tag:hip hop", "tagged", 0.0)]
    assert store.get_meta("catalog:held_out") == HELD_OUT_SPEC
    again = build_catalog(store, mini, progress=False)  # the split is recorded: no migration
    assert (again.changed, again.relations_changed, again.relations_retired, again.users_removed) == (0, 0, 0, 0)


def test_progress_goes_to_stderr(tmp_path: Path, mini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_catalog(CatalogStore(tmp_path / "c.sqlite"), mini, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "entities" in err and "relations" in err


def test_assemble_is_deterministic(mini: Path) -> None:
    args = (read_lastfm(mini), read_spotify_songs(mini), read_podcasts(mini))
    one, two = assemble_catalog(*args), assemble_catalog(*args)
    assert [e.content_hash() for e in one.entities] == [e.content_hash() for e in two.entities]
    assert one.relations == two.relations and one.users == two.users


# -- a slice of the real data --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[CatalogStore, CatalogStats, CatalogStats]:
    if not (REAL_DATA / "lastfm-hetrec2011" / "artists.dat").is_file():
        pytest.skip("real data not present")
    store = CatalogStore(tmp_path_factory.mktemp("real") / "c.sqlite")
    first = build_catalog(store, REAL_DATA, max_artists=300, progress=False)
    second = build_catalog(store, REAL_DATA, max_artists=300, progress=False)
    return store, first, second


def test_real_slice_invariants(real_slice: tuple[CatalogStore, CatalogStats, CatalogStats]) -> None:
    store, first, second = real_slice
    assert first.artists == 300 and first.podcasts == 7 and 0 < first.playlists <= 15
    assert first.changed == first.entities and first.tracks > 300
    assert (second.changed, second.relations_changed) == (0, 0)
    assert second.to_dict() | {"seconds": 0} == first.to_dict() | {"seconds": 0, "changed": 0, "relations_changed": 0}
    ents, rels = _check_invariants(store)
    assert len({r.src for r in rels if r.kind == "similar"}) == 300
    assert set(first.relations_by_kind) == {"similar", "tagged", "performs", "contains"}


def test_real_slice_links_sources_and_neighbours(real_slice: tuple[CatalogStore, CatalogStats, CatalogStats]) -> None:
    store = real_slice[0]
    names = {"Radiohead", "Muse", "Coldplay", "Britney Spears", "Lady Gaga", "Rihanna", "The Killers"}
    ents = store.get_many([artist_entity_id(n) for n in names])
    assert {e.title for e in ents.values()} == names
    assert all(e.sources == ("lastfm", "spotify") for e in ents.values())
    rels = [r for r in store.relations_since(0) if r.kind == "similar"]

    def neighbours(name: str) -> list[str]:
        src = artist_entity_id(name)
        top = sorted((r for r in rels if r.src == src), key=lambda r: -r.weight)[:10]
        return [e.title for e in store.get_many([r.dst for r in top]).values()]

    assert {"Muse", "Coldplay"} <= set(neighbours("Radiohead"))
    assert {"Radiohead", "Coldplay"} <= set(neighbours("Muse"))
    assert {"Lady Gaga", "Rihanna"} <= set(neighbours("Britney Spears"))
    creep = [r.dst for r in store.relations_since(0) if r.kind == "performs" and r.src == artist_entity_id("Radiohead")]
    titles = {e.title for e in store.get_many(creep).values()}
    assert "Creep" in titles
