"""Context features of a search (ltrr.bandit.features): exact values on hand-built queries."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from ltrr.bandit import QUERY_CLASSES, ContextFeaturizer
from ltrr.bandit.features import BASE_FEATURES, NearNames
from ltrr.errors import InvalidRequest
from ltrr.query_understanding import QueryUnderstanding, Vocabulary
from ltrr.types import ParsedQuery, Query, UserProfile

NAMES = frozenset({"daft punk", "beyonce", "one two three four five"})
STRATEGIES = ("lexical", "vector")


@pytest.fixture
def fz() -> ContextFeaturizer:
    return ContextFeaturizer(STRATEGIES, NAMES)


def q(text: str, residual: str | None = None, *, raw: str | None = None, **kw: Any) -> Query:
    """A query whose parsed text is ``text`` (residual defaults to all of it)."""
    entity_types = kw.pop("entity_types", ())
    context = kw.pop("context", {})
    parsed = ParsedQuery(text=text, residual=text if residual is None else residual, **kw)
    return Query(text=raw if raw is not None else text, parsed=parsed, entity_types=entity_types, context=context)


def test_names_and_dim(fz: ContextFeaturizer) -> None:
    assert fz.names[: len(BASE_FEATURES)] == BASE_FEATURES
    assert fz.names[0] == "bias"
    assert fz.names[len(BASE_FEATURES) :] == (
        "class.text",
        "class.name",
        "class.facet",
        "class.seed",
        "class.personal",
        "hist.lexical",
        "hist.vector",
    )
    assert fz.dim == len(fz.names) == 30 + 5 + 2
    assert QUERY_CLASSES == ("text", "name", "facet", "seed", "personal")


def test_name_query_every_feature(fz: ContextFeaturizer) -> None:
    feats = fz.features(q("daft punk", raw="Daft Punk"))
    expected = dict.fromkeys(fz.names, 0.0)
    expected.update(
        {
            "bias": 1.0,
            "q_chars": 9 / 64,
            "q_tokens": 2 / 8,
            "residual_tokens": 2 / 8,
            "name_exact": 1.0,
            "name_in_query": 1.0,
            "mem_positive_rate": 0.5,  # (0 + 1) / (0 + 2)
            "class.name": 1.0,
            "hist.lexical": 0.5,
            "hist.vector": 0.5,
        }
    )
    assert feats == pytest.approx(expected, abs=1e-15)
    assert list(feats) == list(fz.names)


def test_facet_query_with_user_memory_time_and_rates(fz: ContextFeaturizer) -> None:
    query = q(
        "chill jazz tracks",
        "",
        raw="Chill jazz tracks",
        types=("track",),
        genres=("Jazz",),
        tags=("chill",),
        confidence={"type": 0.9, "genre:jazz": 0.8, "tag:chill": 0.6, "tag:calm": 0.7, "typed": 0.99},
        entity_types=("track",),
        context={"hour": "6", "weekend": "yes"},
    )
    user = UserProfile("u1", top_artists=(("a", 1.0), ("b", 1.0), ("c", 1.0)), top_tags=(("JAZZ", 1.0), ("rock", 0.5)))
    rates = np.arange(10, dtype=float).reshape(5, 2) / 10.0
    feats = fz.features(query, user=user, stats=(3, 1), class_rates=rates)
    expected = {
        "bias": 1.0,
        "q_chars": 17 / 64,
        "q_tokens": 3 / 8,
        "residual_tokens": 0.0,
        "has_type": 1.0,
        "has_genre": 1.0,
        "has_tag": 1.0,
        "has_seed": 0.0,
        "personal": 0.0,
        "conf_type": 0.9,  # "typed" is not a "type" confidence
        "conf_genre": 0.8,
        "conf_tag": 0.7,  # the max over tag:*
        "conf_seed": 0.0,
        "name_exact": 0.0,
        "name_in_query": 0.0,
        "name_near": 0.0,
        "title_exact": 0.0,
        "tag_exact": 0.0,
        "type_filter": 1.0,
        "mem_seen": 1.0,
        "mem_searches": math.log(4.0) / 7.0,
        "mem_positive_rate": 2 / 5,
        "user_known": 1.0,
        "user_tags": 2 / 20,
        "user_artists": 3 / 50,
        "user_tag_overlap": 1 / 2,  # {jazz, chill} & {jazz, rock}
        "time_known": 1.0,
        "hour_sin": 1.0,
        "hour_cos": math.cos(math.pi / 2),
        "weekend": 1.0,
        "class.text": 0.0,
        "class.name": 0.0,
        "class.facet": 1.0,
        "class.seed": 0.0,
        "class.personal": 0.0,
        "hist.lexical": 0.4,  # rates[2, 0]
        "hist.vector": 0.5,  # rates[2, 1]
    }
    assert feats == pytest.approx(expected, abs=1e-15)
    assert all(-1.0 <= v <= 1.0 for v in feats.values())


def test_caps(fz: ContextFeaturizer) -> None:
    words = " ".join(f"w{i}" for i in range(20))  # 20 tokens, 69 characters
    feats = fz.features(q(words), stats=(5000, 10))
    assert (feats["q_chars"], feats["q_tokens"], feats["residual_tokens"]) == (1.0, 1.0, 1.0)
    assert feats["mem_searches"] == 1.0  # log1p(5000) / 7 > 1
    assert feats["mem_positive_rate"] == pytest.approx(11 / 5002)


def test_user_without_tags_and_query_without_facets(fz: ContextFeaturizer) -> None:
    user = UserProfile("u2")
    feats = fz.features(q("blue train"), user=user)
    assert (feats["user_known"], feats["user_tags"], feats["user_artists"], feats["user_tag_overlap"]) == (
        1.0,
        0.0,
        0.0,
        0.0,
    )
    feats = fz.features(q("jazz", "", genres=("jazz",)), user=user)
    assert feats["user_tag_overlap"] == 0.0


# --------------------------------------------------------------------------- artist names
@pytest.mark.parametrize(
    ("query", "exact", "any_gram"),
    [
        (q("daft punk"), True, True),
        (q("", raw="Daft   PUNK!"), True, True),  # parsed text empty: the raw text is normalised
        (q("beyoncé"), True, True),  # accents folded
        (q("daft punk live", "daft punk"), True, True),  # the residual is a name
        (q("songs like daft punk", ""), False, True),  # a 2-gram is
        (q("one two three four five"), True, True),  # a 5-token name, exactly
        (q("play one two three four five"), False, False),  # n-grams stop at 4 tokens
        (q("blue train"), False, False),
        (q(" ".join(["x"] * 16) + " daft punk"), False, False),  # only the first 16 tokens
        (q("daft punk " + " ".join(["x"] * 16)), False, True),
    ],
    ids=["exact", "raw", "accents", "residual", "ngram", "5-token", "5-gram", "none", "after-16", "before-16"],
)
def test_name_match(fz: ContextFeaturizer, query: Query, exact: bool, any_gram: bool) -> None:
    assert fz.name_match(query) == (exact, any_gram)
    feats = fz.features(query)
    assert (feats["name_exact"], feats["name_in_query"]) == (float(exact), float(any_gram))


@pytest.mark.parametrize(
    ("text", "near"),
    [
        ("beyonce", False),  # the name itself is name_exact, not near
        ("beyonse", True),  # substituted
        ("beyonc", True),  # dropped
        ("beyoncee", True),  # inserted
        ("beoynce", True),  # two neighbours swapped
        ("daft pnuk", True),
        ("byonse", False),  # two edits
        ("beyoncé", False),  # accents folded: exact
        ("bryönse", False),
        ("bey", False),  # shorter than NEAR_MIN_CHARS
        ("blue train", False),
    ],
)
def test_name_near(fz: ContextFeaturizer, text: str, near: bool) -> None:
    """A misspelt artist name (one edit away) is ``name_near``; the name itself and two edits are not."""
    assert fz.features(q(text))["name_near"] == float(near)


def test_near_names_skip_short_names() -> None:
    near = NearNames(frozenset({"abba", "muse", "madonna"}))
    assert "madona" in near and "madonnna" in near
    assert "abbba" not in near and "musee" not in near  # names under NEAR_MIN_CHARS are not indexed
    assert "" not in near and 5 not in near


def test_title_and_tag_exact() -> None:
    """Exact titles of other entities and any catalog tag or genre, even one query understanding
    drops (below min_tag_count or stop-listed), from the catalog's vocabulary."""
    vocab = Vocabulary.from_rows(
        [
            ("artist", "Daft Punk", ["electronic"], ["french house", "seen live"]),
            ("track", "Around the World", [], ["angelic"]),
            ("podcast", "Café Talk", [], []),
        ]
    )
    fz = ContextFeaturizer.for_vocabulary(STRATEGIES, vocab)
    parse = QueryUnderstanding(vocab, min_tag_count=2).parse

    def feats(text: str) -> dict[str, float]:
        return fz.features(Query(text=text, parsed=parse(text)))

    assert (feats("Around the World")["title_exact"], feats("around the")["title_exact"]) == (1.0, 0.0)
    assert feats("cafe talk")["title_exact"] == 1.0  # accents folded
    assert feats("Daft Punk")["title_exact"] == 0.0  # an artist: name_exact instead
    for text in ("angelic", "seen live", "Electronic", "French House"):
        assert feats(text)["tag_exact"] == 1.0, text
    assert feats("angelic voices")["tag_exact"] == 0.0
    assert ContextFeaturizer(STRATEGIES).features(q("angelic"))["tag_exact"] == 0.0  # no labels given


