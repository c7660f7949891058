"""The pure parts of the load tests of issue 11 ("Under fire"): ``scripts/overload.py`` and ``scripts/soak.py``.

Nothing here talks to a server or imports Ray; Linux ``/proc`` is read through a ``proc_root`` argument so
tests point it at a fake tree.

* **Percentiles** (:func:`percentile`): linear interpolation between closest ranks (Hyndman & Fan's type 7,
  numpy's default). With the ``n`` values sorted ``x_0 <= ... <= x_{n-1}`` and ``h = (n - 1) p / 100``,
  ``P_p = x_{floor(h)} + (h - floor(h)) (x_{floor(h)+1} - x_{floor(h)})``.
* **Memory slope** (:func:`ls_slope`): the ordinary least-squares slope of ``y`` on ``t``,
  ``b = sum((t_i - t_mean)(y_i - y_mean)) / sum((t_i - t_mean)^2)``; :func:`rss_summary` fits it in MiB per
  hour over the samples taken after a warm-up.
* **Processes** (:func:`scan_processes`): every ``/proc/<pid>`` whose command line :func:`process_label`
  names (a Ray worker titled ``ray::...``, ``raylet``, ``gcs_server``, Ray's Python daemons), with its
  resident set size (``VmRSS`` of ``/proc/<pid>/status``).
* **Open-loop schedule** (:func:`issue_times`, :func:`run_open_loop`): issue ``i`` is due at ``i / rate``
  seconds after the start, whatever the answers do; an issue made more than ``tolerance_s`` after its due time
  is *late*. Late issues are still made (the schedule catches up), so a slow generator shows up in the count.
* **Reports** (:func:`overload_summary`, :func:`window_stats`, :func:`render_overload_md`,
  :func:`render_soak_md`): plain dicts, the JSON the scripts write, and their Markdown.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from ltrr.catalog.store import CatalogBase

MIB = 1024 * 1024
#: Status names listed first, in this order, in every count by status; others follow alphabetically.
STATUS_ORDER = ("OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNAVAILABLE")
#: Statuses that are the server refusing work it cannot take (shedding), not failing it.
REJECTIONS = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE"})
#: Ray's own Python daemons, by a path their command line runs, and the label they get.
RAY_DAEMONS = (
    ("ray/dashboard/dashboard.py", "ray-dashboard"),
    ("ray/_private/log_monitor.py", "ray-log-monitor"),
    ("ray/autoscaler/_private/monitor.py", "ray-monitor"),
)
#: Native Ray binaries, by their executable's file name.
RAY_BINARIES = frozenset({"raylet", "gcs_server"})
#: Some phrases for semantic searches (:func:`make_queries`).
SEMANTIC_QUERIES = (
    "sad songs for a rainy day",
    "upbeat workout edm",
    "podcast about true crime investigations",
    "chill acoustic covers",
    "latin party hits",
    "history podcast about ancient rome",
    "90s hip hop classics",
    "relaxing piano for studying",
    "indie folk road trip",
    "comedy podcast with celebrity guests",
    "dark synthwave for night driving",
    "jazz standards for dinner",
)


# -- closed loop ----------------------------------------------------------------------------------------------
def closed_loop(
    call: Callable[[int], object], n: int, callers: int, *, error_name: Callable[[Exception], str] | None = None
) -> dict[str, Any]:
    """Throughput of ``call(i)`` for ``i`` in ``range(n)`` with ``callers`` concurrent callers (closed loop:
    each caller issues its next call as soon as its last one returned; one caller runs in this thread).
    Returns ``{"callers", "n", "ok", "errors": {name: count}, "wall_s", "throughput_rps", **latency_summary}``:
    latencies and throughput are of the calls that returned; a call that raises is counted under
    ``error_name(exc)`` (default: the exception's class name) and the loop goes on."""
    if n < 1:
        raise ValueError(f"`n` must be >= 1, got {n}")
    if callers < 1:
        raise ValueError(f"`callers` must be >= 1, got {callers}")
    name = error_name or (lambda exc: type(exc).__name__)
    lat: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    todo = iter(range(n))

    def caller() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            t = time.perf_counter()
            try:
                call(i)
            except Exception as exc:  # noqa: BLE001 - counted, the load goes on
                with lock:
                    errors[name(exc)] += 1
                continue
            ms = (time.perf_counter() - t) * 1000.0
            with lock:
                lat.append(ms)

    t0 = time.perf_counter()
    if callers == 1:
        caller()
    else:
        threads = [threading.Thread(target=caller, daemon=True) for _ in range(callers)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    wall = time.perf_counter() - t0
    return {
        "callers": callers,
        "n": n,
        "ok": len(lat),
        "errors": dict(sorted(errors.items())),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(lat) / wall, 2) if wall > 0 else None,
        **{k: v for k, v in latency_summary(lat).items() if k != "n"},
    }


# -- statistics ------------------------------------------------------------------------------------------------
def percentile(xs: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of ``xs`` by linear interpolation between closest ranks (module docstring).

    ``xs`` must not be empty and ``p`` must be in [0, 100]."""
    if not xs:
        raise ValueError("`xs` must not be empty")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"`p` must be in [0, 100], got {p!r}")
    s = sorted(xs)
    h = (len(s) - 1) * p / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (h - lo) * (s[hi] - s[lo])


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    """``{"n", "p50", "p90", "p99", "max"}`` of latencies in milliseconds (rounded to 0.01 ms); the
    statistics are None when ``ms`` is empty."""
    if not ms:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    out: dict[str, Any] = {"n": len(ms)}
    for p in (50, 90, 99):
        out[f"p{p}"] = round(percentile(ms, p), 2)
    out["max"] = round(max(ms), 2)
    return out


def ls_slope(ts: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` on ``ts`` (module docstring): at least two points, not all at one ``t``."""
    if len(ts) != len(ys):
        raise ValueError(f"`ts` and `ys` must have the same length, got {len(ts)} and {len(ys)}")
    if len(ts) < 2:
        raise ValueError(f"a slope needs at least 2 points, got {len(ts)}")
    t_mean = sum(ts) / len(ts)
    y_mean = sum(ys) / len(ys)
    sxx = sum((t - t_mean) ** 2 for t in ts)
    if sxx == 0:
        raise ValueError("a slope needs at least 2 distinct `ts`")
    return sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)) / sxx


