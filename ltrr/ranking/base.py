"""What a ranker is, and the context it ranks in.

A :class:`Ranker` scores the union of candidates from the feature matrix of
:mod:`ltrr.ranking.features` (one row per candidate). The service computes the
features once per search, whichever ranker serves, and logs them with the
search: training reads exactly what was served, so there is no train/serve skew,
and a log served by RRF already trains the first learned model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np

from ltrr.fusion import FusedCandidate
from ltrr.types import Query, UserProfile


@dataclass(frozen=True)
class RankContext:
    """Everything about the search that is not the candidate: the query, who asks, what the policy decided."""

    query: Query
    user: UserProfile | None = None
    #: the policy's named context features (``class.*`` among them)
    context: Mapping[str, float] = field(default_factory=dict)
    #: the policy's candidate budget per strategy (0: not called)
    budgets: Mapping[str, int] = field(default_factory=dict)


class Ranker(Protocol):
    """Orders the union. ``version`` names it in every response (``ranker_version``)."""

    @property
    def version(self) -> str: ...

    def score(self, x: np.ndarray, candidates: Sequence[FusedCandidate]) -> np.ndarray:
        """One score per row of ``x`` (candidates in the same order); higher ranks first."""
        ...


def rank(ranker: Ranker, x: np.ndarray, candidates: list[FusedCandidate], k: int | None) -> list[int]:
    """Row indices of the top ``k`` (all if None) by ``ranker``'s score; ties by RRF score, then the number of
    strategies, then entity id, so the order is deterministic. Sets each candidate's ``score`` to its own."""
    scores = np.asarray(ranker.score(x, candidates), dtype=float)
    if scores.shape != (len(candidates),):
        raise ValueError(f"ranker {ranker.version} gave {scores.shape} scores for {len(candidates)} candidates")
    rrf = [c.score for c in candidates]
    order = sorted(
        range(len(candidates)),
        key=lambda i: (-scores[i], -rrf[i], -len(candidates[i].ranks), candidates[i].entity_id),
    )
    for i, s in enumerate(scores):
        candidates[i].score = float(s)
    return order if k is None else order[:k]
