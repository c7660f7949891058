r"""Question 1 of the benchmark report: does learning to retrieve beat static retrieval? Pure.

Per run, every contender's regret against the per-query oracle (:mod:`ltrr.sim.regret`) over all queries, the
second half and the last quarter, with its candidate recall, mean candidates and calls over all queries; then
:math:`R_\text{live} / R_\text{best static}` per window (and the in-loop ltrr policies', and live's against the
best VW learner), recall against every strategy at max, and the live routing per query kind. With several
runs, the headline figures side by side with their mean, sample standard deviation (:math:`n - 1`) and range.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ltrr.sim.benchreport.inputs import (
    ALONE,
    RegretRun,
    budgets,
    code,
    num,
    opening,
    ratio,
    regret_of,
    table,
    windows,
)
from ltrr.sim.inloop import INLOOP_PREFIX
from ltrr.sim.regret import ALL_DEFAULT, ALL_MAX, ORACLE, STATIC, UNIFORM, Scored
from ltrr.sim.report import LIVE, VW_PREFIX, best_of_family, drift_section, routing_table


def contenders(scored: Scored) -> list[str]:
    """The row order: the references, each strategy alone, uniform, live, the in-loop ltrr policies, VW."""
    names = list(scored.trajectories)
    head = [n for n in (ORACLE, STATIC, ALL_MAX, ALL_DEFAULT) if n in names]
    alone = [n for n in names if n.endswith(ALONE)]
    tail = [n for n in (UNIFORM, LIVE) if n in names]
    inloop = sorted(n for n in names if n.startswith(INLOOP_PREFIX))
    vw = sorted(n for n in names if n.startswith(VW_PREFIX))
    rest = [n for n in names if n not in head + alone + tail + inloop + vw]
    return head + alone + tail + inloop + vw + rest


def label(scored: Scored, name: str) -> str:
    """A contender's row label, with the budgets of the static plans."""
    top = scored.space.ladder[-1]
    if name == STATIC:
        return f"best static plan in hindsight ({budgets(scored.static_budgets())})"
    if name == ALL_MAX:
        return f"every strategy at max k ({top} each)"
    if name == ALL_DEFAULT:
        actions = scored.trajectories[ALL_DEFAULT].actions
        plan = budgets(scored.space.budgets(int(actions[0]))) if actions is not None else "default k"
        return f"every strategy at its default k ({plan})"
    if name.endswith(ALONE):
        return f"{name} ({top})"
    if name == UNIFORM:
        return "uniform random budgets"
    return "**ltrr live**" if name == LIVE else name


def contender_table(scored: Scored) -> list[str]:
    """Every contender's regret per window, and its recall, candidates and calls over all queries."""
    spans = windows(len(scored.records))
    per = [{s.policy: s for s in scored.table(rows)} for _, _, rows in spans]
    rows = []
    for n in contenders(scored):
        every = per[0][n]
        rows.append([label(scored, n), *(num(t[n].regret, 1) for t in per), num(every.recall),
                     num(every.candidates, 1), num(every.calls, 2)])  # fmt: skip
    return table(("contender", *(h for _, h, _ in spans), "recall", "candidates", "calls"), rows)


def ratios(scored: Scored, name: str, against: str) -> str:
    """``"0.92× over all, 0.87× over 2nd half, ..."``: regret of ``name`` over that of ``against``."""
    spans = windows(len(scored.records))
    return ", ".join(
        f"{ratio(regret_of(scored, name, rows), regret_of(scored, against, rows))} over {w}" for w, _, rows in spans
    )


