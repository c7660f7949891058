"""The benchmark report (``ltrr.sim.benchreport``) rendered from small hand-made bench outputs, rows asserted exactly.

The regret fixture: strategies a and b, ladder (0, 10, 25), costs per_call 0.2, per_candidate 0.02, no latency term,
so a strategy at 10 costs 0.4 and at 25 costs 0.7. Action id = 3 * level(a) + level(b). Two kinds of query:

    id  plan (a, b)  cost   A (a@5, b absent)  B (a@20, b@3)
    1   (0, 10)      0.4    -0.4                0.6
    2   (0, 25)      0.7    -0.7                0.3
    3   (10, 0)      0.4     0.6               -0.4
    4   (10, 10)     0.8     0.2                0.2
    5   (10, 25)     1.1    -0.1               -0.1
    6   (25, 0)      0.7     0.3                0.3
    7   (25, 10)     1.1    -0.1               -0.1
    8   (25, 25)     1.4    -0.4               -0.4

Queries q0 A (name), q1 B (like), q2 A (name), q3 B (like); the oracle plays 3, 1, 3, 1: 0.6 each, 2.4 in all.
Sums over the four: 0.4, -0.8, 0.4, 0.8, -0.4, 1.2, -0.4, -1.6, so the best static plan is id 6 (a 25): regret 0.3
a query, 1.2 over all, 0.6 over the 2nd half (q2, q3), 0.3 over the last quarter (q3); recall 1, 25 candidates.
Live plays 4, 3, 1, 1: values 0.2, -0.4, -0.4, 0.6, regret 0.4 + 1.0 + 1.0 + 0 = 2.4; 2nd half 1.0, last quarter 0;
ratios to static 2.4 / 1.2 = 2.00×, 1.0 / 0.6 = 1.67×, 0 / 0.3 = 0.00×. It finds q0 and q3: recall 0.5; candidates
(20 + 10 + 10 + 10) / 4 = 12.5; calls (2 + 1 + 1 + 1) / 4 = 1.25.
Every strategy at max (id 8): regret 1.0 a query, 4.0 / 2.0 / 1.0. a alone at max is id 6, the static plan.
b alone at max (id 2): 1.3 on A, 0.3 on B: 3.2 / 1.6 / 0.3, recall 0.5. VW plays id 6 throughout; the in-loop ltrr
policy plays the oracle's actions (regret 0).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltrr.bandit.actions import ActionSpace
from ltrr.bandit.config import CostConfig
from ltrr.sim import benchreport as br
from ltrr.sim.benchreport import edit
from ltrr.sim.regret import QueryRecord
from ltrr.sim.report import ALL_MAX_RANKER, ALL_MAX_RRF, final_scores

HEAD = br.Head("scripts/bench_report.py --regret r", "abc1234+dirty", "2 cores, Test CPU, 8.0 GiB RAM", "2026-01-02")
A, B = {"a": 5, "b": None}, {"a": 20, "b": 3}
PEERS = (
    "meili: meili hybrid 0.0: 4 documents indexed in 1 s; "
    "milvus: left out: ConfigError: milvus at ./m is 2.3.5: BM25 functions need Milvus >= 2.5"
)
RANKER: dict[str, Any] = {
    "meta": {"command": "scripts/bench_ranker.py -n 5", "date": "2026-01-01 10:00 UTC", "cores": 2, "cpu": "Test CPU"},
    "quality": {
        "queries": 5,
        "found": 4,
        "by_kind": {"all": {"rrf": {"ndcg@10": 0.5, "mrr@10": 0.4, "searches": 4.0},
                            "cold start": {"ndcg@10": 0.75, "mrr@10": 0.6, "searches": 4.0}}},  # fmt: skip
        "model": {"version": "catboost-000009", "loss": "YetiRank"},
    },
}
LATENCY: dict[str, Any] = {
    "rows": [
        {"setup": "gRPC via Serve, sequential, all four", "n": 3, "p50_ms": 30.0, "p99_ms": 50.0, "mean_ms": 31.0,
         "throughput_rps": 32.0},
        {"setup": "gRPC via Serve, 16 concurrent, all four", "n": 6, "p50_ms": 300.0, "p99_ms": 500.0,
         "mean_ms": 310.0, "throughput_rps": 48.0},
        {"setup": "one Serve hop (driver -> learner.version)", "n": 3, "p50_ms": 2.0, "p99_ms": 3.0, "mean_ms": 2.0,
         "throughput_rps": 400.0},
    ],  # fmt: skip
    "date": "2026-01-01",
    "cores": 2,
}


def space() -> ActionSpace:
    return ActionSpace.build(("a", "b"), (0, 10, 25), CostConfig(per_call=0.2, per_candidate=0.02, per_ms=0.0))


def regret_json(live: list[dict[str, int]], seed: int = 0, peers: str = PEERS) -> dict[str, Any]:
    """A ``regret.json`` of the fixture (module docstring), with final lists and timings (test_final_lists)."""
    ranks, kinds = [A, B, A, B], ["name", "like", "name", "like"]
    inloop = [{"a": 10, "b": 0}, {"a": 0, "b": 10}, {"a": 10, "b": 0}, {"a": 0, "b": 10}]
    lists = {
        "live": [["e0"], ["x", "e1"], ["x"], ["e3"]],
        "meili hybrid 0.0": [["e0"], ["e1"], ["e2"], ["x"]],
        ALL_MAX_RRF: [["x", f"e{i}"] for i in range(4)],
    }
    records = [
        QueryRecord(
            i, f"sim:{i}", kinds[i], f"q{i}", f"e{i}", ranks[i],
            {"live": live[i], "vw epsilon 0.1": {"a": 25, "b": 0}, "ltrr in-loop linucb": inloop[i]},
            final={**{c: v[i] for c, v in lists.items()}, ALL_MAX_RANKER: lists["live"][i]},
            latency_ms={"live": 10.0 * (i + 1), "meili hybrid 0.0": 5.0},
        ).to_dict()  # fmt: skip
        for i in range(4)
    ]
    meta = {"command": f"scripts/bench_regret.py --seed {seed}", "date": "2026-01-01 09:00 UTC", "seed": seed,
            "machine": "2 cores, Test CPU", "costs": "per_call 0.2, per_candidate 0.02, per_ms 0.0", "peers": peers,
            "VW time per query (choose + learn, 624 actions)": "vw epsilon 0.1: 1.0 ms (p99 2.0)"}  # fmt: skip
    return {"meta": meta, "summary": {"latency_ms": {"a": 0.0, "b": 0.0}}, "records": records}


LIVE = [{"a": 10, "b": 10}, {"a": 10, "b": 0}, {"a": 0, "b": 10}, {"a": 0, "b": 10}]


def run_of(data: dict[str, Any], label: str = "run-a") -> br.RegretRun:
    scored = br.score_saved(space(), data)
    plots = {"cumulative regret": f"benchmarks-{label}-regret.png"}
    return br.RegretRun(label, f"bench-out/{label}/regret.json", data["meta"], data["summary"], scored,
                        final_scores(scored.records), plots=plots)  # fmt: skip


def rows_after(md: str, header: str) -> dict[str, list[str]]:
    """The rows of the table under ``header`` (its first line), by their first cell."""
    lines = md.splitlines()
    start = lines.index(header) + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    cells = [[c.strip() for c in ln.strip()[1:-1].split("|")] for ln in lines[start:end]]
    return {c[0]: c[1:] for c in cells}


def test_question_1_every_contender_and_the_ratios_to_the_best_static_plan() -> None:
    md = br.render(br.Inputs(HEAD, runs=[run_of(regret_json(LIVE))], ranker=RANKER, latency=LATENCY),
                   families={"vw epsilon 0.1": "epsilon"})  # fmt: skip
    header = ("| contender | regret, all 4 | 2nd half (3–4) | last quarter (4–4) | recall | candidates | calls |")
    rows = rows_after(md, header)
    assert rows["oracle"] == ["0.0", "0.0", "0.0", "1.000", "10.0", "1.00"]
    assert rows["best static plan in hindsight (a 25)"] == ["1.2", "0.6", "0.3", "1.000", "25.0", "1.00"]
    assert rows["every strategy at max k (25 each)"] == ["4.0", "2.0", "1.0", "1.000", "50.0", "2.00"]
    assert rows["a alone at max (25)"] == ["1.2", "0.6", "0.3", "1.000", "25.0", "1.00"]
    assert rows["b alone at max (25)"] == ["3.2", "1.6", "0.3", "0.500", "25.0", "1.00"]
    assert rows["**ltrr live**"] == ["2.4", "1.0", "0.0", "0.500", "12.5", "1.25"]
    assert rows["ltrr in-loop linucb"] == ["0.0", "0.0", "0.0", "1.000", "10.0", "1.00"]
    assert rows["vw epsilon 0.1"] == ["1.2", "0.6", "0.3", "1.000", "25.0", "1.00"]
    uniform = rows["uniform random budgets"]  # mean value over the 8 valid actions: A -0.6 / 8, B 0.4 / 8
    assert float(uniform[0]) == pytest.approx(2 * (0.6 + 0.075) + 2 * (0.6 - 0.05), abs=0.05)
    assert list(rows)[:6] == ["oracle", "best static plan in hindsight (a 25)", "every strategy at max k (25 each)",
                              "a alone at max (25)", "b alone at max (25)", "uniform random budgets"]  # fmt: skip
    windows = "over all, {} over 2nd half, {} over last quarter."
    assert "- **ltrr live / best static plan**, regret: 2.00× " + windows.format("1.67×", "0.00×") in md
    assert "- **ltrr in-loop linucb / best static plan**: 0.00× " + windows.format("0.00×", "0.00×") in md
    assert "- **ltrr live / best VW learner** (vw epsilon 0.1): 2.00× over all, 1.67× over 2nd half" in md
    # over the 2nd half (q2, q3) live finds q3 only: 0.5 against 1.0
    assert ("- **Candidate recall against every strategy at max**: 0.500 / 1.000 = 0.500×, with 0.25× of its "
            "candidates (12.5 against 50.0); over the 2nd half 0.500 / 1.000 = 0.500×.") in md  # fmt: skip
    # live calls a on q0, q1 and b on q0, q2, q3: like (q1, q3) a 1/2, b 1/2; name (q0, q2) a 1/2, b 1
    routing = rows_after(md, "| kind | a | b | calls | candidates |")
    assert routing == {"like": ["0.50", "0.50", "1.00", "10.0"], "name": ["0.50", "1.00", "1.50", "15.0"],
                       "all": ["0.50", "0.75", "1.25", "12.5"]}  # fmt: skip
    assert "![cumulative regret](benchmarks-run-a-regret.png)" in md
    assert "### Across runs" not in md and "- one regret run only: no spread over seeds" in md


def test_runs_side_by_side_with_mean_and_spread() -> None:
    # run 2's live plays 4, 3, then the oracle's 3, 1: regret 0.4 + 1.0 = 1.4, 0 over the 2nd half
    second = [{"a": 10, "b": 10}, {"a": 10, "b": 0}, {"a": 10, "b": 0}, {"a": 0, "b": 10}]
    runs = [run_of(regret_json(LIVE)), run_of(regret_json(second, seed=1), "run-b")]
    md = br.render(br.Inputs(HEAD, runs=runs))
    rows = rows_after(md, "| figure | `run-a` (seed 0) | `run-b` (seed 1) | mean | sd | range |")
    sd = 1.0 / math.sqrt(2)  # two values 1.0 apart: sample sd |a - b| / sqrt(2)
    assert rows["regret, all: **ltrr live**"] == ["2.4", "1.4", "1.9", f"{sd:.1f}", "1.4–2.4"]
    assert rows["regret, all: best static plan in hindsight (a 25)"] == ["1.2", "1.2", "1.2", "0.0", "1.2–1.2"]
    # ratios 2.4 / 1.2 and 1.4 / 1.2: mean 1.9 / 1.2, sd (1.0 / 1.2) / sqrt(2)
    mean = f"{1.9 / 1.2:.2f}×"
    assert rows["ltrr live / best static, all"] == ["2.00×", "1.17×", mean, f"{sd / 1.2:.2f}", "1.17×–2.00×"]
    assert rows["ltrr live / best static, last quarter"] == ["0.00×", "0.00×", "0.00×", "0.00", "0.00×–0.00×"]
    # run-a finds q0 and q3, run-b all but q1; every strategy at max finds all four
    recall_all = ["0.500×", "0.750×", "0.625×", "0.177", "0.500×–0.750×"]  # sd 0.25 / sqrt(2)
    assert rows["ltrr live recall / every strategy at max, all"] == recall_all
    assert rows["ltrr live recall / every strategy at max, 2nd half"][:2] == ["0.500×", "1.000×"]
    assert rows["ltrr live recall / every strategy at max, last quarter"][:2] == ["1.000×", "1.000×"]
    assert "one regret run only" not in md


def test_final_lists_the_ranker_the_peers_and_why_one_is_absent() -> None:
    md = br.render(br.Inputs(HEAD, runs=[run_of(regret_json(LIVE))], ranker=RANKER, latency=LATENCY))
    # live: wanted at 1, 2, missed, 1 -> hit 3/4, MRR (1 + 1/2 + 1) / 4, nDCG (2 + 1/log2(3)) / 4;
    # RRF order: every wanted item at 2 -> hit 1, MRR 1/2, nDCG 1/log2(3)
    live_ndcg, rrf_ndcg = (2 + 1 / math.log2(3)) / 4, 1 / math.log2(3)
    ranker = rows_after(md, "| list | queries | hit@10 | MRR@10 | nDCG@10 | nDCG@10 / RRF order |")
    assert ranker["live"] == ["4", "0.750", "0.625", f"{live_ndcg:.3f}", f"{live_ndcg / rrf_ndcg:.2f}×"]
    assert ranker[ALL_MAX_RRF] == ["4", "1.000", "0.500", f"{rrf_ndcg:.3f}", "1.00×"]
    held_out = rows_after(md, "| kind | searches | MRR@10 rrf | MRR@10 cold start | nDCG@10 rrf | nDCG@10 cold start "
                              "| nDCG@10 cold start / rrf |")  # fmt: skip
    assert held_out == {"all": ["4", "0.400", "0.600", "0.500", "0.750", "1.50×"]}
    peers = rows_after(md, "| contender | queries | hit@10 | MRR@10 | nDCG@10 | recall@100 | p50 ms | p99 ms |")
    # live's latencies 10, 20, 30, 40: p50 25, p99 30 + 0.97 * 10 (numpy's linear interpolation)
    assert peers["live"] == ["4", "0.750", "0.625", f"{live_ndcg:.3f}", "–", "25.0", "39.7"]
    assert peers["meili hybrid 0.0"] == ["4", "0.750", "0.750", "0.750", "–", "5.0", "5.0"]
    kinds = rows_after(md, "| contender | like | name |")  # live: like (q1 at 2, q3 at 1), name (q0 at 1, q2 missed)
    assert kinds == {"live": [f"{(1 / math.log2(3) + 1) / 2:.3f}", "0.500"], "meili hybrid 0.0": ["0.500", "1.000"]}
    assert f"- **ltrr live / best peer** (meili hybrid 0.0), nDCG@10: {live_ndcg:.3f} against 0.750, " in md
    assert "- **Kinds where a peer beats ltrr live**: name (meili hybrid 0.0 1.000 against 0.500)." in md
    reason = "left out: ConfigError: milvus at ./m is 2.3.5: BM25 functions need Milvus >= 2.5"
    assert f"- **Absent**: peer milvus: `{reason}`." in md
    assert "- **meili**, as the run recorded it: meili hybrid 0.0: 4 documents indexed in 1 s" in md


def test_latency_throughput_and_what_the_inputs_do_not_show() -> None:
    paths = {"ranker": "r.json", "latency": "l.json", "scale": "bench-out/scale/scale.json"}
    md = br.render(br.Inputs(HEAD, runs=[run_of(regret_json(LIVE))], ranker=RANKER, latency=LATENCY, paths=paths))
    tp = rows_after(md, "| callers | setup | req/s | p50 ms | p99 ms |")
    assert tp == {"1": ["gRPC via Serve, sequential, all four", "32.0", "30.0", "50.0"],
                  "16": ["gRPC via Serve, 16 concurrent, all four", "48.0", "300.0", "500.0"]}  # fmt: skip
    table = rows_after(md, "| setup | n | p50 ms | p99 ms | mean ms | req/s |")
    assert table["one Serve hop (driver -> learner.version)"] == ["3", "2.0", "3.0", "2.0", "–"]  # no caller count
    assert "`make bench-scale` was not run: there is no `bench-out/scale/scale.json`." in md
    head = rows_after(md, "| input | path | run date | command | machine |")
    assert head["regret run `run-a` (seed 0)"] == [
        "`bench-out/run-a/regret.json`",
        "2026-01-01 09:00 UTC",
        "`scripts/bench_regret.py --seed 0`",
        "2 cores, Test CPU",
    ]
    assert head["ranker"] == ["`r.json`", "2026-01-01 10:00 UTC", "`scripts/bench_ranker.py -n 5`", "2 cores, Test CPU"]
    assert head["latency"] == ["`l.json`", "2026-01-01", "not recorded in the JSON", "2 cores"]
    assert head["scale"] == ["`bench-out/scale/scale.json`", "missing", "–", "–"]
    assert "- **Commit**: abc1234+dirty" in md and "- **Machine**: 2 cores, Test CPU, 8.0 GiB RAM" in md
    gaps = md.split("## What this run does not show\n\n", 1)[1].strip().splitlines()
    assert gaps == [
        "- one regret run only: no spread over seeds (give `--regret` once per run)",
        "- run `run-a` (seed 0): peer milvus: `left out: ConfigError: milvus at ./m is 2.3.5: BM25 functions need "
        "Milvus >= 2.5`",
        "- run `run-a` (seed 0): no full-information log read, so no recall@100 of the peers",
        "- no drift in any run (`--drift-at`): no recovery after a shift",
        "- the ranker bench's held-out table holds no hit@10 (`ranker.json`)",
        "- throughput of the peers at 1 and 16 callers: no regret run measured it (`--throughput`)",
        "- scale: `make bench-scale` was not run",
    ]


def test_a_run_with_a_throughput_phase_gets_its_table_per_contender_and_callers() -> None:
    def loop(callers: int, rps: float, errors: dict[str, int]) -> dict[str, Any]:
        return {"callers": callers, "n": 50, "ok": 50 - sum(errors.values()), "errors": errors,
                "throughput_rps": rps, "p50": 20.0 / callers * 16, "p99": 90.0, "max": 99.0}  # fmt: skip

    data = regret_json(LIVE)
    data["meta"]["throughput"] = {
        "ltrr live": {"16": loop(16, 80.0, {}), "1": loop(1, 40.0, {})},  # fewest callers first, whatever the order
        "meili hybrid 0.5": {"1": loop(1, 100.0, {}), "16": loop(16, 210.5, {"TimeoutError": 2})},
    }
    md = br.render(br.Inputs(HEAD, runs=[run_of(data)], ranker=RANKER, latency=LATENCY))
    lines = md.splitlines()
    start = lines.index("| contender | callers | queries | req/s | p50 ms | p99 ms | errors |") + 2
    assert [[c.strip() for c in ln.strip()[1:-1].split("|")] for ln in lines[start : start + 4]] == [
        ["ltrr live", "1", "50", "40.0", "320.0", "90.0", "none"],
        ["ltrr live", "16", "50", "80.0", "20.0", "90.0", "none"],
        ["meili hybrid 0.5", "1", "50", "100.0", "320.0", "90.0", "none"],
        ["meili hybrid 0.5", "16", "50", "210.5", "20.0", "90.0", "TimeoutError 2"],
    ]
    assert not lines[start + 4].startswith("|")
    assert "no regret run measured it" not in md
    no_latency_bench = br.render(br.Inputs(HEAD, runs=[run_of(data)], ranker=RANKER))
    assert "| ltrr live | 16 | 50 | 80.0 |" in no_latency_bench
    assert "not measured in this run" not in no_latency_bench  # the run measured it, without a latency.json


def test_nothing_given_says_so_and_a_run_without_peers_or_learners_names_each_absence() -> None:
    paths = {"ranker": "bench-out/ranker.json", "latency": "bench-out/latency.json"}
    md = br.render(br.Inputs(HEAD, missing_runs=["bench-out"], paths=paths))
    gaps = md.split("## What this run does not show\n\n", 1)[1].strip().splitlines()
    assert gaps[:2] == [
        "- no regret run at `bench-out` (no `regret.json`)",
        "- no regret run at all: questions 1 and 3 and the contenders' latencies are unanswered",
    ]
    assert "- no latency bench at `bench-out/latency.json`" in gaps
    assert "- throughput at 1 and 16 callers: not measured in this run" in gaps
    assert "Throughput at 1 and 16 callers: not measured in this run." in md
    assert md.count("No regret run was given.") == 2  # questions 1 and 3

    data = regret_json(LIVE, peers="none")
    data["meta"].pop("VW time per query (choose + learn, 624 actions)")
    data["meta"]["VW time per query (choose + learn, 624 actions)"] = "no VW"
    for r in data["records"]:
        r["played"] = {"live": r["played"]["live"]}
    md = br.render(br.Inputs(HEAD, runs=[run_of(data)]))
    assert "- run `run-a` (seed 0): no peer: the run recorded `peers: none`" in md
    vw = "`VW time per query (choose + learn, 624 actions): no VW`"
    assert f"- run `run-a` (seed 0): no VW learner: the run recorded {vw}" in md
    assert "- run `run-a` (seed 0): no in-loop ltrr algorithm beside live (`--bandits`)" in md


def test_a_run_with_a_drift_gets_its_windows() -> None:
    data = regret_json(LIVE)
    data["meta"]["drift_plan"] = {"at": 2, "new_entities": []}
    md = br.render(br.Inputs(HEAD, runs=[run_of(data)]))
    # before: q0, q1 (live regret 0.4, 1.0: mean 0.7); after: q2, q3 (1.0, 0: mean 0.5)
    rows = rows_after(md, "| policy | mean regret before (0–1) | mean regret after (2–3) | recall before (0–1) "
                          "| recall after (2–3) |")  # fmt: skip
    assert rows["live"] == ["0.7000", "0.5000", "0.500", "0.500"]
    assert "#### Drift at query index 2: mean regret and recall before and after" in md
    assert "no drift in any run" not in md


def test_a_changed_cost_is_caught_by_the_summary_check() -> None:
    data = regret_json(LIVE)
    scored = br.score_saved(space(), data)
    saved = {"overall": [{"policy": "live", "regret": 2.4}, {"policy": "best static", "regret": 1.0}]}
    assert br.summary_mismatch(scored, saved) == ["best static: 1.200 here, 1.000 in the run's summary"]


def test_parsers_of_what_the_benches_recorded_as_text() -> None:
    assert br.run_costs({"costs": "per_call 0.01, per_candidate 0.0002, per_ms 0.0005"}) == {
        "per_call": 0.01, "per_candidate": 0.0002, "per_ms": 0.0005}  # fmt: skip
    assert br.run_costs({}) == {}
    assert br.peer_families({"peers": PEERS}) == {
        "meili": "meili hybrid 0.0: 4 documents indexed in 1 s",
        "milvus": "left out: ConfigError: milvus at ./m is 2.3.5: BM25 functions need Milvus >= 2.5",
    }
    assert br.peer_families({"peers": "none"}) == {} and br.peer_families({}) == {}
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
    meminfo = "MemTotal:       24641536 kB\nMemFree:         1000 kB\n"  # 24641536 kB = 23.5 GiB
    assert br.machine_line(2, cpuinfo, meminfo) == "2 cores, AMD EPYC 7B13, 23.5 GiB RAM"
    assert br.machine_line(None, "", "") == "unknown cores, CPU model unknown, RAM unknown"


@pytest.mark.parametrize(
    ("setup", "callers"),
    [
        ("gRPC via Serve, sequential, all four strategies", 1),
        ("in-process, 16 concurrent", 16),
        ("gRPC via Serve, 4 concurrent, the policy decides", 4),
        ("one Serve hop (driver -> learner.version)", None),
        ("lexical direct", None),
    ],
)
def test_callers_of_a_latency_row(setup: str, callers: int | None) -> None:
    assert br.callers_of(setup) == callers


def test_rolling_is_a_trailing_mean_over_what_there_is_so_far() -> None:
    # window 2 over 1, 0, 1, 1: 1/1, (1+0)/2, (0+1)/2, (1+1)/2
    assert br.rolling(np.array([1.0, 0.0, 1.0, 1.0]), 2).tolist() == [1.0, 0.5, 0.5, 1.0]
    assert br.rolling(np.array([3.0, 1.0]), 10).tolist() == [3.0, 2.0]
    scored = br.score_saved(space(), regret_json(LIVE))
    assert br.learners(scored, {"vw epsilon 0.1": "epsilon"}) == ["live", "ltrr in-loop linucb", "vw epsilon 0.1"]
    calls = br.rolling_series(scored, ["live"], "calls", 2)  # live's calls 2, 1, 1, 1
    assert calls["live"].tolist() == [2.0, 1.5, 1.0, 1.0]


# -- one section rendered again (update, --only) ----------------------------------------------------------------

#: The 58k/250k scale run of 2026-12-02 as scripts/bench_scale.py wrote it.
SCALE = json.loads((Path(__file__).resolve().parents[1] / "data" / "scale-2026-12-02.json").read_text())
OLD_SCALE: dict[str, Any] = {"command": "scripts/bench_scale.py --sizes 100", "date": "2026-01-01 08:00 UTC",
                             "commit": "0000000", "machine": "1 core", "ingest": [], "search": []}  # fmt: skip
NOW = br.Head("scripts/bench_report.py --only scale", "fedcba9", "2 cores, Other CPU", "2026-12-10 11:00 UTC")
PATHS = {"ranker": "r.json", "latency": "l.json", "scale": "bench-out/scale/scale.json"}


def full(scale: dict[str, Any] | None) -> br.Inputs:
    return br.Inputs(HEAD, runs=[run_of(regret_json(LIVE))], ranker=RANKER, latency=LATENCY, scale=scale,
                     paths=PATHS, scale_plot=None if scale is None else "benchmarks-scale.png")  # fmt: skip


def scale_only(head: br.Head = NOW, scale: dict[str, Any] | None = SCALE) -> br.Inputs:
    return br.Inputs(head, scale=scale, paths={"scale": "bench-out/new/scale.json"}, scale_plot="benchmarks-scale.png")


def split(md: str) -> tuple[str, str, str]:
    """``(head, the sections before Scale, from the section after Scale on)``."""
    head, rest = md.split("## 1. ", 1)
    before, scale = rest.split("## Scale\n", 1)
    return head, before, scale[scale.index("\n## ") :]


REGENERATED = ("- **Scale section regenerated**: 2026-12-10 11:00 UTC, commit fedcba9, by `scripts/bench_report.py "
               "--only scale`; the rest of the report is as of the commit and date above")


@pytest.mark.parametrize("old", [OLD_SCALE, None], ids=["an older scale run", "no scale run"])
def test_update_renders_the_scale_section_again_and_keeps_every_other_byte(old: dict[str, Any] | None) -> None:
    before = br.render(full(old))
    md = br.update(before, "scale", scale_only())
    # the same bytes as the whole report rendered with the new scale run (and its path), plus the head's line
    # saying the section is newer than the rest
    whole = br.render(replace(full(SCALE), paths={**PATHS, "scale": "bench-out/new/scale.json"}))
    assert md == whole.replace("- **Date**: 2026-01-02\n", "- **Date**: 2026-01-02\n" + REGENERATED + "\n")
    (head0, sections0, after0), (head1, sections1, after1) = split(before), split(md)
    assert sections1 == sections0  # questions 1 to 4, byte for byte
    gap = "- scale: `make bench-scale` was not run\n"
    assert after1 == (after0.replace(gap, "") if old is None else after0)  # the one line the new run makes untrue
    assert (gap in after0) == (old is None)
    lines0, lines1 = head0.splitlines(), head1.splitlines()
    changed = [(a, b) for a, b in zip(lines0, [ln for ln in lines1 if ln != REGENERATED], strict=True) if a != b]
    assert changed == [(next(ln for ln in lines0 if ln.startswith("| scale |")),
                        "| scale | `bench-out/new/scale.json` | 2026-12-02 07:18 UTC | `scripts/bench_scale.py "
                        "--sizes 58000,250000 --searches 200` | 2 cores, AMD EPYC, 23.5 GiB RAM |")]  # fmt: skip
    assert lines1[lines1.index("- **Date**: 2026-01-02") + 1] == REGENERATED
    assert "- **Commit**: abc1234+dirty" in lines1  # the whole report's own run, not this one
    section = md.split("## Scale\n", 1)[1].split("\n## What", 1)[0]
    assert "| 250,000 | lexical | 63.6 | 188 | 65.7 | 250,000 | 3,645 | 457 | ok |" in section
    assert "![ingest time and search p50 against catalog size](benchmarks-scale.png)" in section
    assert "### Ingest" in section and "## Ingest" not in section.replace("### Ingest", "")


def test_update_again_replaces_its_head_line_and_renders_the_same_section() -> None:
    once = br.update(br.render(full(OLD_SCALE)), "scale", scale_only())
    later = br.Head("scripts/bench_report.py --only scale --scale s.json", "1234567", "m", "2026-12-11 09:00 UTC")
    twice = br.update(once, "scale", scale_only(later))
    assert twice == once.replace(REGENERATED, "- **Scale section regenerated**: 2026-12-11 09:00 UTC, commit 1234567, "
                                 "by `scripts/bench_report.py --only scale --scale s.json`; the rest of the report is "
                                 "as of the commit and date above")  # fmt: skip


REPORT = br.render(full(OLD_SCALE))


@pytest.mark.parametrize(
    ("text", "inputs", "message"),
    [
        (REPORT.replace("## Scale\n", "## Scales\n"), scale_only(),
         "the report holds no `## Scale` heading line, needs exactly one"),
        (REPORT.replace("## What", "## Scale\n\n## What"), scale_only(),
         "the report holds 2 `## Scale` heading lines, needs exactly one"),
        (REPORT.replace("\n| scale |", "\n| scales |"), scale_only(),
         "the report's table of inputs holds 0 `scale` rows, needs exactly one"),
        (REPORT.replace("- **Date**:", "- **When**:"), scale_only(), "the report's head holds no `- **Date**:` line"),
        (REPORT, scale_only(scale=None), "no scale input to render the `## Scale` section from"),
    ],  # fmt: skip
    ids=["no section", "two sections", "no inputs row", "no date line", "no scale input"],
)
def test_update_refuses_a_report_or_inputs_it_cannot_update(text: str, inputs: br.Inputs, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        br.update(text, "scale", inputs)


def test_update_of_a_section_it_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^`name` must be one of scale, got 'ranker'$"):
        br.update(REPORT, "ranker", scale_only())


# -- one section carried over from the report a new one replaces (keep, --keep) ------------------------------------

LATER = br.Head("scripts/bench_report.py --keep scale --regret r", "7654321", "2 cores, Test CPU",
                "2026-12-20 10:00 UTC")  # fmt: skip


def without_scale(head: br.Head = LATER) -> str:
    """A whole report of a later run whose scale input is gone (its other inputs as :func:`full`'s)."""
    return br.render(replace(full(None), head=head))


@pytest.mark.parametrize("regenerated", [False, True], ids=["scale from the whole run", "scale regenerated"])
def test_keep_carries_the_scale_section_its_row_and_where_it_came_from_into_a_new_report(regenerated: bool) -> None:
    old = br.render(full(SCALE))
    if regenerated:
        old = br.update(old, "scale", scale_only())
    new = without_scale()
    md = br.keep(new, old, "scale")
    # the kept section, byte for byte, in place of the new report's "was not run"
    assert edit.section(md, "## Scale") == edit.section(old, "## Scale")
    assert "was not run" in edit.section(new, "## Scale") and "was not run" not in md
    assert edit.head_row(md, "scale") == edit.head_row(old, "scale") != edit.head_row(new, "scale")
    where = ("where it was regenerated 2026-12-10 11:00 UTC, commit fedcba9, by `scripts/bench_report.py --only "
             "scale`" if regenerated else "as of its commit abc1234+dirty and date 2026-01-02")  # fmt: skip
    mark = f"- **Scale section kept**: from the previous report, {where}; its input was not read by this run"
    assert edit.head_value(md, "Scale section kept") == mark.split("**: ", 1)[1]
    # the rest is the new report's: its own head (with the mark after its date line), questions 1 to 4, and what
    # it does not show without the line the kept section makes untrue
    assert md.replace(mark + "\n", "") == (new.replace(edit.section(new, "## Scale"), edit.section(old, "## Scale"))
                                           .replace(edit.head_row(new, "scale"), edit.head_row(old, "scale"))
                                           .replace("- scale: `make bench-scale` was not run\n", ""))  # fmt: skip
    assert md.index(mark) == md.index("- **Date**: 2026-12-20 10:00 UTC") + len("- **Date**: 2026-12-20 10:00 UTC\n")
    assert "- **Commit**: 7654321" in md and "- **Scale section regenerated**" not in md
    # kept again by a later run: the same section, and the same origin (not the report it was kept in)
    again = br.keep(without_scale(replace(LATER, date="2026-12-21 10:00 UTC")), md, "scale")
    assert edit.section(again, "## Scale") == edit.section(old, "## Scale")
    assert edit.head_row(again, "scale") == edit.head_row(old, "scale")
    assert edit.head_value(again, "Scale section kept") == mark.split("**: ", 1)[1]


@pytest.mark.parametrize(
    ("old", "message"),
    [
        (REPORT.replace("## Scale\n", "## Scales\n"), "the report holds no `## Scale` heading line, needs exactly one"),
        (REPORT.replace("\n| scale |", "\n| scales |"),
         "the report's table of inputs holds 0 `scale` rows, needs exactly one"),
        (REPORT.replace("- **Date**:", "- **When**:"),
         "the previous report's head holds no `- **Commit**:` and `- **Date**:` lines"),
    ],  # fmt: skip
    ids=["no section", "no inputs row", "no date line"],
)
def test_keep_refuses_a_previous_report_without_the_section_its_row_or_its_date(old: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        br.keep(without_scale(), old, "scale")
    with pytest.raises(ValueError, match=r"^`name` must be one of scale, got 'ranker'$"):
        br.keep(without_scale(), REPORT, "ranker")


def test_the_text_edits_touch_only_what_they_name() -> None:
    text = "# T\n\n- **Date**: d\n- **Other**: o\n\n| scale | x |\n\n## A\n\na\n\n### Scale\n\n## Scale\n\ns\n"
    # the last section runs to the end; "### Scale" is not the heading
    assert edit.section_span(text, "## Scale") == (text.index("\n## Scale\n") + 1, len(text))
    assert edit.replace_section(text, "## A", "## A\n\nb\n") == text.replace("a\n\n### Scale\n\n", "b\n")
    assert edit.replace_section(text, "## Scale", "## Scale\nnew\n").endswith("### Scale\n\n## Scale\nnew\n")
    with pytest.raises(ValueError, match="^the new section must start with its heading line `## A`$"):
        edit.replace_section(text, "## A", "## B\n")
    assert edit.replace_head_row(text, "scale", "| scale | y |") == text.replace("| scale | x |", "| scale | y |")
    # appended after the head's list that holds the date line, then replaced in place
    marked = edit.mark_in_head(text, "New", "n")
    assert marked == text.replace("- **Other**: o\n", "- **Other**: o\n- **New**: n\n")
    assert edit.mark_in_head(marked, "New", "m") == marked.replace("- **New**: n", "- **New**: m")
    assert edit.drop_lines(text, "## Scale", ["s", "a"]) == text.removesuffix("s\n")  # not section A's "a"
    assert edit.drop_lines(text, "## None", ["a"]) == text