# --------------------------------------------------------------------------- query classes
@pytest.mark.parametrize(
    ("query", "cls"),
    [
        (q("daft punk mix for me", "daft punk", seed="daft punk", personal=True), "personal"),
        (q("like daft punk", "daft punk", seed="daft punk"), "seed"),
        (q("house daft punk", "daft punk", genres=("house",)), "name"),
        (q("house", "", genres=("house",)), "facet"),
        (q("tracks", "", types=("track",)), "facet"),
        (q("chill", "", tags=("chill",)), "facet"),
        (q("house blue train", "blue train", genres=("house",)), "text"),
        (q("blue train"), "text"),
        (q(""), "text"),
    ],
    ids=["personal>seed", "seed>name", "name>facet", "genre", "type", "tag", "facet+residual", "plain", "empty"],
)
def test_query_class_precedence(fz: ContextFeaturizer, query: Query, cls: str) -> None:
    index = QUERY_CLASSES.index(cls)
    assert fz.query_class(query) == index
    feats = fz.features(query)
    assert [feats[f"class.{c}"] for c in QUERY_CLASSES] == [float(c == cls) for c in QUERY_CLASSES]
    assert fz.class_of(feats) == index


def test_query_class_uses_given_name_flag(fz: ContextFeaturizer) -> None:
    assert fz.query_class(q("blue train"), name_exact=True) == QUERY_CLASSES.index("name")
    assert fz.query_class(q("daft punk"), name_exact=False) == QUERY_CLASSES.index("text")


