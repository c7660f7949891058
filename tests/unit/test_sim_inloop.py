"""The in-loop learners' shared step: shown list, clicks (noise included), the feedback they send, learning."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pytest

from ltrr.bandit import PolicyConfig
from ltrr.bandit.config import CostConfig
from ltrr.errors import InvalidRequest
from ltrr.sim.clicks import Click, PositionClickModel
from ltrr.sim.inloop import (
    BANDITS,
    INLOOP_PREFIX,
    Bank,
    Choice,
    FullInfo,
    InLoopPolicy,
    Played,
    inloop_config,
    inloop_policies,
    learn_from_search,
    play,
    saved_click_model,
    shown_outcome,
)
from ltrr.sim.vw import shown_list

STRATEGIES = ("a", "b")
# Strategy a finds the wanted item "w" at rank 2, b never does. Ranker order of the union: w first.
LISTS = {"a": ["x", "w", "z"], "b": ["y", "v"]}
ORDER = ["w", "y", "x", "v", "z"]
SEEN_ALL = np.zeros(10)  # every examination uniform 0: the user looks at every rank


def _cfg(**kw: object) -> PolicyConfig:
    return PolicyConfig.model_validate(
        {"ladder": (0, 10), "costs": CostConfig(per_call=0.05, per_candidate=0.0, per_ms=0.0), "seed": 0, **kw}
    )


def _info(draw: np.ndarray = SEEN_ALL, context: Mapping[str, float] | None = None) -> FullInfo:
    return FullInfo(context or {"bias": 1.0}, LISTS, ORDER, "w", draw)


class Fixed:
    """A contender that always plays ``budgets`` and records what it learned from."""

    def __init__(self, name: str, budgets: dict[str, int]) -> None:
        self.name, self.budgets = name, budgets
        self.learned: list[tuple[Played, float]] = []
        self.latency: list[Mapping[str, float]] = []

    def choose(self, context: Mapping[str, float]) -> Choice:
        return Choice(self.budgets, 1, 1.0)

    def learn(self, choice: Choice, info: FullInfo, played: Played, costs: np.ndarray) -> None:
        self.learned.append((played, float(costs[0])))

    def reprice(self, latency_ms: Mapping[str, float]) -> None:
        self.latency.append(latency_ms)

    def close(self) -> None:
        pass


# -- the feedback one user's clicks send -------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.0, 1.0, 2.0])
def test_without_noise_the_feedback_is_the_wanted_click_alone(eta: float) -> None:
    # The sequence bench_regret sent before noise existed: one ("click") on the wanted item at the position
    # `click()` gives, nothing when it gives None; the same on 300 seeded draws and every wanted position.
    clicks = PositionClickModel(eta=eta, depth=10)
    rng = np.random.default_rng(7)
    shown = [f"e{i}" for i in range(10)]
    for t in range(300):
        draw = clicks.draw(rng)
        wanted = shown[t % 10] if t % 11 else "absent"
        played = shown_outcome({"a": 10}, shown, FullInfo({}, {}, (), wanted, draw), clicks)
        pos = clicks.click(shown, wanted, draw)
        assert played.feedback() == (() if pos is None else ((wanted, "click", pos),))
        assert played.position == pos
        assert played.acted_on == (None if pos is None else wanted)


def test_a_skipped_noise_click_is_sent_as_click_then_skip_in_position_order() -> None:
    # depth 10 + (u_noise, u_pick, u_skip): everything examined, a noise click (0 < 0.5) on the first examined
    # non-wanted result (pick 0 -> position 1, "e0"), skipped (0 < 0.5). The wanted item is at position 3.
    clicks = PositionClickModel(eta=1.0, depth=10, noise=0.5, skip=0.5)
    shown = [f"e{i}" for i in range(10)]
    draw = np.zeros(13)
    played = shown_outcome({"a": 10}, shown, FullInfo({}, {}, (), "e2", draw), clicks)
    assert played.outcome == (Click(1, False, "skip"), Click(3, True, "play"))
    assert played.feedback() == (("e0", "click", 1), ("e0", "skip", 1), ("e2", "click", 3))
    # The app settles the search on its first positive feedback: the noise click above the wanted one.
    assert played.acted_on == "e0"
    assert played.position == 3
    # Played noise click (u_skip 0.9 >= 0.5), picked last of the 9 examined others (u_pick 0.99 -> position 10).
    draw[10:] = (0.0, 0.99, 0.9)
    played = shown_outcome({"a": 10}, shown, FullInfo({}, {}, (), "e2", draw), clicks)
    assert played.feedback() == (("e2", "click", 3), ("e9", "click", 10))
    assert played.acted_on == "e2"


# -- the bank's step ------------------------------------------------------------------------------------------


def test_bank_steps_every_member_on_its_own_list_with_the_same_draw() -> None:
    only_a, only_b = Fixed("only a", {"a": 10, "b": 0}), Fixed("only b", {"a": 0, "b": 10})
    bank = Bank([only_a, only_b])
    clicks = PositionClickModel(eta=1.0, depth=10)
    draw = np.full(10, 0.9)
    draw[0] = 0.0  # only rank 1 is examined (theta_r = 1/r < 0.9 from rank 2 on)
    costs = np.array([7.0, 1.0, 2.0, 3.0])
    got = bank.step(_info(draw), clicks, costs)
    # a alone: its candidates x, w, z in the ranker's order -> w, x, z; w at rank 1 is examined and clicked.
    assert got["only a"] == Played({"a": 10, "b": 0}, ("w", "x", "z"), (Click(1, True, "play"),))
    # b alone: y, v; the user looks at rank 1 only, which is not the wanted item: no click.
    assert got["only b"] == Played({"a": 0, "b": 10}, ("y", "v"), ())
    assert [p for p, _ in only_a.learned] == [got["only a"]] and [c for _, c in only_a.learned] == [7.0]
    assert [p for p, _ in only_b.learned] == [got["only b"]]
    assert {n: len(ms) for n, ms in bank.ms.items()} == {"only a": 1, "only b": 1}
    bank.reprice({"a": 3.0})
    assert only_a.latency == only_b.latency == [{"a": 3.0}]


def test_bank_rejects_twice_the_same_name() -> None:
    with pytest.raises(InvalidRequest, match=r"^members: names must be unique, got 'x' twice$"):
        Bank([Fixed("x", {}), Fixed("x", {})])


def _mean(member: InLoopPolicy, strategy: str, k: int = 10) -> float:
    pol = member.policy
    x = member.featurizer.vector({"bias": 1.0})
    arm = pol.space.arm(pol.space.strategies.index(strategy), pol.space.ladder.index(k))
    return float(pol.arms.mean(x)[arm])


@pytest.mark.parametrize("algorithm", BANDITS)
def test_an_in_loop_policy_decides_clicks_and_learns_towards_the_clicked_strategy(algorithm: str) -> None:
    member = InLoopPolicy(INLOOP_PREFIX + algorithm, _cfg(algorithm=algorithm), STRATEGIES)
    clicks = PositionClickModel(eta=1.0, depth=10)
    costs = member.policy.space.costs
    before = {s: _mean(member, s) for s in STRATEGIES}
    assert before == pytest.approx({"a": 0.3, "b": 0.3})  # the flat prior: prior_hit_rate on the bias
    played = play(member, _info(), clicks, costs)
    assert played.shown == tuple(shown_list(LISTS, played.budgets, order=ORDER))
    called = {s for s, k in played.budgets.items() if k > 0}
    assert called  # id 0 (nothing called) is never played
    after = {s: _mean(member, s) for s in STRATEGIES}
    if "a" in called:  # w is shown and, every rank being examined, clicked: a's arm learns a hit
        assert played.position == played.shown.index("w") + 1
        assert after["a"] > before["a"]
    if called == {"b"}:  # b alone never shows w: a miss for b, a is not observed
        assert played.position is None and after["a"] == before["a"]
    if "b" in called:
        assert after["b"] < before["b"]
    # Over a stream of such queries it learns that a finds the item and b does not, and plays a.
    late = [play(member, _info(), clicks, costs).budgets["a"] > 0 for _ in range(300)]
    assert _mean(member, "a") > 0.9 and _mean(member, "b") < 0.3
    assert np.mean(late[-100:]) > 0.85


def test_learn_from_search_reads_the_click_through_visibility() -> None:
    # position_bias 1: a@10's candidates x, w, z are shown at 2, 1, 3: visibility (1/2 + 1 + 1/3) / 3 = 11/18.
    # The click on w is a hit for a@10 (rank 2 <= 10). On the bias (x = e_0, ridge 25, prior 0.3) a plain update
    # gives A = 25 + 1, b = 7.5 + 1; read through v it weighs v^2 with reward v: A = 25 + v^2, b = 7.5 + v,
    # a smaller step towards 1.
    cfg = _cfg()
    plain = InLoopPolicy("plain", cfg, STRATEGIES)
    seen = InLoopPolicy("seen", cfg, STRATEGIES, position_bias=1.0)
    assert plain.position_bias is None and seen.position_bias == 1.0
    for m in (plain, seen):
        dec = m.policy.forced(m.featurizer.vector({"bias": 1.0}), {"a": 10, "b": 0})
        assert learn_from_search(m.policy, dec, LISTS, ["w", "x", "z"], "w", m.position_bias) == 1
    v = 11.0 / 18.0
    assert _mean(plain, "a") == pytest.approx(8.5 / 26.0)
    assert _mean(seen, "a") == pytest.approx((7.5 + v) / (25.0 + v * v))
    assert 0.3 < _mean(seen, "a") < _mean(plain, "a")


@pytest.mark.parametrize(
    "reveal, learns_hit",
    [("click", False), ("shown", True), ("union", True), ("none", None)],
)
def test_reveal_modes_of_the_replay_diagnostics(reveal: str, learns_hit: bool | None) -> None:
    # a@10 shows w second, and the user examines rank 1 only (theta_1 = 1 > 0.999): no click. "shown" and
    # "union" reveal w anyway; "none" learns nothing.
    member = InLoopPolicy("r", _cfg(), STRATEGIES, reveal=reveal)  # type: ignore[arg-type]
    dec = member.policy.forced(member.featurizer.vector({"bias": 1.0}), {"a": 10, "b": 0})
    info = _info(np.full(10, 0.999))
    played = shown_outcome(dec.budgets, ["x", "w", "z"], info, PositionClickModel(eta=1.0, depth=10))
    assert played.outcome == ()
    member.learn(Choice(dec.budgets, dec.action, 1.0, dec), info, played, member.policy.space.costs)
    mean = _mean(member, "a")
    if learns_hit is None:
        assert mean == pytest.approx(0.3)
    else:
        assert (mean > 0.3) is learns_hit and mean != pytest.approx(0.3)


def test_inloop_policies_use_the_apps_config_but_for_the_algorithm() -> None:
    base = _cfg(algorithm="linear_ts", position_bias=0.5, ignore_features=("hist.*",), ucb_alpha=0.7)
    members = inloop_policies(base, STRATEGIES, ["linucb", "epsilon_greedy"], seed=3)
    assert [m.name for m in members] == ["ltrr in-loop linucb", "ltrr in-loop epsilon_greedy"]
    assert [m.policy.name for m in members] == ["linucb", "epsilon_greedy"]
    for m in members:
        assert m.config.model_dump() == {**base.model_dump(), "algorithm": m.policy.name}
        assert m.position_bias == 0.5 and m.featurizer.ignored == ("hist.a", "hist.b")
    # Each has its own random stream, not the harness's default_rng(seed) (the click draws).
    assert members[0].policy.rng.random() != np.random.default_rng(3).random()
    assert members[0].policy.rng.random() != members[1].policy.rng.random()


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: inloop_config(_cfg(), "thompson"),
            r"^algorithm: unknown policy 'thompson'; valid: linear_ts, linucb, epsilon_greedy, uniform$",
        ),
        (lambda: inloop_policies(_cfg(), STRATEGIES, BANDITS, seed=-1), r"^seed: must be an int >= 0, got -1$"),
        (
            lambda: InLoopPolicy("x", _cfg(), STRATEGIES, reveal="all"),  # type: ignore[arg-type]
            r"^reveal: must be one of click, shown, union, none, got 'all'$",
        ),
    ],
)
def test_invalid_in_loop_arguments(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest, match=message):
        call()


def test_saved_click_model() -> None:
    assert saved_click_model({}) == PositionClickModel(eta=1.0, depth=10)
    meta = {"click_model_params": {"eta": 0.5, "depth": 10, "noise": 0.1, "skip": 0.3}}
    assert saved_click_model(meta) == PositionClickModel(eta=0.5, depth=10, noise=0.1, skip=0.3)
