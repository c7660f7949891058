"""The strict config of the retrieval policy (the ``policy`` block of the app config)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ltrr.constants import MAX_STRATEGY_K
from ltrr.validation import POSITIVE_ACTIONS

ALGORITHMS = ("linear_ts", "linucb", "epsilon_greedy", "uniform")


class CostConfig(BaseModel):
    """What a decision costs, in units of candidate recall (the reward is 0/1).

    .. math::

        c(a) = \\sum_{s: k_s > 0} \\bigl(c_\\text{call} + c_\\text{ms} \\, \\ell_s + c_\\text{cand} \\, k_s\\bigr)

    with :math:`\\ell_s` the expected latency of strategy ``s`` in ms: *measured* by the
    learner from the calls it settles (:mod:`ltrr.bandit.latency`), starting from the prior
    ``latency_ms[s]`` (or ``default_latency_ms``), and shipped to every decider with the
    policy's parameters.
    """

    model_config = ConfigDict(extra="forbid")

    per_call: float = Field(0.01, ge=0.0, le=1.0, description="Cost of calling one strategy.")
    per_candidate: float = Field(0.0002, ge=0.0, le=0.1, description="Cost of each candidate requested.")
    per_ms: float = Field(
        0.0005,
        ge=0.0,
        le=0.1,
        description="Cost per expected millisecond of a strategy's latency (0 turns the latency term off). "
        "0.0005 trades 1 point of recall for 20 ms: a 150 ms call costs 0.075 recall, worth it only when it "
        "adds that much hit probability; a 5 ms call costs 0.0025, a quarter of per_call.",
    )
    latency_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Prior expected latency per strategy in ms; the learner's measurements replace it.",
    )
    default_latency_ms: float = Field(
        10.0,
        ge=0.0,
        le=60_000.0,
        description="Prior latency in ms of a strategy not in latency_ms (typical of a Meilisearch or Milvus call).",
    )
    latency_alpha: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="Weight alpha of the newest sample in the latency estimate's moving mean (half-life "
        "ln 2 / -ln(1 - alpha) samples: 13.5 for 0.05).",
    )
    latency_prior_weight: float = Field(
        5.0, ge=0.0, le=1e6, description="Pseudo-samples the latency prior counts as before measurements take over."
    )

    @field_validator("latency_ms")
    @classmethod
    def _latency_ms(cls, v: dict[str, float]) -> dict[str, float]:
        for s, ms in v.items():
            if not math.isfinite(ms) or not 0.0 <= ms <= 60_000.0:
                raise ValueError(f"`latency_ms[{s!r}]` must be in [0, 60000] ms, got {ms}")
        return v

    def prior_latency_ms(self, strategy: str) -> float:
        """The prior :math:`\\ell_s`: ``latency_ms[strategy]``, else ``default_latency_ms``."""
        return float(self.latency_ms.get(strategy, self.default_latency_ms))


class PolicyConfig(BaseModel):
    """The contextual bandit that chooses each strategy's candidate budget."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["linear_ts", "linucb", "epsilon_greedy", "uniform"] = Field(
        "linear_ts", description=f"Policy algorithm, one of {', '.join(ALGORITHMS)}."
    )
    ladder: tuple[int, ...] = Field(
        (0, 10, 25, 50, 100),
        description="Candidate budgets k a strategy may get: strictly increasing, starting with 0 (not called), "
        f"each at most {MAX_STRATEGY_K} (MAX_STRATEGY_K, the most candidates one strategy call may return).",
    )
    costs: CostConfig = Field(default_factory=CostConfig, description="Cost model of a decision.")
    propensity_floor: float = Field(
        0.01,
        ge=0.0,
        le=0.2,
        description="Minimum probability of every (strategy, budget) choice, so logs support off-policy evaluation.",
    )
    ridge: float = Field(
        25.0,
        gt=0.0,
        le=1e6,
        description="Prior precision lambda of each arm's linear model. With about six active unit features "
        "(||x||^2 ~ 6) the default is ~4 pseudo-observations: a prior hit rate of 0.3 +- 0.25, so a new "
        "deployment still calls most strategies until it has learned.",
    )
    prior_hit_rate: float = Field(
        0.3, ge=0.0, le=1.0, description="Prior mean hit probability of every arm (on the bias feature)."
    )
    overlap: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="How much the strategies' hits overlap in the value of a plan: 0 assumes they miss "
        "independently, 1 that the best strategy's hits contain the others' (ltrr.bandit.actions). "
        "Ignored when pair_overlap is set.",
    )
    pair_overlap: Literal["prior"] | dict[str, float] | None = Field(
        None,
        description="Per pair of strategies, how their hits overlap, in [-1, 1] (1: nested, 0: independent, "
        "-1: disjoint; ltrr.bandit.actions): 'prior' takes the pairs fitted with prior_path, or a map "
        "{'lexical+memory': 0.9, ...} (pairs not named: 0). Replaces the single `overlap`. None: `overlap`.",
    )
    position_bias: float | None = Field(
        None,
        ge=0.0,
        le=4.0,
        description="Read clicks through what the user could see (ltrr.bandit.rewards.arm_visibility): a "
        "candidate the fused list did not show could not be clicked, one shown at position r was examined "
        "with chance r^-position_bias (0: every shown result was looked at). None: every miss is a plain 0.",
    )
    soft_labels: bool = Field(
        False,
        description="Learn from what a click reveals (EM on the position-based click model): a clicked "
        "search teaches every observed arm its exact label (the clicked entity is the wanted one), an "
        "unclicked one the chance the arm held the wanted item anyway, p(1 - v) / (1 - p v), with p the hit "
        "probability the decision logged and v how likely a hit of the arm was seen (position_bias). "
        "False: an unclicked search is a visibility-weighted 0. Needs position_bias.",
    )
    ignore_features: tuple[str, ...] = Field(
        (),
        description="Context features the policy does not learn from: names, or prefixes ending in '*' "
        "(e.g. 'mem_*', 'hist.*'). They are still logged; in the policy's vector they read as 0.",
    )
    prior_path: str | None = Field(
        None,
        description="A fitted prior for the arms (ltrr.bandit.prior; `scripts/fit_prior.py` writes one from "
        "full-information searches of predicted queries); None: the flat prior of ridge and prior_hit_rate.",
    )
    prior_weight: float = Field(
        100.0, ge=0.0, le=1e6, description="How many searches the fitted prior counts as (pseudo-observations)."
    )
    ts_scale: float = Field(0.5, gt=0.0, le=10.0, description="Linear TS: posterior scale v (noise std of the reward).")
    ts_resamples: int = Field(
        64, ge=8, le=4096, description="Linear TS: posterior draws per decision to estimate its propensities."
    )
    ucb_alpha: float = Field(0.5, ge=0.0, le=10.0, description="LinUCB: width alpha of the confidence bonus.")
    epsilon: float = Field(0.1, ge=0.0, le=1.0, description="Epsilon-greedy: probability of a uniform random action.")
    reward_window_s: float = Field(
        600.0, gt=0.0, le=7 * 86400.0, description="No positive action within this window is a 0 reward."
    )
    positive_actions: tuple[str, ...] = Field(
        POSITIVE_ACTIONS, description="Feedback actions that count as the user finding what they wanted."
    )
    learn_from_forced: bool = Field(
        False,
        description="Also learn from searches whose caller forced the strategies (their users may want other things).",
    )
    poll_interval_s: float = Field(0.5, gt=0.0, le=60.0, description="Learner: how often it joins new feedback.")
    sync_interval_s: float = Field(1.0, gt=0.0, le=60.0, description="Deciders: how often they fetch new parameters.")
    checkpoint_dir: str = Field("var/policy", description="Where the learner checkpoints the RLModule.")
    checkpoint_interval_s: float = Field(
        5.0, ge=0.0, le=3600.0, description="Learner: at most one checkpoint per this many seconds (0 = every update)."
    )
    seed: int | None = Field(None, description="Seed of the decision RNG (None: fresh entropy).")

    def learns(self, forced: bool) -> bool:
        """Whether a settled search is learned from: always, unless its caller forced the
        strategies and ``learn_from_forced`` is off (the learner and OPE replays ask this)."""
        return self.learn_from_forced or not forced

    @field_validator("ladder")
    @classmethod
    def _ladder(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) < 2 or v[0] != 0:
            raise ValueError(f"`ladder` must start with 0 and have at least one positive budget, got {list(v)}")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"`ladder` must be strictly increasing, got {list(v)}")
        if v[-1] > MAX_STRATEGY_K:
            raise ValueError(f"`ladder` budgets must be at most {MAX_STRATEGY_K} (MAX_STRATEGY_K), got {v[-1]}")
        return v

    @model_validator(mode="after")
    def _positive_actions(self) -> PolicyConfig:
        if not self.positive_actions:
            raise ValueError("positive_actions: must name at least one action")
        return self

    @model_validator(mode="after")
    def _soft_labels(self) -> PolicyConfig:
        if self.soft_labels and self.position_bias is None:
            raise ValueError("soft_labels: needs position_bias (how likely a shown hit is seen)")
        return self

    @model_validator(mode="after")
    def _pairs(self) -> PolicyConfig:
        if self.pair_overlap == "prior" and not self.prior_path:
            raise ValueError("pair_overlap: 'prior' needs a prior_path")
        if isinstance(self.pair_overlap, dict):
            for key, w in self.pair_overlap.items():
                a, sep, b = key.partition("+")
                if not sep or not a or not b or a == b:
                    raise ValueError(f"pair_overlap: keys must be 'strategy+other', got {key!r}")
                if not math.isfinite(w) or not -1.0 <= w <= 1.0:
                    raise ValueError(f"pair_overlap[{key!r}]: must be in [-1, 1], got {w}")
        return self
