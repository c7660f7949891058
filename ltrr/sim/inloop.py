r"""The learners the regret harness steps beside ltrr's live policy, behind one interface.

Each query of ``scripts/bench_regret.py`` (and of ``scripts/replay_policy.py``, which replays a
saved run) gives every contender the same **full information** (:class:`FullInfo`): the context
features the live policy saw, each strategy's full-information list, the served ranker's order of
their union, the wanted entity and the user's examination draw. One step (:func:`play`, or
:meth:`Bank.step` over every contender) is:

1. the contender chooses budgets from the context (:meth:`Contender.choose`);
2. its user sees its shown list, :func:`ltrr.sim.vw.shown_list` of its candidates (the prefixes of
   the full lists at its budgets) in the ranker's order, and clicks on the *same* draw as every
   other contender's user (:meth:`ltrr.sim.clicks.PositionClickModel.outcome`: the wanted item's
   click and, with noise, a noise click that is played or skipped);
3. it learns from that outcome (:meth:`Contender.learn`) as the app learns from the same feedback.

**What a search's feedback says.** The harness sends the live user's clicks as the app's feedback
(:meth:`Played.feedback`): each click, in position order, as a ``click`` on the entity shown there,
and a skipped noise click followed by a ``skip`` of it. The app settles a search on its *first*
positive feedback (:mod:`ltrr.eventlog`; ``skip`` is not positive), so the entity the search is
positive for is the first click's, whatever follows (:attr:`Played.acted_on`): a noise click above
the wanted one settles the search on the wrong entity, and a skip does not undo its click (only
the ranker's labels read skips, :mod:`ltrr.ranking.labels`). With ``noise = 0`` the feedback is the
wanted item's click alone, as it always was.

Two kinds of contender:

* :class:`VWContender`, a Vowpal Wabbit learner (:mod:`ltrr.sim.vw`): it learns the cost
  :math:`c(a) - \mathbb{1}[\text{the search is positive}]` of the action it played;
* :class:`InLoopPolicy`, one of ltrr's own bandit algorithms (:func:`ltrr.bandit.new_policy`) on
  the app's own policy config but for ``algorithm``, with its fitted prior installed: it decides on
  the context vector (:class:`~ltrr.bandit.ContextFeaturizer`, ``ignore_features`` read as 0) and
  learns as the app's learner does (:func:`learn_from_search`), from the semi-bandit rewards of the
  entity acted on (:func:`~ltrr.bandit.rewards.semi_bandit_rewards`) read through each arm's
  visibility in its shown list (:func:`~ltrr.bandit.rewards.arm_visibility`) when the config sets
  ``position_bias``.

Pure: no server, no I/O (VW is imported only when a :class:`VWContender` is built).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np

from ltrr.bandit import ContextFeaturizer, Decision, Policy, PolicyConfig, new_policy
from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.prior import load_prior
from ltrr.bandit.registry import POLICIES
from ltrr.bandit.rewards import arm_visibility, semi_bandit_rewards
from ltrr.errors import InvalidRequest
from ltrr.sim.clicks import Click, PositionClickModel
from ltrr.sim.vw import VWPolicy, VWSpec, shown_list

#: ltrr's bandit algorithms the harness runs in its loop by default (``--bandits``).
BANDITS: tuple[str, ...] = ("linear_ts", "linucb", "epsilon_greedy")
#: Report name of an in-loop ltrr policy: ``"ltrr in-loop linucb"``.
INLOOP_PREFIX = "ltrr in-loop "
_RNG_STREAM = 0x4C54  # "LT": the in-loop policies' own random streams
#: What an :class:`InLoopPolicy` learns from (replay diagnostics; module docstring of ``replay_policy.py``).
Reveal = Literal["click", "shown", "union", "none"]
REVEALS: tuple[str, ...] = ("click", "shown", "union", "none")


@dataclass(frozen=True)
class FullInfo:
    """One query as every contender sees it: ``context`` (the live policy's named features),
    ``lists`` (strategy -> its full-information ids, best first), ``order`` (the served ranker's
    order of their union), the ``wanted`` entity and the user's click ``draw``."""

    context: Mapping[str, float]
    lists: Mapping[str, Sequence[str]]
    order: Sequence[str]
    wanted: str
    draw: np.ndarray


@dataclass(frozen=True)
class Choice:
    """What a contender chose: its ``budgets``, the action id, the probability it had, and the
    ltrr :class:`~ltrr.bandit.Decision` behind it (None for VW)."""

    budgets: Mapping[str, int]
    action: int
    prob: float
    decision: Decision | None = None


@dataclass(frozen=True)
class Played:
    """One contender on one query: its ``budgets``, the list its user saw (``shown``, best first)
    and every click of that user (``outcome``, by position)."""

    budgets: Mapping[str, int]
    shown: tuple[str, ...]
    outcome: tuple[Click, ...]

    @property
    def position(self) -> int | None:
        """The 1-based position of the wanted item's click, None without one (what the records keep)."""
        return next((c.position for c in self.outcome if c.wanted), None)

    @property
    def acted_on(self) -> str | None:
        """The entity the search is positive for: the first click's (module docstring), None without a click."""
        return self.shown[self.outcome[0].position - 1] if self.outcome else None

    def feedback(self) -> tuple[tuple[str, str, int], ...]:
        """The feedback the user's clicks send, in order, as ``(entity_id, action, position)``: each
        click a ``"click"``, a skipped one followed by a ``"skip"`` (module docstring)."""
        out: list[tuple[str, str, int]] = []
        for c in self.outcome:
            eid = self.shown[c.position - 1]
            out.append((eid, "click", c.position))
            if c.outcome == "skip":
                out.append((eid, "skip", c.position))
        return tuple(out)


def shown_outcome(
    budgets: Mapping[str, int], shown: Sequence[str], info: FullInfo, clicks: PositionClickModel
) -> Played:
    """The :class:`Played` of ``budgets`` whose user saw ``shown``: its clicks on ``info``'s draw."""
    shown = tuple(shown)
    return Played(dict(budgets), shown, clicks.outcome(shown, info.wanted, info.draw))


class Contender(Protocol):
    """A learner the harness steps on the same stream as the live policy."""

    #: shown in the report; unique in a :class:`Bank`
    name: str

    def choose(self, context: Mapping[str, float]) -> Choice:
        """Budgets for the query with these context features."""
        ...

    def learn(self, choice: Choice, info: FullInfo, played: Played, costs: np.ndarray) -> None:
        """Learn from what its user did (``played``) with what it chose; ``costs``: every action's
        cost at this query, shape ``(A,)``."""
        ...

    def reprice(self, latency_ms: Mapping[str, float]) -> None:
        """Price its actions with these per-strategy latencies from now on."""
        ...

    def close(self) -> None: ...


def play(contender: Contender, info: FullInfo, clicks: PositionClickModel, costs: np.ndarray) -> Played:
    """One step of ``contender`` on ``info`` (module docstring): choose, show, click, learn."""
    choice = contender.choose(info.context)
    shown = shown_list(info.lists, choice.budgets, order=info.order)
    played = shown_outcome(choice.budgets, shown, info, clicks)
    contender.learn(choice, info, played, costs)
    return played


class Bank:
    """The contenders of one run, each stepped on every query (:func:`play`), with the
    milliseconds each step took (``ms``: name -> one entry per query)."""

    def __init__(self, members: Sequence[Contender]) -> None:
        names = [m.name for m in members]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise InvalidRequest("members", f"names must be unique, got {dup!r} twice")
        self.members = list(members)
        self.ms: dict[str, list[float]] = {n: [] for n in names}

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def reprice(self, latency_ms: Mapping[str, float]) -> None:
        for m in self.members:
            m.reprice(latency_ms)

    def step(self, info: FullInfo, clicks: PositionClickModel, costs: np.ndarray) -> dict[str, Played]:
        """Every member's :func:`play` on ``info``, by name."""
        out: dict[str, Played] = {}
        for m in self.members:
            t = time.perf_counter()
            out[m.name] = play(m, info, clicks, costs)
            self.ms[m.name].append((time.perf_counter() - t) * 1000.0)
        return out

    def close(self) -> None:
        for m in self.members:
            m.close()


# -- Vowpal Wabbit -------------------------------------------------------------------------------------


class VWContender:
    """A :class:`~ltrr.sim.vw.VWPolicy` as a :class:`Contender`: it learns ``c(a) - positive``."""

    def __init__(self, space: ActionSpace, spec: VWSpec, *, seed: int = 0) -> None:
        self.name = spec.name
        self.spec = spec
        self.space = space
        self.policy = VWPolicy(space, spec, seed=seed)

    def choose(self, context: Mapping[str, float]) -> Choice:
        a, prob = self.policy.choose(context)
        return Choice(self.space.budgets(a), a, prob)

    def learn(self, choice: Choice, info: FullInfo, played: Played, costs: np.ndarray) -> None:
        positive = played.acted_on is not None
        self.policy.learn(info.context, choice.action, choice.prob, float(costs[choice.action]) - positive)

    def reprice(self, latency_ms: Mapping[str, float]) -> None:
        self.policy.reprice(self.space.costs_for(latency_ms))

    def close(self) -> None:
        self.policy.close()


def vw_contenders(space: ActionSpace, specs: Sequence[VWSpec], seed: int) -> list[VWContender]:
    """One :class:`VWContender` per spec, the ``i``-th seeded ``seed + i``."""
    return [VWContender(space, spec, seed=seed + i) for i, spec in enumerate(specs)]


# -- ltrr's own policies ---------------------------------------------------------------------------------


def learn_from_search(
    policy: Policy,
    decision: Decision,
    lists: Mapping[str, Sequence[str]],
    shown: Sequence[str],
    wanted: str | None,
    position_bias: float | None,
) -> int:
    """The learner's update from one settled search; returns the arms updated.

    The called strategies (``decision.budgets[s] > 0``) returned the first ``k_s`` ids of
    ``lists[s]`` (a strategy missing from ``lists`` returned nothing; every call counts as
    succeeded); ``wanted`` is the entity the search is positive for (None: no positive feedback).
    Rewards :func:`~ltrr.bandit.rewards.semi_bandit_rewards`; with ``position_bias`` each arm is
    read through its :func:`~ltrr.bandit.rewards.arm_visibility` in ``shown`` (and, with
    ``soft_labels``, an unclicked search teaches soft labels, :meth:`ltrr.bandit.Policy.update`)."""
    budgets = decision.budgets
    called = {s: list(lists.get(s, ()))[:k] for s, k in budgets.items() if k > 0}
    ok = dict.fromkeys(called, True)
    ladder = policy.config.ladder
    rewards = semi_bandit_rewards(budgets, ladder, called, ok, wanted)
    vis = None if position_bias is None else arm_visibility(budgets, ladder, called, ok, shown, float(position_bias))
    return policy.update(decision, rewards, vis)


class InLoopPolicy:
    """One of ltrr's bandit policies as a :class:`Contender` (module docstring).

    ``config`` is the whole policy config (its ``algorithm`` chooses the policy; ``prior_path``, when
    set, is installed as the app's learner installs it); ``rng`` its decision generator (default
    ``default_rng(config.seed)``). ``position_bias`` overrides ``config.position_bias`` for the
    visibility of its updates (None: the config's). ``reveal`` is what it learns from: ``"click"``
    (the search's positive entity, :attr:`Played.acted_on`: as the app), or the replay diagnostics
    ``"shown"`` (the wanted item whenever it is shown: no examination bias), ``"union"`` (whenever a
    called strategy retrieved it: no ranking censoring) and ``"none"`` (no learning: the prior alone)."""

    def __init__(
        self,
        name: str,
        config: PolicyConfig,
        strategies: Sequence[str],
        *,
        rng: np.random.Generator | None = None,
        position_bias: float | None = None,
        reveal: Reveal = "click",
    ) -> None:
        if reveal not in REVEALS:
            raise InvalidRequest("reveal", f"must be one of {', '.join(REVEALS)}, got {reveal!r}")
        self.name = name
        self.config = config
        self.reveal = reveal
        self.position_bias = config.position_bias if position_bias is None else float(position_bias)
        self.featurizer = ContextFeaturizer(strategies, ignore=config.ignore_features)
        self.policy = new_policy(config, strategies, self.featurizer.dim, rng)
        if config.prior_path:
            load_prior(config.prior_path, tuple(strategies), config.ladder).install(
                self.policy.arms, self.featurizer.names, config.ridge, config.prior_hit_rate, config.prior_weight
            )

    def choose(self, context: Mapping[str, float]) -> Choice:
        dec = self.policy.select(self.featurizer.vector(context))
        return Choice(dec.budgets, dec.action, dec.propensity, dec)

    def learn(self, choice: Choice, info: FullInfo, played: Played, costs: np.ndarray) -> None:
        if self.reveal == "none":
            return
        if choice.decision is None:
            raise InvalidRequest("choice", "must carry the policy's decision to learn from it")
        if self.reveal == "shown":
            wanted = info.wanted if info.wanted in played.shown else None
        elif self.reveal == "union":
            found = any(info.wanted in list(info.lists.get(s, ()))[:k] for s, k in choice.budgets.items() if k > 0)
            wanted = info.wanted if found else None
        else:
            wanted = played.acted_on
        learn_from_search(self.policy, choice.decision, info.lists, played.shown, wanted, self.position_bias)

    def reprice(self, latency_ms: Mapping[str, float]) -> None:
        self.policy.space.set_latency(latency_ms)

    def close(self) -> None:
        pass


def inloop_config(base: PolicyConfig, algorithm: str) -> PolicyConfig:
    """``base`` (the app's policy config) with ``algorithm`` instead, validated."""
    if algorithm not in POLICIES:
        raise InvalidRequest("algorithm", f"unknown policy {algorithm!r}; valid: {', '.join(POLICIES)}")
    return PolicyConfig.model_validate({**base.model_dump(), "algorithm": algorithm})


def inloop_policies(
    base: PolicyConfig, strategies: Sequence[str], algorithms: Sequence[str], seed: int
) -> list[InLoopPolicy]:
    """One :class:`InLoopPolicy` per algorithm, named ``INLOOP_PREFIX + algorithm``, on the app's
    ``base`` config; the ``i``-th draws from ``default_rng((seed, stream, i))``, a stream of its own
    (a generator seeded like the harness's would draw the harness's click uniforms)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidRequest("seed", f"must be an int >= 0, got {seed!r}")
    return [
        InLoopPolicy(
            f"{INLOOP_PREFIX}{algo}",
            inloop_config(base, algo),
            strategies,
            rng=np.random.default_rng((seed, _RNG_STREAM, i)),
        )
        for i, algo in enumerate(algorithms)
    ]


# -- the click model of a saved run ------------------------------------------------------------------


def saved_click_model(meta: Mapping[str, Any]) -> PositionClickModel:
    """The click model a saved run drew its clicks with (``meta["click_model_params"]``: eta, depth,
    noise, skip), so a replay reads its draws as they were drawn; a run saved without it drew
    examination only, at eta 1 over the top 10."""
    params = meta.get("click_model_params") or {}
    return PositionClickModel(
        eta=float(params.get("eta", 1.0)),
        depth=int(params.get("depth", 10)),
        noise=float(params.get("noise", 0.0)),
        skip=float(params.get("skip", 1.0)),
    )