@pytest.mark.parametrize(
    ("features", "index"),
    [({}, 0), ({"class.seed": 1.0}, 3), ({"class.text": 0.0, "class.personal": 1.0}, 4), ({"bias": 1.0}, 0)],
)
def test_class_of(fz: ContextFeaturizer, features: dict[str, float], index: int) -> None:
    assert fz.class_of(features) == index


# --------------------------------------------------------------------------- time
SAT_1530 = "1704555000"  # 2024-01-06 15:30:00 UTC, a Saturday
MON_0600 = "1704693600"  # 2024-01-08 06:00:00 UTC, a Monday
A1530 = 2 * math.pi * 15.5 / 24


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({}, (0.0, 0.0, 0.0, 0.0)),
        ({"other": "x"}, (0.0, 0.0, 0.0, 0.0)),
        ({"hour": "6"}, (1.0, 1.0, math.cos(math.pi / 2), 0.0)),
        ({"hour": "0"}, (1.0, 0.0, 1.0, 0.0)),
        ({"hour": "18", "weekend": "false"}, (1.0, -1.0, math.cos(3 * math.pi / 2), 0.0)),
        ({"hour": "15.5", "weekend": "1"}, (1.0, math.sin(A1530), math.cos(A1530), 1.0)),
        ({"weekend": " TRUE "}, (1.0, 0.0, 0.0, 1.0)),
        ({"weekend": "no"}, (1.0, 0.0, 0.0, 0.0)),
        ({"timestamp": SAT_1530}, (1.0, math.sin(A1530), math.cos(A1530), 1.0)),
        ({"timestamp": MON_0600}, (1.0, 1.0, math.cos(math.pi / 2), 0.0)),
        ({"timestamp": SAT_1530, "hour": "6", "weekend": "0"}, (1.0, 1.0, math.cos(math.pi / 2), 0.0)),
    ],
    ids=["none", "unrelated", "6h", "0h", "18h", "15.5h-weekend", "weekend-only", "weekday-only", "sat", "mon", "mix"],
)
def test_time_features(fz: ContextFeaturizer, context: dict[str, str], expected: tuple[float, ...]) -> None:
    assert ContextFeaturizer.time_features(context) == pytest.approx(expected, abs=1e-15)
    feats = fz.features(q("blue train", context=context))
    assert (feats["time_known"], feats["hour_sin"], feats["hour_cos"], feats["weekend"]) == pytest.approx(
        expected, abs=1e-15
    )


