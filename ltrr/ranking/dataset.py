"""Training groups from the event log: the logged feature rows of each search, labelled by its feedback.

Each search logs the ranker's feature rows of the top of its served order
(:func:`ltrr.ranking.features.pack`); its feedback grades them
(:func:`ltrr.ranking.labels.search_labels`). A row's position is its place in the
served order, which is what the user saw. With ``position_bias="regression_em"``
the examination probability per position is estimated from the same log
(:func:`ltrr.ranking.position_bias.estimate_by_regression_em`, relevance
regressed on the standardised features) and each labelled row is weighted by its
inverse. The examination model is fitted on every search that showed results,
clicked or not (``LogGroups.unclicked`` keeps the top rows of those without a
positive): fitted on clicked searches only, it would read "somebody clicked" into
every list. Searches logged under another feature schema are counted and skipped,
never read with the wrong meaning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from ltrr.events import FeedbackEvent, SearchEvent
from ltrr.ranking import features as F
from ltrr.ranking.labels import is_labelled, search_labels
from ltrr.ranking.position_bias import Examination, estimate_by_regression_em
from ltrr.ranking.train import Group

log = logging.getLogger("ltrr.ranking")
#: positions the examination model covers (deeper rows take position 10's weight)
EXAMINED = 10


@dataclass
class LogGroups:
    """What :func:`groups_from_log` read: the groups, and what it skipped."""

    groups: list[Group] = field(default_factory=list)
    #: how many searches were skipped, by reason
    skipped: dict[str, int] = field(default_factory=dict)
    #: the top :data:`EXAMINED` feature rows of each search shown without a positive (for the examination fit)
    unclicked: list[np.ndarray] = field(default_factory=list)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


NO_POSITIVE = "no positive feedback"


def served_positions(g: Group) -> np.ndarray:
    """The 1-based position each row of ``g`` was served at (its rows are logged in served order)."""
    return np.arange(1, len(g.ids) + 1)


def _rows(event: SearchEvent) -> tuple[list[str], np.ndarray] | str:
    """The logged feature rows of a search, or why it has none that this schema reads."""
    if not event.ranking:
        return "no ranking features"
    try:
        return F.unpack(event.ranking)
    except F.SchemaMismatch:
        return f"feature schema {event.ranking.get('schema')}"


def group_of(event: SearchEvent, feedback: Sequence[FeedbackEvent]) -> Group | str:
    """The training group of one search, or why there is none."""
    rows = _rows(event)
    return rows if isinstance(rows, str) else _group(event, *rows, feedback)


def _group(event: SearchEvent, ids: list[str], x: np.ndarray, feedback: Sequence[FeedbackEvent]) -> Group | str:
    labels = search_labels(feedback)
    if not is_labelled(labels):
        return NO_POSITIVE
    y = np.array([labels.get(i, 0.0) for i in ids], dtype=float)
    if not (y > 0).any():
        return "clicked item not among the logged rows"
    return Group(
        group_id=event.request_id,
        ts=float(event.ts),
        ids=tuple(ids),
        x=x,
        labels=y,
        weights=np.ones(len(ids)),
        baseline=x[:, F.INDEX["rrf"]].astype(float),
    )


def groups_from_log(rows: Iterable[tuple[SearchEvent, Sequence[FeedbackEvent]]]) -> LogGroups:
    """Every labelled search of ``rows`` (``SQLiteEventLog.recent_searches``) as a group; the top rows of
    the unclicked ones kept for the examination fit."""
    out = LogGroups()
    for event, feedback in rows:
        logged = _rows(event)
        if isinstance(logged, str):
            out.skip(logged)
            continue
        got = _group(event, *logged, feedback)
        if isinstance(got, str):
            out.skip(got)
            if got == NO_POSITIVE and event.shown:
                out.unclicked.append(logged[1][: min(EXAMINED, len(event.shown))])
            continue
        out.groups.append(got)
    return out


#: below this many clicks per clicked search, users are taken to stop at their click (see estimate_examination)
ONE_CLICK = 1.2


def estimate_examination(
    data: LogGroups, *, max_position: int = EXAMINED, seed: int = 0, stop_at_click: bool | None = None
) -> Examination | None:
    """Regression-EM over the top ``max_position`` rows of every group; None when the log cannot
    identify it yet (some position never shown, or no click in the top positions).

    Regression-EM assumes the position-based model: every examined relevant result is clicked. Users
    who click one result and stop break it: a relevant result below the click was never looked at,
    yet it reads as "relevant, so unexamined", and the estimate collapses (simulated, single click,
    true theta_2 = 0.5: estimated 0.31 on a noisy order, 0.03 on the cold-start model's order).
    With ``stop_at_click`` the rows below a search's last click are left out (not examined), which
    recovers theta under that behaviour (0.48) but over-estimates it when users do click every
    relevant result they see (0.61 instead of 0.5). None (the default) decides from the log: users
    stop at their click when clicked searches average fewer than :data:`ONE_CLICK` clicks."""
    clicked = [int((g.labels[:max_position] > 0).sum()) for g in data.groups]
    with_click = [n for n in clicked if n]
    if stop_at_click is None:
        stop_at_click = bool(with_click) and float(np.mean(with_click)) < ONE_CLICK
    xs, ps, cs = [], [], []
    for g in data.groups:
        pos = served_positions(g)
        top = pos <= max_position
        hit = top & (g.labels > 0)
        if stop_at_click and hit.any():
            top &= pos <= pos[hit].max()
        xs.append(g.x[top])
        ps.append(pos[top])
        cs.append((g.labels[top] > 0).astype(int))
    for x in data.unclicked:
        xs.append(x[:max_position])
        ps.append(np.arange(1, len(xs[-1]) + 1))
        cs.append(np.zeros(len(xs[-1]), dtype=int))
    if not xs:
        return None
    x = np.nan_to_num(np.concatenate(xs).astype(float), nan=0.0)
    missing = np.isnan(np.concatenate(xs)).astype(float)
    design = np.column_stack([x, missing])
    sd = design.std(axis=0)
    keep = sd > 0
    design = (design[:, keep] - design[:, keep].mean(axis=0)) / sd[keep]
    try:
        exam = estimate_by_regression_em(
            np.concatenate(ps), np.concatenate(cs), features=design, max_position=max_position, seed=seed
        )
        return replace(exam, estimator="regression_em" + (", stop at click" if stop_at_click else ""))
    except ValueError as exc:
        log.info("ranker: examination not estimated (%s)", exc)
        return None


def weighted(data: LogGroups, examination: Examination | None) -> list[Group]:
    """The groups with each labelled row weighted by its inverse examination probability (1 if None)."""
    if examination is None:
        return list(data.groups)
    out = []
    for g in data.groups:
        w = np.where(g.labels > 0, examination.weight(served_positions(g)), 1.0)
        out.append(Group(g.group_id, g.ts, g.ids, g.x, g.labels, w, g.baseline))
    return out
