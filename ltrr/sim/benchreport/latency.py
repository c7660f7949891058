"""Question 4 of the benchmark report, at what latency, and the scale section. Pure.

* Per run: the p50 and p99 of each contender's wall-clock latency the run timed (``records[*].latency_ms``,
  :func:`ltrr.sim.report.final_scores`), the strategies' mean ``latency_ms`` (what the run priced with) and the
  in-loop learners' time per query (``meta.vw_timing``, ``meta.inloop_timing``).
* Per run, its throughput phase (``meta.throughput``, ``scripts/bench_regret.py --throughput``): req/s and
  latency of every contender at 1 and 16 callers (:func:`run_throughput`).
* ``latency.json`` (``scripts/bench.py``): its table, and the throughput of each row whose setup names its callers
  (:func:`ltrr.sim.benchreport.inputs.callers_of`).
* ``ranker.json``: the ranking cost per candidate count, and searches before and after the ranker.
* ``scale.json`` (``scripts/bench_scale.py``): :mod:`ltrr.sim.scale`'s report, under this one's heading.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ltrr.sim import scale as sc
from ltrr.sim.benchreport.inputs import RegretRun, callers_of, num, table


def run_section(run: RegretRun) -> list[str]:
    """One run's latencies."""
    lines = [f"### Run {run.title}", ""]
    timed = [f for f in run.finals if f.p50_ms is not None]
    if timed:
        rows = [[f.contender, f"{f.queries:,}", num(f.p50_ms, 1), num(f.p99_ms, 1)] for f in timed]
        lines += ["Wall-clock latency per query, on the client's clock:", "",
                  *table(("contender", "queries", "p50 ms", "p99 ms"), rows), ""]  # fmt: skip
    else:
        lines += ["The run timed no contender's answer.", ""]
    lat = ", ".join(f"{s} {ms:.1f} ms" for s, ms in run.scored.latency_ms.items())
    lines.append(f"- **Strategies' mean `latency_ms`** in the live calls: {lat}")
    if run.meta.get("run time"):
        lines.append(f"- **Run time**: {run.meta['run time']}")
    rows = [[name, num(t.get("mean_ms"), 1), num(t.get("p50_ms"), 1), num(t.get("p99_ms"), 1)]
            for key in ("vw_timing", "inloop_timing") for name, t in (run.meta.get(key) or {}).items()]  # fmt: skip
    if rows:
        lines += ["", "In-loop learners' time per query (choose + learn):", "",
                  *table(("learner", "mean ms", "p50 ms", "p99 ms"), rows)]  # fmt: skip
    tp = run_throughput(run.meta)
    if tp:
        lines += ["", "Throughput after the loop, the stream's first queries again, top 10 (`--throughput`):", "",
                  *table(("contender", "callers", "queries", "req/s", "p50 ms", "p99 ms", "errors"), tp)]  # fmt: skip
    return lines + [""]


def run_throughput(meta: Mapping[str, Any]) -> list[list[object]]:
    """``[contender, callers, queries, req/s, p50 ms, p99 ms, errors]`` of a run's throughput phase
    (``meta.throughput``: contender -> callers -> :func:`ltrr.loadtest.closed_loop`), fewest callers first
    within each contender; empty when the run had none."""
    rows: list[list[object]] = []
    for name, by_callers in (meta.get("throughput") or {}).items():
        for callers, r in sorted(by_callers.items(), key=lambda kv: int(kv[0])):
            errors = ", ".join(f"{k} {v}" for k, v in (r.get("errors") or {}).items()) or "none"
            rows.append([name, int(callers), r.get("n"), num(r.get("throughput_rps"), 1), num(r.get("p50"), 1),
                         num(r.get("p99"), 1), errors])  # fmt: skip
    return rows


