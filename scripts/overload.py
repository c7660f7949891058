#!/usr/bin/env python
"""`make overload` (issue 11, "Under fire"): many callers searching back to back against a running app.

Each of ``--callers`` threads has its own channel (an :class:`~ltrr.client.LtrrClient` with the bearer token,
``attempts=1``: no retries, so every status is the server's own) and sends searches one after another for
``--seconds``, each with a ``--deadline``. The report counts the answers by status, gives latency percentiles of
the OK answers and of the rejections apart, the share answered within deadline + ``--grace`` (every call must
be: a longer one is a *hang*), the request rate, and the RSS of the Serve proxy (``ray::ProxyActor``) and the
ingress replicas (``ray::ServeReplica:ltrr:ingress``) every ``--every`` seconds, from ``/proc``.

The load generator runs on the same machine as the app and takes CPU from it: the report gives its own CPU
time (all its threads) and the whole machine's busy share over the run.

Writes overload.json, overload.md and overload.png (latency CDF by status, RSS over time) under ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LTRR_HOME", str(ROOT))

import grpc  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ltrr import loadtest as lt  # noqa: E402
from ltrr.client import LtrrClient  # noqa: E402

#: Statuses that mean the run cannot measure anything: stop before starting the load.
FATAL = {"UNAUTHENTICATED", "PERMISSION_DENIED", "UNAVAILABLE", "UNIMPLEMENTED"}


def status_of(exc: BaseException) -> str:
    """The status name of a failed call: the gRPC code, or ``CLIENT_<exception type>`` for a local error."""
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        return str(exc.code().name)
    return f"CLIENT_{type(exc).__name__}"


def timed_call(
    call: Callable[[], Any], t0: float, *, kind: str = "search", clock: Callable[[], float] = time.perf_counter
) -> tuple[Any, lt.CallRecord]:
    """Run ``call()``: its result (None when it failed) and its record: ended at ``clock() - t0`` s, its
    latency, status ``OK`` or :func:`status_of` the failure (any exception is a status, never raised)."""
    result = None
    start = clock()
    try:
        result = call()
        status = "OK"
    except Exception as exc:  # noqa: BLE001 - every failure is counted by its name
        status = status_of(exc)
    end = clock()
    return result, lt.CallRecord(end - t0, (end - start) * 1000.0, status, kind)


def load_queries(args: argparse.Namespace) -> list[str]:
    if args.queries:
        qs = [q.strip() for q in Path(args.queries).read_text(encoding="utf-8").splitlines() if q.strip()]
        if qs:
            return qs
    titles, artists = lt.catalog_names(args.catalog) if args.catalog else ([], [])
    return lt.make_queries(titles, artists, 2000, seed=args.seed)


def preflight(args: argparse.Namespace, query: str) -> str:
    with LtrrClient(args.target, timeout=args.deadline, attempts=1) as c:
        return timed_call(lambda: c.search(query, k=args.k), 0.0)[1].status


def common_args(ap: argparse.ArgumentParser, name: str) -> None:
    """The options of every load script (``name``: overload, soak): the target, each call's deadline and k,
    the /proc to sample, where the queries come from, the seed, the preflight switch and ``--out``
    (default bench-out/<name>)."""
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--deadline", type=float, default=10.0, help="each attempt's deadline (s)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--proc", default="/proc")
    ap.add_argument("--queries", default="", help="a file of queries, one a line (default: from --catalog)")
    ap.add_argument("--catalog", default=str(ROOT / "var" / "catalog.sqlite"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-preflight", action="store_true", help="skip the single search that checks the target")
    ap.add_argument("--out", default=str(ROOT / "bench-out" / name))


def start(args: argparse.Namespace, name: str) -> tuple[Path, list[str], str] | None:
    """Make ``--out``, load the queries and, unless ``--no-preflight``, send one search: ``(out folder,
    queries, start time)``, or None (with the reason on stderr) when that search fails with a
    :data:`FATAL` status."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    queries = load_queries(args)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if not args.no_preflight:
        status = preflight(args, queries[0])
        if status in FATAL:
            print(f"{name}: a first search to {args.target} failed with {status}; is the app up and the token "
                  "set ($LTRR_TOKEN or var/secrets/ltrr-token)?", file=sys.stderr)
            return None
    return out, queries, started


