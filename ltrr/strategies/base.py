"""The one small interface every retrieval strategy implements."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ltrr.constants import MAX_STRATEGY_K
from ltrr.errors import InvalidRequest
from ltrr.types import Candidate, Entity, Query


def check_k(k: object, name: str = "k") -> int:
    """The one check of a strategy call's ``k``: an int in ``[1, MAX_STRATEGY_K]`` (not a bool).

    Every strategy's ``search`` calls it first; ``name`` is the argument reported
    (``"ks[3]"`` for a batch). The response's own ``k`` (at most
    :data:`ltrr.constants.MAX_K`) is checked in :mod:`ltrr.validation`."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_STRATEGY_K:
        raise InvalidRequest(name, f"must be an integer in [1, {MAX_STRATEGY_K}], got {k!r}")
    return k


@runtime_checkable
class Strategy(Protocol):
    """A retrieval strategy.

    ``search`` returns at most ``k`` candidates, best first, with 1-based ranks;
    it checks ``k`` with :func:`check_k` (``1 <= k <= MAX_STRATEGY_K``) first.
    It raises :class:`ltrr.errors.BackendUnavailable` or
    :class:`ltrr.errors.BackendTimeout` when its backend fails; never a raw
    third-party exception.

    ``upsert`` adds or replaces entities and returns how many it wrote. It must
    be idempotent. ``close`` releases connections.
    """

    name: str

    def search(self, query: Query, k: int) -> list[Candidate]: ...

    def upsert(self, entities: Sequence[Entity]) -> int: ...

    def close(self) -> None: ...
