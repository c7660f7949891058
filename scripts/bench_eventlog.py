#!/usr/bin/env python
"""Event-log throughput: durable writes per second of ``ltrr.eventlog.SQLiteEventLog`` and, with
``--backend postgres`` or ``both``, of ``ltrr.eventlog_pg.PostgresEventLog``.

In a temporary directory, on a fresh file per sync mode (PostgreSQL: a fresh schema), it times:

a. ``record_search`` alone, with a realistic doc (4 strategies x 50 candidate
   ids and scores, 30 context features, 10 shown, a decision dict);
b. ``record_feedback`` alone (on the searches of a);
c. mixed: each search followed by one feedback half of the time;
d. the mixed load from 4 threads sharing one log (as ``asyncio.to_thread`` in
   one ingress replica does), and from 4 threads with a log each (4
   connections contending for SQLite's write lock, as 4 ingress processes on
   one node would, minus their separate GILs);
e. ``settle()`` of everything pending (settlements per second, limit 1000 a call);
f. ``query_stats`` lookups (the read on every search's hot path).

Every scenario runs with ``synchronous=FULL`` (what the log uses: fsync of the
WAL on every commit) and again with ``synchronous=NORMAL`` (fsync only at
checkpoints; a power loss may drop the last commits). The NORMAL/FULL ratio is
the cost of the fsync; NORMAL is set here only, by reaching into the log's
connection. p50/p99 are per call (for settle: per settlement, i.e. call time /
settlements in that call). Output: a markdown table on stdout and
``<out>/eventlog.md``, ``eventlog.json``, ``eventlog.png``.
The machine is shared: compare the ratios of one run, not absolute rates across runs.

PostgreSQL runs the same scenarios with ``synchronous_commit=on`` (the log's, in the FULL column) and
``off`` (NORMAL: commits return before the WAL flush), against ``--dsn`` (each mode in a schema of its
own, dropped after) or, without it, a temporary server on a Unix socket (``ltrr.pgserver``, what the
tests use). Its table follows SQLite's; ``eventlog.json`` holds it under ``postgres``. A smoke run:
``--backend both --n 100``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr.eventlog import FeedbackEvent, SearchEvent, SQLiteEventLog  # noqa: E402
from ltrr.eventlog_pg import PostgresEventLog  # noqa: E402

Log = SQLiteEventLog | PostgresEventLog

STRATEGIES = ("lexical", "vector", "graph", "memory")
LADDER = (0, 10, 25, 50, 100)
ACTIONS = ("click", "play", "skip")
THREADS = 4


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))] if s else float("nan")


def make_search(rng: random.Random, rid: str, ts: float) -> SearchEvent:
    cands = {s: [f"track:{rng.randrange(10**6)}" for _ in range(50)] for s in STRATEGIES}
    return SearchEvent(
        request_id=rid,
        ts=ts,
        query=f"query {rng.randrange(500)}",
        user_id=f"u{rng.randrange(1000)}",
        shown=tuple(cands["lexical"][:10]),
        calls=tuple(
            {"strategy": s, "requested": 50, "returned": 50, "status": "ok", "propensity": 0.2, "latency_ms": 3.1}
            for s in STRATEGIES
        ),
        candidates=cands,
        policy_version="linucb-v1",
        ranker_version="catboost-v1",
        features={f"f{i}": rng.random() for i in range(30)},
        decision={"k": {s: rng.choice(LADDER) for s in STRATEGIES}, "propensities": {s: 0.2 for s in STRATEGIES}},
        scores={s: [round(rng.random(), 6) for _ in range(50)] for s in STRATEGIES},
        context={"device": "mobile", "locale": "en-GB"},
    )


def open_log(target: Path | str, sync: str) -> Log:
    """The SQLite file ``target`` (a Path) or the PostgreSQL log at DSN ``target`` (a str)."""
    if isinstance(target, str):
        pg = PostgresEventLog(target)
        if sync != "FULL":  # bench only: the log itself always commits with synchronous_commit=on
            with pg._lock:
                pg._connection("write").execute("SET synchronous_commit = off")
        return pg
    lg = SQLiteEventLog(target)
    if sync != "FULL":
        with lg._lock:  # bench only: the log itself always runs with synchronous=FULL
            lg._db.execute(f"PRAGMA synchronous={sync}")
    return lg


class Workload:
    """Builds the events up front, so that only the log calls are timed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def search(self) -> SearchEvent:
        self.n += 1
        return make_search(self.rng, f"r{self.n}", time.time())

    def feedback(self, ev: SearchEvent, i: int) -> FeedbackEvent:
        action = self.rng.choice(ACTIONS)
        return FeedbackEvent(f"{ev.request_id}-e{i}", ev.request_id, ev.shown[0], action, 1, ev.ts + 1.0)

    def mixed(self, steps: int) -> list[tuple[SearchEvent, FeedbackEvent | None]]:
        """``steps`` searches, each followed by a feedback with probability 1/2."""
        out = []
        for _ in range(steps):
            ev = self.search()
            out.append((ev, self.feedback(ev, 0) if self.rng.random() < 0.5 else None))
        return out


