"""Reciprocal-rank fusion as a ranker: the fallback when no learned model can be loaded.

The RRF score itself is computed by :func:`ltrr.fusion.rrf` for every search (it is a feature of
the learned model too); this ranker just orders by it. Its version names its constant, so a
changed ``ingress.rrf_c`` shows in ``ranker_version``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ltrr.fusion import FusedCandidate


class RRFRanker:
    def __init__(self, c: float = 60.0) -> None:
        self.c = float(c)
        self.version = f"rrf-c{self.c:g}"

    def score(self, x: np.ndarray, candidates: Sequence[FusedCandidate]) -> np.ndarray:
        return np.fromiter((c.score for c in candidates), dtype=float, count=len(candidates))
