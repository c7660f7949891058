"""Two Ray nodes on this machine, the worker's raylet killed under load (issue 12): ``scripts/multinode.py --short``.

The script brings up everything it needs itself: Meilisearch and Milvus (or uses the running ones), a private
PostgreSQL, its catalog slice and indexes under ``var/multinode``, and a head and a worker node started by
``ray start``. That cluster has a temp dir and ports of its own, and the script stops its processes only, never
``ray stop``: the session app's in-process Ray (tests/fixtures/app.py) and a ``make up`` of the developer are left
as they are. It takes the session's Meilisearch and Milvus (``--meili-url``, ``--milvus-uri``), because Milvus
2.3.5's embedded etcd binds 127.0.0.1:2379 and so runs once per machine. It runs last (``run_last``, and the
suite runs serially): the session app, idle by then, does not compete for the two cores while the figures are taken.

A fresh machine first builds the slice's indexes and cold-start ranker (a few minutes more); then the run takes
about 4 minutes. On a timeout the script gets SIGTERM, so its ``finally`` still stops what it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.run_last]
ROOT = Path(__file__).resolve().parents[2]
#: The first run on a fresh machine indexes the catalog slice and trains the cold-start ranker.
TIMEOUT_S = 1800.0


def run_short(out: Path, backends: list[str]) -> tuple[int, str]:
    """``scripts/multinode.py --short --out <out> <backends>``: its exit code and the last of its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("LTRR_TOKEN", "RAY_ADDRESS")}  # not the session app's
    log = out / "multinode.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "scripts/multinode.py", "--short", "--out", str(out), *backends],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the script's finally stops its cluster and servers
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            pytest.fail(f"scripts/multinode.py --short took over {TIMEOUT_S:g} s:\n{log.read_text()[-4000:]}")
    return rc, log.read_text()[-4000:]


def nodes_running(rows: list[dict], deployment: str) -> set[str]:
    """The node kinds on which ``deployment`` has a replica Serve reports RUNNING (a placement table)."""
    return {r["node"] for r in rows if r["deployment"] == deployment and r["serve_state"] == "RUNNING"}


def test_a_worker_lost_under_load_loses_no_acknowledged_feedback_and_replicas_spread_again(
    tmp_path, meili_server, milvus_server
):
    backends = ["--meili-url", meili_server.url, "--meili-key", meili_server.api_key, "--milvus-uri", milvus_server.uri]
    rc, tail = run_short(tmp_path, backends)
    assert (tmp_path / "report.json").exists(), tail
    report = json.loads((tmp_path / "report.json").read_text())
    assert "error" not in report, f"{report['error']}\n{tail}"
    assert rc == 0, tail
    assert report["event_log"] == "postgres"
    # Both nodes were alive, and each spread deployment (the ingress, vector) ran one replica on each.
    assert sorted((n["kind"], n["state"]) for n in report["nodes_before"]) == [("head", "ALIVE"), ("worker", "ALIVE")]
    spread = report["config"]["spread_deployments"]
    assert spread[0] == "ingress" and "vector" in spread
    for dep in spread:
        assert nodes_running(report["placement_before"], dep) == {"head", "worker"}, report["placement_before"]
    # The kill happened under load, and nothing acknowledged was lost.
    wl = report["worker_loss"]
    assert wl["raylet_pid"] > 0 and 0 < wl["kill_t_s"] < report["config"]["load_s"]
    assert wl["windows"][0]["calls"] > 0 and wl["windows"][1]["calls"] > 0  # load before and after the kill
    assert wl["feedback_acknowledged"] > 0
    assert wl["acknowledged_lost"] == 0, wl["lost_ids"]
    assert wl["searches_answered_not_logged"] == 0  # a search is logged before it is answered
    # Answers were whole again (10 in a row) within the load left after the kill.
    assert wl["whole_again_s"] is not None and wl["whole_again_s"] <= wl["window_s"], wl
    # After the worker's restart each spread deployment runs on both nodes again, the worker's being the new node.
    after = report["after_restart"]
    assert after["spread"] is True, report["notes"]
    for dep in spread:
        assert nodes_running(after["placement"], dep) == {"head", "worker"}, after["placement"]
        assert any(r["node_id"] == after["node_id"] for r in after["placement"] if r["deployment"] == dep), after[
            "placement"
        ]
    assert after["node_id"] != wl["node_id"]
    # Throughput was measured at both replica counts.
    assert report["throughput"]["2"]["answers"] > 0 and report["throughput"]["1"]["answers"] > 0
    assert (tmp_path / "report.md").exists() and (tmp_path / "multinode.png").exists()
