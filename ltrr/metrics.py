r"""Every Prometheus metric ltrr exports, defined once, and the thin functions that record them.

The metrics are Ray Serve metrics (:mod:`ray.serve.metrics`: Counter, Gauge, Histogram), so Serve adds
the ``deployment``, ``replica`` and ``application`` tags, and Ray's metrics agent serves them on each
node's metrics endpoint (``ray start --metrics-export-port``). **Exported names** carry Ray's ``ray_``
namespace: ``ltrr_feedback_total`` is scraped as ``ray_ltrr_feedback_total``, a histogram
``ltrr_strategy_latency_ms`` as ``ray_ltrr_strategy_latency_ms_bucket`` / ``_sum`` / ``_count``
(:attr:`MetricSpec.exported`). Every counter's name ends in ``_total``, so Prometheus adds no second one.

====================================  =========  =====================  =================================
metric                                kind       tags                   recorded by
====================================  =========  =====================  =================================
``ltrr_strategy_latency_ms``          histogram  strategy               ingress, per call made
``ltrr_strategy_calls_total``         counter    strategy, outcome      ingress, per strategy per search
``ltrr_strategy_candidates``          histogram  strategy               ingress, per call answered (ok)
``ltrr_strategy_returned_total``      counter    strategy               ingress, candidates per call answered
``ltrr_policy_decisions_total``       counter    -                      ingress, per policy decision
``ltrr_policy_included_total``        counter    strategy               ingress, per strategy called
``ltrr_policy_explored_total``        counter    -                      ingress, per exploring decision
``ltrr_settled_recall``               gauge      window                 learner, every settle round
``ltrr_settlements_total``            counter    outcome                learner, per settlement
``ltrr_feedback_total``               counter    result                 ingress, per Feedback call
``ltrr_eventlog_write_ms``            histogram  op                     ingress (search, feedback),
                                                                        learner (settle)
``ltrr_policy_version``               gauge      algorithm              ingress, every policy sync
``ltrr_ranker_version``               gauge      -                      ingress (serving), trainer
                                                                        (published)
====================================  =========  =====================  =================================

**What the rates mean.**

* ``outcome`` is the call's status (:mod:`ltrr.fanout`): ``ok``, ``timeout``, ``error`` or ``skipped``
  (the plan gave the strategy no budget). Latency is observed for every call made (a timeout counts its
  full wait), candidates for every call that answered; all from the searches answered (one that fails,
  e.g. past the caller's deadline, records no call).
* *Inclusion rate* of strategy ``s``: ``included{s} / decisions``, the share of the policy's decisions
  that gave ``s`` a budget (:math:`\hat P(k_s > 0)`, the empirical counterpart of the logged
  ``inclusion`` probability). *Exploration rate*: ``explored / decisions``. A decision **explored** when
  the action it played differs from the greedy action on the posterior means,
  :math:`a \ne \arg\max_{a'} u(a' \mid \bar\theta, x) - c(a')` (what ``forward_inference`` would play):
  Thompson sampling's draw, LinUCB's optimism, the epsilon-uniform mixing and the propensity floor
  all count, whichever moved the action. (The propensity is no test: with the floor it is below 1 for
  every decision.) Forced plans (a caller named the strategies or budgets) are not the policy's and are
  not counted. The greedy action is computed when the search is recorded, after the fan-out, with the
  replica's parameters then: if a policy sync loaded newer ones in between (at most one sync per
  ``policy.sync_interval_s``), they are a few updates newer, which moves the greedy action only at a
  near tie (:func:`record_search`). Every decision is counted, so the inclusion rates are exact.
* *Settled recall* (``window`` = the last ``N`` settlements the learner applied, ``"100"`` and
  ``"1000"``): the share of settled searches whose outcome was a positive action on an entity in the
  union of that search's candidates (:func:`settlement_hit`). A click lands on a shown result, and
  every shown result is in the union, so in practice this is the share of searches settled positive:
  a lower bound of the true candidate recall, since a user who did not scroll to the wanted entity, or
  left, settles ``expired``. A positive action on an entity outside the union (a client reporting what
  the user found elsewhere) counts as a miss. Forced searches count too: they were served. The window
  lives in the learner's process and starts empty when it restarts.
* ``ltrr_strategy_returned_total{strategy}``: the candidates the calls that answered returned, exactly. Ray
  2.60 exports a histogram's ``_sum`` from its buckets' midpoints, not from the observed values
  (``OpenTelemetryMetricRecorder.record_histogram_aggregated_batch``): one call returning 30 candidates
  adds 37.5, the middle of the bucket 25-50, to ``ray_ltrr_strategy_candidates_sum``. So the mean
  candidates per call is ``returned_total / candidates_count``, not ``_sum / _count``. The latency
  histograms' ``_sum`` is as coarse: read their buckets' quantiles.
* ``ltrr_feedback_total{result}``: ``accepted`` (stored), ``duplicate`` (its ``event_id`` was stored
  already) or ``rejected`` (the caller got an error status: unauthenticated, invalid, unknown or expired
  request, deadline passed; nothing stored).
* ``ltrr_eventlog_write_ms{op}``: wall time of one write call (``search``: ``record_search``,
  ``feedback``: ``record_feedback``, ``settle``: one ``settle`` batch), including the wait for the
  write lock, whatever its outcome.
* ``ltrr_policy_version{algorithm}``: the parameter version each ingress replica decides with (the
  learner's update count, the number in ``policy_version``); ``ltrr_ranker_version``: the registry
  number of the ranker (``catboost-000003`` -> 3; 0 = the RRF fallback) that each ingress replica
  serves (``deployment="ingress"``) and that the trainer last published (``deployment="trainer"``).

**Gauges are re-set on every loop**, not only when they change: Ray's C++ metric recorder clears a
gauge's observations once it has exported them (every ``metrics_report_interval_ms``, 10 s), and the
metrics agent of Ray 2.60 drops a gauge series not refreshed for two intervals
(``ray._private.telemetry.open_telemetry_metric_recorder``). So the ingress sets both versions on every
policy sync, the trainer on every poll, the learner the recall on every settle round.

**Construction is lazy**: a metric is built on its first recording (importing this module imports no
Ray), so that it is built inside the replica and Serve's tags are set. Outside a Ray worker (no
``ray.init``, e.g. a unit test or ``ltrr bench`` in-process) Ray 2.60 records into the process's own
stats registry, which nothing exports: constructing and recording neither raise nor start Ray (checked
on this machine), so there is no guard. The recording functions check their tag values first and
raise :class:`ValueError` for an unknown one (Ray itself accepts any value, and a typo would become a
new series).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, cast

from ltrr.fanout import ERROR, OK, SKIPPED, TIMEOUT

if TYPE_CHECKING:
    from ltrr.bandit.base import Decision, Policy
    from ltrr.events import EventLog, FeedbackEvent, SearchEvent, Settlement
    from ltrr.fanout import CallReport

Kind = Literal["counter", "gauge", "histogram"]

#: Ray's Prometheus namespace: every application metric is exported as ``ray_<name>``.
EXPORT_PREFIX = "ray_"
OUTCOMES = (OK, TIMEOUT, ERROR, SKIPPED)
FEEDBACK_RESULTS = ("accepted", "duplicate", "rejected")
WRITE_OPS = ("search", "feedback", "settle")
SETTLEMENT_OUTCOMES = ("positive", "expired")
#: The settled-recall windows: the last N settlements.
RECALL_WINDOWS = (100, 1000)

#: Strategy calls, ms: from an in-process lookup (~1 ms) to a timed-out backend (seconds).
LATENCY_BOUNDARIES_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
#: Candidates returned by one call (the ladder is 10/25/50/100; 0 falls in the first bucket).
CANDIDATE_BOUNDARIES = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0)
#: Event-log writes, ms: a WAL commit (~0.1-1 ms) to a wait behind a settle batch or a checkpoint.
WRITE_BOUNDARIES_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (``ltrr_`` prefix), kind, description, tag keys and histogram boundaries."""

    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    @property
    def exported(self) -> tuple[str, ...]:
        """The series names a scrape of Ray's endpoint shows: ``ray_<name>``, and for a histogram its
        ``_bucket``, ``_sum`` and ``_count`` series."""
        base = EXPORT_PREFIX + self.name
        if self.kind == "histogram":
            return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
        return (base,)


