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
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from ltrr.bandit.base import Decision
from ltrr.bandit.planner import Planner
from ltrr.errors import BackendTimeout
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
_T = TypeVar("_T")


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

    **Nothing blocking on the event loop.** The search path's SQLite reads (the user's profile, the
    query's settled stats, the entity facts of the feature rows on a cache miss, the index backlog)
    run, with the feature rows, in the service's one reader thread, and the log writes in
    ``asyncio.to_thread``: a search waits for no other request's SQLite work on the loop. One thread,
    so the facts cache is only filled from it; with the catalog's and the event log's separate read
    connections (WAL), those reads never wait for a writer, such as an upsert.

    **Deadlines.** :meth:`search` and :meth:`feedback` take ``deadline``, the caller's time left in
    seconds (None: no bound). No wait outlasts it: the reads, the fan-out and the wait for the event
    log's write lock each get what is left, and past it the call raises
    :class:`~ltrr.errors.BackendTimeout` (``DEADLINE_EXCEEDED``) with nothing logged, so a request its
    client has given up on is not committed later.
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
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltrr-search-reads")
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
        *,
        stats: tuple[int, int],
    ) -> tuple[Decision, dict[str, float]]:
        """The context features of ``query`` (asked by ``user``, with ``stats`` = the event log's
        ``query_stats(query.text)``, read by :meth:`lookups`) and the planner's decision, or the forced
        plan: ``budgets`` (each strategy's k) if given, else ``forced`` strategies at their default k.
        No I/O: safe on the event loop."""
        fz = self.planner.featurizer
        features = fz.features(query, user=user, stats=stats, class_rates=self.planner.class_rates())
        x = fz.vector(features)
        if budgets:
            return self.planner.force(x, {s: int(budgets.get(s, 0)) for s in self.strategies}), features
        if forced:
            return self.planner.force(x, static_plan(self.strategies, forced, self.default_k)), features
        return self.planner.decide(x), features

    def lookups(self, query: Query) -> tuple[UserProfile | None, tuple[int, int]]:
        """The SQLite reads before a decision: ``query``'s user profile (None when anonymous or unknown)
        and its settled stats (:meth:`EventLog.query_stats`). Blocking: :meth:`search` runs it off the loop."""
        user = self.users(query.user_id) if query.user_id else None
        return user, self.events.query_stats(query.text)

    def _rows(
        self, ctx: RankContext, union: list[FusedCandidate], calls: list[CallReport]
    ) -> tuple[np.ndarray, list[CallReport], bool]:
        """The ranker's feature rows of ``union`` (entity facts read on a cache miss) and the calls with
        their index backlog (:meth:`_note_backlog`). Blocking: runs in the reader thread."""
        x = (
            self.featurizer.extract(ctx, union)
            if self.featurizer is not None
            else np.zeros((len(union), 0), dtype=np.float32)
        )
        noted, behind = self._note_backlog(calls)
        return x, noted, behind

    async def _read(self, until: float | None, what: str, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in the reader thread, waited for until ``until`` (monotonic) at most."""
        left = _left(until, what)
        fut = asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)
        if left is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, left)
        except TimeoutError as exc:
            raise BackendTimeout(f"{what}: the caller's deadline passed") from exc

    async def search(self, p: SearchParams, *, deadline: float | None = None) -> SearchOutcome:
        """Decide, fan out, rank and log one search. ``deadline``: the caller's time left in seconds,
        or None (class docstring); past it, :class:`~ltrr.errors.BackendTimeout` and nothing logged."""
        until = _until(deadline)
        query = Query(
            text=p.query,
            parsed=self.parse(p.query),
            user_id=p.user_id,
            entity_types=p.entity_types,
            context=p.context,
        )
        user, stats = await self._read(until, "search: reading the profile and query stats", self.lookups, query)
        decision, context = self.decide(query, p.strategies, p.budgets, user, stats=stats)
        left = _left(until, "search: fan-out")
        fan = self.fanout.run(query, decision.budgets, decision.inclusion)
        try:
            results, calls = await (fan if left is None else asyncio.wait_for(fan, left))
        except TimeoutError as exc:
            raise BackendTimeout("search: fan-out: the caller's deadline passed") from exc
        union = rrf(results, c=self.rrf_c)
        if p.entity_types:  # a strategy that cannot filter by type must not leak other types
            union = [f for f in union if f.entity_type in p.entity_types]
        ranker = self._ranker()  # once: the order and ranker_version come from the same model
        rctx = RankContext(query, user, context, decision.budgets)
        x, calls, behind = await self._read(until, "search: reading entity facts", self._rows, rctx, union, calls)
        try:
            order = rank(ranker, x, union, None)
        except Exception:  # a ranker that fails must not fail the search: RRF orders it, and says so
            log.exception("ranker %s failed; this search is ordered by %s", ranker.version, self.fallback.version)
            ranker = self.fallback  # rank() sets scores only once the ranker has given them: still RRF's
            order = rank(ranker, x, union, None)
        fused = [union[i] for i in order[: p.k]]
        logged = order[: max(p.k, self.log_top)]
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
        _left(until, "search: logging")  # fail before the thread hop when nothing is left
        await asyncio.to_thread(_bounded, self.events.record_search, event, until)
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

    async def feedback(self, p: FeedbackParams, *, deadline: float | None = None) -> bool:
        """Store feedback durably; return True when it was a duplicate ``event_id``. ``deadline``: the
        caller's time left in seconds, or None; past it, :class:`~ltrr.errors.BackendTimeout`, not stored."""
        until = _until(deadline)
        _left(until, "feedback")
        ev = FeedbackEvent(p.event_id, p.request_id, p.entity_id, p.action, p.position, now())
        duplicate = await asyncio.to_thread(_bounded, self.events.record_feedback, ev, until)
        if not duplicate and self.on_feedback is not None:
            self.on_feedback()  # wake the learner; it reads the durable log, so a lost wake-up loses nothing
        return duplicate

    async def forget_facts(self, entity_ids: list[str]) -> None:
        """Drop these entities' cached facts (their entities changed), in the reader thread: the only
        thread that touches the facts cache while searches run. A no-op for a featurizer without a cache."""
        forget = getattr(self.featurizer.facts, "forget", None) if self.featurizer is not None else None
        if forget is not None:
            await asyncio.get_running_loop().run_in_executor(self._reads, forget, list(entity_ids))

    def close(self) -> None:
        """Stop the reader thread (the event log and the catalog are the caller's to close)."""
        self._reads.shutdown(wait=True)


def _until(deadline: float | None) -> float | None:
    """The monotonic time ``deadline`` seconds from now (None: no deadline)."""
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or math.isnan(deadline):
        raise ValueError(f"`deadline` must be a number of seconds or None, got {deadline!r}")
    return None if deadline == math.inf else time.monotonic() + float(deadline)


def _left(until: float | None, what: str) -> float | None:
    """Seconds left until ``until`` (None: no deadline); :class:`BackendTimeout` naming ``what`` when none are."""
    if until is None:
        return None
    left = until - time.monotonic()
    if left <= 0:
        raise BackendTimeout(f"{what}: the caller's deadline passed")
    return left


def _bounded(write: Callable[..., _T], event: Any, until: float | None) -> _T:
    """``write(event, timeout_s=...)`` with the time left until ``until``, counted when the thread runs it."""
    return write(event, timeout_s=None if until is None else until - time.monotonic())


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
