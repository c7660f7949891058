"""Questions 2 and 3 of the benchmark report, both on what the users saw: does the ranker beat RRF, and does ltrr
beat the peers? Pure.

* **2**: ``ranker.json``'s held-out table (each ranx metric it holds, for RRF and for each ranker) and its
  click-trained models; then each run's final lists on the same candidates, every strategy at max in the served
  ranker's and in RRF's order (:func:`ltrr.sim.report.final_scores`).
* **3**: each run's final lists of ltrr live, the peers (the contenders whose answers were timed), the in-loop
  learners and each strategy alone; nDCG@10 per query kind; the kinds where a peer beats live; each peer family
  as the run recorded it (``meta.peers``) and each absent one with the reason it recorded.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ltrr.sim.benchreport.inputs import ALONE, RegretRun, code, num, opening, peer_families, ratio, table
from ltrr.sim.inloop import INLOOP_PREFIX
from ltrr.sim.report import ALL_MAX_RANKER, ALL_MAX_RRF, LIVE, STATIC_RANKER, VW_PREFIX

#: ``ranker.json``'s metric keys, in table order, with their labels.
RANKER_METRICS = (("hit_rate@10", "hit@10"), ("mrr@10", "MRR@10"), ("ndcg@10", "nDCG@10"))


def ranker_metrics(ranker: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """The ``(key, label)`` of :data:`RANKER_METRICS` that ``ranker.json``'s held-out table holds, and the labels
    of those it lacks."""
    by_kind: Mapping[str, Any] = (ranker.get("quality") or {}).get("by_kind") or {}
    cells = list(by_kind.values())
    first: Mapping[str, Any] = cells[0].get("rrf", {}) if cells else {}
    return [(k, lb) for k, lb in RANKER_METRICS if k in first], [lb for k, lb in RANKER_METRICS if k not in first]


def ranker_table(ranker: Mapping[str, Any]) -> list[str]:
    """``ranker.json``'s held-out table: per query kind, each metric it holds for RRF and each ranker, and the
    ranker's nDCG@10 over RRF's."""
    by_kind = (ranker.get("quality") or {}).get("by_kind") or {}
    if not by_kind:
        return ["`ranker.json` holds no held-out table (`quality.by_kind`)."]
    rankers = ["rrf", *(k for k in next(iter(by_kind.values())) if k != "rrf")]
    metrics, _ = ranker_metrics(ranker)
    heads = ["kind", "searches", *(f"{lb} {r}" for _, lb in metrics for r in rankers)]
    heads += [f"nDCG@10 {r} / rrf" for r in rankers[1:]]
    rows = []
    for kind, cell in by_kind.items():
        row = [kind, num(cell["rrf"].get("searches"), 0)]
        row += [num(cell[r].get(k)) for k, _ in metrics for r in rankers]
        rows.append(row + [ratio(cell[r].get("ndcg@10"), cell["rrf"].get("ndcg@10")) for r in rankers[1:]])
    return table(heads, rows)


def clicks_table(ranker: Mapping[str, Any]) -> list[str]:
    """``ranker.json``'s models trained on simulated clicks, on the same held-out searches (``clicks.table``)."""
    models = (ranker.get("clicks") or {}).get("table") or {}
    rows = [[name, num(m.get("ndcg@10")), num(m.get("mrr@10")), num(m.get("train_s"), 1)] for name, m in models.items()]
    return table(("ranker", "nDCG@10", "MRR@10", "train s"), rows) if rows else []


def ranker_section(runs: Sequence[RegretRun], ranker: Mapping[str, Any] | None) -> list[str]:
    """Question 2."""
    lines = ["## 2. Does the ranker beat RRF?", ""]
    if ranker is not None:
        q = ranker.get("quality") or {}
        model = q.get("model") or {}
        lines += [f"**On held-out predicted queries** ({code((ranker.get('meta') or {}).get('command', ''))}): "
                  f"{q.get('queries', '–')} queries, {q.get('found', '–')} searches with a relevant entity in their "
                  f"union, the whole union ranked; model {model.get('version', '–')}, loss {model.get('loss', '–')}.",
                  "", *ranker_table(ranker), ""]  # fmt: skip
        clicks = clicks_table(ranker)
        if clicks:
            lines += ["Models trained on simulated clicks, on the same held-out searches:", "", *clicks, ""]
    else:
        lines += ["No ranker bench was given.", ""]
    for run in runs:
        f = run.final()
        if ALL_MAX_RRF not in f:
            continue
        rrf = f[ALL_MAX_RRF].ndcg
        rows = [[n, f"{f[n].queries:,}", num(f[n].hit), num(f[n].mrr), num(f[n].ndcg), ratio(f[n].ndcg, rrf)]
                for n in (LIVE, STATIC_RANKER, ALL_MAX_RANKER, ALL_MAX_RRF) if n in f]  # fmt: skip
        lines += [f"**Final lists of run {run.title}**, ranx over the top 10 shown (every strategy at max: the same "
                  "candidates in two orders):", "",
                  *table(("list", "queries", "hit@10", "MRR@10", "nDCG@10", "nDCG@10 / RRF order"), rows),
                  ""]  # fmt: skip
    return lines


