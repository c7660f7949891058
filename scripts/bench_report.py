#!/usr/bin/env python
"""`make bench`, its last step: ``docs/benchmarks.md`` generated from the benchmarks' outputs (issue 10, "The proof").

Reads what the steps before it wrote, each path a flag with the default ``make bench`` produces:

* ``--regret`` (repeatable, default ``bench-out``): a folder holding ``regret.json`` of
  ``scripts/bench_regret.py`` (or the file itself), and beside it ``regret-fullinfo.jsonl.gz`` when it is there
  (the peers' recall@100, the best static plan's and the single strategies' lists). Several runs, e.g.
  ``--regret bench-out/regret --regret bench-out/regret-seed1``, are reported side by side with mean and spread.
  Each run is re-scored (``ltrr.sim.benchreport.score_saved``) on its own ladder and costs (``meta.inloop_policy``
  when it saved it, else ``--config``'s ladder with the costs in ``meta.costs``) at its own strategy latencies;
* ``--ranker`` (``bench-out/ranker.json``, ``scripts/bench_ranker.py``), ``--latency`` (``bench-out/latency.json``,
  ``scripts/bench.py``) and ``--scale`` (``bench-out/scale/scale.json``, ``make bench-scale``, not part of
  ``make bench``). A missing input is said in the report, not fatal.

Writes ``--out`` (``docs/benchmarks.md``; rendered by the pure ``ltrr.sim.benchreport``) and its plots into
``--plots-dir`` (the folder of ``--out``), named ``<out stem>-<run>-<plot>.png``: per run the cumulative regret
(``scripts/bench_regret.py``'s plot), the candidate recall, and the strategy calls and candidates per query, each
a trailing mean over ``--window`` queries, of every learning contender; the final lists' nDCG@10 and latency CDF;
and a copy of the scale plot. Runs nothing against a server; reads the commit with ``git rev-parse`` and
``git status`` only. Relative paths are taken from the repository root (like ``scripts/bench_regret.py``'s).

``--only scale`` re-renders the Scale section alone (``ltrr.sim.benchreport.update``), for a new
``make bench-scale`` run when the other outputs are gone (``bench-out/`` is not in git): it reads ``--scale`` and
the report already at ``--out``, replaces its ``## Scale`` section (up to the next ``## `` heading) and the scale
row of its table of inputs, adds a head line ``Scale section regenerated: <date>, commit <commit>, by <command>``
(the head's command, commit and date stay those of the whole report's run), drops "scale: `make bench-scale` was
not run" from what the run does not show, copies the scale plot as above, and keeps every other byte. It reads
no other input and fails (exit 1, the file untouched) when ``--out`` or ``--scale`` is missing or the report has
no such section. Sections 2 and 4 (ranker, latency) also read the regret runs, so they have no ``--only``.

``--keep scale`` is the converse (``ltrr.sim.benchreport.keep``): the whole report rendered again from the other
inputs, with the Scale section, its row of the table of inputs and its plot carried over from the report already
at ``--out``, for a new ``make bench`` when the scale run's ``scale.json`` is gone; the head says so in a line
``Scale section kept: from the previous report, ...``. It fails (exit 1, the file untouched) when ``--out`` is
missing or has no such section, and when there is a scale input at ``--scale`` (render it instead).

    .venv/bin/python scripts/bench_report.py [--regret bench-out ...] [--ranker bench-out/ranker.json]
        [--latency bench-out/latency.json] [--scale bench-out/scale/scale.json] [--out docs/benchmarks.md]
        [--plots-dir DIR] [--window 100] [--config deployments/serve_config.yaml]
    .venv/bin/python scripts/bench_report.py --only scale [--scale bench-out/scale/scale.json]
        [--out docs/benchmarks.md] [--plots-dir DIR]
    .venv/bin/python scripts/bench_report.py --keep scale [--regret bench-out ...] [the other inputs as above]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_regret import derived_lists, plot, plot_final, save_lines, style_of  # noqa: E402

from ltrr.appconfig_io import load_app_config  # noqa: E402
from ltrr.bandit.actions import ActionSpace  # noqa: E402
from ltrr.bandit.config import CostConfig  # noqa: E402
from ltrr.config import AppConfig  # noqa: E402
from ltrr.sim import benchreport as br  # noqa: E402
from ltrr.sim.regret import ALL_MAX, ORACLE, STATIC, Scored  # noqa: E402
from ltrr.sim.report import final_scores  # noqa: E402
from ltrr.sim.vw import DEFAULT_GRID  # noqa: E402

FAMILIES = {s.name: s.family for s in DEFAULT_GRID}


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def commit() -> str:
    """``git rev-parse --short HEAD``, ``+dirty`` when ``git status --porcelain`` lists anything (read-only)."""
    asks = (("rev-parse", "--short", "HEAD"), ("status", "--porcelain"))
    try:
        sha, status = (
            subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
            for a in asks
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return (sha or "unknown") + ("+dirty" if status else "")


def this_machine() -> str:
    """Cores, CPU model (``/proc/cpuinfo``) and RAM (``/proc/meminfo``)."""

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    return br.machine_line(os.cpu_count(), read("/proc/cpuinfo"), read("/proc/meminfo"))


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run_space(cfg: AppConfig, data: dict[str, Any]) -> tuple[ActionSpace, dict[str, int] | None]:
    """The run's action space: its strategies (``summary.latency_ms``), ladder and costs (module docstring), and
    every strategy's default k when each is on that ladder."""
    meta, policy = data.get("meta") or {}, (data.get("meta") or {}).get("inloop_policy") or {}
    strategies = list((data.get("summary") or {}).get("latency_ms") or cfg.enabled())
    ladder = policy.get("ladder") or cfg.policy.ladder
    if policy.get("costs"):
        costs = CostConfig.model_validate(policy["costs"])
    else:
        costs = cfg.policy.costs.model_copy(update=br.run_costs(meta))
    default_k = {n: s.default_k for n, s in cfg.enabled().items() if n in strategies}
    if len(default_k) != len(strategies) or any(k not in ladder for k in default_k.values()):
        default_k = {}
    return ActionSpace.build(strategies, ladder, costs), default_k or None


