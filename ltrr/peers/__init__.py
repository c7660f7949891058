"""The peers a user could set up instead of ltrr, on the same catalog and queries (``make bench``).

Each peer is a static retrieval-and-ranking system built from a real server's own features, with no
learning from feedback: it indexes the catalog once (:meth:`Peer.index`) and answers a query with its
ranked entity ids (:meth:`Peer.search`). ``scripts/bench_regret.py`` runs every peer on the same
simulated query stream as ltrr's live policy and scores them with the same metrics (candidate
recall, hit@10, MRR@10, nDCG@10 by ranx, latency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

from ltrr.types import Entity


@dataclass
class IndexReport:
    """What :meth:`Peer.index` did: documents written, seconds, and anything left out (with why)."""

    documents: int = 0
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count


class Peer(Protocol):
    """A peer system under one configuration (e.g. one ``semanticRatio``)."""

    #: shown in the report, e.g. ``"meili hybrid 0.5"``; unique among the peers of a run
    name: str

    def index(self, entities: Iterable[Entity]) -> IndexReport:
        """(Re)build this peer's index of ``entities``; idempotent; blocks until it is searchable."""
        ...

    def search(self, text: str, k: int) -> Sequence[str]:
        """The entity ids this peer ranks for ``text``, best first, at most ``k``."""
        ...

    def close(self) -> None: ...
