"""The ingress's mapping of each ``ltrr.v1`` request message onto its validator (:mod:`ltrr.validation`).

Each function first refuses a message that did not decode (an :class:`~ltrr.grpc_servicer.Undecodable`,
with :func:`~ltrr.grpc_servicer.check_decoded`: ``INVALID_ARGUMENT`` naming the message, e.g.
``entities[3]``), then hands the message's fields to the validator as plain Python values: ``list(...)`` of
the repeated fields, ``dict(...)`` of the maps, ``(name, weight)`` pairs of the weighted names. Whatever the
validator refuses is an :class:`~ltrr.errors.InvalidRequest` naming the field.

``deployments/ingress.py`` calls these and nothing else to turn a request into parameters, and
``tests/unit/test_fuzz_validation.py`` fuzzes them, so the fuzzer exercises the exact mapping the app runs.
No Ray here.
"""

from __future__ import annotations

from typing import Any, Container, Iterable, Sequence

from ltrr.grpc_servicer import check_decoded
from ltrr.types import Entity, UserProfile
from ltrr.v1 import search_pb2 as pb
from ltrr.validation import (
    FeedbackParams,
    SearchParams,
    entity_from_fields,
    user_from_fields,
    validate_feedback,
    validate_search,
)


def search_params(request: pb.SearchRequest, *, known_strategies: Iterable[str], ladder: Sequence[int]) -> SearchParams:
    """A ``Search`` request's parameters (:func:`~ltrr.validation.validate_search`): ``known_strategies`` are
    the enabled strategies, ``ladder`` the budgets a caller may force (``policy.ladder``)."""
    check_decoded(request)
    return validate_search(
        query=request.query,
        user_id=request.user_id,
        k=request.k,
        entity_types=list(request.entity_types),
        context=dict(request.context),
        strategies=list(request.strategies),
        explain=request.explain,
        known_strategies=known_strategies,
        budgets=dict(request.budgets),
        ladder=ladder,
    )


def feedback_params(request: pb.FeedbackRequest) -> FeedbackParams:
    """A ``Feedback`` request's parameters (:func:`~ltrr.validation.validate_feedback`)."""
    check_decoded(request)
    return validate_feedback(
        request_id=request.request_id,
        event_id=request.event_id,
        entity_id=request.entity_id,
        action=request.action,
        position=request.position,
    )


def entity(index: int, msg: pb.Entity) -> Entity:
    """The ``index``-th (0-based) message of an ``UpsertEntities`` stream as a catalog entity
    (:func:`~ltrr.validation.entity_from_fields`; errors name ``entities[index]...``), sourced ``"upsert"``."""
    check_decoded(msg, f"entities[{index}]")
    return entity_from_fields(
        index,
        entity_id=msg.entity_id,
        entity_type=msg.entity_type,
        title=msg.title,
        subtitle=msg.subtitle,
        genres=list(msg.genres),
        tags=list(msg.tags),
        description=msg.description,
        popularity=msg.popularity,
        attrs=dict(msg.attrs),
        sources=("upsert",),
    )


def artist_ids(msgs: Sequence[Any]) -> list[str]:
    """The distinct artist ids an ``UpsertUsers`` stream names, sorted, to look up in the catalog before
    :func:`user`; every message must have decoded (the first that did not is refused as ``users[i]``)."""
    for i, msg in enumerate(msgs):
        check_decoded(msg, f"users[{i}]")
    return sorted({n.name.strip() for msg in msgs for n in msg.top_artists})


def user(index: int, msg: pb.UserProfile, known_artists: Container[str] | None) -> UserProfile:
    """The ``index``-th (0-based) message of an ``UpsertUsers`` stream as a profile
    (:func:`~ltrr.validation.user_from_fields`; errors name ``users[index]...``). ``known_artists``: the
    catalog's artist ids among :func:`artist_ids`; an artist outside it is refused (None: not checked)."""
    check_decoded(msg, f"users[{index}]")
    return user_from_fields(
        index,
        user_id=msg.user_id,
        top_artists=[(n.name, n.weight) for n in msg.top_artists],
        top_tags=[(n.name, n.weight) for n in msg.top_tags],
        known_artists=known_artists,
    )
