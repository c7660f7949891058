"""ltrr.metrics: the metric definitions against the Grafana dashboard, tag validation, and what each
recording function records (into a fake backend: no Ray here, except one subprocess that shows recording
outside a Ray worker is harmless)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltrr import metrics
from ltrr.bandit import PolicyConfig, new_policy
from ltrr.events import FeedbackEvent, SearchEvent, Settlement
from ltrr.fanout import CallReport

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s" / "grafana-dashboard.json"
STRATEGIES = ["lexical", "vector", "graph", "memory"]
DS = "${DS_PROMETHEUS}"


# -- the definitions and the dashboard ------------------------------------------------------------------
def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # a collapsed row holds its panels
    return out


def _queries(dash: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


def _series(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\bray_ltrr_[a-z0-9_]+", e)}


def test_every_metric_is_on_the_dashboard_by_its_exported_name() -> None:
    queried = _series(_queries(_dashboard()))
    missing = [name for name, spec in metrics.METRICS.items() if not queried & set(spec.exported)]
    assert missing == []
    # the histograms' quantile panels read the buckets
    for name in (metrics.STRATEGY_LATENCY, metrics.EVENTLOG_WRITE, metrics.STRATEGY_CANDIDATES):
        assert f"ray_{name}_bucket" in queried
    # no mean from a histogram's _sum: Ray 2.60 exports it from bucket midpoints (ltrr.metrics' docstring)
    assert not {s for s in queried if s.endswith("_sum")}


def test_every_ltrr_series_the_dashboard_queries_is_defined() -> None:
    exprs = _queries(_dashboard())
    assert _series(exprs) <= set(metrics.exported_names())
    # no series queried under its unexported name (Ray adds the ray_ prefix)
    assert [e for e in exprs if re.search(r"(?<!ray_)\bltrr_[a-z]", e)] == []


def test_the_dashboard_reads_one_prometheus_datasource_variable() -> None:
    dash = _dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    (var,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert (var["name"], var["query"]) == ("DS_PROMETHEUS", "prometheus")
    panels = _panels(dash)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    graphs = [p for p in panels if p["type"] != "row"]
    assert graphs and all(p["datasource"] == {"type": "prometheus", "uid": DS} for p in graphs)
    assert all(t["datasource"]["uid"] == DS for p in graphs for t in p["targets"])


def test_the_specs_follow_the_naming_rules() -> None:
    for name, spec in metrics.METRICS.items():
        assert name == spec.name and name.startswith("ltrr_") and spec.description
        assert spec.name.endswith("_total") == (spec.kind == "counter"), name
        if spec.kind == "histogram":
            b = list(spec.boundaries)
            assert b and b == sorted(b) and b[0] > 0 and len(set(b)) == len(b), name
        else:
            assert spec.boundaries == (), name
    assert metrics.METRICS[metrics.STRATEGY_LATENCY].exported == (
        "ray_ltrr_strategy_latency_ms_bucket",
        "ray_ltrr_strategy_latency_ms_sum",
        "ray_ltrr_strategy_latency_ms_count",
    )
    assert metrics.METRICS[metrics.FEEDBACK].exported == ("ray_ltrr_feedback_total",)


# -- a fake backend -------------------------------------------------------------------------------------
class FakeMetric:
    def __init__(self, spec: metrics.MetricSpec, log: list[tuple[str, str, float, dict[str, str]]]) -> None:
        self.spec, self.log = spec, log

    def _rec(self, method: str, value: float, tags: dict[str, str] | None) -> None:
        tags = dict(tags or {})
        assert set(tags) == set(self.spec.tag_keys), (self.spec.name, tags)
        self.log.append((self.spec.name, method, value, tags))

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        assert self.spec.kind == "counter"
        self._rec("inc", value, tags)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert self.spec.kind == "gauge"
        self._rec("set", value, tags)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert self.spec.kind == "histogram"
        self._rec("observe", value, tags)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, float, dict[str, str]]]:
    log: list[tuple[str, str, float, dict[str, str]]] = []
    monkeypatch.setattr(metrics, "_built", {})
    monkeypatch.setattr(metrics, "_construct", lambda spec: FakeMetric(spec, log))
    return log


# -- invalid input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: metrics.record_call("lexical", "oops", 1.0, 3),
            "`outcome` must be one of ['error', 'ok', 'skipped', 'timeout'], got 'oops'",
        ),
        (
            lambda: metrics.record_call("lexical", "OK", 1.0, 3),
            "`outcome` must be one of ['error', 'ok', 'skipped', 'timeout'], got 'OK'",
        ),
        (lambda: metrics.record_call("", "ok", 1.0, 3), "`strategy` must be a non-empty string, got ''"),
        (lambda: metrics.record_call("lexical", "ok", -0.5, 3), "`latency_ms` must be a number >= 0, got -0.5"),
        (lambda: metrics.record_call("lexical", "ok", float("nan"), 3), "`latency_ms` must be a number >= 0, got nan"),
        (lambda: metrics.record_call("lexical", "ok", 1.0, -1), "`returned` must be a number >= 0, got -1"),
        (
            lambda: metrics.record_feedback("lost"),
            "`result` must be one of ['accepted', 'duplicate', 'rejected'], got 'lost'",
        ),
        (
            lambda: metrics.record_write("prune", 1.0),
            "`op` must be one of ['feedback', 'search', 'settle'], got 'prune'",
        ),
        (lambda: metrics.record_write("search", True), "`ms` must be a number >= 0, got True"),
        (lambda: metrics.timed_write("read"), "`op` must be one of ['feedback', 'search', 'settle'], got 'read'"),
        (lambda: metrics.record_policy_version("", 3), "`algorithm` must be a non-empty string, got ''"),
        (lambda: metrics.record_policy_version("linear_ts", -1), "`version` must be a number >= 0, got -1"),
        (lambda: metrics.record_ranker_version(""), "`version` must be a non-empty string, got ''"),
        (lambda: metrics.record_recall({100: 1.5}), "`values` must be shares in [0, 1], got 1.5 for window 100"),
        (lambda: metrics.RollingRecall([100, 0]), "`windows` must be positive ints, got [100, 0]"),
        (lambda: metrics.RollingRecall([]), "`windows` must be positive ints, got []"),
    ],
)
def test_invalid_tags_and_values_raise_and_record_nothing(call: Any, message: str, recorded: list[Any]) -> None:
    with pytest.raises(ValueError) as ei:
        call()
    assert str(ei.value) == message
    assert recorded == []


# -- what is recorded -----------------------------------------------------------------------------------
def test_a_call_records_its_outcome_and_latency_if_made_and_candidates_if_answered(recorded: list[Any]) -> None:
    metrics.record_call("lexical", "ok", 12.5, 25)
    metrics.record_call("vector", "timeout", 3000.0, 0)
    metrics.record_call("graph", "skipped", 0.0, 0)
    metrics.record_call("memory", "ok", 1.0, 0)  # answered empty: observed, but a counter takes no 0
    assert recorded == [
        ("ltrr_strategy_calls_total", "inc", 1, {"strategy": "lexical", "outcome": "ok"}),
        ("ltrr_strategy_latency_ms", "observe", 12.5, {"strategy": "lexical"}),
        ("ltrr_strategy_candidates", "observe", 25.0, {"strategy": "lexical"}),
        ("ltrr_strategy_returned_total", "inc", 25.0, {"strategy": "lexical"}),
        ("ltrr_strategy_calls_total", "inc", 1, {"strategy": "vector", "outcome": "timeout"}),
        ("ltrr_strategy_latency_ms", "observe", 3000.0, {"strategy": "vector"}),
        ("ltrr_strategy_calls_total", "inc", 1, {"strategy": "graph", "outcome": "skipped"}),
        ("ltrr_strategy_calls_total", "inc", 1, {"strategy": "memory", "outcome": "ok"}),
        ("ltrr_strategy_latency_ms", "observe", 1.0, {"strategy": "memory"}),
        ("ltrr_strategy_candidates", "observe", 0.0, {"strategy": "memory"}),
    ]


def _policy(algorithm: str = "linear_ts", seed: int = 0, **cfg: Any) -> Any:
    return new_policy(PolicyConfig(algorithm=algorithm, **cfg), STRATEGIES, 6, rng=np.random.default_rng(seed))


def test_explored_means_another_action_than_the_greedy_one_on_posterior_means() -> None:
    p = _policy()
    x = np.linspace(-0.5, 0.5, 6)
    greedy = p.greedy_decision(x)
    assert not metrics.explored(greedy, p)
    other = replace(greedy, action=1 if greedy.action != 1 else 2)
    assert metrics.explored(other, p)
    assert not metrics.explored(replace(other, forced=True), p), "a forced plan is not the policy's"
    with pytest.raises(ValueError, match=r"^`decision.x` must hold the context vector"):
        metrics.explored(replace(other, x=None), p)


def test_epsilon_greedy_explores_at_its_epsilon() -> None:
    # Epsilon-greedy plays the greedy action, except with probability eps a uniform one of the
    # L^S - 1 = 624 valid actions, which is the greedy one 1/624 of the time:
    # P(explored) = 0.2 * 623/624 = 0.19968; sd over 4000 decisions = sqrt(0.2 * 0.8 / 4000) = 0.0063.
    p = _policy("epsilon_greedy", seed=7, epsilon=0.2)
    rng = np.random.default_rng(11)
    rate = np.mean([metrics.explored(p.select(rng.uniform(-1, 1, 6)), p) for _ in range(4000)])
    assert abs(rate - 0.2 * 623 / 624) < 0.02


def test_a_decision_records_its_inclusions_and_exploration(recorded: list[Any]) -> None:
    d = _policy().greedy_decision(np.zeros(6))
    d = replace(d, budgets={"lexical": 10, "vector": 0, "graph": 25, "memory": 0})
    metrics.record_decision(d, True)
    metrics.record_decision(replace(d, forced=True), True)  # not the policy's: nothing
    metrics.record_decision(d, False)
    assert recorded == [
        ("ltrr_policy_decisions_total", "inc", 1, {}),
        ("ltrr_policy_included_total", "inc", 1, {"strategy": "lexical"}),
        ("ltrr_policy_included_total", "inc", 1, {"strategy": "graph"}),
        ("ltrr_policy_explored_total", "inc", 1, {}),
        ("ltrr_policy_decisions_total", "inc", 1, {}),
        ("ltrr_policy_included_total", "inc", 1, {"strategy": "lexical"}),
        ("ltrr_policy_included_total", "inc", 1, {"strategy": "graph"}),
    ]


def test_a_search_records_its_calls_then_its_decision_judged_against_the_policy(recorded: list[Any]) -> None:
    p = _policy()
    greedy = p.greedy_decision(np.zeros(6))
    explored = replace(greedy, action=1 if greedy.action != 1 else 2)
    calls = [CallReport("lexical", 10, 10, 3.0, "ok"), CallReport("vector", 0, 0, 0.0, "skipped", 0.4)]
    metrics.record_search(calls, explored, p)
    names = [r[0] for r in recorded]
    assert names[:5] == [
        "ltrr_strategy_calls_total",
        "ltrr_strategy_latency_ms",
        "ltrr_strategy_candidates",
        "ltrr_strategy_returned_total",
        "ltrr_strategy_calls_total",
    ]
    assert names[5] == "ltrr_policy_decisions_total" and names[-1] == "ltrr_policy_explored_total"
    recorded.clear()
    metrics.record_search([], greedy, p)
    assert ("ltrr_policy_decisions_total", "inc", 1, {}) in recorded
    assert ("ltrr_policy_explored_total", "inc", 1, {}) not in recorded, "the greedy decision did not explore"
    recorded.clear()
    metrics.record_search([], None, p)  # no decision (nothing to decide): no policy metric
    metrics.record_search([], replace(explored, forced=True), p)  # the caller's plan: not the policy's
    assert recorded == []


def test_feedback_versions_and_writes(recorded: list[Any]) -> None:
    metrics.record_feedback("duplicate")
    metrics.record_policy_version("linear_ts", 42)
    metrics.record_ranker_version("catboost-000003")
    metrics.record_ranker_version("rrf-c60")
    metrics.record_ranker_version(None)
    metrics.record_write("feedback", 0.75)
    assert recorded == [
        ("ltrr_feedback_total", "inc", 1, {"result": "duplicate"}),
        ("ltrr_policy_version", "set", 42.0, {"algorithm": "linear_ts"}),
        ("ltrr_ranker_version", "set", 3, {}),
        ("ltrr_ranker_version", "set", 0, {}),
        ("ltrr_ranker_version", "set", 0, {}),
        ("ltrr_eventlog_write_ms", "observe", 0.75, {"op": "feedback"}),
    ]


class FakeLog:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def record_search(self, event: SearchEvent, *, timeout_s: float | None = None) -> None:
        self.calls.append(f"search {event.request_id} {timeout_s}")

    def record_feedback(self, event: FeedbackEvent, *, timeout_s: float | None = None) -> bool:
        if event.event_id == "bad":
            raise RuntimeError("locked")
        self.calls.append(f"feedback {event.event_id}")
        return True

    def settle(self, now_ts: float | None = None, *, limit: int = 10_000) -> list[Settlement]:
        self.calls.append(f"settle {now_ts} {limit}")
        return []

    def counts(self) -> dict[str, int]:
        return {"searches": 7}


def test_timed_writes_time_each_write_raised_or_not_and_delegate_the_rest(recorded: list[Any]) -> None:
    inner = FakeLog()
    log = metrics.timed_writes(inner)  # type: ignore[arg-type]
    log.record_search(SearchEvent("r1", 0.0, "q", "", ()), timeout_s=2.0)
    assert log.record_feedback(FeedbackEvent("e1", "r1", "artist:1", "click", 1, 0.0)) is True
    with pytest.raises(RuntimeError, match="locked"):
        log.record_feedback(FeedbackEvent("bad", "r1", "artist:1", "click", 1, 0.0))
    assert log.settle(5.0, limit=3) == []
    assert log.counts() == {"searches": 7}
    assert inner.calls == ["search r1 2.0", "feedback e1", "settle 5.0 3"]
    assert [(r[0], r[3]["op"]) for r in recorded] == [
        ("ltrr_eventlog_write_ms", op) for op in ("search", "feedback", "feedback", "settle")
    ]
    assert all(r[2] >= 0.0 for r in recorded)


# -- settled recall -------------------------------------------------------------------------------------
def _event(candidates: dict[str, list[str]] | None, shown: tuple[str, ...] = ()) -> SearchEvent:
    return SearchEvent("r1", 0.0, "q", "", shown, candidates=candidates)


def _st(outcome: str, entity_id: str = "", rid: str = "r1") -> Settlement:
    return Settlement(1, rid, outcome, entity_id, "click" if entity_id else "", 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settlement, event, hit",
    [
        (_st("positive", "artist:2"), _event({"lexical": ["artist:1"], "vector": ["artist:2"]}), True),
        (_st("positive", "artist:9"), _event({"lexical": ["artist:1"], "vector": ["artist:2"]}), False),
        (_st("positive", "artist:2"), _event(None, shown=("artist:2",)), True),  # an old log: its shown list
        (_st("positive", "artist:2"), None, False),  # the search is gone
        (_st("expired"), _event({"lexical": ["artist:1"]}), False),
    ],
)
def test_a_settlement_hits_when_positive_on_an_entity_in_the_union(settlement: Any, event: Any, hit: bool) -> None:
    assert metrics.settlement_hit(settlement, event) is hit


def test_rolling_recall_over_the_last_n() -> None:
    r = metrics.RollingRecall((2, 4))
    assert r.values() == {}
    r.add(True)
    assert r.values() == {2: 1.0, 4: 1.0}
    for hit in (False, True, True, True):  # the sequence is T F T T T
        r.add(hit)
    # last 2: T T -> 1.0; last 4: F T T T -> 0.75
    assert r.values() == {2: 1.0, 4: 0.75}
    r.add(False)  # last 2: T F -> 0.5; last 4: T T T F -> 0.75
    assert r.values() == {2: 0.5, 4: 0.75}


def test_settlements_are_counted_and_set_the_recall_gauges(recorded: list[Any]) -> None:
    searches = {"a": _event({"lexical": ["artist:1"]}), "b": _event({"lexical": ["artist:1"]})}
    read: list[str] = []

    def search(rid: str) -> SearchEvent | None:
        read.append(rid)
        return searches.get(rid)

    recall = metrics.RollingRecall((2, 100))
    batch = [_st("positive", "artist:1", "a"), _st("expired", rid="c"), _st("positive", "artist:5", "b")]
    metrics.record_settlements(batch, search, recall)
    assert read == ["a", "b"], "only a positive settlement's search is read"
    # hits T F F: last 2 -> 0.0, last 100 -> 1/3
    assert recorded == [
        ("ltrr_settlements_total", "inc", 1, {"outcome": "positive"}),
        ("ltrr_settlements_total", "inc", 1, {"outcome": "expired"}),
        ("ltrr_settlements_total", "inc", 1, {"outcome": "positive"}),
        ("ltrr_settled_recall", "set", 0.0, {"window": "2"}),
        ("ltrr_settled_recall", "set", 1 / 3, {"window": "100"}),
    ]
    recorded.clear()
    metrics.record_settlements([], search, recall)  # a round with nothing settled re-sets the gauges
    assert recorded == [
        ("ltrr_settled_recall", "set", 0.0, {"window": "2"}),
        ("ltrr_settled_recall", "set", 1 / 3, {"window": "100"}),
    ]
    recorded.clear()
    metrics.record_settlements([], search, metrics.RollingRecall())
    assert recorded == [], "no settlement yet: no recall to report"


# -- laziness, and Ray outside a worker --------------------------------------------------------------------
def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_importing_the_module_imports_no_ray() -> None:
    assert _run("import sys, ltrr.metrics; print('ray' in sys.modules)") == "False"


def test_recording_without_a_ray_worker_neither_raises_nor_starts_ray() -> None:
    code = (
        "import warnings; warnings.simplefilter('ignore', DeprecationWarning)\n"
        "from ltrr import metrics\n"
        "metrics.record_feedback('accepted'); metrics.record_write('search', 1.5)\n"
        "metrics.record_policy_version('linear_ts', 3); metrics.record_call('lexical', 'ok', 2.0, 10)\n"
        "import ray; print(ray.is_initialized(), sorted(metrics._built))"
    )
    out = _run(code)
    assert out == (
        "False ['ltrr_eventlog_write_ms', 'ltrr_feedback_total', 'ltrr_policy_version', "
        "'ltrr_strategy_calls_total', 'ltrr_strategy_candidates', 'ltrr_strategy_latency_ms', "
        "'ltrr_strategy_returned_total']"
    )
