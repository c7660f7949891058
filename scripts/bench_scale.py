#!/usr/bin/env python
"""`make bench-scale` (issue 10, "Scale"): how ingest and search cost grow with the catalog, on the running servers.

For each of ``--sizes`` (default 58,000, 250,000 and 1,000,000 entities), in increasing order; each phase prints
its elapsed time (``[scale  123.4 s] ...``), and the pure rules are in :mod:`ltrr.sim.scale`:

1. **Catalog**: ``ltrr catalog synthetic --n <n> --path var/scale/<n>/catalog.sqlite`` (the deterministic
   generator, :mod:`ltrr.catalog.synthetic`; ``--seed``). Skipped when ``var/scale/<n>/catalog.json`` (written
   once a generation has finished) matches the size and seed and the catalog holds ``n`` entities.
2. **Ingest**, one strategy at a time, each into its own index beside the app's (``ltrr_entities_scale_<n>``,
   ``ltrr_queries_scale_<n>`` in Meilisearch, collection ``ltrr_entities_scale_<n>`` in Milvus,
   ``var/scale/<n>/graph-cache``), with the hashing embedder: every index is dropped and its watermark reset, then
   ``ltrr ingest --config var/scale/<n>/serve_config.yaml --skip-catalog --only <s> --no-cold-start`` runs and
   is timed. Its peak RSS is the kernel's (``wait4``'s ``ru_maxrss``); a sampler reads the RSS of Meilisearch
   and Milvus (found in ``/proc`` by their command lines) every ``--sample-s`` meanwhile. An ingest is killed
   past ``--ingest-timeout-s`` or when the machine's ``MemAvailable`` falls below ``--min-free-mib``.
   ``--reuse`` keeps, per strategy, an index that is complete and the figures an earlier run recorded for it
   (``var/scale/<n>/ingest.json``, written after each strategy's ``ok`` ingest), so a run stopped part-way
   goes on from the first strategy it had not finished.
3. **Serve**: the derived Serve config (:func:`ltrr.sim.scale.scale_config`: the app's, with the size's
   catalog, indexes, event log, policy and a copy of the app's ranker registry) is deployed with
   ``serve deploy``; once a probe search is logged in the size's event log and every ``ltrr.index.<s>`` is
   SERVING (both bounded by ``--deploy-timeout-s``), ``--warmup`` searches, then ``--searches`` searches at one
   caller with all four strategies forced (``budgets``: each at its ``default_k``) and the same queries with the
   policy deciding (seeded: popular titles, some with a typo, ``artists like X``, the catalog's genres and tags).
   The RSS of Meilisearch, Milvus, every Ray process and the ingress replicas is sampled meanwhile.
4. The normal app (``--config``) is deployed again after each size, and in a ``finally`` on any error, SIGTERM or
   Ctrl-C; the size's Milvus collection is then released (its memory freed; the data stays). ``--drop`` also
   deletes every scale index, collection and graph cache at the end (the catalogs stay: they take longest).

The first failed size (an ingest killed, a deploy that never served) stops the run: larger ones would fail too.
Writes ``scale.md`` (the tables, a sentence naming the strategy whose ingest time grows fastest, and the machine's
ceiling), ``scale.json`` (every figure) and ``scale.png`` (ingest time and search p50 against catalog size) under
``--out`` (``bench-out/scale``). Needs ``make up``; the servers must not be busy with another benchmark.

Time: an estimate, not yet measured: about 1.5-2 hours the first time (generating and ingesting the 1M catalog
dominate), about 20 minutes with ``--reuse`` once the indexes exist (two deploys per size and 2 x 300 searches).

    .venv/bin/python scripts/bench_scale.py                       # make bench-scale
    .venv/bin/python scripts/bench_scale.py --sizes 58000 --searches 50
    .venv/bin/python scripts/bench_scale.py --reuse --drop
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
from ltrr.loadtest import bench_environ, lagging_indexes, search_logged  # noqa: E402

bench_environ(ROOT)

import yaml  # noqa: E402

from ltrr import loadtest as lt  # noqa: E402
from ltrr.appconfig_io import load_app_config  # noqa: E402
from ltrr.config import AppConfig  # noqa: E402
from ltrr.errors import InvalidRequest  # noqa: E402
from ltrr.sim import scale as sc  # noqa: E402
from ltrr.sim.bench_config import app_args  # noqa: E402

BIN = ROOT / ".venv" / "bin"
STARTED = time.perf_counter()


def log(msg: str) -> None:
    print(f"[scale {time.perf_counter() - STARTED:7.1f} s] {msg}", file=sys.stderr, flush=True)


class SizeFailed(Exception):
    """One size could not be measured; the message says which phase and why."""


# == processes and memory ==========================================================================================
class RssSampler(lt.PeriodicSampler):
    """Every ``every_s``: the RSS (bytes) of each of ``servers`` (label -> pids), of ``watch`` (label -> pid, set
    after the start), and with ``ray`` of every Ray process and of the ingress replicas, as ``{"t", "rss"}``."""

    def __init__(self, servers: dict[str, list[int]], every_s: float, *, ray: bool = False) -> None:
        super().__init__(time.perf_counter(), every_s)
        self.servers, self.ray = servers, ray
        self.watch: dict[str, int] = {}

    def sample(self) -> dict[str, Any]:
        rss: dict[str, int | None] = {label: sc.rss_of(pids) for label, pids in self.servers.items()}
        rss.update({label: sc.rss_of([pid]) for label, pid in self.watch.items()})
        if self.ray:
            rss["ray"], rss["ingress"] = sc.ray_totals(lt.scan_processes())
        return {"rss": rss}

    def peak_mib(self, label: str) -> float | None:
        vals = [s["rss"][label] for s in self.samples if s["rss"].get(label) is not None]
        return round(max(vals) / lt.MIB, 1) if vals else None


def mem_available() -> int | None:
    try:
        return sc.parse_meminfo(Path("/proc/meminfo").read_text()).get("MemAvailable")
    except OSError:
        return None


@dataclass
class Finished:
    """A child process that ended: its exit code (None if it was killed), wall time, peak RSS and what ended it."""

    code: int | None
    wall_s: float
    maxrss: int | None
    status: str
    sampler: RssSampler | None = None
    output: str = ""


def run_watched(
    cmd: list[str], log_path: Path, *, timeout_s: float, min_free: int, servers: dict[str, list[int]] | None = None,
    every_s: float = 1.0, label: str = "ingest", timeout_flag: str = "--ingest-timeout-s",
) -> Finished:  # fmt: skip
    """Run ``cmd``, its output copied to stderr and ``log_path``; kill it past ``timeout_s`` or when
    ``MemAvailable`` falls below ``min_free`` bytes. Reaped with ``wait4``, so its peak RSS is the kernel's."""
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sampler = RssSampler(servers, every_s) if servers is not None else None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    chunks: list[bytes] = []

    def pump() -> None:
        with log_path.open("wb") as fh:
            while chunk := os.read(proc.stdout.fileno(), 65536):  # type: ignore[union-attr]
                chunks.append(chunk)
                fh.write(chunk)
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if sampler is not None:
        sampler.watch[label] = proc.pid
        sampler.start()
    status, code, maxrss = "ok", None, None
    try:
        while True:
            pid, wstatus, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                code, maxrss = os.waitstatus_to_exitcode(wstatus), usage.ru_maxrss * 1024
                proc.returncode = code
                break
            free = mem_available()
            if time.perf_counter() - t0 > timeout_s:
                status = f"killed after {timeout_s:.0f} s ({timeout_flag})"
            elif free is not None and free < min_free:
                status = f"killed: MemAvailable {free / lt.MIB:.0f} MiB < {min_free / lt.MIB:.0f} MiB (--min-free-mib)"
            if status != "ok":
                log(status)
                proc.kill()
                _, wstatus, usage = os.wait4(proc.pid, 0)
                proc.returncode, maxrss = os.waitstatus_to_exitcode(wstatus), usage.ru_maxrss * 1024
                break
            time.sleep(0.2)
    finally:
        if proc.returncode is None:  # interrupted: leave no child behind
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
        if sampler is not None:
            sampler.halt()
        reader.join(timeout=10.0)
        proc.stdout.close()
    if status == "ok" and code != 0:
        status = f"exit {code}"
    text = b"".join(chunks).decode("utf-8", "replace")
    return Finished(code, time.perf_counter() - t0, maxrss, status, sampler, text)


