r"""Vowpal Wabbit as the peer learner: ``--cb_explore_adf`` over the same 624 actions.

Each query is one VW ADF multi-line example (Bietti, Agarwal & Langford, "A Contextual Bandit
Bake-off", JMLR 2021, is the reference for these exploration algorithms):

* the **shared** line holds the policy's own context features (``SearchResponse.context_features``)
  in namespace ``s``, ``name:value`` (zeros omitted);
* one line per valid action :math:`a` in namespace ``a``: a one-hot of each strategy's budget level,
  ``lexical_25 vector_0 graph_0 memory_10``, and its cost ``cost:c(a)``. With the interaction
  ``-q sa`` the learned cost of an action is :math:`w^\top (x \otimes \phi(a))`, so what VW learns
  about "vector at 25" in one action carries over to every action that has it; ``-q aa`` adds
  pairs of budgets (two strategies that find the same items are worth less than the sum).

VW returns a probability mass function over the action lines (SquareCB, Foster & Rakhlin, ICML
2020; or epsilon-greedy); :meth:`VWPolicy.choose` samples it with its own seeded generator and
:meth:`VWPolicy.learn` reports the chosen line's cost :math:`c(a) - \mathrm{click}` (VW minimises
cost; the click is the same position-based click the live user makes on VW's own shown list) with
the probability it was chosen. The ``vowpalwabbit`` package is needed only here (the ``bench``
and ``test`` extras); importing this module does not import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ltrr.bandit.actions import ActionSpace
from ltrr.errors import ConfigError, InvalidRequest
from ltrr.fusion import rrf
from ltrr.types import Candidate

_BAD = re.compile(r"[\s:|]")
_RNG_STREAM = 0x5657  # "VW"


@dataclass(frozen=True)
class VWSpec:
    """One VW configuration: a display ``name``, its exploration ``family`` and the VW arguments
    added to ``--cb_explore_adf``."""

    name: str
    family: str
    args: str


#: The configurations the bench runs. SquareCB plays action a with probability
#: 1 / (K + gamma * (cost(a) - min cost)), gamma = gamma_scale * sqrt(t): with K = 624 actions and gaps of
#: about 0.1, VW's default gamma_scale 10 stays close to uniform for thousands of queries, so the grid
#: reaches 10^4 (1000 did best on a 600-query run, offline replay: `bench_regret.py --offline`). Epsilon-greedy
#: at 0.1 with VW's learning rate 0.5 and 0.1; "+aa" adds pairs of budgets (-q aa).
DEFAULT_GRID: tuple[VWSpec, ...] = (
    VWSpec("vw squarecb g=10", "squarecb", "--squarecb --gamma_scale 10 -q sa"),
    VWSpec("vw squarecb g=1000", "squarecb", "--squarecb --gamma_scale 1000 -q sa"),
    VWSpec("vw squarecb g=10000", "squarecb", "--squarecb --gamma_scale 10000 -q sa"),
    VWSpec("vw squarecb g=1000 +aa", "squarecb", "--squarecb --gamma_scale 1000 -q sa -q aa"),
    VWSpec("vw epsilon 0.1", "epsilon", "--epsilon 0.1 -q sa"),
    VWSpec("vw epsilon 0.1 lr=0.1", "epsilon", "--epsilon 0.1 -q sa -l 0.1"),
    VWSpec("vw epsilon 0.1 +aa", "epsilon", "--epsilon 0.1 -q sa -q aa"),
)


def feature_name(name: str) -> str:
    """A VW-safe feature name (no whitespace, ``:`` or ``|``)."""
    return _BAD.sub("_", name) or "_"


def shared_line(context: Mapping[str, float]) -> str:
    feats = " ".join(f"{feature_name(k)}:{float(v):.6g}" for k, v in sorted(context.items()) if float(v) != 0.0)
    return f"shared |s {feats}".rstrip()


def action_lines(space: ActionSpace, costs: np.ndarray) -> list[str]:
    """One ``|a ...`` line per valid action id ``1 .. A-1`` (the order of VW's pmf)."""
    out = []
    for a in range(1, space.n_actions):
        budgets = " ".join(f"{feature_name(s)}_{k}" for s, k in space.budgets(a).items())
        out.append(f"|a {budgets} cost:{float(costs[a]):.6g}")
    return out


class VWPolicy:
    """A VW ``--cb_explore_adf`` learner choosing among ``space``'s valid actions (module docstring)."""

    def __init__(self, space: ActionSpace, spec: VWSpec, *, seed: int = 0) -> None:
        try:
            from vowpalwabbit import Workspace
        except ImportError as exc:  # pragma: no cover - the bench/test extras install it
            raise ConfigError("the VW peer needs the `vowpalwabbit` package (pip install -e '.[bench]')") from exc
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequest("seed", f"must be an int, got {seed!r}")
        self.space = space
        self.spec = spec
        self.vw: Any = Workspace(f"--cb_explore_adf {spec.args} --random_seed {seed} --quiet")
        # Its own stream: a generator seeded like the caller's would draw the same uniforms as the caller.
        self.rng = np.random.default_rng((seed, _RNG_STREAM))
        self._lines = action_lines(space, space.costs)

    def reprice(self, costs: np.ndarray) -> None:
        """Use these action costs in the ``cost`` feature from now on."""
        self._lines = action_lines(self.space, costs)

    def pmf(self, context: Mapping[str, float]) -> np.ndarray:
        """VW's distribution over action ids ``1 .. A-1``, shape ``(A-1,)``."""
        p = np.asarray(self.vw.predict([shared_line(context), *self._lines]), dtype=float)
        return p / p.sum()

    def choose(self, context: Mapping[str, float]) -> tuple[int, float]:
        """Draw an action from :meth:`pmf`; return ``(action id, its probability)``."""
        p = self.pmf(context)
        i = int(self.rng.choice(len(p), p=p))
        return i + 1, float(p[i])

    def learn(self, context: Mapping[str, float], action: int, prob: float, cost: float) -> None:
        """Learn that ``action`` (chosen with probability ``prob``) cost ``cost``."""
        if not 1 <= action < self.space.n_actions:
            raise InvalidRequest(
                "action", f"must be a valid action id in [1, {self.space.n_actions - 1}], got {action}"
            )
        if not 0.0 < prob <= 1.0:
            raise InvalidRequest("prob", f"must be in (0, 1], got {prob}")
        lines = list(self._lines)
        lines[action - 1] = f"0:{float(cost):.6g}:{float(prob):.6g} " + lines[action - 1]
        self.vw.learn([shared_line(context), *lines])

    def close(self) -> None:
        self.vw.finish()


def shown_list(
    lists: Mapping[str, Sequence[str]],
    budgets: Mapping[str, int],
    *,
    k: int = 10,
    c: float = 60.0,
    order: Sequence[str] = (),
) -> list[str]:
    """What a plan would show: the top ``k`` of the union of the first ``budgets[s]`` ids of each list.

    Without ``order``, ranked by RRF (``c``), the same fusion as the service (:func:`ltrr.fusion.rrf`),
    with the same tie-breaks. With ``order`` (the served ranker's order of the full union, as far as
    the response lists it), the plan's candidates come in that order, and those it leaves out follow
    in RRF order: a plan is shown what the app's ranker would show it, up to the ranker's features
    that depend on the budgets."""
    results = {
        s: [Candidate(eid, "", "", "", 0.0, r) for r, eid in enumerate(ids[: budgets.get(s, 0)], 1)]
        for s, ids in lists.items()
        if budgets.get(s, 0) > 0
    }
    fused = [f.entity_id for f in rrf(results, c=c)]
    if order:
        pool = set(fused)
        ranked = [e for e in dict.fromkeys(order) if e in pool]
        placed = set(ranked)
        fused = ranked + [e for e in fused if e not in placed]
    return fused[:k]
