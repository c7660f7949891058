"""The search service: validate, understand, plan, fan out, fuse, log.

This is the whole request path without Ray. The Serve ingress
(``deployments/ingress.py``) is a thin shim over it, and the in-process
benchmark drives it directly, so the two differ only by transport.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ltrr.eventlog import EventLog, FeedbackEvent, SearchEvent, now
from ltrr.fanout import OK, SKIPPED, CallReport, Fanout
from ltrr.fusion import FusedCandidate, rrf
from ltrr.types import ParsedQuery, Query
from ltrr.validation import FeedbackParams, SearchParams

STATIC_POLICY_VERSION = "static-v1"
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


def static_plan(known: list[str], forced: tuple[str, ...], default_k: Mapping[str, int]) -> dict[str, int]:
    """The plan until a learned policy exists: every strategy (or the forced ones) with its default k."""
    chosen = forced or tuple(known)
    return {s: (default_k[s] if s in chosen else 0) for s in known}


class SearchService:
    """Orchestrates one search and records feedback.

    ``parse`` is the query-understanding function; ``events`` the durable log.
    """

    def __init__(
        self,
        fanout: Fanout,
        parse: Callable[[str], ParsedQuery],
        events: EventLog,
        default_k: Mapping[str, int],
        *,
        rrf_c: float = 60.0,
    ) -> None:
        self.fanout = fanout
        self.parse = parse
        self.events = events
        self.default_k = dict(default_k)
        self.rrf_c = rrf_c
        self.strategies = list(fanout.callers)

    async def search(self, p: SearchParams) -> SearchOutcome:
        query = Query(
            text=p.query,
            parsed=self.parse(p.query),
            user_id=p.user_id,
            entity_types=p.entity_types,
            context=p.context,
        )
        plan = static_plan(self.strategies, p.strategies, self.default_k)
        results, calls = await self.fanout.run(query, plan)
        fused = rrf(results, k=p.k, c=self.rrf_c)
        degraded = any(c.status not in (OK, SKIPPED) for c in calls)
        request_id = uuid.uuid4().hex
        features = {f.entity_id: _features(f) for f in fused} if p.explain else {}
        event = SearchEvent(
            request_id=request_id,
            ts=now(),
            query=p.query,
            user_id=p.user_id,
            shown=tuple(f.entity_id for f in fused),
            calls=tuple(_call_dict(c) for c in calls),
            candidates={s: [c.entity_id for c in cs] for s, cs in results.items()},
            policy_version=STATIC_POLICY_VERSION,
            ranker_version=RRF_RANKER_VERSION,
        )
        await asyncio.to_thread(self.events.record_search, event)
        return SearchOutcome(request_id, fused, calls, degraded, STATIC_POLICY_VERSION, RRF_RANKER_VERSION, features)

    async def feedback(self, p: FeedbackParams) -> bool:
        """Store feedback durably; return True when it was a duplicate ``event_id``."""
        ev = FeedbackEvent(p.event_id, p.request_id, p.entity_id, p.action, p.position, now())
        return await asyncio.to_thread(self.events.record_feedback, ev)


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
