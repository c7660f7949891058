import pytest

from ltrr.errors import InvalidRequest
from ltrr.types import UserProfile
from ltrr.validation import entity_from_fields, user_from_fields, validate_feedback, validate_search

KNOWN = ("lexical", "vector", "graph", "memory")


def _search(**kw):
    base = {"query": "radiohead", "known_strategies": KNOWN}
    base.update(kw)
    return validate_search(**base)


@pytest.mark.parametrize(
    "kwargs, field, message",
    [
        ({"query": ""}, "query", "must not be empty"),
        ({"query": "   \t "}, "query", "must not be empty"),
        ({"query": "x" * 257}, "query", "must be at most 256 characters, got 257"),
        ({"k": 101}, "k", "must be in [1, 100] (0 means 10), got 101"),
        ({"k": -1}, "k", "must be in [1, 100] (0 means 10), got -1"),
        (
            {"entity_types": ["album"]},
            "entity_types",
            "unknown entity type 'album'; valid: artist, track, playlist, podcast",
        ),
        ({"strategies": ["bm25"]}, "strategies", "unknown strategy 'bm25'; valid: lexical, vector, graph, memory"),
        ({"context": {f"k{i}": "v" for i in range(33)}}, "context", "must have at most 32 entries, got 33"),
        ({"context": {"hour": "x" * 257}}, "context", "value of 'hour' must be at most 256 characters, got 257"),
        ({"context": {"k" * 65: "v"}}, "context", "keys must be 1-64 characters, got 65"),
        ({"user_id": "u" * 129}, "user_id", "must be at most 128 characters, got 129"),
        ({"budgets": {"bm25": 10}}, "budgets", "unknown strategy 'bm25'; valid: lexical, vector, graph, memory"),
        ({"budgets": {"vector": 0}}, "budgets", "must give at least one strategy a budget above 0"),
        (
            {"budgets": {"vector": 30}, "ladder": (0, 10, 25)},
            "budgets[vector]",
            "must be on the budget ladder [0, 10, 25], got 30",
        ),
        ({"budgets": {"vector": 5000}}, "budgets[vector]", "must be in [0, 1000], got 5000"),
        ({"budgets": {"vector": -1}}, "budgets[vector]", "must be in [0, 1000], got -1"),
    ],
)
def test_search_invalid(kwargs, field, message):
    with pytest.raises(InvalidRequest) as ei:
        _search(**kwargs)
    assert ei.value.field == field
    assert ei.value.message == message
    assert str(ei.value) == f"{field}: {message}"


def test_search_normalises():
    p = _search(query="  artists   like\tradiohead ", k=0, entity_types=["Artist", "artist"], strategies=["Graph"])
    assert p.query == "artists like radiohead"
    assert p.k == 10
    assert p.entity_types == ("artist",)
    assert p.strategies == ("graph",)
    assert _search(query="x" * 256, k=100).k == 100
    plan = _search(budgets={"Vector": 25, "graph": 0}, ladder=(0, 10, 25)).budgets
    assert plan == {"lexical": 0, "vector": 25, "graph": 0, "memory": 0}, "unnamed strategies are not called"
    assert _search().budgets == {}


@pytest.mark.parametrize(
    "kwargs, field, message",
    [
        ({"request_id": ""}, "request_id", "is required"),
        ({"event_id": " "}, "event_id", "is required"),
        ({"entity_id": ""}, "entity_id", "is required"),
        ({"action": "like"}, "action", "unknown action 'like'; valid: click, play, favorite, skip"),
        ({"position": 101}, "position", "must be in [0, 100], got 101"),
        ({"request_id": "r" * 129}, "request_id", "must be at most 128 characters, got 129"),
    ],
)
def test_feedback_invalid(kwargs, field, message):
    base = {"request_id": "r1", "event_id": "e1", "entity_id": "artist:x", "action": "click", "position": 1}
    base.update(kwargs)
    with pytest.raises(InvalidRequest) as ei:
        validate_feedback(**base)
    assert (ei.value.field, ei.value.message) == (field, message)


def test_feedback_ok():
    p = validate_feedback(request_id="r1", event_id="e1", entity_id="artist:x", action="PLAY", position=0)
    assert p.action == "play"


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"entity_id": ""}, "entities[3].entity_id", "is required"),
        (
            {"entity_type": "album"},
            "entities[3].entity_type",
            "unknown entity type 'album'; valid: artist, track, playlist, podcast",
        ),
        ({"entity_id": "track:1"}, "entities[3].entity_id", "must start with 'artist:', got 'track:1'"),
        ({"title": ""}, "entities[3].title", "is required"),
        ({"popularity": 101.0}, "entities[3].popularity", "must be in [0, 100], got 101.0"),
    ],
)
def test_entity_invalid(fields, field, message):
    base = {"entity_id": "artist:1", "entity_type": "artist", "title": "A", "popularity": 5.0}
    base.update(fields)
    with pytest.raises(InvalidRequest) as ei:
        entity_from_fields(3, **base)
    assert (ei.value.field, ei.value.message) == (field, message)


