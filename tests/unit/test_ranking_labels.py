"""Graded labels from one search's feedback: exact values per case, time order, unknown actions."""

from __future__ import annotations

import pytest

from ltrr.eventlog import FeedbackEvent
from ltrr.ranking.labels import GRADES, is_labelled, search_labels
from ltrr.validation import FEEDBACK_ACTIONS


def fb(entity_id: str, action: str, ts: float) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=f"ev-{entity_id}-{ts}", request_id="req-1", entity_id=entity_id, action=action, position=0, ts=ts
    )


def test_every_feedback_action_has_a_grade() -> None:
    assert set(GRADES) == set(FEEDBACK_ACTIONS)
    assert GRADES["favorite"] > GRADES["play"] > GRADES["click"] > GRADES["skip"] == 0.0


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([fb("a", "click", 1.0)], {"a": 1.0}),
        ([fb("a", "click", 1.0), fb("a", "play", 2.0)], {"a": 2.0}),  # play beats click
        ([fb("a", "play", 1.0), fb("a", "click", 2.0)], {"a": 2.0}),  # the max, not the last
        ([fb("a", "favorite", 1.0), fb("b", "click", 2.0)], {"a": 3.0, "b": 1.0}),
        ([fb("a", "click", 1.0), fb("a", "skip", 2.0)], {"a": 0.0}),  # clicked then skipped: a negative
        ([fb("a", "skip", 2.0), fb("a", "click", 1.0)], {"a": 0.0}),  # time order, not list order
        ([fb("a", "skip", 1.0), fb("a", "play", 2.0)], {"a": 2.0}),  # skipped, then came back to it
        ([fb("a", "skip", 1.0)], {"a": 0.0}),
        ([], {}),
    ],
    ids=[
        "click",
        "play-beats-click",
        "max-not-last",
        "favorite",
        "click-then-skip",
        "ts-order",
        "skip-then-play",
        "skip-only",
        "empty",
    ],
)
def test_labels(events: list[FeedbackEvent], expected: dict[str, float]) -> None:
    assert search_labels(events) == expected


def test_equal_timestamps_keep_the_given_order() -> None:
    assert search_labels([fb("a", "click", 1.0), fb("a", "skip", 1.0)]) == {"a": 0.0}
    assert search_labels([fb("a", "skip", 1.0), fb("a", "click", 1.0)]) == {"a": 1.0}


def test_shown_entities_without_feedback_are_zero() -> None:
    assert search_labels([fb("b", "play", 1.0)], shown=["a", "b", "c"]) == {"a": 0.0, "b": 2.0, "c": 0.0}


def test_unknown_action_is_named() -> None:
    with pytest.raises(ValueError) as err:
        search_labels([fb("a", "click", 1.0), fb("a", "like", 2.0)])
    assert str(err.value) == "`action` must be one of favorite, play, click, skip, got 'like'"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [({"a": 1.0}, True), ({"a": 0.0, "b": 3.0}, True), ({"a": 0.0}, False), ({}, False)],
)
def test_is_labelled(labels: dict[str, float], expected: bool) -> None:
    assert is_labelled(labels) is expected
