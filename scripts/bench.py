#!/usr/bin/env python
"""`make bench`: Search latency over gRPC through Ray Serve vs. the same
request path in-process, so the ratio is the Serve overhead on this machine.

It also reports every strategy's own latency as the responses report it
(``StrategyCall.latency_ms``, live traffic through Serve), the same strategies
called directly, and the vector strategy's recall@100 against exact search
over every stored vector.

It uses the running `make up` deployment (127.0.0.1:9000), starting it first
if it is not serving. Figures go to stdout and bench-out/ (markdown table,
JSON and a latency plot). The machine is shared and noisy: compare the ratios
of one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The strategies without the vector strategy (and its query embedding): isolates Serve's own per-hop cost.
FAST = ("lexical", "memory", "graph")
#: Per-strategy live latencies: strategy -> latency_ms of its OK calls.
Calls = dict[str, list[float]]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LTRR_HOME", str(ROOT))


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def summary(name: str, lat_ms: list[float], wall_s: float) -> dict[str, Any]:
    return {
        "setup": name,
        "n": len(lat_ms),
        "p50_ms": round(pct(lat_ms, 50), 2),
        "p99_ms": round(pct(lat_ms, 99), 2),
        "mean_ms": round(statistics.fmean(lat_ms), 2),
        "throughput_rps": round(len(lat_ms) / wall_s, 1),
    }


def record_calls(resp: Any, calls: Calls) -> None:
    """Add the latency of every OK strategy call in a SearchResponse to ``calls``."""
    from ltrr.v1 import search_pb2 as pb

    for c in resp.strategies:
        if c.status == pb.StrategyCall.OK:
            calls.setdefault(c.strategy, []).append(c.latency_ms)


def grpc_sequential(
    target: str, qs: list[str], strategies: tuple[str, ...] = (), calls: Calls | None = None
) -> tuple[list[float], float]:
    from ltrr.client import LtrrClient

    lat = []
    with LtrrClient(target, timeout=30) as c:
        c.search("warm up", k=10, strategies=strategies)
        t0 = time.perf_counter()
        for q in qs:
            t = time.perf_counter()
            resp = c.search(q, k=10, strategies=strategies)
            lat.append((time.perf_counter() - t) * 1000)
            if calls is not None:
                record_calls(resp, calls)
        wall = time.perf_counter() - t0
    return lat, wall


def grpc_concurrent(
    target: str, qs: list[str], callers: int, strategies: tuple[str, ...] = (), calls: Calls | None = None
) -> tuple[list[float], float]:
    from ltrr.client import LtrrClient

    lat: list[float] = []
    lock = threading.Lock()
    clients = [LtrrClient(target, timeout=60) for _ in range(callers)]

    def work(i: int) -> None:
        c = clients[i % callers]
        t = time.perf_counter()
        resp = c.search(qs[i], k=10, strategies=strategies)
        with lock:
            lat.append((time.perf_counter() - t) * 1000)
            if calls is not None:
                record_calls(resp, calls)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(callers) as ex:
        list(ex.map(work, range(len(qs))))
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    return lat, wall


def serve_hop(n: int) -> dict[str, Any]:
    """One DeploymentHandle round trip to the learner's trivial ``version()``: what a separate
    policy deployment would add to every search, next to deciding in the ingress (µs)."""
    import ray
    from ray import serve

    ray.init(address="auto", namespace="serve", log_to_driver=False)

    async def run() -> list[float]:
        h = serve.get_deployment_handle("learner", app_name="ltrr")
        for _ in range(20):
            await h.version.remote()
        lat = []
        for _ in range(n):
            t = time.perf_counter()
            await h.version.remote()
            lat.append((time.perf_counter() - t) * 1000)
        ray.shutdown()  # inside the loop: Ray's late callbacks must not find it closed
        return lat

    lat = asyncio.run(run())
    return summary("one Serve hop (driver -> learner.version)", lat, sum(lat) / 1000)


def in_process(config_path: str, qs: list[str], callers: int) -> dict[str, Any]:
    """The same SearchService, with strategies called directly in threads (no Serve, no gRPC)."""
    from ltrr.appconfig_io import load_app_config
    from ltrr.builder import local_service
    from ltrr.catalog.store import open_catalog
    from ltrr.eventlog import SQLiteEventLog
    from ltrr.types import Query
    from ltrr.validation import validate_search

    cfg = load_app_config(config_path)
    enabled = cfg.enabled()
    names = list(enabled)
    store = open_catalog(cfg)  # PostgreSQL's with a DSN, as the app's
    events = SQLiteEventLog(ROOT / "var" / "bench-events.sqlite")
    built, strategies = local_service(cfg, store, events)
    svc = built.service
    every = tuple(names)

    async def one(q: str, forced: tuple[str, ...] = every) -> float:
        t = time.perf_counter()
        await svc.search(validate_search(query=q, k=10, strategies=forced, known_strategies=names))
        return (time.perf_counter() - t) * 1000

    async def seq() -> tuple[list[float], float]:
        await one("warm up")
        t0 = time.perf_counter()
        lat = [await one(q) for q in qs]
        return lat, time.perf_counter() - t0

    async def conc() -> tuple[list[float], float]:
        sem = asyncio.Semaphore(callers)

        async def guarded(q: str) -> float:
            async with sem:
                return await one(q)

        t0 = time.perf_counter()
        lat = await asyncio.gather(*(guarded(q) for q in qs))
        return list(lat), time.perf_counter() - t0

    async def seq_fast() -> tuple[list[float], float]:
        await one("warm up", FAST)
        t0 = time.perf_counter()
        lat = [await one(q, FAST) for q in qs]
        return lat, time.perf_counter() - t0

    out: dict[str, Any] = {}
    lat, wall = asyncio.run(seq_fast())
    out["fast"] = summary(f"in-process, sequential, {'+'.join(FAST)} only", lat, wall)
    lat, wall = asyncio.run(seq())
    out["seq"] = summary("in-process, sequential", lat, wall)
    out["seq_lat"] = lat
    lat, wall = asyncio.run(conc())
    out["conc"] = summary(f"in-process, {callers} concurrent", lat, wall)
    out["conc_lat"] = lat
    # Per strategy, direct and sequential: where the time goes.
    per = {}
    for n, s in strategies.items():
        ls = []
        for q in qs[:100]:
            query = Query(q, svc.parse(q))
            t = time.perf_counter()
            try:
                s.search(query, enabled[n].default_k)
            except Exception:  # noqa: BLE001 - a failing backend shows up as missing figures
                continue
            ls.append((time.perf_counter() - t) * 1000)
        per[n] = summary(f"{n} direct", ls, sum(ls) / 1000) if ls else {"setup": f"{n} direct", "n": 0}
    out["per_strategy"] = per
    for s in strategies.values():
        s.close()
    return out


def vector_recall(config_path: str, qs: list[str], k: int = 100) -> dict[str, Any]:
    """recall@k of the vector strategy (HNSW in Milvus) against exact cosine search over every stored vector.

    recall@k = |top_k(HNSW) & top_k(exact)| / k, averaged over distinct queries; the exact top k
    comes from numpy over all vectors read back from the collection, with the same query vectors.
    """
    import numpy as np

    from ltrr.appconfig_io import load_app_config
    from ltrr.strategies.vector import VectorStrategy
    from ltrr.types import ParsedQuery, Query

    cfg = load_app_config(config_path)
    vs = VectorStrategy(cfg.strategy_config("vector"))  # type: ignore[arg-type]
    client = vs.client()
    ids: list[str] = []
    vecs: list[list[float]] = []
    it = client.query_iterator(vs.config.collection, batch_size=5000, filter="", output_fields=["vector"])
    while batch := it.next():
        ids += [str(r["id"]) for r in batch]
        vecs += [r["vector"] for r in batch]
    it.close()
    mat = np.asarray(vecs, dtype=np.float32)
    distinct = list(dict.fromkeys(qs))[:200]
    qv = vs.embedder.encode(distinct)
    recalls = []
    for text, v in zip(distinct, qv, strict=True):
        exact = {ids[i] for i in np.argsort(-(mat @ v))[:k]}
        got = {c.entity_id for c in vs.search(Query(text, ParsedQuery(text, text)), k)}
        recalls.append(len(got & exact) / k)
    vs.close()
    return {
        "k": k,
        "queries": len(distinct),
        "rows": len(ids),
        "recall_mean": round(float(np.mean(recalls)), 4),
        "recall_min": round(float(np.min(recalls)), 4),
        "index": vs.config.index_type,
        "index_params": dict(vs.config.index_params),
        "search_params": dict(vs.config.search_params),
    }


def plot(path: Path, series: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, lat in series.items():
        xs = sorted(lat)
        ax.plot(xs, [i / len(xs) for i in range(1, len(xs) + 1)], label=name)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())  # plain milliseconds, not 3x10^1
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([5, 10, 20, 50, 100, 200, 500, 1000])
    ax.set_xlabel("Search latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("ltrr Search latency (CDF): gRPC via Ray Serve vs in-process")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--config", default="deployments/serve_config.yaml")
    ap.add_argument("-n", type=int, default=300, help="sequential calls")
    ap.add_argument("--callers", type=int, default=16)
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args()
    os.chdir(ROOT)
    from ltrr.appconfig_io import load_app_config
    from ltrr.catalog.store import open_catalog
    from ltrr.client import LtrrClient
    from ltrr.loadtest import bench_queries

    try:
        with LtrrClient(args.target, timeout=3) as c:
            up = c.health() == "SERVING"
    except Exception:  # noqa: BLE001
        up = False
    if not up:
        print("ltrr is not serving; running scripts/up.sh first", file=sys.stderr)
        subprocess.run([str(ROOT / "scripts" / "up.sh")], check=True)
    cfg = load_app_config(args.config)
    catalog = open_catalog(cfg)  # PostgreSQL's with a DSN, as the app's
    try:
        qs = bench_queries(catalog, args.n)
    finally:
        catalog.close()
    cq = qs * 2
    print(
        f"bench: {len(qs)} sequential + {len(cq)} with {args.callers} concurrent callers; cores={os.cpu_count()}",
        file=sys.stderr,
    )
    every = tuple(cfg.enabled())
    rows = []
    live: Calls = {}
    # Every strategy forced on both paths: the Serve-vs-in-process comparison does not depend on the policy.
    lat_seq, wall = grpc_sequential(args.target, qs, every, live)
    rows.append(summary("gRPC via Serve, sequential, all four strategies", lat_seq, wall))
    print(rows[-1], file=sys.stderr)
    lat_pol, wall = grpc_sequential(args.target, qs)
    rows.append(summary("gRPC via Serve, sequential, the policy decides", lat_pol, wall))
    print(rows[-1], file=sys.stderr)
    lat_conc, wall = grpc_concurrent(args.target, cq, args.callers, every)
    rows.append(summary(f"gRPC via Serve, {args.callers} concurrent, all four", lat_conc, wall))
    print(rows[-1], file=sys.stderr)
    lat_conc_pol, wall = grpc_concurrent(args.target, cq, args.callers)
    rows.append(summary(f"gRPC via Serve, {args.callers} concurrent, the policy decides", lat_conc_pol, wall))
    print(rows[-1], file=sys.stderr)
    lat_fast, wall = grpc_sequential(args.target, qs, FAST)
    rows.append(summary(f"gRPC via Serve, sequential, {'+'.join(FAST)} only", lat_fast, wall))
    print(rows[-1], file=sys.stderr)
    rows.append(serve_hop(args.n))
    print(rows[-1], file=sys.stderr)
    ip = in_process(args.config, qs, args.callers)
    rows += [ip["seq"], ip["conc"], ip["fast"]]
    ratio_seq = rows[0]["p50_ms"] / max(ip["seq"]["p50_ms"], 1e-9)
    ratio_conc = rows[2]["p50_ms"] / max(ip["conc"]["p50_ms"], 1e-9)
    ratio_fast = rows[4]["p50_ms"] / max(ip["fast"]["p50_ms"], 1e-9)
    live_rows = {n: summary(f"{n}, StrategyCall.latency_ms via Serve", ls, sum(ls) / 1000) for n, ls in live.items()}
    recall = vector_recall(args.config, qs)
    print(recall, file=sys.stderr)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    table = ["| setup | n | p50 ms | p99 ms | mean ms | req/s |", "|---|---|---|---|---|---|"]
    for r in rows + list(live_rows.values()) + list(ip["per_strategy"].values()):
        if r.get("n"):
            rps = r["throughput_rps"] if "StrategyCall" not in r["setup"] and "direct" not in r["setup"] else ""
            table.append(f"| {r['setup']} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} | {rps} |")
    table.append("")
    table.append(
        f"Serve+gRPC / in-process p50 ratio (same requests, same run): sequential {ratio_seq:.2f}x "
        f"(+{rows[0]['p50_ms'] - ip['seq']['p50_ms']:.1f} ms), {args.callers} concurrent {ratio_conc:.2f}x, "
        f"without vector {ratio_fast:.2f}x (+{rows[4]['p50_ms'] - ip['fast']['p50_ms']:.1f} ms)"
    )
    table.append(
        f"Vector recall@{recall['k']} against exact search: mean {recall['recall_mean']}, "
        f"min {recall['recall_min']} over {recall['queries']} distinct bench queries, {recall['rows']} rows, "
        f"{recall['index']} {recall['index_params']} search {recall['search_params']}"
    )
    text = "\n".join(table)
    print(text)
    (out / "latency.md").write_text(text + "\n")
    (out / "latency.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "live_per_strategy": live_rows,
                "per_strategy": ip["per_strategy"],
                "ratio_seq_p50": ratio_seq,
                "ratio_fast_p50": ratio_fast,
                "ratio_conc_p50": ratio_conc,
                "vector_recall": recall,
                "cores": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d"),
            },
            indent=2,
        )
    )
    plot(
        out / "latency.png",
        {
            "gRPC/Serve sequential, all four": lat_seq,
            "gRPC/Serve sequential, policy": lat_pol,
            f"gRPC/Serve {args.callers} concurrent, all four": lat_conc,
            f"gRPC/Serve {args.callers} concurrent, policy": lat_conc_pol,
            "in-process sequential, all four": ip["seq_lat"],
            f"in-process {args.callers} concurrent, all four": ip["conc_lat"],
        },
    )
    print(f"wrote {out}/latency.md, latency.json, latency.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
