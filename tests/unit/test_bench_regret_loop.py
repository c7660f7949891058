"""scripts/bench_regret.py's query loop against an in-memory fake of the gRPC client: the feedback it sends
(unchanged without noise, every click with noise), the in-loop ltrr policies beside live, the drift upsert."""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
from pathlib import Path
from typing import Any, Mapping
from unittest import mock

import numpy as np
import pytest

from ltrr.bandit import PolicyConfig
from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.config import CostConfig
from ltrr.sim.clicks import PositionClickModel
from ltrr.sim.inloop import Bank, inloop_policies
from ltrr.sim.users import Clone, SimQuery
from ltrr.types import Entity
from ltrr.v1 import search_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
POOL = [f"e{i}" for i in range(12)]
FOIL = [f"f{i}" for i in range(12)]  # strategy b's list: it never finds a wanted item
CLONE = Entity("artist:clone", "artist", "Clone Ensemble", tags=("rock",))
STRATEGIES = ("a", "b")


@pytest.fixture(scope="module")
def bench() -> Any:
    # The script sets environment defaults and changes directory on import: keep both as they were.
    cwd = os.getcwd()
    with mock.patch.dict(os.environ):
        spec = importlib.util.spec_from_file_location("bench_regret_script", ROOT / "scripts" / "bench_regret.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # its dataclasses look their module up there
        spec.loader.exec_module(mod)
    os.chdir(cwd)
    return mod


class FakeClient:
    """Answers searches from POOL (strategy a: POOL in order, the clone first once upserted) and FOIL
    (strategy b), each cut at its budget; the live policy calls a at 10. Like the ingress, it lists each
    strategy's candidates only with ``explain``. Records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.upserted: list[str] = []
        self.searches = 0

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        user_id: str = "",
        explain: bool = False,
        budgets: Mapping[str, int] | None = None,
    ) -> pb.SearchResponse:
        self.calls.append(("search", query, dict(budgets or {})))
        self.searches += 1
        rid = f"r{self.searches}"  # the live search of query i is r{2i + 1}, its full-information one r{2i + 2}
        lists = {"a": [*self.upserted, *POOL], "b": FOIL}
        plan = dict(budgets) if budgets else {"a": 10, "b": 0}
        calls = [
            pb.StrategyCall(
                strategy=s,
                candidates_requested=plan.get(s, 0),
                latency_ms=5.0,
                status=pb.StrategyCall.OK,
                candidate_ids=lists[s][: plan.get(s, 0)] if explain else [],  # as the ingress: only with explain
            )
            for s in STRATEGIES
        ]
        shown = [e for s in STRATEGIES for e in lists[s][: plan.get(s, 0)]]
        return pb.SearchResponse(
            request_id=rid,
            results=[pb.Result(entity_id=e) for e in list(dict.fromkeys(shown))[:k]],
            strategies=calls,
            policy_version="linear_ts-0",
            context_features={"bias": 1.0},
        )

    def feedback(self, request_id: str, entity_id: str, action: str = "click", *, position: int = 0) -> None:
        self.calls.append(("feedback", request_id, entity_id, action, position))

    def upsert(self, entities: list[pb.Entity]) -> pb.UpsertSummary:
        self.calls.append(("upsert", [e.entity_id for e in entities]))
        self.upserted += [e.entity_id for e in entities]
        return pb.UpsertSummary(received=len(entities), changed=len(entities), indexed={"a": len(entities)})


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"eta": 1.0, "noise": 0.0, "skip": 1.0, "seed": 0, **kw})


def _queries(n: int) -> list[SimQuery]:
    return [SimQuery(i, "sim:1", "name", f"query {i}", POOL[i % 5]) for i in range(n)]


def _space() -> ActionSpace:
    return ActionSpace.build(STRATEGIES, (0, 10), CostConfig(per_call=0.05, per_candidate=0.0, per_ms=0.0))


def _feedback(client: FakeClient) -> list[tuple[Any, ...]]:
    return [c[1:] for c in client.calls if c[0] == "feedback"]


def test_without_noise_the_loop_sends_the_same_feedback_as_before(bench: Any) -> None:
    client = FakeClient()
    queries = _queries(40)
    records, upserted = bench.live_loop(_args(), client, _space(), queries, None, io.StringIO(), Bank([]))
    assert upserted is None
    # What the loop sent before noise existed: per query, one click on the wanted item where `click()` on the
    # live top 10 gives a position, drawn by default_rng(seed) in query order.
    clicks, rng = PositionClickModel(eta=1.0, depth=10), np.random.default_rng(0)
    expected, positions = [], []
    for i, q in enumerate(queries):
        pos = clicks.click(POOL[:10], q.wanted, clicks.draw(rng))
        positions.append(pos)
        if pos is not None:
            expected.append((f"r{2 * i + 1}", q.wanted, "click", pos))
    assert expected and _feedback(client) == expected
    assert [r.clicks["live"] for r in records] == positions
    assert all("outcomes" not in r.extra for r in records)


def test_with_noise_every_click_is_sent_and_skips_follow_their_click(bench: Any) -> None:
    client = FakeClient()
    queries = _queries(30)
    records, _ = bench.live_loop(_args(noise=1.0, skip=0.5), client, _space(), queries, None, io.StringIO(), Bank([]))
    sent = _feedback(client)
    clicks, rng = PositionClickModel(eta=1.0, depth=10, noise=1.0, skip=0.5), np.random.default_rng(0)
    expected = []
    for i, q in enumerate(queries):
        for c in clicks.outcome(POOL[:10], q.wanted, clicks.draw(rng)):
            expected.append((f"r{2 * i + 1}", POOL[c.position - 1], "click", c.position))
            if c.outcome == "skip":
                expected.append((f"r{2 * i + 1}", POOL[c.position - 1], "skip", c.position))
    assert sent == expected
    # Rank 1 is always examined, so every query whose wanted item is not first has a noise click; some are skips.
    noise = [f for f in sent if f[1] != queries[int(f[0][1:]) // 2].wanted]
    assert len({f[0] for f in noise}) >= sum(q.wanted != POOL[0] for q in queries)
    assert {"click", "skip"} <= {f[2] for f in noise}
    assert all(r.extra["outcomes"]["live"] for r in records if r.wanted != POOL[0])


def test_in_loop_ltrr_policies_play_beside_live(bench: Any) -> None:
    client = FakeClient()
    policy = PolicyConfig.model_validate(
        {"ladder": (0, 10), "costs": {"per_call": 0.05, "per_candidate": 0.0, "per_ms": 0.0}}
    )
    bank = Bank(inloop_policies(policy, STRATEGIES, ["linucb", "epsilon_greedy"], seed=0))
    records, _ = bench.live_loop(_args(), client, _space(), _queries(60), None, io.StringIO(), bank)
    for r in records:
        assert set(r.played) == {"live", "ltrr in-loop linucb", "ltrr in-loop epsilon_greedy"}
        for name in ("ltrr in-loop linucb", "ltrr in-loop epsilon_greedy"):
            # its user saw its own candidates, in the served ranker's order of the full union (a's, then b's)
            own = (POOL[:10] if r.played[name]["a"] else []) + (FOIL[:10] if r.played[name]["b"] else [])
            assert r.final[name] == own[:10]
    # The in-loop policies only learn: the app gets the live user's clicks alone.
    assert len(_feedback(client)) == sum(r.clicks["live"] is not None for r in records) > 0
    # a finds every wanted item (POOL[0..4] in its top 10): both learn to call it.
    late = [r.played[n]["a"] > 0 for r in records[-20:] for n in ("ltrr in-loop linucb", "ltrr in-loop epsilon_greedy")]
    assert np.mean(late) > 0.8


def test_the_drift_upserts_its_clones_before_its_query_and_waits_for_a_search(bench: Any) -> None:
    client = FakeClient()
    drift = bench.DriftUpsert(2, (Clone("e3", CLONE),))
    records, upserted = bench.live_loop(
        _args(), client, _space(), _queries(4), None, io.StringIO(), Bank([]), (), drift
    )
    kinds = [(c[0], c[1]) if c[0] != "upsert" else ("upsert", tuple(c[1])) for c in client.calls]
    first_after = kinds.index(("search", "query 2"))
    # upsert, then the forced probe of the clone's name (every strategy at the ladder maximum), then query 2
    assert kinds[first_after - 2 : first_after] == [("upsert", ("artist:clone",)), ("search", "Clone Ensemble")]
    assert client.calls[first_after - 1][2] == {"a": 10, "b": 10}
    assert ("upsert", ("artist:clone",)) not in kinds[: kinds.index(("search", "query 1"))]
    assert upserted["received"] == 1 and upserted["found"] == 1 and upserted["not_found"] == []
    assert upserted["found_by"] == {"a": 1, "b": 0}
    # from then on the full-information lists hold the clone
    assert "artist:clone" not in records[1].final["all at max, RRF order"]
    assert "artist:clone" in records[2].final["all at max, RRF order"]


def test_entity_message_round_trips_through_the_ingress_mapping(bench: Any) -> None:
    from ltrr.grpc_mapping import entity

    e = Entity("artist:x", "artist", "X", "Artist", ("rock",), ("loud",), "d", 12.5, (), {"cloned_from": "artist:y"})
    assert entity(0, bench.entity_message(e)) == Entity(
        "artist:x", "artist", "X", "Artist", ("rock",), ("loud",), "d", 12.5, ("upsert",), {"cloned_from": "artist:y"}
    )


@pytest.mark.parametrize(
    "names, message",
    [
        ("thompson", "--bandits: unknown 'thompson'; valid: all, none, linear_ts, linucb, epsilon_greedy"),
        (",", "--bandits: unknown nothing; valid: all, none, linear_ts, linucb, epsilon_greedy"),
    ],
)
def test_select_bandits(bench: Any, names: str, message: str) -> None:
    assert bench.select_bandits("all") == ["linear_ts", "linucb", "epsilon_greedy"]
    assert bench.select_bandits("none") == []
    assert bench.select_bandits("linucb, linucb,linear_ts") == ["linucb", "linear_ts"]
    with pytest.raises(SystemExit, match=f"^{message}$"):
        bench.select_bandits(names)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"drift_new": 3}, "--drift-new needs --drift-at"),
        ({"drift_at": 5, "drift_new": -1}, "--drift-new: Input should be greater than or equal to 0, got -1"),
        ({"drift_at": 0}, "--drift-at: Input should be greater than or equal to 1, got 0"),
    ],
)
def test_drift_flags(bench: Any, kw: dict[str, Any], message: str) -> None:
    args = argparse.Namespace(**{"drift_at": None, "drift_mix": "", "drift_new": 0, **kw})
    with pytest.raises(SystemExit) as ei:
        bench.drift_of(args)
    assert str(ei.value) == message
    ok = bench.drift_of(argparse.Namespace(drift_at=5, drift_mix="tag=1", drift_new=2))
    assert (ok.at, ok.new_entities, ok.mix.weights()["tag"]) == (5, 2, 1.0)


class FakePeer:
    """A peer that answers POOL, and fails every fifth query (a peer's error is counted, not fatal)."""

    name = "fake peer"

    def __init__(self) -> None:
        self.searched: list[tuple[str, int]] = []

    def search(self, text: str, k: int) -> list[str]:
        self.searched.append((text, k))
        if text.endswith("5"):
            raise TimeoutError("peer timed out")
        return POOL[:k]


def test_throughput_runs_each_contender_at_one_and_sixteen_callers_on_the_first_queries(bench: Any) -> None:
    clients: list[FakeClient] = []

    def new_client(target: str, timeout: float) -> FakeClient:
        clients.append(FakeClient())
        return clients[-1]

    peer = FakePeer()
    with mock.patch.object(bench, "LtrrClient", new_client):
        got = bench.measure_throughput(_args(throughput=20, target="t"), _space(), _queries(40), [peer])
    assert list(got) == ["ltrr live", "ltrr all at max", "fake peer"]
    for by_callers in got.values():
        assert list(by_callers) == ["1", "16"]
        for callers, r in by_callers.items():
            assert r["callers"] == int(callers) and r["n"] == 20
            assert r["ok"] + sum(r["errors"].values()) == 20 and r["throughput_rps"] > 0
    # queries 5 and 15 fail at the peer, at each caller count; ltrr's searches all return
    assert got["fake peer"]["16"]["errors"] == {"TimeoutError": 2} and got["ltrr live"]["16"]["errors"] == {}
    searches = [c for client in clients for c in client.calls]
    assert all(c[0] == "search" for c in searches)  # no feedback: the throughput phase teaches nothing
    queried = {c[1] for c in searches}
    assert queried == {f"query {i}" for i in range(20)}  # the first --throughput queries only
    forced = [c[2] for c in searches if c[2]]
    # live + forced, each: 1 warm-up + 20 at one caller + 20 at sixteen
    assert len(searches) == 2 * 41 and len(forced) == 41 and all(b == {"a": 10, "b": 10} for b in forced)
    assert len({id(c) for c in clients}) > 1  # each concurrent caller has its own client
    assert all(k == 10 for _, k in peer.searched) and len(peer.searched) == 41


def test_throughput_zero_queries_measures_nothing(bench: Any) -> None:
    assert bench.measure_throughput(_args(throughput=0, target="t"), _space(), _queries(5), [FakePeer()]) == {}