def slope_per_hour(points: Sequence[tuple[float, float]], *, after_s: float = 0.0, unit: float = MIB) -> float | None:
    """The least-squares slope of ``(t seconds, value)`` points with ``t >= after_s``, in ``unit`` per hour;
    None when fewer than two such points (at distinct times) remain."""
    kept = [(t, v) for t, v in points if t >= after_s]
    if len({t for t, _ in kept}) < 2:
        return None
    return ls_slope([t for t, _ in kept], [v for _, v in kept]) * 3600.0 / unit


def count_statuses(statuses: Iterable[str]) -> dict[str, int]:
    """How many of each status, keyed in :data:`STATUS_ORDER` (those four always present) then alphabetically."""
    c = Counter(statuses)
    out = {s: c.pop(s, 0) for s in STATUS_ORDER}
    out.update(sorted(c.items()))
    return out


# -- calls -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallRecord:
    """One finished RPC: when it ended (seconds since the run started), how long it took, its status name."""

    t_end: float
    latency_ms: float
    status: str
    kind: str = "search"


def overload_summary(
    records: Sequence[CallRecord], *, deadline_s: float, grace_s: float, wall_s: float, unfinished: int = 0
) -> dict:
    """The overload run's figures from its calls.

    A call *answered in time* took at most ``deadline_s + grace_s``; one that took longer is a *hang*, and so is
    each of the ``unfinished`` calls that never returned (counted under status ``UNFINISHED``).
    ``over_deadline`` counts the answers past ``deadline_s`` itself (a DEADLINE_EXCEEDED raised a little late).
    Rates divide the answers by ``wall_s``, the time from the first call to the last answer."""
    lat_by: dict[str, list[float]] = {}
    for r in records:
        lat_by.setdefault(r.status, []).append(r.latency_ms)
    limit_ms = (deadline_s + grace_s) * 1000.0
    hangs = sum(1 for r in records if r.latency_ms > limit_ms) + unfinished
    n = len(records) + unfinished
    rejected = [x for s in REJECTIONS for x in lat_by.get(s, [])]
    return {
        "requests": n,
        "by_status": count_statuses([r.status for r in records] + ["UNFINISHED"] * unfinished),
        "latency_ms": {
            "ok": latency_summary(lat_by.get("OK", [])),
            "rejected": latency_summary(rejected),
            "by_status": {s: latency_summary(v) for s, v in sorted(lat_by.items())},
        },
        "deadline_s": deadline_s,
        "grace_s": grace_s,
        "answered_in_time_share": round((n - hangs) / n, 6) if n else None,
        "over_deadline": sum(1 for r in records if r.latency_ms > deadline_s * 1000.0),
        "hangs": hangs,
        "wall_s": round(wall_s, 3),
        "requests_per_s": round(len(records) / wall_s, 2) if wall_s > 0 else None,
        "ok_per_s": round(len(lat_by.get("OK", [])) / wall_s, 2) if wall_s > 0 else None,
    }