def test_entity_ok():
    e = entity_from_fields(0, entity_id="artist:1", entity_type="artist", title="A", tags=["rock"], popularity=5.0)
    assert e.tags == ("rock",) and e.popularity == 5.0


def _user(**fields):
    base = {"user_id": "u1", "top_artists": [("artist:a", 2.0)], "top_tags": [("rock", 1.0)]}
    base.update(fields)
    return user_from_fields(3, **base)


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"user_id": ""}, "users[3].user_id", "is required"),
        ({"user_id": "  "}, "users[3].user_id", "is required"),
        ({"user_id": None}, "users[3].user_id", "must be a string, got NoneType"),
        ({"user_id": "u" * 129}, "users[3].user_id", "must be at most 128 characters, got 129"),
        (
            {"top_artists": [(f"artist:{i}", 1.0) for i in range(51)]},
            "users[3].top_artists",
            "must have at most 50 entries, got 51",
        ),
        (
            {"top_tags": [(f"t{i}", 1.0) for i in range(21)]},
            "users[3].top_tags",
            "must have at most 20 entries, got 21",
        ),
        ({"top_tags": "rock"}, "users[3].top_tags", "must be a list of (name, weight) pairs, got str"),
        ({"top_tags": [("rock", 1.0, 2)]}, "users[3].top_tags[0]", "must be a (name, weight) pair"),
        (
            {"top_artists": [("artist:a", 0.0)]},
            "users[3].top_artists[0].weight",
            "must be a finite number > 0, got 0.0",
        ),
        (
            {"top_artists": [("artist:a", 1.0), ("artist:b", -2)]},
            "users[3].top_artists[1].weight",
            "must be a finite number > 0, got -2",
        ),
        ({"top_tags": [("rock", float("nan"))]}, "users[3].top_tags[0].weight", "must be a finite number > 0, got nan"),
        ({"top_tags": [("rock", float("inf"))]}, "users[3].top_tags[0].weight", "must be a finite number > 0, got inf"),
        ({"top_tags": [("rock", "1")]}, "users[3].top_tags[0].weight", "must be a finite number > 0, got '1'"),
        ({"top_tags": [("rock", True)]}, "users[3].top_tags[0].weight", "must be a finite number > 0, got True"),
        ({"top_artists": [(" ", 1.0)]}, "users[3].top_artists[0].name", "is required"),
        ({"top_tags": [("\u200b", 1.0)]}, "users[3].top_tags[0].name", "is required"),
        ({"top_tags": [(7, 1.0)]}, "users[3].top_tags[0].name", "must be a string, got int"),
        ({"top_tags": [("x" * 129, 1.0)]}, "users[3].top_tags[0].name", "must be at most 128 characters, got 129"),
        (
            {"top_artists": [("radiohead", 1.0)]},
            "users[3].top_artists[0].name",
            "must be an artist entity id (artist:...), got 'radiohead'",
        ),
        (
            {"top_artists": [("artist:a", 1.0), ("artist:zz", 1.0)], "known_artists": {"artist:a"}},
            "users[3].top_artists[1].name",
            "unknown artist 'artist:zz': not in the catalog",
        ),
    ],
)
def test_user_invalid(fields, field, message):
    with pytest.raises(InvalidRequest) as ei:
        _user(**fields)
    assert (ei.value.field, ei.value.message) == (field, message)


def test_user_merges_duplicates_and_normalises():
    p = _user(
        user_id=" lfm:2 ",
        top_artists=[("artist:a", 1.0), ("artist:b", 3), (" artist:a ", 1.0)],
        top_tags=[("Hip-Hop", 1.0), ("hip hop", 1.0), ("rock", 2.0)],
        known_artists={"artist:a", "artist:b"},
    )
    assert p.user_id == "lfm:2"
    assert p.top_artists == (("artist:b", 0.6), ("artist:a", 0.4))
    assert p.top_tags == (("hip hop", 0.5), ("rock", 0.5))
    assert _user(top_artists=[], top_tags=[]) == UserProfile("u1"), "an empty profile is a profile"