def peers_of(run: RegretRun) -> list[str]:
    """The peers that answered in a run: every contender whose answers were timed, but live."""
    return [f.contender for f in run.finals if f.p50_ms is not None and f.contender != LIVE]


def absent_peers(run: RegretRun) -> list[str]:
    """One line per peer family the run left out, with the reason it recorded; one line for a run without peers."""
    fams = peer_families(run.meta)
    if not fams:
        return [f"no peer: the run recorded `peers: {run.meta.get('peers', 'not recorded')}`"]
    return [f"peer {fam}: {code(text)}" for fam, text in fams.items() if text.startswith("left out")]


def absent_vw(run: RegretRun) -> str | None:
    """Why a run has no VW learner, as its meta says; None when it has one."""
    if any(n.startswith(VW_PREFIX) for n in run.scored.trajectories):
        return None
    said = [f"`{k}: {v}`" for k, v in run.meta.items() if k.startswith("VW") and isinstance(v, str)]
    return "no VW learner" + (": the run recorded " + ", ".join(said) if said else "")


def peers_section(run: RegretRun) -> list[str]:
    """Question 3 for one run."""
    lines = [f"### Run {run.title}", ""]
    f = run.final()
    if LIVE not in f:
        return lines + ["The run kept no final lists.", ""]
    peers = peers_of(run)
    learned = [n for n in f if n.startswith((VW_PREFIX, INLOOP_PREFIX))]
    names = [LIVE, *peers, *learned, *(n for n in f if n.endswith(ALONE))]
    rows = [[n, f"{f[n].queries:,}", num(f[n].hit), num(f[n].mrr), num(f[n].ndcg), num(f[n].recall),
             num(f[n].p50_ms, 1), num(f[n].p99_ms, 1)] for n in names]  # fmt: skip
    lines += [*table(("contender", "queries", "hit@10", "MRR@10", "nDCG@10", "recall@100", "p50 ms", "p99 ms"), rows),
              ""]  # fmt: skip
    best_vw = max((n for n in learned if n.startswith(VW_PREFIX)), key=lambda n: f[n].ndcg, default=None)
    kinds = list(f[LIVE].ndcg_by_kind)
    shown = [LIVE, *peers, *([best_vw] if best_vw else [])]
    rows = [[n, *(num(f[n].ndcg_by_kind.get(k)) for k in kinds)] for n in shown]
    lines += ["nDCG@10 per query kind:", "", *table(("contender", *kinds), rows), ""]
    if peers:
        best = max(peers, key=lambda n: f[n].ndcg)
        lines.append(f"- **ltrr live / best peer** ({best}), nDCG@10: {num(f[LIVE].ndcg)} against {num(f[best].ndcg)}, "
                     f"{ratio(f[LIVE].ndcg, f[best].ndcg)}.")  # fmt: skip
        beaten = []
        for k in kinds:
            top = max(peers, key=lambda n: f[n].ndcg_by_kind.get(k) or 0.0)
            mine, theirs = f[LIVE].ndcg_by_kind.get(k), f[top].ndcg_by_kind.get(k)
            if mine is not None and theirs is not None and theirs > mine:
                beaten.append(f"{k} ({top} {num(theirs)} against {num(mine)})")
        lines.append("- **Kinds where a peer beats ltrr live**: " + ("; ".join(beaten) or "none") + ".")
    if best_vw:
        lines.append(f"- **ltrr live / best VW list** ({best_vw}), nDCG@10: {ratio(f[LIVE].ndcg, f[best_vw].ndcg)}.")
    lines += [f"- **{fam}**, as the run recorded it: {text}" for fam, text in peer_families(run.meta).items()]
    lines += [f"- **Absent**: {a}." for a in [*absent_peers(run), absent_vw(run)] if a]
    if not run.fullinfo:
        lines.append("- No full-information log was read: no recall@100 of the peers, no single-strategy lists.")
    if run.lists_plot:
        lines += ["", f"![nDCG@10 of every final list and the latency CDF of the timed ones]({run.lists_plot})"]
    return lines + [""]


def section(runs: Sequence[RegretRun]) -> list[str]:
    """Question 3: each run's final lists."""
    intro = ("Every contender answers the same queries of the same users: hit@10, MRR@10 and nDCG@10 of the top 10 it "
             "showed (ranx), recall@100 of a peer's top 100 (ltrr's candidate recall is in section 1), latency on the "
             "client's clock.")  # fmt: skip
    return opening("## 3. Does ltrr beat the peers?", intro, runs) + [ln for run in runs for ln in peers_section(run)]