def learning_section(run: RegretRun, families: Mapping[str, str]) -> list[str]:
    """One run: the contender table, the ratios, recall against every strategy at max, the live routing, the
    drift windows when the run had a drift, and the run's plots."""
    s = run.scored
    lat = ", ".join(f"{k} {v:.1f} ms" for k, v in s.latency_ms.items())
    lines = [f"### Run {run.title}", "", f"- **Command**: {code(run.meta.get('command', 'not recorded'))}",
             f"- **Costs**: {run.meta.get('costs', 'not recorded')}, at the run's mean strategy latencies: {lat}",
             f"- **Queries**: {len(s.records):,}; query mix: {run.meta.get('query mix', 'not recorded')}",
             *(f"- **{k.capitalize()}**: {run.meta[k]}" for k in ("policy", "users", "click model") if run.meta.get(k)),
             "",
             *contender_table(s), ""]  # fmt: skip
    if LIVE in s.trajectories:
        lines.append(f"- **ltrr live / best static plan**, regret: {ratios(s, LIVE, STATIC)}.")
        for n in sorted(n for n in s.trajectories if n.startswith(INLOOP_PREFIX)):
            lines.append(f"- **{n} / best static plan**: {ratios(s, n, STATIC)}.")
        best_vw = sorted(best_of_family(s, families).values(), key=lambda n: regret_of(s, n, slice(None)))
        if best_vw:
            lines.append(f"- **ltrr live / best VW learner** ({best_vw[0]}): {ratios(s, LIVE, best_vw[0])}.")
        t = {p.policy: p for p in s.table()}
        live, top = t[LIVE], t[ALL_MAX]
        half = {p.policy: p for p in s.table(windows(len(s.records))[1][2])}
        h_live, h_top = half[LIVE], half[ALL_MAX]
        lines += [
            f"- **Candidate recall against every strategy at max**: {num(live.recall)} / {num(top.recall)} = "
            f"{live.recall / top.recall:.3f}×, with {ratio(live.candidates, top.candidates)} of its candidates "
            f"({num(live.candidates, 1)} against {num(top.candidates, 1)}); over the 2nd half "
            f"{num(h_live.recall)} / {num(h_top.recall)} = {h_live.recall / h_top.recall:.3f}×.",
            "",
            "Routing of ltrr live per query kind: the share of queries on which it called each strategy.",
            "",
            *routing_table(s, LIVE),
            "",
        ]
    plan = run.meta.get("drift_plan") or {}
    idx = [r.index for r in s.records]
    if plan.get("at") is not None and min(idx) < int(plan["at"]) <= max(idx):
        drift = drift_section(s, int(plan["at"]), plan.get("new_entities") or ())
        lines += [("##" + ln) if ln.startswith("## ") else ln for ln in drift]  # under this run's heading
    for caption, path in (run.plots or {}).items():
        lines += [f"![{caption}]({path})", ""]
    return lines


def _stats(xs: Sequence[float], digits: int, unit: str = "") -> list[str]:
    """Mean, sample standard deviation and range of ``xs``, each with ``unit``."""
    a = np.asarray(xs, dtype=float)
    sd = float(a.std(ddof=1)) if len(a) > 1 else math.nan
    lo, hi = num(float(a.min()), digits) + unit, num(float(a.max()), digits) + unit
    return [num(float(a.mean()), digits) + unit, num(sd, digits), f"{lo}–{hi}"]


def across_runs(runs: Sequence[RegretRun]) -> list[str]:
    """With two runs or more: each contender every run has, its regret over all queries per run, then live's
    ratios to the best static plan per window and its recall against every strategy at max, each with its mean,
    sample standard deviation and range. Empty for fewer runs."""
    if len(runs) < 2:
        return []
    common = [n for n in contenders(runs[0].scored) if n != ORACLE and all(n in r.scored.trajectories for r in runs)]
    rows = []
    for n in common:
        xs = [regret_of(r.scored, n, slice(None)) for r in runs]
        names = {label(r.scored, n) for r in runs}  # a static plan's budgets only where every run chose the same
        rows.append([f"regret, all: {names.pop() if len(names) == 1 else n}", *(num(x, 1) for x in xs), *_stats(xs, 1)])
    if all(LIVE in r.scored.trajectories for r in runs):
        for i, (w, _, _) in enumerate(windows(len(runs[0].scored.records))):
            xs = []
            for r in runs:
                rows_i = windows(len(r.scored.records))[i][2]
                xs.append(regret_of(r.scored, LIVE, rows_i) / regret_of(r.scored, STATIC, rows_i))
            rows.append([f"ltrr live / best static, {w}", *(f"{x:.2f}×" for x in xs), *_stats(xs, 2, "×")])
        for i, (w, _, _) in enumerate(windows(len(runs[0].scored.records))):  # three digits: the target is 0.98×
            xs = []
            for r in runs:
                t = {p.policy: p for p in r.scored.table(windows(len(r.scored.records))[i][2])}
                xs.append(t[LIVE].recall / t[ALL_MAX].recall)
            rows.append([f"ltrr live recall / every strategy at max, {w}", *(f"{x:.3f}×" for x in xs),
                         *_stats(xs, 3, "×")])  # fmt: skip
    heads = ("figure", *(r.title for r in runs), "mean", "sd", "range")
    return ["### Across runs", "", *table(heads, rows), ""]


def section(runs: Sequence[RegretRun], families: Mapping[str, str]) -> list[str]:
    """Question 1: the runs side by side, then each run."""
    intro = ("Regret is against the per-query oracle: a query's value is 1 if the union of the strategies' candidates "
             "holds the wanted entity, minus the run's cost of the calls, and every contender is scored on the same "
             "full-information ranks (`ltrr.sim.regret`). Lower is better.")  # fmt: skip
    per_run = [line for run in runs for line in learning_section(run, families)]
    return opening("## 1. Does learning to retrieve beat static retrieval?", intro, runs) + across_runs(runs) + per_run
