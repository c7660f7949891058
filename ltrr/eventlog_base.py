"""What the SQLite and the PostgreSQL event logs share: argument checks and the readers.

:class:`EventLogBase` validates the settings and holds every public method whose logic is the same
on both backends (:class:`ltrr.eventlog.SQLiteEventLog`, :class:`ltrr.eventlog_pg.PostgresEventLog`):
the readers, the argument checks and the pure steps of ``settle``. A backend keeps its connections,
its transactions and its writes, and gives the readers its SQL dialect through small hooks:

* ``_MARK``, the placeholder (``?`` or ``%s``);
* ``_BYTE_ORDER``, what makes ``ORDER BY`` on a text column compare bytes (SQLite's default);
* :meth:`EventLogBase._reads`, the rows of a few queries on the read connection, under one lock;
* :meth:`EventLogBase._decode_doc`, a stored search (JSON text or a JSONB dict) as a dict;
* :meth:`EventLogBase._in_sql`, "``column`` is one of ``values``" as SQL and its parameters.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any, ClassVar, Iterable, Iterator, Sequence

from ltrr.errors import BackendTimeout
from ltrr.events import POSITIVE, FeedbackEvent, SearchEvent, Settlement
from ltrr.query_understanding import normalize_text

__all__ = ["EventLogBase", "take_lock"]

_MAX_LIMIT = 100_000
#: One query of :meth:`EventLogBase._reads`: SQL and its parameters.
Query = tuple[str, Sequence[object]]
#: A search ``settle`` picked: (request_id, query, seq of the deciding positive feedback or None for expired, forced).
Chosen = tuple[str, str, int | None, bool]


def _check_float(name: str, value: float, *, lo: float, strict: bool) -> float:
    """A finite real number ``> lo`` (``strict``) or ``>= lo``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= lo if strict else value < lo):
        bound = "" if lo == -math.inf else f" {'>' if strict else '>='} {lo:g}"
        raise ValueError(f"`{name}` must be a finite number{bound}, got {value!r}")
    return float(value)


