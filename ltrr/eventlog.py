"""Durable log of searches and feedback (SQLite in WAL mode).

Every ``Search`` writes one row (request id, query, shown list, per-strategy
calls) before it answers; ``Feedback`` is joined to that row by request id and
is acknowledged only after its own row is committed with
``synchronous=FULL`` (fsync of the WAL on every commit), so an acknowledged
event survives a crash of the replica or the machine.

Idempotency: ``event_id`` is the primary key of the feedback table. Writing
the same event twice stores it once and reports ``duplicate=True``.

The :class:`EventLog` protocol is what the service uses; SQLite is the embedded
default. A cluster with ingress replicas on several nodes needs a shared
server database behind the same protocol (PostgreSQL is the recommended one,
see README).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ltrr.errors import InvalidRequest, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    request_id TEXT PRIMARY KEY,
    ts         REAL NOT NULL,
    query      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    event_id   TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    action     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    ts         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id);
"""


@dataclass(frozen=True)
class SearchEvent:
    """What one search did: enough to join feedback and compute rewards later."""

    request_id: str
    ts: float
    query: str
    user_id: str
    shown: tuple[str, ...]
    calls: tuple[dict[str, Any], ...] = ()
    candidates: dict[str, list[str]] | None = None
    policy_version: str = ""
    ranker_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shown"] = list(self.shown)
        d["calls"] = list(self.calls)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchEvent:
        return cls(**{**d, "shown": tuple(d["shown"]), "calls": tuple(d.get("calls", ()))})


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


class EventLog(Protocol):
    def record_search(self, event: SearchEvent) -> None: ...

    def record_feedback(self, event: FeedbackEvent) -> bool: ...

    def search(self, request_id: str) -> SearchEvent | None: ...

    def close(self) -> None: ...


class SQLiteEventLog:
    """The embedded :class:`EventLog`: one SQLite file in WAL mode, fsync on commit.

    ``feedback_window_s`` bounds how long after a search its feedback is accepted.
    """

    def __init__(self, path: str | Path, *, feedback_window_s: float = 86400.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.feedback_window_s = feedback_window_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_search(self, event: SearchEvent) -> None:
        doc = json.dumps(event.to_dict(), ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO searches(request_id, ts, query, user_id, doc) VALUES (?,?,?,?,?)",
                (event.request_id, event.ts, event.query, event.user_id, doc),
            )

    def search(self, request_id: str) -> SearchEvent | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM searches WHERE request_id=?", (request_id,)).fetchone()
        return SearchEvent.from_dict(json.loads(row[0])) if row else None

    def record_feedback(self, event: FeedbackEvent) -> bool:
        """Store ``event`` durably; return True if its ``event_id`` was already stored.

        Raises :class:`NotFound` for an unknown or expired ``request_id`` and
        :class:`InvalidRequest` when an ``event_id`` is reused for a different event.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT request_id, entity_id, action FROM feedback WHERE event_id=?", (event.event_id,)
            ).fetchone()
            if row is not None:
                if tuple(row) != (event.request_id, event.entity_id, event.action):
                    raise InvalidRequest("event_id", f"{event.event_id!r} was already used for a different event")
                return True
            srow = self._db.execute("SELECT ts FROM searches WHERE request_id=?", (event.request_id,)).fetchone()
            if srow is None:
                raise NotFound(f"request_id: unknown request {event.request_id!r}")
            if event.ts - float(srow[0]) > self.feedback_window_s:
                raise NotFound(
                    f"request_id: request {event.request_id!r} expired "
                    f"(feedback is accepted for {self.feedback_window_s:.0f} s)"
                )
            self._db.execute(
                "INSERT INTO feedback(event_id, request_id, entity_id, action, position, ts) VALUES (?,?,?,?,?,?)",
                (event.event_id, event.request_id, event.entity_id, event.action, event.position, event.ts),
            )
        return False

    def feedback_for(self, request_id: str) -> list[FeedbackEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, request_id, entity_id, action, position, ts FROM feedback "
                "WHERE request_id=? ORDER BY ts",
                (request_id,),
            ).fetchall()
        return [FeedbackEvent(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            s = self._db.execute("SELECT COUNT(*) FROM searches").fetchone()[0]
            f = self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        return {"searches": int(s), "feedback": int(f)}


def now() -> float:
    return time.time()
