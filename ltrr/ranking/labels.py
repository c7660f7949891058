"""Graded relevance labels for one search, from the feedback the user gave on its results.

The ranker learns the order of a shown list, so its training target is one label per shown entity
(CatBoost's ranking losses group rows by search and read the label as a graded relevance). The
grades follow how much each action says about the user's intent:

============  =====  ==========================================================================
action        grade  why
============  =====  ==========================================================================
``favorite``  3      the user kept it: the strongest signal we get
``play``      2      the user consumed it, which a mis-click rarely leads to
``click``     1      the user was drawn to it, but a click alone may be a look that disappoints
``skip``      0      the user rejected it; cancels any earlier positive on the same entity
============  =====  ==========================================================================

A skip is the negative grade, but it is expressed as 0 and not as a negative number: CatBoost's
graded ranking targets are non-negative, and 0 is already the label of a shown entity the user
ignored. What makes a skip a negative is order: events are read in time order (``ts``, ties in the
given order), and an entity's label is the largest positive grade it earned *after* its last skip.
So "clicked then skipped" is 0, the user opened it and turned it down, while "skipped then played"
is 2, the user came back to it. An entity with no feedback is 0; pass ``shown`` to get those rows.

A search without any positive label carries no ranking signal (every order of an all-zero list is
equally good) and is left out of training (:func:`is_labelled`).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

#: Grade of each feedback action (module docstring); one per :data:`ltrr.validation.FEEDBACK_ACTIONS`.
GRADES: dict[str, float] = {"favorite": 3.0, "play": 2.0, "click": 1.0, "skip": 0.0}


class Feedback(Protocol):
    """What labelling reads of a feedback event (:class:`ltrr.eventlog.FeedbackEvent` has it)."""

    @property
    def entity_id(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def ts(self) -> float: ...


def search_labels(feedback: Iterable[Feedback], shown: Iterable[str] = ()) -> dict[str, float]:
    """``{entity_id: label}`` for one search: every entity in ``feedback``, plus ``shown`` ones at 0.

    Raises ``ValueError`` naming an action that is not in :data:`GRADES`.
    """
    events = sorted(feedback, key=lambda e: e.ts)  # stable: equal timestamps keep the given order
    labels: dict[str, float] = dict.fromkeys(shown, 0.0)
    for e in events:
        if e.action not in GRADES:
            raise ValueError(f"`action` must be one of {', '.join(GRADES)}, got {e.action!r}")
        if e.action == "skip":
            labels[e.entity_id] = 0.0
        else:
            labels[e.entity_id] = max(labels.get(e.entity_id, 0.0), GRADES[e.action])
    return labels


def is_labelled(labels: Mapping[str, float]) -> bool:
    """True when the search has at least one positive label, i.e. something for the ranker to learn."""
    return any(v > 0 for v in labels.values())
