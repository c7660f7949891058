"""How far each strategy's index lags the catalog: its backlog.

Each index target keeps a watermark, the highest catalog ``seq`` it has
indexed (:mod:`ltrr.ingest`). Its backlog is the number of catalog entities
written after that watermark::

    backlog(s) = |{e in catalog : e.seq > watermark(target(s))}|

A strategy with a backlog still answers, from what it has indexed; the search
reports it (``StrategyCall.detail`` and ``degraded``) and the health service
answers ``NOT_SERVING`` for ``ltrr.index.<strategy>`` until it is 0. The first
``make run`` indexes the vector strategy in the background this way, so the
service answers minutes before the embeddings are done.

Reads are two primary-key/indexed SQLite queries per strategy, cached for
``ttl_s`` so the request path pays them at most once a second.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Mapping

from ltrr.catalog.store import CatalogBase

#: Health service name of strategy ``s``'s index: ``ltrr.index.<s>``.
INDEX_SERVICE_PREFIX = "ltrr.index."


class IndexBacklog:
    """Backlog per strategy, from the catalog store's watermarks (see the module docstring)."""

    def __init__(
        self, store: CatalogBase, targets: Mapping[str, str], *, ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        if ttl_s < 0:
            raise ValueError(f"`ttl_s` must be >= 0, got {ttl_s}")
        self.store = store
        self.targets = dict(targets)
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._cached: dict[str, int] = {}
        self._total = 0

    def _refresh(self) -> None:
        self._cached = {s: self.store.count_since(self.store.watermark(t)) for s, t in self.targets.items()}
        self._total = self.store.count()
        self._at = self._clock()

    def pending(self) -> dict[str, int]:
        """Catalog entities not indexed yet, per strategy (at most ``ttl_s`` old)."""
        with self._lock:
            if self._clock() - self._at >= self.ttl_s:
                self._refresh()
            return dict(self._cached)

    def detail(self, strategy: str) -> str:
        """A one-line description of ``strategy``'s backlog for a client ("" when it has none)."""
        n = self.pending().get(strategy, 0)
        if n <= 0:
            return ""
        return f"index catching up: {n} of {self._total} catalog entities not indexed yet"
