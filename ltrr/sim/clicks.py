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

**Noise clicks and play/skip** (off by default). With ``noise`` :math:`= \nu > 0` the user also
clicks, independently of the wanted item, one examined result that is *not* the wanted one with
probability :math:`\nu` (chosen uniformly among the examined non-wanted results shown; none is
clicked if there is none), and after that click skips it with probability ``skip`` :math:`= s`
(else plays it). A click on the wanted item is always a play. The draw then holds three more
uniforms after the ``depth`` examination ones, shape ``(depth + 3,)``:
:math:`(u_\nu, u_\text{pick}, u_s)`; the noise click happens iff :math:`u_\nu < \nu`, takes the
:math:`\lfloor u_\text{pick} m \rfloor`-th (0-based, by rank) of the :math:`m` examined non-wanted
results, and is a skip iff :math:`u_s < s`. :meth:`PositionClickModel.outcome` returns these clicks;
:meth:`PositionClickModel.click` stays the wanted item's click alone. With ``noise = 0`` the draw,
:meth:`~PositionClickModel.click` and every saved draw of shape ``(depth,)`` are as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from ltrr.errors import InvalidRequest

#: Extra uniforms of a draw when ``noise > 0``: whether a noise click happens, which result, skip or play.
NOISE_UNIFORMS = 3


@dataclass(frozen=True)
class Click:
    """One click of :meth:`PositionClickModel.outcome`: its 1-based position, whether it was on the
    wanted item, and what followed (``"play"``: the wanted item's, or a noise click kept; ``"skip"``)."""

    position: int
    wanted: bool
    outcome: Literal["play", "skip"]

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "wanted": self.wanted, "outcome": self.outcome}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Click:
        outcome = str(d["outcome"])
        if outcome not in ("play", "skip"):
            raise InvalidRequest("outcome", f"must be 'play' or 'skip', got {outcome!r}")
        return cls(int(d["position"]), bool(d["wanted"]), "play" if outcome == "play" else "skip")


@dataclass(frozen=True)
class PositionClickModel:
    """:math:`\\theta_r = r^{-\\eta}` over the top ``depth`` ranks, plus ``noise`` clicks on other
    examined results, each skipped with probability ``skip`` (module docstring)."""

    eta: float = 1.0
    depth: int = 10
    noise: float = 0.0
    skip: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.eta, (int, float)) or not 0.0 <= float(self.eta) <= 10.0:
            raise InvalidRequest("eta", f"must be in [0, 10], got {self.eta!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 1 <= self.depth <= 100:
            raise InvalidRequest("depth", f"must be an int in [1, 100], got {self.depth!r}")
        for name in ("noise", "skip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise InvalidRequest(name, f"must be in [0, 1], got {v!r}")

    @property
    def draw_size(self) -> int:
        """Uniforms per query: ``depth``, plus :data:`NOISE_UNIFORMS` when ``noise > 0``."""
        return self.depth + (NOISE_UNIFORMS if self.noise > 0 else 0)

    def examination(self) -> np.ndarray:
        """:math:`\\theta`, shape ``(depth,)``: entry ``r - 1`` is the probability rank ``r`` is examined."""
        return np.arange(1, self.depth + 1, dtype=float) ** -float(self.eta)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One query's uniforms ``(draw_size,)``; pass the same draw to :meth:`click` for every ranker.

        The first ``depth`` are the examination uniforms (those of ``rng.random(depth)``); with
        ``noise > 0`` the noise uniforms follow (module docstring)."""
        return rng.random(self.draw_size)

    def examined(self, draw: np.ndarray) -> np.ndarray:
        """Boolean ``(depth,)``: which ranks the user looks at under ``draw`` (shape ``(draw_size,)``)."""
        u = self._checked(draw)
        return u[: self.depth] < self.examination()

    def _checked(self, draw: np.ndarray) -> np.ndarray:
        u = np.asarray(draw, dtype=float)
        if u.shape != (self.draw_size,):
            raise InvalidRequest("draw", f"must have shape ({self.draw_size},), got {u.shape}")
        return u

    def click(self, shown: Sequence[str], wanted: str, draw: np.ndarray) -> int | None:
        """The 1-based position of the wanted item's click (if shown within ``depth`` and examined), else
        None. Noise clicks are not included (:meth:`outcome` has them)."""
        seen = self.examined(draw)
        for r, eid in enumerate(list(shown)[: self.depth], 1):
            if eid == wanted:
                return r if bool(seen[r - 1]) else None
        return None

    def outcome(self, shown: Sequence[str], wanted: str, draw: np.ndarray) -> tuple[Click, ...]:
        """Every click of one query under ``draw``, by position: the wanted item's (:meth:`click`, a
        play) and, when ``noise > 0``, the noise click on an examined non-wanted result, a skip with
        probability ``skip`` (module docstring). At most two clicks; with ``noise = 0`` at most the one."""
        u = self._checked(draw)
        out: list[Click] = []
        pos = self.click(shown, wanted, u)
        if pos is not None:
            out.append(Click(pos, True, "play"))
        if self.noise > 0:
            u_noise, u_pick, u_skip = (float(x) for x in u[self.depth :])
            seen = self.examined(u)
            others = [r for r, eid in enumerate(list(shown)[: self.depth], 1) if eid != wanted and bool(seen[r - 1])]
            if u_noise < self.noise and others:
                r = others[min(int(u_pick * len(others)), len(others) - 1)]
                out.append(Click(r, False, "skip" if u_skip < self.skip else "play"))
        return tuple(sorted(out, key=lambda c: c.position))