def run(cmd: list[str], timeout_s: float = 600.0) -> None:
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=timeout_s)


def git_commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        sha = git("rev-parse", "--short", "HEAD") or "unknown"
        return sha + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine(mem_total: int | None) -> str:
    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = f", {mem_total / (1024 * lt.MIB):.1f} GiB RAM" if mem_total else ""
    return f"{os.cpu_count()} cores, {cpu}{ram}"


# == one size ======================================================================================================
@dataclass
class Run:
    args: argparse.Namespace
    normal_cfg: dict[str, Any]
    normal: AppConfig
    servers: dict[str, list[int]]
    report: dict[str, Any]
    deployed: Any = None  # the AppConfig of the scale app now deployed, if any

    def timing(self, name: str, seconds: float) -> None:
        self.report["timings_s"][name] = round(seconds, 1)


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def generate(r: Run, names: sc.ScaleNames) -> dict[str, Any]:
    """The size's synthetic catalog, generated unless a finished one is there (module docstring, step 1)."""
    from ltrr.catalog.store import CatalogStore

    var, catalog = ROOT / names.var_dir, ROOT / names.catalog_path
    marker = var / "catalog.json"
    var.mkdir(parents=True, exist_ok=True)
    if marker.is_file() and catalog.is_file():
        done = json.loads(marker.read_text())
        store = CatalogStore(str(catalog))
        try:
            count = store.count()
        finally:
            store.close()
        if done.get("n") == names.size and done.get("seed") == r.args.seed and count == names.size:
            log(f"{names.size:,}: catalog already generated ({done.get('seconds')} s on {done.get('date')})")
            return {**done, "reused": True}
    marker.unlink(missing_ok=True)
    remove_sqlite(catalog)  # a partial catalog (no marker): start again
    (var / "ingest.json").unlink(missing_ok=True)  # its watermarks went with it
    cmd = [str(BIN / "ltrr"), "catalog", "synthetic", "--n", str(names.size), "--seed", str(r.args.seed),
           "--path", str(catalog)]  # fmt: skip
    done_p = run_watched(
        cmd, var / "generate.log", timeout_s=r.args.generate_timeout_s, min_free=r.args.min_free,
        timeout_flag="--generate-timeout-s",
    )  # fmt: skip
    if done_p.status != "ok":
        raise SizeFailed(f"generate: {done_p.status} (log: {var / 'generate.log'})")
    lines = [s for s in done_p.output.replace("\r", "\n").splitlines() if s.startswith("{")]
    stats = json.loads(lines[-1]) if lines else {}
    out = {"n": names.size, "seed": r.args.seed, "seconds": round(done_p.wall_s, 1),
           "peak_rss_mib": _mib(done_p.maxrss), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "stats": stats}  # fmt: skip
    marker.write_text(json.dumps(out, indent=2) + "\n")
    return {**out, "reused": False}


