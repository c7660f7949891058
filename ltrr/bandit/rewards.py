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

    @property
    def union_hit(self) -> float:
        """1 when the wanted item was in the union of the candidate sets (the OPE reward)."""
        return float(any(self.hits.values()))


def observe(
    event: SearchEvent, wanted: str | None, featurizer: ContextFeaturizer, ladder: Sequence[int]
) -> Observation | None:
    """Join a logged search with its outcome; None when the event carries no decision."""
    if not event.decision:
        return None
    decision = Decision.from_dict(event.decision, x=featurizer.vector(event.features))
    ok = {str(c["strategy"]): c.get("status") == "ok" for c in event.calls}
    rewards = semi_bandit_rewards(decision.budgets, ladder, event.candidates or {}, ok, wanted)
    return Observation(decision, rewards, featurizer.class_of(event.features), strategy_hits(rewards))
