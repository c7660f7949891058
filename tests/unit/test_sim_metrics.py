"""Final-list metrics of a regret run (ranx), on hand-made lists with values worked out by hand."""

from __future__ import annotations

import math

import pytest

from ltrr.sim.metrics import list_metrics


def test_one_wanted_entity_scores_by_its_rank() -> None:
    lists = {
        "q1": ["a", "b", "c"],  # wanted first
        "q2": ["x", "y", "w"],  # wanted third
        "q3": [f"e{i}" for i in range(50)],  # wanted at 20: in the top 100, not the top 10
        "q4": [],  # nothing returned
    }
    wanted = {"q1": "a", "q2": "w", "q3": "e19", "q4": "z"}
    m = list_metrics(lists, wanted)
    assert m["hit_rate@10"] == pytest.approx(2 / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["recall@100"] == pytest.approx(3 / 4)


def test_a_duplicate_id_does_not_push_the_wanted_entity_down_and_bad_input_is_refused() -> None:
    assert list_metrics({"q": ["a", "a", "b"]}, {"q": "b"})["mrr@10"] == pytest.approx(1 / 2)
    assert all(math.isnan(v) for v in list_metrics({}, {}).values())
    with pytest.raises(ValueError, match="no entity for query 'q'"):
        list_metrics({"q": ["a"]}, {})


def test_final_tables_score_every_contender_and_give_a_peer_its_recall() -> None:
    from ltrr.sim.regret import QueryRecord
    from ltrr.sim.report import final_tables

    def rec(i: int, kind: str, wanted: str, live: list[str], peer: list[str]) -> QueryRecord:
        return QueryRecord(
            i, "u", kind, "q", wanted, {}, {"live": {}}, final={"live": live, "peer x": peer[:10]},
            latency_ms={"live": 10.0 + i, "peer x": 5.0},
        )  # fmt: skip

    records = [
        rec(0, "name", "a", ["a", "b"], ["b", "a"]),
        rec(1, "tag", "t", ["x"], [f"e{j}" for j in range(30)] + ["t"]),  # peer: at 31, recall only
    ]
    deep = {"peer x (top 100)": {0: ["b", "a"], 1: [f"e{j}" for j in range(30)] + ["t"]}}
    lines = final_tables(records, deep | {"static": {0: ["b"], 1: ["t"]}})
    header = "| contender | queries | hit@10 | MRR@10 | nDCG@10 | recall@100 | p50 ms | p99 ms |"
    first = lines[lines.index(header) + 2 :]
    first = first[: first.index("")]
    cells = [[c.strip() for c in ln.strip()[1:-1].split("|")] for ln in first]
    rows = {c[0]: c for c in cells}
    assert rows["live"][2:5] == ["0.500", "0.500", "0.500"]  # hit, MRR, nDCG: query 0 at rank 1, query 1 missed
    assert rows["peer x"][2:6] == ["0.500", "0.250", f"{(1 / math.log2(3)) / 2:.3f}", "1.000"]
    assert rows["static"][2:4] == ["0.500", "0.500"] and rows["static"][5] == ""  # no deep list: no recall
    assert rows["live"][6] == "10.5" and "peer x (top 100)" not in rows
    kind = next(i for i, ln in enumerate(lines) if ln.startswith("| contender | name | tag"))
    assert lines[kind + 2].startswith("| live | 1.000 | 0.000")
