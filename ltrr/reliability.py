"""The bookkeeping of the fault bench (``scripts/chaos.py``, ``make chaos``): pure, so it is unit-tested.

A load client journals every call to a JSON Lines file, one line per outcome, and ``fsync``s each
acknowledged feedback before it counts it (after Elasticsearch's acknowledged-indexing tests: only
what the server *acknowledged* must survive). The fault injector journals each fault with its time.
Afterwards:

- :func:`lost_acknowledged` compares the acknowledged feedback event ids with the event log's: an
  id acknowledged (``duplicate`` or not) but absent from the log is **lost**; it must be 0.
- :func:`recovery_seconds` measures, per fault, the seconds from its injection until answers are
  whole again: the first of ``streak`` consecutive searches, in issue order, that were OK and not
  degraded. ``None`` if that never happened before the next fault.
- :func:`failures_by_code` counts failed calls by status, per fault window and in all.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Call:
    """One call of the load client: when it was issued (``t``, seconds since the run's start),
    how long it took, and how it ended (``code``: a gRPC status name; ``degraded`` for searches)."""

    t: float
    rpc: str
    code: str
    latency_s: float
    degraded: bool = False
    missing: tuple[str, ...] = ()
    request_id: str = ""
    event_id: str = ""
    duplicate: bool = False


@dataclass(frozen=True)
class Fault:
    """One injected fault: its name, when it was injected and when the injector had finished it
    (e.g. a killed server restarted by the supervisor), and what the injector saw."""

    name: str
    t: float
    done_t: float
    detail: str = ""


class Journal:
    """Append-only JSON Lines journal; acknowledged feedback is ``fsync``ed before :meth:`call` returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("a", encoding="utf-8")

    def _write(self, doc: Mapping[str, Any], durable: bool) -> None:
        self._fh.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self._fh.flush()
        if durable:
            os.fsync(self._fh.fileno())

    def call(self, c: Call) -> None:
        self._write({"kind": "call", **asdict(c)}, durable=c.rpc == "Feedback" and c.code == "OK")

    def fault(self, f: Fault) -> None:
        self._write({"kind": "fault", **asdict(f)}, durable=True)

    def close(self) -> None:
        self._fh.close()


def read_journal(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Call], list[Fault]]:
    """Calls (sorted by issue time) and faults (by injection time) of one or more journals.

    A torn last line (the writer was killed mid-write) is ignored: it was never acknowledged to
    anyone, since a feedback counts only after its line is synced."""
    calls: list[Call] = []
    faults: list[Fault] = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = doc.pop("kind")
            if kind == "call":
                doc["missing"] = tuple(doc.get("missing", ()))
                calls.append(Call(**doc))
            elif kind == "fault":
                faults.append(Fault(**doc))
    return sorted(calls, key=lambda c: c.t), sorted(faults, key=lambda f: f.t)


def acknowledged_ids(calls: Iterable[Call]) -> set[str]:
    """Event ids of the feedback the server acknowledged (OK, new or duplicate)."""
    return {c.event_id for c in calls if c.rpc == "Feedback" and c.code == "OK"}


def lost_acknowledged(calls: Iterable[Call], stored: Iterable[str]) -> list[str]:
    """Acknowledged feedback event ids that the event log does not hold (sorted). Must be empty."""
    return sorted(acknowledged_ids(calls) - set(stored))


def recovery_seconds(calls: Sequence[Call], faults: Sequence[Fault], streak: int = 10) -> list[float | None]:
    """Per fault, seconds from its injection to the first of ``streak`` whole searches in a row.

    Only searches issued after the fault and before the next one count. A whole search is OK and not
    degraded. Searches of the window that are not whole break the streak."""
    if streak < 1:
        raise ValueError(f"`streak` must be >= 1, got {streak}")
    searches = [c for c in calls if c.rpc == "Search"]
    out: list[float | None] = []
    for i, f in enumerate(faults):
        end = faults[i + 1].t if i + 1 < len(faults) else float("inf")
        run_start: float | None = None
        run = 0
        found: float | None = None
        for c in searches:
            if c.t < f.t or c.t >= end:
                continue
            if c.code == "OK" and not c.degraded:
                if run == 0:
                    run_start = c.t
                run += 1
                if run >= streak:
                    found = (run_start or c.t) - f.t
                    break
            else:
                run = 0
        out.append(found)
    return out


@dataclass
class Window:
    """What happened to the calls issued during one fault's window (or the quiet baseline)."""

    name: str
    calls: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    degraded: int = 0
    missing: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0
    lost: int = 0


def windows(calls: Sequence[Call], faults: Sequence[Fault], lost: Iterable[str] = ()) -> list[Window]:
    """One :class:`Window` before the first fault (``baseline``) and one per fault, up to the next.

    A call belongs to the window in which it *ended* (``t + latency_s``): a search issued just before
    a replica was killed, and failed by the kill, is the fault's, not the baseline's. ``lost``: the
    acknowledged feedback ids missing from the log (:func:`lost_acknowledged`), counted per window."""
    missing_ids = set(lost)
    bounds = [("baseline", -float("inf"))] + [(f.name, f.t) for f in faults]
    out = [Window(name) for name, _ in bounds]
    starts = [t for _, t in bounds]
    for c in calls:
        end = c.t + c.latency_s
        i = max(j for j, t in enumerate(starts) if t <= end)
        w = out[i]
        w.calls += 1
        if c.code != "OK":
            w.failed[c.code] += 1
        elif c.rpc == "Feedback":
            w.acknowledged += 1
            w.lost += c.event_id in missing_ids
        elif c.degraded:
            w.degraded += 1
            w.missing.update(c.missing)
    return out


def failures_by_code(calls: Iterable[Call]) -> dict[str, dict[str, int]]:
    """``{rpc: {status: count}}`` of the calls that did not end OK."""
    out: dict[str, Counter[str]] = {}
    for c in calls:
        if c.code != "OK":
            out.setdefault(c.rpc, Counter())[c.code] += 1
    return {rpc: dict(sorted(cs.items())) for rpc, cs in sorted(out.items())}