def machine_cpu(proc: str) -> tuple[int, int]:
    """The machine's (busy, total) jiffies so far; (0, 0) without a readable /proc/stat."""
    try:
        return lt.parse_cpu_times(Path(proc, "stat").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0, 0


class Sampler(threading.Thread):
    """Every ``every`` seconds: the RSS of the processes whose label contains one of ``contains``, the load
    generator's CPU seconds (all its threads) and the machine's busy/total jiffies."""

    def __init__(self, t0: float, every: float, proc: str, contains: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.t0, self.every, self.proc, self.contains = t0, every, proc, contains
        self.rss = lt.RssSeries()
        self.cpu: list[tuple[float, float, int, int]] = []  # (t, own cpu s, machine busy, machine total)
        self.stop_evt = threading.Event()

    def sample(self) -> None:
        t = time.perf_counter() - self.t0
        scan = lt.scan_processes(self.proc)
        self.rss.add(t, {pid: p for pid, p in scan.items() if any(c in p.label for c in self.contains)})
        own = os.times()
        busy, total = machine_cpu(self.proc)
        self.cpu.append((t, own.user + own.system, busy, total))

    def run(self) -> None:
        while not self.stop_evt.wait(self.every):
            self.sample()


def caller(
    idx: int,
    args: argparse.Namespace,
    queries: list[str],
    ready: threading.Barrier,
    go: threading.Event,
    clock: dict[str, float],
    out: list[lt.CallRecord],
    counts: Counter[str],
    lock: threading.Lock,
) -> None:
    rng = random.Random(args.seed * 100_003 + idx)
    with LtrrClient(args.target, timeout=args.deadline, attempts=1) as c:
        try:
            grpc.channel_ready_future(c.channel).result(timeout=args.deadline)
        except grpc.FutureTimeoutError:
            pass  # the calls will say why
        ready.wait()
        go.wait()
        t0, end = clock["t0"], clock["end"]
        while time.perf_counter() < end:
            q = queries[rng.randrange(len(queries))]
            _, record = timed_call(lambda: c.search(q, k=args.k), t0)  # noqa: B023 - called before q changes
            out.append(record)
            with lock:
                counts[record.status] += 1


def plot(path: Path, records: list[lt.CallRecord], series: dict[str, list[tuple[float, int]]], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    by: dict[str, list[float]] = {}
    for r in records:
        by.setdefault(r.status, []).append(r.latency_ms)
    for status, xs in sorted(by.items(), key=lambda kv: -len(kv[1])):
        xs = sorted(xs)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax1.step(xs, ys, where="post", label=f"{status} (n={len(xs)})")
    ax1.axvline(args.deadline * 1000, color="grey", ls="--", lw=1, label="deadline")
    ax1.set_xscale("log")
    ax1.set_xlabel("latency (ms, log)")
    ax1.set_ylabel("share of answers with this status")
    ax1.set_title(f"Latency CDF by status, {args.callers} callers")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    for key, pts in series.items():
        ax2.plot([t for t, _ in pts], [v / lt.MIB for _, v in pts], marker=".", label=key)
    ax2.axvspan(0, args.seconds, color="orange", alpha=0.08, label="load")
    ax2.set_xlabel("time since the load started (s)")
    ax2.set_ylabel("RSS (MiB)")
    ax2.set_title("RSS of the proxy and the ingress replicas")
    ax2.grid(alpha=0.3)
    if series:
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no matching process", ha="center", transform=ax2.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap, "overload")
    ap.add_argument("--callers", type=int, default=200, help="concurrent callers, one channel each")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long new calls are started")
    ap.add_argument("--grace", type=float, default=1.0, help="a call longer than deadline + grace is a hang")
    ap.add_argument("--every", type=float, default=2.0, help="RSS sampling interval (s)")
    ap.add_argument("--settle", type=float, default=4.0, help="keep sampling RSS this long after the last answer")
    ap.add_argument("--match", action="append", default=None,
                    help="process label substrings to sample (repeatable); default ProxyActor and the ingress")
    args = ap.parse_args(argv)
    contains = tuple(args.match or ("ray::ProxyActor", "ray::ServeReplica:ltrr:ingress"))
    begun = start(args, "overload")
    if begun is None:
        return 2
    out, queries, started = begun

    records_by_caller: list[list[lt.CallRecord]] = [[] for _ in range(args.callers)]
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    ready = threading.Barrier(args.callers + 1)
    go = threading.Event()
    clock: dict[str, float] = {}
    threads = [
        threading.Thread(
            target=caller, args=(i, args, queries, ready, go, clock, records_by_caller[i], counts, lock), daemon=True
        )
        for i in range(args.callers)
    ]
    for th in threads:
        th.start()
    ready.wait(timeout=max(60.0, 2 * args.deadline))  # every caller's channel is up (or timed out)
    sampler = Sampler(time.perf_counter(), args.every, args.proc, contains)
    cpu0, machine0 = os.times(), machine_cpu(args.proc)
    t0 = sampler.t0 = time.perf_counter()
    clock.update(t0=t0, end=t0 + args.seconds)
    go.set()
    sampler.sample()
    sampler.start()

    bar = tqdm(total=round(args.seconds), unit="s", desc=f"overload {args.callers} callers", file=sys.stderr)
    while (now := time.perf_counter()) < t0 + args.seconds:
        time.sleep(min(1.0, t0 + args.seconds - now))
        bar.n = min(round(args.seconds), round(time.perf_counter() - t0))
        with lock:
            c = dict(counts)
        n = sum(c.values())
        bar.set_postfix(
            rps=f"{n / max(1e-9, time.perf_counter() - t0):.0f}",
            ok=c.get("OK", 0),
            rex=c.get("RESOURCE_EXHAUSTED", 0),
            dex=c.get("DEADLINE_EXCEEDED", 0),
            other=n - c.get("OK", 0) - c.get("RESOURCE_EXHAUSTED", 0) - c.get("DEADLINE_EXCEEDED", 0),
        )
    bar.close()
    print(f"overload: waiting for the calls in flight (at most {args.deadline:.0f} s)", file=sys.stderr)
    for th in threads:
        th.join(timeout=args.deadline + args.grace + 30)
    still = sum(th.is_alive() for th in threads)
    drained = time.perf_counter() - t0
    cpu_end, machine_end = os.times(), machine_cpu(args.proc)
    time.sleep(args.settle)
    sampler.stop_evt.set()
    sampler.join()
    sampler.sample()

    records = sorted((r for rs in records_by_caller for r in rs), key=lambda r: r.t_end)
    wall = max((r.t_end for r in records), default=drained)
    results = lt.overload_summary(
        records, deadline_s=args.deadline, grace_s=args.grace, wall_s=wall, unfinished=still
    )
    own_cpu = (cpu_end.user + cpu_end.system) - (cpu0.user + cpu0.system)
    busy, total = machine_end[0] - machine0[0], machine_end[1] - machine0[1]
    ncpu = os.cpu_count() or 1
    generator = {
        "cpu_s": round(own_cpu, 2),
        "wall_s": round(drained, 2),
        "cores": round(own_cpu / drained, 3) if drained > 0 else None,
        "cpu_count": ncpu,
        "share_of_machine": round(own_cpu / drained / ncpu, 4) if drained > 0 else None,
        "machine_busy_share": round(busy / total, 4) if total > 0 else None,
    }
    series = sampler.rss.series()
    report: dict[str, Any] = {
        "kind": "overload",
        "started": started,
        "config": {
            "target": args.target, "callers": args.callers, "seconds": args.seconds, "deadline_s": args.deadline,
            "grace_s": args.grace, "k": args.k, "attempts": 1, "sample_every_s": args.every,
            "match": list(contains), "queries": len(queries),
        },
        "results": results,
        "generator": generator,
        "rss": lt.rss_summary(series),
        "rss_series_mib": {k: [[round(t, 2), round(v / lt.MIB, 2)] for t, v in pts] for k, pts in series.items()},
        "cpu_series": [
            {"t_s": round(b[0], 2), "generator_cores": round((b[1] - a[1]) / (b[0] - a[0]), 3),
             "machine_busy_share": round((b[2] - a[2]) / (b[3] - a[3]), 4) if b[3] > a[3] else None}
            for a, b in zip(sampler.cpu, sampler.cpu[1:], strict=False) if b[0] > a[0]
        ],
        "plot": "overload.png",
    }
    plot(out / "overload.png", records, series, args)
    (out / "overload.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "overload.md").write_text(lt.render_overload_md(report), encoding="utf-8")
    r = results
    print(
        f"overload: {r['requests']} requests ({r['requests_per_s']}/s) {r['by_status']}; OK p50/p99 "
        f"{r['latency_ms']['ok']['p50']}/{r['latency_ms']['ok']['p99']} ms; hangs {r['hangs']}; "
        f"generator {generator['cores']} cores; wrote {out}/overload.{{json,md,png}}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
