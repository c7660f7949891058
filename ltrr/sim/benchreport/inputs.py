"""What the benchmark report reads (:class:`Inputs`), the re-scoring of a saved regret run, the small parsers of
what the benchmarks recorded as text, and the cell formats every section shares. Pure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ltrr.bandit.actions import ActionSpace
from ltrr.sim.inloop import INLOOP_PREFIX
from ltrr.sim.regret import QueryRecord, Scored, played, score_run
from ltrr.sim.report import LIVE, FinalScore, best_of_family

#: Suffix of the trajectory of one strategy alone at the ladder maximum (:func:`score_saved`).
ALONE = " alone at max"


@dataclass(frozen=True)
class Head:
    """This report's own run: its ``command``, the ``commit`` it ran at, the ``machine`` and the ``date``."""

    command: str
    commit: str
    machine: str
    date: str


@dataclass(frozen=True)
class RegretRun:
    """One regret run: a ``label`` (its folder), the ``path`` read, its JSON ``meta`` and ``summary``, the
    re-scored run (:func:`score_saved`), its final lists' scores (:func:`ltrr.sim.report.final_scores`; empty:
    the run kept none), whether its full-information log was read (``fullinfo``: the peers' recall@100, the best
    static plan's and the single strategies' lists), and its plots, relative to the report: ``plots``,
    ``caption -> path`` (question 1), and ``lists_plot``, its final lists' quality and latency (question 3)."""

    label: str
    path: str
    meta: Mapping[str, Any]
    summary: Mapping[str, Any]
    scored: Scored
    finals: Sequence[FinalScore] = ()
    fullinfo: bool = False
    plots: Mapping[str, str] | None = None
    lists_plot: str | None = None

    @property
    def title(self) -> str:
        """``"`label` (seed N)"``."""
        seed = self.meta.get("seed")
        return f"`{self.label}`" + (f" (seed {seed})" if seed is not None else "")

    def final(self) -> dict[str, FinalScore]:
        """``contender -> its final lists' scores``."""
        return {f.contender: f for f in self.finals}


@dataclass(frozen=True)
class Inputs:
    """Everything :func:`ltrr.sim.benchreport.render` reads. ``paths``: input name (``ranker``, ``latency``,
    ``scale``) -> the path given, for the head and the list of what is missing; ``missing_runs``: the ``--regret``
    paths that held no ``regret.json``; ``scale_plot``: ``scale.json``'s plot, relative to the report (None: none);
    ``notes``: what the reader found wrong with an input, one line each."""

    head: Head
    runs: Sequence[RegretRun] = ()
    ranker: Mapping[str, Any] | None = None
    latency: Mapping[str, Any] | None = None
    scale: Mapping[str, Any] | None = None
    paths: Mapping[str, str] | None = None
    missing_runs: Sequence[str] = ()
    scale_plot: str | None = None
    notes: Sequence[str] = ()


# -- a saved regret run ------------------------------------------------------------------------------------------


def score_saved(space: ActionSpace, data: Mapping[str, Any], default_k: Mapping[str, int] | None = None) -> Scored:
    """The run of ``data`` (a ``regret.json``) scored again at its own mean strategy latencies
    (``summary.latency_ms``, what the run priced every action with), plus ``"<strategy> alone at max"``: each
    strategy alone at the ladder maximum on every query."""
    records = [QueryRecord.from_dict(d) for d in data["records"]]
    latency = (data.get("summary") or {}).get("latency_ms") or None
    scored = score_run(space, records, latency_ms=latency, default_k=default_k)
    top, t = space.ladder[-1], len(records)
    alone = {
        f"{s}{ALONE}": played(space, scored.hits, space.costs, np.full(t, space.action_for_budgets({s: top})))
        for s in space.strategies
    }
    return replace(scored, trajectories={**scored.trajectories, **alone})


def summary_mismatch(scored: Scored, summary: Mapping[str, Any], tol: float = 1e-6) -> list[str]:
    """``"<policy>: <re-scored> here, <saved> in the run's summary"`` for each policy of the run's own summary
    (``summary.overall``) whose cumulative regret the re-scoring does not reproduce (a changed ladder or cost)."""
    mine = {s.policy: s.regret for s in scored.table()}
    out = []
    for row in summary.get("overall", []):
        got = mine.get(row["policy"])
        if got is None or abs(got - row["regret"]) > tol * max(1.0, abs(row["regret"])):
            out.append(f"{row['policy']}: {num(got)} here, {num(row['regret'])} in the run's summary")
    return out


def run_costs(meta: Mapping[str, Any]) -> dict[str, float]:
    """The cost coefficients a run recorded, ``meta["costs"]`` (``"per_call 0.01, per_candidate 0.0002, ..."``)."""
    out = {}
    for part in str(meta.get("costs", "")).split(","):
        name, _, value = part.strip().partition(" ")
        if name and value:
            out[name] = float(value)
    return out