def _mib(x: int | None) -> float | None:
    return None if x is None else round(x / lt.MIB, 1)


def write_scale_config(r: Run, names: sc.ScaleNames) -> tuple[Path, AppConfig]:
    derived = sc.scale_config(r.normal_cfg, names.size)
    path = ROOT / names.var_dir / "serve_config.yaml"
    path.write_text(
        f"# Written by scripts/bench_scale.py from {r.args.config}; see ltrr/sim/scale.py.\n"
        + yaml.safe_dump(derived, sort_keys=False)
    )
    return path, AppConfig.model_validate(app_args(derived))


def reset_index(cfg: AppConfig, name: str) -> None:
    """Drop strategy ``name``'s index of this size and reset its watermark, so its ingest starts from zero."""
    from ltrr.catalog.store import CatalogStore
    from ltrr.ingest import index_target

    scfg: Any = cfg.strategy_config(name)
    if name in ("lexical", "memory"):
        from ltrr.strategies._meili import MeiliClient

        MeiliClient(scfg.url, scfg.api_key).delete_index(scfg.index)
    elif name == "vector":
        from ltrr.strategies.vector import VectorStrategy

        vs = VectorStrategy(scfg)
        try:
            if vs.client().has_collection(scfg.collection):
                vs.drop()
        finally:
            vs.close()
    elif name == "graph" and scfg.cache_dir:
        shutil.rmtree(scfg.cache_dir, ignore_errors=True)
    if not Path(cfg.catalog_path).is_file():
        return
    store = CatalogStore(cfg.catalog_path)
    try:
        store.set_watermark(index_target(name, scfg), 0)
    finally:
        store.close()