def _specs(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {s.name: s for s in specs}


STRATEGY_LATENCY = "ltrr_strategy_latency_ms"
STRATEGY_CALLS = "ltrr_strategy_calls_total"
STRATEGY_CANDIDATES = "ltrr_strategy_candidates"
STRATEGY_RETURNED = "ltrr_strategy_returned_total"
POLICY_DECISIONS = "ltrr_policy_decisions_total"
POLICY_INCLUDED = "ltrr_policy_included_total"
POLICY_EXPLORED = "ltrr_policy_explored_total"
SETTLED_RECALL = "ltrr_settled_recall"
SETTLEMENTS = "ltrr_settlements_total"
FEEDBACK = "ltrr_feedback_total"
EVENTLOG_WRITE = "ltrr_eventlog_write_ms"
POLICY_VERSION = "ltrr_policy_version"
RANKER_VERSION = "ltrr_ranker_version"

#: Every metric ltrr exports (module docstring), by name.
METRICS: dict[str, MetricSpec] = _specs(
    MetricSpec(
        STRATEGY_LATENCY,
        "histogram",
        "Latency of one strategy call as the fan-out saw it, ms (a timeout counts its full wait).",
        ("strategy",),
        LATENCY_BOUNDARIES_MS,
    ),
    MetricSpec(
        STRATEGY_CALLS,
        "counter",
        "Strategy calls per search by outcome: ok, timeout, error, skipped (no budget in the plan).",
        ("strategy", "outcome"),
    ),
    MetricSpec(
        STRATEGY_CANDIDATES,
        "histogram",
        "Candidates returned by one strategy call that answered.",
        ("strategy",),
        CANDIDATE_BOUNDARIES,
    ),
    MetricSpec(
        STRATEGY_RETURNED,
        "counter",
        "Candidates returned by the strategy's calls that answered, exact (a histogram's _sum is bucket midpoints).",
        ("strategy",),
    ),
    MetricSpec(POLICY_DECISIONS, "counter", "Decisions the policy made (forced plans not counted)."),
    MetricSpec(
        POLICY_INCLUDED,
        "counter",
        "Policy decisions that gave the strategy a budget; / decisions = its inclusion rate.",
        ("strategy",),
    ),
    MetricSpec(
        POLICY_EXPLORED,
        "counter",
        "Policy decisions whose action differs from the greedy one on posterior means; / decisions = exploration.",
    ),
    MetricSpec(
        SETTLED_RECALL,
        "gauge",
        "Share of the last N settled searches settled by a positive action on an entity in their union.",
        ("window",),
    ),
    MetricSpec(SETTLEMENTS, "counter", "Searches settled by the learner, by outcome: positive, expired.", ("outcome",)),
    MetricSpec(FEEDBACK, "counter", "Feedback calls by result: accepted, duplicate, rejected.", ("result",)),
    MetricSpec(
        EVENTLOG_WRITE,
        "histogram",
        "Wall time of one event-log write call, ms, lock wait included: search, feedback, settle (a batch).",
        ("op",),
        WRITE_BOUNDARIES_MS,
    ),
    MetricSpec(
        POLICY_VERSION,
        "gauge",
        "Version (update count) of the policy parameters this replica decides with.",
        ("algorithm",),
    ),
    MetricSpec(
        RANKER_VERSION,
        "gauge",
        "Registry number of the ranker served (ingress) or last published (trainer); 0 = the RRF fallback.",
    ),
)

_lock = threading.Lock()
_built: dict[str, Any] = {}


def _construct(spec: MetricSpec) -> Any:
    """The Ray Serve metric of ``spec`` (imports Ray: only on a metric's first recording)."""
    from ray.serve import metrics as serve_metrics

    keys: Any = spec.tag_keys  # Ray annotates `tag_keys` as tuple[str] (one key); it takes any tuple
    if spec.kind == "counter":
        return serve_metrics.Counter(spec.name, description=spec.description, tag_keys=keys)
    if spec.kind == "gauge":
        return serve_metrics.Gauge(spec.name, description=spec.description, tag_keys=keys)
    return serve_metrics.Histogram(
        spec.name, description=spec.description, boundaries=list(spec.boundaries), tag_keys=keys
    )


def _metric(name: str) -> Any:
    m = _built.get(name)
    if m is None:
        with _lock:
            m = _built.get(name)
            if m is None:
                m = _built[name] = _construct(METRICS[name])
    return m


def _one_of(arg: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"`{arg}` must be one of {sorted(allowed)}, got {value!r}")
    return value


def _name(arg: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{arg}` must be a non-empty string, got {value!r}")
    return value


def _nonnegative(arg: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"`{arg}` must be a number >= 0, got {value!r}")
    return float(value)


# -- strategies and the policy (ingress) ---------------------------------------------------------------
def record_call(strategy: str, outcome: str, latency_ms: float, returned: int) -> None:
    """One strategy's part in one search: its outcome; its latency if it was called; its candidates if
    it answered."""
    tags = {"strategy": _name("strategy", strategy), "outcome": _one_of("outcome", outcome, OUTCOMES)}
    ms, n = _nonnegative("latency_ms", latency_ms), _nonnegative("returned", returned)
    _metric(STRATEGY_CALLS).inc(1, tags=tags)
    if outcome != SKIPPED:
        _metric(STRATEGY_LATENCY).observe(ms, tags={"strategy": strategy})
    if outcome == OK:
        _metric(STRATEGY_CANDIDATES).observe(n, tags={"strategy": strategy})
        if n > 0:
            _metric(STRATEGY_RETURNED).inc(n, tags={"strategy": strategy})


def explored(decision: Decision, policy: Policy) -> bool:
    """True when ``decision`` played another action than the greedy one on ``policy``'s posterior means,
    :math:`\\arg\\max_a u(a \\mid \\bar\\theta, x) - c(a)` (module docstring); False for a forced decision.
    ``policy`` must hold the parameters that decided."""
    if decision.forced:
        return False
    if decision.x is None:
        raise ValueError("`decision.x` must hold the context vector to tell whether it explored")
    return decision.action != policy.greedy(policy.hit_table(decision.x))


def record_decision(decision: Decision, did_explore: bool) -> None:
    """One policy decision: counted, each strategy it gave a budget counted, and counted as explored if
    ``did_explore``. A forced decision is not the policy's and records nothing."""
    if decision.forced:
        return
    included = [_name("strategy", s) for s, k in decision.budgets.items() if k > 0]
    _metric(POLICY_DECISIONS).inc(1)
    for s in included:
        _metric(POLICY_INCLUDED).inc(1, tags={"strategy": s})
    if did_explore:
        _metric(POLICY_EXPLORED).inc(1)


def record_search(calls: Iterable[CallReport], decision: Decision | None, policy: Policy) -> None:
    """A served search: each call (:func:`record_call`) and its decision (:func:`record_decision`), judged
    explored against ``policy``, the replica's policy as it is now (module docstring: normally the
    parameters that decided)."""
    for c in calls:
        record_call(c.strategy, c.status, c.latency_ms, c.returned)
    if decision is not None and not decision.forced:
        record_decision(decision, explored(decision, policy))


def record_feedback(result: str) -> None:
    """One Feedback call: ``accepted``, ``duplicate`` or ``rejected`` (module docstring)."""
    _metric(FEEDBACK).inc(1, tags={"result": _one_of("result", result, FEEDBACK_RESULTS)})


def record_policy_version(algorithm: str, version: int) -> None:
    """The parameter version this replica decides with (an info gauge: the value is the version)."""
    _metric(POLICY_VERSION).set(_nonnegative("version", version), tags={"algorithm": _name("algorithm", algorithm)})


def ranker_number(version: str) -> int:
    """The registry number of a ranker version (``catboost-000003`` -> 3); 0 for any other (RRF)."""
    from ltrr.ranking.registry import version_number

    try:
        return version_number(version)
    except ValueError:
        return 0


def record_ranker_version(version: str | None) -> None:
    """The ranker served or published, as its registry number (:func:`ranker_number`); None (nothing
    published yet) is 0."""
    _metric(RANKER_VERSION).set(0 if version is None else ranker_number(_name("version", version)))


# -- the event log ------------------------------------------------------------------------------------
def record_write(op: str, ms: float) -> None:
    """One event-log write call of ``op`` (``search``, ``feedback``, ``settle``) that took ``ms``."""
    _metric(EVENTLOG_WRITE).observe(_nonnegative("ms", ms), tags={"op": _one_of("op", op, WRITE_OPS)})


class _Timed:
    def __init__(self, op: str) -> None:
        self.op = _one_of("op", op, WRITE_OPS)

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        record_write(self.op, (time.perf_counter() - self.t0) * 1000.0)


def timed_write(op: str) -> _Timed:
    """``with timed_write("settle"): log.settle(...)`` records the block's wall time, raised or not."""
    return _Timed(op)


class TimedWrites:
    """An event log whose ``record_search``, ``record_feedback`` and ``settle`` are timed into
    ``ltrr_eventlog_write_ms``; every other attribute is the wrapped log's. :func:`timed_writes` builds it."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def record_search(self, event: SearchEvent, *, timeout_s: float | None = None) -> None:
        with timed_write("search"):
            self._log.record_search(event, timeout_s=timeout_s)

    def record_feedback(self, event: FeedbackEvent, *, timeout_s: float | None = None) -> bool:
        with timed_write("feedback"):
            return self._log.record_feedback(event, timeout_s=timeout_s)

    def settle(self, now_ts: float | None = None, *, limit: int = 10_000) -> list[Settlement]:
        with timed_write("settle"):
            return self._log.settle(now_ts, limit=limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def timed_writes(log: EventLog) -> EventLog:
    """``log`` with its writes timed (:class:`TimedWrites`), typed as the protocol it implements."""
    return cast("EventLog", TimedWrites(log))


# -- settlements and recall (learner) -----------------------------------------------------------------
def settlement_hit(settlement: Settlement, event: SearchEvent | None) -> bool:
    """True when ``settlement`` is positive and its entity is in the union of ``event``'s candidates (its
    shown list for a log without candidates). An expired settlement, or one whose search is gone, is a miss."""
    if settlement.outcome != "positive" or event is None:
        return False
    if event.candidates is None:
        return settlement.entity_id in event.shown
    return any(settlement.entity_id in ids for ids in event.candidates.values())


class RollingRecall:
    """The share of hits among the last ``N`` settlements, for each ``N`` in ``windows``."""

    def __init__(self, windows: Sequence[int] = RECALL_WINDOWS) -> None:
        if not windows or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in windows):
            raise ValueError(f"`windows` must be positive ints, got {list(windows)!r}")
        self._last = {int(w): deque[bool](maxlen=int(w)) for w in windows}
        self._hits = dict.fromkeys(self._last, 0)

    def add(self, hit: bool) -> None:
        for w, last in self._last.items():
            if len(last) == w:
                self._hits[w] -= last[0]
            last.append(bool(hit))
            self._hits[w] += bool(hit)

    def values(self) -> dict[int, float]:
        """``{N: hits / settlements}`` over the last ``N`` (fewer until ``N`` came); windows with none left out."""
        return {w: self._hits[w] / len(last) for w, last in self._last.items() if last}


def record_settlements(
    settlements: Sequence[Settlement],
    search: Callable[[str], SearchEvent | None],
    recall: RollingRecall,
) -> None:
    """Settlements the learner just made: counted by outcome, added to ``recall`` (:func:`settlement_hit`,
    reading a positive one's search with ``search(request_id)``), and the recall gauges set, even for an
    empty batch (module docstring: a gauge not re-set is dropped)."""
    for st in settlements:
        outcome = _one_of("outcome", st.outcome, SETTLEMENT_OUTCOMES)
        _metric(SETTLEMENTS).inc(1, tags={"outcome": outcome})
        recall.add(settlement_hit(st, search(st.request_id) if outcome == "positive" else None))
    record_recall(recall.values())


def record_recall(values: Mapping[int, float]) -> None:
    """Set ``ltrr_settled_recall{window}`` for each window (``{N: share}``)."""
    for w, share in values.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"`values` must be shares in [0, 1], got {share!r} for window {w}")
        _metric(SETTLED_RECALL).set(float(share), tags={"window": str(w)})


def exported_names() -> Iterator[str]:
    """Every series name a scrape shows for the metrics of :data:`METRICS`."""
    for spec in METRICS.values():
        yield from spec.exported