def window_stats(records: Sequence[CallRecord]) -> dict[str, Any]:
    """One soak window: searches and feedback counted by status, and the p50/p99 (ms) of the OK searches (a
    quick rejection is not a fast answer; errors are counted apart)."""
    searches = [r for r in records if r.kind == "search"]
    feedback = [r for r in records if r.kind == "feedback"]
    lat = [r.latency_ms for r in searches if r.status == "OK"]
    return {
        "searches": len(searches),
        "p50_ms": round(percentile(lat, 50), 2) if lat else None,
        "p99_ms": round(percentile(lat, 99), 2) if lat else None,
        "search_errors": {k: v for k, v in count_statuses(r.status for r in searches).items() if k != "OK" and v},
        "feedback": len(feedback),
        "feedback_errors": {k: v for k, v in count_statuses(r.status for r in feedback).items() if k != "OK" and v},
    }


# -- /proc -----------------------------------------------------------------------------------------------------
def parse_cmdline(raw: bytes) -> list[str]:
    """The arguments of a ``/proc/<pid>/cmdline`` (NUL-separated; empty parts, e.g. a set title's padding, dropped)."""
    return [a for a in raw.decode("utf-8", "replace").split("\0") if a.strip()]


def process_label(argv: Sequence[str]) -> str | None:
    """The stable name of a Ray process from its arguments, None for any other process.

    * A worker whose title starts ``ray::`` (``ray::ProxyActor``, ``ray::ServeReplica:ltrr:ingress``,
      ``ray::IDLE``...): the title's first word without the ``.method`` Ray appends while a task runs
      (``ray::ServeController.run_control_loop`` is ``ray::ServeController``).
    * ``raylet`` and ``gcs_server``: the executable's file name.
    * Ray's Python daemons (:data:`RAY_DAEMONS`): their label, e.g. ``ray-dashboard``."""
    if not argv:
        return None
    title = " ".join(argv).strip()
    if title.startswith("ray::"):
        word = title.split()[0]
        name = word[len("ray::") :]
        head, dot, method = name.rpartition(".")
        if dot and head and method.isidentifier():
            name = head
        return "ray::" + name
    exe = os.path.basename(argv[0])
    if exe in RAY_BINARIES:
        return exe
    for path, label in RAY_DAEMONS:
        if any(a.endswith(path) for a in argv[:3]):
            return label
    return None


