#!/usr/bin/env python
"""`make bench`: the learned ranker against RRF: its quality on held-out simulated searches, a model
trained on simulated clicks with and without position-bias correction, what ranking costs, and
Search latency before and after the ranker.

It needs what `make up` leaves behind: Meilisearch (127.0.0.1:7700) and Milvus (127.0.0.1:19530)
up, the catalog (var/catalog.sqlite, or PostgreSQL's with a DSN: ltrr.catalog.store.open_catalog)
with every strategy indexed, and the cold-start model that `ltrr ingest` published in var/ranker.
Everything runs in this process, with the strategies called directly as in scripts/bench.py's
in-process rows (no Ray, no Serve). Nothing in var/ is written: the searches are logged to a
temporary directory.

1. **Quality on held-out simulated searches.** Predicted queries (:mod:`ltrr.ranking.coldstart`)
   drawn with another seed than the cold start's, minus every text the cold start trained on, are
   searched with every ready strategy at its default k. Each search's whole union (not only the top
   50 rows that serving logs) is ordered by RRF and by the cold-start model, and scored with the
   intended entities' grades as labels: nDCG@10 and MRR@10 (ranx), overall and per query kind.
   The metrics only cover searches whose union holds a relevant entity ("found"): a ranker cannot
   order what retrieval missed. Known-item MRR@10 counts only the intended entity (grade 3) of
   exact-name and misspelt queries, over the found searches and over all of them (a miss is 0).
2. **Clicks and position bias.** Predicted queries from a third seed are served in the cold-start
   model's order. A simulated user examines position r of the top 10 with probability r^-eta
   (:class:`ltrr.sim.clicks.PositionClickModel`) and clicks the first examined relevant result
   (``--clicks all``: every examined relevant one). The searches are logged as serving logs them:
   the top 50 rows of the served order, positions = served order, and the unclicked searches kept
   for the examination fit. Regression-EM estimates theta from these logs alone; the table puts it
   next to the simulator's true theta, and next to the estimate from the same users and draws
   under the other click rule (one click per search breaks the position-based model the estimator
   assumes: an examined relevant result below the clicked one goes unclicked). CatBoost models
   trained on the clicks (the trainer's loss, trees and depth) without weights, with the
   estimated inverse-examination weights and with the true ones are scored on section 1's
   held-out searches against their true grades, next to RRF and the cold-start model. Then the
   losses are compared on the estimated-weight clicks (the loss of ``ranking.loss`` is the model
   already trained, not trained twice).
3. **Ranking cost** for unions of 50, 200 and 400 real catalog entities, each retrieved by 1-4
   strategies as often as in section 1's real unions, with real ranks and plausible per-strategy
   scores: feature extraction (warm facts cache, and a cold one for reference), CatBoost scoring of
   the cold-start model, and the whole step the service runs (features + scoring + sort), next to
   RRF (sort only). The issue's target is a p50 of at most 2 ms for 200 candidates, features included.
4. **Search latency before and after the ranker**, in-process, in one run: the same realistic
   queries (``ltrr.loadtest.bench_queries``, scripts/bench.py's mix) through the service built with RRF and no features
   (before), with the cold-start model and features and a facts cache holding the whole catalog
   (after: a replica's steady state, the cache being larger than the catalog), and the same in a
   fresh replica whose cache starts empty. Every strategy is forced; the services take turns per
   query, rotating which goes first, so drift and the backends' caches hit all alike.

How to read it: sections 1-2 are reproducible given the catalog, the indexes and the seeds, up
to the few strategy calls that time out on a loaded machine (counted in section 1). Sections 3-4
are timings on a shared, noisy machine: compare the ratios of one run (after / before, features /
total), not absolute times across runs. Held-out nDCG in section 2 is against true grades, so a
click model that beats the cold start there learned something the predicted labels did not say;
the estimated theta tells how far the regression-EM weights are from the truth, and the "IPS,
true theta" row how much that distance costs.

Figures go to stdout and to <out>/ranker.md, ranker.json and ranker.png.

    .venv/bin/python scripts/bench_ranker.py [--config deployments/serve_config.yaml] [--out bench-out] [-n 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
from ltrr.loadtest import bench_environ  # noqa: E402

bench_environ(ROOT)

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ltrr.appconfig_io import load_app_config  # noqa: E402
from ltrr.catalog.store import CatalogBase, open_catalog  # noqa: E402
from ltrr.config import AppConfig  # noqa: E402
from ltrr.ranking import features as F  # noqa: E402
from ltrr.ranking import train as T  # noqa: E402
from ltrr.ranking.catboost import CatBoostRanker  # noqa: E402
from ltrr.ranking.coldstart import INTENDED_GRADE, KINDS, PredictedQuery, predicted_queries  # noqa: E402
from ltrr.ranking.dataset import EXAMINED, LogGroups, estimate_examination, weighted  # noqa: E402
from ltrr.ranking.position_bias import Examination  # noqa: E402
from ltrr.ranking.retrain import _groups_of, _run_queries, ready_strategies  # noqa: E402
from ltrr.ranking.train import Group  # noqa: E402
from ltrr.sim.clicks import PositionClickModel  # noqa: E402

#: Feature rows logged per search here: the whole union (RankingConfig.log_top's maximum).
WHOLE_UNION = 400
SIZES = (50, 200, 400)
#: The issue's budget for ranking 200 candidates, features included (p50).
TARGET_MS = 2.0
#: Columns of the model tables (evaluate's ips_dcg@10 is the plain DCG here: held-out labels are true grades).
COLUMNS = ("ndcg@10", "mrr@10", "searches", "train_s")
ESTIMATED = "clicks, IPS (estimated θ)"
RULES = {"first": "the first examined relevant result", "all": "every examined relevant result (the PBM exactly)"}
#: A predicted query and its logged SearchEvent (None if the search failed).
Outcome = tuple[PredictedQuery, Any]


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def pcts(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=float)
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def machine() -> dict[str, Any]:
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    import catboost

    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "catboost": catboost.__version__,
    }


def sub_app(cfg: AppConfig, names: Sequence[str], log_top: int | None = None) -> AppConfig:
    """``cfg`` with only ``names`` enabled (what the fan-out calls) and optionally another ``ranking.log_top``."""
    update: dict[str, Any] = {"strategies": {n: s for n, s in cfg.strategies.items() if n in names}}
    if log_top is not None:
        update["ranking"] = cfg.ranking.model_copy(update={"log_top": log_top})
    return cfg.model_copy(update=update)


# -- the cold-start model ---------------------------------------------------------------------------


def meta_dict(published: Any) -> dict[str, Any]:
    return dict(published.meta.to_dict())


def source_of(meta: dict[str, Any]) -> str:
    return str((meta.get("training") or {}).get("source") or "")


def cold_start_model(cfg: AppConfig) -> tuple[CatBoostRanker, dict[str, Any]]:
    """The registry's current model if it is the cold start's, else the newest cold-start version."""
    from ltrr.ranking.registry import registry_for

    registry = registry_for(cfg)  # files, or PostgreSQL when the config sets a DSN
    current = registry.current()
    chosen = current if current is not None and source_of(meta_dict(current)) == "cold start" else None
    if chosen is None:
        for v in reversed(registry.versions()):
            published = registry.get(v)
            if source_of(meta_dict(published)) == "cold start":
                chosen = published
                break
    if chosen is None:
        raise SystemExit(f"no cold-start model in {cfg.ranking.model_dir}: run `ltrr ingest` (make up) first")
    meta = meta_dict(chosen)
    ranker = CatBoostRanker.from_registry(registry, chosen.version)
    info = {
        "version": chosen.version,
        "current": current is not None and current.version == chosen.version,
        "current_version": None if current is None else current.version,
        "loss": meta.get("loss"),
        "strategies": (meta.get("training") or {}).get("strategies"),
        "validation": meta.get("validation") or meta.get("validation_metrics"),
    }
    return ranker, info


def served_order(model: CatBoostRanker, ids: Sequence[str], x: np.ndarray) -> list[int]:
    """Row indices in the order serving gives them (:func:`ltrr.ranking.base.rank`'s tie-breaks)."""
    s = model.score(x, [])
    rrf, n_s = x[:, F.INDEX["rrf"]], x[:, F.INDEX["n_strategies"]]
    return sorted(range(len(ids)), key=lambda i: (-s[i], -rrf[i], -n_s[i], ids[i]))


# -- sections 1 and 2: simulated searches -------------------------------------------------------------


def draw_queries(store: CatalogBase, n: int, seed: int, exclude: set[str]) -> tuple[list[PredictedQuery], int]:
    """``n`` predicted queries of ``seed`` without the texts in ``exclude``; and how many were left out."""
    kept: list[PredictedQuery] = []
    left_out = 0
    for q in predicted_queries(store, max(n, 1) + max(20, n // 5), seed=seed):  # shuffled: any prefix is a sample
        if len(kept) == n:
            break
        if q.text in exclude:
            left_out += 1
        else:
            kept.append(q)
    return kept, left_out


def preflight(cfg: AppConfig, names: list[str]) -> None:
    """Fail at once, not after minutes of empty searches, if a strategy's server does not accept connections."""
    import socket
    from urllib.parse import urlsplit

    for name in names:
        conf = cfg.strategy_config(name)
        url = getattr(conf, "url", None) or getattr(conf, "uri", None)
        parts = urlsplit(str(url)) if url else None
        if parts is None or parts.scheme not in ("http", "https", "tcp", "grpc") or not parts.hostname:
            continue  # an in-process backend (the graph, Milvus Lite)
        try:
            socket.create_connection((parts.hostname, parts.port or 80), timeout=3).close()
        except OSError as exc:
            raise SystemExit(f"{name}: nothing answers at {url} ({exc}); is `make up` running?") from None


def call_status(outcomes: list[Outcome], limit: float = 0.02) -> dict[str, dict[str, int]]:
    """Each strategy's calls by status; exits if more than ``limit`` of a strategy's calls failed
    (a server went away: the figures would describe the failure, not the ranker)."""
    out: dict[str, dict[str, int]] = {}
    for _, event in outcomes:
        for c in event.calls if event is not None else ():
            row = out.setdefault(c["strategy"], {})
            row[c["status"]] = row.get(c["status"], 0) + 1
    for name, row in out.items():
        failed = sum(v for k, v in row.items() if k not in ("ok", "skipped"))
        if failed > limit * sum(row.values()):
            raise SystemExit(f"{name}: {failed} of {sum(row.values())} calls failed ({row}); are its servers up?")
    return out


def run_searches(cfg: AppConfig, store: CatalogBase, names: list[str], qs: list[PredictedQuery]) -> list[Outcome]:
    """Every query through every ready strategy at its default k (RRF order, whole union logged)."""
    app = sub_app(cfg, names, WHOLE_UNION)
    bar = tqdm(total=len(qs), desc="simulated searches", unit="q", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ltrr-bench-ranker-") as tmp:
        out = asyncio.run(_run_queries(app, store, names, qs, Path(tmp) / "events.sqlite", bar.update))
    bar.close()
    return out


def kind_table(groups: list[Group], kinds: dict[str, str], models: dict[str, Any]) -> dict[str, T.Table]:
    """:func:`ltrr.ranking.train.compare` overall and per query kind."""
    out = {"all": T.compare(groups, models)}
    for k in KINDS:
        sub = [g for g in groups if kinds[g.group_id] == k]
        if sub:
            out[k] = T.compare(sub, models)
    return out


def known_item(groups: list[Group], kinds: dict[str, str], asked: dict[str, int], model: CatBoostRanker) -> dict:
    """MRR@10 of the intended entity (grade 3) alone, for the exact-name and misspelt queries."""
    out: dict[str, Any] = {}
    for kind in ("name", "typo"):
        sub = [
            Group(g.group_id, g.ts, g.ids, g.x, (g.labels >= INTENDED_GRADE).astype(float), g.weights, g.baseline)
            for g in groups
            if kinds[g.group_id] == kind and (g.labels >= INTENDED_GRADE).any()
        ]
        row: dict[str, Any] = {"queries": asked.get(kind, 0), "found": len(sub)}
        if sub:
            rrf = T.evaluate(sub, {g.group_id: g.baseline for g in sub})["mrr@10"]
            cold = T.evaluate(sub, T.predict_groups(model.model, sub))["mrr@10"]
            share = len(sub) / max(row["queries"], 1)
            row |= {"rrf": rrf, "cold start": cold, "rrf_all": rrf * share, "cold start_all": cold * share}
        out[kind] = row
    return out


def click_logs(
    outcomes: list[Outcome], model: CatBoostRanker, clicks: PositionClickModel, rng: np.random.Generator,
    mode: str, log_top: int,
) -> tuple[LogGroups, dict[str, int]]:  # fmt: skip
    """Serve each search in ``model``'s order, draw its user's clicks, and log it as serving would."""
    data = LogGroups()
    counts = {"searches": 0, "clicked": 0, "unclicked": 0, "no results": 0, "clicks": 0}
    for i, (pq, event) in enumerate(outcomes):
        if event is None or not event.ranking:
            counts["no results"] += 1
            continue
        ids, x = F.unpack(event.ranking)
        counts["searches"] += 1
        top = served_order(model, ids, x)[:log_top]
        ids_t, x_t = tuple(ids[j] for j in top), x[top]
        shown = ids_t[: clicks.depth]
        draw = clicks.draw(rng)
        hits = sorted(
            p for e, grade in pq.relevant.items() if grade > 0 and (p := clicks.click(shown, e, draw)) is not None
        )
        clicked = hits[:1] if mode == "first" else hits
        if not clicked:
            counts["unclicked"] += 1
            data.unclicked.append(x_t[: min(EXAMINED, len(shown))])
            continue
        y = np.zeros(len(ids_t))
        y[np.asarray(clicked) - 1] = 1.0
        counts["clicked"] += 1
        counts["clicks"] += len(clicked)
        data.groups.append(
            Group(event.request_id, float(i), ids_t, x_t, y, np.ones(len(ids_t)), x_t[:, F.INDEX["rrf"]].astype(float))
        )
    return data, counts


def fit(groups: list[Group], cfg: AppConfig, desc: str, **kw: Any) -> Any:
    bar = tqdm(total=cfg.ranking.iterations, desc=desc, unit="tree", file=sys.stderr, leave=False)
    try:
        return T.train_ranker(
            groups, list(F.NAMES), loss=kw.pop("loss", cfg.ranking.loss), iterations=cfg.ranking.iterations,
            depth=cfg.ranking.depth, seed=cfg.ranking.seed, progress=lambda _d, _t: bar.update(1), **kw,
        )  # fmt: skip
    finally:
        bar.close()


# -- section 3: the cost of ranking -------------------------------------------------------------------


def strategy_mix(groups: list[Group], n_strategies: int) -> np.ndarray:
    """P(a candidate is retrieved by m strategies), m = 1..n_strategies, from real unions (a default if none)."""
    counts = np.zeros(n_strategies)
    for g in groups:
        m = np.clip(g.x[:, F.INDEX["n_strategies"]].astype(int), 1, n_strategies)
        counts += np.bincount(m - 1, minlength=n_strategies)[:n_strategies]
    if counts.sum() == 0:
        counts = np.array([0.7, 0.2, 0.07, 0.03][:n_strategies])
    return counts / counts.sum()


def _strategy_score(strategy: str, rank: int, length: int) -> float:
    """A plausible score at ``rank`` of ``length`` (only the features' values depend on it, not their cost)."""
    frac = (rank - 1) / max(length, 1)
    return {
        "lexical": 1.0 - 0.6 * frac,  # Meilisearch's ranking score
        "vector": 0.82 - 0.35 * frac,  # cosine
        "graph": 1.0 / rank,  # co-listening weight, normalised
        "memory": 12.0 * (1.0 - frac),  # the query memory's score
    }.get(strategy, 1.0 - frac)


def synthetic_union(entities: list[Any], n: int, names: list[str], mix: np.ndarray, rng: random.Random) -> tuple:
    """``n`` real entities fused by RRF from per-strategy lists, each entity in 1-4 of them per ``mix``."""
    from ltrr.types import Candidate

    picked = rng.sample(entities, n)
    lists: dict[str, list[Any]] = {s: [] for s in names}
    for e in picked:
        m = rng.choices(range(1, len(names) + 1), weights=mix.tolist())[0]
        for s in rng.sample(names, m):
            lists[s].append(e)
    results = {}
    for s, es in lists.items():
        rng.shuffle(es)
        results[s] = [
            Candidate(e.entity_id, e.entity_type, e.title, e.subtitle, _strategy_score(s, r, len(es)), r)
            for r, e in enumerate(es, 1)
        ]
    return results, {s: len(v) for s, v in results.items()}


def ranking_cost(
    cfg: AppConfig, store: CatalogBase, names: list[str], model: CatBoostRanker, texts: list[str],
    mix: np.ndarray, reps: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    from ltrr.bandit import ContextFeaturizer
    from ltrr.fusion import rrf
    from ltrr.query_understanding import QueryUnderstanding, Vocabulary
    from ltrr.ranking.base import RankContext, rank
    from ltrr.ranking.features import FactsCache, RankFeaturizer
    from ltrr.ranking.rrf import RRFRanker
    from ltrr.types import Query

    rng = random.Random(seed)
    vocab = Vocabulary.from_store(store)
    parse = QueryUnderstanding(vocab).parse
    ctx_fz = ContextFeaturizer.for_vocabulary(names, vocab)
    entities = sorted((e for _, b in store.entities_since(0, batch_size=5000) for e in b), key=lambda e: e.entity_id)
    fallback = RRFRanker(cfg.ingress.rrf_c)
    out: dict[str, Any] = {}
    for n in SIZES:
        scenarios = []
        for _ in range(40):
            results, budgets = synthetic_union(entities, n, names, mix, rng)
            text = rng.choice(texts)
            q = Query(text, parse(text))
            union = rrf(results, c=cfg.ingress.rrf_c)
            ctx = RankContext(q, None, ctx_fz.features(q), budgets)
            scenarios.append((ctx, union, [c.score for c in union]))
        facts = FactsCache(store.get_many)
        fz = RankFeaturizer(facts)
        for ctx, union, _ in scenarios:  # warm: the steady state of a replica's cache
            fz.extract(ctx, union)
        rows: dict[str, list[float]] = {
            "features": [],
            "catboost": [],
            "total": [],
            "total_cpu": [],
            "rrf": [],
            "features_cold": [],
        }
        empty = np.zeros((n, 0), dtype=np.float32)
        for i in tqdm(range(reps), desc=f"ranking {n} candidates", unit="rep", file=sys.stderr, leave=False):
            ctx, union, rrf_scores = scenarios[i % len(scenarios)]
            for c, s in zip(union, rrf_scores, strict=True):  # rank() overwrote them with the model's
                c.score = s
            t0 = time.perf_counter()
            x = fz.extract(ctx, union)
            t1 = time.perf_counter()
            model.score(x, union)
            t2 = time.perf_counter()
            rows["features"].append((t1 - t0) * 1000)
            rows["catboost"].append((t2 - t1) * 1000)
            t0 = time.perf_counter()
            order = rank(fallback, empty, union, None)
            rows["rrf"].append((time.perf_counter() - t0) * 1000)
            t0, c0 = time.perf_counter(), time.thread_time()
            x = fz.extract(ctx, union)
            order = rank(model, x, union, None)
            rows["total"].append((time.perf_counter() - t0) * 1000)
            rows["total_cpu"].append((time.thread_time() - c0) * 1000)  # what the other processes cannot add
            assert len(order) == n
            if i < 30:  # a replica's first sight of these entities: the catalog is read
                for c, s in zip(union, rrf_scores, strict=True):
                    c.score = s
                cold = RankFeaturizer(FactsCache(store.get_many))
                t0 = time.perf_counter()
                cold.extract(ctx, union)
                rows["features_cold"].append((time.perf_counter() - t0) * 1000)
        out[str(n)] = {k: pcts(v) for k, v in rows.items()}
        out[str(n)]["list_lengths"] = {s: float(np.mean([sc[0].budgets[s] for sc in scenarios])) for s in names}
        log(f"ranking {n}: " + ", ".join(f"{k} p50 {v['p50_ms']} ms" for k, v in out[str(n)].items() if "p50_ms" in v))
    return out


# -- section 4: Search before and after the ranker -----------------------------------------------------


#: The services of section 4, in the order of the first query (then rotated).
BEFORE, AFTER, FRESH = "before", "after", "after, fresh replica"


def search_latency(
    cfg: AppConfig, store: CatalogBase, names: list[str], model: CatBoostRanker, info: dict[str, Any], n: int
) -> dict[str, Any]:
    """The same queries through RRF without features, the model with a warm facts cache (a replica's
    steady state: the cache outgrows the catalog), and the model in a fresh replica (empty cache)."""
    from ltrr import loadtest as lt
    from ltrr.bandit import new_policy
    from ltrr.bandit.planner import PolicyPlanner
    from ltrr.builder import build_service, thread_caller
    from ltrr.eventlog import SQLiteEventLog
    from ltrr.ranking.rrf import RRFRanker
    from ltrr.strategies.registry import make_strategy
    from ltrr.validation import validate_search

    app = sub_app(cfg, names)
    strategies = {s: make_strategy(s, app.strategy_config(s)) for s in names}
    callers = {s: thread_caller(st) for s, st in strategies.items()}
    rrf = RRFRanker(app.ingress.rrf_c)

    def planner(fz: Any) -> Any:
        return PolicyPlanner(new_policy(app.policy, names, fz.dim), fz)

    def service(events: Any, ranker: Any, features: bool) -> Any:
        return build_service(app, callers, events, store, planner, ranker=ranker, features=features)

    qs, warm_up = lt.bench_queries(store, n, 0), lt.bench_queries(store, 20, 1)  # scripts/bench.py's mix
    sides = (BEFORE, AFTER, FRESH)
    lat: dict[str, list[float]] = {side: [] for side in sides}
    degraded = dict.fromkeys(sides, 0)
    with tempfile.TemporaryDirectory(prefix="ltrr-bench-ranker-e2e-") as tmp:
        events = SQLiteEventLog(Path(tmp) / "events.sqlite")
        built = {BEFORE: service(events, rrf, False), AFTER: service(events, model, True)}
        ids = [e.entity_id for _, batch in store.entities_since(0, batch_size=5000) for e in batch]
        for i in range(0, len(ids), 5000):
            built[AFTER].facts(ids[i : i + 5000])
        svcs = {side: b.service for side, b in built.items()}
        want = {BEFORE: rrf.version, AFTER: model.version, FRESH: model.version}

        async def one(side: str, q: str) -> float:
            p = validate_search(query=q, k=10, strategies=names, known_strategies=names)
            t = time.perf_counter()
            out = await svcs[side].search(p)
            ms = (time.perf_counter() - t) * 1000
            degraded[side] += bool(out.degraded)
            if out.ranker_version != want[side]:
                raise SystemExit(f"the {side} service ranked with {out.ranker_version}, not {want[side]}")
            return ms

        async def run() -> None:
            for q in warm_up:  # connections, Milvus and Meilisearch caches; the fresh replica does not exist yet
                for side in (BEFORE, AFTER):
                    await one(side, q)
            svcs[FRESH] = service(events, model, True).service
            for i, q in enumerate(tqdm(qs, desc="search before/after", unit="q", file=sys.stderr)):
                for side in sides[i % 3 :] + sides[: i % 3]:
                    lat[side].append(await one(side, q))

        try:
            asyncio.run(run())
        finally:
            events.close()
            for st in strategies.values():
                st.close()
    if max(degraded.values()) > 0.02 * (n + len(warm_up)):
        raise SystemExit(f"degraded searches (a strategy failed or timed out): {degraded}; are the servers up?")
    rows = {side: pcts(v) | {"degraded": degraded[side]} for side, v in lat.items()}
    b = rows[BEFORE]
    setups = {
        BEFORE: f"RRF ({rrf.version}), no features",
        AFTER: f"cold-start model {info['version']}, features, facts cache holding the catalog",
        FRESH: f"cold-start model {info['version']}, features, facts cache empty at the first query",
    }
    return {
        "queries": len(qs),
        "strategies": names,
        "rows": {side: rows[side] | {"setup": setups[side]} for side in sides},
        "ratios": {
            side: {
                "p50": rows[side]["p50_ms"] / max(b["p50_ms"], 1e-9),
                "p99": rows[side]["p99_ms"] / max(b["p99_ms"], 1e-9),
                "delta_p50_ms": rows[side]["p50_ms"] - b["p50_ms"],
            }
            for side in (AFTER, FRESH)
        },
        "lat": lat,
    }


# -- outputs ----------------------------------------------------------------------------------------


def fmt(v: Any, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(r: dict[str, Any]) -> str:
    m, s1, s2, s3, s4 = r["meta"], r["quality"], r["clicks"], r["ranking_cost"], r["search"]
    L = ["# The learned ranker against RRF", ""]
    L += [f"- {k}: {v}" for k, v in m.items() if k not in ("timings",)]
    L += ["- run time: " + ", ".join(f"{k} {v:.0f} s" for k, v in m["timings"].items()), ""]

    L += ["## 1. Quality on held-out simulated searches", ""]
    L += [
        f"{s1['queries']} predicted queries (seed {s1['seed']}; {s1['excluded']} texts the cold start trained on "
        f"left out), searched with {', '.join(s1['strategies'])} at their default k; {s1['found']} searches hold a "
        f"relevant entity in their union (median union {s1['union']['p50']:.0f} candidates, p90 "
        f"{s1['union']['p90']:.0f}, max {s1['union']['max']:.0f}). The whole union is ranked; labels are the "
        "predicted grades.",
        "",
        "| kind | queries | found | nDCG@10 RRF | nDCG@10 cold start | MRR@10 RRF | MRR@10 cold start |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, t in s1["by_kind"].items():
        L.append(
            f"| {kind} | {s1['asked'].get(kind, s1['queries'])} | {t['rrf']['searches']:.0f} | "
            f"{fmt(t['rrf']['ndcg@10'])} | {fmt(t['cold start']['ndcg@10'])} | {fmt(t['rrf']['mrr@10'])} | "
            f"{fmt(t['cold start']['mrr@10'])} |"
        )
    calls = "; ".join(f"{n} " + ", ".join(f"{k} {v}" for k, v in row.items()) for n, row in s1["calls"].items())
    L += ["", f"Strategy calls of sections 1 and 2 by status: {calls}."]
    L += ["", "Known-item MRR@10 (the intended entity only):", ""]
    L += ["| kind | queries | found | RRF | cold start | RRF, misses as 0 | cold start, misses as 0 |"]
    L += ["|---|---|---|---|---|---|---|"]
    for kind, row in s1["known_item"].items():
        L.append(
            f"| {'exact name' if kind == 'name' else 'misspelt'} | {row['queries']} | {row['found']} | "
            f"{fmt(row.get('rrf'))} | {fmt(row.get('cold start'))} | {fmt(row.get('rrf_all'))} | "
            f"{fmt(row.get('cold start_all'))} |"
        )
    mi = s1["model"]
    served = "the served version" if mi["current"] else f"not the served version, {mi['current_version']}"
    L += ["", f"Cold-start model: {mi['version']} ({served}), loss {mi['loss']}.", ""]

    L += ["## 2. Click-trained models and position bias", ""]
    c = s2["counts"]
    L += [
        f"{s2['queries']} training queries (seed {s2['seed']}, none of section 1's texts), served in the cold-start "
        f"model's order; examination r^-{s2['eta']:g} over the top {s2['depth']}; clicks: {s2['clicks_rule']}. "
        f"{c['searches']} searches, {c['clicked']} with a click ({c['clicks']} clicks), {c['unclicked']} without.",
        "",
        "| position | true θ | estimated θ (regression-EM) | estimated / true | estimated θ, clicking "
        f"{s2['other_rule']} ({s2['counts_other_rule']['clicks']} clicks) | estimated / true |",
        "|---|---|---|---|---|---|",
    ]
    none = [None] * len(s2["theta_true"])
    est, alt = s2["theta_estimated"] or none, s2["theta_estimated_other_rule"] or none
    for k, (t, e, o) in enumerate(zip(s2["theta_true"], est, alt, strict=True), 1):
        ratio, ratio_o = (None if v is None else v / t for v in (e, o))
        L.append(f"| {k} | {t:.4f} | {fmt(e)} | {fmt(ratio, 3)} | {fmt(o)} | {fmt(ratio_o, 3)} |")
    L += ["", f"Examination fit: {s2['examination_fit']}.", ""]
    L += [f"Held-out (section 1's {s1['found']} searches, true grades):", "", s2["table_md"], ""]
    if s2.get("losses_md"):
        L += [
            f"Losses, each trained on {s2['losses_on']} ({s2['loss']}: the model of the table above), scored on "
            "the held-out searches:",
            "",
            s2["losses_md"],
            "",
        ]

    L += ["## 3. Ranking cost (per search, ms)", ""]
    L += [
        "| candidates | features p50 | features p99 | CatBoost p50 | CatBoost p99 | total p50 | total p99 | "
        "total, CPU time p50 | RRF sort p50 | features, cold cache p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, row in s3["sizes"].items():
        L.append(
            f"| {n} | {row['features']['p50_ms']} | {row['features']['p99_ms']} | {row['catboost']['p50_ms']} | "
            f"{row['catboost']['p99_ms']} | {row['total']['p50_ms']} | {row['total']['p99_ms']} | "
            f"{row['total_cpu']['p50_ms']} | {row['rrf']['p50_ms']} | {row['features_cold']['p50_ms']} |"
        )
    L += [
        "",
        f"{s3['reps']} repetitions per size over 40 unions; strategies per candidate as in section 1: "
        + ", ".join(f"{i}: {p:.2f}" for i, p in enumerate(s3["mix"], 1))
        + ". total = features + CatBoost + sort, in wall-clock time; its CPU time (the thread's) leaves out "
        "what the servers beside it take from the two cores" + f". Target: p50 <= {TARGET_MS:g} ms for 200 candidates: "
        f"{s3['target']}.",
        "",
    ]
    L += ["## 4. Search latency before and after the ranker (in-process, one run)", ""]
    L += ["| setup | n | p50 ms | p99 ms | mean ms |", "|---|---|---|---|---|"]
    for side, row in s4["rows"].items():
        L.append(f"| {side}: {row['setup']} | {row['n']} | {row['p50_ms']} | {row['p99_ms']} | {row['mean_ms']} |")
    L += [""]
    for side, q in s4["ratios"].items():
        L.append(f"- {side} / before: p50 {q['p50']:.2f}x ({q['delta_p50_ms']:+.2f} ms), p99 {q['p99']:.2f}x")
    L += [
        "",
        f"{s4['queries']} queries (scripts/bench.py's mix), {', '.join(s4['strategies'])} forced, the three services "
        "taking turns per query (rotating which goes first); one temporary event log for all.",
    ]
    return "\n".join(L)


def plot(path: Path, r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 9))
    s2 = r["clicks"]
    pos = np.arange(1, len(s2["theta_true"]) + 1)
    a = ax[0, 0]
    a.plot(pos, s2["theta_true"], "o-", label=f"simulator: r^-{s2['eta']:g}")
    if s2["theta_estimated"]:
        a.plot(pos, s2["theta_estimated"], "s--", label=f"regression-EM, users click {s2['clicks_rule']}")
    if s2["theta_estimated_other_rule"]:
        a.plot(pos, s2["theta_estimated_other_rule"], "^:", label=f"regression-EM, users click {s2['other_rule']}")
    a.set_xlabel("position")
    a.set_ylabel("examination θ_k / θ_1")
    a.set_title("Position bias: true vs estimated")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    a = ax[0, 1]
    table = s2["table"]
    names = list(table)
    kinds = ["ndcg@10", "mrr@10"]
    w = 0.8 / len(names)
    for i, name in enumerate(names):
        a.bar(np.arange(len(kinds)) + i * w, [table[name][k] for k in kinds], w, label=name)
    a.set_xticks(np.arange(len(kinds)) + 0.4 - w / 2, kinds)
    lo = min(table[n][k] for n in names for k in kinds if not math.isnan(table[n][k]))
    a.set_ylim(max(0.0, lo - 0.1), 1.0)
    a.set_title("Held-out searches, true grades")
    a.legend(fontsize=8)
    a.grid(axis="y", alpha=0.3)
    a = ax[1, 0]
    sizes = list(r["ranking_cost"]["sizes"])
    rows = r["ranking_cost"]["sizes"]
    for key, label in (("features", "features"), ("catboost", "CatBoost"), ("total", "total"), ("rrf", "RRF sort")):
        a.plot([int(n) for n in sizes], [rows[n][key]["p50_ms"] for n in sizes], "o-", label=f"{label} p50")
    a.axhline(TARGET_MS, color="grey", ls=":", label=f"target {TARGET_MS:g} ms @ 200")
    a.set_xlabel("candidates")
    a.set_ylabel("ms per search")
    a.set_title("Ranking cost")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    a = ax[1, 1]
    for side, xs in r["search"]["lat"].items():
        xs = sorted(xs)
        a.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=side)
    a.set_xscale("log")
    a.set_xlabel("Search latency (ms, log scale)")
    a.set_ylabel("fraction of searches")
    a.set_title("In-process Search, before / after the ranker")
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.environ.get("LTRR_CONFIG", "deployments/serve_config.yaml"))
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("-n", type=int, default=600, help="held-out predicted queries (section 1)")
    ap.add_argument("--train-n", type=int, default=1500, help="click-training predicted queries (section 2)")
    ap.add_argument("--eval-seed", type=int, default=101)
    ap.add_argument("--train-seed", type=int, default=202)
    ap.add_argument("--eta", type=float, default=1.0, help="click model: examination r^-eta over the top 10")
    ap.add_argument("--clicks", choices=("first", "all"), default="first", help="click the first examined relevant "
                    "result, or every examined relevant one (the position-based model exactly)")  # fmt: skip
    ap.add_argument("--no-losses", action="store_true", help="skip the loss comparison (the slowest step)")
    ap.add_argument("--reps", type=int, default=300, help="repetitions per size (section 3)")
    ap.add_argument("--searches", type=int, default=200, help="queries through each service (section 4)")
    args = ap.parse_args()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    cfg = load_app_config(args.config)
    model, info = cold_start_model(cfg)
    log(f"cold-start model {info['version']} ({'current' if info['current'] else 'not current'})")
    store = open_catalog(cfg)
    names = ready_strategies(cfg, store)
    if not names:
        raise SystemExit("no strategy is fully indexed: run `make up` (ltrr ingest) first")
    missing = [s for s in cfg.enabled() if s not in names]
    if missing:
        log(f"not fully indexed, left out: {', '.join(missing)}")
    preflight(cfg, names)

    # 1. held-out quality
    t = time.perf_counter()
    trained_on = {
        q.text for q in predicted_queries(store, max(cfg.ranking.cold_start_queries, 1), seed=cfg.ranking.seed)
    }
    held_q, excluded = draw_queries(store, args.n, args.eval_seed, trained_on)
    train_q, _ = draw_queries(store, args.train_n, args.train_seed, {q.text for q in held_q})
    timings["predicted queries"] = time.perf_counter() - t
    log(f"{len(held_q)} held-out + {len(train_q)} click-training queries through {', '.join(names)}")
    t = time.perf_counter()
    outcomes = run_searches(cfg, store, names, held_q + train_q)
    timings["simulated searches"] = time.perf_counter() - t
    calls = call_status(outcomes)
    held_out, train_out = outcomes[: len(held_q)], outcomes[len(held_q) :]
    held = _groups_of(held_out)
    kinds = {ev.request_id: pq.kind for pq, ev in held_out if ev is not None}
    asked: dict[str, int] = {}
    for pq in held_q:
        asked[pq.kind] = asked.get(pq.kind, 0) + 1
    sizes = [len(F.unpack(ev.ranking)[0]) for _, ev in held_out if ev is not None and ev.ranking]
    by_kind = kind_table(held, kinds, {"cold start": model.model})
    quality = {
        "queries": len(held_q),
        "seed": args.eval_seed,
        "excluded": excluded,
        "strategies": names,
        "found": len(held),
        "failed": sum(ev is None for _, ev in held_out),
        "calls": calls,
        "asked": asked,
        "union": {
            "p50": float(np.percentile(sizes, 50)),
            "p90": float(np.percentile(sizes, 90)),
            "max": float(max(sizes)),
        },
        "by_kind": by_kind,
        "known_item": known_item(held, kinds, asked, model),
        "model": info,
    }
    print(T.format_table(by_kind["all"], COLUMNS[:3]), flush=True)

    # 2. clicks
    t = time.perf_counter()
    clicks = PositionClickModel(eta=args.eta, depth=10)
    data, counts = click_logs(
        train_out, model, clicks, np.random.default_rng(args.train_seed), args.clicks, cfg.ranking.log_top
    )
    truth = Examination(clicks.examination() / clicks.examination()[0])
    exam = estimate_examination(data, seed=cfg.ranking.seed)
    log(f"examination: estimated {None if exam is None else np.round(exam.theta, 3).tolist()}")
    # the same users and draws under the other click rule: only theta is estimated from it
    other_rule = "all" if args.clicks == "first" else "first"
    data_other, counts_other = click_logs(
        train_out, model, clicks, np.random.default_rng(args.train_seed), other_rule, cfg.ranking.log_top
    )
    exam_other = estimate_examination(data_other, seed=cfg.ranking.seed)
    models: dict[str, Any] = {"cold start": model.model}
    seconds: dict[str, float] = {}
    train_sets = {"clicks, no weights": data.groups, "clicks, IPS (true θ)": weighted(data, truth)}
    if exam is not None:
        train_sets = {"clicks, no weights": data.groups, ESTIMATED: weighted(data, exam), **train_sets}
    for name, groups in train_sets.items():
        t0 = time.perf_counter()
        models[name] = fit(groups, cfg, name)
        seconds[name] = time.perf_counter() - t0
    table = T.compare(held, models)
    for name, s in seconds.items():
        table[name]["train_s"] = s
    timings["click models"] = time.perf_counter() - t
    print(T.format_table(table, COLUMNS), flush=True)
    losses_md, losses = "", None
    compare_losses = getattr(T, "compare_losses", None)
    if compare_losses is not None and not args.no_losses:
        # cfg's loss on these groups is the model trained above (same data, seed and parameters): reuse it
        base = ESTIMATED if exam is not None else "clicks, no weights"
        others = [loss for loss in T.LOSSES if loss != cfg.ranking.loss]
        t = time.perf_counter()
        bar = tqdm(total=cfg.ranking.iterations * len(others), desc="losses", unit="tree", file=sys.stderr)
        other = compare_losses(
            train_sets[base], held, list(F.NAMES), losses=others, iterations=cfg.ranking.iterations,
            depth=cfg.ranking.depth, seed=cfg.ranking.seed, progress=lambda _d, _t: bar.update(1),
        )  # fmt: skip
        bar.close()
        losses = {"rrf": other["rrf"]}
        for loss in T.LOSSES:
            losses[loss] = table[base] if loss == cfg.ranking.loss else other[loss]
        losses_md = T.format_table(losses, COLUMNS)
        timings["loss comparison"] = time.perf_counter() - t
        print(losses_md, flush=True)
    fit_note = "not identified (too few clicks at some position)"
    if exam is not None:
        fit_note = f"{exam.iterations} EM iterations, {'converged' if exam.converged else 'not converged'}, "
        fit_note += f"inverse weights clipped at {exam.max_weight:g}"
    clicks_out = {
        "queries": len(train_q),
        "seed": args.train_seed,
        "eta": args.eta,
        "depth": clicks.depth,
        "clicks_rule": RULES[args.clicks],
        "served_by": f"cold-start model {info['version']}",
        "counts": counts,
        "theta_true": [round(float(v), 4) for v in truth.theta],
        "theta_estimated": None if exam is None else [round(float(v), 4) for v in exam.theta],
        "other_rule": RULES[other_rule],
        "counts_other_rule": counts_other,
        "theta_estimated_other_rule": None if exam_other is None else [round(float(v), 4) for v in exam_other.theta],
        "examination_fit": fit_note,
        "table": table,
        "table_md": T.format_table(table, COLUMNS),
        "loss": cfg.ranking.loss,
        "losses_on": "the clicks with estimated-θ weights" if exam is not None else "the clicks, unweighted",
        "losses": losses,
        "losses_md": losses_md,
    }

    # 3. ranking cost
    t = time.perf_counter()
    mix = strategy_mix(held, len(names))
    cost = ranking_cost(cfg, store, names, model, [q.text for q in held_q], mix, args.reps, args.eval_seed)
    p50 = cost["200"]["total"]["p50_ms"]
    verdict = f"{p50} ms, {'met' if p50 <= TARGET_MS else 'missed'}"
    timings["ranking cost"] = time.perf_counter() - t

    # 4. Search before / after
    t = time.perf_counter()
    search = search_latency(cfg, store, names, model, info, args.searches)
    timings["search before/after"] = time.perf_counter() - t
    store.close()

    timings["total"] = time.perf_counter() - started
    result = {
        "meta": {
            "command": "scripts/bench_ranker.py " + " ".join(sys.argv[1:]),
            **machine(),
            "config": args.config,
            "timings": {k: round(v, 1) for k, v in timings.items()},
        },
        "quality": quality,
        "clicks": clicks_out,
        "ranking_cost": {"sizes": cost, "reps": args.reps, "mix": [round(float(p), 4) for p in mix], "target": verdict},
        "search": search,
    }
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranker.json").write_text(json.dumps(result, indent=1, default=float) + "\n")  # first: the figures
    text = markdown(result)
    (out / "ranker.md").write_text(text + "\n")
    plot(out / "ranker.png", result)
    print(text)
    log(f"wrote {out}/ranker.md, ranker.json, ranker.png in {timings['total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
