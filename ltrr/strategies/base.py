"""The one small interface every retrieval strategy implements."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ltrr.types import Candidate, Entity, Query


@runtime_checkable
class Strategy(Protocol):
    """A retrieval strategy.

    ``search`` returns at most ``k`` candidates, best first, with 1-based ranks.
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
