"""Train, validate and publish a ranker: from the event log (the trainer, ``ltrr train-ranker``) or, before
any clicks exist, from predicted queries run through the real strategies (the cold start, at ingest).

Both end the same way (:func:`fit_and_publish`): train on the older searches, score the newest
``ranking.holdout`` share with the new model, the current model and RRF (nDCG@10 and MRR@10, by
ranx), and publish only if the new model is not worse than either (``ranking.tolerance``). The
previous model stays in the registry for ``ltrr train-ranker --rollback``.

The registry is the one the app configures (:func:`ltrr.ranking.registry.registry_for`: files, or
PostgreSQL with a DSN). The trainer and ``ltrr train-ranker`` pass theirs, opened with the trainer lease,
so a publish raises :class:`~ltrr.errors.Aborted` and writes nothing if that lease is not held; without
one given (the ingest job's cold start) the registry is opened here, unfenced, and closed after.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ltrr.catalog.store import CatalogBase
from ltrr.config import AppConfig
from ltrr.event_store import open_event_log
from ltrr.eventlog import SQLiteEventLog
from ltrr.index_status import IndexBacklog
from ltrr.ranking import features as F
from ltrr.ranking.coldstart import PredictedQuery, predicted_queries
from ltrr.ranking.dataset import estimate_examination, groups_from_log, weighted
from ltrr.ranking.registry import BaseModelRegistry, ModelMeta, registry_for
from ltrr.ranking.train import Group, compare, format_table, should_publish, split_recent, train_ranker

log = logging.getLogger("ltrr.ranking")


@dataclass
class Report:
    """What one training run did; ``published`` is the new version, or "" with ``reason`` saying why not."""

    source: str
    searches: int = 0
    train: int = 0
    holdout: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    published: str = ""
    reason: str = ""
    examination: list[float] = field(default_factory=list)
    examination_estimator: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> str:
        return format_table(self.metrics) if self.metrics else ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"==> {msg}", file=sys.stderr, flush=True)


def fit_and_publish(
    app: AppConfig,
    groups: Sequence[Group],
    registry: BaseModelRegistry,
    report: Report,
    *,
    meta: Mapping[str, Any] | None = None,
    progress: bool = False,
    metric: str = "ndcg@10",
) -> Report:
    """Train on all but the newest ``ranking.holdout`` of ``groups``, compare on those by ``metric``, publish
    if not worse. On click labels the metric must be ``ips_dcg@10``: plain nDCG on clicks favours whichever
    ranker served the log (clicks only land on what it showed, near where it showed them), so it would keep
    refusing a better model; the inverse-examination-weighted DCG estimates the DCG of true relevance.
    A ``registry`` fenced by a lease that is not held refuses the publish: :class:`~ltrr.errors.Aborted`; so
    does one whose current version is no longer the one compared against (another trainer published since)."""
    cfg = app.ranking
    train, hold = split_recent(list(groups), cfg.holdout)
    report.searches, report.train, report.holdout = len(groups), len(train), len(hold)
    if not train or not hold:
        report.reason = f"{len(groups)} labelled searches: too few to train and validate"
        return report
    _say(progress, f"train {cfg.loss} on {len(train)} searches, validate on the newest {len(hold)}")
    t0 = time.perf_counter()
    with tqdm(
        total=cfg.iterations, desc=f"boosting {cfg.loss}", unit="tree", file=sys.stderr, disable=not progress,
        mininterval=1,
    ) as bar:  # fmt: skip
        model = train_ranker(
            train, list(F.NAMES), loss=cfg.loss, iterations=cfg.iterations, depth=cfg.depth, seed=cfg.seed,
            progress=lambda done, _total: bar.update(done - bar.n),
        )  # fmt: skip
    train_s = time.perf_counter() - t0
    rankers: dict[str, Any] = {"new": model}
    try:
        current = registry.load_current()
    except Exception as exc:  # noqa: BLE001 - an unloadable current model is no bar to replace it
        compared = registry.current_version()
        log.warning("ranker: current model %s not comparable: %s", compared, exc)
    else:
        rankers["current"] = None if current is None else current.model
        compared = None if current is None else current.version
    report.metrics = compare(hold, rankers)
    ok, why = should_publish(
        report.metrics["new"],
        report.metrics.get("current"),
        report.metrics["rrf"],
        metric=metric,
        tolerance=cfg.tolerance,
    )
    report.reason = why
    if ok:
        info = ModelMeta(
            schema_version=F.SCHEMA_VERSION,
            feature_names=tuple(F.NAMES),
            loss=cfg.loss,
            validation_metrics=report.metrics,
            examination=tuple(report.examination) if report.examination else None,
            training={
                "source": report.source,
                "searches": {"train": len(train), "holdout": len(hold)},
                "iterations": cfg.iterations,
                "depth": cfg.depth,
                "seconds": round(train_s, 2),
                "decision": why,
                "examination_estimator": report.examination_estimator or None,
                **dict(meta or {}),
            },
        )
        # only over the model it was compared against: another trainer may have published meanwhile
        report.published = registry.publish(model, info, expect_current=compared)
        _say(progress, f"published {report.published}: {why}")
    else:
        _say(progress, f"not published: {why}")
    return report


@contextmanager
def _opened(app: AppConfig, registry: BaseModelRegistry | None) -> Iterator[BaseModelRegistry]:
    """``registry``, else the one ``app`` configures (unfenced), closed after."""
    if registry is not None:
        yield registry
        return
    opened = registry_for(app)
    try:
        yield opened
    finally:
        opened.close()


def retrain_from_log(app: AppConfig, *, progress: bool = False, registry: BaseModelRegistry | None = None) -> Report:
    """Train on the labelled ones of the newest ``ranking.max_searches`` searches of the event log (all of them
    fit the examination model); publish into ``registry`` (default: the app's, unfenced) if not worse."""
    t0 = time.perf_counter()
    cfg = app.ranking
    report = Report("event log")
    events = open_event_log(app)
    try:
        _say(progress, f"read the labelled searches of {getattr(events, 'dsn', app.events_path)}")
        data = groups_from_log(events.recent_searches(cfg.max_searches))
    finally:
        events.close()
    report.skipped = dict(data.skipped)
    if len(data.groups) < cfg.min_searches:
        report.searches = len(data.groups)
        report.reason = f"{len(data.groups)} labelled searches, fewer than ranking.min_searches ({cfg.min_searches})"
        report.seconds = time.perf_counter() - t0
        return report
    exam = estimate_examination(data, seed=cfg.seed) if cfg.position_bias == "regression_em" else None
    if exam is not None:
        report.examination = [round(float(t), 4) for t in exam.theta]
        report.examination_estimator = exam.estimator
        _say(progress, f"examination by position ({exam.estimator}): {report.examination}")
    with _opened(app, registry) as reg:
        fit_and_publish(app, weighted(data, exam), reg, report, progress=progress, metric="ips_dcg@10")
    report.seconds = time.perf_counter() - t0
    return report


# -- the cold start ---------------------------------------------------------------------------------
def ready_strategies(app: AppConfig, store: CatalogBase) -> list[str]:
    """The enabled strategies whose index holds the whole catalog (what the cold start can run)."""
    from ltrr.ingest import index_targets

    return [n for n, behind in IndexBacklog(store, index_targets(app), ttl_s=0).pending().items() if behind == 0]


def needs_cold_start(app: AppConfig, store: CatalogBase, registry: BaseModelRegistry | None = None) -> bool:
    """No model yet, or the current one is a cold-start model made without a strategy that is ready now."""
    with _opened(app, registry) as reg:
        current = reg.current()
    if current is None:
        return True
    made_with = set(current.meta.training.get("strategies", ()))
    return current.meta.training.get("source") == "cold start" and not set(ready_strategies(app, store)) <= made_with


def _groups_of(outcomes: list[tuple[PredictedQuery, Any]]) -> list[Group]:
    out = []
    for i, (pq, event) in enumerate(outcomes):
        if event is None or not event.ranking:
            continue
        ids, x = F.unpack(event.ranking)
        y = np.array([pq.relevant.get(e, 0.0) for e in ids])
        if (y > 0).any():
            out.append(Group(event.request_id, float(i), tuple(ids), x, y, np.ones(len(ids)), x[:, F.INDEX["rrf"]]))
    return out


async def _run_queries(
    app: AppConfig, store: CatalogBase, names: list[str], queries: list[PredictedQuery], events_path: Path,
    progress: Callable[[int], None],
) -> list[tuple[PredictedQuery, Any]]:  # fmt: skip
    from ltrr.builder import local_service
    from ltrr.ranking.rrf import RRFRanker
    from ltrr.validation import validate_search

    events = SQLiteEventLog(events_path)
    built, strategies = local_service(app, store, events, names=names, ranker=RRFRanker(app.ingress.rrf_c))
    svc = built.service
    try:
        sem = asyncio.Semaphore(4)

        async def one(pq: PredictedQuery) -> tuple[PredictedQuery, Any]:
            async with sem:
                try:
                    p = validate_search(query=pq.text, k=10, strategies=names, known_strategies=names)
                    out = await svc.search(p)
                except Exception as exc:  # noqa: BLE001 - a query a strategy rejects is left out
                    log.info("cold start: %r failed: %s", pq.text, exc)
                    return pq, None
                progress(1)
                return pq, await asyncio.to_thread(events.search, out.request_id)

        return list(await asyncio.gather(*(one(q) for q in queries)))
    finally:
        events.close()
        for s in strategies.values():
            s.close()


def cold_start(
    app: AppConfig,
    store: CatalogBase,
    *,
    progress: bool = False,
    n: int | None = None,
    registry: BaseModelRegistry | None = None,
) -> Report:
    """Predicted queries from the catalog, searched with every ready strategy at its default k; the
    intended entities are the labels; train, validate against RRF, publish into ``registry`` (default: the
    app's, unfenced)."""

    t0 = time.perf_counter()
    cfg = app.ranking
    n = cfg.cold_start_queries if n is None else n
    report = Report("cold start")
    names = ready_strategies(app, store)
    if not names or n <= 0:
        report.reason = "no strategy is indexed yet" if not names else "ranking.cold_start_queries is 0"
        return report
    queries = predicted_queries(store, n, seed=cfg.seed)
    _say(progress, f"cold-start ranker: {len(queries)} predicted queries through {', '.join(names)}")
    bar = tqdm(
        total=len(queries), desc="cold-start searches", unit="q", file=sys.stderr, disable=not progress, mininterval=2
    )
    # log (and so train on) the whole union, not only the served top: RRF puts "artists like X"'s
    # neighbours and a tag's entities far down, and those are the rows the model must learn to lift
    whole = app.model_copy(update={"ranking": cfg.model_copy(update={"log_top": cfg.cold_start_rows})})
    with tempfile.TemporaryDirectory(prefix="ltrr-coldstart-") as tmp:
        outcomes = asyncio.run(_run_queries(whole, store, names, queries, Path(tmp) / "events.sqlite", bar.update))
    bar.close()
    groups = _groups_of(outcomes)
    kinds: dict[str, int] = {}
    for pq, _ in outcomes:
        kinds[pq.kind] = kinds.get(pq.kind, 0) + 1
    with _opened(app, registry) as reg:
        fit_and_publish(
            app, groups, reg, report,
            meta={"strategies": names, "queries": kinds}, progress=progress,
        )  # fmt: skip
    report.seconds = time.perf_counter() - t0
    return report