def _check_int(name: str, value: int, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"`{name}` must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _late(timeout_s: float) -> BackendTimeout:
    return BackendTimeout(f"event log write: no write lock within the caller's deadline ({timeout_s:.3f} s left)")


def take_lock(lock: threading.Lock, timeout_s: float | None) -> float:
    """Take ``lock``, waiting at most ``timeout_s`` (None: as long as it takes); the ``time.monotonic()``
    the wait began. Past ``timeout_s`` :class:`~ltrr.errors.BackendTimeout`, without the lock."""
    start = time.monotonic()
    if timeout_s is None:
        lock.acquire()
    elif timeout_s <= 0 or not lock.acquire(timeout=min(timeout_s, threading.TIMEOUT_MAX)):
        raise _late(timeout_s)
    return start


class EventLogBase:
    """The backend-independent half of an event log (module docstring); not an event log by itself."""

    #: The SQL placeholder of the backend's driver.
    _MARK: ClassVar[str]
    #: Appended to a text column in ``ORDER BY`` so that it compares bytes, as SQLite's BINARY collation does.
    _BYTE_ORDER: ClassVar[str] = ""

    busy_timeout_s: float
    feedback_window_s: float
    reward_window_s: float
    expiry_grace_s: float
    positive_actions: tuple[str, ...]
    #: This process's writers take turns on it (the backend creates it).
    _lock: threading.Lock

    def _set_windows(
        self,
        feedback_window_s: float,
        reward_window_s: float,
        positive_actions: Iterable[str],
        expiry_grace_s: float,
        busy_timeout_s: float,
    ) -> None:
        """Validate and store the arguments both backends take (see :class:`ltrr.eventlog.SQLiteEventLog`)."""
        self.busy_timeout_s = _check_float("busy_timeout_s", busy_timeout_s, lo=0, strict=False)
        self.feedback_window_s = _check_float("feedback_window_s", feedback_window_s, lo=0, strict=True)
        self.reward_window_s = _check_float("reward_window_s", reward_window_s, lo=0, strict=True)
        self.expiry_grace_s = _check_float("expiry_grace_s", expiry_grace_s, lo=0, strict=False)
        actions = (positive_actions,) if isinstance(positive_actions, str) else tuple(positive_actions)
        if isinstance(positive_actions, str) or not actions or not all(isinstance(a, str) and a for a in actions):
            raise ValueError(
                f"`positive_actions` must be a non-empty collection of non-empty strings, got {positive_actions!r}"
            )
        self.positive_actions = tuple(sorted(set(actions)))

    def _take_write_lock(self, timeout_s: float | None) -> float:
        """Take ``_lock`` (:func:`take_lock`)."""
        return take_lock(self._lock, timeout_s)

    # -- the backend's hooks ---------------------------------------------------------------------
    def _reads(self, *queries: Query) -> list[list[tuple[Any, ...]]]:
        """The rows of each query, run in order on the read connection under its lock."""
        raise NotImplementedError

    @staticmethod
    def _decode_doc(doc: Any) -> dict[str, Any]:
        """A ``searches.doc`` value as the dict of :meth:`SearchEvent.to_dict`."""
        raise NotImplementedError

    @staticmethod
    def _in_sql(column: str, values: Sequence[str]) -> tuple[str, tuple[object, ...]]:
        """``column`` is one of ``values``: the SQL condition and its parameters."""
        raise NotImplementedError

    def _fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._reads((sql, params))[0]

    def _rows_since(self, sql: str, seq: int, limit: int, *params: object) -> list[tuple[Any, ...]]:
        """The rows of a reader query ``sql`` whose placeholders are ``seq``, then ``params``, then ``limit``."""
        _check_int("seq", seq, 0, 2**63 - 1)
        _check_int("limit", limit, 1, _MAX_LIMIT)
        return self._fetch(sql, (seq, *params, limit))

    # -- ingress reads ---------------------------------------------------------------------------
    def search(self, request_id: str) -> SearchEvent | None:
        rows = self._fetch(f"SELECT doc FROM searches WHERE request_id = {self._MARK}", (request_id,))
        return SearchEvent.from_dict(self._decode_doc(rows[0][0])) if rows else None

    def feedback_for(self, request_id: str) -> list[FeedbackEvent]:
        rows = self._fetch(
            "SELECT event_id, request_id, entity_id, action, position, ts FROM feedback "
            f"WHERE request_id = {self._MARK} ORDER BY ts, seq",
            (request_id,),
        )
        return [FeedbackEvent(*r) for r in rows]

    # -- settle: its arguments and its pure steps ------------------------------------------------
    @staticmethod
    def _settle_time(now_ts: float | None, limit: int) -> float:
        """Check ``settle``'s arguments; the time it settles as of."""
        _check_int("limit", limit, 1, _MAX_LIMIT)
        return time.time() if now_ts is None else _check_float("now_ts", now_ts, lo=-math.inf, strict=False)

    @staticmethod
    def _first_positives(rows: Iterable[Sequence[Any]], limit: int, top: int) -> tuple[list[Chosen], int]:
        """Step 1 of ``settle``: from ``(feedback seq, request_id, query, forced)`` rows in seq order, the first
        positive of each search, at most ``limit``; and how far the scan got (``top``, or just before the
        first row it left for next time)."""
        chosen: list[Chosen] = []
        seen: set[str] = set()
        for fseq, rid, query, forced in rows:
            if rid in seen:
                continue
            if len(chosen) == limit:
                top = int(fseq) - 1  # resume here next time
                break
            seen.add(rid)
            chosen.append((rid, query, int(fseq), bool(forced)))
        return chosen, top

    @staticmethod
    def _query_stats_rows(chosen: Iterable[Chosen], t: float) -> list[tuple[str, int, int, float]]:
        """``(query, searches, positives, t)`` to add to ``query_stats`` for the settled ``chosen``, by query."""
        searches: Counter[str] = Counter()
        positives: Counter[str] = Counter()
        for _, query, fseq, forced in chosen:
            if forced:  # the caller chose the plan: its outcome says nothing of how the policy serves it
                continue
            key = normalize_text(query)
            searches[key] += 1
            positives[key] += fseq is not None
        return [(k, searches[k], positives[k], t) for k in sorted(searches)]

    # -- learner reads ---------------------------------------------------------------------------
    def settlements_since(self, seq: int, limit: int = 1000) -> list[tuple[Settlement, SearchEvent]]:
        """Settlements with ``seq`` above ``seq``, oldest first, each joined to its search."""
        m = self._MARK
        rows = self._rows_since(
            "SELECT st.seq, st.request_id, st.outcome, st.entity_id, st.action, st.ts, s.doc "
            "FROM settlements st JOIN searches s ON s.request_id = st.request_id "
            f"WHERE st.seq > {m} ORDER BY st.seq LIMIT {m}",
            seq,
            limit,
        )
        return [(Settlement(*r[:6]), SearchEvent.from_dict(self._decode_doc(r[6]))) for r in rows]

    def searches_since(self, seq: int, limit: int = 1000) -> list[tuple[int, SearchEvent]]:
        """Searches logged after position ``seq`` of ``search_seq``, in log order: (seq, event)."""
        m = self._MARK
        rows = self._rows_since(
            "SELECT q.seq, s.doc FROM search_seq q JOIN searches s ON s.request_id = q.request_id "
            f"WHERE q.seq > {m} ORDER BY q.seq LIMIT {m}",
            seq,
            limit,
        )
        return [(int(r[0]), SearchEvent.from_dict(self._decode_doc(r[1]))) for r in rows]

    def positive_settlements_since(self, seq: int, limit: int = 1000) -> list[tuple[Settlement, SearchEvent, int]]:
        """Positive settlements with ``seq`` above ``seq``, oldest first, each with its search and
        that search's ``search_seq`` position (to credit it only once it was counted)."""
        m = self._MARK
        rows = self._rows_since(
            "SELECT st.seq, st.request_id, st.outcome, st.entity_id, st.action, st.ts, s.doc, q.seq "
            "FROM settlements st JOIN searches s ON s.request_id = st.request_id "
            "JOIN search_seq q ON q.request_id = st.request_id "
            f"WHERE st.seq > {m} AND st.outcome = {m} ORDER BY st.seq LIMIT {m}",
            seq,
            limit,
            POSITIVE,
        )
        return [(Settlement(*r[:6]), SearchEvent.from_dict(self._decode_doc(r[6])), int(r[7])) for r in rows]

    def iter_settled(
        self, since: int = 0, *, limit: int | None = None, batch_size: int = 1000
    ) -> Iterator[tuple[Settlement, SearchEvent]]:
        """Every settlement after ``since`` (at most ``limit``) with its search, in seq order, read in batches."""
        _check_int("batch_size", batch_size, 1, _MAX_LIMIT)
        if limit is not None:
            _check_int("limit", limit, 1, 2**63 - 1)
        left = limit
        while left is None or left > 0:
            batch = self.settlements_since(since, batch_size if left is None else min(batch_size, left))
            if not batch:
                return
            yield from batch
            since = batch[-1][0].seq
            if left is not None:
                left -= len(batch)

    def positives_since(self, seq: int, limit: int = 1000) -> list[tuple[int, FeedbackEvent, str]]:
        """Positive feedback with ``seq`` above ``seq``, oldest first: (feedback seq, event, the search's query)."""
        m = self._MARK
        positive, actions = self._in_sql("f.action", self.positive_actions)
        rows = self._rows_since(
            "SELECT f.seq, f.event_id, f.request_id, f.entity_id, f.action, f.position, f.ts, s.query "
            "FROM feedback f JOIN searches s ON s.request_id = f.request_id "
            f"WHERE f.seq > {m} AND {positive} ORDER BY f.seq LIMIT {m}",
            seq,
            limit,
            *actions,
        )
        return [(int(r[0]), FeedbackEvent(*r[1:7]), r[7]) for r in rows]

    def recent_searches(
        self, limit: int = 20_000, batch_size: int = 500
    ) -> Iterator[tuple[SearchEvent, list[FeedbackEvent]]]:
        """The newest ``limit`` searches, oldest first, each with all its feedback (possibly none) in
        arrival order: what the ranker trainer learns from. Read in batches, parsed one search at a time."""
        _check_int("limit", limit, 1, 2**63 - 1)
        _check_int("batch_size", batch_size, 1, _MAX_LIMIT)
        newest = f"SELECT request_id FROM searches ORDER BY ts DESC, request_id{self._BYTE_ORDER} LIMIT {self._MARK}"
        rids = [r[0] for r in self._fetch(newest, (limit,))]
        rids.reverse()
        for i in range(0, len(rids), batch_size):
            chunk = rids[i : i + batch_size]
            among, params = self._in_sql("request_id", chunk)
            doc_rows, fb_rows = self._reads(
                (f"SELECT request_id, doc FROM searches WHERE {among}", params),
                (
                    "SELECT event_id, request_id, entity_id, action, position, ts FROM feedback "
                    f"WHERE {among} ORDER BY seq",
                    params,
                ),
            )
            docs = dict(doc_rows)
            fb: dict[str, list[FeedbackEvent]] = {}
            for r in fb_rows:
                fb.setdefault(r[1], []).append(FeedbackEvent(*r))
            for rid in chunk:
                if rid in docs:
                    yield SearchEvent.from_dict(self._decode_doc(docs[rid])), fb.get(rid, [])

    def searches_with_feedback(self) -> int:
        """How many searches got any feedback: the trainer retrains when it has grown enough."""
        return int(self._fetch("SELECT COUNT(DISTINCT request_id) FROM feedback")[0][0])

    @staticmethod
    def _check_prune(keep_newest: int, limit: int) -> None:
        _check_int("keep_newest", keep_newest, 1, 2**62)
        _check_int("limit", limit, 1, _MAX_LIMIT)

    @classmethod
    def _prunable_sql(cls) -> str:
        """``prune``'s choice of searches: its placeholders are ``before_ts``, ``through_search_seq``, the top
        ``search_seq`` minus ``keep_newest``, ``through_settlement_seq``, ``through_feedback_seq`` and ``limit``."""
        m = cls._MARK
        return (
            "SELECT q.request_id FROM search_seq q JOIN searches s ON s.request_id = q.request_id "
            "JOIN settlements st ON st.request_id = q.request_id "
            f"WHERE s.ts < {m} AND q.seq <= {m} AND q.seq <= {m} AND st.seq <= {m} "
            "AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.request_id = q.request_id) "
            f"AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = q.request_id AND f.seq > {m}) "
            f"ORDER BY q.seq LIMIT {m}"
        )

    # -- cursors and statistics ------------------------------------------------------------------
    @staticmethod
    def _check_cursor_name(name: str) -> None:
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise ValueError(f"`name` must be a non-empty string not starting with '_' (reserved), got {name!r}")

    def cursor(self, name: str) -> int:
        """The stored position of consumer ``name`` (0 when unset)."""
        self._check_cursor_name(name)
        rows = self._fetch(f"SELECT seq FROM cursors WHERE name = {self._MARK}", (name,))
        return int(rows[0][0]) if rows else 0

    def query_stats(self, query: str) -> tuple[int, int]:
        """(settled searches, positive ones) for ``normalize_text(query)``; (0, 0) when unseen. One key lookup."""
        rows = self._fetch(
            f"SELECT searches, positives FROM query_stats WHERE query = {self._MARK}", (normalize_text(query),)
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def oldest_pending_ts(self) -> float | None:
        """The ts of the oldest search not settled yet (None when all are settled).

        Searches at or after it are not all settled, and the ones that are settled early
        are the positive ones, so an evaluation must stop there to avoid a biased sample."""
        value = self._fetch("SELECT MIN(ts) FROM pending")[0][0]
        return None if value is None else float(value)

    def counts(self) -> dict[str, int]:
        """Row counts of searches, feedback, pending and settlements (one snapshot)."""
        names = ("searches", "feedback", "pending", "settlements")
        (row,) = self._fetch("SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in names))
        return {t: int(n) for t, n in zip(names, row, strict=True)}
