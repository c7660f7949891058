#!/usr/bin/env python
"""`make soak` (issue 11, "Under fire"): steady open-loop load for a long time, watching memory.

Searches are issued at fixed times, ``--rate`` a second for ``--minutes`` (issue ``i`` at ``i / rate`` s,
whatever the answers do; an issue more than ``--late-ms`` behind its time is counted late), each handed to a
pool of ``--workers`` threads sharing one :class:`~ltrr.client.LtrrClient` (bearer token, ``--attempts``
attempts: 1 by default, so errors show as the server sent them). About ``--feedback-share`` of the answered
searches are followed by a click on a random result, with a client-chosen ``event_id``.

Every ``--every`` seconds it samples the RSS of every Ray process (titles ``ray::...``, ``raylet``,
``gcs_server``, Ray's Python daemons; one series per pid), the event log's size and its WAL's (``--events``),
and the p50/p99 of the OK searches that ended in that window and the errors by status. The report gives each
process's RSS at the start and the end and its least-squares slope in MiB per hour over the samples after a
warm-up (the first ``--warmup-share`` of the run), the event log's growth rate, the windows, and the errors.
The bar is flat memory.

Ctrl-C stops issuing, waits for the calls in flight and writes the report of the run so far.
Writes soak.json, soak.md and soak.png (RSS per process, p50/p99, event log size over time) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LTRR_HOME", str(ROOT))

from tqdm import tqdm  # noqa: E402

from ltrr import loadtest as lt  # noqa: E402
from ltrr.client import LtrrClient  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from overload import common_args, start, timed_call  # noqa: E402


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Run:
    """The shared state of a soak run: the calls that ended (appended in the order they end) and how many
    pool jobs started more than the tolerance after their due time."""

    def __init__(self, args: argparse.Namespace, client: LtrrClient, queries: list[str], t0: float) -> None:
        self.args, self.client, self.queries, self.t0 = args, client, queries, t0
        self.records: list[lt.CallRecord] = []
        self.started_late = 0
        self.lock = threading.Lock()

    def job(self, i: int, due: float) -> None:
        a = self.args
        if time.monotonic() - due > a.late_ms / 1000.0:
            with self.lock:
                self.started_late += 1
        rng = random.Random(a.seed * 1_000_003 + i)
        user = f"soak:{rng.randrange(a.users)}" if a.users > 0 else ""
        query = self.queries[rng.randrange(len(self.queries))]
        resp, record = timed_call(lambda: self.client.search(query, k=a.k, user_id=user), self.t0,
                                  clock=time.monotonic)
        self.records.append(record)
        if resp is None or not resp.results or rng.random() >= a.feedback_share:
            return
        j = rng.randrange(len(resp.results))
        _, record = timed_call(
            lambda: self.client.feedback(resp.request_id, resp.results[j].entity_id, "click", position=j + 1,
                                         event_id=uuid.uuid4().hex),
            self.t0, kind="feedback", clock=time.monotonic,
        )  # fmt: skip
        self.records.append(record)


class Sampler(threading.Thread):
    """Every ``every`` seconds (at ``t0 + n * every``): Ray processes' RSS, the event log's sizes, and the window
    of calls that ended since the last sample."""

    def __init__(self, run: Run, events: Path, proc: str, every: float, say) -> None:
        super().__init__(daemon=True)
        self.run_, self.events, self.proc, self.every, self.say = run, events, proc, every, say
        self.rss = lt.RssSeries()
        self.log: list[tuple[float, int, int]] = []  # (t, main bytes, wal bytes)
        self.windows: list[dict[str, Any]] = []
        self.seen = 0
        self.stop_evt = threading.Event()

    def sample(self) -> None:
        t = time.monotonic() - self.run_.t0
        self.rss.add(t, lt.scan_processes(self.proc))
        self.log.append((t, file_size(self.events), file_size(Path(f"{self.events}-wal"))))
        n = len(self.run_.records)
        window = lt.window_stats(self.run_.records[self.seen : n])
        self.seen = n
        self.windows.append({"t_s": round(t, 1), **window})
        total = sum(pts[-1][1] for pts in self.rss.points.values() if pts[-1][0] == t)
        self.say(
            f"t={t:7.0f}s searches={window['searches']} p50={window['p50_ms']} p99={window['p99_ms']} ms "
            f"errors={window['search_errors'] or 0} feedback={window['feedback']} "
            f"ray rss={total / lt.MIB:.0f} MiB ({len(self.rss.points)} procs) "
            f"log={(self.log[-1][1] + self.log[-1][2]) / lt.MIB:.1f} MiB"
        )

    def run(self) -> None:
        k = 1
        while not self.stop_evt.wait(max(0.0, self.run_.t0 + k * self.every - time.monotonic())):
            self.sample()
            k += 1


def total_series(rss: lt.RssSeries) -> list[tuple[float, int]]:
    """The sum of every process's RSS at each sample time."""
    by_t: dict[float, int] = {}
    for pts in rss.points.values():
        for t, v in pts:
            by_t[t] = by_t.get(t, 0) + v
    return sorted(by_t.items())


