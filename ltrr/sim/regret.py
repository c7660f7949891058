r"""Regret of retrieval policies against full information: pure scoring, no I/O.

For each simulated query :math:`t` the harness (``scripts/bench_regret.py``) asks every strategy
for the ladder maximum and records the rank :math:`\rho_{t,s}` of the wanted item in strategy
:math:`s`'s list (None if absent). Every action :math:`a` of the
:class:`~ltrr.bandit.actions.ActionSpace` (budgets :math:`k_s(a)`) is then scored on those ranks:

.. math::

    \mathrm{hit}_t(a) = \bigl[\exists s: \rho_{t,s} \le k_s(a)\bigr], \qquad
    v_t(a) = \mathrm{hit}_t(a) - c(a),

with :math:`c(a)` the app's cost (:class:`~ltrr.bandit.config.CostConfig`) at fixed per-strategy
latencies (:func:`run_latency`: the mean ``latency_ms`` of each strategy's live calls in the run).
Arrays: ranks ``(T, S)``, hits and values ``(T, A)`` with ``A = L^S`` action ids (id 0, calling
nothing, is invalid: hit 0, value :math:`-\infty`).

Policies, each a per-query action (or a distribution over actions):

* **oracle**: :math:`a^*_t = \arg\max_a v_t(a)` (ties: the lowest id);
* a **played** policy (the live one, a VW learner): its action :math:`a_t`, scored on the same
  full-information ranks, so every policy is scored identically;
* **best static**: the one action maximising :math:`\sum_t v_t(a)` in hindsight;
* **all at max**: every strategy at the ladder maximum;
* **uniform**: the expectation over the :math:`A - 1` valid actions (exact, no draws).

Regret :math:`R_T(\pi) = \sum_{t \le T} \bigl(v_t(a^*_t) - v_t(\pi_t)\bigr) \ge 0`. Reported per
policy (:class:`PolicyScore`): cumulative and mean regret, candidate recall (mean hit), mean
candidates :math:`\sum_s k_s`, mean strategy calls, mean cost and mean value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ltrr.bandit.actions import ActionSpace
from ltrr.errors import InvalidRequest

ORACLE, STATIC, ALL_MAX, UNIFORM = "oracle", "best static", "all at max", "uniform"
ALL_DEFAULT = "all at default k"


@dataclass(frozen=True)
class QueryRecord:
    """One simulated query as the harness saw it; enough to re-score it.

    ``ranks``: strategy -> 1-based rank of the wanted item in its full-information list (None if
    absent). ``played``: policy -> the budgets ``{strategy: k}`` it chose. ``clicks``: policy ->
    the 1-based position its user clicked (None: no click). ``live_latency_ms``: latency of each
    strategy the live policy called; ``full_latency_ms``: of each full-information call.
    ``live_hit``: whether the wanted item was among the live calls' own candidates (a check that
    the full-information prefixes stand for what the live calls returned). ``final``: contender ->
    the top of the list its user saw, best first (ltrr's live response, a VW learner's shown list,
    the full union in the served ranker's and in RRF's order, a peer's answer), scored by
    :mod:`ltrr.sim.metrics`; ``latency_ms``: contender -> the wall-clock ms its answer took.
    """

    index: int
    user_id: str
    kind: str
    text: str
    wanted: str
    ranks: Mapping[str, int | None]
    played: Mapping[str, Mapping[str, int]]
    clicks: Mapping[str, int | None] = field(default_factory=dict)
    live_latency_ms: Mapping[str, float] = field(default_factory=dict)
    full_latency_ms: Mapping[str, float] = field(default_factory=dict)
    live_hit: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    final: Mapping[str, Sequence[str]] = field(default_factory=dict)
    latency_ms: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "user_id": self.user_id,
            "kind": self.kind,
            "text": self.text,
            "wanted": self.wanted,
            "ranks": dict(self.ranks),
            "played": {p: dict(b) for p, b in self.played.items()},
            "clicks": dict(self.clicks),
            "live_latency_ms": dict(self.live_latency_ms),
            "full_latency_ms": dict(self.full_latency_ms),
            "live_hit": self.live_hit,
            "extra": dict(self.extra),
            "final": {c: list(ids) for c, ids in self.final.items()},
            "latency_ms": dict(self.latency_ms),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueryRecord:
        return cls(
            index=int(d["index"]),
            user_id=str(d["user_id"]),
            kind=str(d["kind"]),
            text=str(d["text"]),
            wanted=str(d["wanted"]),
            ranks={s: (None if r is None else int(r)) for s, r in d["ranks"].items()},
            played={p: {s: int(k) for s, k in b.items()} for p, b in d["played"].items()},
            clicks={p: (None if c is None else int(c)) for p, c in d.get("clicks", {}).items()},
            live_latency_ms={s: float(v) for s, v in d.get("live_latency_ms", {}).items()},
            full_latency_ms={s: float(v) for s, v in d.get("full_latency_ms", {}).items()},
            live_hit=d.get("live_hit"),
            extra=dict(d.get("extra", {})),
            final={c: [str(e) for e in ids] for c, ids in d.get("final", {}).items()},
            latency_ms={c: float(v) for c, v in d.get("latency_ms", {}).items()},
        )


@dataclass(frozen=True)
class Trajectory:
    """One policy over the stream: per-query value, hit, candidates, calls and cost, shape ``(T,)``
    (expectations for a randomised policy), and the action ids it played (None for uniform)."""

    value: np.ndarray
    hit: np.ndarray
    candidates: np.ndarray
    calls: np.ndarray
    cost: np.ndarray
    actions: np.ndarray | None = None


@dataclass(frozen=True)
class PolicyScore:
    """A policy's figures over some queries (module docstring)."""

    policy: str
    n: int
    regret: float
    mean_regret: float
    recall: float
    candidates: float
    calls: float
    cost: float
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def rank_matrix(space: ActionSpace, records: Sequence[QueryRecord]) -> np.ndarray:
    """``(T, S)`` float ranks in ``space.strategies`` order, ``inf`` where the item is absent."""
    out = np.full((len(records), space.n_strategies), np.inf)
    for t, rec in enumerate(records):
        for i, s in enumerate(space.strategies):
            r = rec.ranks.get(s)
            if r is not None:
                if r < 1:
                    raise InvalidRequest(f"records[{t}].ranks[{s!r}]", f"must be >= 1 or None, got {r}")
                out[t, i] = float(r)
    return out


def action_hits(space: ActionSpace, ranks: np.ndarray) -> np.ndarray:
    """:math:`\\mathrm{hit}_t(a)` as 0/1 floats, ``(T, S)`` ranks -> ``(T, A)`` (id 0 -> 0)."""
    ladder = np.asarray(space.ladder, dtype=float)
    found = (ranks[:, :, None] <= ladder[None, None, :]).astype(float)  # (T, S, L); level 0 never finds
    found[:, :, 0] = 0.0
    hits = space.union_values(found)
    return np.rint(hits)


def action_values(hits: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """:math:`v_t(a) = \\mathrm{hit}_t(a) - c(a)`, ``(T, A)``; id 0 is :math:`-\\infty`."""
    values = hits - costs[None, :]
    values[:, 0] = -np.inf
    return values


def _per_action(space: ActionSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``levels (A, S)``, candidates ``(A,)`` and calls ``(A,)`` of every action id."""
    levels = np.array([space.levels(a) for a in range(space.n_actions)], dtype=int)
    ladder = np.asarray(space.ladder)
    return levels, ladder[levels].sum(axis=1).astype(float), (levels > 0).sum(axis=1).astype(float)


def played(space: ActionSpace, hits: np.ndarray, costs: np.ndarray, actions: Sequence[int] | np.ndarray) -> Trajectory:
    """The trajectory of the action ids ``actions`` (one per query)."""
    a = np.asarray(actions, dtype=int)
    if a.shape != (hits.shape[0],):
        raise InvalidRequest("actions", f"must hold one action per query ({hits.shape[0]}), got shape {a.shape}")
    if np.any((a < 1) | (a >= space.n_actions)):
        raise InvalidRequest("actions", f"must be valid action ids in [1, {space.n_actions - 1}]")
    _, cand, calls = _per_action(space)
    rows = np.arange(len(a))
    h = hits[rows, a]
    return Trajectory(h - costs[a], h, cand[a], calls[a], costs[a].copy(), a)


def uniform(space: ActionSpace, hits: np.ndarray, costs: np.ndarray) -> Trajectory:
    """The expectation over the valid actions, drawn uniformly, of every figure."""
    _, cand, calls = _per_action(space)
    n = space.n_actions - 1
    h = hits[:, 1:].mean(axis=1)
    c = float(costs[1:].sum()) / n
    t = hits.shape[0]
    return Trajectory(h - c, h, np.full(t, cand[1:].mean()), np.full(t, calls[1:].mean()), np.full(t, c))


def reference_trajectories(
    space: ActionSpace, hits: np.ndarray, costs: np.ndarray, default_k: Mapping[str, int] | None = None
) -> dict[str, Trajectory]:
    """The oracle, best static, all-at-max and uniform trajectories, and every strategy at its
    ``default_k`` (what a forced search calls) when given."""
    values = action_values(hits, costs)
    oracle = np.argmax(values, axis=1)
    static = int(np.argmax(values.sum(axis=0)))
    top = space.action_for_budgets({s: space.ladder[-1] for s in space.strategies})
    t = hits.shape[0]
    out = {
        ORACLE: played(space, hits, costs, oracle),
        STATIC: played(space, hits, costs, np.full(t, static)),
        ALL_MAX: played(space, hits, costs, np.full(t, top)),
        UNIFORM: uniform(space, hits, costs),
    }
    if default_k:
        out[ALL_DEFAULT] = played(space, hits, costs, np.full(t, space.action_for_budgets(default_k)))
    return out


def run_latency(space: ActionSpace, records: Iterable[QueryRecord]) -> dict[str, float]:
    """Per strategy, the mean ``latency_ms`` of its live calls in ``records``; a strategy the live
    policy never called gets the mean of its full-information calls, else its configured prior."""
    live: dict[str, list[float]] = {s: [] for s in space.strategies}
    full: dict[str, list[float]] = {s: [] for s in space.strategies}
    for rec in records:
        for s, ms in rec.live_latency_ms.items():
            live.setdefault(s, []).append(ms)
        for s, ms in rec.full_latency_ms.items():
            full.setdefault(s, []).append(ms)
    out = {}
    for s in space.strategies:
        xs = live[s] or full[s]
        out[s] = float(np.mean(xs)) if xs else space.cost_model.prior_latency_ms(s)
    return out


def score(name: str, traj: Trajectory, oracle: Trajectory, rows: np.ndarray | slice | None = None) -> PolicyScore:
    """:class:`PolicyScore` of ``traj`` against ``oracle`` on ``rows`` (all queries by default)."""
    sel = slice(None) if rows is None else rows
    v, best = traj.value[sel], oracle.value[sel]
    n = int(v.shape[0])
    if n == 0:
        nan = math.nan
        return PolicyScore(name, 0, 0.0, nan, nan, nan, nan, nan, nan)
    regret = best - v
    return PolicyScore(
        policy=name,
        n=n,
        regret=float(regret.sum()),
        mean_regret=float(regret.mean()),
        recall=float(traj.hit[sel].mean()),
        candidates=float(traj.candidates[sel].mean()),
        calls=float(traj.calls[sel].mean()),
        cost=float(traj.cost[sel].mean()),
        value=float(v.mean()),
    )


def cumulative_regret(traj: Trajectory, oracle: Trajectory) -> np.ndarray:
    """:math:`R_t` for :math:`t = 1..T`, shape ``(T,)``."""
    return np.cumsum(oracle.value - traj.value)


def routing(space: ActionSpace, traj: Trajectory, rows: np.ndarray | slice | None = None) -> dict[str, float]:
    """Share of the queries (``rows``) on which the policy called each strategy."""
    if traj.actions is None:
        raise InvalidRequest("traj", "must be a played trajectory (with actions) to report its routing")
    levels, _, _ = _per_action(space)
    a = traj.actions[slice(None) if rows is None else rows]
    if a.size == 0:
        return {s: math.nan for s in space.strategies}
    called = levels[a] > 0
    return {s: float(called[:, i].mean()) for i, s in enumerate(space.strategies)}


@dataclass(frozen=True)
class Scored:
    """Every trajectory of a run with what it was scored with."""

    space: ActionSpace
    records: tuple[QueryRecord, ...]
    ranks: np.ndarray
    hits: np.ndarray
    latency_ms: Mapping[str, float]
    trajectories: Mapping[str, Trajectory]

    @property
    def oracle(self) -> Trajectory:
        return self.trajectories[ORACLE]

    def table(self, rows: np.ndarray | slice | None = None) -> list[PolicyScore]:
        return [score(name, tr, self.oracle, rows) for name, tr in self.trajectories.items()]

    def kinds(self) -> list[str]:
        return sorted({r.kind for r in self.records})

    def kind_rows(self, kind: str) -> np.ndarray:
        return np.array([r.kind == kind for r in self.records])

    def static_budgets(self) -> dict[str, int]:
        tr = self.trajectories[STATIC]
        assert tr.actions is not None
        return self.space.budgets(int(tr.actions[0]))


def score_run(
    space: ActionSpace,
    records: Sequence[QueryRecord],
    *,
    latency_ms: Mapping[str, float] | None = None,
    default_k: Mapping[str, int] | None = None,
) -> Scored:
    """Score every policy in ``records[*].played`` and the references (module docstring).

    ``space`` is re-priced in place with ``latency_ms`` (default :func:`run_latency`)."""
    if not records:
        raise InvalidRequest("records", "must hold at least one query")
    lat = dict(latency_ms) if latency_ms is not None else run_latency(space, records)
    space.set_latency(lat)
    costs = space.costs
    ranks = rank_matrix(space, records)
    hits = action_hits(space, ranks)
    names: list[str] = []
    for rec in records:
        names += [p for p in rec.played if p not in names]
    trajectories: dict[str, Trajectory] = {}
    refs = reference_trajectories(space, hits, costs, default_k)
    trajectories[ORACLE] = refs.pop(ORACLE)
    for p in names:
        missing = [r.index for r in records if p not in r.played]
        if missing:
            raise InvalidRequest("records", f"policy {p!r} has no action for query {missing[0]}")
        actions = [space.action_for_budgets(r.played[p]) for r in records]
        trajectories[p] = played(space, hits, costs, actions)
    trajectories.update(refs)
    return Scored(space, tuple(records), ranks, hits, lat, trajectories)


#: How many queries each side of a drift the drift windows hold (:func:`drift_windows`).
DRIFT_WINDOW = 200


@dataclass(frozen=True)
class Window:
    """Some queries of a run: ``name``, the first and last query index it holds, and its ``rows``
    (boolean, shape ``(T,)``, over the records in order)."""

    name: str
    first: int
    last: int
    rows: np.ndarray


def drift_windows(indices: Sequence[int], at: int, width: int = DRIFT_WINDOW) -> tuple[Window, ...]:
    """The windows around a drift at query index ``at`` over the queries ``indices`` (one per record):
    ``before``, the ``width`` queries before ``at``; ``after``, the first ``width`` from ``at`` on (how
    fast a policy adapts); ``later``, the rest after those (where it settled; left out when empty).
    Each window holds the queries it names that the run has; ``at`` must split them."""
    idx = np.asarray(indices, dtype=int)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InvalidRequest("width", f"must be an int >= 1, got {width!r}")
    if idx.size == 0 or not (idx < at).any() or not (idx >= at).any():
        lo, hi = (int(idx.min()), int(idx.max())) if idx.size else (0, -1)
        raise InvalidRequest("at", f"must split the queries (indices {lo}..{hi}), got {at}")
    spans = (("before", at - width, at - 1), ("after", at, at + width - 1), ("later", at + width, int(idx.max())))
    out = []
    for name, first, last in spans:
        rows = (idx >= first) & (idx <= last)
        if rows.any():
            out.append(Window(name, int(idx[rows].min()), int(idx[rows].max()), rows))
    return tuple(out)
