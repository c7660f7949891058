import pytest

from ltrr.fusion import rrf, union
from ltrr.types import Candidate


def c(eid, rank, score=1.0):
    return Candidate(eid, "artist", eid.upper(), "", score, rank)


def test_rrf_hand_computed():
    results = {
        "lexical": [c("a", 1), c("b", 2), c("c", 3)],
        "vector": [c("b", 1), c("d", 2)],
    }
    fused = rrf(results, c=60)
    got = {f.entity_id: f.score for f in fused}
    assert got["a"] == pytest.approx(1 / 61)
    assert got["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert got["c"] == pytest.approx(1 / 63)
    assert got["d"] == pytest.approx(1 / 62)
    assert [f.entity_id for f in fused] == ["b", "a", "d", "c"]
    b = fused[0]
    assert b.ranks == {"lexical": 2, "vector": 1}
    assert b.retrieved_by == ["lexical", "vector"]


def test_rrf_ties_and_k():
    # a and b tie on score; both in one list each; order falls back to entity id.
    fused = rrf({"x": [c("b", 1)], "y": [c("a", 1)]}, k=1, c=0)
    assert [f.entity_id for f in fused] == ["a"]
    assert fused[0].score == 1.0


def test_rrf_weights():
    fused = rrf({"x": [c("a", 1)], "y": [c("b", 1)]}, c=0, weights={"y": 2.0})
    assert [(f.entity_id, f.score) for f in fused] == [("b", 2.0), ("a", 1.0)]


def test_union_keeps_best_rank_of_duplicates():
    u = union({"x": [c("a", 3, 0.2), c("a", 1, 0.9)]})
    assert u["a"].ranks == {"x": 1} and u["a"].scores == {"x": 0.9}


def test_rrf_rejects_negative_c():
    with pytest.raises(ValueError, match="`c` must be >= 0, got -1"):
        rrf({}, c=-1)