def plot(path: Path, series, windows, log, top: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 11), sharex=True)
    ranked = sorted(series.items(), key=lambda kv: -max(v for _, v in kv[1]))[:top]
    for key, pts in ranked:
        ax1.plot([t / 60 for t, _ in pts], [v / lt.MIB for _, v in pts], marker=".", label=key)
    ax1.set_ylabel("RSS (MiB)")
    ax1.set_title(f"RSS per Ray process (top {top} by RSS)")
    ax1.grid(alpha=0.3)
    if ranked:
        ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax1.text(0.5, 0.5, "no Ray process found", ha="center", transform=ax1.transAxes)
    ws = [w for w in windows if w["searches"]]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        ax2.plot([w["t_s"] / 60 for w in ws], [w[key] for w in ws], marker=".", label=label)
    ax2.set_ylabel("search latency per window (ms)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    ts = [t / 60 for t, _, _ in log]
    ax3.plot(ts, [m / lt.MIB for _, m, _ in log], marker=".", label="events.sqlite")
    ax3.plot(ts, [w / lt.MIB for _, _, w in log], marker=".", label="-wal")
    ax3.plot(ts, [(m + w) / lt.MIB for _, m, w in log], marker=".", label="together")
    ax3.set_ylabel("event log (MiB)")
    ax3.set_xlabel("time since the start (min)")
    ax3.grid(alpha=0.3)
    ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap, "soak")
    ap.add_argument("--rate", type=float, default=10.0, help="searches issued per second")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--feedback-share", type=float, default=0.3, help="share of answered searches clicked")
    ap.add_argument("--attempts", type=int, default=1, help="the client's attempts per call (1: no retries)")
    ap.add_argument("--users", type=int, default=200, help="distinct user ids soak:<n> (0: anonymous)")
    ap.add_argument("--workers", type=int, default=64, help="threads the issued calls run on")
    ap.add_argument("--late-ms", type=float, default=10.0, help="an issue later than this is counted late")
    ap.add_argument("--every", type=float, default=30.0, help="sampling interval (s)")
    ap.add_argument("--warmup-share", type=float, default=0.1, help="share of the run left out of the slopes")
    ap.add_argument("--top", type=int, default=8, help="processes drawn in the RSS plot")
    ap.add_argument("--events", default=str(ROOT / "var" / "events.sqlite"))
    args = ap.parse_args(argv)
    begun = start(args, "soak")
    if begun is None:
        return 2
    out, queries, started = begun

    times = lt.issue_times(args.rate, args.minutes * 60.0)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = LtrrClient(args.target, timeout=args.deadline, attempts=args.attempts)
    pool = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="soak")
    bar = tqdm(total=len(times), unit="search", desc="soak", file=sys.stderr, smoothing=0.05, mininterval=1.0)
    run = Run(args, client, queries, time.monotonic())
    sampler = Sampler(run, Path(args.events), args.proc, args.every, bar.write)
    sampler.sample()
    sampler.start()

    def issue(i: int, due: float) -> None:
        pool.submit(run.job, i, due)
        bar.update(1)

    try:
        sched = lt.run_open_loop(times, issue, tolerance_s=args.late_ms / 1000.0, stop=stop.is_set,
                                 sleep=lambda s: stop.wait(s))
        pool.shutdown(wait=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    sampler.stop_evt.set()
    sampler.join()
    sampler.sample()
    client.close()

    elapsed = sampler.log[-1][0]
    warmup_s = round(args.warmup_share * elapsed, 1)
    series = sampler.rss.series()
    searches = [r for r in run.records if r.kind == "search"]
    overall = lt.window_stats(run.records)
    total = total_series(sampler.rss)
    log = sampler.log
    log_pts = [(t, m + w) for t, m, w in log]
    log_slope = lt.slope_per_hour(log_pts)
    ok_searches = sum(1 for r in searches if r.status == "OK")
    growth = log_pts[-1][1] - log_pts[0][1]
    report: dict[str, Any] = {
        "kind": "soak",
        "started": started,
        "config": {
            "target": args.target, "rate_per_s": args.rate, "minutes": args.minutes,
            "feedback_share": args.feedback_share, "deadline_s": args.deadline, "attempts": args.attempts,
            "k": args.k, "users": args.users, "workers": args.workers, "sample_every_s": args.every,
            "warmup_share": args.warmup_share, "events": args.events, "queries": len(queries),
        },
        "elapsed_s": round(elapsed, 1),
        "warmup_s": warmup_s,
        "schedule": {**asdict(sched), "planned": len(times), "started_late": run.started_late},
        "results": {
            "searches": overall["searches"],
            "p50_ms": overall["p50_ms"],
            "p99_ms": overall["p99_ms"],
            "search_by_status": lt.count_statuses(r.status for r in searches),
            "search_errors": overall["search_errors"],
            "feedback": overall["feedback"],
            "feedback_by_status": lt.count_statuses(r.status for r in run.records if r.kind == "feedback"),
            "feedback_errors": overall["feedback_errors"],
            "ok_search_latency_ms": lt.latency_summary([r.latency_ms for r in searches if r.status == "OK"]),
        },
        "rss": lt.rss_summary(series, after_s=warmup_s),
        "rss_total": lt.rss_summary({"all": total}, after_s=warmup_s).get(
            "all", {"start_mib": None, "end_mib": None, "slope_mib_per_h": None}
        ),
        "events": {
            "path": args.events,
            "start_mib": round(log_pts[0][1] / lt.MIB, 2),
            "end_mib": round(log_pts[-1][1] / lt.MIB, 2),
            "wal_end_mib": round(log[-1][2] / lt.MIB, 2),
            "growth_mib": round(growth / lt.MIB, 2),
            "slope_mib_per_h": None if log_slope is None else round(log_slope, 2),
            "bytes_per_search": round(growth / ok_searches) if ok_searches else None,
        },
        "windows": sampler.windows,
        "series": {
            "rss_mib": {k: [[round(t, 1), round(v / lt.MIB, 2)] for t, v in pts] for k, pts in series.items()},
            "events_mib": [[round(t, 1), round(m / lt.MIB, 3), round(w / lt.MIB, 3)] for t, m, w in log],
        },
        "plot": "soak.png",
    }
    plot(out / "soak.png", series, sampler.windows, log, args.top)
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "soak.md").write_text(lt.render_soak_md(report), encoding="utf-8")
    res = report["results"]
    print(
        f"soak: {res['searches']} searches (p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, errors "
        f"{res['search_errors'] or 0}), {res['feedback']} clicks; {sched.late} late issues; all Ray RSS "
        f"{report['rss_total']['slope_mib_per_h']} MiB/h; event log {report['events']['slope_mib_per_h']} MiB/h; "
        f"wrote {out}/soak.{{json,md,png}}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