def timed(fn: Callable[[], Any], lat: list[float]) -> None:
    t = time.perf_counter()
    fn()
    lat.append((time.perf_counter() - t) * 1e6)


def row(name: str, lat: list[float], wall: float, events: int | None = None) -> dict[str, Any]:
    n = len(lat) if events is None else events
    return {
        "scenario": name,
        "events": n,
        "events_per_s": round(n / wall, 1),
        "p50_us": round(pct(lat, 50), 1),
        "p99_us": round(pct(lat, 99), 1),
    }


def mixed_steps(
    log: Log, steps: list[tuple[SearchEvent, FeedbackEvent | None]], lat: list[float], bar: tqdm
) -> int:
    """Write each search then its feedback, if any; returns the number of writes."""
    writes = 0
    for ev, fe in steps:
        timed(lambda ev=ev: log.record_search(ev), lat)
        writes += 1
        if fe is not None:
            timed(lambda fe=fe: log.record_feedback(fe), lat)
            writes += 1
        bar.update(1)
    return writes


def in_threads(
    logs: list[Log], work_of: list[list[tuple[SearchEvent, FeedbackEvent | None]]], bar: tqdm
) -> tuple[list[float], int, float]:
    """Thread i writes ``work_of[i]`` to ``logs[i]``; returns (latencies, writes, wall seconds)."""
    lats: list[list[float]] = [[] for _ in logs]
    counts = [0] * len(logs)

    def work(i: int) -> None:
        counts[i] = mixed_steps(logs[i], work_of[i], lats[i], bar)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(logs))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for ls in lats for x in ls], sum(counts), time.perf_counter() - t0


