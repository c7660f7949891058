"""Ray's Prometheus endpoint of the running app shows every ltrr metric (ltrr/metrics.py) after traffic.

The session app's Ray node exports on ``ltrr_app.metrics_port`` (tests/fixtures/app.py). Replicas
report to the node's metrics agent every ``metrics_report_interval_ms`` (10 s by default), so the test
polls the endpoint, bounded by ``SCRAPE_TIMEOUT_S``, until every series is there with the counts this
test's own traffic guarantees (other tests of the session may only add to them).
"""

from __future__ import annotations

import re
import time
import urllib.request
import uuid

import grpc
import pytest

from ltrr import metrics
from ltrr.v1 import search_pb2 as pb

pytestmark = pytest.mark.integration
#: Several report intervals (10 s each) plus the trainer's first poll (10 s).
SCRAPE_TIMEOUT_S = 90.0
QUERIES = ["radiohead", "coldplay", "daft punk", "the beatles", "artists like muse", "metallica"]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(series name, labels, value) of every sample line of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def total(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (over replicas and other tags)."""
    return sum(v for n, lab, v in found if n == name and all(lab.get(k) == want for k, want in labels.items()))


def test_every_metric_is_on_rays_endpoint_after_searches_and_feedback(ltrr_app, client):
    assert ltrr_app.metrics_port, "the fixture starts Ray with a metrics export port"
    # Searches the policy decides (decisions, inclusions, exploration), each clicked at its top result:
    # accepted feedback that settles the search positive at once (the learner is woken by it). The policy of
    # the shared session app may route a query to a strategy another test left slow (a degraded, empty answer),
    # so each query is also searched with lexical forced, whose answer always holds the name, and clicked.
    clicked = 0
    lexical_returned = 0  # candidates the OK lexical calls of this test returned, as the answers say
    for q in QUERIES:
        for resp in (client.search(q, k=10), client.search(q, k=10, strategies=["lexical"])):
            lexical_returned += sum(
                s.candidates_returned
                for s in resp.strategies
                if s.strategy == "lexical" and s.status == pb.StrategyCall.OK
            )
            if not resp.results:
                assert resp.degraded, f"{q}: an empty answer must say what was missing"
                continue
            top = resp.results[0].entity_id
            event_id = uuid.uuid4().hex
            assert client.feedback(resp.request_id, top, "click", position=1, event_id=event_id).duplicate is False
            clicked += 1
    assert clicked >= len(QUERIES), "every forced lexical search answered"
    # A forced search (the policy's counters ignore it; its skipped strategy is counted as skipped).
    forced = client.search("radiohead", k=10, strategies=["lexical"])
    assert {s.strategy for s in forced.strategies if s.status == pb.StrategyCall.SKIPPED} == {
        "vector",
        "graph",
        "memory",
    }
    # A duplicate and a rejected feedback.
    event = uuid.uuid4().hex
    first = forced.results[0].entity_id
    assert client.feedback(forced.request_id, first, "click", position=1, event_id=event).duplicate is False
    assert client.feedback(forced.request_id, first, "click", position=1, event_id=event).duplicate is True
    with pytest.raises(grpc.RpcError) as ei:
        client.stub.Feedback(
            pb.FeedbackRequest(request_id="nope", event_id=uuid.uuid4().hex, entity_id=first, action="click"),
            timeout=10,
            metadata=client.metadata(10),
        )
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND

    wanted = sorted(metrics.exported_names())
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        text = scrape(ltrr_app.metrics_port)
        found = samples(text)
        names = {n for n, _, _ in found}
        missing = [n for n in wanted if n not in names]
        counts = {
            "accepted": total(found, "ray_ltrr_feedback_total", result="accepted") >= clicked + 1,
            "duplicate": total(found, "ray_ltrr_feedback_total", result="duplicate") >= 1,
            "rejected": total(found, "ray_ltrr_feedback_total", result="rejected") >= 1,
            "decisions": total(found, "ray_ltrr_policy_decisions_total") >= len(QUERIES),
            "skipped": total(found, "ray_ltrr_strategy_calls_total", strategy="vector", outcome="skipped") >= 1,
            "positive": total(found, "ray_ltrr_settlements_total", outcome="positive") >= 1,
            "search writes": total(found, "ray_ltrr_eventlog_write_ms_count", op="search") >= 2 * len(QUERIES) + 1,
            "settle writes": total(found, "ray_ltrr_eventlog_write_ms_count", op="settle") >= 1,
            "returned": total(found, "ray_ltrr_strategy_returned_total", strategy="lexical") >= lexical_returned,
        }
        short = [k for k, ok in counts.items() if not ok]
        if (not missing and not short) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    ltrr_lines = "\n".join(line for line in text.splitlines() if "ltrr_" in line)[:4000]
    assert missing == [], f"not exported after {SCRAPE_TIMEOUT_S:.0f} s; ltrr lines:\n{ltrr_lines}"
    assert short == [], f"counts short after {SCRAPE_TIMEOUT_S:.0f} s: {short}; ltrr lines:\n{ltrr_lines}"
    # Serve's tags come with every series, and the values are in range.
    accepted = [lab for n, lab, _ in found if n == "ray_ltrr_feedback_total" and lab.get("result") == "accepted"]
    assert all(lab.get("deployment") == "ingress" and lab.get("replica") for lab in accepted), accepted
    # The exact candidate counter holds whole numbers (a histogram's _sum is Ray's bucket midpoints).
    returned = [v for n, _, v in found if n == "ray_ltrr_strategy_returned_total"]
    assert returned and all(v == int(v) for v in returned), returned
    recall = [v for n, _, v in found if n == "ray_ltrr_settled_recall"]
    assert recall and all(0.0 <= v <= 1.0 for v in recall)
    assert {lab.get("window") for n, lab, _ in found if n == "ray_ltrr_settled_recall"} == {"100", "1000"}
    versions = [(lab.get("algorithm"), v) for n, lab, v in found if n == "ray_ltrr_policy_version"]
    assert versions and all(a == "linear_ts" and v >= 0 for a, v in versions)
    assert {lab.get("deployment") for n, lab, _ in found if n == "ray_ltrr_ranker_version"} == {"ingress", "trainer"}
