#!/usr/bin/env python
"""`make multinode`: a real two-node Ray cluster on this machine, and its worker lost under load (issue 12).

Stages, each printed as it goes (``[multinode HH:MM:SS] ...``); the rules of the config, the placement and the
process matching are in :mod:`ltrr.multinode`:

1. **Servers**: Meilisearch and Milvus as ``scripts/up.sh`` starts them (a server already running is used and left
   running), and a private PostgreSQL 15 (:class:`ltrr.pgserver.PgServer`: Unix socket only) whose DSN is exported
   as ``LTRR_EVENTS_DSN`` to both Ray nodes, so every ingress replica, on either node, writes one event log
   (``--sqlite``: the SQLite file ``<var-dir>/events.sqlite``, shared through the local disk).
2. **State of its own** under ``--var-dir`` (``var/multinode``): a catalog slice of the ``--max-artists`` most
   played artists with its own indexes (``ltrr_mn_*``), policy and ranker registry, built by ``ltrr ingest`` on the
   derived config (incremental: a re-run indexes only what changed). The app's own state is not touched.
3. **Two Ray nodes**: ``ray start --head`` (1 CPU, custom resource ``head_node``) and ``ray start --address=...``
   (1 CPU, ``worker_node``), both on 127.0.0.1, with a temp dir of their own (``/tmp/ltrr-mn-*``; the worker joins
   the head's session) and free ports for everything, so they run beside any other Ray on the machine (``make
   up``, the test session's app).
4. **The app, spread** (:func:`ltrr.multinode.derive_config`): the ingress and the vector deployment at 2
   replicas with ``max_replicas_per_node: 1``; the learner and the trainer on the head; the gRPC proxy on the head
   only. ``serve deploy``; then wait for gRPC health, for both replicas of each RUNNING on different nodes, for
   whole answers, and for a probe search to be in the event log.
5. **Placement table** from Ray's state API (``list_actors``, ``list_nodes``), with Serve's replica state.
6. **Throughput at 2 replicas**: ``--callers`` closed-loop callers for ``--bench-s`` s, each search forced to all
   four strategies (so each reaches a vector replica), in answers per second.
7. **The worker lost under load**: the load process of ``scripts/chaos.py`` (open loop at ``--qps``; ``--feedback``
   of the searches followed by a click under a client-chosen event id; every call journalled, each acknowledged
   feedback ``fsync``ed before it counts) runs ``--load-s`` s; at ``--kill-at-s`` the worker's raylet gets SIGKILL.
   A sampler reads the state API and Serve once a second. Reported: calls failed, degraded answers (a strategy
   missing), acknowledged feedback missing from the event log (**must be 0**), seconds from the kill until answers
   were whole again (10 in a row), until Ray marked the node DEAD, until Serve had dropped its replicas, and until
   every replica was RUNNING again. ``max_replicas_per_node: 1`` keeps the replacements off the head, so they wait,
   pending, for the worker: "RUNNING again" includes its restart.
8. **Worker restarted** (``ray start --address=...`` again): the placement table once each deployment runs on both
   nodes again (polled, at most ``--spread-timeout-s``).
9. **Throughput at 1 replica**: ``num_replicas: 1`` in the ``deployments`` overrides (a lightweight update: no
   replica restarts), then the same closed loop.
10. ``report.md``, ``report.json`` and ``multinode.png`` (replicas per node over time; searches per second by
    outcome) in ``--out`` (``bench-out/multinode``), with the journal and the samples.

A ``finally`` (also run on SIGTERM) stops what the run started: the processes of its own Ray cluster only (never
``ray stop``, which stops every Ray on the machine), PostgreSQL, and the Meilisearch and Milvus servers it
started; Ray's logs are kept in ``<var-dir>/ray-logs``. Every wait is bounded; once the slice is indexed the
default run takes about 5 minutes, ``--short`` about 4 (the first run indexes the slice and trains its cold-start
ranker: a few minutes more).

    .venv/bin/python scripts/multinode.py            # make multinode
    .venv/bin/python scripts/multinode.py --short    # what tests/integration/test_multinode.py runs
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from ltrr.loadtest import PeriodicSampler, report_head  # noqa: E402
from ltrr.multinode import (  # noqa: E402
    ALL_STRATEGIES,
    HEAD_RESOURCE,
    WHOLE_STREAK,
    WORKER_RESOURCE,
    Proc,
    ancestors,
    by_kind,
    cluster_pids,
    derive_config,
    find_raylet,
    first_after,
    is_spread,
    loss_figures,
    md_placement,
    node_kinds,
    parse_stat,
    placement_rows,
    read_procs,
    render_md,
    running_by_node,
    scale_config,
    serve_replicas,
    spread_deployments,
    target_replicas,
)

if TYPE_CHECKING:
    from ltrr.catalog.store import CatalogBase
    from ltrr.config import AppConfig

BIN = ROOT / ".venv" / "bin"
PY = str(BIN / "python")
#: Object store per node: the app passes small messages (strategy calls go over gRPC).
OBJECT_STORE_BYTES = 256 * 1024 * 1024
#: As the Makefile exports them (README, "Latency"); ``LTRR_HOME`` is always the repo.
ENV_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
    "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(4 * 1024 * 1024),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
#: Variables that would point a child at another cluster, or the clients at another app's token.
ENV_DROPPED = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_DASHBOARD_ADDRESS", "LTRR_TOKEN")


def log(msg: str) -> None:
    print(f"[multinode {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# == the machine ================================================================================================
def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (held open together while picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def run(cmd: Sequence[str], env: Mapping[str, str], log_path: Path | None = None, timeout_s: float = 900.0) -> None:
    """Run ``cmd`` in the repo, its output appended to ``log_path`` (the last lines shown if it fails) or ours."""
    log("$ " + " ".join(cmd))
    if log_path is None:
        subprocess.run(list(cmd), cwd=ROOT, env=dict(env), check=True, timeout=timeout_s)
        return
    with log_path.open("a") as fh:
        done = subprocess.run(list(cmd), cwd=ROOT, env=dict(env), stdout=fh, stderr=fh, timeout=timeout_s, check=False)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {done.returncode}; {log_path}:\n{tail}")


def backend_running(module: str, env: Mapping[str, str]) -> bool:
    """Whether ``python -m <module> status`` finds its server running."""
    out = subprocess.run(
        [PY, "-m", module, "status"], capture_output=True, text=True, cwd=ROOT, env=dict(env), check=False
    )
    try:
        return bool(json.loads(out.stdout.strip().splitlines()[-1]).get("running"))
    except (ValueError, IndexError, AttributeError):
        return False


def http_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read().decode())


def wait_until(what: str, fn: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> Any:
    """Call ``fn`` until it returns something truthy (an exception counts as not yet); raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not after {timeout_s:g} s" + (f" (last error: {last})" if last else ""))


