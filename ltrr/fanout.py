"""Parallel fan-out of one query to several strategies, each with its own deadline.

The fan-out is transport-agnostic: a *caller* is any ``async (query_dict, k) ->
list[Candidate]`` (candidate dicts are accepted too). The Serve ingress passes callers that go through
DeploymentHandles; the in-process benchmark passes callers that run the
strategies in threads; unit tests pass fakes that sleep or raise.

A strategy that times out or raises is reported (``timeout`` / ``error``) and
contributes no candidates; the others still answer. Nothing here raises
because one strategy failed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

from ltrr.errors import BackendTimeout
from ltrr.types import Candidate, Query

Caller = Callable[[dict[str, Any], int], Awaitable[Sequence[Candidate | dict[str, Any]]]]

OK, TIMEOUT, ERROR, SKIPPED = "ok", "timeout", "error", "skipped"


@dataclass(frozen=True)
class CallReport:
    """What happened to one strategy call."""

    strategy: str
    requested: int
    returned: int
    latency_ms: float
    status: str
    propensity: float = 1.0
    detail: str = ""


class Fanout:
    """Call the planned strategies concurrently and collect candidates and reports."""

    def __init__(self, callers: Mapping[str, Caller], timeouts_s: Mapping[str, float]) -> None:
        missing = set(callers) - set(timeouts_s)
        if missing:
            raise ValueError(f"`timeouts_s` lacks a deadline for {sorted(missing)}")
        self.callers = dict(callers)
        self.timeouts_s = dict(timeouts_s)

    async def _call(self, name: str, query: dict[str, Any], k: int) -> tuple[list[Candidate], CallReport]:
        t0 = time.perf_counter()
        try:
            raw = await asyncio.wait_for(self.callers[name](query, k), timeout=self.timeouts_s[name])
            cands = [c if isinstance(c, Candidate) else Candidate.from_dict(c) for c in raw[:k]]
            status, detail = OK, ""
        except (TimeoutError, BackendTimeout):
            cands, status = [], TIMEOUT
            detail = f"no answer within {self.timeouts_s[name] * 1000:.0f} ms"
        except Exception as exc:  # noqa: BLE001 - one failing strategy must not fail the search
            cands, status, detail = [], ERROR, _short(exc)
        ms = (time.perf_counter() - t0) * 1000.0
        return cands, CallReport(name, k, len(cands), ms, status, 1.0, detail)

    async def run(
        self, query: Query, plan: Mapping[str, int], propensities: Mapping[str, float] | None = None
    ) -> tuple[dict[str, list[Candidate]], list[CallReport]]:
        """Run ``plan`` (strategy -> k; k == 0 means skip) and report every known strategy."""
        qd = query.to_dict()
        called = [s for s in self.callers if plan.get(s, 0) > 0]
        outcomes = await asyncio.gather(*(self._call(s, qd, plan[s]) for s in called))
        results: dict[str, list[Candidate]] = {}
        reports: dict[str, CallReport] = {}
        props = propensities or {}
        for s, (cands, rep) in zip(called, outcomes, strict=True):
            results[s] = cands
            reports[s] = CallReport(
                rep.strategy, rep.requested, rep.returned, rep.latency_ms, rep.status, props.get(s, 1.0), rep.detail
            )
        ordered = [
            reports.get(s) or CallReport(s, 0, 0, 0.0, SKIPPED, props.get(s, 0.0), "not chosen for this query")
            for s in self.callers
        ]
        return results, ordered


def _short(exc: BaseException) -> str:
    """A one-line, traceback-free description of an error, safe to show a client."""
    # Ray wraps user errors (RayTaskError(...)); the original class name is what helps.
    name = type(exc).__name__
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        name, exc = type(cause).__name__, cause
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{name}: {msg}"[:200]
