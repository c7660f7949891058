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
        # a query with nothing to retrieve or learn once normalised (the memory would refuse to learn it)
        ({"query": "!!!"}, "query", "must contain a word (a letter, digit, '&' or '+'), got '!!!'"),
        ({"query": "\u200b"}, "query", "must contain a word (a letter, digit, '&' or '+'), got '\\u200b'"),
        ({"query": "' ' -- ?"}, "query", "must contain a word (a letter, digit, '&' or '+'), got \"' ' -- ?\""),
        ({"query": "\u0301\u0301"}, "query", "must contain a word (a letter, digit, '&' or '+'), got '\u0301\u0301'"),
        # NUL is refused; other control characters are blanks
        ({"query": "sad\x00songs"}, "query", "must not contain NUL (\\x00)"),
        ({"query": "\x00"}, "query", "must not contain NUL (\\x00)"),
        ({"query": "\x01\x7f\x9f"}, "query", "must not be empty"),
        ({"query": "x" * 255 + "\x07\x07y"}, "query", "must be at most 256 characters, got 257"),
        ({"user_id": "u\x001"}, "user_id", "must not contain NUL (\\x00)"),
        ({"user_id": "u\t1"}, "user_id", "must not contain control characters, got 'u\\t1'"),
        ({"context": {"hour": "2\x001"}}, "context", "value of 'hour' must not contain NUL (\\x00)"),
        ({"context": {"ho\x00ur": "21"}}, "context", "keys must not contain NUL (\\x00)"),
        ({"context": {"ho\x1bur": "21"}}, "context", "keys must not contain control characters, got 'ho\\x1bur'"),
        # a message quotes at most 64 characters of what it refuses
        (
            {"entity_types": ["a" * 100_000]},
            "entity_types",
            f"unknown entity type {'a' * 64!r}... (100000 characters); valid: artist, track, playlist, podcast",
        ),
        (
            {"strategies": ["b" * 65]},
            "strategies",
            f"unknown strategy {'b' * 64!r}... (65 characters); valid: lexical, vector, graph, memory",
        ),
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
    assert _search(query="\tsad\r\nsongs\x0b\x85for\x1b[0mme\x7f").query == "sad songs for [0mme", "controls are blanks"
    assert _search(query=" & ").query == "&" and _search(query="AC/DC").query == "AC/DC", "a word once normalised"
    assert _search(user_id=" lfm:2\n").user_id == "lfm:2", "ids are trimmed, as before"
    assert _search(context={"device": " mobile\tphone ", "hour": ""}).context == {"device": "mobile phone", "hour": ""}
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
        ({"request_id": "r\x001"}, "request_id", "must not contain NUL (\\x00)"),
        ({"event_id": "e\x1f1"}, "event_id", "must not contain control characters, got 'e\\x1f1'"),
        ({"entity_id": "artist:\x00"}, "entity_id", "must not contain NUL (\\x00)"),
        (
            {"action": "c" * 1000},
            "action",
            f"unknown action {'c' * 64!r}... (1000 characters); valid: click, play, favorite, skip",
        ),
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
        ({"entity_id": "artist:\x001"}, "entities[3].entity_id", "must not contain NUL (\\x00)"),
        (
            {"entity_id": "artist:\n1"},
            "entities[3].entity_id",
            "must not contain control characters, got 'artist:\\n1'",
        ),
        (
            {"entity_type": "x" * 70},
            "entities[3].entity_type",
            f"unknown entity type {'x' * 64!r}... (70 characters); valid: artist, track, playlist, podcast",
        ),
        ({"title": "t" * 700}, "entities[3].title", "must be at most 512 characters, got 700"),
        ({"title": "A\x00"}, "entities[3].title", "must not contain NUL (\\x00)"),
        ({"subtitle": "s" * 513}, "entities[3].subtitle", "must be at most 512 characters, got 513"),
        ({"subtitle": "\x00"}, "entities[3].subtitle", "must not contain NUL (\\x00)"),
        ({"description": "d" * 8193}, "entities[3].description", "must be at most 8192 characters, got 8193"),
        ({"description": "line\x00"}, "entities[3].description", "must not contain NUL (\\x00)"),
        ({"tags": [f"t{i}" for i in range(65)]}, "entities[3].tags", "must have at most 64 entries, got 65"),
        ({"tags": ["rock", "x" * 129]}, "entities[3].tags[1]", "must be at most 128 characters, got 129"),
        ({"tags": ["ro\x00ck"]}, "entities[3].tags[0]", "must not contain NUL (\\x00)"),
        ({"tags": ["rock", 7]}, "entities[3].tags[1]", "must be a string, got int"),
        ({"genres": [f"g{i}" for i in range(65)]}, "entities[3].genres", "must have at most 64 entries, got 65"),
        ({"genres": ["pop", "x" * 200]}, "entities[3].genres[1]", "must be at most 128 characters, got 200"),
        ({"genres": ["\x00"]}, "entities[3].genres[0]", "must not contain NUL (\\x00)"),
        ({"attrs": {f"k{i}": "v" for i in range(65)}}, "entities[3].attrs", "must have at most 64 entries, got 65"),
        ({"attrs": {"": "v"}}, "entities[3].attrs", "keys must be 1-64 characters, got 0"),
        ({"attrs": {"k" * 65: "v"}}, "entities[3].attrs", "keys must be 1-64 characters, got 65"),
        ({"attrs": {"album\x00": "v"}}, "entities[3].attrs", "keys must not contain NUL (\\x00)"),
        ({"attrs": {"al\tbum": "v"}}, "entities[3].attrs", "keys must not contain control characters, got 'al\\tbum'"),
        (
            {"attrs": {"album": "v" * 1025}},
            "entities[3].attrs",
            "value of 'album' must be at most 1024 characters, got 1025",
        ),
        ({"attrs": {"album": "O\x00K"}}, "entities[3].attrs", "value of 'album' must not contain NUL (\\x00)"),
        ({"attrs": {"year": 1997}}, "entities[3].attrs", "value of 'year' must be a string, got int"),
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
    at_limits = entity_from_fields(
        0,
        entity_id="track:1",
        entity_type="track",
        title="t" * 512,
        subtitle="s" * 512,
        description="Line one.\nLine\ttwo." + "d" * 8172,
        genres=["g" * 128] * 64,
        tags=[f"t{i}" for i in range(64)],
        attrs={f"{i:064d}": "v" * 1024 for i in range(64)},
    )
    assert at_limits.description.startswith("Line one.\nLine\ttwo."), "entity text is stored as sent"
    assert len(at_limits.tags) == 64 and len(at_limits.attrs) == 64


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
        ({"user_id": "u\x00"}, "users[3].user_id", "must not contain NUL (\\x00)"),
        ({"user_id": "u\x1b1"}, "users[3].user_id", "must not contain control characters, got 'u\\x1b1'"),
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
