"""The records of the event log and the :class:`EventLog` protocol a store implements.

:class:`SearchEvent` (one search: context, decision, candidates, shown list),
:class:`FeedbackEvent` (one user action) and :class:`Settlement` (a search's
outcome, learned from once). :mod:`ltrr.eventlog` holds the SQLite store.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Iterator, Literal, Protocol

POSITIVE: Final = "positive"
EXPIRED: Final = "expired"


@dataclass(frozen=True)
class SearchEvent:
    """What one search did: enough to join feedback, compute rewards and evaluate policies later.

    ``candidates[s]`` lists strategy ``s``'s candidate ids and ``scores[s]`` their
    scores (same length and order). ``features`` are the context features the
    policy saw, ``decision`` its decision as a plain dict (opaque to the log),
    ``context`` the request context. ``ranking`` holds the ranker's feature rows of the top of the
    served order (:func:`ltrr.ranking.features.pack`), what the ranker trainer learns from.
    """

    request_id: str
    ts: float
    query: str
    user_id: str
    shown: tuple[str, ...]
    calls: tuple[dict[str, Any], ...] = ()
    candidates: dict[str, list[str]] | None = None
    policy_version: str = ""
    ranker_version: str = ""
    features: dict[str, float] = field(default_factory=dict)
    decision: dict[str, Any] | None = None
    scores: dict[str, list[float]] | None = None
    context: dict[str, str] = field(default_factory=dict)
    ranking: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain copy (containers copied; ``decision`` deep-copied). Hand-written: ``asdict`` takes ~1 ms here."""
        return {
            "request_id": self.request_id,
            "ts": self.ts,
            "query": self.query,
            "user_id": self.user_id,
            "shown": list(self.shown),
            "calls": [dict(c) for c in self.calls],
            "candidates": None if self.candidates is None else {s: list(v) for s, v in self.candidates.items()},
            "policy_version": self.policy_version,
            "ranker_version": self.ranker_version,
            "features": dict(self.features),
            "decision": copy.deepcopy(self.decision),
            "scores": None if self.scores is None else {s: list(v) for s, v in self.scores.items()},
            "context": dict(self.context),
            "ranking": None if self.ranking is None else dict(self.ranking),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchEvent:
        """Load a doc of any version: missing fields take their defaults, unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in d.items() if k in known}
        kept["shown"] = tuple(d["shown"])
        kept["calls"] = tuple(d.get("calls") or ())
        kept["features"] = dict(d.get("features") or {})
        kept["context"] = dict(d.get("context") or {})
        return cls(**kept)


@dataclass(frozen=True)
class FeedbackEvent:
    event_id: str
    request_id: str
    entity_id: str
    action: str
    position: int
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeedbackEvent:
        return cls(**d)


@dataclass(frozen=True)
class Settlement:
    """The one outcome of a search: its first positive feedback, or ``expired`` (``entity_id = action = ""``).

    ``seq`` strictly increases in commit order and is never reused; ``ts`` is when it was settled.
    """

    seq: int
    request_id: str
    outcome: Literal["positive", "expired"]
    entity_id: str
    action: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settlement:
        return cls(**d)


class EventLog(Protocol):
    """The durable log behind the service (searches, feedback) and the learner (settlements, cursors)."""

    def record_search(self, event: SearchEvent, *, timeout_s: float | None = None) -> None: ...

    def record_feedback(self, event: FeedbackEvent, *, timeout_s: float | None = None) -> bool: ...

    def search(self, request_id: str) -> SearchEvent | None: ...

    def feedback_for(self, request_id: str) -> list[FeedbackEvent]: ...

    def settle(self, now_ts: float | None = None, *, limit: int = 10_000) -> list[Settlement]: ...

    def settlements_since(self, seq: int, limit: int = 1000) -> list[tuple[Settlement, SearchEvent]]: ...

    def iter_settled(
        self, since: int = 0, *, limit: int | None = None, batch_size: int = 1000
    ) -> Iterator[tuple[Settlement, SearchEvent]]: ...

    def positives_since(self, seq: int, limit: int = 1000) -> list[tuple[int, FeedbackEvent, str]]: ...

    def cursor(self, name: str) -> int: ...

    def set_cursor(self, name: str, seq: int) -> None: ...

    def query_stats(self, query: str) -> tuple[int, int]: ...

    def oldest_pending_ts(self) -> float | None: ...

    def counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...
