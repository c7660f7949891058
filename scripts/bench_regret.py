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
   (:mod:`ltrr.sim.clicks`, :meth:`~ltrr.sim.clicks.PositionClickModel.outcome`): the wanted item's
   click and, with ``--noise``, a noise click on another examined result, skipped with probability
   ``--skip``. Every click is sent as feedback at once (after step 2, so both searches see the same
   query memory), in position order: a ``click`` on the entity shown there, and a skipped one then
   a ``skip`` of it (:meth:`ltrr.sim.inloop.Played.feedback`; with ``--noise 0``, the default, the
   wanted item's click alone, as before);
4. the **in-loop learners** (:mod:`ltrr.sim.inloop`) step on the same query: every **Vowpal
   Wabbit** learner of ``--vw`` (:mod:`ltrr.sim.vw`) and every ltrr bandit algorithm of
   ``--bandits`` (``ltrr in-loop linear_ts`` ...: :func:`ltrr.bandit.new_policy` on the bench's own
   policy config but for ``algorithm``, its fitted prior installed) picks budgets from the same
   context features; its shown list is its candidates (the prefixes of the full lists at its
   budgets) in the order the app's ranker gave the full union (the full-information search returns
   its top ``MAX_K``; the rest follow by RRF, c=60); the same draw decides its user's clicks; VW
   learns cost ``c(a) - positive``, with ``c`` at the running mean of the live latencies seen so
   far, and an ltrr policy learns, as the app's learner does, from the semi-bandit rewards of the
   entity its search is positive for, through each arm's visibility (``position_bias``).

**Drift** (``--drift-at``, ``--drift-mix``, ``--drift-new N``; :class:`ltrr.sim.users.Drift`): from
query index ``--drift-at`` on the kinds follow ``--drift-mix``, and ``N`` of the users' artists are
replaced by new clones (:func:`ltrr.sim.users.clone_entities`). Just before that query the harness
upserts the clones through the app's ``UpsertEntities`` API (the ingress indexes them in every
strategy), waits (at most ``DRIFT_WAIT_S``) until a forced search finds each of them, and re-indexes
the peers with them, so every later search, the full-information ones included, can find them. The
report then has a drift section: each contender's regret and recall in windows before and after the
drift (:func:`ltrr.sim.regret.drift_windows`) and ``drift.png``, recall over the queries.

Afterwards every policy (live, VW, in-loop ltrr, oracle, best static, all at max, uniform) is scored on the same
full-information ranks with the app's CostConfig at the run's mean live latency per strategy
(:mod:`ltrr.sim.regret`). Writes ``<out>/regret.md``, ``regret.json`` (per-query records, re-score
with ``--rescore``, which also replays the in-loop ltrr policies a saved run lacks from its
full-information log), ``regret.png`` (cumulative regret) and ``regret-fullinfo.jsonl.gz`` (the full
lists, context and draws: ``--offline`` re-runs the VW learners and the in-loop ltrr policies without
the server).

