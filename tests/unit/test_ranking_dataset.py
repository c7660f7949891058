"""Training groups from logged searches, and the examination estimate under two kinds of users."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.eventlog import FeedbackEvent, SearchEvent
from ltrr.ranking import features as F
from ltrr.ranking.dataset import (
    LogGroups,
    estimate_examination,
    group_of,
    groups_from_log,
    served_positions,
    weighted,
)
from ltrr.ranking.train import Group

THETA = 1 / np.arange(1, 11)


def logged(rid: str, ids: list[str], shown: int = 3, schema: int = F.SCHEMA_VERSION) -> SearchEvent:
    x = np.full((len(ids), F.DIM), np.nan, dtype=np.float32)
    x[:, F.INDEX["rrf"]] = np.linspace(0.05, 0.01, len(ids))
    ranking = {**F.pack(ids, x), "schema": schema}
    return SearchEvent(rid, 1.0, "q", "", tuple(ids[:shown]), ranking=ranking)


def fb(rid: str, eid: str, action: str = "click", ts: float = 2.0) -> FeedbackEvent:
    return FeedbackEvent(f"{rid}-{eid}-{action}", rid, eid, action, 0, ts)


def test_a_logged_search_becomes_a_graded_group_with_served_positions():
    g = group_of(logged("r1", ["a", "b", "c", "d"]), [fb("r1", "c", "play"), fb("r1", "a")])
    pos = served_positions(g)
    assert g.ids == ("a", "b", "c", "d") and g.labels.tolist() == [1.0, 0.0, 2.0, 0.0]
    assert pos.tolist() == [1, 2, 3, 4] and g.weights.tolist() == [1.0] * 4
    np.testing.assert_allclose(g.baseline, np.linspace(0.05, 0.01, 4).astype(np.float32))


def test_searches_that_cannot_train_say_why_and_unclicked_ones_still_count_for_examination():
    rows = [
        (logged("r1", ["a", "b"]), [fb("r1", "a")]),
        (logged("r2", ["a", "b"]), []),
        (logged("r3", ["a", "b"], schema=0), [fb("r3", "a")]),
        (SearchEvent("r4", 1.0, "q", "", ("a",)), [fb("r4", "a")]),
        (logged("r5", ["a", "b"]), [fb("r5", "zz")]),
        (logged("r6", ["a", "b"]), [fb("r6", "a"), fb("r6", "a", "skip", ts=3.0)]),
    ]
    data = groups_from_log(rows)
    assert [g.group_id for g in data.groups] == ["r1"]
    assert data.skipped == {
        "no positive feedback": 2,
        "feature schema 0": 1,
        "no ranking features": 1,
        "clicked item not among the logged rows": 1,
    }
    assert len(data.unclicked) == 2 and data.unclicked[0].shape == (2, F.DIM)


def simulated(one_click: bool, searches: int = 3000, seed: int = 0) -> LogGroups:
    """Users examine position k with probability 1/k and find a result relevant by a logistic model of
    its features; the logged ranker orders by a noisy relevance score (so positions and relevance are
    correlated, but not confounded). ``one_click``: each user clicks the first examined relevant result
    and stops; otherwise every examined relevant result (the position-based model)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=4)
    out = LogGroups()
    for s in range(searches):
        x = rng.normal(size=(10, 4))
        order = np.argsort(-(x @ w + rng.normal(scale=1.5, size=10)))
        x = x[order]
        relevant = rng.random(10) < 1 / (1 + np.exp(-(x @ w - 1.5)))
        hits = np.flatnonzero(relevant & (rng.random(10) < THETA))
        labels = np.zeros(10)
        labels[hits[:1] if one_click else hits] = 1.0
        rows = np.zeros((10, F.DIM), dtype=np.float32)
        rows[:, :4] = x
        if labels.any():
            ids = tuple(f"e{s}-{i}" for i in range(10))
            out.groups.append(Group(f"s{s}", float(s), ids, rows, labels, np.ones(10), np.zeros(10)))
        else:
            out.unclicked.append(rows)
    return out


@pytest.mark.parametrize("one_click", [True, False])
def test_examination_is_recovered_whether_users_stop_at_their_click_or_not(one_click):
    data = simulated(one_click)
    exam = estimate_examination(data)
    assert exam is not None and exam.estimator == ("regression_em, stop at click" if one_click else "regression_em")
    # max abs error, seeds 0-2: stopping at the click 0.082, 0.023, 0.084; position-based 0.061, 0.025, 0.030.
    # The other reading of the same log: 0.112, 0.296, 0.400 and 0.181, 0.337, 0.704.
    assert np.abs(exam.theta - THETA).max() < 0.1, exam.theta.round(3)
    wrong = estimate_examination(data, stop_at_click=not one_click)
    assert wrong is not None and np.abs(wrong.theta - THETA).max() > 0.11, "the other reading is further off"


def test_weighted_scales_only_the_labelled_rows():
    data = simulated(True, searches=400)
    exam = estimate_examination(data)
    out = weighted(data, exam)
    g, pos = out[0], served_positions(out[0])
    clicked = g.labels > 0
    np.testing.assert_allclose(g.weights[clicked], exam.weight(pos[clicked]))
    assert (g.weights[~clicked] == 1.0).all()
    assert weighted(data, None)[0] is data.groups[0]
