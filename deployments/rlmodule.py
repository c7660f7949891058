"""The retrieval policy as an RLlib RLModule (new API stack).

:class:`BanditRLModule` is a :class:`~ray.rllib.core.rl_module.torch.TorchRLModule`
whose state (per-arm ridge statistics, per-class hit counts, the measured per-strategy
latencies, the update count and the learner's event-log cursor) lives in torch buffers, so
RLlib's own checkpoint API (``save_to_path`` / ``RLModule.from_checkpoint``) saves and restores it, and
``get_state`` / ``set_state`` move it from the learner to the deciders.

The math is :mod:`ltrr.bandit` (numpy, no RLlib): the module hands it numpy
*views* of its float64 buffers, so an update through the math is an update of
the module, and ``set_state`` (which copies into the buffers in place) is seen
by the math at once. The measured latencies (:class:`~ltrr.bandit.latency.LatencyModel`
over the ``latency_ms`` / ``latency_n`` buffers) price the actions: whenever they change,
by :meth:`BanditRLModule.learn` in the learner or ``set_state`` in a decider, the action
space's cost vector is recomputed (:meth:`~ltrr.bandit.ActionSpace.set_latency`, 5^4
actions), so every decider prices a call by the same measured latency. Measured on 2 cores,
the numpy path is about 10x faster than the same math in torch ops, which is why the forward
passes delegate to it.

Forward passes (``obs``: context vectors ``(B, d)``):

* ``forward_exploration``: the policy's exploring choice; ``actions (B, S)`` budget
  levels, ``action_logp (B,)`` log propensity, and the :class:`~ltrr.bandit.Decision` records;
* ``forward_inference``: the greedy choice on posterior means, no exploration;
* ``forward_train``: posterior-mean hit probabilities per arm ``(B, n_arms)``
  (the reward model of doubly-robust off-policy evaluation).

Observation space: ``Box(-1, 1, (d,))``; action space: ``MultiDiscrete([L] * S)``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule

from ltrr.bandit import (
    QUERY_CLASSES,
    ArmRewards,
    ContextFeaturizer,
    Decision,
    LinearArms,
    PolicyConfig,
    make_policy,
    space_for,
)
from ltrr.bandit.latency import LatencyModel, Sample
from ltrr.bandit.prior import load_prior

DECISIONS = "decisions"
#: How the learner feeds the module (a checkpoint made under another scheme is relearned from the log):
#: every search counted at once as reward 0 (:meth:`BanditRLModule.open`), positives credited later.
LEARNING_SCHEME = "open-then-credit"
HIT_PROBS = "hit_probs"


class BanditRLModule(TorchRLModule):
    """A contextual bandit over per-strategy candidate budgets (see the module docstring)."""

    @classmethod
    def build(cls, strategies: Sequence[str], dim: int, policy: PolicyConfig | Mapping[str, Any]) -> BanditRLModule:
        cfg = PolicyConfig.model_validate(policy)
        return cls(
            observation_space=gym.spaces.Box(-1.0, 1.0, (dim,), dtype=np.float64),
            action_space=gym.spaces.MultiDiscrete([len(cfg.ladder)] * len(strategies)),
            inference_only=False,
            model_config={
                "strategies": list(strategies),
                "dim": int(dim),
                "policy": cfg.model_dump(mode="json"),
                "learning": LEARNING_SCHEME,
            },
        )

    def setup(self) -> None:
        super().setup()
        mc: dict[str, Any] = dict(self.model_config)  # type: ignore[arg-type]  # always our dict
        cfg = PolicyConfig.model_validate(mc["policy"])
        strategies, dim = tuple(mc["strategies"]), int(mc["dim"])
        self.policy_config = cfg
        self.space = space_for(cfg, strategies)
        n, f64 = self.space.n_arms, torch.float64
        self.register_buffer("a_inv", torch.zeros(n, dim, dim, dtype=f64))
        self.register_buffer("b", torch.zeros(n, dim, dtype=f64))
        self.register_buffer("theta", torch.zeros(n, dim, dtype=f64))
        self.register_buffer("count", torch.zeros(n, dtype=f64))
        self.register_buffer("class_hits", torch.zeros(len(QUERY_CLASSES), len(strategies), dtype=f64))
        self.register_buffer("class_trials", torch.zeros(len(QUERY_CLASSES), len(strategies), dtype=f64))
        self.register_buffer("latency_ms", torch.zeros(len(strategies), dtype=f64))
        self.register_buffer("latency_n", torch.zeros(len(strategies), dtype=f64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.int64))
        self.register_buffer("open_cursor", torch.zeros((), dtype=torch.int64))
        self.arms = LinearArms(self.a_inv.numpy(), self.b.numpy(), self.theta.numpy(), self.count.numpy())
        self.arms.reset(cfg.ridge, cfg.prior_hit_rate)
        if cfg.prior_path:
            prior = load_prior(cfg.prior_path, strategies, cfg.ladder)
            names = ContextFeaturizer(strategies).names
            if len(names) != dim:
                raise ValueError(f"`dim` must be {len(names)} (the featurizer's) to install a fitted prior, got {dim}")
            prior.install(self.arms, names, cfg.ridge, cfg.prior_hit_rate, cfg.prior_weight)
        self.latency = LatencyModel(strategies, cfg.costs, self.latency_ms.numpy(), self.latency_n.numpy())
        self.latency.reset()
        self.space.set_latency(self.latency.mean)
        self.policy = make_policy(cfg, self.space, self.arms)

    # -- versions ---------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Number of settled searches that changed the parameters (the parameters' version):
        those learned from, and those only whose call latencies were measured (:meth:`learn_latencies`)."""
        return int(self.updates.item())

    @property
    def policy_version(self) -> str:
        return f"{self.policy_config.algorithm}-{self.version}"

    # -- forward passes ---------------------------------------------------------------------------
    def _obs(self, batch: Mapping[str, Any]) -> np.ndarray:
        obs = batch[Columns.OBS]
        arr = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
        return np.atleast_2d(arr.astype(np.float64, copy=False))

    def _pack(self, decisions: list[Decision]) -> dict[str, Any]:
        levels = [self.space.levels(d.action) for d in decisions]
        return {
            Columns.ACTIONS: torch.tensor(levels, dtype=torch.int64),
            Columns.ACTION_LOGP: torch.log(torch.tensor([d.propensity for d in decisions], dtype=torch.float64)),
            DECISIONS: decisions,
        }

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        version = self.policy_version
        return self._pack([self.policy.select(x).with_version(version) for x in self._obs(batch)])

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        version = self.policy_version
        return self._pack([self.policy.greedy_decision(x).with_version(version) for x in self._obs(batch)])

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = self._obs(batch)
        table = self.space.hit_table(obs @ self.arms.theta.T)  # clipped, monotone in the budget
        return {HIT_PROBS: torch.from_numpy(np.ascontiguousarray(table[..., 1:].reshape(len(obs), -1)))}

    # -- learning (called by the learner only) --------------------------------------------------------
    def learn(
        self,
        decision: Decision,
        rewards: ArmRewards,
        query_class: int,
        hits: Mapping[str, bool],
        latencies: Sequence[Sample] = (),
        visibility: ArmRewards | None = None,
    ) -> int:
        """Apply one settled search: arm rewards, per-class hit counts, its calls' latency
        samples (:func:`ltrr.bandit.latency.latency_samples`), version + 1. Returns arms updated."""
        self._check_class(query_class)
        known = {(s, k): r for (s, k), r in rewards.items() if s in self.space.strategies and k in self.space.ladder}
        samples = self.latency.check(latencies)  # validate everything before anything changes
        n = self.policy.update(decision, known, visibility) if known else 0
        self._apply_latencies(samples)
        for s, hit in hits.items():
            if s in self.space.strategies:
                j = self.space.strategies.index(s)
                self.class_trials[query_class, j] += 1.0
                self.class_hits[query_class, j] += float(hit)
        self.updates += 1
        return n

    def open(
        self,
        decision: Decision,
        observed: ArmRewards,
        query_class: int,
        latencies: Sequence[Sample] = (),
        visibility: ArmRewards | None = None,
    ) -> int:
        """Count one logged search before its outcome is known: every arm it observed as a reward-0
        observation, a trial for each strategy it called successfully, its calls' latency samples;
        version + 1. :meth:`credit` adds its positive rewards if a click settles it. Returns arms counted."""
        self._check_class(query_class)
        known = {(s, k): r for (s, k), r in observed.items() if s in self.space.strategies and k in self.space.ladder}
        samples = self.latency.check(latencies)
        n = self.policy.open(decision, known, visibility) if known else 0
        self._apply_latencies(samples)
        for s in {s for s, _ in known}:
            self.class_trials[query_class, self.space.strategies.index(s)] += 1.0
        self.updates += 1
        return n

    def credit(
        self,
        decision: Decision,
        rewards: ArmRewards,
        query_class: int,
        hits: Mapping[str, bool],
        visibility: ArmRewards | None = None,
    ) -> int:
        """Add the positive rewards of a search :meth:`open` counted; version + 1. Returns arms credited."""
        self._check_class(query_class)
        known = {(s, k): r for (s, k), r in rewards.items() if s in self.space.strategies and k in self.space.ladder}
        n = self.policy.credit(decision, known, visibility) if known else 0
        for s, hit in hits.items():
            if s in self.space.strategies and hit:
                self.class_hits[query_class, self.space.strategies.index(s)] += 1.0
        self.updates += 1
        return n

    @staticmethod
    def _check_class(query_class: int) -> None:
        if not 0 <= query_class < len(QUERY_CLASSES):
            raise ValueError(f"`query_class` must be in [0, {len(QUERY_CLASSES)}), got {query_class}")

    def learn_latencies(self, latencies: Sequence[Sample]) -> int:
        """A settled search not learned from (e.g. forced): only its calls' latency samples.
        Version + 1 when any applied; returns how many."""
        n = self._apply_latencies(self.latency.check(latencies))
        if n:
            self.updates += 1
        return n

    def _apply_latencies(self, checked: Sequence[tuple[int, float]]) -> int:
        n = self.latency.apply(checked)
        if n:
            self.space.set_latency(self.latency.mean)  # re-price every action (every decider does on set_state)
        return n

    # RLlib's TorchRLModule.get_state / set_state cast float64 to float32 (convert_to_numpy /
    # convert_to_torch_tensor), which would round the ridge statistics in every checkpoint
    # and every learner -> decider sync; these two keep float64. save_to_path and
    # RLModule.from_checkpoint go through them.
    def get_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Every buffer as a float64 (or int64) numpy copy; 0-d buffers as Python ints."""
        return {
            name: buf.detach().cpu().numpy().copy() if buf.dim() else buf.item() for name, buf in self.named_buffers()
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` into the buffers in place, keeping their dtype (unknown keys are ignored),
        then re-price the actions with the state's measured latencies.

        Copying in place keeps the numpy views of :attr:`arms` and :attr:`latency` valid. A state
        without ``latency_ms`` (a checkpoint from before latencies were measured) keeps the current
        estimates."""
        with torch.no_grad():
            for name, buf in self.named_buffers():
                if name not in state:
                    continue
                src = torch.as_tensor(np.asarray(state[name]), dtype=buf.dtype)
                if src.shape != buf.shape:
                    raise ValueError(f"`state[{name!r}]` must have shape {tuple(buf.shape)}, got {tuple(src.shape)}")
                buf.copy_(src)
        self.space.set_latency(self.latency.mean)

    def class_rates(self) -> np.ndarray:
        """Smoothed historical hit rate per (query class, strategy): :math:`(h + 1) / (n + 2)`."""
        return (self.class_hits.numpy() + 1.0) / (self.class_trials.numpy() + 2.0)

    def state_copy(self) -> dict[str, np.ndarray]:
        """A deep copy of the state (safe to ship while the learner keeps updating)."""
        return {k: np.array(v, copy=True) for k, v in self.get_state().items()}


class ModulePlanner:
    """The ingress's :class:`~ltrr.bandit.planner.Planner`: decisions come from the
    module's ``forward_exploration``; :meth:`load` installs parameters from the learner."""

    def __init__(self, module: BanditRLModule, featurizer: ContextFeaturizer) -> None:
        self.module = module
        self.featurizer = featurizer
        self._rates = module.class_rates()

    @property
    def version(self) -> int:
        return self.module.version

    def load(self, state: Mapping[str, Any]) -> None:
        self.module.set_state(dict(state))
        self._rates = self.module.class_rates()

    def decide(self, x: np.ndarray) -> Decision:
        out = self.module.forward_exploration({Columns.OBS: torch.from_numpy(x[None, :])})
        decision: Decision = out[DECISIONS][0]
        return decision

    def force(self, x: np.ndarray, budgets: Mapping[str, int]) -> Decision:
        return self.module.policy.forced(x, budgets).with_version(self.module.policy_version)

    def class_rates(self) -> np.ndarray:
        return self._rates