def plot_rolling(
    series: dict[str, np.ndarray], path: Path, ylabel: str, title: str, start: int = 1, mark: int | None = None
) -> None:
    """One line per series against the queries seen, from query ``start`` on; ``mark``: a drift's first query."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, ys in series.items():
        ax.plot(np.arange(start, len(ys) + 1), ys[start - 1 :], label=name, **style_of(name))
    if mark is not None:
        ax.axvline(mark + 1, ls="-.", color="0.3", label=f"drift (query {mark + 1})")  # queries seen count from 1
    save_lines(fig, ax, path, ("queries seen", ylabel), title, "best")


def plot_effort(scored: Scored, names: list[str], window: int, path: Path) -> None:
    """Strategy calls (top) and candidates (bottom) per query, trailing means, of ``names``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    for field, ax in (("calls", top), ("candidates", bottom)):
        for name, ys in br.rolling_series(scored, names, field, window).items():
            ax.plot(np.arange(1, len(ys) + 1), ys, label=name, **style_of(name))
    top.set_ylabel(f"strategy calls per query, mean of the last {window}")
    top.set_title("What each learner spends per query over the run (full information)")
    top.grid(alpha=0.3)
    labels = ("queries seen", f"candidates per query, mean of the last {window}")
    save_lines(fig, bottom, path, labels, "", "upper right")


