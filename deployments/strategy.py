"""A Serve replica hosting one retrieval strategy (or the same, hosted in the ingress).

It adds only what Serve needs: blocking strategy calls run in a thread so the
replica's event loop keeps serving, the vector strategy batches concurrent
queries (one embed + one Milvus call per batch), and strategies with
in-process state (the graph) refresh from the catalog on a timer so every
replica sees upserts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ray import serve

from ltrr.catalog.store import open_catalog
from ltrr.config import AppConfig
from ltrr.ingest import index_target, sync
from ltrr.strategies.registry import make_strategy
from ltrr.types import Candidate, ParsedQuery, Query

log = logging.getLogger("ray.serve")


class StrategyServer:
    def __init__(self, name: str, app_config: dict[str, Any]) -> None:
        app = AppConfig.model_validate(app_config)
        self.name = name
        self.config = app.strategy_config(name)
        self.store = open_catalog(app)  # the app's catalog (PostgreSQL with a DSN): sync's, and graph's
        try:
            self.strategy = make_strategy(name, self.config, store=self.store)
        except BaseException:
            self.store.close()
            raise
        self.target = index_target(name, self.config)
        self._stop = threading.Event()
        interval = float(getattr(self.config, "refresh_interval_s", 0) or 0)
        if interval > 0 and callable(getattr(self.strategy, "refresh", None)):
            threading.Thread(target=self._refresh_loop, args=(interval,), daemon=True).start()
        self._warm_up()

    def _warm_up(self) -> None:
        """One search before taking traffic: loads models, collections and lazy indexes,
        so the first user query does not pay for them and miss its deadline."""
        query = Query("radiohead", ParsedQuery("radiohead", "radiohead", seed="radiohead"))
        warm_up = getattr(self.strategy, "warm_up", None)
        try:
            if callable(warm_up):
                warm_up()  # e.g. the vector strategy waits until a restarted Milvus answers
            else:
                self.strategy.search(query, 10)
        except Exception as exc:  # noqa: BLE001 - a backend that is down now may come back later
            log.warning("%s: warm-up search failed: %s", self.name, exc)

    async def ready(self) -> bool:
        """True once constructed (and warmed up); the ingress health check waits for this."""
        return True

    def _refresh_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.strategy.refresh()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - keep refreshing; a bad round is logged
                log.exception("%s: refresh failed", self.name)

    async def search(self, query: dict[str, Any], k: int) -> list[Candidate]:
        # Typed records cross the hop as they are (pickled): no dict round trip on the hot path.
        return await asyncio.to_thread(self.strategy.search, Query.from_dict(query), k)

    async def sync(self) -> int:
        """Index catalog entities changed since this strategy's watermark."""
        return await asyncio.to_thread(sync, self.strategy, self.store, self.target)

    def __del__(self) -> None:
        self._stop.set()
        for closable in (self.strategy, self.store):
            try:
                closable.close()
            except Exception:  # noqa: BLE001
                pass


class VectorServer(StrategyServer):
    """The vector strategy, batching concurrent queries into one embed and one search."""

    async def search(self, query: dict[str, Any], k: int) -> list[Candidate]:
        return await self._batched(query, k)  # type: ignore[misc,call-arg]

    # A lone query waits at most 1 ms for company (3 ms cost sequential traffic 3 ms for nothing).
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.001)  # type: ignore[arg-type,misc]
    async def _batched(  # type: ignore[misc]
        self, queries: list[dict[str, Any]], ks: list[int]
    ) -> list[list[Candidate]]:
        qs = [Query.from_dict(q) for q in queries]
        out: list[list[Candidate]] = await asyncio.to_thread(self.strategy.search_many, qs, ks)  # type: ignore[attr-defined]
        return out


#: The server class of each strategy that needs more than :class:`StrategyServer`.
SERVER_CLASSES: dict[str, type[StrategyServer]] = {"vector": VectorServer}


def server_class(name: str) -> type[StrategyServer]:
    return SERVER_CLASSES.get(name, StrategyServer)


class _LocalMethod:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)  # a coroutine: awaited like a DeploymentResponse


class InProcessHandle:
    """A strategy hosted in the ingress replica (``placement: ingress``), behind the same
    ``handle.<method>.remote(...)`` calls the ingress makes on a DeploymentHandle."""

    def __init__(self, server: StrategyServer) -> None:
        self.server = server
        self.search = _LocalMethod(server.search)
        self.sync = _LocalMethod(server.sync)
        self.ready = _LocalMethod(server.ready)