def parse_vm_rss(status_text: str) -> int | None:
    """``VmRSS`` of a ``/proc/<pid>/status`` in bytes; None when absent (a kernel thread, a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else None
    return None


@dataclass(frozen=True)
class ProcSample:
    pid: int
    label: str
    rss: int

    @property
    def key(self) -> str:
        """The series key: the label and the pid, e.g. ``ray::ServeReplica:ltrr:ingress [4242]``."""
        return f"{self.label} [{self.pid}]"


def pid_dirs(proc_root: str | os.PathLike[str] = "/proc") -> list[Path]:
    """The ``<pid>`` directories of ``proc_root`` (names that are all digits); none when it cannot be listed."""
    try:
        entries = list(Path(proc_root).iterdir())
    except OSError:
        return []
    return [d for d in entries if d.name.isdigit()]


def scan_processes(
    proc_root: str | os.PathLike[str] = "/proc", label: Callable[[Sequence[str]], str | None] = process_label
) -> dict[int, ProcSample]:
    """Every process under ``proc_root`` that ``label`` names, with its RSS; a process that exits while it is
    read, or whose files cannot be read, is left out."""
    out: dict[int, ProcSample] = {}
    for d in pid_dirs(proc_root):
        try:
            name = label(parse_cmdline((d / "cmdline").read_bytes()))
            if name is None:
                continue
            rss = parse_vm_rss((d / "status").read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if rss is not None:
            out[int(d.name)] = ProcSample(int(d.name), name, rss)
    return out


def rss_by_key(sample: Mapping[int, ProcSample], contains: Sequence[str] = ()) -> dict[str, int]:
    """``{"label [pid]": rss bytes}`` of a scan, only the labels containing one of ``contains`` if given."""
    return {
        p.key: p.rss
        for p in sorted(sample.values(), key=lambda p: (p.label, p.pid))
        if not contains or any(c in p.label for c in contains)
    }


class RssSeries:
    """Per-process RSS samples over time, keyed by pid; a process keeps the last label it had that is not
    ``ray::IDLE`` (a worker that takes an actor or a task is the same process)."""

    def __init__(self) -> None:
        self.labels: dict[int, str] = {}
        self.points: dict[int, list[tuple[float, int]]] = {}

    def add(self, t: float, sample: Mapping[int, ProcSample]) -> None:
        for pid, p in sample.items():
            if p.label != "ray::IDLE" or pid not in self.labels:
                self.labels[pid] = p.label
            self.points.setdefault(pid, []).append((t, p.rss))

    def series(self) -> dict[str, list[tuple[float, int]]]:
        """``{"label [pid]": [(t, rss bytes), ...]}``, sorted by key."""
        return dict(sorted((f"{self.labels[pid]} [{pid}]", pts) for pid, pts in self.points.items()))


def rss_summary(series: Mapping[str, Sequence[tuple[float, float]]], *, after_s: float = 0.0) -> dict[str, dict]:
    """Per series: RSS at the first and the last sample, the largest, the growth (last - first) in MiB, the
    sample count and the least-squares slope in MiB per hour over the samples at ``t >= after_s``
    (None with fewer than two)."""
    out = {}
    for key, pts in series.items():
        if not pts:
            continue
        vals = [v for _, v in pts]
        slope = slope_per_hour(pts, after_s=after_s)
        out[key] = {
            "samples": len(pts),
            "first_t_s": round(pts[0][0], 1),
            "last_t_s": round(pts[-1][0], 1),
            "start_mib": round(vals[0] / MIB, 1),
            "end_mib": round(vals[-1] / MIB, 1),
            "max_mib": round(max(vals) / MIB, 1),
            "growth_mib": round((vals[-1] - vals[0]) / MIB, 1),
            "slope_mib_per_h": None if slope is None else round(slope, 2),
        }
    return out


def parse_cpu_times(stat_text: str) -> tuple[int, int]:
    """``(busy, total)`` jiffies of the machine from ``/proc/stat``'s ``cpu`` line: total is user, nice, system,
    idle, iowait, irq, softirq and steal; busy is total less idle and iowait."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:9]]
            f += [0] * (8 - len(f))
            total = sum(f)
            return total - f[3] - f[4], total
    raise ValueError("no `cpu` line in /proc/stat")


# -- open-loop schedule ----------------------------------------------------------------------------------------
def issue_times(rate_per_s: float, duration_s: float) -> list[float]:
    """The due times (seconds from the start) of an open-loop run: ``i / rate`` for every ``i`` with
    ``i / rate < duration``. Each is computed from ``i``, so rounding does not drift."""
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"`rate_per_s` must be a finite number > 0, got {rate_per_s!r}")
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"`duration_s` must be a finite number >= 0, got {duration_s!r}")
    n = max(0, math.ceil(rate_per_s * duration_s - 1e-9))
    return [i / rate_per_s for i in range(n)]