def peer_families(meta: Mapping[str, Any]) -> dict[str, str]:
    """``family -> what the run recorded of it`` from ``meta["peers"]`` (``"meili: ...; milvus: left out: ..."``);
    empty for ``"none"`` and for a run without the key."""
    text = str(meta.get("peers", "none"))
    if text == "none":
        return {}
    parts = re.split(r"(?:^|; )([a-z][a-z0-9_]*): ", text)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def machine_line(cores: int | None, cpuinfo: str, meminfo: str) -> str:
    """``"2 cores, AMD EPYC, 23.5 GiB RAM"`` from the core count and the texts of ``/proc/cpuinfo`` (its first
    ``model name``) and ``/proc/meminfo`` (``MemTotal``); a part it cannot read is said so."""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    total = re.search(r"^MemTotal:\s*(\d+) kB$", meminfo, re.MULTILINE)
    ram = f"{int(total.group(1)) / 2**20:.1f} GiB RAM" if total else "RAM unknown"
    return f"{cores or 'unknown'} cores, {model.group(1).strip() if model else 'CPU model unknown'}, {ram}"


def callers_of(setup: str) -> int | None:
    """How many callers a ``latency.json`` row ran with: ``"... sequential ..."`` 1, ``"... 16 concurrent ..."``
    16, else None."""
    m = re.search(r"\b(\d+) concurrent\b", setup)
    if m:
        return int(m.group(1))
    return 1 if re.search(r"\bsequential\b", setup) else None


# -- plot data ---------------------------------------------------------------------------------------------------


def rolling(x: np.ndarray, window: int) -> np.ndarray:
    r"""Trailing mean, shape ``(T,)``: :math:`m_t = \frac{1}{t - l_t} \sum_{l_t < u \le t} x_u` with
    :math:`l_t = \max(0, t - w)`, so the first ``window - 1`` values average what there is so far."""
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=float))])
    t = np.arange(1, len(c))
    lo = np.maximum(t - window, 0)
    return (c[t] - c[lo]) / (t - lo)


def learners(scored: Scored, families: Mapping[str, str]) -> list[str]:
    """The learning contenders of a run, as its plots draw them: live, the in-loop ltrr policies, and the best
    VW config of each exploration family (:func:`ltrr.sim.report.best_of_family`)."""
    names = [n for n in scored.trajectories if n == LIVE or n.startswith(INLOOP_PREFIX)]
    return names + sorted(best_of_family(scored, families).values())


def rolling_series(scored: Scored, names: Iterable[str], field: str, window: int) -> dict[str, np.ndarray]:
    """``name -> rolling(trajectory.<field>, window)``, ``field`` one of ``hit``, ``calls``, ``candidates``."""
    return {n: rolling(getattr(scored.trajectories[n], field), window) for n in names}


# -- cells -------------------------------------------------------------------------------------------------------


def num(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals and thousands separators; an en dash for None or NaN."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    """``a / b``, ``"0.92×"``; an en dash when either is missing or ``b`` is 0."""
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def code(x: object) -> str:
    """``x`` as inline code, safe in a table cell."""
    return "`" + str(x).replace("|", "\\|") + "`"


def budgets(b: Mapping[str, int]) -> str:
    """``"lexical 25 + graph 100"``."""
    return " + ".join(f"{s} {k}" for s, k in b.items() if k) or "nothing"


def table(heads: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table as lines, numbers right-aligned (None cells print as an en dash)."""
    rows = [list(r) for r in rows]
    right = [bool(rows) and all(isinstance(r[i], (int, float)) or _numeric(r[i]) for r in rows)
             for i in range(len(heads))]  # fmt: skip
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    return lines + [table_row(r) for r in rows]


def table_row(cells: Sequence[object]) -> str:
    """One row of :func:`table` (None cells print as an en dash)."""
    return "| " + " | ".join("–" if c is None else str(c) for c in cells) + " |"


def _numeric(cell: object) -> bool:
    return cell is None or bool(re.fullmatch(r"[–\d.,×%+-]+( / [\d.,]+)?", str(cell)))


def opening(heading: str, intro: str, runs: Sequence[RegretRun]) -> list[str]:
    """A section's heading and introduction, and a line saying so when there is no regret run."""
    return [heading, "", intro, "", *(["No regret run was given.", ""] if not runs else [])]


def regret_of(scored: Scored, name: str, rows: slice) -> float:
    """The cumulative regret of ``name`` over ``rows``."""
    return next(s.regret for s in scored.table(rows) if s.policy == name)


def windows(t: int) -> list[tuple[str, str, slice]]:
    """``(name, heading, rows)`` of all queries, the second half and the last quarter (at least one query)."""
    half, quarter = t // 2, t - max(1, t // 4)
    return [
        ("all", f"regret, all {t:,}", slice(None)),
        ("2nd half", f"2nd half ({half + 1:,}–{t:,})", slice(half, None)),
        ("last quarter", f"last quarter ({quarter + 1:,}–{t:,})", slice(quarter, None)),
    ]
