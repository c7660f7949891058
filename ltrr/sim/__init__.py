"""Simulated users and the regret harness (pure logic; the gRPC loop is ``scripts/bench_regret.py``).

* :mod:`ltrr.sim.users`: the held-out Last.fm users' queries (name, typo, tag, like, track, podcast,
  ambiguous) and the drift schedule (:class:`~ltrr.sim.users.Drift`);
* :mod:`ltrr.sim.typos`: realistic single-edit misspellings;
* :mod:`ltrr.sim.clicks`: the position-based click model, with optional noise clicks and skips;
* :mod:`ltrr.sim.regret`: scoring every action on full information (oracle, static, uniform, played);
* :mod:`ltrr.sim.vw`: Vowpal Wabbit ``--cb_explore_adf`` as the peer learner;
* :mod:`ltrr.sim.report`: the markdown and JSON tables;
* :mod:`ltrr.sim.bench_config`: the Serve config of a fresh bench deployment.
"""

from ltrr.sim.clicks import PositionClickModel
from ltrr.sim.regret import PolicyScore, QueryRecord, Scored, score_run
from ltrr.sim.users import KINDS, QueryMix, QueryStream, SimQuery, SimWorld, build_world

__all__ = [
    "KINDS",
    "PolicyScore",
    "PositionClickModel",
    "QueryMix",
    "QueryRecord",
    "QueryStream",
    "Scored",
    "SimQuery",
    "SimWorld",
    "build_world",
    "score_run",
]