def draw(
    run: br.RegretRun, derived: dict[str, Any], stem: str, plots_dir: Path, out_dir: Path, window: int
) -> br.RegretRun:
    """The run's plots (module docstring), with their paths relative to the report; ``derived``: the lists read
    from its full-information log."""
    s = run.scored
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", run.label).strip("-") or "run"
    path = {k: plots_dir / f"{stem}-{slug}-{k}.png" for k in ("regret", "recall", "effort", "lists")}
    learning = br.learners(s, FAMILIES)
    plot(replace(s, trajectories={n: t for n, t in s.trajectories.items() if not n.endswith(br.ALONE)}),
         path["regret"])  # fmt: skip
    refs = [n for n in (STATIC, ALL_MAX) if n in s.trajectories]
    recall = br.rolling_series(s, [*learning, *refs], "hit", window)
    ylabel = f"candidate recall, mean of the last {window} queries"
    start = min(window, len(s.records))  # full windows only: a mean of a few 0/1 hits is noise
    at = (run.meta.get("drift_plan") or {}).get("at")
    drift = int(at) if at is not None else None
    title = f"Candidate recall over run {run.label}" + ("" if drift is None else ", through its drift")
    plot_rolling(recall, path["recall"], ylabel, title, start, mark=drift)
    plot_effort(s, [*learning, *(n for n in (STATIC, ORACLE) if n in s.trajectories)], window, path["effort"])
    rel = {k: os.path.relpath(p, out_dir) for k, p in path.items()}
    plots = {
        f"cumulative regret against queries seen, run {run.label}": rel["regret"],
        f"candidate recall, mean of the last {window} queries, run {run.label}"
        + ("" if drift is None else f" (the drift's recovery: the shift at query {drift + 1})"): rel["recall"],
        f"strategy calls and candidates per query, mean of the last {window} queries, run {run.label}": rel["effort"],
    }
    lists_plot = None
    if run.finals:
        plot_final(list(s.records), derived, path["lists"])
        lists_plot = rel["lists"]
    return replace(run, plots=plots, lists_plot=lists_plot)


def load_run(arg: str, label: str, cfg: AppConfig) -> tuple[br.RegretRun, dict[str, Any]] | None:
    """The regret run at ``arg`` (a folder or its ``regret.json``), scored, and the lists of its full-information
    log (empty without one); None when there is no run."""
    path = Path(arg)
    json_path = path / "regret.json" if path.is_dir() or not path.suffix else path
    data = read_json(json_path)
    if data is None:
        return None
    t0 = time.perf_counter()
    space, default_k = run_space(cfg, data)
    scored = br.score_saved(space, data, default_k)
    records = list(scored.records)
    fullinfo = json_path.parent / "regret-fullinfo.jsonl.gz"
    has_final = any(r.final for r in records)
    derived = derived_lists(fullinfo, records, scored.static_budgets()) if has_final and fullinfo.is_file() else {}
    finals = final_scores(records, derived) if has_final else []
    log(f"{json_path}: {len(records)} queries scored in {time.perf_counter() - t0:.0f} s")
    run = br.RegretRun(label, str(json_path), data.get("meta") or {}, data.get("summary") or {}, scored,
                       finals, bool(derived))  # fmt: skip
    return run, derived


def labels(args: Sequence[str]) -> list[str]:
    """Each ``--regret`` run's label: its folder's name, numbered when two share one."""
    names = [Path(a).name if Path(a).is_dir() or not Path(a).suffix else Path(a).parent.name for a in args]
    return [n if names.count(n) == 1 else f"{n}#{names[:i].count(n) + 1}" for i, n in enumerate(names)]


def this_run(argv: Sequence[str]) -> br.Head:
    """This run's command, commit, machine and the time now."""
    return br.Head("scripts/bench_report.py " + shlex.join(argv), commit(), this_machine(),
                   datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))  # fmt: skip


def scale_plot(scale: dict[str, Any] | None, scale_path: Path, plots_dir: Path, out: Path) -> tuple[Path, Path] | None:
    """``(scale.json's plot, where the report's copy of it goes)``; None when the run has no plot file."""
    if scale is None or not scale.get("plot") or not (scale_path.parent / scale["plot"]).is_file():
        return None
    return scale_path.parent / scale["plot"], plots_dir / f"{out.stem}-scale.png"


