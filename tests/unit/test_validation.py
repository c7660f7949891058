import pytest

from ltrr.errors import InvalidRequest
from ltrr.validation import entity_from_fields, validate_feedback, validate_search

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