Unless ``--no-deploy``, the run deploys a **fresh** copy of the app (:mod:`ltrr.sim.bench_config`:
its own event log, policy checkpoints, catalog and ranker-registry copies and query-memory index under
``var/bench-regret/``, the memory cold-started by ``ltrr ingest --only memory`` like a fresh
deployment's) and re-deploys ``--config`` afterwards. ``make up`` must have run.

    .venv/bin/python scripts/bench_regret.py [--queries 3000] [--seed 0] [--algorithm linear_ts]
        [--target 127.0.0.1:9000] [--no-deploy] [--peers all|none|meili,milvus] [--out bench-out]
        [--vw all|none|names] [--bandits linear_ts,linucb,epsilon_greedy|none] [--noise 0.1 --skip 0.5]
        [--drift-at 1500 --drift-mix tag=0.4,like=0.4 --drift-new 20] [--throughput 200]

**Throughput** (``--throughput N``, default 200; 0 skips it): after the loop, while the bench app is still
deployed, ltrr (its policy deciding, and every strategy forced at max) and each peer answer the stream's first
``N`` queries again, top 10, with 1 and then 16 concurrent callers (:func:`measure_throughput`); req/s and
latency percentiles per contender go to ``regret.json``'s meta and the report.

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
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
from ltrr.loadtest import bench_environ, closed_loop, lagging_indexes, search_logged  # noqa: E402

bench_environ(ROOT)

import grpc  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from ltrr.appconfig_io import load_app_config  # noqa: E402
from ltrr.bandit import PolicyConfig  # noqa: E402
from ltrr.bandit.actions import ActionSpace  # noqa: E402
from ltrr.client import LtrrClient  # noqa: E402
from ltrr.config import AppConfig  # noqa: E402
from ltrr.constants import MAX_K  # noqa: E402
from ltrr.errors import InvalidRequest  # noqa: E402
from ltrr.peers import Peer  # noqa: E402
from ltrr.sim.bench_config import BENCH_MEMORY_INDEX, BENCH_VAR_DIR, app_args, bench_config  # noqa: E402
from ltrr.sim.clicks import PositionClickModel  # noqa: E402
from ltrr.sim.inloop import (  # noqa: E402
    BANDITS,
    INLOOP_PREFIX,
    Bank,
    Contender,
    FullInfo,
    Played,
    inloop_policies,
    saved_click_model,
    shown_outcome,
    vw_contenders,
)
from ltrr.sim.regret import ALL_MAX, STATIC, QueryRecord, cumulative_regret, score_run  # noqa: E402
from ltrr.sim.report import (  # noqa: E402
    ALL_MAX_RANKER,
    ALL_MAX_RRF,
    LIVE,
    STATIC_RANKER,
    VW_PREFIX,
    best_of_family,
    drift_section,
    final_tables,
    markdown,
    summary,
)
from ltrr.sim.users import Clone, Drift, QueryMix, QueryStream, SimQuery, build_world, clone_entities  # noqa: E402
from ltrr.sim.vw import DEFAULT_GRID, VWSpec, shown_list  # noqa: E402
from ltrr.types import Entity  # noqa: E402
from ltrr.v1 import search_pb2 as pb  # noqa: E402

BIN = ROOT / ".venv" / "bin"
T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CHECK_EVERY = 100
#: How long the harness waits, after upserting a drift's clones, for a search to find each of them.
DRIFT_WAIT_S = 120.0
#: Keys of ``regret.json``'s meta that are data for re-runs, not lines of the report.
STRUCTURED_META = ("vw_timing", "inloop_timing", "click_model_params", "drift_plan", "inloop_policy", "throughput")
#: The concurrent callers of the throughput phase (``--throughput``), after the one-caller pass.
THROUGHPUT_CALLERS = 16


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


def wait_for_app(client: LtrrClient, events_path: str, *, present: bool, timeout_s: float = 600.0) -> float:
    """Wait until the serving app logs to ``events_path`` (``present``) or no longer does; probe with a
    forced one-strategy search (not learned from). Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if client.health() == "SERVING":
                rid = client.search("bench regret probe", k=1, budgets={"lexical": 10}).request_id
                if search_logged(events_path, rid) == present:
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
        still = lagging_indexes(client, pending)
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
    derived = bench_config(
        serve_cfg, var_dir=var_dir, algorithm=getattr(args, "algorithm", None), memory_index=memory_index
    )
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


def remove_clones(app: AppConfig, entity_ids: Sequence[str]) -> dict[str, Any]:
    """Delete a drift's clones from the indexes the bench app shares with the normal one (lexical's
    Meilisearch index and vector's Milvus collection; the memory index, the graph cache and the catalog are the
    bench's own), so the run leaves the app's data as it found it. Returns what each deletion did."""
    from pymilvus import MilvusClient

    from ltrr.strategies._meili import MeiliClient, doc_id

    done: dict[str, Any] = {}
    enabled = app.enabled()
    if "lexical" in enabled:
        lcfg: Any = app.strategy_config("lexical")
        try:
            meili = MeiliClient(lcfg.url, lcfg.api_key)
            meili.wait_task(meili.delete_document_ids(lcfg.index, [doc_id(e) for e in entity_ids]))
            done["lexical"] = len(entity_ids)
        except Exception as exc:  # noqa: BLE001 - reported: the operator can delete them by hand
            done["lexical"] = f"{type(exc).__name__}: {exc}"
    if "vector" in enabled:
        vcfg: Any = app.strategy_config("vector")
        try:
            milvus = MilvusClient(uri=vcfg.uri, token=vcfg.token)
            res = milvus.delete(collection_name=vcfg.collection, ids=list(entity_ids))
            done["vector"] = int(res.get("delete_count", len(entity_ids))) if isinstance(res, dict) else len(entity_ids)
            milvus.close()
        except Exception as exc:  # noqa: BLE001
            done["vector"] = f"{type(exc).__name__}: {exc}"
    return done


# -- the loop --------------------------------------------------------------------------------------


class RunningLatency:
    """Mean live latency per strategy so far (what the in-loop learners' costs use during the run)."""

    def __init__(self, space: ActionSpace) -> None:
        self.space = space
        self.sums = {s: 0.0 for s in space.strategies}
        self.counts = {s: 0 for s in space.strategies}

    def add(self, lat: dict[str, float]) -> None:
        for s, ms in lat.items():
            self.sums[s] += ms
            self.counts[s] += 1

    def latency(self) -> dict[str, float]:
        """``{strategy: mean ms}`` of the strategies measured so far (the others keep their prior)."""
        return {s: self.sums[s] / self.counts[s] for s in self.space.strategies if self.counts[s]}

    def costs(self) -> np.ndarray:
        return self.space.costs_for(self.latency())


def bench_policy(args: argparse.Namespace) -> PolicyConfig:
    """The policy config the run's app serves: the bench's serve config's (:func:`bench_config` of
    ``--config`` with ``--algorithm``), or with ``--no-deploy`` the running app's (``--config``'s)."""
    serve_cfg = yaml.safe_load((ROOT / args.config).read_text())
    derived = serve_cfg if args.no_deploy else bench_config(serve_cfg, algorithm=args.algorithm)
    return AppConfig.model_validate(app_args(derived)).policy


def build_bank(args: argparse.Namespace, space: ActionSpace, policy: PolicyConfig) -> Bank:
    """The in-loop learners of ``--vw`` and ``--bandits`` (module docstring): the VW learners first,
    then ltrr's own policies on ``policy`` (the bench's policy config)."""
    members: list[Contender] = [*vw_contenders(space, select_vw(args.vw), args.seed)]
    algorithms = select_bandits(args.bandits)
    try:
        members += inloop_policies(policy, space.strategies, algorithms, args.seed)
    except InvalidRequest as exc:
        raise SystemExit(f"--bandits: {exc}") from None
    return Bank(members)


def catalog_entities(catalog_path: str) -> list[Entity]:
    """Every entity of the catalog at ``catalog_path``."""
    from ltrr.catalog.store import CatalogStore

    store = CatalogStore(catalog_path)
    try:
        return [e for _, batch in store.entities_since(0, batch_size=5000) for e in batch]
    finally:
        store.close()


def stream_queries(
    args: argparse.Namespace, catalog_path: str, entities: Sequence[Entity]
) -> tuple[list[SimQuery], tuple[Clone, ...]]:
    """The run's queries and the clones its drift upserts (none without ``--drift-new``)."""
    from ltrr.catalog.readers import read_lastfm
    from ltrr.catalog.store import CatalogStore

    store = CatalogStore(catalog_path)
    try:
        world = build_world(read_lastfm(ROOT / args.data_dir), store, population=POPULATION)
    finally:
        store.close()
    drift = drift_of(args)
    clones: tuple[Clone, ...] = ()
    if drift is not None and drift.new_entities:
        try:
            clones = clone_entities(world, entities, drift.new_entities, seed=args.seed)
        except InvalidRequest as exc:
            raise SystemExit(f"--drift-new: {exc}") from None
    stream = QueryStream(world, QueryMix.parse(args.mix), seed=args.seed, drift=drift, clones=clones)
    return stream.generate(args.queries), clones


def drift_of(args: argparse.Namespace) -> Drift | None:
    """The :class:`Drift` of ``--drift-at`` / ``--drift-mix`` / ``--drift-new`` (None without ``--drift-at``)."""
    new = getattr(args, "drift_new", 0)
    if getattr(args, "drift_at", None) is None:
        if getattr(args, "drift_mix", ""):
            raise SystemExit("--drift-mix needs --drift-at")
        if new:
            raise SystemExit("--drift-new needs --drift-at")
        return None
    try:
        return Drift(at=args.drift_at, mix=QueryMix.parse(args.drift_mix), new_entities=new)
    except InvalidRequest as exc:
        raise SystemExit(f"--drift-mix: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        flag, got = ("--drift-new", new) if err["loc"][:1] == ("new_entities",) else ("--drift-at", args.drift_at)
        raise SystemExit(f"{flag}: {err['msg']}, got {got}") from None


def entity_message(e: Entity) -> pb.Entity:
    """The ``UpsertEntities`` message of a catalog entity (its ``sources`` are the ingress's to set)."""
    return pb.Entity(
        entity_id=e.entity_id,
        entity_type=e.entity_type,
        title=e.title,
        subtitle=e.subtitle,
        genres=list(e.genres),
        tags=list(e.tags),
        description=e.description,
        popularity=float(e.popularity),
        attrs=dict(e.attrs),
    )


def upsert_clones(
    client: LtrrClient,
    clones: Sequence[Clone],
    top: dict[str, int],
    peers: Sequence[Peer] = (),
    catalog: Sequence[Entity] = (),
    *,
    wait_s: float = DRIFT_WAIT_S,
) -> dict[str, Any]:
    """Upsert the drift's ``clones`` through ``UpsertEntities``, wait (at most ``wait_s``) until a
    forced search of each clone's name (every strategy at the ladder maximum, not learned from)
    retrieves it, and re-index the ``peers`` on ``catalog`` plus the clones. Returns what happened."""
    t0 = time.perf_counter()
    summary = client.upsert([entity_message(c.entity) for c in clones])
    info: dict[str, Any] = {
        "received": int(summary.received),
        "changed": int(summary.changed),
        "indexed": dict(summary.indexed),
        "failed": list(summary.failed),
    }
    pending = {c.entity.entity_id: c.entity.title for c in clones}
    found_by: dict[str, list[str]] = {}
    deadline = time.monotonic() + wait_s
    while pending:
        for eid, title in list(pending.items()):
            resp = retry(partial(client.search, title, k=10, explain=True, budgets=top))  # explain: candidate_ids
            hit = sorted(c.strategy for c in resp.strategies if eid in c.candidate_ids)
            if hit:
                found_by[eid] = hit
                del pending[eid]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    info["searchable_s"] = time.perf_counter() - t0
    info["found"] = len(found_by)
    info["not_found"] = sorted(pending)
    info["found_by"] = {s: sum(s in v for v in found_by.values()) for s in top}
    if pending:
        log(f"drift: {len(pending)} of {len(clones)} upserted clones not found after {wait_s:.0f} s; continuing")
    t = time.perf_counter()
    every = [*catalog, *(c.entity for c in clones)]
    for peer in peers:
        try:
            peer.index(every)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot re-index keeps its old index, reported
            info.setdefault("peers_not_reindexed", {})[peer.name] = f"{type(exc).__name__}: {exc}"
    info["peers_reindexed_s"] = time.perf_counter() - t
    return info


def click_model(args: argparse.Namespace) -> PositionClickModel:
    """The click model of ``--eta``, ``--noise`` and ``--skip`` over the top 10."""
    try:
        return PositionClickModel(eta=args.eta, depth=10, noise=args.noise, skip=args.skip)
    except InvalidRequest as exc:
        raise SystemExit(f"--{exc}") from None


@dataclass(frozen=True)
class DriftUpsert:
    """The drift's upsert: the ``clones`` to upsert just before query index ``at``, and the
    ``catalog`` the peers re-index with them."""

    at: int
    clones: tuple[Clone, ...]
    catalog: Sequence[Entity] = ()


Rows = tuple[dict[str, dict[str, int]], dict[str, int | None], dict[str, list[str]], dict[str, list[dict[str, Any]]]]


def bank_rows(got: Mapping[str, Played]) -> Rows:
    """A :class:`QueryRecord`'s ``played``, ``clicks`` (the wanted item's) and ``final`` of the
    contenders in ``got``, and every click of those whose users clicked (``extra["outcomes"]`` with noise)."""
    return (
        {n: dict(p.budgets) for n, p in got.items()},
        {n: p.position for n, p in got.items()},
        {n: list(p.shown) for n, p in got.items()},
        {n: [c.to_dict() for c in p.outcome] for n, p in got.items() if p.outcome},
    )


def live_loop(
    args: argparse.Namespace,
    client: LtrrClient,
    space: ActionSpace,
    queries: list[SimQuery],
    bench_events: str | None,
    fullinfo: Any,
    bank: Bank,
    peers: Sequence[Peer] = (),
    drift: DriftUpsert | None = None,
) -> tuple[list[QueryRecord], dict[str, Any] | None]:
    """Every query of the run (module docstring); returns the records and what the drift's
    upsert did (None: no upsert ran)."""
    clicks = click_model(args)
    rng = np.random.default_rng(args.seed)
    top = {s: space.ladder[-1] for s in space.strategies}
    running = RunningLatency(space)
    records: list[QueryRecord] = []
    upserted: dict[str, Any] | None = None
    for q in tqdm(queries, desc="regret", unit="q", file=sys.stderr):
        if drift is not None and drift.clones and q.index == drift.at:
            log(f"drift at query {q.index}: upserting {len(drift.clones)} new entities")
            upserted = upsert_clones(client, drift.clones, top, peers, drift.catalog)
        t_live = time.perf_counter()
        live = retry(lambda q=q: client.search(q.text, k=10, user_id=q.user_id, explain=True))
        live_ms = (time.perf_counter() - t_live) * 1000.0
        full = retry(lambda q=q: client.search(q.text, k=MAX_K, user_id=q.user_id, explain=True, budgets=top))
        draw = clicks.draw(rng)
        lists = {c.strategy: list(c.candidate_ids) for c in full.strategies}
        order = [r.entity_id for r in full.results]  # the served ranker's order of the full union
        context = dict(live.context_features)
        info = FullInfo(context, lists, order, q.wanted, draw)
        live_plan = {c.strategy: int(c.candidates_requested) for c in live.strategies}
        live_played = shown_outcome(
            {s: live_plan.get(s, 0) for s in space.strategies}, [r.entity_id for r in live.results], info, clicks
        )
        for eid, action, position in live_played.feedback():
            retry(partial(client.feedback, live.request_id, eid, action, position=position))
        if bench_events and q.index % CHECK_EVERY == 0 and not search_logged(bench_events, live.request_id):
            raise SystemExit(f"query {q.index}: the serving app no longer logs to {bench_events} (redeployed?)")
        live_lat = {c.strategy: float(c.latency_ms) for c in live.strategies if c.candidates_requested > 0}
        full_lat = {c.strategy: float(c.latency_ms) for c in full.strategies if c.status != pb.StrategyCall.SKIPPED}
        status = {c.strategy: int(c.status) for c in full.strategies}
        ranks = {s: (lists[s].index(q.wanted) + 1 if q.wanted in lists.get(s, []) else None) for s in space.strategies}
        live_hit = any(q.wanted in c.candidate_ids for c in live.strategies)
        running.add(live_lat)
        if q.index % 25 == 0:
            bank.reprice(running.latency())
        got = {**bank.step(info, clicks, running.costs()), LIVE: live_played}
        played, clicked, final, outcomes = bank_rows(got)
        latency = {LIVE: live_ms}
        final[ALL_MAX_RANKER], final[ALL_MAX_RRF] = order[:10], shown_list(lists, top)
        answers: dict[str, list[str]] = {}
        for peer in peers:
            t_peer = time.perf_counter()
            answers[peer.name] = list(peer.search(q.text, PEER_DEPTH))
            latency[peer.name] = (time.perf_counter() - t_peer) * 1000.0
            final[peer.name] = answers[peer.name][:10]
        extra: dict[str, Any] = {
            "policy_version": live.policy_version,
            "ranker_version": live.ranker_version,
            "full_status": status,
            "degraded": bool(full.degraded),
        }
        if clicks.noise > 0:  # every click of every contender's user, noise ones included
            extra["outcomes"] = outcomes
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
                extra,
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
    return records, upserted


def rpc_error_name(exc: Exception) -> str:
    """A failed call's name in a throughput count: the gRPC status, else the exception's class."""
    code = exc.code() if isinstance(exc, grpc.RpcError) else None  # type: ignore[attr-defined]
    return code.name if code is not None else type(exc).__name__


def peer_search(peer: Peer, qs: Sequence[SimQuery], i: int) -> object:
    return peer.search(qs[i].text, 10)


def measure_throughput(
    args: argparse.Namespace, space: ActionSpace, queries: Sequence[SimQuery], peers: Sequence[Peer]
) -> dict[str, dict[str, dict[str, Any]]]:
    """After the loop, every contender that answers on its own (ltrr with its policy, ltrr with every strategy
    forced at the ladder maximum, each peer) answers the first ``--throughput`` queries of the stream, top 10,
    with 1 and then ``THROUGHPUT_CALLERS`` concurrent callers (:func:`ltrr.loadtest.closed_loop`): contender ->
    callers -> req/s, latency percentiles, errors. ltrr's searches are logged like any (the loop is over, so
    they change no figure of the run); no feedback is sent."""
    qs = list(queries[: args.throughput])
    if not qs:
        return {}
    top = {s: space.ladder[-1] for s in space.strategies}
    local = threading.local()

    def ltrr_client() -> LtrrClient:
        if not hasattr(local, "client"):
            local.client = LtrrClient(args.target, timeout=60.0)
        return local.client

    def ltrr(budgets: Mapping[str, int] | None) -> Callable[[int], object]:
        return lambda i: ltrr_client().search(qs[i].text, k=10, user_id=qs[i].user_id, budgets=budgets)

    contenders: dict[str, Callable[[int], object]] = {f"ltrr {LIVE}": ltrr(None), f"ltrr {ALL_MAX}": ltrr(top)}
    for peer in peers:
        contenders[peer.name] = partial(peer_search, peer, qs)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, call in contenders.items():
        call(0)  # warm: a first call's connection set-up is not throughput
        out[name] = {str(n): closed_loop(call, len(qs), n, error_name=rpc_error_name) for n in (1, THROUGHPUT_CALLERS)}
        got = out[name]
        log(f"throughput {name}: " + ", ".join(f"{n} caller(s) {got[n]['throughput_rps']} req/s" for n in got))
    return out


def offline_loop(
    space: ActionSpace,
    records: list[QueryRecord],
    path: Path,
    bank: Bank,
    clicks: PositionClickModel,
    replaces: tuple[str, ...] = (),
) -> None:
    """Re-run ``bank`` on a saved run (its full lists, contexts and draws), in place: each record's
    rows of the bank's members, and of every contender whose name starts with one of ``replaces``,
    become the re-run's."""
    running = RunningLatency(space)
    with gzip.open(path, "rt") as fh:
        rows = {int(d["index"]): d for d in map(json.loads, fh)}
    gone = tuple(replaces) + tuple(bank.names)
    for i, rec in enumerate(tqdm(records, desc="offline", unit="q", file=sys.stderr)):
        d = rows[rec.index]
        running.add(dict(rec.live_latency_ms))
        if rec.index % 25 == 0:
            bank.reprice(running.latency())
        info = FullInfo(d["context"], d["lists"], d.get("order", []), rec.wanted, np.asarray(d["draw"]))
        played, clicked, shown, outcomes = bank_rows(bank.step(info, clicks, running.costs()))
        keep = {p: b for p, b in rec.played.items() if not p.startswith(gone)}
        keep_c = {p: c for p, c in rec.clicks.items() if not p.startswith(gone)}
        keep_f = {p: f for p, f in rec.final.items() if not p.startswith(gone)}
        extra = dict(rec.extra)
        if clicks.noise > 0:
            kept = {p: o for p, o in (extra.get("outcomes") or {}).items() if not p.startswith(gone)}
            extra["outcomes"] = kept | outcomes
        records[i] = QueryRecord.from_dict(
            rec.to_dict()
            | {"played": keep | played, "clicks": keep_c | clicked, "final": keep_f | shown, "extra": extra}
        )


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


def select_bandits(names: str) -> list[str]:
    """The ltrr algorithms of ``--bandits``: ``all`` (:data:`ltrr.sim.inloop.BANDITS`), ``none`` or names."""
    if names == "none":
        return []
    if names == "all":
        return list(BANDITS)
    wanted = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    missing = [n for n in wanted if n not in BANDITS]
    if missing or not wanted:
        got = repr(missing[0]) if missing else "nothing"
        raise SystemExit(f"--bandits: unknown {got}; valid: all, none, {', '.join(BANDITS)}")
    return wanted


# -- outputs ---------------------------------------------------------------------------------------


def plot(scored: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, tr in scored.trajectories.items():
        if name == "oracle":
            continue
        ax.plot(np.arange(1, len(tr.value) + 1), cumulative_regret(tr, scored.oracle), label=name, **style_of(name))
    labels = ("query", "cumulative regret vs the per-query oracle")
    save_lines(fig, ax, path, labels, "Retrieval-plan regret on simulated users (full information)", "upper left")


def save_lines(fig: Any, ax: Any, path: Path, labels: tuple[str, str], title: str, legend: str) -> None:
    """Label, grid and legend a line plot, then write it to ``path``."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def style_of(name: str) -> dict[str, Any]:
    """Line style of a contender: live thick black, VW dashed, in-loop ltrr policies dotted."""
    style: dict[str, Any] = {"lw": 2.4, "color": "black"} if name == LIVE else {"lw": 1.2}
    if name.startswith(VW_PREFIX):
        style["ls"] = "--"
    elif name.startswith(INLOOP_PREFIX):
        style.update(ls=":", lw=1.8)
    return style


#: Queries in the trailing mean of :func:`plot_drift`'s recall curves.
DRIFT_SMOOTHING = 100


def plot_drift(scored: Any, at: int, families: Mapping[str, str], path: Path) -> None:
    """Candidate recall over the queries (trailing mean of ``DRIFT_SMOOTHING``) of live, the in-loop
    ltrr policies, the best VW config per family and the static references, the drift marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.array([r.index for r in scored.records])
    w = max(1, min(DRIFT_SMOOTHING, len(idx)))
    names = [n for n in scored.trajectories if n == LIVE or n.startswith(INLOOP_PREFIX)]
    names += sorted(best_of_family(scored, families).values())
    names += [n for n in (STATIC, ALL_MAX) if n in scored.trajectories]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name in names:
        hit = scored.trajectories[name].hit
        ax.plot(idx[w - 1 :], np.convolve(hit, np.ones(w) / w, mode="valid"), label=name, **style_of(name))
    ax.axvline(at, color="0.3", lw=1.5, ls="-.", label=f"drift (query {at})")
    labels = ("query index", f"candidate recall, mean of the last {w} queries")
    save_lines(fig, ax, path, labels, "Recall through the drift (full information)", "lower left")


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


def bank_timing(bank: Bank, prefix: str) -> dict[str, dict[str, float]]:
    """Mean, p50 and p99 ms per query (choose + learn) of the bank's members named ``prefix...``."""
    out = {}
    for name, xs in bank.ms.items():
        if xs and name.startswith(prefix):
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


def build_peers(
    args: argparse.Namespace, app: AppConfig, entities: Sequence[Entity]
) -> tuple[list[Peer], dict[str, Any]]:
    """The peers of ``--peers`` (module docstring), each indexed on the run's catalog ``entities``, and
    what that took. A peer that cannot run here is left out with the reason, in the report."""
    chosen = PEER_NAMES if args.peers == "all" else tuple(p for p in args.peers.split(",") if p and p != "none")
    unknown = [p for p in chosen if p not in PEER_NAMES]
    if unknown:
        raise SystemExit(f"--peers: unknown {', '.join(unknown)} (choose from {', '.join(PEER_NAMES)}, all, none)")
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
    args: argparse.Namespace, space: ActionSpace, records: list[QueryRecord], bank: Bank | None, meta: dict[str, Any]
) -> None:
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    scored = score_run(space, records, default_k=args.default_k)
    families = {s.name: s.family for s in DEFAULT_GRID}
    kinds = (
        (VW_PREFIX, "vw_timing", "VW time per query (choose + learn, 624 actions)", "no VW"),
        (INLOOP_PREFIX, "inloop_timing", "in-loop ltrr policies' time per query (choose + learn)", "none"),
    )
    for prefix, key, label, empty in kinds:
        if bank is not None and any(n.startswith(prefix) for n in bank.names):
            timing = bank_timing(bank, prefix)
            meta[label] = ", ".join(f"{n}: {t['mean_ms']:.1f} ms (p99 {t['p99_ms']:.1f})" for n, t in timing.items())
            meta[label] = meta[label] or empty
            meta[key] = timing
    live_hits = [r.live_hit for r in records if r.live_hit is not None]
    tr = scored.trajectories.get(LIVE)
    if tr is not None and live_hits:
        agree = float(np.mean([bool(h) == bool(s) for h, s in zip(live_hits, tr.hit, strict=False)]))
        meta["live calls' own candidates agree with the full-information score"] = f"{agree:.3f} of queries"
    clicked = [r.clicks.get(LIVE) is not None for r in records]
    meta["live clicks"] = f"{int(np.sum(clicked))} of {len(records)}"
    noise = [c for r in records for c in (r.extra.get("outcomes") or {}).get(LIVE, []) if not c["wanted"]]
    if noise:
        skips = sum(c["outcome"] == "skip" for c in noise)
        meta["live clicks"] += f" on the wanted item; {len(noise)} noise clicks, {skips} of them skipped"
    md_meta = {k: v for k, v in meta.items() if k not in STRUCTURED_META}
    md = markdown(scored, md_meta, families)
    plan = meta.get("drift_plan") or {}
    at = plan.get("at")
    if at is not None and any(r.index < at for r in records) and any(r.index >= at for r in records):
        md += "\n" + "\n".join(drift_section(scored, int(at), plan.get("new_entities") or ())) + "![drift](drift.png)\n"
        plot_drift(scored, int(at), families, out / "drift.png")
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


def rescore(args: argparse.Namespace, space: ActionSpace, clicks: PositionClickModel, command: str) -> int:
    """``--rescore DIR`` / ``--offline DIR``: score a saved run again, without a server. ``--offline``
    re-runs the VW learners and the in-loop ltrr policies on its full-information log; ``--rescore``
    replays only the in-loop ltrr policies of ``--bandits`` the run lacks (a run from before them),
    when its log is there. Both replay the run's policy config and click model when it saved them."""
    src = ROOT / (args.rescore or args.offline)
    saved = json.loads((src / "regret.json").read_text())
    records = [QueryRecord.from_dict(d) for d in saved["records"]]
    meta = dict(saved["meta"])
    fullinfo = src / "regret-fullinfo.jsonl.gz"
    # the draws were drawn for the run's click model; a run saved without it: this command's
    replay_clicks = saved_click_model(meta) if "click_model_params" in meta else clicks
    policy = PolicyConfig.model_validate(meta["inloop_policy"]) if "inloop_policy" in meta else bench_policy(args)
    bank: Bank | None = None
    if args.offline:
        for key in ("vw_timing", "inloop_timing"):
            meta.pop(key, None)  # the re-run times its own
        bank = build_bank(args, space, policy)
        offline_loop(space, records, fullinfo, bank, replay_clicks, replaces=(VW_PREFIX, INLOOP_PREFIX))
        meta["VW"] = f"VW and in-loop ltrr policies re-run offline from {src} ({command})"
    else:
        have = {p for r in records for p in r.played}
        missing = [a for a in select_bandits(args.bandits) if INLOOP_PREFIX + a not in have]
        if missing and fullinfo.exists():  # a run from before the in-loop policies: replay them
            bank = Bank(inloop_policies(policy, space.strategies, missing, args.seed))
            offline_loop(space, records, fullinfo, bank, replay_clicks)
            meta["in-loop ltrr policies"] = (
                f"{', '.join(missing)} replayed offline from {src}'s full-information log ({command})"
            )
    meta.setdefault("inloop_policy", policy.model_dump(mode="json"))
    write_outputs(args, space, records, bank, meta)
    if bank is not None:
        bank.close()
    return 0


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
        help="click model: probability of a click on a random examined non-wanted result (ltrr.sim.clicks); "
        "sent as feedback like every click, and seen by the in-loop learners",
    )
    ap.add_argument("--skip", type=float, default=1.0, help="click model: probability a noise click is a skip")
    ap.add_argument(
        "--drift-at", type=int, default=None, help="query index from which --drift-mix holds (ltrr.sim.users.Drift)"
    )
    ap.add_argument("--drift-mix", default="", help="query kinds from --drift-at on, e.g. 'tag=0.4,like=0.4'")
    ap.add_argument(
        "--drift-new",
        type=int,
        default=0,
        help="new entities (clones of the users' artists) upserted through the API just before --drift-at and "
        "wanted from then on (ltrr.sim.users.clone_entities)",
    )
    ap.add_argument("--vw", default="all", help="VW configs: all, none, or names from ltrr.sim.vw.DEFAULT_GRID")
    ap.add_argument(
        "--bandits",
        default="all",
        help=f"ltrr's own algorithms run in the loop on the bench's policy config: all ({','.join(BANDITS)}), "
        "none, or some of them",
    )
    ap.add_argument(
        "--peers", default="all", help=f"peers on the same queries: all, none, or of {', '.join(PEER_NAMES)}"
    )
    ap.add_argument(
        "--throughput",
        type=int,
        default=200,
        help=f"after the loop, the first N queries again at 1 and {THROUGHPUT_CALLERS} callers per contender "
        "(ltrr, ltrr with every strategy at max, each peer); 0: skip",
    )
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--rescore", metavar="DIR", help="re-score DIR/regret.json (no server)")
    ap.add_argument(
        "--offline",
        metavar="DIR",
        help="re-run the VW learners and the in-loop ltrr policies on DIR's saved run, then score (no server)",
    )
    args = ap.parse_args()
    if args.throughput < 0:
        raise SystemExit(f"--throughput must be >= 0, got {args.throughput}")
    clicks = click_model(args)  # a wrong value fails here, before any deploy
    drift = drift_of(args)
    select_vw(args.vw)
    select_bandits(args.bandits)
    if drift is not None and drift.new_entities and args.no_deploy and not (args.rescore or args.offline):
        raise SystemExit("--drift-new upserts into the app's catalog: it needs a fresh bench app, not --no-deploy")
    started = time.perf_counter()
    normal = load_app_config(args.config)
    strategies = list(normal.enabled())
    space = ActionSpace.build(strategies, normal.policy.ladder, normal.policy.costs)
    args.default_k = {n: s.default_k for n, s in normal.enabled().items()}
    if any(k not in normal.policy.ladder for k in args.default_k.values()):
        args.default_k = None  # a default k off the ladder is not an action of the space
    command = "scripts/bench_regret.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    if args.rescore or args.offline:
        return rescore(args, space, clicks, command)

    policy = bench_policy(args)
    bank = build_bank(args, space, policy)  # before any deploy: a missing prior or VW fails here
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
    entities = catalog_entities(catalog_path)
    queries, clones = stream_queries(args, catalog_path, entities)
    timings["simulated users"] = time.perf_counter() - t
    t = time.perf_counter()
    peers, peer_info = build_peers(args, normal, entities)
    timings["peers indexed"] = time.perf_counter() - t
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    upsert = DriftUpsert(drift.at, clones, entities) if drift is not None and clones else None
    throughput: dict[str, Any] | None = None
    t = time.perf_counter()
    try:
        with gzip.open(out / "regret-fullinfo.jsonl.gz", "wt") as fh:
            records, upserted = live_loop(args, client, space, queries, bench_events, fh, bank, peers, upsert)
        timings["query loop"] = time.perf_counter() - t
        if args.throughput:
            t = time.perf_counter()
            throughput = measure_throughput(args, space, queries, peers)
            timings["throughput"] = time.perf_counter() - t
    finally:
        for peer in peers:
            peer.close()
        timings.setdefault("query loop", time.perf_counter() - t)
        if bench_events and not args.keep_deployed:
            log(f"re-deploying {args.config}")
            timings["re-deploy the normal app"] = restore(args, client, bench_events)
        if upsert is not None and not args.keep_deployed:  # even after a failed loop: deleting is idempotent
            removed = remove_clones(normal, [c.entity.entity_id for c in upsert.clones])
            log(f"drift clones removed from the shared indexes: {removed}")
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
        "click_model_params": {"eta": clicks.eta, "depth": clicks.depth, "noise": clicks.noise, "skip": clicks.skip},
        "in-loop ltrr policies": ", ".join(n for n in bank.names if n.startswith(INLOOP_PREFIX)) or "none",
        "inloop_policy": policy.model_dump(mode="json"),
        "users": f"population {POPULATION} (ltrr.sim.users.build_world)",
        "costs": f"per_call {space.cost_model.per_call}, per_candidate {space.cost_model.per_candidate}, "
        f"per_ms {space.cost_model.per_ms}",
        "peers": "; ".join(f"{k}: {v}" for k, v in peer_info.items()) or "none",
        "run time": ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; {timings['query loop'] / max(n_q, 1) * 1000:.0f} ms per query in the loop",
    }
    if throughput is not None:
        meta["throughput"] = throughput
    if drift is not None:
        meta["drift"] = f"from query {drift.at}: " + ", ".join(f"{k} {v:g}" for k, v in drift.mix.weights().items())
        meta["drift_plan"] = {"at": drift.at, "new_entities": [c.entity.entity_id for c in clones]}
        if clones:
            meta["drift"] += f"; {len(clones)} new entities (clones) wanted from then on"
        if upserted is not None:
            meta["drift_plan"]["upsert"] = upserted
            meta["drift upsert"] = (
                f"{upserted['received']} sent, {upserted['changed']} changed, indexed {upserted['indexed']}, "
                f"failed {upserted['failed'] or 'none'}; {upserted['found']} found by a search after "
                f"{upserted['searchable_s']:.1f} s (by strategy: {upserted['found_by']}); peers re-indexed in "
                f"{upserted['peers_reindexed_s']:.0f} s"
            )
    write_outputs(args, space, records, bank, meta)
    bank.close()
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
