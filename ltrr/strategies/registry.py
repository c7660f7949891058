"""Strategies resolved by name. Imports are lazy: building the lexical strategy
does not import torch, and the ingress imports none of them."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from pydantic import BaseModel

from ltrr.errors import ConfigError
from ltrr.strategies.base import Strategy

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


def make_strategy(name: str, values: Mapping[str, Any] | BaseModel | None = None) -> Strategy:
    """Build strategy ``name`` from its config values."""
    cfg = make_config(name, values)
    strategy: Strategy = _load(_entry(name)[1])(cfg)
    return strategy
