"""Off-policy evaluation of retrieval policies from the durable event log.

**Data.** Every settled search that the policy decided (not forced) is one round:
context ``x_i`` (the logged named features), logged action ``a_i`` (the budget
vector), its logged propensity :math:`\\pi_0(a_i \\mid x_i)` and reward
:math:`r_i = 1` when the item the user acted on was in the union of the called
strategies' candidate lists (candidate recall), else 0 (also when the reward
window passed with no positive action).

**Target policies** are evaluated *progressively* (replay without look-ahead): a
fresh policy of the configured algorithm walks the log in settlement order; at
round ``i`` its action distribution :math:`\\pi_e(\\cdot \\mid x_i)` is computed from
rounds ``< i`` only, then it learns from round ``i``'s semi-bandit rewards, exactly
as the learner would. Forced searches are not evaluated, and learned from only when
``policy.learn_from_forced`` is set (as in the learner). The
doubly-robust reward model :math:`\\hat q(x_i, a)` is the target's own
posterior-mean union value at that point, so no round's reward is used to predict it.

**Cost** is a known function of the action and of the measured strategy latencies
the decider used, which every decision logs (``Decision.latency_ms``; an older record
without them means the configured prior). Round ``i`` re-prices every action with
those latencies, :math:`c_i(a)` (:meth:`~ltrr.bandit.ActionSpace.costs_for`), so a
target's mean cost needs no estimator, :math:`\\frac{1}{n} \\sum_i \\sum_a \\pi_e(a \\mid x_i) c_i(a)`,
the logged cost is :math:`\\frac{1}{n} \\sum_i c_i(a_i)`, and each target decides round
``i`` with the same prices :math:`c_i` (its costs are set to them before it acts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ltrr.bandit import ActionSpace, ContextFeaturizer, PolicyConfig, new_policy, space_for
from ltrr.bandit.rewards import observe
from ltrr.eventlog import SearchEvent, Settlement
from ltrr.ope.base import as_position, importance_weights
from ltrr.ope.registry import ESTIMATORS, make_estimator


@dataclass
class LoggedRounds:
    """The evaluation rounds of a log: arrays in obp's layout, plus each target's ``action_dist``."""

    reward: list[float] = field(default_factory=list)
    action: list[int] = field(default_factory=list)
    pscore: list[float] = field(default_factory=list)
    logged_cost: list[float] = field(default_factory=list)
    dists: dict[str, list[np.ndarray]] = field(default_factory=dict)
    qhat: dict[str, list[np.ndarray]] = field(default_factory=dict)
    #: per target, :math:`\\sum_a \\pi_e(a \\mid x_i) c_i(a)` of each round (priced with the logged latencies)
    target_cost: dict[str, list[float]] = field(default_factory=dict)
    forced: int = 0
    skipped: int = 0
    unsettled: int = 0

    @property
    def n(self) -> int:
        return len(self.reward)


def collect(
    rows: Iterable[tuple[Settlement, SearchEvent]],
    strategies: Sequence[str],
    config: PolicyConfig,
    algorithms: Sequence[str],
    *,
    ts_resamples: int = 256,
    seed: int = 0,
    progress: bool = True,
    total: int | None = None,
    until_ts: float | None = None,
    since_ts: float | None = None,
) -> LoggedRounds:
    """Walk settled searches in order; record each round and every target's distribution.

    Searches with ``ts >= until_ts`` (the oldest unsettled search) are left out: among
    them only the positive outcomes are settled yet, which would bias every estimate up.
    Searches before ``since_ts`` are skipped (counted in ``skipped``); targets do not learn from them."""
    featurizer = ContextFeaturizer(strategies, ignore=config.ignore_features)
    space = space_for(config, strategies)
    cfg = config.model_copy(update={"ts_resamples": ts_resamples})
    targets = {
        algo: new_policy(cfg, strategies, featurizer.dim, np.random.default_rng(seed + i), algo)
        for i, algo in enumerate(algorithms)
    }
    out = LoggedRounds(
        dists={a: [] for a in algorithms}, qhat={a: [] for a in algorithms}, target_cost={a: [] for a in algorithms}
    )
    for st, event in tqdm(rows, total=total, desc="ope: replaying the log", unit="round", disable=not progress):
        if since_ts is not None and event.ts < since_ts:
            out.skipped += 1
            continue
        if until_ts is not None and event.ts >= until_ts:
            out.unsettled += 1
            continue
        wanted = st.entity_id if st.outcome == "positive" else None
        obs = observe(event, wanted, featurizer, config.ladder)
        if obs is None or set(obs.decision.budgets) != set(strategies):
            out.skipped += 1
            continue
        d = obs.decision
        try:
            action = space.action_for_budgets(d.budgets)
        except ValueError:  # logged under another ladder
            out.skipped += 1
            continue
        if not d.forced:
            latency = space.latency_vector(d.latency_ms)  # what the decider priced with (old logs: the prior)
            costs = space.costs_for(latency)  # c_i
            finite = np.where(np.isfinite(costs), costs, 0.0)
            out.reward.append(obs.union_hit)
            out.action.append(action)
            out.pscore.append(d.propensity)
            out.logged_cost.append(float(costs[action]))
            assert d.x is not None
            for algo, pol in targets.items():
                pol.space.set_latency(latency)
                dist = pol.distribution(d.x)
                out.dists[algo].append(dist)
                out.qhat[algo].append(space.union_values(pol.hit_table(d.x)))
                out.target_cost[algo].append(float(dist @ finite))
        else:
            out.forced += 1
        if config.learns(d.forced):  # as the learner does
            for pol in targets.values():
                pol.update(d, obs.rewards)
    return out


def evaluate(
    rounds: LoggedRounds,
    space: ActionSpace,
    *,
    estimators: Sequence[str] = tuple(ESTIMATORS),
    alpha: float = 0.05,
    n_bootstrap_samples: int = 2000,
    random_state: int = 0,
) -> dict[str, Any]:
    """Estimate each target's candidate recall (with bootstrap CIs) and its exact mean cost
    (priced per round with the logged latencies; ``space.costs`` only for rounds built without them)."""
    if rounds.n == 0:
        raise ValueError("the log holds no settled, policy-decided searches to evaluate")
    reward = np.asarray(rounds.reward, dtype=float)
    action = np.asarray(rounds.action, dtype=int)
    pscore = np.asarray(rounds.pscore, dtype=float)
    costs = np.where(np.isfinite(space.costs), space.costs, 0.0)  # for rounds collected without target costs
    result: dict[str, Any] = {
        "rounds": rounds.n,
        "forced_rounds": rounds.forced,
        "skipped_rounds": rounds.skipped,
        "unsettled_rounds": rounds.unsettled,
        "logged": {"recall": float(reward.mean()), "cost": float(np.mean(rounds.logged_cost))},
        "targets": {},
    }
    lo_key, hi_key = f"{100 * (1.0 - alpha)}% CI (lower)", f"{100 * (1.0 - alpha)}% CI (upper)"
    for algo, dists in rounds.dists.items():
        dist = np.stack(dists)[:, :, None]
        qhat = np.stack(rounds.qhat[algo])[:, :, None]
        w = importance_weights(action, pscore, dist, as_position(None, rounds.n))
        target_cost = rounds.target_cost.get(algo)
        row: dict[str, Any] = {
            "cost": float(np.mean(target_cost)) if target_cost else float((dist[:, :, 0] @ costs).mean()),
            "effective_sample_size": float(w.sum() ** 2 / max((w**2).sum(), 1e-300)),
        }
        for name in estimators:
            est = make_estimator(name)
            kwargs = {"estimated_rewards_by_reg_model": qhat} if est.requires_reg_model else {}
            value = est.estimate_policy_value(reward=reward, action=action, pscore=pscore, action_dist=dist, **kwargs)
            ci = est.estimate_interval(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=dist,
                alpha=alpha,
                n_bootstrap_samples=n_bootstrap_samples,
                random_state=random_state,
                **kwargs,
            )
            row[name] = {"recall": float(value), "lower": float(ci[lo_key]), "upper": float(ci[hi_key])}
        result["targets"][algo] = row
    return result


def format_report(result: dict[str, Any], estimators: Sequence[str]) -> str:
    """A markdown table: one row per target policy, recall per estimator with its CI, and cost."""
    head = "| policy | " + " | ".join(f"{e} recall [CI]" for e in estimators) + " | mean cost | ESS |"
    lines = [head, "|" + "---|" * (len(estimators) + 3)]
    lg = result["logged"]
    logged_cells = " | ".join(f"{lg['recall']:.3f}" for _ in estimators)
    lines.append(f"| logged (on-policy) | {logged_cells} | {lg['cost']:.4f} | - |")
    for algo, row in result["targets"].items():
        cells = [f"{row[e]['recall']:.3f} [{row[e]['lower']:.3f}, {row[e]['upper']:.3f}]" for e in estimators]
        ess = row["effective_sample_size"]
        lines.append(f"| {algo} | " + " | ".join(cells) + f" | {row['cost']:.4f} | {ess:.0f} |")
    lines.append("")
    lines.append(
        f"{result['rounds']} rounds ({result['forced_rounds']} forced searches not evaluated, "
        f"{result['skipped_rounds']} skipped: before --since or without a usable decision). "
        f"{result['unsettled_rounds']} settled searches left out because an older search is not settled yet "
        "(their sample would favour positive outcomes)."
    )
    return "\n".join(lines)