def run_mode(tmp: Path | str, sync: str, n: int, seed: int) -> list[dict[str, Any]]:
    """One sync mode on a fresh store: a file in directory ``tmp``, or the PostgreSQL DSN ``tmp``."""
    path = tmp / f"events-{sync.lower()}.sqlite" if isinstance(tmp, Path) else tmp
    log = open_log(path, sync)
    wl = Workload(seed)
    rows = []

    searches = [wl.search() for _ in range(n)]
    lat: list[float] = []
    t0 = time.perf_counter()
    for ev in tqdm(searches, desc=f"{sync} a record_search", leave=False):
        timed(lambda ev=ev: log.record_search(ev), lat)
    rows.append(row("a. record_search", lat, time.perf_counter() - t0))

    fbs = [wl.feedback(ev, 1) for ev in searches]
    lat = []
    t0 = time.perf_counter()
    for fe in tqdm(fbs, desc=f"{sync} b record_feedback", leave=False):
        timed(lambda fe=fe: log.record_feedback(fe), lat)
    rows.append(row("b. record_feedback", lat, time.perf_counter() - t0))

    lat = []
    steps = wl.mixed(max(1, n * 2 // 3))  # about n writes
    with tqdm(total=len(steps), desc=f"{sync} c mixed", leave=False) as bar:
        t0 = time.perf_counter()
        writes = mixed_steps(log, steps, lat, bar)
    rows.append(row("c. mixed search+feedback", lat, time.perf_counter() - t0, writes))

    for shared in (True, False):
        logs = [log] * THREADS if shared else [open_log(path, sync) for _ in range(THREADS)]
        work_of = [wl.mixed(max(1, len(steps) // THREADS)) for _ in range(THREADS)]
        with tqdm(total=sum(map(len, work_of)), desc=f"{sync} d {THREADS} threads", leave=False) as bar:
            lat, writes, wall = in_threads(logs, work_of, bar)
        if not shared:
            for lg in logs:
                lg.close()
        how = "one shared connection" if shared else "one connection each"
        rows.append(row(f"d. mixed, {THREADS} threads, {how}", lat, wall, writes))

    pending = log.counts()["pending"]
    lat = []
    settled = 0
    horizon = time.time() + 10 * log.reward_window_s + log.expiry_grace_s
    with tqdm(total=pending, desc=f"{sync} e settle", leave=False) as bar:
        t0 = time.perf_counter()
        while True:
            t = time.perf_counter()
            got = len(log.settle(horizon, limit=1000))
            if not got:
                break
            lat += [(time.perf_counter() - t) * 1e6 / got] * got
            settled += got
            bar.update(got)
        wall = time.perf_counter() - t0
    rows.append(row("e. settle (settlements)", lat, wall, settled))

    queries = [f"Query {wl.rng.randrange(600)} " for _ in range(n)]
    lat = []
    t0 = time.perf_counter()
    for q in tqdm(queries, desc=f"{sync} f query_stats", leave=False):
        timed(lambda q=q: log.query_stats(q), lat)
    rows.append(row("f. query_stats lookup (read)", lat, time.perf_counter() - t0))
    log.close()
    for r in rows:
        r["sync"] = sync
    return rows


def doc_bytes(seed: int) -> int:
    ev = make_search(random.Random(seed), "r0", 0.0)
    return len(json.dumps(ev.to_dict(), ensure_ascii=False).encode())


def table(full: list[dict[str, Any]], normal: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | events | FULL events/s | FULL p50 µs | FULL p99 µs "
        "| NORMAL events/s | NORMAL p50 µs | NORMAL p99 µs | NORMAL/FULL events/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f, m in zip(full, normal, strict=True):
        ratio = m["events_per_s"] / max(f["events_per_s"], 1e-9)
        lines.append(
            f"| {f['scenario']} | {f['events']} | {f['events_per_s']:.0f} | {f['p50_us']:.0f} | {f['p99_us']:.0f} "
            f"| {m['events_per_s']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def run_postgres(dsn: str | None, n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Both sync modes on PostgreSQL, each in a fresh schema of ``dsn`` (default: a temporary server's
    database); returns (FULL rows, NORMAL rows, the server's version)."""
    from contextlib import ExitStack

    import psycopg
    from psycopg import conninfo

    from ltrr.pgserver import PgServer

    with ExitStack() as stack:
        if dsn is None:
            dsn = stack.enter_context(PgServer()).create_database("bench")
        rows: dict[str, list[dict[str, Any]]] = {}
        with psycopg.connect(dsn, autocommit=True) as admin:
            version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            for sync in ("FULL", "NORMAL"):
                schema = f"ltrr_bench_{os.getpid()}_{sync.lower()}"
                admin.execute(f"CREATE SCHEMA {schema}".encode())
                try:
                    place = conninfo.make_conninfo(dsn, options=f"-c search_path={schema}")
                    rows[sync] = run_mode(place, sync, n, seed)
                finally:
                    admin.execute(f"DROP SCHEMA {schema} CASCADE".encode())
    for r in rows["FULL"] + rows["NORMAL"]:
        r["backend"] = "postgres"
    return rows["FULL"], rows["NORMAL"], version


def plot(
    path: Path, full: list[dict[str, Any]], normal: list[dict[str, Any]], what: str = "SQLite WAL",
    labels: tuple[str, str] = ("synchronous=FULL (the log)", "synchronous=NORMAL"),
) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [textwrap.fill(r["scenario"], 22) for r in full]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(10, 5.5))
    w = 0.4
    ax.bar([x - w / 2 for x in xs], [r["events_per_s"] for r in full], w, label=labels[0])
    ax.bar([x + w / 2 for x in xs], [r["events_per_s"] for r in normal], w, label=labels[1])
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("events per second (log scale)")
    ax.set_title(f"ltrr event log ({what}) throughput, {os.cpu_count()} cores")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="events per scenario (default 2000)")
    ap.add_argument("--out", default="bench-out", help="output directory (default bench-out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="directory for the temporary SQLite files (default: system temp)")
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite", help="default sqlite")
    ap.add_argument(
        "--dsn", default=None, help="PostgreSQL database (each mode in a schema of its own; default: a temp server)"
    )
    args = ap.parse_args()
    if args.n < 10:
        ap.error(f"`--n` must be >= 10, got {args.n}")
    machine = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    size = doc_bytes(args.seed)
    print(f"bench_eventlog: n={args.n}, search doc {size} bytes, {machine}", file=sys.stderr)
    report: dict[str, Any] = {"n": args.n, "doc_bytes": size, "machine": machine}
    texts = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.backend != "postgres":
        with tempfile.TemporaryDirectory(prefix="ltrr-bench-eventlog-", dir=args.tmp) as d:
            tmp = Path(d)
            full = run_mode(tmp, "FULL", args.n, args.seed)
            normal = run_mode(tmp, "NORMAL", args.n, args.seed)
        texts.append(
            f"Event log throughput, n={args.n}, search doc {size} bytes; {machine['cores']} cores, "
            f"{machine['platform']}, Python {machine['python']}, SQLite {machine['sqlite']}.\n\n"
            + table(full, normal)
            + "\n\np50/p99 per call (settle: per settlement). "
            "NORMAL/FULL = the throughput cost of fsync on every commit."
        )
        report.update(full=full, normal=normal)
        plot(out / "eventlog.png", full, normal)
    if args.backend != "sqlite":
        pg_full, pg_normal, version = run_postgres(args.dsn, args.n, args.seed)
        where = "the given server" if args.dsn else "a temporary local server (Unix socket, fsync=on)"
        texts.append(
            f"PostgreSQL {version} event log, n={args.n}, on {where}: FULL = synchronous_commit=on (the log's), "
            "NORMAL = synchronous_commit=off.\n\n" + table(pg_full, pg_normal)
        )
        report["postgres"] = {"server_version": version, "full": pg_full, "normal": pg_normal}
        plot(out / "eventlog-postgres.png", pg_full, pg_normal, f"PostgreSQL {version}",
             ("synchronous_commit=on (the log)", "synchronous_commit=off"))  # fmt: skip
    text = "\n\n".join(texts)
    print(text)
    (out / "eventlog.md").write_text(text + "\n")
    (out / "eventlog.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out}/eventlog.md, eventlog.json and the plots", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
