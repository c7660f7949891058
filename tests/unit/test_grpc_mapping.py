"""The ingress's request → validator mapping (ltrr.grpc_mapping): every field reaches its validator, and a
message that did not decode is refused naming it. tests/unit/test_fuzz_validation.py fuzzes the same functions."""

from __future__ import annotations

import pytest

from ltrr import grpc_mapping as gm
from ltrr.errors import InvalidRequest
from ltrr.grpc_servicer import Undecodable
from ltrr.types import Entity, UserProfile
from ltrr.v1 import search_pb2 as pb
from ltrr.validation import FeedbackParams, SearchParams

BAD = Undecodable("ltrr.v1.X", "bad")


def test_search_params_pass_every_field():
    request = pb.SearchRequest(
        query=" Sad  songs ", user_id=" u1 ", k=5, entity_types=["track", "artist", "track"], context={"hour": "21"},
        strategies=["graph", "lexical"], explain=True, budgets={"graph": 10, "lexical": 0},
    )  # fmt: skip
    params = gm.search_params(request, known_strategies=("lexical", "graph"), ladder=(0, 10))
    assert params == SearchParams(
        query="Sad songs", user_id="u1", k=5, entity_types=("track", "artist"), context={"hour": "21"},
        strategies=("graph", "lexical"), explain=True, budgets={"graph": 10, "lexical": 0},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            pb.SearchRequest(query="q", strategies=["vector"]),
            "strategies: unknown strategy 'vector'; valid: lexical, graph",
        ),
        (
            pb.SearchRequest(query="q", budgets={"graph": 25}),
            "budgets[graph]: must be on the budget ladder [0, 10], got 25",
        ),
    ],
)
def test_search_params_check_against_the_given_strategies_and_ladder(request_, message):
    with pytest.raises(InvalidRequest) as ei:
        gm.search_params(request_, known_strategies=("lexical", "graph"), ladder=(0, 10))
    assert str(ei.value) == message


def test_feedback_params_pass_every_field():
    request = pb.FeedbackRequest(request_id="r1", event_id="e1", entity_id="artist:1", action="click", position=3)
    assert gm.feedback_params(request) == FeedbackParams("r1", "e1", "artist:1", "click", 3)


def test_entity_passes_every_field_and_is_sourced_upsert():
    msg = pb.Entity(
        entity_id="track:1", entity_type="track", title="Creep", subtitle="Radiohead", genres=["rock"],
        tags=["90s", "alt"], description="A song.", popularity=70.0, attrs={"album": "Pablo Honey"},
    )  # fmt: skip
    assert gm.entity(0, msg) == Entity(
        "track:1", "track", "Creep", subtitle="Radiohead", genres=("rock",), tags=("90s", "alt"),
        description="A song.", popularity=70.0, sources=("upsert",), attrs={"album": "Pablo Honey"},
    )  # fmt: skip
    with pytest.raises(InvalidRequest, match=r"^entities\[4\]\.title: "):
        gm.entity(4, pb.Entity(entity_id="track:1", entity_type="track"))


def test_user_passes_the_weighted_names_and_checks_the_known_artists():
    msg = pb.UserProfile(
        user_id="u1",
        top_artists=[pb.WeightedName(name="artist:1", weight=3.0), pb.WeightedName(name="artist:2", weight=1.0)],
        top_tags=[pb.WeightedName(name="Rock", weight=1.0)],
    )
    assert gm.user(0, msg, None) == UserProfile(
        "u1", top_artists=(("artist:1", 0.75), ("artist:2", 0.25)), top_tags=(("rock", 1.0),)
    )
    with pytest.raises(InvalidRequest) as ei:
        gm.user(2, msg, {"artist:1"})
    assert str(ei.value) == "users[2].top_artists[1].name: unknown artist 'artist:2': not in the catalog"


def test_artist_ids_are_the_distinct_trimmed_names_sorted():
    msgs = [
        pb.UserProfile(user_id="a", top_artists=[pb.WeightedName(name=" artist:2 "), pb.WeightedName(name="artist:1")]),
        pb.UserProfile(user_id="b", top_artists=[pb.WeightedName(name="artist:2")]),
    ]
    assert gm.artist_ids(msgs) == ["artist:1", "artist:2"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: gm.search_params(BAD, known_strategies=(), ladder=()), "request"),
        (lambda: gm.feedback_params(BAD), "request"),
        (lambda: gm.entity(3, BAD), "entities[3]"),
        (lambda: gm.user(2, BAD, None), "users[2]"),
        (lambda: gm.artist_ids([pb.UserProfile(user_id="a"), BAD]), "users[1]"),
    ],
)
def test_a_message_that_did_not_decode_is_refused_naming_it(call, field):
    with pytest.raises(InvalidRequest) as ei:
        call()
    assert str(ei.value) == f"{field}: is not a valid ltrr.v1.X message (bad)"