@dataclass
class OpenLoopStats:
    """What the scheduler did: issues made, how many were late and by how much (seconds)."""

    issued: int = 0
    late: int = 0
    max_lateness_s: float = 0.0
    tolerance_s: float = 0.0
    stopped_early: bool = False


def run_open_loop(
    times: Sequence[float],
    issue: Callable[[int, float], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    tolerance_s: float = 0.01,
    stop: Callable[[], bool] = lambda: False,
) -> OpenLoopStats:
    """Call ``issue(i, due)`` for each due time of ``times`` (offsets from the first ``clock()``), sleeping until
    each is due and never waiting for an answer. An issue made more than ``tolerance_s`` after it was due counts
    as late, and is made all the same. ``issue`` must hand the call off (e.g. to a thread pool) and return;
    ``stop()`` true ends the run before the next issue."""
    stats = OpenLoopStats(tolerance_s=tolerance_s)
    start = clock()
    for i, offset in enumerate(times):
        if stop():
            stats.stopped_early = True
            break
        due = start + offset
        now = clock()
        if now < due:
            sleep(due - now)
            now = clock()
        lateness = now - due
        if lateness > tolerance_s:
            stats.late += 1
        stats.max_lateness_s = max(stats.max_lateness_s, lateness)
        issue(i, due)
        stats.issued += 1
    return stats


def make_queries(
    titles: Sequence[str],
    artists: Sequence[str],
    n: int,
    seed: int = 0,
    *,
    semantic: Sequence[str] = SEMANTIC_QUERIES,
) -> list[str]:
    """``n`` search strings, seeded: about 40% known-item titles (half of them with two letters swapped), 30%
    ``artists like X`` and 30% phrases of ``semantic`` (:data:`SEMANTIC_QUERIES`); only semantic phrases when
    ``titles`` is empty. Titles and ``artists like X`` are cut to 200 characters."""
    if not semantic:
        raise ValueError("`semantic` must not be empty")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if titles and r < 0.4:
            t = rng.choice(titles)
            if len(t) > 5 and rng.random() < 0.5:
                i = rng.randrange(1, len(t) - 1)
                t = t[:i] + t[i + 1] + t[i] + t[i + 2 :]
            out.append(t[:200])
        elif titles and artists and r < 0.7:
            out.append(f"artists like {rng.choice(artists)}"[:200])
        else:
            out.append(rng.choice(semantic))
    return out


# -- Markdown --------------------------------------------------------------------------------------------------
def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table; None cells print as an en dash."""

    def cell(x: object) -> str:
        return "–" if x is None else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _lat_rows(lat: Mapping[str, Mapping[str, Any]]) -> list[list[object]]:
    return [[name, s["n"], s["p50"], s["p90"], s["p99"], s["max"]] for name, s in lat.items()]


def _rss_rows(rss: Mapping[str, Mapping[str, Any]]) -> list[list[object]]:
    return [
        [k, s["samples"], s["start_mib"], s["end_mib"], s["max_mib"], s["growth_mib"], s["slope_mib_per_h"]]
        for k, s in rss.items()
    ]


_RSS_HEADERS = ("process", "samples", "start MiB", "end MiB", "max MiB", "growth MiB", "slope MiB/h")


def render_overload_md(report: Mapping[str, Any]) -> str:
    """The Markdown of an overload report (the dict ``scripts/overload.py`` writes as JSON)."""
    cfg, res, gen = report["config"], report["results"], report["generator"]
    lat = res["latency_ms"]
    lines = [
        f"# Overload: {cfg['callers']} callers for {cfg['seconds']} s against {cfg['target']}",
        "",
        f"Started {report['started']}; deadline {cfg['deadline_s']} s per call, no retries.",
        "",
        f"- requests: **{res['requests']}** ({res['requests_per_s']} /s; OK {res['ok_per_s']} /s)",
        f"- answered within deadline + {res['grace_s']} s: **{_share(res['answered_in_time_share'])}**; "
        f"hangs (longer, or never returned): **{res['hangs']}**; past the deadline itself: {res['over_deadline']}",
        f"- load generator: {gen['cpu_s']} CPU s over {gen['wall_s']} s = {gen['cores']} cores "
        f"({_share(gen['share_of_machine'])} of {gen['cpu_count']}); machine busy {_share(gen['machine_busy_share'])}",
        "",
        "## Requests by status",
        "",
        md_table(("status", "count"), res["by_status"].items()),
        "",
        "## Latency (ms)",
        "",
        md_table(
            ("answers", "n", "p50", "p90", "p99", "max"),
            _lat_rows({"OK": lat["ok"], "rejected (RESOURCE_EXHAUSTED, UNAVAILABLE)": lat["rejected"]})
            + _lat_rows({f"status {k}": v for k, v in lat["by_status"].items() if k != "OK"}),
        ),
        "",
        f"## Memory (RSS of the proxy and the ingress replicas, every {cfg['sample_every_s']} s)",
        "",
        md_table(_RSS_HEADERS, _rss_rows(report["rss"])) if report["rss"] else "No matching process was found.",
        "",
        f"![latency CDF and RSS]({report['plot']})",
        "",
    ]
    return "\n".join(lines)


def render_soak_md(report: Mapping[str, Any]) -> str:
    """The Markdown of a soak report (the dict ``scripts/soak.py`` writes as JSON)."""
    cfg, res, sched, ev = report["config"], report["results"], report["schedule"], report["events"]
    lines = [
        f"# Soak: {cfg['rate_per_s']} searches/s for {cfg['minutes']} min against {cfg['target']}",
        "",
        f"Started {report['started']}; {_share(cfg['feedback_share'])} of answered searches followed by a click; "
        f"slopes fitted after the first {report['warmup_s']} s.",
        "",
        f"- searches: **{res['searches']}**, errors {res['search_errors'] or 'none'}; "
        f"feedback: {res['feedback']}, errors {res['feedback_errors'] or 'none'}",
        f"- latency of the OK searches over the run: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms",
        f"- schedule: {sched['issued']} issued, **{sched['late']} late** (> {sched['tolerance_s'] * 1000:.0f} ms), "
        f"worst {sched['max_lateness_s'] * 1000:.1f} ms" + (" (stopped early)" if sched["stopped_early"] else ""),
        f"- all Ray processes together: slope **{report['rss_total']['slope_mib_per_h']} MiB/h**, "
        f"{report['rss_total']['start_mib']} → {report['rss_total']['end_mib']} MiB",
        f"- event log ({ev['path']}): {ev['start_mib']} → {ev['end_mib']} MiB (WAL {ev['wal_end_mib']} MiB at the "
        f"end), **{ev['slope_mib_per_h']} MiB/h**, {ev['bytes_per_search']} bytes per search",
        "",
        "## RSS per process",
        "",
        md_table(_RSS_HEADERS, _rss_rows(report["rss"])) if report["rss"] else "No Ray process was found.",
        "",
        "## Windows",
        "",
        md_table(
            ("t (s)", "searches", "p50 ms", "p99 ms", "search errors", "feedback", "feedback errors"),
            [
                [
                    w["t_s"],
                    w["searches"],
                    w["p50_ms"],
                    w["p99_ms"],
                    _errs(w["search_errors"]),
                    w["feedback"],
                    _errs(w["feedback_errors"]),
                ]
                for w in report["windows"]
            ],
        ),
        "",
        f"![RSS, latency and event log over time]({report['plot']})",
        "",
    ]
    return "\n".join(lines)


def _share(x: float | None) -> str:
    return "–" if x is None else f"{100.0 * x:.1f}%"


def _errs(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "0"


def catalog_names(catalog: str | os.PathLike[str] | CatalogBase, limit: int = 2000) -> tuple[list[str], list[str]]:
    """The titles of the ``limit`` most popular entities of a catalog and the first 300 artists among them,
    most popular first (equal popularity: in ``seq`` order).

    ``catalog`` is a catalog SQLite file (two empty lists if it does not exist) or an open store (not closed
    here). The file, or a :class:`~ltrr.catalog.store.CatalogStore`'s, is read with SQLite's ``json_extract``
    through a read-only connection (the app may be writing it); any other store (PostgreSQL's) through
    :meth:`~ltrr.catalog.store.CatalogBase.entities_since`, keeping only the ``limit`` most popular.
    """
    import heapq
    import sqlite3

    from ltrr.catalog.store import CatalogStore

    if isinstance(catalog, CatalogStore):
        catalog = catalog.path
    if isinstance(catalog, (str, os.PathLike)):
        if not Path(catalog).is_file():
            return [], []
        db = sqlite3.connect(f"file:{Path(catalog).resolve()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute(
                "SELECT entity_type, json_extract(doc, '$.title') FROM entities"
                " ORDER BY json_extract(doc, '$.popularity') DESC, seq LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            db.close()
    else:
        walk = (e for _, batch in catalog.entities_since(0, 5000) for e in batch)  # in seq order
        rows = [(e.entity_type, e.title) for e in heapq.nlargest(limit, walk, key=lambda e: e.popularity)]
    titles = [str(t) for _, t in rows if t]
    return titles, [str(t) for kind, t in rows if t and kind == "artist"][:300]


class PeriodicSampler(threading.Thread):
    """A daemon thread that calls :meth:`sample` every ``every_s`` seconds until :meth:`halt`, keeping each
    result with ``t`` (seconds since ``t0`` on ``clock``) in :attr:`samples`. A sample that raises is
    counted in :attr:`errors` and skipped: a dashboard may be slow under load, and the next one is taken
    on time."""

    def __init__(self, t0: float, every_s: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(daemon=True)
        self.t0, self.every_s, self.clock = t0, every_s, clock
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self._halt = threading.Event()

    def sample(self) -> dict[str, Any]:
        raise NotImplementedError

    def run(self) -> None:
        while not self._halt.is_set():
            t = self.clock() - self.t0
            try:
                self.samples.append({"t": round(t, 2), **self.sample()})
            except Exception:  # noqa: BLE001 - counted; the next sample is taken on time
                self.errors += 1
            self._halt.wait(self.every_s)

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=30.0)


def bench_queries(catalog: str | os.PathLike[str] | CatalogBase, n: int, seed: int = 0) -> list[str]:
    """The latency benchmarks' mix (``scripts/bench.py``, ``scripts/bench_ranker.py``): :func:`make_queries` over
    the 2,000 most popular entities of ``catalog`` (:func:`catalog_names`: a SQLite file or an open store of
    either backend), with the first eight of ``SEMANTIC_QUERIES``, the mix the published figures were measured
    with."""
    titles, artists = catalog_names(catalog)
    return make_queries(titles, artists, n, seed, semantic=SEMANTIC_QUERIES[:8])


def report_head(argv: Sequence[str], config: Mapping[str, Any]) -> dict[str, Any]:
    """The opening of a bench report: the command, the UTC date, the machine's cores, the run's ``config``,
    and empty ``timings_s`` and ``notes`` for the run to fill."""
    return {
        "command": " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores",
        "config": dict(config),
        "timings_s": {},
        "notes": [],
    }


#: The environment the Makefile exports (README, "Latency"), for a bench script run without make.
BENCH_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def bench_environ(root: Path) -> None:
    """``LTRR_HOME`` = ``root`` and each :data:`BENCH_ENV` value, unless the caller's environment sets it."""
    for key, value in {"LTRR_HOME": str(root), **BENCH_ENV}.items():
        os.environ.setdefault(key, value)


def search_logged(events_path: str, request_id: str) -> bool:
    """Whether the SQLite event log at ``events_path`` holds search ``request_id`` (read-only)."""
    if not Path(events_path).exists():
        return False
    db = sqlite3.connect(f"file:{events_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return db.execute("SELECT 1 FROM searches WHERE request_id=?", (request_id,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def lagging_indexes(client: Any, strategies: Sequence[str]) -> list[str]:
    """The strategies whose ``ltrr.index.<s>`` health is not SERVING (their index lags the catalog);
    a strategy without such a health entry (NOT_FOUND) has no index to wait for."""
    import grpc

    out = []
    for s in strategies:
        try:
            if client.health(f"ltrr.index.{s}") != "SERVING":
                out.append(s)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                out.append(s)
    return out
