"""Replay ltrr's own policy offline on a saved regret-harness run, to compare policy settings fast.

`scripts/bench_regret.py` saves, per query, the context features the live policy saw, every
strategy's full-information candidate list and the user's examination draw. Replaying a policy
on that is what the live system would do with the same users, except that the query memory's
and the class statistics' own evolution is the live run's. Each variant is a PolicyConfig
override (JSON); it decides, its user clicks on RRF's top 10 of its own candidates (the same
position-based draw), and it learns from the semi-bandit rewards of that click.

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
    from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy
    from ltrr.bandit.prior import load_prior
    from ltrr.bandit.rewards import arm_visibility, semi_bandit_rewards
    from ltrr.sim.clicks import PositionClickModel
    from ltrr.sim.regret import (
        QueryRecord,
        action_hits,
        played,
        rank_matrix,
        reference_trajectories,
        run_latency,
        score,
    )
    from ltrr.sim.vw import shown_list

    doc = json.loads((run / "regret.json").read_text())
    records = [QueryRecord.from_dict(r) for r in doc["records"]]
    with gzip.open(run / "regret-fullinfo.jsonl.gz", "rt") as fh:
        rows = {int(d["index"]): d for d in map(json.loads, fh)}
    overrides = dict(overrides)
    feedback = overrides.pop("_feedback", "click")
    keep = overrides.pop("_features", None)
    eta = overrides.pop("_position_bias", None)  # None: plain updates
    cfg = PolicyConfig.model_validate({"seed": seed, **overrides})
    if eta is None:
        eta = cfg.position_bias  # as the learner reads clicks
    strategies = ("lexical", "vector", "graph", "memory")
    fz = ContextFeaturizer(strategies, ignore=cfg.ignore_features)
    pol = new_policy(cfg, strategies, fz.dim)
    if cfg.prior_path:
        load_prior(cfg.prior_path, strategies, cfg.ladder).install(
            pol.arms, fz.names, cfg.ridge, cfg.prior_hit_rate, cfg.prior_weight
        )
    pol.space.set_latency(run_latency(pol.space, records))  # how the harness prices every action
    clicks = PositionClickModel(eta=1.0, depth=10)
    actions = []
    for rec in records:
        d = rows[rec.index]
        ctx = d["context"] if keep is None else {k: v for k, v in d["context"].items() if k in keep}
        x = fz.vector(ctx)
        dec = pol.select(x)
        lists = {s: d["lists"].get(s, [])[: dec.budgets[s]] for s in strategies if dec.budgets[s] > 0}
        shown = shown_list(lists, dec.budgets, order=d.get("order", []))  # the ranker's order, if recorded
        pos = clicks.click(shown, rec.wanted, np.asarray(d["draw"]))
        ok = dict.fromkeys(lists, True)
        found = (
            pos is not None
            or (feedback == "union" and any(rec.wanted in ids for ids in lists.values()))
            or (feedback == "shown" and rec.wanted in shown)
        )
        rewards = semi_bandit_rewards(dec.budgets, cfg.ladder, lists, ok, rec.wanted if found else None)
        vis = None if eta is None else arm_visibility(dec.budgets, cfg.ladder, lists, ok, shown, float(eta))
        if feedback != "none":
            pol.update(dec, rewards, vis)
        actions.append(dec.action)
    hits = action_hits(pol.space, rank_matrix(pol.space, records))
    costs = pol.space.costs.copy()
    refs = reference_trajectories(pol.space, hits, costs)
    traj = played(pol.space, hits, costs, actions)
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