def only(name: str, args: argparse.Namespace, head: br.Head, out: Path, plots_dir: Path) -> int:
    """``--only name``: that section of the report at ``out`` rendered again from its input (module docstring)."""
    if not out.is_file():
        raise SystemExit(f"--only {name}: there is no report at {out} to update; run without --only to write it")
    scale_path = Path(args.scale)
    scale = read_json(scale_path)
    if scale is None:
        raise SystemExit(f"--only {name}: there is no scale input at {scale_path} (`make bench-scale` writes it)")
    plot = scale_plot(scale, scale_path, plots_dir, out)
    inputs = br.Inputs(head=head, scale=scale, paths={"scale": args.scale},
                       scale_plot=os.path.relpath(plot[1], out.parent) if plot else None)  # fmt: skip
    try:
        text = br.update(out.read_text(), name, inputs)
    except ValueError as exc:
        raise SystemExit(f"--only {name}: {out}: {exc}") from exc
    if plot:
        plots_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(*plot)
    out.write_text(text)
    log(f"updated the {name} section of {out}" + (f" and copied its plot into {plots_dir}" if plot else ""))
    return 0


def kept_from(args: argparse.Namespace, out: Path) -> br.Kept:
    """``--keep name``: the section of the report at ``out`` to carry over, read before anything is rendered."""
    name = args.keep
    if not out.is_file():
        raise SystemExit(f"--keep {name}: there is no report at {out} to keep the section from")
    given = getattr(args, br.SECTIONS[name].input)
    if read_json(Path(given)) is not None:
        raise SystemExit(f"--keep {name}: there is a {name} input at {given}; render it instead of keeping "
                         "the old section")  # fmt: skip
    try:
        return br.kept(out.read_text(), name)
    except ValueError as exc:
        raise SystemExit(f"--keep {name}: {out}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regret", action="append", metavar="DIR", help="a regret run (repeatable; default bench-out)")
    ap.add_argument("--ranker", default="bench-out/ranker.json")
    ap.add_argument("--latency", default="bench-out/latency.json")
    ap.add_argument("--scale", default="bench-out/scale/scale.json")
    ap.add_argument("--config", default=os.environ.get("LTRR_CONFIG", "deployments/serve_config.yaml"),
                    help="the app config whose ladder prices a run that did not save its own")  # fmt: skip
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--plots-dir", default=None, help="where the plots go (default: the folder of --out)")
    ap.add_argument("--window", type=int, default=100, help="queries in the plots' trailing means")
    ap.add_argument("--only", choices=sorted(br.SECTIONS), default=None,
                    help="re-render this section alone in the report already at --out (module docstring)")  # fmt: skip
    ap.add_argument("--keep", choices=sorted(br.SECTIONS), default=None,
                    help="carry this section over from the report already at --out (its input is gone)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.only and args.keep:
        raise SystemExit("--only and --keep exclude each other")
    if args.window < 1:
        raise SystemExit(f"--window must be >= 1, got {args.window}")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    os.chdir(ROOT)
    out = Path(args.out)
    plots_dir = Path(args.plots_dir) if args.plots_dir else out.parent
    if args.only:
        return only(args.only, args, this_run(argv_list), out, plots_dir)
    previous = kept_from(args, out) if args.keep else None
    head = this_run(argv_list)  # before any plot is written: they would make the tree "+dirty"
    plots_dir.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = load_app_config(args.config)
    regret = args.regret or ["bench-out"]
    runs, missing = [], []
    for arg, label in zip(regret, labels(regret), strict=True):
        loaded = load_run(arg, label, cfg)
        if loaded is None:
            missing.append(arg)
        else:
            runs.append(draw(*loaded, out.stem, plots_dir, out.parent, args.window))
    scale = read_json(Path(args.scale))
    plot = scale_plot(scale, Path(args.scale), plots_dir, out)
    if plot:
        shutil.copyfile(*plot)
    inputs = br.Inputs(
        head=head,
        runs=runs,
        ranker=read_json(Path(args.ranker)),
        latency=read_json(Path(args.latency)),
        scale=scale,
        paths={"ranker": args.ranker, "latency": args.latency, "scale": args.scale},
        missing_runs=missing,
        scale_plot=os.path.relpath(plot[1], out.parent) if plot else None,
    )
    text = br.render(inputs, FAMILIES)
    if previous is not None:
        text = previous.into(text)
    out.write_text(text)
    log(f"wrote {out} and its plots in {plots_dir}" + (f", its {args.keep} section kept" if args.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
