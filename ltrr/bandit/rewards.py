"""Semi-bandit rewards from one settled search.

A search called strategy ``s`` with budget :math:`k_s` and got its ranked list.
When the user acted positively on entity ``e`` (click, play, favourite), arm
:math:`(s, k)` for every positive ladder budget :math:`k \\le k_s` earns

.. math::

    r_{s,k} = \\mathbb{1}[\\operatorname{rank}_s(e) \\le k],

because a call with a large budget also reveals whether ``e`` was in its top 10
or top 25 (a strategy's top-k is, to a good approximation, the prefix of its
top-k' for k < k'). Budgets above :math:`k_s` are not observed. When no positive
action came within the reward window every called strategy earns 0 at every
budget up to its own. Strategies that failed (timeout, error) were not observed
and earn nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ltrr.bandit.base import Decision
from ltrr.bandit.features import ContextFeaturizer
from ltrr.eventlog import SearchEvent


def semi_bandit_rewards(
    budgets: Mapping[str, int],
    ladder: Sequence[int],
    candidates: Mapping[str, Sequence[str]],
    ok: Mapping[str, bool],
    wanted: str | None,
) -> dict[tuple[str, int], float]:
    """``{(strategy, k): r}`` for every observed arm.

    ``budgets``: the k each strategy was asked for (0: not called); ``candidates``:
    each strategy's ids in rank order; ``ok``: whether its call succeeded;
    ``wanted``: the entity acted on, or None when the window passed without one.
    """
    out: dict[tuple[str, int], float] = {}
    for s, k_s in budgets.items():
        if k_s <= 0 or not ok.get(s, False):
            continue
        ids = list(candidates.get(s, ()))[:k_s]
        rank = ids.index(wanted) + 1 if wanted is not None and wanted in ids else None
        for k in ladder:
            if 0 < k <= k_s:
                out[(s, k)] = 1.0 if rank is not None and rank <= k else 0.0
    return out


def arm_visibility(
    budgets: Mapping[str, int],
    ladder: Sequence[int],
    candidates: Mapping[str, Sequence[str]],
    ok: Mapping[str, bool],
    shown: Sequence[str],
    position_bias: float,
) -> dict[tuple[str, int], float]:
    """``{(strategy, k): v}`` for every observed arm: the chance that a hit of the arm would have
    been seen, :math:`v_{s,k} = \\frac1{n} \\sum_{e \\in \\mathrm{top}_k(s)} \\theta(\\mathrm{pos}(e))`, with
    :math:`\\theta(r) = r^{-\\eta}` (``position_bias`` :math:`\\eta`) for an entity shown at position r
    and 0 for one the fused list did not show.

    A click reveals the wanted entity only if the user saw it, and a user who asked for the top
    10 never sees a candidate ranked 40th by one strategy. Read as a plain 0, such a search
    teaches that the strategy's deep budgets miss, which is a ranking failure, not a retrieval
    one. With ``v`` the learner fits the click as :math:`v \\cdot p(x)` (weighted least squares,
    :meth:`ltrr.bandit.Policy.update`), so an arm whose hits could not be seen learns little
    either way and keeps its prior. Taking the wanted entity as uniform over the top k is an
    approximation (hits sit near the top, so ``v`` is conservative); an arm with no candidates
    is an exact miss (``v`` = 1)."""
    pos = {e: i for i, e in enumerate(shown, 1)}
    out: dict[tuple[str, int], float] = {}
    for s, k_s in budgets.items():
        if k_s <= 0 or not ok.get(s, False):
            continue
        ids = list(candidates.get(s, ()))[:k_s]
        theta = [float(pos[e]) ** -position_bias if e in pos else 0.0 for e in ids]
        csum = np.cumsum(theta) if theta else np.zeros(0)
        for k in ladder:
            if 0 < k <= k_s:
                n = min(k, len(ids))
                out[(s, k)] = float(csum[n - 1] / n) if n else 1.0
    return out


def strategy_hits(rewards: Mapping[tuple[str, int], float]) -> dict[str, bool]:
    """Per called strategy: did its candidate list (at the budget it was given) hold the wanted item."""
    best: dict[str, tuple[int, float]] = {}
    for (s, k), r in rewards.items():
        if s not in best or k > best[s][0]:
            best[s] = (k, r)
    return {s: r > 0 for s, (_, r) in best.items()}


@dataclass(frozen=True)
class Observation:
    """One settled search, ready to learn from: the decision (with its context
    vector), the arm rewards, the query class and each called strategy's hit."""

    decision: Decision
    rewards: dict[tuple[str, int], float]
    query_class: int
    hits: dict[str, bool]
    #: per arm, how likely a hit was to be seen (:func:`arm_visibility`); None: plain updates
    visibility: dict[tuple[str, int], float] | None = None

    @property
    def union_hit(self) -> float:
        """1 when the wanted item was in the union of the candidate sets (the OPE reward)."""
        return float(any(self.hits.values()))


def observe(
    event: SearchEvent,
    wanted: str | None,
    featurizer: ContextFeaturizer,
    ladder: Sequence[int],
    position_bias: float | None = None,
) -> Observation | None:
    """Join a logged search with its outcome; None when the event carries no decision.
    ``position_bias`` (None: off) adds each arm's :func:`arm_visibility` from the shown list."""
    if not event.decision:
        return None
    decision = Decision.from_dict(event.decision, x=featurizer.vector(event.features))
    ok = {str(c["strategy"]): c.get("status") == "ok" for c in event.calls}
    cands = event.candidates or {}
    rewards = semi_bandit_rewards(decision.budgets, ladder, cands, ok, wanted)
    vis = (
        None
        if position_bias is None
        else arm_visibility(decision.budgets, ladder, cands, ok, event.shown, position_bias)
    )
    return Observation(decision, rewards, featurizer.class_of(event.features), strategy_hits(rewards), vis)
