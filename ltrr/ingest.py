"""Incremental indexing: bring each strategy up to date with the catalog.

Each index target remembers the highest catalog ``seq`` it has indexed (its
watermark, kept in the catalog store). ``sync`` sends only entities changed
since then, so re-running ingest on an unchanged catalog costs a few queries,
and ``UpsertEntities`` reuses the same path: write the catalog, then sync.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Sequence

from tqdm import tqdm

from ltrr.catalog.store import CatalogBase
from ltrr.config import AppConfig
from ltrr.strategies.base import Strategy
from ltrr.strategies.registry import make_strategy

log = logging.getLogger("ltrr.ingest")


def index_target(name: str, config: Any) -> str:
    """A key naming where strategy ``name`` keeps its index, e.g. ``lexical@http://h:7700/idx``.

    A different server or index name is a different target with its own watermark.
    """
    d = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    where = d.get("url") or d.get("uri") or d.get("cache_dir") or ""
    idx = d.get("index") or d.get("collection") or d.get("index_name") or ""
    return f"{name}@{where}/{idx}"


def index_targets(cfg: AppConfig) -> dict[str, str]:
    """:func:`index_target` of every enabled strategy of ``cfg``."""
    return {n: index_target(n, cfg.strategy_config(n)) for n in cfg.enabled()}


def sync(
    strategy: Strategy, store: CatalogBase, target: str, *, batch_size: int = 2000, progress: bool = False
) -> int:
    """Index every entity changed since ``target``'s watermark; return how many were sent.

    If the strategy can count its documents and reports none while the
    watermark says otherwise (the index was dropped), it is rebuilt from zero.
    """
    mark = store.watermark(target)
    counter = getattr(strategy, "count", None)
    if mark > 0 and callable(counter) and counter() == 0:
        log.warning("%s: index is empty but watermark is %d; rebuilding", target, mark)
        mark = 0
    todo = store.count_since(mark)
    sent = 0
    bar = tqdm(total=todo, desc=f"index {strategy.name}", unit="ent", file=sys.stderr, disable=not progress)
    for last_seq, batch in store.entities_since(mark, batch_size=batch_size):
        strategy.upsert(batch)
        store.set_watermark(target, last_seq)
        sent += len(batch)
        bar.update(len(batch))
    bar.close()
    refresh = getattr(strategy, "refresh", None)
    if callable(refresh):
        refresh()
    return sent


def sync_all(
    cfg: AppConfig, store: CatalogBase, *, progress: bool = False, only: Sequence[str] | None = None
) -> dict[str, int]:
    """Build every enabled strategy from ``cfg`` (or those in ``only``), :func:`sync` it, close it;
    return entities sent per strategy."""
    sent: dict[str, int] = {}
    for name in cfg.enabled():
        if only is not None and name not in only:
            continue
        t0 = time.perf_counter()
        scfg = cfg.strategy_config(name)
        strategy = make_strategy(name, scfg, store=store)
        try:
            sent[name] = sync(strategy, store, index_target(name, scfg), progress=progress)
        finally:
            strategy.close()
        took = time.perf_counter() - t0
        log.info("index %s: %d entities sent in %.1f s", name, sent[name], took)
        if progress:
            print(f"==> index {name}: {sent[name]} entities in {took:.1f} s", file=sys.stderr)
    return sent
