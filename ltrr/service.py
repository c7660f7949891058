"""The search service: validate, understand, decide, fan out, fuse, log.

The decision (each strategy's candidate budget) comes from a
:class:`~ltrr.bandit.planner.Planner` given the context features
(:class:`~ltrr.bandit.features.ContextFeaturizer`); a request that forces
strategies gets them at their configured ``default_k`` with propensity 1. The
logged event carries the features, the decision with its propensities, every
strategy's ranked candidates with scores, the shown list and the versions: all
the learner and off-policy evaluation need, durably, before the answer leaves.

This is the whole request path without Ray. The Serve ingress
(``deployments/ingress.py``) is a thin shim over it, and the in-process
benchmark drives it directly, so the two differ only by transport.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from ltrr.bandit.base import Decision
from ltrr.bandit.planner import Planner
from ltrr.eventlog import EventLog, FeedbackEvent, SearchEvent, now
from ltrr.fanout import OK, SKIPPED, CallReport, Fanout
from ltrr.fusion import FusedCandidate, rrf
from ltrr.index_status import IndexBacklog
from ltrr.types import ParsedQuery, Query, UserProfile
from ltrr.validation import FeedbackParams, SearchParams

RRF_RANKER_VERSION = "rrf-c60"


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
    ``planner`` decides the budgets; ``users`` looks up a listening profile.
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
        self.strategies = list(fanout.callers)
        if tuple(self.strategies) != planner.featurizer.strategies:
            raise ValueError(
                f"`planner` decides for {list(planner.featurizer.strategies)} but the fan-out calls {self.strategies}"
            )

    def decide(
        self, query: Query, forced: tuple[str, ...], budgets: Mapping[str, int] | None = None
    ) -> tuple[Decision, dict[str, float]]:
        """The context features of ``query`` and the planner's decision, or the forced plan:
        ``budgets`` (each strategy's k) if given, else ``forced`` strategies at their default k."""
        fz = self.planner.featurizer
        user = self.users(query.user_id) if query.user_id else None
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
        decision, context = self.decide(query, p.strategies, p.budgets)
        results, calls = await self.fanout.run(query, decision.budgets, decision.inclusion)
        fused = rrf(results, k=p.k, c=self.rrf_c)
        calls, behind = self._note_backlog(calls)
        degraded = behind or any(c.status not in (OK, SKIPPED) for c in calls)
        request_id = uuid.uuid4().hex
        features = {f.entity_id: _features(f) for f in fused} if p.explain else {}
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
            ranker_version=RRF_RANKER_VERSION,
        )
        await asyncio.to_thread(self.events.record_search, event)
        return SearchOutcome(
            request_id,
            fused,
            calls,
            degraded,
            decision.policy_version,
            RRF_RANKER_VERSION,
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


def _features(f: FusedCandidate) -> dict[str, float]:
    out: dict[str, float] = {"rrf": f.score, "n_strategies": float(len(f.ranks))}
    for s, r in f.ranks.items():
        out[f"{s}.rank"] = float(r)
        out[f"{s}.score"] = float(f.scores[s])
    return out


def _call_dict(c: CallReport) -> dict[str, Any]:
    return {
        "strategy": c.strategy,
        "requested": c.requested,
        "returned": c.returned,
        "status": c.status,
        "propensity": c.propensity,
        "latency_ms": round(c.latency_ms, 3),
    }