def complete(cfg: AppConfig, names: Sequence[str]) -> bool:
    """Every strategy's watermark is at the end of the catalog (no backlog)."""
    from ltrr.catalog.store import CatalogStore
    from ltrr.ingest import index_target

    store = CatalogStore(cfg.catalog_path)
    try:
        return all(
            store.watermark(t) > 0 and store.count_since(store.watermark(t)) == 0
            for t in (index_target(n, cfg.strategy_config(n)) for n in names)
        )
    finally:
        store.close()


def ingest(r: Run, names: sc.ScaleNames, cfg_path: Path, cfg: AppConfig) -> list[sc.IngestRow]:
    """Step 2 of the module docstring: each strategy into its own index, timed and sampled. With ``--reuse``, a
    strategy whose index is complete and whose ingest an earlier run recorded ``ok`` is kept with its figures
    (:func:`ltrr.sim.scale.reusable_ingests`); ``ingest.json`` is written after each strategy that ends ``ok``."""
    var = ROOT / names.var_dir
    record = var / "ingest.json"
    strategies = list(cfg.enabled())
    kept = sc.reusable_ingests(json.loads(record.read_text()), names.size) if r.args.reuse and record.is_file() else {}
    rows: list[sc.IngestRow] = []
    for name in strategies:
        if name in kept and complete(cfg, [name]):
            row, date = kept[name]
            log(f"{names.size:,}: {name}: index complete; reusing its ingest figures of {date} (--reuse)")
            r.report["notes"].append(f"{names.size:,}: {name}'s ingest figures reused from the run of {date}")
            rows.append(row)
            continue
        kept.pop(name, None)
        log(f"{names.size:,}: ingest {name}")
        reset_index(cfg, name)
        cmd = [str(BIN / "ltrr"), "ingest", "--config", str(cfg_path), "--skip-catalog", "--only", name,
               "--no-cold-start"]  # fmt: skip
        done = run_watched(cmd, var / f"ingest-{name}.log", timeout_s=r.args.ingest_timeout_s,
                           min_free=r.args.min_free, servers=r.servers, every_s=r.args.sample_s)  # fmt: skip
        parsed = sc.parse_ingest_log(done.output, name)
        s = done.sampler
        row = sc.IngestRow(
            size=names.size, strategy=name, seconds=None if parsed is None else parsed[1],
            peak_rss_mib=max((x for x in (_mib(done.maxrss), s.peak_mib("ingest") if s else None) if x), default=None),
            wall_s=round(done.wall_s, 1), sent=None if parsed is None else parsed[0],
            meili_peak_mib=s.peak_mib("meilisearch") if s else None,
            milvus_peak_mib=s.peak_mib("milvus") if s else None, status=done.status,
        )  # fmt: skip
        rows.append(row)
        log(f"{names.size:,}: {name}: {row.seconds} s, peak RSS {row.peak_rss_mib} MiB, {row.status}")
        if row.status != "ok":
            r.report["ingest"] += [x.to_dict() for x in rows]
            raise SizeFailed(f"ingest {name}: {row.status} (log: {var / f'ingest-{name}.log'})")
        kept[name] = (row, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        record.write_text(json.dumps(sc.ingest_record(kept, strategies), indent=2) + "\n")
    return rows


def wait_for_app(client: Any, cfg: AppConfig, *, present: bool, timeout_s: float) -> float:
    """Wait until the serving app logs to ``cfg``'s event log (``present``) or no longer does, probing with a forced
    one-strategy search (not learned from); returns the seconds waited."""
    import grpc

    first, spec = next(iter(cfg.enabled().items()))
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if client.health() == "SERVING":
                rid = client.search("scale probe", k=1, budgets={first: spec.default_k}).request_id
                if search_logged(cfg.events_path, rid) == present:
                    return time.monotonic() - t0
        except grpc.RpcError:
            pass
        time.sleep(2.0)
    raise SizeFailed(f"deploy: the {'scale' if present else 'normal'} app did not serve within {timeout_s:.0f} s")


def wait_for_indexes(client: Any, strategies: Sequence[str], timeout_s: float) -> float:
    """Wait until every ``ltrr.index.<s>`` answers SERVING (no backlog); returns the seconds waited."""
    t0, pending = time.monotonic(), list(strategies)
    while pending and time.monotonic() - t0 < timeout_s:
        still = lagging_indexes(client, pending)
        pending = still
        if pending:
            time.sleep(5.0)
    if pending:
        raise SizeFailed(f"deploy: the index of {', '.join(pending)} still lags after {timeout_s:.0f} s")
    return time.monotonic() - t0


def fresh_state(r: Run, cfg: AppConfig) -> None:
    """The size's own event log and policy from scratch, and a copy of the app's ranker registry."""
    remove_sqlite(Path(cfg.events_path))
    shutil.rmtree(cfg.policy.checkpoint_dir, ignore_errors=True)
    shutil.rmtree(cfg.ranking.model_dir, ignore_errors=True)
    if Path(r.normal.ranking.model_dir).is_dir():  # the app's models, its current one serving first
        shutil.copytree(r.normal.ranking.model_dir, cfg.ranking.model_dir, ignore=shutil.ignore_patterns("*.lock"))


def search_loop(client: Any, queries: Sequence[str], k: int, budgets: dict[str, int] | None, desc: str) -> dict:
    """Searches one after another; latencies (ms), degraded answers, errors by status, each strategy's latency."""
    import grpc
    from tqdm import tqdm

    from ltrr.v1 import search_pb2 as pb

    lat: list[float] = []
    per: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    degraded = 0
    for q in tqdm(queries, desc=desc, unit="search", file=sys.stderr, leave=False):
        t = time.perf_counter()
        try:
            resp = client.search(q, k=k, budgets=budgets)
        except grpc.RpcError as exc:
            errors[exc.code().name] += 1  # type: ignore[attr-defined]
            continue
        lat.append((time.perf_counter() - t) * 1000.0)
        degraded += int(resp.degraded)
        for c in resp.strategies:
            if c.status == pb.StrategyCall.OK:
                per.setdefault(c.strategy, []).append(c.latency_ms)
    return {"latency_ms": lat, "degraded": degraded, "errors": dict(errors), "per_strategy": per}


def serve(r: Run, names: sc.ScaleNames, cfg_path: Path, cfg: AppConfig, queries: list[str]) -> sc.SearchRow:
    """Step 3 of the module docstring."""
    from ltrr.client import LtrrClient

    a = r.args
    fresh_state(r, cfg)
    t = time.perf_counter()
    r.deployed = cfg
    run([str(BIN / "serve"), "deploy", str(cfg_path)])
    with LtrrClient(a.target, timeout=30.0) as probe:
        waited = wait_for_app(probe, cfg, present=True, timeout_s=a.deploy_timeout_s)
        waited += wait_for_indexes(probe, list(cfg.enabled()), a.deploy_timeout_s)
    r.timing(f"{names.size}: deploy and serve", time.perf_counter() - t)
    log(f"{names.size:,}: serving ({waited:.0f} s after deploy)")
    budgets = {s: spec.default_k for s, spec in cfg.enabled().items()}
    sampler = RssSampler(r.servers, a.sample_s, ray=True)
    with LtrrClient(a.target, timeout=a.deadline_s, attempts=1) as client:  # no retries: each latency is one call
        search_loop(client, queries[: a.warmup], a.k, budgets, "warm-up all four")
        search_loop(client, queries[: a.warmup], a.k, None, "warm-up policy")
        t = time.perf_counter()
        sampler.start()
        try:
            forced = search_loop(client, queries, a.k, budgets, f"{names.size:,} all four")
            policy = search_loop(client, queries, a.k, None, f"{names.size:,} policy")
        finally:
            sampler.halt()
    r.timing(f"{names.size}: searches", time.perf_counter() - t)
    r.report["strategy_latency"][str(names.size)] = {
        s: lt.latency_summary(v) for s, v in sorted(forced["per_strategy"].items())
    }
    fs, ps = lt.latency_summary(forced["latency_ms"]), lt.latency_summary(policy["latency_ms"])
    row = sc.SearchRow(
        size=names.size, searches=len(queries),
        all_p50_ms=fs["p50"], all_p99_ms=fs["p99"], policy_p50_ms=ps["p50"], policy_p99_ms=ps["p99"],
        meili_mib=sampler.peak_mib("meilisearch"), milvus_mib=sampler.peak_mib("milvus"),
        ray_mib=sampler.peak_mib("ray"), ingress_mib=sampler.peak_mib("ingress"),
        all_degraded=forced["degraded"], policy_degraded=policy["degraded"],
        errors=sum(forced["errors"].values()) + sum(policy["errors"].values()),
    )  # fmt: skip
    r.report["errors_by_status"][str(names.size)] = {"all_four": forced["errors"], "policy": policy["errors"]}
    log(f"{names.size:,}: all four p50/p99 {row.all_p50_ms}/{row.all_p99_ms} ms, policy "
        f"{row.policy_p50_ms}/{row.policy_p99_ms} ms, {row.errors} errors")  # fmt: skip
    return row


def restore(r: Run) -> None:
    """Deploy the normal app again and wait for it; then release the scale collection from Milvus's memory."""
    from ltrr.client import LtrrClient

    cfg, t = r.deployed, time.perf_counter()
    if cfg is None:
        return
    log(f"re-deploying the normal app ({r.args.config})")
    run([str(BIN / "serve"), "deploy", r.args.config])
    with LtrrClient(r.args.target, timeout=30.0) as probe:
        try:
            wait_for_app(probe, cfg, present=False, timeout_s=r.args.deploy_timeout_s)
        except SizeFailed as exc:  # not this size's failure: the run's
            raise RuntimeError(f"restore: {exc}") from None
    r.deployed = None
    r.timing(f"re-deploy the normal app after {Path(cfg.catalog_path).parent.name}", time.perf_counter() - t)
    release(cfg)


def release(cfg: AppConfig) -> None:
    if "vector" not in cfg.enabled():
        return
    from ltrr.strategies.vector import VectorStrategy

    vcfg: Any = cfg.strategy_config("vector")
    vs = VectorStrategy(vcfg)
    try:
        if vs.client().has_collection(vcfg.collection):
            vs.client().release_collection(vcfg.collection)
            log(f"released Milvus collection {vcfg.collection}")
    except Exception as exc:  # noqa: BLE001 - memory left loaded is reported, not fatal
        log(f"could not release {vcfg.collection}: {exc}")
    finally:
        vs.close()


def drop(r: Run, sizes: Sequence[int]) -> None:
    for n in sizes:
        path = ROOT / sc.scale_names(n).var_dir / "serve_config.yaml"
        if not path.is_file():
            continue
        cfg = AppConfig.model_validate(app_args(yaml.safe_load(path.read_text())))
        for name in cfg.enabled():
            try:
                reset_index(cfg, name)
                log(f"dropped the {name} index of {n:,}")
            except Exception as exc:  # noqa: BLE001 - drop what can be dropped
                log(f"could not drop the {name} index of {n:,}: {exc}")
        (ROOT / sc.scale_names(n).var_dir / "ingest.json").unlink(missing_ok=True)


# == report ========================================================================================================
def summarise(rep: dict[str, Any]) -> None:
    ingest = [sc.IngestRow.from_dict(d) for d in rep["ingest"]]
    search = [sc.SearchRow.from_dict(d) for d in rep["search"]]
    strategies = rep["strategies"]
    by_strategy = {s: {x.size: x.seconds for x in ingest if x.strategy == s and x.status == "ok" and x.seconds}
                   for s in strategies}  # fmt: skip
    lat = {int(n): v for n, v in rep["strategy_latency"].items()}
    p50 = {s: {n: v[s]["p50"] for n, v in lat.items() if v.get(s, {}).get("p50")} for s in strategies}
    p99 = {s: {n: v[s]["p99"] for n, v in lat.items() if v.get(s, {}).get("p99")} for s in strategies}
    servers = {x.size: sum(v for v in (x.meili_mib, x.milvus_mib, x.ray_mib) if v) * lt.MIB for x in search}
    rep["growth"] = {"ingest_s": sc.growth(by_strategy), "search_p50_ms": sc.growth(p50)}
    rep["sentences"] = {
        "ingest_growth": sc.growth_sentence(by_strategy, "ingest time"),
        "search_growth": sc.growth_sentence(p50, "search p50 (its own call, all four forced)"),
        "ceiling": sc.ceiling_sentence(
            {n: v for n, v in servers.items() if v}, rep["mem_total_bytes"] or 0, p99, rep["deadlines_ms"],
            {int(n): why for n, why in rep["failed"].items()},
        ) if rep["mem_total_bytes"] else "MemTotal could not be read: no ceiling computed.",
    }  # fmt: skip


def plot(rep: dict[str, Any], path: Path) -> bool:
    ingest = [sc.IngestRow.from_dict(d) for d in rep["ingest"] if d["status"] == "ok" and d["seconds"]]
    search = [sc.SearchRow.from_dict(d) for d in rep["search"]]
    if not ingest and not search:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for s in rep["strategies"]:
        pts = sorted((x.size, x.seconds) for x in ingest if x.strategy == s)
        if pts:
            left.plot(*zip(*pts, strict=True), marker="o", label=s)
    left.set(xscale="log", yscale="log", xlabel="catalog entities", ylabel="ingest s", title="Ingest time (log-log)")
    left.legend(fontsize=8)
    for label, p50, p99, color in (("all four", "all_p50_ms", "all_p99_ms", "C0"),
                                   ("policy", "policy_p50_ms", "policy_p99_ms", "C1")):  # fmt: skip
        rows = sorted((x for x in search if getattr(x, p50) is not None), key=lambda x: x.size)
        if rows:
            ns = [x.size for x in rows]
            right.plot(ns, [getattr(x, p50) for x in rows], marker="o", color=color, label=f"{label} p50")
            right.plot(
                ns, [getattr(x, p99) for x in rows], marker="x", ls="--", color=color, alpha=0.6, label=f"{label} p99"
            )
    right.set(xscale="log", xlabel="catalog entities", ylabel="ms", title="Search latency at 1 caller (log x)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(out: Path, rep: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    try:
        summarise(rep)
    except Exception as exc:  # noqa: BLE001 - a partial report; scale.json has the figures
        rep["notes"].append(f"summary failed: {type(exc).__name__}: {exc}")
    try:
        rep["plot"] = "scale.png" if plot(rep, out / "scale.png") else None
    except Exception as exc:  # noqa: BLE001
        rep["notes"].append(f"plot failed: {type(exc).__name__}: {exc}")
    (out / "scale.json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    (out / "scale.md").write_text(sc.render_md(rep))
    log(f"report: {out / 'scale.md'}")


# == main ==========================================================================================================
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(str(n) for n in sc.DEFAULT_SIZES), help="catalog sizes, entities")
    ap.add_argument("--searches", type=int, default=300, help="searches per size and mode (all four, policy)")
    ap.add_argument("--warmup", type=int, default=10, help="searches per mode before the measured ones")
    ap.add_argument("--k", type=int, default=10, help="results per search")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogs and of the queries")
    ap.add_argument("--config", default=os.environ.get("LTRR_CONFIG", "deployments/serve_config.yaml"),
                    help="the normal app's Serve config: derived from, and deployed again afterwards")  # fmt: skip
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--reuse", action="store_true", help="keep each complete index (and its figures) of an earlier run")
    ap.add_argument("--drop", action="store_true", help="delete the scale indexes at the end (catalogs stay)")
    ap.add_argument("--sample-s", type=float, default=1.0, help="RSS sampling interval")
    ap.add_argument("--deadline-s", type=float, default=10.0, help="deadline of each measured search")
    ap.add_argument("--generate-timeout-s", type=float, default=3600.0, help="bound on generating one catalog")
    ap.add_argument("--ingest-timeout-s", type=float, default=7200.0, help="bound on one strategy's ingest")
    ap.add_argument("--deploy-timeout-s", type=float, default=1800.0, help="bound on each deploy's wait")
    ap.add_argument("--min-free-mib", type=float, default=1024.0, help="kill an ingest below this MemAvailable")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "scale")
    ap.add_argument("--resummarise", action="store_true",
                    help="no servers: recompute the growth and ceiling sentences and the plot of --out's scale.json, "
                    "and rewrite scale.md")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        args.size_list = sc.parse_sizes(args.sizes)
    except InvalidRequest as exc:
        ap.error(str(exc))
    for name in ("searches", "k"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {args.warmup}")
    for name in ("sample_s", "deadline_s", "generate_timeout_s", "ingest_timeout_s", "deploy_timeout_s"):
        if not getattr(args, name) > 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name):g}")
    if not args.min_free_mib >= 0:
        ap.error(f"--min-free-mib must be >= 0, got {args.min_free_mib:g}")
    args.min_free = int(args.min_free_mib * lt.MIB)
    args.out = args.out.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resummarise:
        saved = args.out / "scale.json"
        if not saved.is_file():
            raise SystemExit(f"--resummarise: there is no {saved}")
        saved_report = json.loads(saved.read_text())
        saved_report.setdefault("notes", [])
        write_outputs(args.out, saved_report)
        return 0
    import grpc

    from ltrr.client import LtrrClient

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)  # so the finally below restores the normal app
    normal_cfg = yaml.safe_load((ROOT / args.config).read_text())
    normal = load_app_config(args.config)
    with LtrrClient(args.target, timeout=10.0) as c:
        try:
            c.health()
        except grpc.RpcError as exc:
            raise SystemExit(f"ltrr is not answering on {args.target} ({exc.code()}); run `make up` first") from None  # type: ignore[attr-defined]
    lex: Any = normal.strategy_config("lexical") if "lexical" in normal.strategies else None
    meili_port = (urlparse(lex.url).port or 7700) if lex is not None else 7700
    servers = sc.server_pids(meili_port=meili_port)
    mem_total = sc.parse_meminfo(Path("/proc/meminfo").read_text()).get("MemTotal")
    keys = ("sizes", "searches", "warmup", "k", "seed", "config", "target", "reuse", "drop", "sample_s",
            "min_free_mib")  # fmt: skip
    report: dict[str, Any] = {
        **lt.report_head(["scripts/bench_scale.py", *(argv if argv is not None else sys.argv[1:])],
                         {k: getattr(args, k) for k in keys}),
        "commit": git_commit(), "machine": machine(mem_total), "mem_total_bytes": mem_total,
        "strategies": list(normal.enabled()), "server_pids": servers,
        "deadlines_ms": {s: float(spec.timeout_ms) for s, spec in normal.enabled().items()},
        "baseline_rss_mib": {k: _mib(sc.rss_of(v)) for k, v in servers.items()},
        "generate": {}, "ingest": [], "search": [], "strategy_latency": {}, "errors_by_status": {}, "failed": {},
    }  # fmt: skip
    report["baseline_rss_mib"]["ray"] = _mib(sc.ray_totals(lt.scan_processes())[0])
    report["notes"] += [
        "the hashing embedder (ltrr.embedder.HashingEmbedder) for entities and queries: vector costs exclude "
        "MiniLM's encoding",
        "searches at 1 caller, one after another, no retries; the same seeded queries for all four and for the policy",
        f"RSS sampled every {args.sample_s:g} s; Meilisearch and Milvus also hold the app's own indexes (baseline "
        "before the run: " + ", ".join(f"{k} {v} MiB" for k, v in report["baseline_rss_mib"].items()) + "); "
        "Meilisearch's RSS counts its memory-mapped index pages, which the kernel can reclaim; Ray is every Ray "
        "process on the machine",
        "the app's event log gets a few forced probe searches ('scale probe') while the normal app is re-deployed",
    ]
    for k, v in servers.items():
        if not v:
            log(f"warning: no {k} process found in /proc; its RSS is not measured")
    r = Run(args, normal_cfg, normal, servers, report)
    done: list[int] = []
    try:
        for i, n in enumerate(args.size_list):
            names = sc.scale_names(n)
            phase = "generate"
            try:
                t = time.perf_counter()
                report["generate"][str(n)] = generate(r, names)
                r.timing(f"{n}: generate", time.perf_counter() - t)
                cfg_path, cfg = write_scale_config(r, names)
                phase, t = "ingest", time.perf_counter()
                report["ingest"] += [x.to_dict() for x in ingest(r, names, cfg_path, cfg)]
                r.timing(f"{n}: ingest", time.perf_counter() - t)
                phase = "serve"
                titles, artists = lt.catalog_names(names.catalog_path)
                queries = sc.scale_queries(titles, artists, args.searches, seed=args.seed)
                report["search"].append(serve(r, names, cfg_path, cfg, queries).to_dict())
                done.append(n)
            except SizeFailed as exc:
                report["failed"][str(n)] = str(exc)
                log(f"{n:,} failed: {exc}")
                skipped = list(args.size_list[i + 1 :])
                if skipped:
                    report["notes"].append(f"not measured after {n:,} failed: " + ", ".join(f"{m:,}" for m in skipped))
                break
            except Exception as exc:
                report["failed"][str(n)] = f"{phase}: {type(exc).__name__}: {exc}"
                raise
            restore(r)  # before the next size, so its figures do not include this one's loaded collection
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {report['error']}")
        raise
    finally:
        try:
            restore(r)
        except Exception as exc:  # noqa: BLE001 - said in the report; the normal config can be deployed by hand
            report["restored"] = False
            report["notes"].append(f"restoring the normal app failed ({exc}): run `serve deploy {args.config}`")
        else:
            report["restored"] = True
        if args.drop:
            drop(r, args.size_list)
        write_outputs(r.args.out, r.report)
        log(f"done in {time.perf_counter() - STARTED:.0f} s; sizes measured: {', '.join(f'{n:,}' for n in done)}")
    return 0 if not report["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
