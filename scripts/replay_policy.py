"""Replay ltrr's own policy offline on a saved regret-harness run, to compare policy settings fast.

`scripts/bench_regret.py` saves, per query, the context features the live policy saw, every
strategy's full-information candidate list and the user's examination draw. Replaying a policy
on that is what the live system would do with the same users, except that the query memory's
and the class statistics' own evolution is the live run's. Each variant is a PolicyConfig
override (JSON); it decides, its user clicks on its own shown list (its candidates in the served
ranker's order, with the same draw and the run's click model), and it learns from the semi-bandit
rewards of that click: the very step the harness runs its in-loop ltrr policies with
(:class:`ltrr.sim.inloop.InLoopPolicy`, :func:`ltrr.sim.inloop.play`).

    .venv/bin/python scripts/replay_policy.py bench-out/regret [--variant '{"ridge": 1}' ...]

Prints a table of regret against the run's oracle (all queries and the second half) and the
best static plan, and writes replay.md next to the run.

Besides PolicyConfig fields, a variant may set three diagnostic keys:

* ``"_feedback"``: what the replayed policy learns from. ``"click"`` (default: the user's click,
  as live), ``"shown"`` (the wanted item is revealed whenever it is shown in the top 10: no
  examination bias), ``"union"`` (revealed whenever any called strategy retrieved it: no ranking
  censoring at all), ``"none"`` (no learning: the prior alone);
* ``"_features"``: a list of the only context features the policy sees (the others read as 0);
* ``"_position_bias"``: learn through each arm's visibility with this examination exponent
  (:func:`ltrr.bandit.rewards.arm_visibility`), overriding ``position_bias`` (which the replay
  reads like the learner does).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def replay(run: Path, overrides: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    from ltrr.bandit import PolicyConfig
    from ltrr.sim.inloop import FullInfo, InLoopPolicy, play, saved_click_model
    from ltrr.sim.regret import (
        QueryRecord,
        action_hits,
        played,
        rank_matrix,
        reference_trajectories,
        run_latency,
        score,
    )

    doc = json.loads((run / "regret.json").read_text())
    records = [QueryRecord.from_dict(r) for r in doc["records"]]
    with gzip.open(run / "regret-fullinfo.jsonl.gz", "rt") as fh:
        rows = {int(d["index"]): d for d in map(json.loads, fh)}
    overrides = dict(overrides)
    feedback = overrides.pop("_feedback", "click")
    keep = overrides.pop("_features", None)
    eta = overrides.pop("_position_bias", None)  # None: the config's position_bias, as the learner reads clicks
    cfg = PolicyConfig.model_validate({"seed": seed, **overrides})
    strategies = ("lexical", "vector", "graph", "memory")
    member = InLoopPolicy("replay", cfg, strategies, position_bias=eta, reveal=feedback)
    space = member.policy.space
    member.reprice(run_latency(space, records))  # how the harness prices every action
    clicks = saved_click_model(doc.get("meta", {}))  # the click model the run drew its draws for
    actions = []
    for rec in records:
        d = rows[rec.index]
        ctx = d["context"] if keep is None else {k: v for k, v in d["context"].items() if k in keep}
        info = FullInfo(ctx, d["lists"], d.get("order", []), rec.wanted, np.asarray(d["draw"]))
        actions.append(space.action_for_budgets(play(member, info, clicks, space.costs).budgets))
    hits = action_hits(space, rank_matrix(space, records))
    costs = space.costs.copy()
    refs = reference_trajectories(space, hits, costs)
    traj = played(space, hits, costs, actions)
    half = np.arange(len(records)) >= len(records) // 2
    return {
        "all": score("replay", traj, refs["oracle"]),
        "second half": score("replay", traj, refs["oracle"], half),
        "first 200": score("replay", traj, refs["oracle"], np.arange(len(records)) < 200),
        "static all": score("static", refs["best static"], refs["oracle"]),
        "static half": score("static", refs["best static"], refs["oracle"], half),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a bench_regret output directory (regret.json + full-information log)")
    ap.add_argument("--variant", action="append", default=[], help="PolicyConfig overrides as JSON (repeatable)")
    ap.add_argument("--seeds", type=int, default=2, help="decision seeds per variant")
    ap.add_argument("--no-defaults", action="store_true", help="replay only the --variant rows")
    args = ap.parse_args()
    variants = ([] if args.no_defaults else [{}]) + [json.loads(v) for v in args.variant]
    lines = [
        "| variant | regret all | regret 2nd half | first 200 | recall | candidates | calls |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    static = None
    for v in variants:
        res = [replay(args.run, v, seed) for seed in range(args.seeds)]
        static = res[0]
        mean = {k: float(np.mean([r[k].regret for r in res])) for k in ("all", "second half", "first 200")}
        lines.append(
            f"| {json.dumps(v) if v else 'defaults'} | {mean['all']:.1f} | {mean['second half']:.1f} | "
            f"{mean['first 200']:.1f} | {np.mean([r['all'].recall for r in res]):.3f} | "
            f"{np.mean([r['all'].candidates for r in res]):.0f} | {np.mean([r['all'].calls for r in res]):.2f} |"
        )
        print(lines[-1], flush=True)
    if static is not None:
        st, half = static["static all"], static["static half"]
        lines.append(
            f"| best static in hindsight | {st.regret:.1f} | {half.regret:.1f} | - | "
            f"{st.recall:.3f} | {st.candidates:.0f} | {st.calls:.2f} |"
        )
        print(lines[-1])
    (args.run / "replay.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
