#!/usr/bin/env python
"""`make bench`: regret of the live retrieval policy against full information, over gRPC.

Simulated users (the held-out Last.fm users, :mod:`ltrr.sim.users`) search the running app. Per
query:

1. **live**: ``search(k=10, explain=True)``; the policy decides, and its budgets
   (``StrategyCall.candidates_requested``) and context features are recorded;
2. **full information**: the same search with ``budgets`` = every strategy at the ladder maximum
   (forced, so the app logs it but does not learn from it): each strategy's ranked candidate
   ids, hence the wanted item's rank in each;
3. the user sees the live top 10 and clicks per the position-based click model
   (:mod:`ltrr.sim.clicks`); a click is sent as feedback at once (after step 2, so both searches
   see the same query memory);
4. every **Vowpal Wabbit** learner (:mod:`ltrr.sim.vw`) picks an action from the same context
   features; its shown list is its candidates (the prefixes of the full lists at its budgets) in
   the order the app's ranker gave the full union (the full-information search returns its top
   ``MAX_K``; the rest follow by RRF, c=60); the
   same examination draw decides its click; it learns cost ``c(a) - click``, with ``c`` at the
   running mean of the live latencies seen so far.

Afterwards every policy (live, VW, oracle, best static, all at max, uniform) is scored on the same
full-information ranks with the app's CostConfig at the run's mean live latency per strategy
(:mod:`ltrr.sim.regret`). Writes ``<out>/regret.md``, ``regret.json`` (per-query records, re-score
with ``--rescore``), ``regret.png`` (cumulative regret) and ``regret-fullinfo.jsonl.gz`` (the full
lists, context and draws: ``--offline`` re-runs the VW learners without the server).

Unless ``--no-deploy``, the run deploys a **fresh** copy of the app (:mod:`ltrr.sim.bench_config`:
its own event log, policy checkpoints, catalog and ranker-registry copies and query-memory index under
``var/bench-regret/``, the memory cold-started by ``ltrr ingest --only memory`` like a fresh
deployment's) and re-deploys ``--config`` afterwards. ``make up`` must have run.

    .venv/bin/python scripts/bench_regret.py [--queries 3000] [--seed 0] [--algorithm linear_ts]
        [--target 127.0.0.1:9000] [--no-deploy] [--peers all|none|meili,milvus] [--out bench-out]

**Peers** (``--peers``, :mod:`ltrr.peers`), indexed on the run's catalog copy before the loop, answer
every query too (top 100): Meilisearch hybrid search with the same MiniLM vectors as a user-provided
embedder at semanticRatio 0, 0.5 and 0.9 (:mod:`ltrr.peers.meili_hybrid`), and Milvus hybrid search,
dense plus BM25 sparse, fused by RRFRanker and WeightedRanker (:mod:`ltrr.peers.milvus_hybrid`). The
report's last tables score every contender's final list with ranx (:mod:`ltrr.sim.metrics`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
for _k, _v in {
    "LTRR_HOME": str(ROOT),
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(_k, _v)

import grpc  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from ltrr.appconfig_io import load_app_config  # noqa: E402
from ltrr.bandit.actions import ActionSpace  # noqa: E402
from ltrr.client import LtrrClient  # noqa: E402
from ltrr.config import AppConfig  # noqa: E402
from ltrr.constants import MAX_K  # noqa: E402
from ltrr.errors import InvalidRequest  # noqa: E402
from ltrr.peers import Peer  # noqa: E402
from ltrr.sim.bench_config import BENCH_MEMORY_INDEX, BENCH_VAR_DIR, app_args, bench_config  # noqa: E402
from ltrr.sim.clicks import PositionClickModel  # noqa: E402
from ltrr.sim.regret import QueryRecord, cumulative_regret, score_run  # noqa: E402
from ltrr.sim.report import ALL_MAX_RANKER, ALL_MAX_RRF, LIVE, STATIC_RANKER, final_tables, markdown, summary  # noqa: E402
from ltrr.sim.users import Drift, QueryMix, QueryStream, SimQuery, build_world  # noqa: E402
from ltrr.sim.vw import DEFAULT_GRID, VWPolicy, VWSpec, shown_list  # noqa: E402
from ltrr.v1 import search_pb2 as pb  # noqa: E402

BIN = ROOT / ".venv" / "bin"
T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CHECK_EVERY = 100


#: How deep each peer answers: its recall is of its top PEER_DEPTH, its list quality of its top 10.
PEER_DEPTH = 100
#: The simulated users served (:func:`ltrr.sim.users.build_world`): those the catalog never saw.
POPULATION = "held_out"


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def retry(call: Callable[[], T], *, patience_s: float = 300.0) -> T:
    """``call()``, retried while the app is briefly away (a redeploy) for up to ``patience_s``."""
    deadline = time.monotonic() + patience_s
    delay = 0.5
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() not in RETRYABLE or time.monotonic() > deadline:  # type: ignore[attr-defined]
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


# -- deploying a fresh copy of the app ------------------------------------------------------------


def logged(events_path: str, request_id: str) -> bool:
    """Whether the event log at ``events_path`` holds search ``request_id`` (read-only)."""
    if not Path(events_path).exists():
        return False
    db = sqlite3.connect(f"file:{events_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return db.execute("SELECT 1 FROM searches WHERE request_id=?", (request_id,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def wait_for_app(client: LtrrClient, events_path: str, *, present: bool, timeout_s: float = 600.0) -> float:
    """Wait until the serving app logs to ``events_path`` (``present``) or no longer does; probe with a
    forced one-strategy search (not learned from). Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if client.health() == "SERVING":
                rid = client.search("bench regret probe", k=1, budgets={"lexical": 10}).request_id
                if logged(events_path, rid) == present:
                    return time.monotonic() - t0
        except grpc.RpcError:
            pass
        time.sleep(2.0)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for the {'bench' if present else 'normal'} app")


