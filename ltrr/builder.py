"""One way to build the search service, for the ingress, the in-process benchmark and the cold-start ranker.

Each of them needs the same parts wired the same way: query understanding over the catalog's
vocabulary, the policy's context featurizer, the ranker (the registry's current model with RRF as
fallback) with its feature extractor, and the event log. They differ only in how strategies are
called (Serve handles in the ingress, direct calls in threads here) and in which planner decides.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ltrr.bandit import ContextFeaturizer
from ltrr.bandit.planner import Planner
from ltrr.catalog.store import CatalogBase
from ltrr.config import AppConfig
from ltrr.eventlog import EventLog
from ltrr.fanout import Caller, Fanout
from ltrr.index_status import IndexBacklog
from ltrr.query_understanding import QueryUnderstanding, Vocabulary
from ltrr.ranking.catboost import LiveRanker
from ltrr.ranking.features import FactsCache, RankFeaturizer
from ltrr.ranking.registry import registry_for
from ltrr.ranking.rrf import RRFRanker
from ltrr.service import SearchService
from ltrr.strategies.base import Strategy
from ltrr.types import Query


@dataclass
class Built:
    service: SearchService
    ranker: LiveRanker
    facts: FactsCache


def live_ranker(app: AppConfig) -> LiveRanker:
    """The registry's current model (loaded now), RRF with ``ingress.rrf_c`` when there is none; the registry
    is the app's (:func:`ltrr.ranking.registry.registry_for`: PostgreSQL when a DSN is set)."""
    ranker = LiveRanker(registry_for(app), RRFRanker(app.ingress.rrf_c))
    ranker.refresh()
    return ranker


def build_service(
    app: AppConfig,
    callers: Mapping[str, Caller],
    events: EventLog,
    store: CatalogBase,
    planner: Callable[[ContextFeaturizer], Planner],
    *,
    on_feedback: Callable[[], None] | None = None,
    backlog: IndexBacklog | None = None,
    ranker: Any = None,
    features: bool = True,
) -> Built:
    """The service over ``callers`` (one per enabled strategy); ``planner`` is built from the featurizer.
    ``ranker`` defaults to :func:`live_ranker`; ``features=False`` computes and logs no ranking features
    (RRF only: the "before the ranker" path of ``scripts/bench_ranker.py``)."""
    enabled = app.enabled()
    vocab = Vocabulary.from_store(store)
    featurizer = ContextFeaturizer.for_vocabulary(list(enabled), vocab, app.policy.ignore_features)
    fanout = Fanout(dict(callers), {n: s.timeout_ms / 1000.0 for n, s in enabled.items()})
    live = ranker if ranker is not None else live_ranker(app)
    facts = FactsCache(store.get_many)
    service = SearchService(
        fanout,
        QueryUnderstanding(vocab).parse,
        events,
        {n: s.default_k for n, s in enabled.items()},
        planner(featurizer),
        users=store.user,
        rrf_c=app.ingress.rrf_c,
        on_feedback=on_feedback,
        backlog=backlog,
        ranker=live,
        featurizer=RankFeaturizer(facts),
        log_top=app.ranking.log_top,
        features=features,
    )
    return Built(service, live, facts)


def local_service(
    app: AppConfig, store: CatalogBase, events: EventLog, *, names: list[str] | None = None, ranker: Any = None
) -> tuple[Built, dict[str, Strategy]]:
    """The service over strategies built in this process (``names``, default every enabled one), called in
    threads, deciding with a fresh policy: what the benchmark and the cold start search with. The caller
    closes the returned strategies."""
    from ltrr.bandit import new_policy
    from ltrr.bandit.planner import PolicyPlanner
    from ltrr.strategies.registry import make_strategy

    sub = app.model_copy(
        update={"strategies": {n: s for n, s in app.strategies.items() if names is None or n in names}}
    )
    names = list(sub.enabled())  # in the config's order: the fan-out's and the policy's must agree
    strategies = {n: make_strategy(n, app.strategy_config(n), store=store) for n in names}
    built = build_service(
        sub,
        {n: thread_caller(s) for n, s in strategies.items()},
        events,
        store,
        lambda fz: PolicyPlanner(new_policy(app.policy, names, fz.dim), fz),
        ranker=ranker,
    )
    return built, strategies


def thread_caller(strategy: Strategy) -> Caller:
    """Call a strategy built in this process, in a thread (what the in-process paths use)."""

    async def call(qd: dict[str, Any], k: int) -> list[dict[str, Any]]:
        cands = await asyncio.to_thread(strategy.search, Query.from_dict(qd), k)
        return [c.to_dict() for c in cands]

    return call
