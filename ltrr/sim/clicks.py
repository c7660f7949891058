r"""A position-based click model (PBM) for simulated users who know what they want.

The user looks at rank :math:`r` of the shown list with the examination probability

.. math::

    \theta_r = r^{-\eta}, \qquad r = 1 \dots \text{depth}

(:math:`\eta = 1` by default; Joachims et al., SIGIR 2005; the PBM of Craswell et al., WSDM 2008,
and Chuklin, Markov & de Rijke, "Click Models for Web Search", 2015), and clicks a result iff it
is the wanted item and examined: attractiveness is 1 for the wanted item and 0 for every other,
because a simulated user wants exactly one entity. Ranks below ``depth`` are never examined.

A query's randomness is one uniform per rank, :math:`u \in [0, 1)^\text{depth}`
(:meth:`PositionClickModel.draw`); rank :math:`r` is examined iff :math:`u_r < \theta_r`. Two
rankers shown to the *same* user (the live policy and an offline one) are compared on the same
draw, so neither is luckier than the other: the wanted item at rank 3 is clicked for both or for
neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ltrr.errors import InvalidRequest


@dataclass(frozen=True)
class PositionClickModel:
    """:math:`\\theta_r = r^{-\\eta}` over the top ``depth`` ranks (module docstring)."""

    eta: float = 1.0
    depth: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.eta, (int, float)) or not 0.0 <= float(self.eta) <= 10.0:
            raise InvalidRequest("eta", f"must be in [0, 10], got {self.eta!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 1 <= self.depth <= 100:
            raise InvalidRequest("depth", f"must be an int in [1, 100], got {self.depth!r}")

    def examination(self) -> np.ndarray:
        """:math:`\\theta`, shape ``(depth,)``: entry ``r - 1`` is the probability rank ``r`` is examined."""
        return np.arange(1, self.depth + 1, dtype=float) ** -float(self.eta)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One query's uniforms ``(depth,)``; pass the same draw to :meth:`click` for every ranker."""
        return rng.random(self.depth)

    def examined(self, draw: np.ndarray) -> np.ndarray:
        """Boolean ``(depth,)``: which ranks the user looks at under ``draw``."""
        u = np.asarray(draw, dtype=float)
        if u.shape != (self.depth,):
            raise InvalidRequest("draw", f"must have shape ({self.depth},), got {u.shape}")
        return u < self.examination()

    def click(self, shown: Sequence[str], wanted: str, draw: np.ndarray) -> int | None:
        """The 1-based position clicked (the wanted item's, if shown within ``depth`` and examined), else None."""
        seen = self.examined(draw)
        for r, eid in enumerate(list(shown)[: self.depth], 1):
            if eid == wanted:
                return r if bool(seen[r - 1]) else None
        return None
