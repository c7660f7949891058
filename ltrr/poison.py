"""Poison events: an event that raises every time it is applied is skipped, counted and logged once.

The learner applies the event log in order behind cursors (the bandit's ``open_cursor`` and
``cursor``, the query memory's ``memory`` cursor, :class:`ltrr.profiles.ProfileLearner`'s). If an
event that cannot be applied (a query whose normalised form is empty, a malformed decision, an
entity document of the wrong shape) made its step fail and the step were retried from the same
cursor, that cursor would stop for good and every later event would wait behind it. So an event
whose application raises is **skipped**: counted by stage (:class:`SkippedEvents`, what the
learner's ``status()`` reports as ``skipped_events``), logged once with its event id and
traceback, and its cursor moves past it. It is never retried, except by a replay after a crash
(which skips it again).

**Infrastructure errors are not the event's fault.** :data:`INFRASTRUCTURE_ERRORS`
(:class:`~ltrr.errors.BackendError`: Meilisearch or the event log unreachable, refusing, timing
out; :class:`sqlite3.Error`; :class:`OSError`) would fail every event alike, so they propagate:
the step fails, and the next poll retries from the same cursor. An outage never skips events.

**Batches are bisected.** A stage that applies a batch in one call (one Meilisearch task for a
batch of clicks, one SQLite transaction for a batch of profile updates) uses
:func:`apply_or_skip`: a batch that raises is split in halves applied in turn, recursively, down
to the single events that raise. ``b`` bad events in a batch of ``n`` cost about
:math:`1 + 2 b \\log_2 n` calls instead of ``n``. This is right only if a call that raised applied
nothing (the memory checks every event before it writes; a profile batch is one transaction). A
stage that applies one event at a time uses :meth:`SkippedEvents.guard` around each.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator

from ltrr.errors import BackendError

#: Errors that say the infrastructure failed, not the event: never a reason to skip one.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (BackendError, sqlite3.Error, OSError)


class SkippedEvents:
    """How many events each stage skipped (thread-safe); logs every skip once, with the event's id."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("ltrr")
        self._lock = threading.Lock()
        self._by_stage: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """Events skipped so far, every stage together."""
        with self._lock:
            return sum(self._by_stage.values())

    def by_stage(self) -> dict[str, int]:
        """``{stage: events skipped}``, for the stages that skipped any."""
        with self._lock:
            return dict(self._by_stage)

    def record(self, stage: str, event_id: str, seq: int, exc: BaseException) -> None:
        """Count one skipped event of ``stage`` (``seq``: its position in its cursor's order) and log it."""
        with self._lock:
            self._by_stage[stage] += 1
        self._log.warning(
            "learner: skipped %s event %s (seq %d), which failed to apply (%s: %s); not retried",
            stage,
            event_id,
            seq,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )

    @contextmanager
    def guard(self, stage: str, event_id: str, seq: int) -> Iterator[None]:
        """Apply one event inside: an error other than :data:`INFRASTRUCTURE_ERRORS` is recorded, not raised."""
        try:
            yield
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad event: skipped and counted, see the module docstring
            self.record(stage, event_id, seq, exc)


def apply_or_skip(
    n: int,
    apply: Callable[[int, int], int | None],
    skip: Callable[[int, Exception], int | None],
) -> int | None:
    """Apply items ``0 .. n-1`` in order, a range per call, skipping the ones that raise.

    ``apply(lo, hi)`` applies items ``lo .. hi-1`` in one call (first ``(0, n)``) and returns how
    many it applied. When it raises an error other than :data:`INFRASTRUCTURE_ERRORS` (those
    propagate), the range is split at :math:`\\lfloor (lo + hi) / 2 \\rfloor` and both halves are
    applied in turn, recursively; ``skip(i, exc)`` is called for each single item ``i`` that
    raises (it moves the cursor past the item and records it) and returns what to count for it.
    Returns the sum of the counts, or None as soon as a call returns None (the cursor was moved by
    someone else: stop, and re-read it).
    """

    def run(lo: int, hi: int) -> int | None:
        try:
            return apply(lo, hi)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - find the bad items, see the module docstring
            if hi - lo == 1:
                return skip(lo, exc)
        # outside the handler, so the halves' errors are not chained to this one
        mid = (lo + hi) // 2
        first = run(lo, mid)
        if first is None:
            return None
        second = run(mid, hi)
        return None if second is None else first + second

    return run(0, n) if n > 0 else 0
