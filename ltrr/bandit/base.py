"""The policy interface and the decision record.

Every policy turns a context vector ``x (d,)`` into a *base* distribution over
action ids (:class:`~ltrr.bandit.actions.ActionSpace`), then mixes in the uniform
distribution over valid actions:

.. math::

    \\pi(a \\mid x) = (1 - \\varepsilon)\\, \\pi_\\text{base}(a \\mid x) + \\varepsilon / (L^S - 1).

:math:`\\varepsilon` is the larger of the policy's own exploration rate and
:math:`\\varepsilon_f = f / u_\\min`, where ``f`` is the configured propensity floor and
:math:`u_\\min` the smallest per-strategy level probability under the uniform
distribution. So every (strategy, budget) choice has probability at least ``f``
and every action at least :math:`\\varepsilon / (L^S - 1)`: logs support
off-policy evaluation.

The decision logs its exact propensity :math:`\\pi(a \\mid x)`, and per strategy the
inclusion probability :math:`P(k_s > 0)` and the probability of its chosen budget.
For Thompson sampling :math:`\\pi_\\text{base}` is the empirical distribution of the
greedy action over ``M`` posterior draws and the action is drawn from it, so the
logged propensity is exact for the procedure that chose the action.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.config import PolicyConfig
from ltrr.bandit.linear import LinearArms

#: (strategy, budget k) -> reward in {0, 1}
ArmRewards = Mapping[tuple[str, int], float]


@dataclass(frozen=True)
class Decision:
    """One decision: the budgets chosen and how likely they were.

    ``cost`` is :math:`c(a)` of the played action and ``latency_ms`` the per-strategy
    latencies :math:`\\ell_s` it was priced with (what off-policy evaluation re-prices
    every action with; a record without them, from an older log, means the configured prior).
    ``x`` (the context vector) is kept for :meth:`Policy.update` but not serialised:
    the event log stores the named features instead.
    """

    budgets: dict[str, int]
    action: int
    propensity: float
    inclusion: dict[str, float]
    budget_prob: dict[str, float]
    expected_recall: float
    cost: float
    algorithm: str
    policy_version: str = ""
    forced: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: the posterior-mean hit probability of every arm (monotone table, arm order) when it decided:
    #: what soft labels of an unclicked search start from (empty in logs from before soft labels)
    hit_probs: tuple[float, ...] = ()
    x: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budgets": dict(self.budgets),
            "action": self.action,
            "propensity": self.propensity,
            "inclusion": dict(self.inclusion),
            "budget_prob": dict(self.budget_prob),
            "expected_recall": self.expected_recall,
            "cost": self.cost,
            "algorithm": self.algorithm,
            "policy_version": self.policy_version,
            "forced": self.forced,
            "latency_ms": dict(self.latency_ms),
            "hit_probs": list(self.hit_probs),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], x: np.ndarray | None = None) -> Decision:
        return cls(
            budgets={str(k): int(v) for k, v in d["budgets"].items()},
            action=int(d["action"]),
            propensity=float(d["propensity"]),
            inclusion={str(k): float(v) for k, v in d["inclusion"].items()},
            budget_prob={str(k): float(v) for k, v in d["budget_prob"].items()},
            expected_recall=float(d["expected_recall"]),
            cost=float(d["cost"]),
            algorithm=str(d["algorithm"]),
            policy_version=str(d.get("policy_version", "")),
            forced=bool(d.get("forced", False)),
            latency_ms={str(k): float(v) for k, v in (d.get("latency_ms") or {}).items()},
            hit_probs=tuple(float(p) for p in (d.get("hit_probs") or ())),
            x=x,
        )

    def with_version(self, version: str) -> Decision:
        return replace(self, policy_version=version)


class Policy(ABC):
    """A contextual bandit over budget ladders. Subclasses define :meth:`base_distribution`."""

    name: str = ""
    own_epsilon: float = 0.0

    def __init__(self, space: ActionSpace, config: PolicyConfig, arms: LinearArms, rng: np.random.Generator) -> None:
        if arms.b.shape[0] != space.n_arms:
            raise ValueError(f"`arms` must hold {space.n_arms} arms for this action space, got {arms.b.shape[0]}")
        self.space = space
        self.config = config
        self.arms = arms
        self.rng = rng
        floor = config.propensity_floor / space.uniform_level_floor()
        if floor > 1.0:
            raise ValueError(
                f"`propensity_floor` must be at most {space.uniform_level_floor():.4f} for "
                f"{space.n_strategies} strategies x {space.n_levels} budgets, got {config.propensity_floor}"
            )
        self.epsilon = max(floor, self.own_epsilon)
        valid = np.ones(space.n_actions)
        valid[0] = 0.0
        self.uniform = valid / valid.sum()

    # -- what subclasses define -------------------------------------------------
    @abstractmethod
    def base_distribution(self, x: np.ndarray) -> tuple[np.ndarray, int | None]:
        """``(pi_base (n_actions,), drawn action or None)``. A policy that samples
        (Thompson) returns the action it drew so that it matches ``pi_base``."""

    # -- shared -------------------------------------------------------------------
    def hit_table(self, x: np.ndarray) -> np.ndarray:
        """Posterior-mean hit probabilities ``(S, L)``."""
        return self.space.hit_table(self.arms.mean(x))

    def greedy(self, table: np.ndarray) -> int:
        """The action maximising :math:`u(a) - c(a)` for a hit table ``(S, L)``."""
        return int(np.argmax(self.space.union_values(table) - self.space.costs))

    def distribution(self, x: np.ndarray) -> np.ndarray:
        """:math:`\\pi(\\cdot \\mid x)` over action ids (id 0 has probability 0)."""
        base, _ = self.base_distribution(self._check(x))
        return (1.0 - self.epsilon) * base + self.epsilon * self.uniform

    def select(self, x: np.ndarray) -> Decision:
        """Choose the budgets for context ``x (d,)``."""
        x = self._check(x)
        base, drawn = self.base_distribution(x)
        dist = (1.0 - self.epsilon) * base + self.epsilon * self.uniform
        if self.rng.random() < self.epsilon:
            action = int(self.rng.integers(1, self.space.n_actions))  # uniform over valid ids
        elif drawn is not None:
            action = drawn
        else:
            action = min(int(np.searchsorted(np.cumsum(base), self.rng.random(), side="right")), len(base) - 1)
        return self._decision(x, action, dist)

    def select_action(self, x: np.ndarray) -> Decision:
        """Alias of :meth:`select` (the name Open Bandit Pipeline uses)."""
        return self.select(x)

    def update(self, decision: Decision, rewards: ArmRewards, visibility: ArmRewards | None = None) -> int:
        """Apply semi-bandit rewards ``{(strategy, k): r}`` observed for ``decision``; returns arms updated.

        ``visibility`` ``{(strategy, k): v}``, v in (0, 1]: how likely a hit of that arm was to be
        seen and clicked (:func:`ltrr.bandit.rewards.arm_visibility`); the arm's observation then
        weighs :math:`v^2` and its reward :math:`v r` (weighted least squares of the click on
        :math:`v p(x)`). Absent: 1, the plain update."""
        x, arms = self._arms_of(decision, rewards)
        vis = self._visibility(rewards, visibility)
        if self._soft(decision, visibility):
            clicked = any(r for r in rewards.values())
            targets = list(map(float, rewards.values())) if clicked else self._soft_labels(decision, arms, vis)
            for arm, y in zip(arms, targets, strict=True):
                self.arms.update(arm, x, y, 1.0)
            return len(arms)
        for arm, r, v in zip(arms, rewards.values(), vis, strict=True):
            self.arms.update(arm, x, float(r), v * v)
        return len(arms)

    def open(self, decision: Decision, observed: ArmRewards, visibility: ArmRewards | None = None) -> int:
        """Count the arms ``decision`` observed as reward-0 observations, before its outcome is known
        (the keys of ``observed`` name them; the values must be 0). :meth:`credit` adds the
        positives later (with the same ``visibility``); the two together equal :meth:`update` exactly."""
        if any(r for r in observed.values()):
            raise ValueError("`observed` must hold only 0 rewards; credit the positives with `credit`")
        x, arms = self._arms_of(decision, observed)
        vis = self._visibility(observed, visibility)
        if self._soft(decision, visibility):
            for arm, y in zip(arms, self._soft_labels(decision, arms, vis), strict=True):
                self.arms.update(arm, x, y, 1.0)
            return len(arms)
        for arm, v in zip(arms, vis, strict=True):
            self.arms.observe(arm, x, v * v)
        return len(arms)

    def credit(self, decision: Decision, rewards: ArmRewards, visibility: ArmRewards | None = None) -> int:
        """Add the positive rewards of a decision already counted by :meth:`open`; returns arms credited."""
        x, arms = self._arms_of(decision, rewards)
        vis = self._visibility(rewards, visibility)
        if self._soft(decision, visibility):  # replace each arm's soft label by its exact one
            soft = self._soft_labels(decision, arms, vis)
            for arm, r, y in zip(arms, rewards.values(), soft, strict=True):
                if float(r) != y:
                    self.arms.reward(arm, x, float(r) - y)
            return sum(1 for r in rewards.values() if r)
        n = 0
        for arm, r, v in zip(arms, rewards.values(), vis, strict=True):
            if r:
                self.arms.reward(arm, x, float(r) * v)
                n += 1
        return n

    def _soft(self, decision: Decision, visibility: ArmRewards | None) -> bool:
        """Whether this update reads the search with soft labels: ``soft_labels`` is on, the shown
        list was read (``visibility``) and the decision logged its hit probabilities."""
        return self.config.soft_labels and visibility is not None and len(decision.hit_probs) == self.space.n_arms

    @staticmethod
    def _soft_labels(decision: Decision, arms: list[int], vis: list[float]) -> list[float]:
        """Per arm, the chance it held the wanted item given that nobody clicked:
        :math:`y = p (1 - v) / (1 - p v)` (Bayes, with ``p`` the hit probability the decision logged and
        ``v`` the chance a hit of the arm was seen and clicked)."""
        out = []
        for arm, v in zip(arms, vis, strict=True):
            p = min(max(decision.hit_probs[arm], 0.0), 1.0)
            out.append(p * (1.0 - v) / (1.0 - p * v) if p * v < 1.0 else 0.0)
        return out

    @staticmethod
    def _visibility(rewards: ArmRewards, visibility: ArmRewards | None) -> list[float]:
        if visibility is None:
            return [1.0] * len(rewards)
        out = []
        for key in rewards:
            v = float(visibility.get(key, 1.0))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"`visibility` must be in [0, 1], got {v!r} for {key!r}")
            out.append(v)
        return out

    def _arms_of(self, decision: Decision, rewards: ArmRewards) -> tuple[np.ndarray, list[int]]:
        """The context vector and the arm ids of ``rewards``, all validated before anything changes."""
        if decision.x is None:
            raise ValueError("`decision.x` must hold the context vector to update from it")
        x = self._check(decision.x)
        arms = []
        for (strategy, k), r in rewards.items():
            if strategy not in self.space.strategies:
                raise ValueError(f"`rewards` names unknown strategy {strategy!r}; known: {list(self.space.strategies)}")
            if k not in self.space.ladder or k == 0:
                raise ValueError(f"`rewards` budget for {strategy!r} must be a positive ladder budget, got {k}")
            if r not in (0, 1, 0.0, 1.0):
                raise ValueError(f"`rewards` must be 0 or 1, got {r!r} for ({strategy!r}, {k})")
            arms.append(self.space.arm(self.space.strategies.index(strategy), self.space.ladder.index(k)))
        return x, arms

    def forced(self, x: np.ndarray, budgets: Mapping[str, int]) -> Decision:
        """A decision the caller imposed (propensity 1): logged, not explored, learned from only
        when ``learn_from_forced`` is set."""
        x = self._check(x)
        action = self.space.action_for_budgets(budgets)
        return replace(self._decision(x, action, self.one_hot(action)), forced=True)

    def greedy_decision(self, x: np.ndarray) -> Decision:
        """The best action on posterior-mean hit probabilities, without exploration (propensity 1)."""
        x = self._check(x)
        action = self.greedy(self.hit_table(x))
        return self._decision(x, action, self.one_hot(action))

    def one_hot(self, action: int) -> np.ndarray:
        """The distribution that plays ``action`` for sure, over action ids."""
        dist = np.zeros(self.space.n_actions)
        dist[action] = 1.0
        return dist

    def _decision(self, x: np.ndarray, action: int, dist: np.ndarray) -> Decision:
        sp = self.space
        marg = sp.marginals(dist)
        levels = sp.levels(action)
        table = self.hit_table(x)
        return Decision(
            budgets=sp.budgets(action),
            action=action,
            propensity=float(dist[action]),
            inclusion={s: float(1.0 - marg[i, 0]) for i, s in enumerate(sp.strategies)},
            budget_prob={s: float(marg[i, levels[i]]) for i, s in enumerate(sp.strategies)},
            expected_recall=sp.union_value(table, levels),
            cost=float(sp.costs[action]),
            algorithm=self.name,
            latency_ms=sp.latency_dict(),
            hit_probs=tuple(round(float(p), 6) for p in table[:, 1:].ravel()),  # 6 digits: compact logs
            x=x,
        )

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.shape != (self.arms.dim,):
            raise ValueError(f"`x` must have shape ({self.arms.dim},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("`x` must be finite")
        return x