def as_dict(x: Any) -> dict[str, Any]:
    """A state-API record (a dataclass in Ray 2.60) as a plain dict."""
    if isinstance(x, Mapping):
        return dict(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    return dict(vars(x))


def alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` (started at ``start``, if given) still runs; a zombie has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2 :].startswith("Z"):
        return False
    return start is None or parse_stat(stat)[1] == start


class Cluster:
    """The run's Ray cluster: a head and a worker node started by ``ray start`` on 127.0.0.1, with a temp dir of
    their own and free ports. :meth:`stop` ends its processes and no other (:func:`ltrr.multinode.cluster_pids`)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.temp_dir = tempfile.mkdtemp(prefix="ltrr-mn-", dir="/tmp")  # short: a socket path has <= 107 bytes
        self.gcs_port, self.dashboard_port, self.client_port = free_ports(3)
        self.api = f"http://127.0.0.1:{self.dashboard_port}"
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.node_ids: set[str] = set()
        self.seen: dict[int, int] = {}  # pid -> start time of each process of the cluster seen so far
        self.worker_starts = 0

    def _node_args(self) -> list[str]:
        nm, om, al, ag, ra, me = free_ports(6)
        return [
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            f"--node-manager-port={nm}",
            f"--object-manager-port={om}",
            "--min-worker-port=0",  # random: two raylets of one host must not hand out one range
            "--max-worker-port=0",
            f"--dashboard-agent-listen-port={al}",  # its default, 52365, fits one node per host
            f"--dashboard-agent-grpc-port={ag}",
            f"--runtime-env-agent-port={ra}",
            f"--metrics-export-port={me}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
        ]

    def start_head(self) -> str:
        resources = json.dumps({HEAD_RESOURCE: 1})
        cmd = [
            str(BIN / "ray"),
            "start",
            "--head",
            f"--port={self.gcs_port}",
            f"--temp-dir={self.temp_dir}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={self.client_port}",
            f"--resources={resources}",
            *self._node_args(),
        ]
        run(cmd, self.env, self.logs / "ray-start-head.log", timeout_s=180)
        wait_until("the dashboard", lambda: http_json(f"{self.api}/api/version", 5.0), 120.0)
        head = wait_until("the head node", lambda: [n for n in self.nodes() if n.get("is_head_node")], 60.0)
        self.node_ids.add(str(head[0]["node_id"]))
        self.remember()
        return str(head[0]["node_id"])

    def start_worker(self) -> str:
        """Start a worker node (again); its node id once the state API shows it ALIVE."""
        self.worker_starts += 1
        known = set(self.node_ids)
        # One log monitor per host: the head's already follows the shared session's log directory.
        cmd = [
            str(BIN / "ray"),
            "start",
            f"--address={self.address}",
            f"--resources={json.dumps({WORKER_RESOURCE: 1})}",
            "--include-log-monitor=False",
            *self._node_args(),
        ]
        run(cmd, self.env, self.logs / f"ray-start-worker-{self.worker_starts}.log", timeout_s=180)

        def new_worker() -> list[str]:
            alive_nodes = [n for n in self.nodes() if n.get("state") == "ALIVE"]
            return [nid for nid, kind in node_kinds(alive_nodes).items() if kind == "worker" and nid not in known]

        node_id = str(wait_until("the worker node", new_worker, 60.0)[0])
        self.node_ids.add(node_id)
        self.remember()
        return node_id

    def nodes(self) -> list[dict[str, Any]]:
        from ray.util.state import list_nodes

        return [as_dict(n) for n in list_nodes(address=self.api, limit=1000, raise_on_missing_output=False)]

    def actors(self) -> list[dict[str, Any]]:
        from ray.util.state import list_actors

        found = list_actors(
            address=self.api, filters=[("ray_namespace", "=", "serve")], limit=10_000, raise_on_missing_output=False
        )
        return [as_dict(a) for a in found]

    def serve_details(self) -> dict[str, Any]:
        got: dict[str, Any] = http_json(f"{self.api}/api/serve/applications/", 10.0)
        return got

    def running(self) -> dict[str, dict[str, int]]:
        return running_by_node(self.serve_details())

    def placement(self) -> list[dict[str, Any]]:
        return placement_rows(self.actors(), self.serve_details(), node_kinds(self.nodes()))

    def pids(self) -> tuple[dict[int, Proc], set[int]]:
        procs = read_procs()
        mine = cluster_pids(
            procs,
            substrings=[self.temp_dir, *self.node_ids],
            arg_suffixes=[self.address],
            exclude=ancestors(procs, os.getpid()),
        )
        return procs, mine

    def remember(self) -> None:
        """Note the cluster's processes by pid and start time, so one cut off from the cluster (a worker of the
        killed raylet) is still stopped at the end."""
        procs, mine = self.pids()
        self.seen.update({pid: procs[pid].start for pid in mine})

    def kill_raylet(self, node_id: str) -> tuple[int, float]:
        """SIGKILL to the raylet of ``node_id``; its pid and the time of the kill (unix seconds)."""
        self.remember()
        pid = find_raylet(read_procs(), node_id)
        if pid is None:
            raise RuntimeError(f"no raylet with --node_id={node_id} in /proc")
        t = time.time()
        os.kill(pid, signal.SIGKILL)
        return pid, t

    def stop(self, grace_s: float = 15.0) -> list[int]:
        """SIGTERM to each process of the cluster (found now, or seen before and still the same process), SIGKILL
        to those left after ``grace_s``; returns the pids that needed SIGKILL."""
        procs, mine = self.pids()
        targets = {pid: procs[pid].start for pid in mine}
        targets.update({pid: s for pid, s in self.seen.items() if pid in procs and procs[pid].start == s})
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            left = [pid for pid, s in targets.items() if alive(pid, s)]
            if not left:
                return []
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(alive(pid, targets[pid]) for pid in left):
                time.sleep(0.2)
            if sig == signal.SIGKILL:
                return left
        return []

    def keep_logs(self, dest: Path) -> None:
        src = Path(self.temp_dir) / "session_latest" / "logs"
        if src.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore_dangling_symlinks=True)


def stored_ids(backend: str, target: str) -> tuple[set[str], set[str]]:
    """``(feedback event ids, search request ids)`` in the event log: a ``postgres`` DSN or a ``sqlite`` file."""
    if backend == "postgres":
        import psycopg

        with psycopg.connect(target, autocommit=True) as conn:
            events = {str(r[0]) for r in conn.execute("SELECT event_id FROM feedback").fetchall()}
            searches = {str(r[0]) for r in conn.execute("SELECT request_id FROM searches").fetchall()}
        return events, searches
    db = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=30.0)
    try:
        events = {str(r[0]) for r in db.execute("SELECT event_id FROM feedback")}
        searches = {str(r[0]) for r in db.execute("SELECT request_id FROM searches")}
    finally:
        db.close()
    return events, searches


# == load and measurements ======================================================================================
def status_name(exc: BaseException) -> str:
    code = exc.code() if callable(getattr(exc, "code", None)) else None  # type: ignore[attr-defined]
    return str(code.name) if code is not None and hasattr(code, "name") else type(exc).__name__


def wait_whole(client: Any, timeout_s: float, streak: int = 5) -> float:
    """Seconds until ``streak`` searches in a row, forced to every strategy, are whole (every strategy OK, no
    index behind); raises after ``timeout_s``."""
    t0 = time.monotonic()
    run_ = 0
    while time.monotonic() - t0 < timeout_s:
        try:
            whole = not client.search("radiohead", k=5, strategies=ALL_STRATEGIES).degraded
        except Exception:  # noqa: BLE001 - not yet
            whole = False
        run_ = run_ + 1 if whole else 0
        if run_ >= streak:
            return time.monotonic() - t0
        time.sleep(0.3)
    raise TimeoutError(f"answers not whole (every strategy OK, no index behind) after {timeout_s:g} s")


def run_catalog(r: Run, cfg: AppConfig) -> CatalogBase:
    """The catalog the run's ``ltrr ingest`` wrote and its replicas read: PostgreSQL's at the run's DSN (which
    they get in ``LTRR_EVENTS_DSN``, this process's environment does not), else
    :func:`~ltrr.catalog.store.open_catalog`'s (``--sqlite``: ``catalog_path``)."""
    from ltrr.catalog.store import open_catalog

    if r.dsn:
        from ltrr.catalog.store_pg import PgCatalogStore

        return PgCatalogStore(r.dsn)
    return open_catalog(cfg)


def closed_loop(target: str, queries: Sequence[str], callers: int, seconds: float, seed: int) -> dict[str, Any]:
    """``callers`` threads searching back to back (all four strategies forced) for ``seconds``: answers per second
    of wall time, degraded answers, failures by status, latency of the answers (ms)."""
    from ltrr.client import LtrrClient
    from ltrr.loadtest import latency_summary

    lock = threading.Lock()
    codes: Counter[str] = Counter()
    lat: list[float] = []
    degraded = 0
    end = time.monotonic() + seconds

    def caller(i: int) -> None:
        nonlocal degraded
        rng = random.Random(seed + i)
        with LtrrClient(target, timeout=10.0, attempts=1) as c:
            while time.monotonic() < end:
                s0 = time.perf_counter()
                try:
                    deg, code = c.search(rng.choice(queries), k=10, strategies=ALL_STRATEGIES).degraded, "OK"
                except Exception as exc:  # noqa: BLE001 - counted by status
                    deg, code = False, status_name(exc)
                ms = (time.perf_counter() - s0) * 1000.0
                with lock:
                    codes[code] += 1
                    degraded += bool(deg)
                    if code == "OK":
                        lat.append(ms)

    t0 = time.monotonic()
    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=seconds + 30.0)
    wall = time.monotonic() - t0
    return {
        "callers": callers,
        "seconds": round(wall, 1),
        "answers": codes["OK"],
        "req_per_s": round(codes["OK"] / wall, 2) if wall > 0 else None,
        "degraded": degraded,
        "failed": sum(n for k, n in codes.items() if k != "OK"),
        "by_status": dict(sorted(codes.items())),
        "latency_ms": latency_summary(lat),
    }


class Sampler(PeriodicSampler):
    """Every ``every_s``: the nodes' states (state API) and Serve's RUNNING replicas per node, as ``{"t", "nodes",
    "running"}`` with ``t`` in seconds since ``t0`` (what :func:`ltrr.multinode.first_after` reads)."""

    def __init__(self, cluster: Cluster, t0: float, every_s: float = 1.0) -> None:
        super().__init__(t0, every_s, clock=time.time)
        self.cluster = cluster
        self.kinds: dict[str, str] = {}

    def sample(self) -> dict[str, Any]:
        nodes = self.cluster.nodes()
        running = self.cluster.running()
        self.kinds.update(node_kinds(nodes))
        return {"nodes": {str(n["node_id"]): n.get("state") for n in nodes}, "running": running}


def plot(
    path: Path, calls: Sequence[Any], sampler: Sampler, deployments: Sequence[str], marks: Mapping[str, float | None]
) -> None:
    """Replicas RUNNING per node kind and deployment over time (Serve's view); searches per second by outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    ts = [s["t"] for s in sampler.samples]
    for dep in deployments:
        for kind, ls in (("head", "-"), ("worker", "--")):
            ys = [by_kind(s["running"], sampler.kinds).get(dep, {}).get(kind, 0) for s in sampler.samples]
            top.step(ts, ys, where="post", ls=ls, label=f"{dep} on {kind}")
    top.set_ylabel("replicas RUNNING")
    top.set_title("Serve replicas per node (sampled once a second)")
    top.legend(loc="upper right", fontsize=8)
    searches = [c for c in calls if c.rpc == "Search"]
    if searches:
        end = int(max(c.t for c in searches)) + 1
        ok, deg, bad = [0] * end, [0] * end, [0] * end
        for c in searches:
            (bad if c.code != "OK" else deg if c.degraded else ok)[int(c.t)] += 1
        bottom.stackplot(
            range(end), ok, deg, bad, labels=["whole", "degraded", "failed"], colors=["#4c9a2a", "#f2b134", "#d1495b"]
        )
        bottom.legend(loc="lower left", fontsize=8)
    bottom.set_ylabel("searches per second")
    bottom.set_xlabel("seconds since the load started")
    for name, t in marks.items():
        if t is not None:
            for ax in (top, bottom):
                ax.axvline(t, color="k", lw=0.7, ls=":")
            top.text(t, top.get_ylim()[1] * 0.95, name, rotation=90, fontsize=7, va="top", ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# == the run ====================================================================================================
@dataclasses.dataclass
class Run:
    """One run: its options, the report it fills, and what it started (for :meth:`cleanup`)."""

    args: argparse.Namespace
    var: Path
    report: dict[str, Any]
    env: dict[str, str]
    backends: list[str] = dataclasses.field(default_factory=list)
    pg: Any = None
    dsn: str = ""
    cluster: Cluster | None = None
    load: Any = None
    stop_load: Any = None
    t_stage: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def logs(self) -> Path:
        return self.var / "logs"

    def stage(self, name: str) -> None:
        """Record the seconds since the previous stage ended as ``name``'s."""
        now = time.perf_counter()
        self.report["timings_s"][name] = round(now - self.t_stage, 1)
        self.t_stage = now

    def deploy(self, path: Path) -> None:
        assert self.cluster is not None
        run(
            [str(BIN / "serve"), "deploy", "-a", self.cluster.api, str(path)],
            self.env,
            self.logs / "serve-deploy.log",
            timeout_s=180,
        )

    def cleanup(self) -> None:
        if self.load is not None and self.load.is_alive():
            self.stop_load.set()
            self.load.join(timeout=30)
            if self.load.is_alive():
                self.load.kill()
        if self.cluster is not None:
            log("stopping the run's Ray cluster (its processes only)")
            killed = self.cluster.stop()
            if killed:
                log(f"  {len(killed)} processes needed SIGKILL")
            try:
                self.cluster.keep_logs(self.var / "ray-logs")
            except OSError as exc:
                log(f"  Ray's logs not kept: {exc}")
            shutil.rmtree(self.cluster.temp_dir, ignore_errors=True)
        if self.pg is not None:
            log("stopping PostgreSQL")
            self.pg.close()
        for module in reversed(self.backends):
            log(f"stopping {module} (started by this run)")
            subprocess.run([PY, "-m", module, "stop"], cwd=ROOT, env=self.env, check=False, capture_output=True)
        self.stage("cleanup")


def start_servers(r: Run) -> None:
    """The API token, Meilisearch and Milvus (as up.sh starts them), and PostgreSQL unless ``--sqlite``."""
    run([PY, "-m", "ltrr.auth", "ensure", "var/secrets/ltrr-token"], r.env)
    given = {"ltrr.backends.meili_server": r.args.meili_url, "ltrr.backends.milvus_server": r.args.milvus_uri}
    for module in ("ltrr.backends.meili_server", "ltrr.backends.milvus_server"):
        if given[module]:
            log(f"{module}: not started; the run uses {given[module]}")
        elif backend_running(module, r.env):
            log(f"{module}: running already; used, and left running")
        else:
            run([PY, "-m", module, "start"], r.env, r.logs / "backends.log", timeout_s=300)
            r.backends.append(module)
    r.stage("Meilisearch and Milvus")
    if r.args.sqlite:
        r.report["event_log"] = "sqlite"
        return
    from ltrr.errors import ConfigError
    from ltrr.pgserver import PgServer

    try:
        r.pg = PgServer().start()
    except ConfigError as exc:
        raise SystemExit(f"{exc} (or pass --sqlite for the SQLite event log)") from None
    r.dsn = r.pg.create_database("ltrr_multinode")
    r.env["LTRR_EVENTS_DSN"] = r.dsn  # read by the replicas of both nodes (ltrr.event_store.events_dsn)
    r.report["event_log"] = "postgres"
    log(f"PostgreSQL on {r.pg.socket_dir} (Unix socket only); LTRR_EVENTS_DSN goes to both Ray nodes")
    r.stage("PostgreSQL")


def prepare(r: Run) -> tuple[dict[str, Any], Path, Path]:
    """The derived configs (2 replicas, then 1) written under the var dir, fresh event log and policy, and the
    catalog slice and its indexes (``ltrr ingest``, incremental)."""
    import yaml

    from ltrr.config import AppConfig

    grpc_port, http_port = free_ports(2)
    r.report["ports"] = {"grpc": grpc_port, "http": http_port}
    derived = derive_config(
        yaml.safe_load((ROOT / r.args.config).read_text()),
        var_dir=r.args.var_dir,
        grpc_port=grpc_port,
        http_port=http_port,
        meili=(r.args.meili_url, r.args.meili_key) if r.args.meili_url else None,
        milvus_uri=r.args.milvus_uri,
    )
    app_args = next(a for a in derived["applications"] if a.get("name") == "ltrr")["args"]
    spread = spread_deployments(app_args)
    r.report["config"]["spread_deployments"] = spread
    header = f"# Written by scripts/multinode.py from {r.args.config} (ltrr/multinode.py, derive_config).\n"
    two, one = r.var / "serve_config.yaml", r.var / "serve_config.1-replica.yaml"
    two.write_text(header + yaml.safe_dump(derived, sort_keys=False))
    one.write_text(header + yaml.safe_dump(scale_config(derived, 1, spread), sort_keys=False))
    shutil.copy(two, r.args.out / "serve_config.yaml")
    cfg = AppConfig.model_validate(app_args)
    for suffix in ("", "-wal", "-shm"):  # a fresh event log (PostgreSQL's is a fresh server)
        Path(f"{cfg.events_path}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(cfg.policy.checkpoint_dir, ignore_errors=True)  # a fresh policy: its prior
    cmd = [str(BIN / "ltrr"), "ingest", "--config", str(two)]
    if r.args.max_artists:
        cmd += ["--max-artists", str(r.args.max_artists)]
    log(f"catalog slice and its indexes in {r.args.var_dir} (log: {r.logs / 'ingest.log'})")
    run(cmd, r.env, r.logs / "ingest.log", timeout_s=1800)
    r.stage("catalog slice, indexes, cold-start ranker")
    return app_args, two, one


def experiment(r: Run) -> int:
    from chaos import catalog_queries, load_main

    from ltrr.client import LtrrClient
    from ltrr.config import AppConfig
    from ltrr.reliability import Fault, Journal, read_journal

    args, report = r.args, r.report
    start_servers(r)
    app_args, two, one = prepare(r)
    cfg = AppConfig.model_validate(app_args)
    spread = report["config"]["spread_deployments"]
    backend, store = report["event_log"], r.dsn or cfg.events_path

    # -- two Ray nodes, the app spread over them ---------------------------------------------------------------
    c = r.cluster = Cluster(r.env, r.logs)
    log(f"Ray head: GCS {c.address}, dashboard {c.api}, temp dir {c.temp_dir}")
    head = c.start_head()
    r.stage("Ray head node")
    worker = c.start_worker()
    r.stage("Ray worker node")
    kinds = node_kinds(c.nodes())
    report["nodes_before"] = [
        {
            "node_id": n["node_id"],
            "kind": kinds[str(n["node_id"])],
            "state": n.get("state"),
            "resources": n.get("resources_total"),
        }
        for n in c.nodes()
    ]
    log("nodes: " + ", ".join(f"{n['kind']} {str(n['node_id'])[:12]} {n['state']}" for n in report["nodes_before"]))
    r.deploy(two)
    target = f"127.0.0.1:{report['ports']['grpc']}"
    client = LtrrClient(target, timeout=10.0)
    wait_until("gRPC health SERVING", lambda: client.health() == "SERVING", args.deploy_timeout_s, 2.0)
    try:
        wait_until(
            "replicas RUNNING on both nodes",
            lambda: is_spread(c.running(), spread, head, worker),
            args.deploy_timeout_s,
            2.0,
        )
    except TimeoutError as exc:
        report["notes"].append(str(exc))
    wait_whole(client, args.deploy_timeout_s)
    probe = client.search("multinode probe", k=1, strategies=["lexical"]).request_id
    wait_until(f"the probe search in the {backend} event log", lambda: probe in stored_ids(backend, store)[1], 30.0)
    r.stage("serve deploy, until answers are whole")
    report["placement_before"] = c.placement()
    report["spread_before"] = is_spread(c.running(), spread, head, worker)
    print(md_placement(report["placement_before"]), flush=True)
    catalog = run_catalog(r, cfg)
    try:
        queries = catalog_queries(catalog)
    finally:
        catalog.close()
    log(f"throughput at 2 replicas: {args.callers} callers for {args.bench_s:g} s")
    report["throughput"] = {"2": closed_loop(target, queries, args.callers, args.bench_s, args.seed)}
    log(f"  {report['throughput']['2']['req_per_s']} answers/s")
    r.stage("throughput at 2 replicas")

    # -- the worker lost under load ----------------------------------------------------------------------------
    journal, faults_path = args.out / "journal.jsonl", args.out / "faults.jsonl"
    journal.unlink(missing_ok=True)
    faults_path.unlink(missing_ok=True)
    t0 = time.time()
    sampler = Sampler(c, t0)
    sampler.start()
    ctx = mp.get_context("spawn")
    r.stop_load = ctx.Event()
    load_args = (target, str(journal), args.qps, args.feedback, queries, t0, r.stop_load, args.seed)
    r.load = ctx.Process(target=load_main, args=load_args, daemon=True)
    r.load.start()
    log(
        f"load: {args.qps:g} searches/s, {args.feedback:.0%} clicked, for {args.load_s:g} s; "
        f"the worker's raylet is killed at {args.kill_at_s:g} s"
    )
    time.sleep(max(0.0, t0 + args.kill_at_s - time.time()))
    pid, t_kill = c.kill_raylet(worker)
    kill_t = round(t_kill - t0, 2)
    faults = Journal(faults_path)
    faults.fault(Fault("worker-lost", t_kill - t0, time.time() - t0, f"SIGKILL raylet pid {pid}"))
    faults.close()
    log(f"SIGKILL to the raylet (pid {pid}) of node {worker[:12]} at {kill_t} s")
    time.sleep(max(0.0, t0 + args.load_s - time.time()))
    r.stop_load.set()
    r.load.join(timeout=60)
    log("load stopped")
    try:  # before the restart, so the figures are of the loss alone
        wait_until(
            "Ray marking the lost node DEAD",
            lambda: any(n["node_id"] == worker and n.get("state") == "DEAD" for n in c.nodes()),
            90.0,
        )
    except TimeoutError as exc:
        report["notes"].append(str(exc))
    r.stage("load, the worker lost")
    calls, fault_list = read_journal([journal, faults_path])
    events, searches = stored_ids(backend, store)
    figures = loss_figures(calls, fault_list, events, searches)
    report["feedback_acknowledged"] = figures["feedback_acknowledged"]
    report["acknowledged_lost"] = figures["acknowledged_lost"]

    # -- the worker restarted ----------------------------------------------------------------------------------
    log("restarting the worker node")
    t_restart = time.time()
    new_worker = c.start_worker()
    spread_s: float | None = None
    try:
        wait_until(
            "replicas on both nodes again",
            lambda: is_spread(c.running(), spread, head, new_worker),
            args.spread_timeout_s,
        )
        spread_s = round(time.time() - t_restart, 1)
    except TimeoutError as exc:
        report["notes"].append(str(exc))
    sampler.halt()
    after = c.placement()
    print(md_placement(after), flush=True)
    r.stage("worker restarted, replicas spread again")

    def dropped(s: Mapping[str, Any]) -> bool:  # Serve routes to no replica of the lost node
        return all(s["running"].get(d, {}).get(worker, 0) == 0 for d in spread)

    def back(s: Mapping[str, Any]) -> bool:  # every replica RUNNING again, none on the lost node
        return all(sum(n for node, n in s["running"].get(d, {}).items() if node != worker) >= 2 for d in spread)

    report["worker_loss"] = {
        "node_id": worker,
        "raylet_pid": pid,
        "kill_t_s": kill_t,
        "window_s": round(args.load_s - kill_t, 2),
        **{k: v for k, v in figures.items() if k != "whole_again_s"},
        "whole_again_s": figures["whole_again_s"][0],
        "whole_streak": WHOLE_STREAK,
        "node_dead_s": first_after(sampler.samples, kill_t, lambda s: s["nodes"].get(worker) == "DEAD"),
        "serve_dropped_s": first_after(sampler.samples, kill_t, dropped),
        "replicas_back_s": first_after(sampler.samples, kill_t, back),
        "sampler_errors": sampler.errors,
    }
    report["after_restart"] = {
        "node_id": new_worker,
        "restart_t_s": round(t_restart - t0, 2),
        "spread": spread_s is not None,
        "seconds": spread_s,
        "placement": after,
    }
    (args.out / "samples.json").write_text(json.dumps({"kinds": sampler.kinds, "samples": sampler.samples}))
    wl = report["worker_loss"]
    log(
        f"after the kill: failed {wl['windows'][-1]['failed'] or 0}, degraded {wl['windows'][-1]['degraded']}, "
        f"acknowledged feedback lost {wl['acknowledged_lost']} of {wl['feedback_acknowledged']}; whole again after "
        f"{wl['whole_again_s']} s, node DEAD after {wl['node_dead_s']} s"
    )

    # -- throughput at 1 replica -------------------------------------------------------------------------------
    r.deploy(one)

    def one_each() -> bool:
        d = c.serve_details()
        states = [(x["deployment"], x["state"]) for x in serve_replicas(d)]
        return all(
            target_replicas(d).get(dep) == 1 and [s for n, s in states if n == dep] == ["RUNNING"] for dep in spread
        )

    wait_until("one RUNNING replica per spread deployment", one_each, 120.0)
    wait_whole(client, 60.0)
    report["placement_1_replica"] = c.placement()
    log(f"throughput at 1 replica: {args.callers} callers for {args.bench_s:g} s")
    report["throughput"]["1"] = closed_loop(target, queries, args.callers, args.bench_s, args.seed)
    log(f"  {report['throughput']['1']['req_per_s']} answers/s")
    client.close()
    r.stage("throughput at 1 replica")

    report["plot"] = "multinode.png"
    marks = {
        "kill": kill_t,
        "worker restart": report["after_restart"]["restart_t_s"],
        "spread again": None if spread_s is None else round(t_restart - t0 + spread_s, 2),
    }
    plot(args.out / "multinode.png", calls, sampler, spread, marks)
    (args.out / "report.md").write_text(render_md(report))
    log(f"report: {args.out / 'report.md'}")
    return 0 if report["acknowledged_lost"] == 0 and report["spread_before"] and spread_s is not None else 1


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="deployments/serve_config.yaml", help="the app's Serve config")
    ap.add_argument("--var-dir", default="var/multinode", help="the run's state, relative to the repo")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "multinode")
    ap.add_argument("--max-artists", type=int, default=1500, help="catalog slice (0: the whole catalog)")
    ap.add_argument("--qps", type=float, default=15.0, help="searches per second of the load (open loop)")
    ap.add_argument("--feedback", type=float, default=0.3, help="share of the searches followed by a click")
    ap.add_argument("--load-s", type=float, default=60.0, help="seconds of load around the kill")
    ap.add_argument("--kill-at-s", type=float, default=15.0, help="seconds into the load when the raylet is killed")
    ap.add_argument("--bench-s", type=float, default=10.0, help="seconds of each closed-loop throughput run")
    ap.add_argument("--callers", type=int, default=8, help="callers of the closed-loop throughput runs")
    ap.add_argument("--deploy-timeout-s", type=float, default=300.0, help="bound on the app answering whole")
    ap.add_argument("--spread-timeout-s", type=float, default=180.0, help="bound on the replicas spreading again")
    ap.add_argument("--milvus-uri", help="a running Milvus to use instead of starting the local one")
    ap.add_argument("--meili-url", help="a running Meilisearch to use instead of starting the local one")
    ap.add_argument("--meili-key", default="", help="the master key of --meili-url")
    ap.add_argument("--sqlite", action="store_true", help="the SQLite event log instead of PostgreSQL")
    ap.add_argument("--short", action="store_true", help="--load-s 40 --kill-at-s 10 --bench-s 6 --qps 10 (the test)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.short:
        args.load_s, args.kill_at_s, args.bench_s, args.qps = 40.0, 10.0, 6.0, 10.0
    if not 0 < args.kill_at_s < args.load_s:
        ap.error(f"--kill-at-s must be in (0, --load-s={args.load_s:g}), got {args.kill_at_s:g}")
    if args.max_artists < 0:
        ap.error(f"--max-artists must be >= 0, got {args.max_artists}")
    args.out = args.out.resolve()
    return args


def main() -> int:
    args = parse_args()

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)  # so the finally below stops what was started
    for k in ENV_DROPPED:
        os.environ.pop(k, None)
    os.environ.update({k: os.environ.get(k, v) for k, v in ENV_DEFAULTS.items()}, LTRR_HOME=str(ROOT))
    os.chdir(ROOT)
    var = ROOT / args.var_dir
    var.mkdir(parents=True, exist_ok=True)
    (var / "logs").mkdir(exist_ok=True)
    lock = (var / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another scripts/multinode.py run holds {var / '.lock'}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    keys = ("qps", "feedback", "load_s", "kill_at_s", "bench_s", "callers", "max_artists", "spread_timeout_s", "short")
    report: dict[str, Any] = report_head(sys.argv, {k: getattr(args, k) for k in keys})
    others = {p.pid for p in read_procs().values() if p.argv and os.path.basename(p.argv[0]) == "raylet"}
    if others:
        report["notes"].append(f"{len(others)} other Ray node(s) ran on this machine during the run")
    r = Run(args, var, report, dict(os.environ))
    try:
        return experiment(r)
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {report['error']}")
        raise
    finally:
        r.cleanup()
        (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        lock.close()


if __name__ == "__main__":
    raise SystemExit(main())
