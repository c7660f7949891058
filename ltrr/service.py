"""The search service: validate, understand, decide, fan out, rank, log.

The decision (each strategy's candidate budget) comes from a
:class:`~ltrr.bandit.planner.Planner` given the context features
(:class:`~ltrr.bandit.features.ContextFeaturizer`); a request that forces
strategies gets them at their configured ``default_k`` with propensity 1. The
logged event carries the features, the decision with its propensities, every
strategy's ranked candidates with scores, the shown list, the ranker's feature
rows of the top of the served order and the versions: all the policy learner,
the ranker trainer and off-policy evaluation need, durably, before the answer leaves.

The union is ordered by the current ranker (:mod:`ltrr.ranking`): the feature rows
(:class:`~ltrr.ranking.features.RankFeaturizer`) are computed for every search,
whichever ranker serves, so a log served by RRF trains the first learned model.

This is the whole request path without Ray. The Serve ingress
(``deployments/ingress.py``) is a thin shim over it, and the in-process
benchmark drives it directly, so the two differ only by transport.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from ltrr.bandit.base import Decision
from ltrr.bandit.planner import Planner
from ltrr.eventlog import EventLog, FeedbackEvent, SearchEvent, now
from ltrr.fanout import OK, SKIPPED, CallReport, Fanout
from ltrr.fusion import FusedCandidate, rrf
from ltrr.index_status import IndexBacklog
from ltrr.ranking import features as rank_features
from ltrr.ranking.base import RankContext, Ranker, rank
from ltrr.ranking.features import RankFeaturizer
from ltrr.ranking.rrf import RRFRanker
from ltrr.types import ParsedQuery, Query, UserProfile
from ltrr.validation import FeedbackParams, SearchParams

log = logging.getLogger("ltrr.service")


@dataclass(frozen=True)
class SearchOutcome:
    request_id: str
    results: list[FusedCandidate]
    calls: list[CallReport]
    degraded: bool
    policy_version: str
    ranker_version: str
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    decision: Decision | None = None
    #: only when explain: each strategy's candidate ids in its own order, and the context features
    candidates: dict[str, list[str]] = field(default_factory=dict)
    context: dict[str, float] = field(default_factory=dict)


def static_plan(known: list[str], forced: tuple[str, ...], default_k: Mapping[str, int]) -> dict[str, int]:
    """The plan of a request that forces strategies: those (or all) at their default k."""
    chosen = forced or tuple(known)
    return {s: (default_k[s] if s in chosen else 0) for s in known}


class SearchService:
    """Orchestrates one search and records feedback.

    ``parse`` is the query-understanding function; ``events`` the durable log;
    ``planner`` decides the budgets; ``users`` looks up a listening profile;
    ``ranker`` orders the union: a :class:`~ltrr.ranking.base.Ranker`, or a source of one
    with ``current()`` (:class:`~ltrr.ranking.catboost.LiveRanker`, which hot-swaps models),
    RRF with ``rrf_c`` if None; ``featurizer`` computes its features (default: without catalog
    facts); ``log_top`` feature rows (at least ``k``) of the served order are logged.
    ``features=False`` computes and logs none (RRF only: what ``make bench`` compares against).
    """

    def __init__(
        self,
        fanout: Fanout,
        parse: Callable[[str], ParsedQuery],
        events: EventLog,
        default_k: Mapping[str, int],
        planner: Planner,
        *,
        users: Callable[[str], UserProfile | None] | None = None,
        rrf_c: float = 60.0,
        on_feedback: Callable[[], None] | None = None,
        backlog: IndexBacklog | None = None,
        ranker: Any = None,
        featurizer: RankFeaturizer | None = None,
        log_top: int = 50,
        features: bool = True,
    ) -> None:
        self.fanout = fanout
        self.parse = parse
        self.events = events
        self.default_k = dict(default_k)
        self.planner = planner
        self.users = users or (lambda _uid: None)
        self.rrf_c = rrf_c
        self.on_feedback = on_feedback
        self.backlog = backlog
        self.fallback = RRFRanker(rrf_c)
        ranker = ranker if ranker is not None else self.fallback
        self._ranker: Callable[[], Ranker] = ranker.current if hasattr(ranker, "current") else (lambda: ranker)
        self.featurizer = (featurizer or RankFeaturizer(lambda _ids: {})) if features else None
        self.log_top = int(log_top)
        self.strategies = list(fanout.callers)
        if tuple(self.strategies) != planner.featurizer.strategies:
            raise ValueError(
                f"`planner` decides for {list(planner.featurizer.strategies)} but the fan-out calls {self.strategies}"
            )

    def decide(
        self,
        query: Query,
        forced: tuple[str, ...],
        budgets: Mapping[str, int] | None = None,
        user: UserProfile | None = None,
    ) -> tuple[Decision, dict[str, float]]:
        """The context features of ``query`` (asked by ``user``) and the planner's decision, or the forced
        plan: ``budgets`` (each strategy's k) if given, else ``forced`` strategies at their default k."""
        fz = self.planner.featurizer
        stats = self.events.query_stats(query.text)
        features = fz.features(query, user=user, stats=stats, class_rates=self.planner.class_rates())
        x = fz.vector(features)
        if budgets:
            return self.planner.force(x, {s: int(budgets.get(s, 0)) for s in self.strategies}), features
        if forced:
            return self.planner.force(x, static_plan(self.strategies, forced, self.default_k)), features
        return self.planner.decide(x), features

    async def search(self, p: SearchParams) -> SearchOutcome:
        query = Query(
            text=p.query,
            parsed=self.parse(p.query),
            user_id=p.user_id,
            entity_types=p.entity_types,
            context=p.context,
        )
        user = self.users(query.user_id) if query.user_id else None
        decision, context = self.decide(query, p.strategies, p.budgets, user)
        results, calls = await self.fanout.run(query, decision.budgets, decision.inclusion)
        union = rrf(results, c=self.rrf_c)
        if p.entity_types:  # a strategy that cannot filter by type must not leak other types
            union = [f for f in union if f.entity_type in p.entity_types]
        ranker = self._ranker()  # once: the order and ranker_version come from the same model
        x = (
            self.featurizer.extract(RankContext(query, user, context, decision.budgets), union)
            if self.featurizer is not None
            else np.zeros((len(union), 0), dtype=np.float32)
        )
        try:
            order = rank(ranker, x, union, None)
        except Exception:  # a ranker that fails must not fail the search: RRF orders it, and says so
            log.exception("ranker %s failed; this search is ordered by %s", ranker.version, self.fallback.version)
            ranker = self.fallback  # rank() sets scores only once the ranker has given them: still RRF's
            order = rank(ranker, x, union, None)
        fused = [union[i] for i in order[: p.k]]
        logged = order[: max(p.k, self.log_top)]
        calls, behind = self._note_backlog(calls)
        degraded = behind or any(c.status not in (OK, SKIPPED) for c in calls)
        request_id = uuid.uuid4().hex
        features = (
            {union[i].entity_id: {**_named(x[i]), "model.score": union[i].score} for i in order[: p.k]}
            if p.explain
            else {}
        )
        candidates = {s: [c.entity_id for c in cs] for s, cs in results.items()}
        event = SearchEvent(
            request_id=request_id,
            ts=now(),
            query=p.query,
            user_id=p.user_id,
            shown=tuple(f.entity_id for f in fused),
            calls=tuple(_call_dict(c) for c in calls),
            candidates=candidates,
            scores={s: [round(float(c.score), 6) for c in cs] for s, cs in results.items()},
            features=context,
            decision=decision.to_dict(),
            context=dict(p.context),
            policy_version=decision.policy_version,
            ranker_version=ranker.version,
            ranking=rank_features.pack([union[i].entity_id for i in logged], x[logged]) if x.shape[1] else None,
        )
        await asyncio.to_thread(self.events.record_search, event)
        return SearchOutcome(
            request_id,
            fused,
            calls,
            degraded,
            decision.policy_version,
            ranker.version,
            features,
            decision,
            candidates if p.explain else {},
            dict(context) if p.explain else {},
        )

    def _note_backlog(self, calls: list[CallReport]) -> tuple[list[CallReport], bool]:
        """Say in each answered call whose index lags the catalog how far it lags; True if any does.
        Such an answer is degraded: it could not contain the entities not indexed yet."""
        if self.backlog is None:
            return calls, False
        out, behind = [], False
        for c in calls:
            detail = self.backlog.detail(c.strategy) if c.status == OK else ""
            if detail:
                c, behind = replace(c, detail=detail), True
            out.append(c)
        return out, behind

    async def feedback(self, p: FeedbackParams) -> bool:
        """Store feedback durably; return True when it was a duplicate ``event_id``."""
        ev = FeedbackEvent(p.event_id, p.request_id, p.entity_id, p.action, p.position, now())
        duplicate = await asyncio.to_thread(self.events.record_feedback, ev)
        if not duplicate and self.on_feedback is not None:
            self.on_feedback()  # wake the learner; it reads the durable log, so a lost wake-up loses nothing
        return duplicate


def _named(row: np.ndarray) -> dict[str, float]:
    return rank_features.as_dict(row) if row.shape[0] else {}


def _call_dict(c: CallReport) -> dict[str, Any]:
    return {
        "strategy": c.strategy,
        "requested": c.requested,
        "returned": c.returned,
        "status": c.status,
        "propensity": c.propensity,
        "latency_ms": round(c.latency_ms, 3),
    }
