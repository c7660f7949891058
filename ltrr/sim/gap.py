r"""Where a played policy falls short of issue 8's targets, and what closing the gap would take: pure, over a
scored run (:class:`ltrr.sim.regret.Scored`).

Issue 8 asks for live regret :math:`\le 0.8\times` the best static plan's and live recall :math:`\ge 0.98\times`
that of every strategy at the ladder maximum. This module answers three questions about a saved run, on any
subset of its queries (e.g. the second half):

* :func:`router_regret`: the regret of a router that knows a group label per query (the query kind, or the query
  class the policy saw) and plays each group's best plan in hindsight: how much routing on that label alone can
  gain over the best static plan;
* :func:`shortfall`: how many more hits the policy needed, and its **misses that all-at-max catches**, by query
  kind and cause: ``not called`` (no strategy that holds the item at the maximum was called) or ``budget too
  small`` (one was called, with a k below the item's rank);
* :func:`additions`: for each group of queries (by kind, or by what the policy saw: its query class), the value
  of raising one strategy's budget to k on *every* query of the group, on top of what the policy played:
  extra hits, extra cost (same prices as the regret, :attr:`ActionSpace.costs`) and their difference. A group
  whose best addition has a negative net is one where the missing recall costs more than it is worth, to a
  policy that can only tell the group apart.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ltrr.errors import InvalidRequest
from ltrr.sim.regret import ALL_MAX, Scored, action_values

NOT_CALLED, TOO_SMALL = "not called", "budget too small"


@dataclass(frozen=True)
class Shortfall:
    """``n`` queries; the policy's ``hits`` and all-at-max's ``top_hits``; ``needed``: the extra hits the policy
    needed to reach ``target`` x all-at-max's recall (0 when it did); ``misses``: ``(kind, cause) -> count`` of
    the queries all-at-max hits and the policy missed."""

    n: int
    hits: int
    top_hits: int
    target: float
    needed: int
    misses: Mapping[tuple[str, str], int]

    @property
    def ratio(self) -> float:
        return self.hits / self.top_hits if self.top_hits else math.nan


@dataclass(frozen=True)
class Addition:
    """Raising ``strategy`` to ``k`` on every query of ``group`` (``n`` queries): ``hits`` gained over the
    policy's own plan, ``cost`` added, ``net = hits - cost``."""

    group: str
    n: int
    strategy: str
    k: int
    hits: int
    cost: float

    @property
    def net(self) -> float:
        return self.hits - self.cost


def _rows(scored: Scored, rows: np.ndarray | None) -> np.ndarray:
    t = len(scored.records)
    if rows is None:
        return np.ones(t, dtype=bool)
    r = np.asarray(rows, dtype=bool)
    if r.shape != (t,):
        raise InvalidRequest("rows", f"must be a mask over the run's {t} queries, got shape {r.shape}")
    return r


def _labels(scored: Scored, groups: Sequence[str]) -> np.ndarray:
    if len(groups) != len(scored.records):
        raise InvalidRequest("groups", f"must name one group per query ({len(scored.records)}), got {len(groups)}")
    return np.asarray(groups, dtype=object)


def _actions(scored: Scored, policy: str) -> np.ndarray:
    tr = scored.trajectories.get(policy)
    if tr is None or tr.actions is None:
        raise InvalidRequest("policy", f"must be a played policy of the run, got {policy!r}")
    return tr.actions


def shortfall(scored: Scored, policy: str, rows: np.ndarray | None = None, target: float = 0.98) -> Shortfall:
    """The policy's recall shortfall on ``rows`` (module docstring)."""
    sel = _rows(scored, rows)
    space, acts = scored.space, _actions(scored, policy)
    top = scored.trajectories[ALL_MAX]
    ladder = np.asarray(space.ladder)
    hit, top_hit = scored.trajectories[policy].hit, top.hit
    misses: Counter[tuple[str, str]] = Counter()
    for t in np.flatnonzero(sel & (top_hit > 0.5) & (hit < 0.5)):
        budgets = ladder[list(space.levels(int(acts[t])))]
        finders = np.isfinite(scored.ranks[t]) & (scored.ranks[t] <= ladder[-1])
        cause = TOO_SMALL if np.any(finders & (budgets > 0)) else NOT_CALLED
        misses[(scored.records[t].kind, cause)] += 1
    h, th = int(round(hit[sel].sum())), int(round(top_hit[sel].sum()))
    needed = max(0, math.ceil(target * th - h - 1e-9))
    return Shortfall(int(sel.sum()), h, th, target, needed, dict(misses))


def additions(
    scored: Scored, policy: str, groups: Sequence[str], rows: np.ndarray | None = None
) -> dict[str, list[Addition]]:
    """``group -> every single addition (strategy, k > 0)``, best net first, over the queries of ``rows``;
    ``groups[t]`` names query ``t``'s group."""
    sel, labels = _rows(scored, rows), _labels(scored, groups)
    space, acts = scored.space, _actions(scored, policy)
    levels = np.array([space.levels(int(a)) for a in acts], dtype=int)  # (T, S)
    base_hit = scored.hits[np.arange(len(acts)), acts]
    base_cost = space.costs[acts]
    out: dict[str, list[Addition]] = {}
    for g in sorted({str(labels[t]) for t in np.flatnonzero(sel)}):
        idx = np.flatnonzero(sel & (labels == g))
        found = []
        for i, s in enumerate(space.strategies):
            for lv in range(1, space.n_levels):
                raised = levels[idx].copy()
                raised[:, i] = np.maximum(raised[:, i], lv)
                new = np.array([space.action(r) for r in raised])
                gain = float((scored.hits[idx, new] - base_hit[idx]).sum())
                cost = float((space.costs[new] - base_cost[idx]).sum())
                found.append(Addition(g, len(idx), s, space.ladder[lv], int(round(gain)), cost))
        out[g] = sorted(found, key=lambda a: (-a.net, a.strategy, a.k))
    return out


def query_class(context: Mapping[str, float]) -> str:
    """What the policy saw of a query, as a group label: its ``class.*`` feature with the largest value (ties:
    the first name in order), ``+tag`` when query understanding recognised a tag or genre (``has_tag`` or
    ``has_genre`` >= 0.5); ``unknown`` without class features."""
    classes = sorted(k for k in context if k.startswith("class."))
    if not classes:
        return "unknown"
    best = max(classes, key=lambda k: (float(context[k]), -classes.index(k)))
    tag = max(float(context.get("has_tag", 0.0)), float(context.get("has_genre", 0.0))) >= 0.5
    return best.removeprefix("class.") + ("+tag" if tag else "")


def router_regret(scored: Scored, groups: Sequence[str], rows: np.ndarray | None = None) -> float:
    """Regret on ``rows`` of a router that knows each query's group and plays, per group, the one plan best over
    that group's queries in hindsight: with one group, the best static plan of ``rows``; with the query kinds, a
    bound on what telling the kinds apart is worth; with what the policy saw, how much any policy that routes on
    that alone could gain."""
    sel, labels = _rows(scored, rows), _labels(scored, groups)
    values = action_values(scored.hits, scored.space.costs)
    best = scored.oracle.value
    total = 0.0
    for g in {str(labels[t]) for t in np.flatnonzero(sel)}:
        m = sel & (labels == g)
        total += float(best[m].sum() - values[m].sum(axis=0).max())
    return total
