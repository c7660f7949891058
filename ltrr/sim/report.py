"""Markdown and JSON summaries of a scored regret run (:func:`ltrr.sim.regret.score_run`). Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from ltrr.sim.inloop import INLOOP_PREFIX
from ltrr.sim.metrics import list_metrics
from ltrr.sim.regret import (
    ALL_DEFAULT,
    ALL_MAX,
    ORACLE,
    STATIC,
    UNIFORM,
    PolicyScore,
    QueryRecord,
    Scored,
    drift_windows,
    routing,
)

LIVE = "live"
VW_PREFIX = "vw "
FIRST = 200


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def vw_families(names: Sequence[str], families: Mapping[str, str]) -> dict[str, list[str]]:
    """``family -> [policy names]`` of the VW policies among ``names``."""
    out: dict[str, list[str]] = {}
    for n in names:
        if n in families:
            out.setdefault(families[n], []).append(n)
    return out


def best_of_family(scored: Scored, families: Mapping[str, str]) -> dict[str, str]:
    """``family -> the VW policy with the lowest cumulative regret`` over the whole run."""
    table = {s.policy: s for s in scored.table()}
    return {fam: min(names, key=lambda n: table[n].regret) for fam, names in vw_families(list(table), families).items()}


def score_table(rows: Sequence[PolicyScore]) -> list[str]:
    out = [
        "| policy | regret (cum.) | mean regret | recall | candidates | calls | cost | value |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        out.append(
            f"| {s.policy} | {_f(s.regret, 1)} | {_f(s.mean_regret, 4)} | {_f(s.recall)} | {_f(s.candidates, 1)} | "
            f"{_f(s.calls, 2)} | {_f(s.cost, 4)} | {_f(s.value, 4)} |"
        )
    return out


def _order(names: Sequence[str]) -> list[str]:
    head = [n for n in (ORACLE, LIVE) if n in names]
    vw = sorted(n for n in names if n.startswith(VW_PREFIX))
    tail = [n for n in (STATIC, ALL_DEFAULT, ALL_MAX, UNIFORM) if n in names]
    rest = [n for n in names if n not in head + vw + tail]
    return head + rest + vw + tail


def markdown(scored: Scored, meta: Mapping[str, Any], families: Mapping[str, str]) -> str:
    """The report: run metadata, then the tables (see the module docstring of :mod:`ltrr.sim.regret`)."""
    T = len(scored.records)
    names = _order(list(scored.trajectories))
    by_name = {s.policy: s for s in scored.table()}
    lines = [f"# Regret of the retrieval policy: {T} simulated queries", ""]
    for k, v in meta.items():
        lines.append(f"- **{k}**: {v}")
    lat = ", ".join(f"{s} {ms:.1f} ms" for s, ms in scored.latency_ms.items())
    lines += [
        f"- **latencies pricing every action** (mean `latency_ms` of the live calls): {lat}",
        f"- **best static plan in hindsight**: {scored.static_budgets()}",
        "",
    ]

    def section(title: str, rows: np.ndarray | slice) -> None:
        lines.extend([f"## {title}", ""])
        table = {s.policy: s for s in scored.table(rows)}
        lines.extend(score_table([table[n] for n in names]))
        lines.append("")

    section("All queries", slice(None))
    section(f"Second half (queries {T // 2 + 1}–{T})", slice(T // 2, None))
    section(f"First {min(FIRST, T)} queries", slice(0, FIRST))

    fams = vw_families(names, families)
    if fams:
        lines += ["## Vowpal Wabbit: best and range per exploration family (all queries)", ""]
        lines += [
            "| family | configs | best | best regret | regret range | recall range |",
            "|---|---:|---|---:|---|---|",
        ]
        for fam, members in fams.items():
            rs = [by_name[n] for n in members]
            best = min(rs, key=lambda s: s.regret)
            lines.append(
                f"| {fam} | {len(rs)} | {best.policy} | {_f(best.regret, 1)} | "
                f"{_f(min(s.regret for s in rs), 1)}–{_f(max(s.regret for s in rs), 1)} | "
                f"{_f(min(s.recall for s in rs))}–{_f(max(s.recall for s in rs))} |"
            )
        lines.append("")

    best_vw = list(best_of_family(scored, families).values())
    shown = [n for n in names if not n.startswith(VW_PREFIX)]
    shown = shown[:2] + sorted(best_vw) + shown[2:]
    kinds = scored.kinds()
    lines += ["## Recall per query kind", "", "| kind | n | " + " | ".join(shown) + " |"]
    lines.append("|---|---:|" + "---:|" * len(shown))
    for kind in kinds:
        rows = scored.kind_rows(kind)
        cells = [_f(float(scored.trajectories[n].hit[rows].mean())) for n in shown]
        lines.append(f"| {kind} | {int(rows.sum())} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["## Mean regret per query kind", "", "| kind | " + " | ".join(shown) + " |"]
    lines.append("|---|" + "---:|" * len(shown))
    for kind in kinds:
        rows = scored.kind_rows(kind)
        cells = [_f(float((scored.oracle.value[rows] - scored.trajectories[n].value[rows]).mean()), 4) for n in shown]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("")

    strategies = list(scored.space.strategies)
    for who in [p for p in (LIVE, ORACLE) if p in scored.trajectories]:
        lines += [f"## Routing per query kind: share of queries on which **{who}** called each strategy", ""]
        lines += routing_table(scored, who)
        lines.append("")

    top = scored.space.ladder[-1]
    lines += ["## Full information: share of queries whose wanted item is in each strategy's top k", ""]
    ks = [k for k in scored.space.ladder if k > 0]
    lines += ["| kind | " + " | ".join(f"{s}@{k}" for s in strategies for k in (ks[0], top)) + f" | any@{top} |"]
    lines.append("|---|" + "---:|" * (2 * len(strategies) + 1))
    for kind in [*kinds, "all"]:
        rows = scored.kind_rows(kind) if kind != "all" else np.ones(T, dtype=bool)
        r = scored.ranks[rows]
        cells = [_f(float((r[:, i] <= k).mean()), 2) for i in range(len(strategies)) for k in (ks[0], top)]
        cells.append(_f(float((r <= top).any(axis=1).mean()), 2))
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def routing_table(scored: Scored, who: str) -> list[str]:
    """Markdown rows: per query kind (then ``all``), the share of queries on which the played policy
    ``who`` called each strategy, and its mean calls and candidates."""
    strategies = list(scored.space.strategies)
    tr = scored.trajectories[who]
    lines = ["| kind | " + " | ".join(strategies) + " | calls | candidates |"]
    lines.append("|---|" + "---:|" * (len(strategies) + 2))
    for kind in [*scored.kinds(), "all"]:
        rows = scored.kind_rows(kind) if kind != "all" else np.ones(len(scored.records), dtype=bool)
        share = routing(scored.space, tr, rows)
        lines.append(
            f"| {kind} | "
            + " | ".join(_f(share[s], 2) for s in strategies)
            + f" | {_f(float(tr.calls[rows].mean()), 2)} | {_f(float(tr.candidates[rows].mean()), 1)} |"
        )
    return lines


def summary(scored: Scored) -> dict[str, Any]:
    """The tables as JSON: overall, second half, first 200, per kind."""
    T = len(scored.records)
    out: dict[str, Any] = {
        "latency_ms": dict(scored.latency_ms),
        "best_static": scored.static_budgets(),
        "overall": [s.to_dict() for s in scored.table()],
        "second_half": [s.to_dict() for s in scored.table(slice(T // 2, None))],
        "first_200": [s.to_dict() for s in scored.table(slice(0, FIRST))],
        "per_kind": {k: [s.to_dict() for s in scored.table(scored.kind_rows(k))] for k in scored.kinds()},
    }
    if LIVE in scored.trajectories:
        out["routing_live"] = {
            k: routing(scored.space, scored.trajectories[LIVE], scored.kind_rows(k)) for k in scored.kinds()
        }
    return out


# -- a drift mid-run ---------------------------------------------------------------------------------


def drift_section(scored: Scored, at: int, new_entities: Collection[str] = ()) -> list[str]:
    """Markdown: every contender's mean regret and recall in the windows around a drift at query
    index ``at`` (:func:`ltrr.sim.regret.drift_windows`); with ``new_entities`` (the ids upserted at
    the drift) also its recall on the queries from ``at`` on that want one of them."""
    windows = drift_windows([r.index for r in scored.records], at)
    names = [n for n in _order(list(scored.trajectories)) if n != ORACLE]
    spans = [f"{w.name} ({w.first}–{w.last})" for w in windows]
    fresh = set(new_entities)
    new = np.array([r.index >= at and r.wanted in fresh for r in scored.records])
    lines = [f"## Drift at query index {at}: mean regret and recall before and after", ""]
    if new_entities:
        lines += [f"{len(fresh)} new entities upserted before query {at}; {int(new.sum())} queries want one.", ""]
    head = [f"mean regret {s}" for s in spans] + [f"recall {s}" for s in spans]
    head += ["recall, new entities"] if new_entities else []
    lines += ["| policy | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for n in names:
        tr = scored.trajectories[n]
        cells = [_f(float((scored.oracle.value[w.rows] - tr.value[w.rows]).mean()), 4) for w in windows]
        cells += [_f(float(tr.hit[w.rows].mean())) for w in windows]
        if new_entities:
            cells.append(_f(float(tr.hit[new].mean())) if new.any() else "–")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


# -- the final lists: what each contender's user saw -------------------------------------------------

ALL_MAX_RANKER = "all at max, served ranker's order"
ALL_MAX_RRF = "all at max, RRF order"
STATIC_RANKER = "best static, served ranker's order"


@dataclass(frozen=True)
class FinalScore:
    """One contender's final lists over a run (:func:`final_scores`): how many queries it answered, its
    hit@10, MRR@10 and nDCG@10 (ranx); ``recall`` at the depth of its ``"<name> (top N)"`` list (None
    without one); the p50 and p99 of its wall-clock latency (None where not timed); and nDCG@10 per
    query kind (None for a kind it answered no query of)."""

    contender: str
    queries: int
    hit: float
    mrr: float
    ndcg: float
    recall: float | None
    p50_ms: float | None
    p99_ms: float | None
    ndcg_by_kind: Mapping[str, float | None]


def final_scores(
    records: Sequence[QueryRecord],
    derived: Mapping[str, Mapping[int, Sequence[str]]] = {},  # noqa: B006 - read only
) -> list[FinalScore]:
    """Every contender's :class:`FinalScore`, in report order. ``derived`` adds contenders the loop did
    not play (query index -> list); a ``"<name> (top N)"`` entry only gives ``<name>`` its recall@100."""
    lists: dict[str, dict[int, Sequence[str]]] = {}
    for r in records:
        for c, ids in r.final.items():
            lists.setdefault(c, {})[r.index] = ids
    deep = {n.rsplit(" (top ", 1)[0]: v for n, v in derived.items() if n.endswith(")") and " (top " in n}
    for n, v in derived.items():
        if n.rsplit(" (top ", 1)[0] not in deep or not n.endswith(")"):
            lists[n] = dict(v)
    wanted = {str(r.index): r.wanted for r in records}
    latency: dict[str, list[float]] = {}
    for r in records:
        for c, ms in r.latency_ms.items():
            latency.setdefault(c, []).append(ms)
    kinds = sorted({r.kind for r in records})
    by_kind = {k: {str(r.index) for r in records if r.kind == k} for k in kinds}
    out = []
    for n in sorted(lists, key=lambda n: (_final_rank(n), n)):
        mine = {str(i): ids for i, ids in lists[n].items()}
        m = list_metrics(mine, wanted, ("hit_rate@10", "mrr@10", "ndcg@10"))
        rec = None
        if n in deep:
            rec = list_metrics({str(i): ids for i, ids in deep[n].items()}, wanted, ("recall@100",))["recall@100"]
        seen = latency.get(n)
        per_kind: dict[str, float | None] = {}
        for k in kinds:
            sub = {i: ids for i, ids in mine.items() if i in by_kind[k]}
            per_kind[k] = list_metrics(sub, wanted, ("ndcg@10",))["ndcg@10"] if sub else None
        out.append(
            FinalScore(
                n, len(mine), m["hit_rate@10"], m["mrr@10"], m["ndcg@10"], rec,
                float(np.percentile(seen, 50)) if seen else None, float(np.percentile(seen, 99)) if seen else None,
                per_kind,
            )  # fmt: skip
        )
    return out


def final_tables(
    records: Sequence[QueryRecord],
    derived: Mapping[str, Mapping[int, Sequence[str]]] = {},  # noqa: B006 - read only
) -> list[str]:
    """Markdown: hit@10, MRR@10 and nDCG@10 (ranx, :mod:`ltrr.sim.metrics`) of every contender's final
    list, with its recall@100 where it returned that deep and its wall-clock latency where measured;
    then nDCG@10 per query kind (:func:`final_scores`)."""
    scores = final_scores(records, derived)
    lines = [
        "## Final lists: what each contender's user saw (ranx)",
        "",
        "One wanted entity per query: hit@10, MRR@10 and nDCG@10 of the top 10 shown; recall@100 of a peer's",
        "top 100 (ltrr's candidate recall is in the tables above); latency is the client's wall-clock time.",
        "",
        "| contender | queries | hit@10 | MRR@10 | nDCG@10 | recall@100 | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        rec = "" if s.recall is None else _f(s.recall)
        p50, p99 = ("", "") if s.p50_ms is None else (f"{s.p50_ms:.1f}", f"{s.p99_ms:.1f}")
        lines.append(
            f"| {s.contender} | {s.queries} | {_f(s.hit)} | {_f(s.mrr)} | {_f(s.ndcg)} | {rec} | {p50} | {p99} |"
        )
    kinds = sorted({r.kind for r in records})
    lines += ["", "### nDCG@10 per query kind", "", "| contender | " + " | ".join(kinds) + " |",
              "|---|" + "---:|" * len(kinds)]  # fmt: skip
    for s in scores:
        cells = [_f(x) if (x := s.ndcg_by_kind[k]) is not None else "" for k in kinds]
        lines.append(f"| {s.contender} | " + " | ".join(cells) + " |")
    return lines


def _final_rank(name: str) -> int:
    """Report order: ltrr live, its static references, VW, single strategies, then the peers."""
    if name == LIVE:
        return 0
    if name in (STATIC_RANKER, ALL_MAX_RANKER, ALL_MAX_RRF):
        return 1
    if name.startswith(("vw ", INLOOP_PREFIX)):
        return 2
    if name.endswith(" alone at max"):
        return 3
    return 4
