"""Query understanding: exact parses of a table of queries against a hand-made vocabulary."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ltrr.catalog.store import CatalogStore
from ltrr.query_understanding import QueryUnderstanding, Vocabulary, normalize_text, tag_confidence
from ltrr.types import Entity, ParsedQuery

VOCAB = Vocabulary(
    genres={"rock": 100, "edm": 50, "r&b": 40, "latin": 30, "hip hop": 20, "pop": 100, "True Crime": 30, "Music": 40},
    tags={
        "rock": 1000,  # confidence 0.8
        "80s": 100,  # 0.7
        "female vocalists": 1000,
        "hip-hop": 1000,
        "hip hop": 100,
        "rnb": 10,  # 0.6; through the r&b alias 0.54
        "sad": 100,
        "seen live": 5000,  # generic: never a slot
        "madonna": 42,  # an artist name used < 100 times: not a slot
        "electronic": 1000,  # an artist name too, but used >= 100 times
        "jungle": 10,
        "ambient": 5,  # below min_tag_count
    },
    names=frozenset({"madonna", "electronic", "radiohead"}),
)


@pytest.fixture(scope="module")
def qu() -> QueryUnderstanding:
    return QueryUnderstanding(VOCAB)


def pq(text: str, residual: str, **kw: Any) -> ParsedQuery:
    return ParsedQuery(text=text, residual=residual, **kw)


CASES: list[tuple[str, ParsedQuery]] = [
    ("radiohead songs", pq("radiohead songs", "radiohead", types=("track",), confidence={"type:track": 0.9})),
    ("Songs by Radiohead", pq("songs by radiohead", "radiohead", types=("track",), confidence={"type:track": 0.9})),
    ("the show must go on", pq("the show must go on", "the show must go on")),
    (
        "rock songs",
        pq(
            "rock songs",
            "",
            types=("track",),
            genres=("rock",),
            tags=("rock",),
            confidence={"genre:rock": 0.9, "tag:rock": 0.8, "type:track": 0.9},
        ),
    ),
    (
        "80s female vocalists",
        pq(
            "80s female vocalists",
            "",
            tags=("80s", "female vocalists"),
            confidence={"tag:80s": 0.7, "tag:female vocalists": 0.8},
        ),
    ),
    (
        "Hip-Hop artists",
        pq(
            "hip hop artists",
            "",
            types=("artist",),
            genres=("hip hop",),
            tags=("hip-hop", "hip hop"),
            confidence={"genre:hip hop": 0.9, "tag:hip-hop": 0.8, "tag:hip hop": 0.7, "type:artist": 0.9},
        ),
    ),
    (
        "rnb playlist",
        pq(
            "rnb playlist",
            "",
            types=("playlist",),
            genres=("r&b",),
            tags=("rnb",),
            confidence={"genre:r&b": 0.8, "tag:rnb": 0.6, "type:playlist": 0.9},
        ),
    ),
    ("R&B", pq("r&b", "", genres=("r&b",), tags=("rnb",), confidence={"genre:r&b": 0.9, "tag:rnb": 0.54})),
    (
        "artists like Radiohead",
        pq(
            "artists like radiohead",
            "",
            types=("artist",),
            seed="radiohead",
            confidence={"seed": 0.9, "type:artist": 0.9},
        ),
    ),
    (
        "songs like creep by radiohead",
        pq(
            "songs like creep by radiohead",
            "",
            types=("track",),
            seed="creep by radiohead",
            confidence={"seed": 0.9, "type:track": 0.9},
        ),
    ),
    ("like a prayer", pq("like a prayer", "like a prayer")),
    ("like toy soldiers", pq("like toy soldiers", "", seed="toy soldiers", confidence={"seed": 0.6})),
    ("smells like teen spirit", pq("smells like teen spirit", "smells like teen spirit")),
    ("music like daft punk", pq("music like daft punk", "", seed="daft punk", confidence={"seed": 0.9})),
    (
        "rock like nirvana",
        pq(
            "rock like nirvana",
            "",
            genres=("rock",),
            tags=("rock",),
            seed="nirvana",
            confidence={"seed": 0.9, "genre:rock": 0.9, "tag:rock": 0.8},
        ),
    ),
    (
        "similar to radiohead songs",
        pq(
            "similar to radiohead songs",
            "",
            types=("track",),
            seed="radiohead",
            confidence={"seed": 0.9, "type:track": 0.9},
        ),
    ),
    ("fans of madonna", pq("fans of madonna", "", seed="madonna", confidence={"seed": 0.9})),
    ("madonna", pq("madonna", "madonna")),
    ("daft punk radio", pq("daft punk radio", "", seed="daft punk", confidence={"seed": 0.6})),
    ("for me", pq("for me", "", personal=True, confidence={"personal": 0.9})),
    (
        "my mix",
        pq("my mix", "", types=("playlist",), personal=True, confidence={"personal": 0.9, "type:playlist": 0.6}),
    ),
    ("my chemical romance", pq("my chemical romance", "my chemical romance")),
    (
        "best sad songs",
        pq("best sad songs", "", types=("track",), tags=("sad",), confidence={"tag:sad": 0.7, "type:track": 0.9}),
    ),
    (
        "welcome to the jungle",
        pq("welcome to the jungle", "welcome to the", tags=("jungle",), confidence={"tag:jungle": 0.6}),
    ),
    (
        "true crime podcasts",
        pq(
            "true crime podcasts",
            "",
            types=("podcast",),
            genres=("True Crime",),
            confidence={"genre:True Crime": 0.9, "type:podcast": 0.9},
        ),
    ),
    (
        "rock music",
        pq("rock music", "", genres=("rock",), tags=("rock",), confidence={"genre:rock": 0.9, "tag:rock": 0.8}),
    ),
    ("seen live", pq("seen live", "seen live")),
    ("ambient", pq("ambient", "ambient")),
    ("electronic", pq("electronic", "", tags=("electronic",), confidence={"tag:electronic": 0.8})),
    ("", pq("", "")),
    ("  ÜNÏCODE   Café!! ", pq("ünïcode café", "ünïcode café")),
    (
        "something like radiohead for me",
        pq(
            "something like radiohead for me",
            "",
            seed="radiohead",
            personal=True,
            confidence={"seed": 0.9, "personal": 0.9},
        ),
    ),
    (
        "podcast episodes about history",
        pq("podcast episodes about history", "history", types=("podcast",), confidence={"type:podcast": 0.9}),
    ),
    ("AC/DC", pq("ac dc", "ac dc")),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] or "<empty>" for c in CASES])
def test_parse_table(qu: QueryUnderstanding, text: str, expected: ParsedQuery) -> None:
    got = qu.parse(text)
    assert got.to_dict() == expected.to_dict()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hip-Hop", "hip hop"),
        ("  AC/DC  ", "ac dc"),
        ("'80s", "80s"),
        ("Guns N' Roses", "guns n roses"),
        ("R&B", "r&b"),
        ("ＡＢＣ", "abc"),
        ("don't stop", "don't stop"),
        ("", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(("n", "expected"), [(1, 0.5), (10, 0.6), (100, 0.7), (1000, 0.8), (10**6, 0.9), (0, 0.5)])
def test_tag_confidence(n: int, expected: float) -> None:
    assert tag_confidence(n) == expected


def test_min_tag_count_validated() -> None:
    with pytest.raises(ValueError, match=r"`min_tag_count` must be >= 1, got 0"):
        QueryUnderstanding(VOCAB, min_tag_count=0)


def test_lower_min_tag_count_admits_rare_tags() -> None:
    assert QueryUnderstanding(VOCAB, min_tag_count=5).parse("ambient").tags == ("ambient",)


def test_empty_vocabulary_still_finds_types_seeds_personal() -> None:
    p = QueryUnderstanding().parse("rock songs like nirvana for me")
    assert (p.types, p.genres, p.tags, p.seed, p.personal, p.residual) == (("track",), (), (), "nirvana", True, "rock")


ENTITIES = [
    Entity("artist:1", "artist", "Radiohead", genres=("rock",), tags=("rock", "rock", "alternative")),
    Entity("artist:2", "artist", "Electronic", tags=("electronic",)),
    Entity("track:1", "track", "Creep", "Radiohead", genres=("rock", "pop"), tags=("alternative",)),
]


def test_vocabulary_counts_entities_not_occurrences() -> None:
    v = Vocabulary.from_entities(ENTITIES)
    assert dict(v.genres) == {"rock": 2, "pop": 1}
    assert dict(v.tags) == {"rock": 1, "alternative": 2, "electronic": 1}
    assert v.names == frozenset({"radiohead", "electronic"})


def test_tag_named_after_an_artist_is_blocked_even_without_accents() -> None:
    v = Vocabulary.from_entities([Entity("artist:b", "artist", "Beyoncé"), Entity("artist:r", "artist", "Rock")])
    qu = QueryUnderstanding(Vocabulary(tags={"beyonce": 50, "rock": 100}, names=v.names))
    assert qu.parse("beyonce").tags == ()
    assert qu.parse("rock").tags == ("rock",)  # used >= name_tag_min_count times


def test_from_store(tmp_path: Any) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    store.upsert_entities(ENTITIES)
    qu = QueryUnderstanding.from_store(store, min_tag_count=2)
    store.close()
    p = qu.parse("alternative rock")
    assert (p.genres, p.tags, p.residual) == (("rock",), ("alternative",), "")


def test_parse_is_fast(qu: QueryUnderstanding) -> None:
    texts = [t for t, _ in CASES]
    t0 = time.perf_counter()
    for _ in range(50):
        for t in texts:
            qu.parse(t)
    per_query_ms = (time.perf_counter() - t0) * 1000 / (50 * len(texts))
    assert per_query_ms < 1.0