@pytest.mark.parametrize(
    ("context", "field", "message"),
    [
        ({"hour": "25"}, "context.hour", "must be a number in [0, 24), got '25'"),
        ({"hour": "24"}, "context.hour", "must be a number in [0, 24), got '24'"),
        ({"hour": "-1"}, "context.hour", "must be a number in [0, 24), got '-1'"),
        ({"hour": "x"}, "context.hour", "must be a number in [0, 24), got 'x'"),
        ({"hour": ""}, "context.hour", "must be a number in [0, 24), got ''"),
        ({"hour": "nan"}, "context.hour", "must be a number in [0, 24), got 'nan'"),
        ({"weekend": "maybe"}, "context.weekend", "must be true or false, got 'maybe'"),
        ({"hour": "6", "weekend": ""}, "context.weekend", "must be true or false, got ''"),
        ({"timestamp": "abc"}, "context.timestamp", "must be unix seconds, got 'abc'"),
        ({"timestamp": "nan"}, "context.timestamp", "must be unix seconds, got 'nan'"),
        ({"timestamp": "1e300"}, "context.timestamp", "must be unix seconds, got '1e300'"),
    ],
)
def test_invalid_context(fz: ContextFeaturizer, context: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(f"{field}: {message}")) as exc:
        ContextFeaturizer.time_features(context)
    assert (exc.value.field, exc.value.message) == (field, message)
    with pytest.raises(InvalidRequest, match=re.escape(f"{field}: {message}")) as exc:
        fz.features(q("blue train", context=context))
    assert exc.value.field == field


# --------------------------------------------------------------------------- vector
def test_vector_order(fz: ContextFeaturizer) -> None:
    feats = fz.features(q("daft punk"), stats=(3, 1))
    vec = fz.vector(feats)
    assert vec.shape == (fz.dim,) and vec.dtype == np.float64
    assert vec.tolist() == [feats[n] for n in fz.names]


def test_vector_missing_names_are_zero(fz: ContextFeaturizer) -> None:
    vec = fz.vector({"hist.vector": 0.25, "bias": 1.0, "dropped_feature": 9.0})
    expected = np.zeros(fz.dim)
    expected[0] = 1.0
    expected[fz.dim - 1] = 0.25
    np.testing.assert_array_equal(vec, expected)
    np.testing.assert_array_equal(fz.vector({}), np.zeros(fz.dim))


def test_ignored_features_are_logged_but_read_as_zero() -> None:
    fz = ContextFeaturizer(STRATEGIES, NAMES, ignore=("mem_*", "hist.*", "user_known"))
    assert fz.ignored == ("mem_seen", "mem_searches", "mem_positive_rate", "hist.lexical", "hist.vector", "user_known")
    assert fz.dim == ContextFeaturizer(STRATEGIES, NAMES).dim
    user = UserProfile(user_id="lfm:1", top_tags=(("rock", 1.0),), top_artists=())
    feats = fz.features(q("daft punk"), user=user, stats=(3, 1), class_rates=np.full((len(QUERY_CLASSES), 2), 0.5))
    assert feats["mem_seen"] == 1.0 and feats["hist.lexical"] == 0.5 and feats["user_known"] == 1.0
    vec = fz.vector(feats)
    for i, name in enumerate(fz.names):
        assert vec[i] == (0.0 if name in fz.ignored else feats[name]), name
    assert vec[fz.names.index("name_exact")] == 1.0


@pytest.mark.parametrize("pattern", ["mem*x", "hist", "nope.*", "bias "])
def test_ignore_pattern_matching_nothing_is_an_error(pattern: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"feature pattern {pattern!r} matches no feature")):
        ContextFeaturizer(STRATEGIES, NAMES, ignore=(pattern,))