def throughput(latency: Mapping[str, Any] | None) -> list[list[object]]:
    """``[callers, setup, req/s, p50 ms, p99 ms]`` of every ``latency.json`` row with a caller count and a
    throughput, fewest callers first."""
    found = []
    for r in (latency or {}).get("rows", []):
        n = callers_of(r.get("setup", ""))
        if n is not None and r.get("throughput_rps") is not None:
            found.append((n, [n, r["setup"], r["throughput_rps"], r.get("p50_ms"), r.get("p99_ms")]))
    return [row for _, row in sorted(found, key=lambda x: x[0])]


def latency_table(latency: Mapping[str, Any]) -> list[str]:
    """``latency.json``'s rows, then each strategy's live and direct rows (req/s only where callers are named)."""
    every = [*latency.get("rows", []), *(latency.get("live_per_strategy") or {}).values(),
             *(latency.get("per_strategy") or {}).values()]  # fmt: skip
    rows = [[r["setup"], r.get("n"), r.get("p50_ms"), r.get("p99_ms"), r.get("mean_ms"),
             r.get("throughput_rps") if callers_of(r["setup"]) else None] for r in every]  # fmt: skip
    return table(("setup", "n", "p50 ms", "p99 ms", "mean ms", "req/s"), rows)


def ranking_cost(ranker: Mapping[str, Any]) -> list[str]:
    """``ranker.json``'s ranking cost per candidate count, and its searches before and after the ranker."""
    cost = ranker.get("ranking_cost") or {}
    lines: list[str] = []
    sizes = cost.get("sizes") or {}
    parts = (("features", "features"), ("catboost", "CatBoost"), ("total", "total"), ("rrf", "RRF sort"))
    if sizes:
        rows = [[n, *(num((c.get(p) or {}).get(q), 2) for p, _ in parts for q in ("p50_ms", "p99_ms"))]
                for n, c in sizes.items()]  # fmt: skip
        heads = ("candidates", *(f"{lb} {q}" for _, lb in parts for q in ("p50", "p99")))
        lines += [f"**Ranking cost**, ms per search (`ranker.json`, {cost.get('reps', '–')} repetitions; the run's "
                  f"verdict on its target: {cost.get('target', 'not recorded')}):", "", *table(heads, rows),
                  ""]  # fmt: skip
    search = (ranker.get("search") or {}).get("rows") or {}
    if search:
        rows = [[name, r.get("setup"), r.get("n"), num(r.get("p50_ms"), 1), num(r.get("p99_ms"), 1)]
                for name, r in search.items()]  # fmt: skip
        lines += ["Searches before and after the ranker (`ranker.json`):", "",
                  *table(("row", "setup", "n", "p50 ms", "p99 ms"), rows), ""]  # fmt: skip
    return lines


def section(
    runs: Sequence[RegretRun], latency: Mapping[str, Any] | None, ranker: Mapping[str, Any] | None
) -> list[str]:
    """Question 4."""
    lines = ["## 4. At what latency?", ""]
    for run in runs:
        lines += run_section(run)
    if latency is not None:
        lines += [f"**`scripts/bench.py`** (`latency.json`, {latency.get('date', 'undated')}):", "",
                  *latency_table(latency), ""]  # fmt: skip
    tp = throughput(latency)
    if tp:
        lines += ["Throughput per number of concurrent callers:", "",
                  *table(("callers", "setup", "req/s", "p50 ms", "p99 ms"), tp), ""]  # fmt: skip
    elif not any(run_throughput(r.meta) for r in runs):
        lines += ["Throughput at 1 and 16 callers: not measured in this run.", ""]
    return lines + (ranking_cost(ranker) if ranker is not None else [])


def scale_section(scale: Mapping[str, Any] | None, path: str, plot: str | None = None) -> list[str]:
    """The scale section: :func:`ltrr.sim.scale.render_md` of ``scale.json`` under this report's heading, its plot
    at ``plot`` (relative to this report; left out when None), or one line saying it was not run."""
    lines = ["## Scale", ""]
    if scale is None:
        return lines + [f"`make bench-scale` was not run: there is no `{path}`.", ""]
    body = sc.render_md({**scale, "plot": plot}).splitlines()[1:]  # without its own title
    return lines + [("#" + ln) if ln.startswith("## ") else ln for ln in body] + [""]
