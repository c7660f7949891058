"""Benchmark the retrieval policy: decision and update latency, parameter sync, checkpoints,
and learning curves on the seeded simulator.

    .venv/bin/python scripts/bench_policy.py [--n 5000] [--rounds 3000] [--out bench-out]

Writes bench-out/policy.md, policy.json, policy_latency.png and learning_curve.png.
Times are per call on this machine (2 cores, shared and noisy): read ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STRATEGIES = ("lexical", "vector", "graph", "memory")


def timed(fn: Callable[[], Any], n: int, desc: str) -> dict[str, float]:
    for _ in range(min(200, n)):
        fn()
    us = np.empty(n)
    for i in tqdm(range(n), desc=desc, unit="call", leave=False):
        t = time.perf_counter_ns()
        fn()
        us[i] = (time.perf_counter_ns() - t) / 1000.0
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "n": n}


def a_query():  # type: ignore[no-untyped-def]
    from ltrr.types import ParsedQuery, Query

    parsed = ParsedQuery(
        "artists like radiohead", "", types=("artist",), seed="radiohead", confidence={"type": 0.9, "seed": 0.9}
    )
    return Query("artists like radiohead", parsed, user_id="u1", context={"hour": "21", "weekend": "true"})


def latency(n: int) -> dict[str, dict[str, float]]:
    import torch

    from deployments.rlmodule import BanditRLModule, ModulePlanner
    from ltrr.appconfig_io import load_app_config
    from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy
    from ltrr.bandit.prior import load_prior
    from ltrr.bandit.simulate import Simulator, one_right_strategy
    from ltrr.types import UserProfile

    out: dict[str, dict[str, float]] = {}
    fz = ContextFeaturizer(STRATEGIES, frozenset({"radiohead", "coldplay"}))
    user = UserProfile("u1", top_tags=(("rock", 1.0), ("alternative", 0.8)))
    q = a_query()
    out["features (named dict + vector)"] = timed(
        lambda: fz.vector(fz.features(q, user=user, stats=(12, 5))), n, "features"
    )
    x = fz.vector(fz.features(q, user=user, stats=(12, 5)))
    rewards = {("graph", 10): 1.0, ("graph", 25): 1.0, ("lexical", 10): 0.0, ("memory", 10): 0.0}
    for algo in ("linear_ts", "linucb", "epsilon_greedy", "uniform"):
        cfg = PolicyConfig(algorithm=algo, seed=0)
        pol = new_policy(cfg, STRATEGIES, fz.dim)
        sim = Simulator(pol.space, one_right_strategy(pol.space, 2), n_noise=fz.dim - 2)
        for _ in range(300):  # a trained state, not the prior
            c, xs = sim.context()
            d = pol.select(xs)
            pol.update(d, sim.rewards(c, d.action))
        out[f"select, {algo} (numpy)"] = timed(lambda p=pol: p.select(x), n, f"select {algo}")
        d = pol.select(x)
        out[f"update, {algo} (4 arms)"] = timed(lambda p=pol, d=d: p.update(d, rewards), n, f"update {algo}")
    shipped = load_app_config(ROOT / "deployments/serve_config.yaml").policy  # pairwise overlap, soft labels
    pol = new_policy(shipped, STRATEGIES, fz.dim)
    load_prior(str(ROOT / str(shipped.prior_path)), STRATEGIES, shipped.ladder).install(
        pol.arms, fz.names, shipped.ridge, shipped.prior_hit_rate, shipped.prior_weight
    )
    out["select, shipped config (linear_ts, pairwise overlap, 4 strategies)"] = timed(
        lambda: pol.select(x), n, "select shipped"
    )
    da = pol.forced(x, {"lexical": 25, "graph": 10})
    ra = {("lexical", 10): 0.0, ("lexical", 25): 0.0, ("graph", 10): 0.0}
    out["update, shipped config (soft labels, no click, 3 arms)"] = timed(
        lambda: pol.update(da, ra, dict.fromkeys(ra, 0.5)), n, "update shipped"
    )
    module = BanditRLModule.build(STRATEGIES, fz.dim, PolicyConfig(seed=0))
    planner = ModulePlanner(module, fz)
    out["decide via RLModule.forward_exploration (linear_ts)"] = timed(lambda: planner.decide(x), n, "module")
    obs = {"obs": torch.from_numpy(x[None, :])}
    out["RLModule.forward_inference (greedy)"] = timed(lambda: module.forward_inference(obs), n, "inference")
    d = planner.decide(x)
    out["RLModule.learn (learner, 4 arms)"] = timed(lambda: module.learn(d, rewards, 3, {"graph": True}), n, "learn")
    observed = dict.fromkeys(rewards, 0.0)
    out["RLModule.open (learner counts a search, 4 arms)"] = timed(lambda: module.open(d, observed, 3), n, "open")
    out["RLModule.credit (learner credits a click, 4 arms)"] = timed(
        lambda: module.credit(d, rewards, 3, {"graph": True}), n, "credit"
    )
    state = module.state_copy()
    out["learner snapshot (state_copy)"] = timed(module.state_copy, n // 5, "snapshot")
    out["decider load (set_state)"] = timed(lambda: planner.load(state), n // 5, "load")
    size = sum(v.nbytes for v in state.values() if hasattr(v, "nbytes"))
    out["state size (bytes)"] = {"p50_us": float(size), "p99_us": float(size), "n": 1}
    with tempfile.TemporaryDirectory() as tmp:
        from ray.rllib.core.rl_module.rl_module import RLModule

        paths = iter(range(10**9))
        out["checkpoint save_to_path"] = timed(lambda: module.save_to_path(f"{tmp}/c{next(paths)}"), 50, "save")
        module.save_to_path(f"{tmp}/final")
        out["checkpoint RLModule.from_checkpoint"] = timed(lambda: RLModule.from_checkpoint(f"{tmp}/final"), 50, "load")
    return out


def learning_curves(rounds: int) -> dict[str, Any]:
    from ltrr.bandit import ActionSpace, PolicyConfig, new_policy
    from ltrr.bandit.simulate import Simulator

    hit = np.full((3, 4, 5), 0.03)
    hit[0, 0], hit[1, 2], hit[2, 3] = (0, 0.6, 0.8, 0.9, 0.95), (0, 0.7, 0.85, 0.9, 0.95), 0.9
    hit[:, :, 0] = 0.0
    right = {0: "lexical", 1: "graph", 2: "memory"}
    curves: dict[str, Any] = {}
    runs = [(a, a, {}) for a in ("linear_ts", "linucb", "epsilon_greedy", "uniform")]
    runs.insert(1, ("linear_ts, ridge 1", "linear_ts", {"ridge": 1.0}))  # the prior's weight, for comparison
    for name, algo, extra in runs:
        cfg = PolicyConfig(algorithm=algo, seed=1, **extra)
        space = ActionSpace.build(STRATEGIES, cfg.ladder, cfg.costs)
        sim = Simulator(space, hit, seed=2)
        pol = new_policy(cfg, STRATEGIES, sim.dim)
        regret, correct, recall = [], [], []
        for _ in tqdm(range(rounds), desc=f"simulate {name}", unit="round", leave=False):
            c, x = sim.context()
            d = pol.select(x)
            r = sim.rewards(c, d.action)
            pol.update(d, r)
            regret.append(sim.regret(c, d.action))
            correct.append(d.budgets[right[c]] > 0)
            recall.append(float(space.union_values(hit[c])[d.action]))
        curves[name] = {
            "cumulative_regret": np.cumsum(regret).tolist(),
            "right_strategy_rate_last_500": float(np.mean(correct[-500:])),
            "expected_recall_last_500": float(np.mean(recall[-500:])),
            "regret_first_1000": float(np.sum(regret[:1000])),
            "regret_last_1000": float(np.sum(regret[-1000:])),
        }
    return curves


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="calls per latency row")
    ap.add_argument("--rounds", type=int, default=3000, help="simulated rounds per learning curve")
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print(f"bench_policy: {args.n} calls/row, {args.rounds} simulated rounds; cores={os.cpu_count()}", file=sys.stderr)
    lat = latency(args.n)
    curves = learning_curves(args.rounds)
    base = lat["select, linear_ts (numpy)"]["p50_us"]
    lines = ["| operation | p50 µs | p99 µs | ratio to numpy linear TS select (p50) |", "|---|---|---|---|"]
    for name, r in lat.items():
        if name.startswith("state size"):
            continue
        lines.append(f"| {name} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['p50_us'] / base:.2f} |")
    lines.append("")
    lines.append(f"Parameter state shipped learner -> deciders: {lat['state size (bytes)']['p50_us'] / 1024:.0f} KiB.")
    lines.append("")
    lines.append("| policy (simulator, 3 query classes) | regret first 1000 | regret last 1000 | right strategy called "
                 "(last 500) | expected recall (last 500) |")  # fmt: skip
    lines.append("|---|---|---|---|---|")
    for algo, c in curves.items():
        lines.append(
            f"| {algo} | {c['regret_first_1000']:.1f} | {c['regret_last_1000']:.1f} | "
            f"{c['right_strategy_rate_last_500']:.3f} | {c['expected_recall_last_500']:.3f} |"
        )
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "policy.md").write_text(text + "\n")
    (out / "policy.json").write_text(
        json.dumps(
            {"latency": lat, "curves": {a: {k: v for k, v in c.items() if k != "cumulative_regret"}
                                        for a, c in curves.items()}},
            indent=2,
        )
    )  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, c in curves.items():
        ax.plot(c["cumulative_regret"], label=algo)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative regret (recall - cost)")
    ax.set_title("Learning curves on the seeded simulator")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=120)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    rows = [(k, v) for k, v in lat.items() if not k.startswith(("state size", "checkpoint"))]
    ax.barh([k for k, _ in rows], [v["p50_us"] for _, v in rows], label="p50")
    ax.barh([k for k, _ in rows], [v["p99_us"] - v["p50_us"] for _, v in rows], left=[v["p50_us"] for _, v in rows],
            alpha=0.4, label="p99")  # fmt: skip
    ax.set_xlabel("µs per call")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "policy_latency.png", dpi=120)
    print(f"wrote {out}/policy.md, policy.json, learning_curve.png, policy_latency.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