def wait_for_indexes(client: LtrrClient, strategies: list[str], timeout_s: float = 1800.0) -> float:
    """Wait until no strategy's index lags the catalog (``ltrr.index.<s>`` SERVING; the first
    ``make up`` builds the vector index in the background). A bench copies the catalog with its
    watermarks, so it must start from complete indexes. Returns the seconds waited."""
    t0 = time.monotonic()
    pending, first = list(strategies), True
    while pending and time.monotonic() - t0 < timeout_s:
        still = []
        for s in pending:
            try:
                if client.health(f"ltrr.index.{s}") != "SERVING":
                    still.append(s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    still.append(s)
        if still and (first or still != pending):
            log(f"waiting for the index of {', '.join(still)} to catch up with the catalog")
        pending, first = still, False
        if pending:
            time.sleep(10.0)
    if pending:
        raise SystemExit(f"the index of {', '.join(pending)} still lags the catalog after {timeout_s:.0f} s")
    return time.monotonic() - t0


def run(cmd: list[str]) -> None:
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)


def copy_catalog(src: str, dst: Path) -> None:
    """A consistent copy of the catalog (SQLite online backup), replacing ``dst``."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(src, timeout=30.0) as s, sqlite3.connect(str(dst)) as d:
        s.backup(d)


def deploy_bench(
    args: argparse.Namespace,
    client: LtrrClient,
    *,
    var_dir: str = BENCH_VAR_DIR,
    memory_index: str = BENCH_MEMORY_INDEX,
    policy: dict[str, Any] | None = None,
    writer: str = "scripts/bench_regret.py",
) -> tuple[AppConfig, dict[str, float]]:
    """Fresh bench state in ``var_dir``, memory cold start, ``serve deploy``; returns the bench app
    config and timings. ``policy`` overrides fields of the derived config's policy block (the fault
    bench settles searches within seconds); the config is written to ``<var_dir>/serve_config.yaml``."""
    timings: dict[str, float] = {}
    var = ROOT / var_dir
    var.mkdir(parents=True, exist_ok=True)
    serve_cfg = yaml.safe_load((ROOT / args.config).read_text())
    derived = bench_config(serve_cfg, var_dir=var_dir, algorithm=getattr(args, "algorithm", None),
                           memory_index=memory_index)
    if policy:
        derived_args = next(a for a in derived["applications"] if a.get("name") == "ltrr")["args"]
        derived_args.setdefault("policy", {}).update(policy)
    cfg_path = var / "serve_config.yaml"
    cfg_path.write_text(
        f"# Written by {writer} from "
        + args.config
        + "; see ltrr/sim/bench_config.py.\n"
        + yaml.safe_dump(derived, sort_keys=False)
    )
    bench = AppConfig.model_validate(app_args(derived))
    normal = AppConfig.model_validate(app_args(serve_cfg))
    t = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{bench.events_path}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(bench.policy.checkpoint_dir, ignore_errors=True)
    copy_catalog(normal.catalog_path, Path(bench.catalog_path))
    shutil.rmtree(bench.ranking.model_dir, ignore_errors=True)
    if Path(normal.ranking.model_dir).is_dir():  # the app's models, its current one serving first
        shutil.copytree(normal.ranking.model_dir, bench.ranking.model_dir, ignore=shutil.ignore_patterns("*.lock"))
    timings["fresh state, catalog and ranker copies"] = time.perf_counter() - t
    if "memory" in bench.enabled():
        from ltrr.strategies._meili import MeiliClient

        t = time.perf_counter()
        mcfg: Any = bench.strategy_config("memory")
        MeiliClient(mcfg.url, mcfg.api_key).delete_index(mcfg.index)
        run([str(BIN / "ltrr"), "ingest", "--config", str(cfg_path), "--skip-catalog", "--only", "memory"])
        timings["memory index cold start"] = time.perf_counter() - t
    t = time.perf_counter()
    run([str(BIN / "serve"), "deploy", str(cfg_path)])
    timings["bench app deployed and serving"] = (
        time.perf_counter() - t + wait_for_app(client, bench.events_path, present=True)
    )
    return bench, timings


def restore(args: argparse.Namespace, client: LtrrClient, bench_events: str) -> float:
    t = time.perf_counter()
    run([str(BIN / "serve"), "deploy", args.config])
    wait_for_app(client, bench_events, present=False)
    return time.perf_counter() - t


# -- the loop --------------------------------------------------------------------------------------


class RunningLatency:
    """Mean live latency per strategy so far (what VW's costs use during the run)."""

    def __init__(self, space: ActionSpace) -> None:
        self.space = space
        self.sums = {s: 0.0 for s in space.strategies}
        self.counts = {s: 0 for s in space.strategies}

    def add(self, lat: dict[str, float]) -> None:
        for s, ms in lat.items():
            self.sums[s] += ms
            self.counts[s] += 1

    def costs(self) -> np.ndarray:
        lat = {s: self.sums[s] / self.counts[s] for s in self.space.strategies if self.counts[s]}
        return self.space.costs_for(lat)


class VWBank:
    """The VW learners of one run, stepped on each query's full information."""

    def __init__(self, space: ActionSpace, specs: list[VWSpec], seed: int) -> None:
        self.space = space
        self.policies = [VWPolicy(space, spec, seed=seed + i) for i, spec in enumerate(specs)]
        self.ms: dict[str, list[float]] = {p.spec.name: [] for p in self.policies}

    def reprice(self, costs: np.ndarray) -> None:
        for p in self.policies:
            p.reprice(costs)

    def step(
        self,
        context: dict[str, float],
        lists: dict[str, list[str]],
        wanted: str,
        draw: np.ndarray,
        clicks: PositionClickModel,
        costs: np.ndarray,
        order: list[str],
    ) -> tuple[dict[str, dict[str, int]], dict[str, int | None], dict[str, list[str]]]:
        played: dict[str, dict[str, int]] = {}
        clicked: dict[str, int | None] = {}
        shown: dict[str, list[str]] = {}
        for p in self.policies:
            t = time.perf_counter()
            a, prob = p.choose(context)
            budgets = self.space.budgets(a)
            shown[p.spec.name] = shown_list(lists, budgets, order=order)
            pos = clicks.click(shown[p.spec.name], wanted, draw)
            p.learn(context, a, prob, float(costs[a]) - (pos is not None))
            self.ms[p.spec.name].append((time.perf_counter() - t) * 1000.0)
            played[p.spec.name], clicked[p.spec.name] = budgets, pos
        return played, clicked, shown


def stream_queries(args: argparse.Namespace, catalog_path: str) -> list[SimQuery]:
    from ltrr.catalog.readers import read_lastfm
    from ltrr.catalog.store import CatalogStore

    store = CatalogStore(catalog_path)
    try:
        world = build_world(read_lastfm(ROOT / args.data_dir), store, population=POPULATION)
    finally:
        store.close()
    stream = QueryStream(world, QueryMix.parse(args.mix), seed=args.seed, drift=drift_of(args))
    return stream.generate(args.queries)


def drift_of(args: argparse.Namespace) -> Drift | None:
    """The :class:`Drift` of ``--drift-at`` / ``--drift-mix`` (None without ``--drift-at``)."""
    if getattr(args, "drift_at", None) is None:
        if getattr(args, "drift_mix", ""):
            raise SystemExit("--drift-mix needs --drift-at")
        return None
    try:
        return Drift(at=args.drift_at, mix=QueryMix.parse(args.drift_mix))
    except InvalidRequest as exc:
        raise SystemExit(f"--drift-mix: {exc}") from None
    except ValidationError as exc:
        raise SystemExit(f"--drift-at: {exc.errors()[0]['msg']}, got {args.drift_at}") from None


def click_model(args: argparse.Namespace) -> PositionClickModel:
    """The click model of ``--eta``, ``--noise`` and ``--skip`` over the top 10."""
    try:
        return PositionClickModel(eta=args.eta, depth=10, noise=args.noise, skip=args.skip)
    except InvalidRequest as exc:
        raise SystemExit(f"--{exc}") from None


def live_loop(
    args: argparse.Namespace,
    client: LtrrClient,
    space: ActionSpace,
    queries: list[SimQuery],
    bench_events: str | None,
    fullinfo: Any,
    peers: Sequence[Peer] = (),
) -> tuple[list[QueryRecord], VWBank]:
    clicks = click_model(args)
    rng = np.random.default_rng(args.seed)
    top = {s: space.ladder[-1] for s in space.strategies}
    bank = VWBank(space, select_vw(args.vw), args.seed)
    running = RunningLatency(space)
    records: list[QueryRecord] = []
    for q in tqdm(queries, desc="regret", unit="q", file=sys.stderr):
        t_live = time.perf_counter()
        live = retry(lambda q=q: client.search(q.text, k=10, user_id=q.user_id, explain=True))
        live_ms = (time.perf_counter() - t_live) * 1000.0
        full = retry(lambda q=q: client.search(q.text, k=MAX_K, user_id=q.user_id, explain=True, budgets=top))
        draw = clicks.draw(rng)
        shown = [r.entity_id for r in live.results]
        pos = clicks.click(shown, q.wanted, draw)
        if pos is not None:
            retry(lambda rid=live.request_id, pos=pos, q=q: client.feedback(rid, q.wanted, "click", position=pos))
        if bench_events and q.index % CHECK_EVERY == 0 and not logged(bench_events, live.request_id):
            raise SystemExit(f"query {q.index}: the serving app no longer logs to {bench_events} (redeployed?)")
        live_plan = {c.strategy: int(c.candidates_requested) for c in live.strategies}
        live_lat = {c.strategy: float(c.latency_ms) for c in live.strategies if c.candidates_requested > 0}
        lists = {c.strategy: list(c.candidate_ids) for c in full.strategies}
        full_lat = {c.strategy: float(c.latency_ms) for c in full.strategies if c.status != pb.StrategyCall.SKIPPED}
        status = {c.strategy: int(c.status) for c in full.strategies}
        ranks = {s: (lists[s].index(q.wanted) + 1 if q.wanted in lists.get(s, []) else None) for s in space.strategies}
        live_hit = any(q.wanted in c.candidate_ids for c in live.strategies)
        context = dict(live.context_features)
        running.add(live_lat)
        if q.index % 25 == 0:
            bank.reprice(running.costs())
        order = [r.entity_id for r in full.results]  # the served ranker's order of the full union
        played, clicked, final = bank.step(context, lists, q.wanted, draw, clicks, running.costs(), order)
        played[LIVE], clicked[LIVE] = {s: live_plan.get(s, 0) for s in space.strategies}, pos
        final[LIVE], latency = shown, {LIVE: live_ms}
        final[ALL_MAX_RANKER], final[ALL_MAX_RRF] = order[:10], shown_list(lists, top)
        answers: dict[str, list[str]] = {}
        for peer in peers:
            t_peer = time.perf_counter()
            answers[peer.name] = list(peer.search(q.text, PEER_DEPTH))
            latency[peer.name] = (time.perf_counter() - t_peer) * 1000.0
            final[peer.name] = answers[peer.name][:10]
        records.append(
            QueryRecord(
                q.index,
                q.user_id,
                q.kind,
                q.text,
                q.wanted,
                ranks,
                played,
                clicked,
                live_lat,
                full_lat,
                live_hit,
                {
                    "policy_version": live.policy_version,
                    "ranker_version": live.ranker_version,
                    "full_status": status,
                    "degraded": bool(full.degraded),
                },
                final,
                latency,
            )
        )
        fullinfo.write(
            json.dumps(
                {
                    "index": q.index,
                    "context": context,
                    "lists": lists,
                    "order": order,
                    "draw": draw.tolist(),
                    "peers": answers,
                }
            )  # fmt: skip
            + "\n"
        )
    return records, bank


def offline_loop(args: argparse.Namespace, space: ActionSpace, records: list[QueryRecord], path: Path) -> VWBank:
    """Re-run the VW learners on a saved run (its full lists, contexts and draws)."""
    clicks = click_model(args)
    bank = VWBank(space, select_vw(args.vw), args.seed)
    running = RunningLatency(space)
    with gzip.open(path, "rt") as fh:
        rows = {int(d["index"]): d for d in map(json.loads, fh)}
    for i, rec in enumerate(tqdm(records, desc="vw offline", unit="q", file=sys.stderr)):
        d = rows[rec.index]
        running.add(dict(rec.live_latency_ms))
        if rec.index % 25 == 0:
            bank.reprice(running.costs())
        played, clicked, shown = bank.step(
            d["context"], d["lists"], rec.wanted, np.asarray(d["draw"]), clicks, running.costs(), d.get("order", [])
        )
        keep = {p: b for p, b in rec.played.items() if not p.startswith("vw ")}
        keep_c = {p: c for p, c in rec.clicks.items() if not p.startswith("vw ")}
        keep_f = {p: f for p, f in rec.final.items() if not p.startswith("vw ")}
        records[i] = QueryRecord.from_dict(
            rec.to_dict() | {"played": keep | played, "clicks": keep_c | clicked, "final": keep_f | shown}
        )
    return bank


def select_vw(names: str) -> list[VWSpec]:
    if names == "none":
        return []
    if names == "all":
        return list(DEFAULT_GRID)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    by_name = {s.name: s for s in DEFAULT_GRID}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise SystemExit(f"--vw: unknown {missing[0]!r}; valid: all, none, {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


# -- outputs ---------------------------------------------------------------------------------------


def plot(scored: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, tr in scored.trajectories.items():
        if name == "oracle":
            continue
        style = {"lw": 2.4, "color": "black"} if name == LIVE else {"lw": 1.2}
        if name.startswith("vw "):
            style["ls"] = "--"
        ax.plot(np.arange(1, len(tr.value) + 1), cumulative_regret(tr, scored.oracle), label=name, **style)
    ax.set_xlabel("query")
    ax.set_ylabel("cumulative regret vs the per-query oracle")
    ax.set_title("Retrieval-plan regret on simulated users (full information)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_final(records: list[QueryRecord], derived: dict[str, dict[int, list[str]]], path: Path) -> None:
    """nDCG@10 of every contender's final list (bars), and the latency CDF of those whose answer was timed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ltrr.sim.metrics import list_metrics

    wanted = {str(r.index): r.wanted for r in records}
    lists: dict[str, dict[str, list[str]]] = {}
    for r in records:
        for c, ids in r.final.items():
            lists.setdefault(c, {})[str(r.index)] = list(ids)
    for c, by_q in derived.items():
        if not c.endswith(f"(top {PEER_DEPTH})"):
            lists[c] = {str(i): ids for i, ids in by_q.items()}
    ndcg = {c: list_metrics(v, wanted, ("ndcg@10",))["ndcg@10"] for c, v in lists.items()}
    names = sorted(ndcg, key=lambda c: -ndcg[c])
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5.5))
    colors = [
        "black" if c == LIVE else ("tab:orange" if c.startswith(("meili", "milvus")) else "tab:blue") for c in names
    ]
    a.barh(names[::-1], [ndcg[c] for c in names][::-1], color=colors[::-1])
    a.set_xlabel("nDCG@10 (ranx), all queries")
    a.set_title("Final list quality: ltrr (black), its baselines (blue), peers (orange)")
    a.tick_params(axis="y", labelsize=8)
    timed: dict[str, list[float]] = {}
    for r in records:
        for c, ms in r.latency_ms.items():
            timed.setdefault(c, []).append(ms)
    for c, ms in sorted(timed.items()):
        xs = np.sort(ms)
        b.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=c, lw=2.4 if c == LIVE else 1.2)
    b.set_xscale("log")
    b.set_xlabel("wall-clock ms per query (client side)")
    b.set_ylabel("share of queries")
    b.set_title("Latency CDF")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def vw_timing(bank: VWBank) -> dict[str, dict[str, float]]:
    out = {}
    for name, xs in bank.ms.items():
        if xs:
            a = np.asarray(xs)
            out[name] = {
                "mean_ms": float(a.mean()),
                "p50_ms": float(np.percentile(a, 50)),
                "p99_ms": float(np.percentile(a, 99)),
            }
    return out


def machine() -> str:
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return f"{os.cpu_count()} cores, {cpu}"


PEER_NAMES = ("meili", "milvus")


def build_peers(args: argparse.Namespace, app: AppConfig, catalog_path: str) -> tuple[list[Peer], dict[str, Any]]:
    """The peers of ``--peers`` (module docstring), each indexed on the run's catalog, and what that took.
    A peer that cannot run here is left out with the reason, in the report."""
    chosen = PEER_NAMES if args.peers == "all" else tuple(p for p in args.peers.split(",") if p and p != "none")
    unknown = [p for p in chosen if p not in PEER_NAMES]
    if unknown:
        raise SystemExit(f"--peers: unknown {', '.join(unknown)} (choose from {', '.join(PEER_NAMES)}, all, none)")
    from ltrr.catalog.store import CatalogStore

    store = CatalogStore(catalog_path)
    try:
        entities = [e for _, batch in store.entities_since(0, batch_size=5000) for e in batch]
    finally:
        store.close()
    vector = app.strategy_config("vector") if "vector" in app.enabled() else None
    embed = {} if vector is None else {"embedder": vector.embedder, "embedding_cache": vector.embedding_cache}
    peers: list[Peer] = []
    info: dict[str, Any] = {}
    for name in chosen:
        t = time.perf_counter()
        try:
            if name == "meili":
                from ltrr.peers.meili_hybrid import MeiliHybridConfig, MeiliHybridIndex

                lexical: Any = app.strategy_config("lexical")
                found: list[Peer] = list(
                    MeiliHybridIndex(MeiliHybridConfig(url=lexical.url, api_key=lexical.api_key, **embed)).peers()
                )
            else:
                from ltrr.peers.milvus_hybrid import bench_peers

                found = list(bench_peers(ROOT / BENCH_VAR_DIR / "peers", **embed))
            report = found[0].index(entities)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
            info[name] = f"left out: {type(exc).__name__}: {exc}"
            log(f"peer {name}: {info[name]}")
            continue
        info[name] = (
            f"{', '.join(p.name for p in found)}: {report.documents} documents indexed in "
            f"{time.perf_counter() - t:.0f} s" + (f", skipped {report.skipped}" if report.skipped else "")
        )
        peers.extend(found)
    return peers, info


def derived_lists(path: Path, records: list[QueryRecord], static: dict[str, int]) -> dict[str, dict[int, list[str]]]:
    """The final lists of the contenders the loop did not play, from the full-information log: the
    best static plan (known only afterwards) in the served ranker's order, each strategy alone at
    the ladder maximum in its own order, and each peer's top 100 (for its recall)."""
    wanted = {r.index for r in records}
    out: dict[str, dict[int, list[str]]] = {}
    with gzip.open(path, "rt") as fh:
        for d in map(json.loads, fh):
            i = int(d["index"])
            if i not in wanted:
                continue
            out.setdefault(STATIC_RANKER, {})[i] = shown_list(d["lists"], static, order=d.get("order", []))
            for s, ids in d["lists"].items():
                out.setdefault(f"{s} alone at max", {})[i] = list(ids[:10])
            for name, ids in (d.get("peers") or {}).items():
                out.setdefault(f"{name} (top {PEER_DEPTH})", {})[i] = list(ids)
    return out


def write_outputs(
    args: argparse.Namespace, space: ActionSpace, records: list[QueryRecord], bank: VWBank | None, meta: dict[str, Any]
) -> None:
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    scored = score_run(space, records, default_k=args.default_k)
    families = {s.name: s.family for s in DEFAULT_GRID}
    if bank is not None:
        timing = vw_timing(bank)
        meta["VW time per query (choose + learn, 624 actions)"] = (
            ", ".join(f"{n}: {t['mean_ms']:.1f} ms (p99 {t['p99_ms']:.1f})" for n, t in timing.items()) or "no VW"
        )
        meta["vw_timing"] = timing
    live_hits = [r.live_hit for r in records if r.live_hit is not None]
    tr = scored.trajectories.get(LIVE)
    if tr is not None and live_hits:
        agree = float(np.mean([bool(h) == bool(s) for h, s in zip(live_hits, tr.hit, strict=False)]))
        meta["live calls' own candidates agree with the full-information score"] = f"{agree:.3f} of queries"
    clicked = [r.clicks.get(LIVE) is not None for r in records]
    meta["live clicks"] = f"{int(np.sum(clicked))} of {len(records)}"
    md_meta = {k: v for k, v in meta.items() if k != "vw_timing"}
    md = markdown(scored, md_meta, families)
    fullinfo = out / "regret-fullinfo.jsonl.gz"
    if any(r.final for r in records) and fullinfo.exists():
        derived = derived_lists(fullinfo, records, scored.static_budgets())
        md += "\n" + "\n".join(final_tables(records, derived)) + "\n\n![final lists](final.png)"
        plot_final(records, derived, out / "final.png")
    (out / "regret.md").write_text(md + "\n")
    (out / "regret.json").write_text(
        json.dumps({"meta": meta, "summary": summary(scored), "records": [r.to_dict() for r in records]}, indent=1)
        + "\n"
    )
    plot(scored, out / "regret.png")
    log(f"wrote {out}/regret.md, regret.json, regret.png")
    print((out / "regret.md").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--algorithm", default="linear_ts", help="policy.algorithm of the fresh bench deployment")
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--no-deploy", action="store_true", help="use the running app as it is (its policy, logs, memory)")
    ap.add_argument("--keep-deployed", action="store_true", help="leave the bench app deployed afterwards")
    ap.add_argument("--config", default=os.environ.get("LTRR_CONFIG", "deployments/serve_config.yaml"))
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--mix", default="", help="query kinds, e.g. 'name=0.3,typo=0.1' (ltrr.sim.users.QueryMix)")
    ap.add_argument("--eta", type=float, default=1.0, help="click model: examination 1/r^eta over the top 10")
    ap.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="click model: probability of a click on a random examined non-wanted result (ltrr.sim.clicks; drawn "
        "and saved with each query; the loop still acts on the wanted item's click alone)",
    )
    ap.add_argument("--skip", type=float, default=1.0, help="click model: probability a noise click is a skip")
    ap.add_argument(
        "--drift-at", type=int, default=None, help="query index from which --drift-mix holds (ltrr.sim.users.Drift)"
    )
    ap.add_argument("--drift-mix", default="", help="query kinds from --drift-at on, e.g. 'tag=0.4,like=0.4'")
    ap.add_argument("--vw", default="all", help="VW configs: all, none, or names from ltrr.sim.vw.DEFAULT_GRID")
    ap.add_argument(
        "--peers", default="all", help=f"peers on the same queries: all, none, or of {', '.join(PEER_NAMES)}"
    )
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--rescore", metavar="DIR", help="re-score DIR/regret.json (no server)")
    ap.add_argument(
        "--offline", metavar="DIR", help="re-run the VW learners on DIR's saved run, then score (no server)"
    )
    args = ap.parse_args()
    click_model(args)  # a wrong value fails here, before any deploy
    drift_of(args)
    started = time.perf_counter()
    normal = load_app_config(args.config)
    strategies = list(normal.enabled())
    space = ActionSpace.build(strategies, normal.policy.ladder, normal.policy.costs)
    args.default_k = {n: s.default_k for n, s in normal.enabled().items()}
    if any(k not in normal.policy.ladder for k in args.default_k.values()):
        args.default_k = None  # a default k off the ladder is not an action of the space
    command = "scripts/bench_regret.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    if args.rescore or args.offline:
        src = ROOT / (args.rescore or args.offline)
        saved = json.loads((src / "regret.json").read_text())
        records = [QueryRecord.from_dict(d) for d in saved["records"]]
        meta = {k: v for k, v in saved["meta"].items() if k != "vw_timing"}
        bank = None
        if args.offline:
            bank = offline_loop(args, space, records, src / "regret-fullinfo.jsonl.gz")
            meta["VW"] = f"re-run offline from {src} ({command})"
        write_outputs(args, space, records, bank, meta)
        return 0

    client = LtrrClient(args.target, timeout=30.0)
    try:
        client.health()
    except grpc.RpcError as exc:
        raise SystemExit(f"ltrr is not answering on {args.target} ({exc.code()}); run `make up` first") from None  # type: ignore[attr-defined]
    timings: dict[str, float] = {}
    bench_events: str | None = None
    catalog_path = normal.catalog_path
    if not args.no_deploy:
        waited = wait_for_indexes(client, strategies)
        log(f"deploying a fresh bench app (policy {args.algorithm}) from {args.config}")
        bench, timings = deploy_bench(args, client)
        timings = {"wait for complete indexes": waited, **timings}
        bench_events, catalog_path = bench.events_path, bench.catalog_path
    t = time.perf_counter()
    queries = stream_queries(args, catalog_path)
    timings["simulated users"] = time.perf_counter() - t
    t = time.perf_counter()
    peers, peer_info = build_peers(args, normal, catalog_path)
    timings["peers indexed"] = time.perf_counter() - t
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    try:
        with gzip.open(out / "regret-fullinfo.jsonl.gz", "wt") as fh:
            records, bank = live_loop(args, client, space, queries, bench_events, fh, peers)
    finally:
        for peer in peers:
            peer.close()
        timings["query loop"] = time.perf_counter() - t
        if bench_events and not args.keep_deployed:
            log(f"re-deploying {args.config}")
            timings["re-deploy the normal app"] = restore(args, client, bench_events)
    n_q = len(records)
    mix = QueryMix.parse(args.mix).weights()
    meta: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "queries": n_q,
        "seed": args.seed,
        "policy": f"{args.algorithm} (fresh bench deployment)" if bench_events else "the running app's, as it was",
        "query mix": ", ".join(f"{k} {v:g}" for k, v in mix.items()),
        "click model": f"examination 1/r^{args.eta:g} over the top 10; the same draw for every policy"
        + (f"; noise clicks {args.noise:g}, skipped {args.skip:g}" if args.noise > 0 else ""),
        "users": f"population {POPULATION} (ltrr.sim.users.build_world)",
        "costs": f"per_call {space.cost_model.per_call}, per_candidate {space.cost_model.per_candidate}, "
        f"per_ms {space.cost_model.per_ms}",
        "peers": "; ".join(f"{k}: {v}" for k, v in peer_info.items()) or "none",
        "run time": ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; {timings['query loop'] / max(n_q, 1) * 1000:.0f} ms per query in the loop",
    }
    drift = drift_of(args)
    if drift is not None:
        meta["drift"] = f"from query {drift.at}: " + ", ".join(f"{k} {v:g}" for k, v in drift.mix.weights().items())
    write_outputs(args, space, records, bank, meta)
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
