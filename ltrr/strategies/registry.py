"""Strategies resolved by name. Imports are lazy: building the lexical strategy
does not import torch, and the ingress imports none of them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import BaseModel

from ltrr.errors import ConfigError
from ltrr.strategies.base import Strategy

if TYPE_CHECKING:
    from ltrr.catalog.store import CatalogBase

#: name -> (config class path, strategy class path)
REGISTRY: dict[str, tuple[str, str]] = {
    "lexical": ("ltrr.strategies.lexical:LexicalConfig", "ltrr.strategies.lexical:LexicalStrategy"),
    "vector": ("ltrr.strategies.vector:VectorConfig", "ltrr.strategies.vector:VectorStrategy"),
    "graph": ("graph.strategy:GraphConfig", "graph.strategy:GraphStrategy"),
    "memory": ("ltrr.strategies.memory:MemoryConfig", "ltrr.strategies.memory:MemoryStrategy"),
}
STRATEGY_NAMES: tuple[str, ...] = tuple(REGISTRY)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry(name: str) -> tuple[str, str]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGY_NAMES)}") from None


def config_class(name: str) -> type[BaseModel]:
    cls: type[BaseModel] = _load(_entry(name)[0])
    return cls


def make_config(name: str, values: Mapping[str, Any] | BaseModel | None = None) -> BaseModel:
    """Validate ``values`` with the strategy's strict config class."""
    cls = config_class(name)
    if isinstance(values, cls):
        return values
    if isinstance(values, BaseModel):
        values = values.model_dump()
    return cls.model_validate(dict(values or {}))


def reads_catalog(name: str) -> bool:
    """Whether strategy ``name`` reads the catalog: its config has ``catalog_path`` (today: graph)."""
    return "catalog_path" in config_class(name).model_fields


def make_strategy(
    name: str, values: Mapping[str, Any] | BaseModel | None = None, *, store: CatalogBase | None = None
) -> Strategy:
    """Build strategy ``name`` from its config values.

    ``store``: the open catalog (:func:`ltrr.catalog.store.open_catalog`), passed as ``store=`` to a
    strategy that reads the catalog (:func:`reads_catalog`), which then reads it rather than open the
    SQLite file ``catalog_path``; the caller closes it, after the strategy. Other strategies ignore it."""
    cfg = make_config(name, values)
    cls = _load(_entry(name)[1])
    strategy: Strategy = cls(cfg, store=store) if store is not None and reads_catalog(name) else cls(cfg)
    return strategy
