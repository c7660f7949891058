"""Reciprocal-rank fusion of per-strategy candidate lists.

RRF (Cormack, Clarke & Büttcher, SIGIR 2009) scores a document d by

    RRF(d) = sum_s  w_s / (c + rank_s(d))

over the strategies s whose list contains d, with rank 1-based and c = 60 by
default. Ties are broken by the number of lists holding d, then by entity id,
so the order is deterministic.

ranx ships the same fusion, but it JIT-compiles with numba at first use
(seconds per replica start) and pulls in a large dependency tree for twenty
lines of arithmetic on at most a few hundred candidates; the exact values are
tested against hand-computed ones in tests/unit/test_fusion.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ltrr.types import Candidate


@dataclass
class FusedCandidate:
    """A candidate in the union, with its rank and score in each strategy that found it."""

    entity_id: str
    entity_type: str
    title: str
    subtitle: str
    score: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def retrieved_by(self) -> list[str]:
        return sorted(self.ranks)


def union(results: Mapping[str, Sequence[Candidate]]) -> dict[str, FusedCandidate]:
    """Union and dedupe candidates by entity id, keeping each strategy's rank and score."""
    out: dict[str, FusedCandidate] = {}
    for strategy, candidates in results.items():
        for c in candidates:
            fc = out.get(c.entity_id)
            if fc is None:
                fc = out[c.entity_id] = FusedCandidate(c.entity_id, c.entity_type, c.title, c.subtitle)
            # A strategy listing an entity twice keeps its best rank.
            if strategy not in fc.ranks or c.rank < fc.ranks[strategy]:
                fc.ranks[strategy] = c.rank
                fc.scores[strategy] = c.score
    return out


def rrf(
    results: Mapping[str, Sequence[Candidate]],
    *,
    k: int | None = None,
    c: float = 60.0,
    weights: Mapping[str, float] | None = None,
) -> list[FusedCandidate]:
    """Fuse per-strategy lists by reciprocal rank; return the top ``k`` (all if None)."""
    if c < 0:
        raise ValueError(f"`c` must be >= 0, got {c}")
    fused = union(results)
    for fc in fused.values():
        fc.score = sum((weights or {}).get(s, 1.0) / (c + r) for s, r in fc.ranks.items())
    ordered = sorted(fused.values(), key=lambda f: (-f.score, -len(f.ranks), f.entity_id))
    return ordered if k is None else ordered[:k]
