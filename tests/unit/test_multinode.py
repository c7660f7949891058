"""The pure parts of the two-node run (ltrr.multinode): its Serve config, placement, process matching, figures."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ltrr.config import AppConfig
from ltrr.errors import ConfigError
from ltrr.multinode import (
    HEAD_RESOURCE,
    Proc,
    ancestors,
    by_kind,
    cluster_pids,
    derive_config,
    find_raylet,
    first_after,
    is_spread,
    loss_figures,
    node_kinds,
    parse_actor_name,
    parse_stat,
    placement_rows,
    read_procs,
    render_md,
    running_by_node,
    scale_config,
    spread_deployments,
    target_replicas,
)
from ltrr.reliability import Call, Fault

ROOT = Path(__file__).resolve().parents[2]
MEILI = {"url": "http://127.0.0.1:7700", "api_key": "k" * 16}


def small_serve_config() -> dict:
    """A Serve config like deployments/serve_config.yaml: vector has its own deployment, the rest are in the ingress."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "grpc_options": {
            "port": 9000,
            "grpc_servicer_functions": ["ltrr.grpc_servicer.add_SearchServiceServicer_to_server"],
        },
        "applications": [
            {
                "name": "ltrr",
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "args": {
                    "events_path": "var/events.sqlite",
                    "ingress": {"deployment": {"num_replicas": 1, "num_cpus": 0.6}},
                    "learner": {"num_replicas": 1, "num_cpus": 0.1},
                    "trainer": {"num_replicas": 1, "num_cpus": 0.1},
                    "strategies": {
                        "lexical": {"placement": "ingress", "config": MEILI},
                        "vector": {"deployment": {"num_replicas": 1, "num_cpus": 0.4}, "config": {"uri": "http://x:1"}},
                        "graph": {"placement": "ingress", "config": {"cache_dir": "var/graph-cache"}},
                        "memory": {"placement": "ingress", "config": MEILI},
                    },
                },
            }
        ],
    }


def _args(cfg: dict) -> dict:
    return cfg["applications"][0]["args"]


def test_derived_config_spreads_two_replicas_and_pins_the_singletons_to_the_head():
    src = small_serve_config()
    before = copy.deepcopy(src)
    out = derive_config(src, var_dir="var/mn", grpc_port=4242, http_port=4343)
    assert src == before  # the app's config is not changed
    args = _args(out)
    assert out["proxy_location"] == "HeadOnly"
    assert out["grpc_options"]["port"] == 4242 and out["http_options"] == {"host": "127.0.0.1", "port": 4343}
    assert out["grpc_options"]["grpc_servicer_functions"] == before["grpc_options"]["grpc_servicer_functions"]
    assert spread_deployments(args) == ["ingress", "vector"]
    assert args["ingress"]["deployment"] == {"num_replicas": 2, "max_replicas_per_node": 1, "num_cpus": 0.4}
    assert args["strategies"]["vector"]["deployment"] == {
        "num_replicas": 2,
        "max_replicas_per_node": 1,
        "num_cpus": 0.3,
    }
    assert "deployment" not in args["strategies"]["graph"]  # placement: ingress, unchanged
    # State of its own, its own index names, and no retraining during the run.
    assert (args["events_path"], args["catalog_path"]) == ("var/mn/events.sqlite", "var/mn/catalog.sqlite")
    assert args["policy"]["checkpoint_dir"] == "var/mn/policy" and args["ranking"]["model_dir"] == "var/mn/ranker"
    assert args["strategies"]["lexical"]["config"]["index"] == "ltrr_mn_entities"
    assert args["strategies"]["memory"]["config"]["index"] == "ltrr_mn_queries"
    assert args["strategies"]["vector"]["config"]["collection"] == "ltrr_mn_entities"
    assert args["strategies"]["graph"]["config"]["cache_dir"] == "var/mn/graph-cache"
    assert (args["ranking"]["retrain_after"], args["ranking"]["cold_start_queries"]) == (1_000_000, 300)
    assert out["applications"][0]["deployments"] == [
        {"name": "learner", "ray_actor_options": {"num_cpus": 0.1, "resources": {HEAD_RESOURCE: 0.01}}},
        {"name": "trainer", "ray_actor_options": {"num_cpus": 0.1, "resources": {HEAD_RESOURCE: 0.01}}},
    ]
    # Each node has 1 CPU: head = ingress 0.4 + vector 0.3 + learner 0.1 + trainer 0.1 = 0.9; worker = 0.7.
    cfg = AppConfig.model_validate(args)
    head = cfg.ingress.deployment.num_cpus + cfg.strategies["vector"].deployment.num_cpus
    assert head + cfg.learner.num_cpus + cfg.trainer.num_cpus == pytest.approx(0.9)
    assert head == pytest.approx(0.7)


def test_the_repo_config_derives_into_a_valid_serve_config_and_scaling_keeps_the_code_version():
    """Serve's own schema accepts the derived config, and the 1-replica config has the same code version (a hash of
    import path, runtime env and args), so Serve scales down without restarting a replica."""
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeDeploySchema

    src = yaml.safe_load((ROOT / "deployments" / "serve_config.yaml").read_text())
    two = derive_config(src, var_dir="var/mn", grpc_port=4242, http_port=4343)
    spread = spread_deployments(_args(two))
    one = scale_config(two, 1, spread)
    assert _args(one) == _args(two)
    overrides = {d["name"]: d for d in one["applications"][0]["deployments"]}
    assert {n: overrides[n]["num_replicas"] for n in spread} == {n: 1 for n in spread}
    assert "num_replicas" not in overrides["learner"]
    schemas = [ServeDeploySchema.model_validate(c) for c in (two, one)]
    assert schemas[0].proxy_location == "HeadOnly"
    v2, v1 = (get_app_code_version(s.applications[0]) for s in schemas)
    assert v1 == v2
    bumped = copy.deepcopy(one)
    _args(bumped)["ingress"]["deployment"]["num_replicas"] = 1  # what changing the args would do
    assert get_app_code_version(ServeDeploySchema.model_validate(bumped).applications[0]) != v2


def test_derive_config_names_what_is_wrong():
    with pytest.raises(ConfigError, match=r"^`serve_config` has no application named 'ltrr'$"):
        derive_config({"applications": [{"name": "other"}]}, var_dir="v", grpc_port=1, http_port=2)
    bad = small_serve_config()
    _args(bad)["learner"]["num_replicas"] = 2
    with pytest.raises(ConfigError) as ei:
        derive_config(bad, var_dir="v", grpc_port=1, http_port=2)
    assert str(ei.value) == (
        "bench config: : Value error, learner.num_replicas: must be 1 (one learner owns the parameters), got 2"
    )


NODES = [
    {"node_id": "H", "is_head_node": True, "resources_total": {"CPU": 1.0, "head_node": 1.0}},
    {"node_id": "W", "is_head_node": False, "resources_total": {"CPU": 1.0, "worker_node": 1.0}},
    {"node_id": "O", "is_head_node": False, "resources_total": {"CPU": 2.0}},
]
ACTORS = [
    {"name": "SERVE_REPLICA::ltrr#ingress#b2", "state": "ALIVE", "node_id": "W"},
    {"name": "SERVE_REPLICA::ltrr#ingress#a1", "state": "ALIVE", "node_id": "H"},
    {"name": "SERVE_PROXY_ACTOR-H", "state": "ALIVE", "node_id": "H"},
    {"name": "SERVE_REPLICA::ltrr#vector#c3", "state": "PENDING_CREATION", "node_id": ""},
    {"name": "SERVE_REPLICA::ltrr#vector#d4", "state": "DEAD", "node_id": "W"},
    {"name": "SERVE_CONTROLLER_ACTOR", "state": "ALIVE", "node_id": "H"},
    {"name": "SERVE_REPLICA::other#x#e5", "state": "ALIVE", "node_id": "H"},
    {"name": "", "state": "ALIVE", "node_id": "H"},
]
DETAILS = {
    "applications": {
        "ltrr": {
            "deployments": {
                "ingress": {
                    "target_num_replicas": 2,
                    "replicas": [
                        {
                            "replica_id": "a1",
                            "state": "RUNNING",
                            "node_id": "H",
                            "actor_name": "SERVE_REPLICA::ltrr#ingress#a1",
                        },
                        {
                            "replica_id": "b2",
                            "state": "RUNNING",
                            "node_id": "W",
                            "actor_name": "SERVE_REPLICA::ltrr#ingress#b2",
                        },
                    ],
                },
                "vector": {
                    "target_num_replicas": 2,
                    "replicas": [
                        {
                            "replica_id": "c3",
                            "state": "STARTING",
                            "node_id": None,
                            "actor_name": "SERVE_REPLICA::ltrr#vector#c3",
                        },
                    ],
                },
            }
        }
    }
}


def test_placement_from_the_state_api_and_serve():
    kinds = node_kinds(NODES)
    assert kinds == {"H": "head", "W": "worker", "O": "other"}
    assert parse_actor_name("SERVE_REPLICA::ltrr#vector#c3") == ("vector", "c3")
    assert parse_actor_name("SERVE_REPLICA::ltrr#vector") is None
    rows = placement_rows(ACTORS, DETAILS, kinds)
    assert [(r["deployment"], r["replica_id"], r["node"], r["actor_state"], r["serve_state"]) for r in rows] == [
        ("ingress", "a1", "head", "ALIVE", "RUNNING"),
        ("ingress", "b2", "worker", "ALIVE", "RUNNING"),
        ("vector", "c3", "pending", "PENDING_CREATION", "STARTING"),
        ("(controller)", "", "head", "ALIVE", ""),
        ("(proxy)", "", "head", "ALIVE", ""),
    ]
    running = running_by_node(DETAILS)
    assert running == {"ingress": {"H": 1, "W": 1}}  # STARTING is not RUNNING
    assert by_kind(running, kinds) == {"ingress": {"head": 1, "worker": 1}}
    assert is_spread(running, ["ingress"], "H", "W") is True
    assert is_spread(running, ["ingress", "vector"], "H", "W") is False
    assert target_replicas(DETAILS) == {"ingress": 2, "vector": 2}


def test_first_after_is_the_first_sample_at_or_after_the_event():
    samples = [{"t": 1.0, "x": 0}, {"t": 2.5, "x": 1}, {"t": 4.0, "x": 1}]
    assert first_after(samples, 2.0, lambda s: s["x"] == 1) == 0.5
    assert first_after(samples, 1.0, lambda s: s["x"] == 0) == 0.0
    assert first_after(samples, 4.5, lambda s: True) is None


def _stat(pid: int, comm: str, ppid: int, start: int, state: str = "S") -> str:
    # state, ppid, then 17 fields up to starttime (the 22nd field of the line)
    return f"{pid} ({comm}) {state} {ppid} " + " ".join(["0"] * 17) + f" {start} 1000 200\n"


def test_parse_stat_counts_fields_after_the_last_parenthesis():
    assert parse_stat(_stat(7, "ray::Serve (x) y", 45, 98765)) == (45, 98765)


def test_read_procs_reads_a_proc_tree(tmp_path):
    for pid, comm, ppid, argv in (
        (123, "raylet", 1, b"/x/raylet\0--node_id=W\0"),
        (124, "ray::IDLE", 123, b"ray::IDLE\0\0\0"),
    ):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text(_stat(pid, comm, ppid, 500 + pid))
        (d / "cmdline").write_bytes(argv)
    (tmp_path / "self").mkdir()  # not a pid
    (tmp_path / "999").mkdir()  # exited while read: no files
    assert read_procs(tmp_path) == {
        123: Proc(123, 1, 623, ("/x/raylet", "--node_id=W")),
        124: Proc(124, 123, 624, ("ray::IDLE",)),
    }


def _procs() -> dict[int, Proc]:
    tmp = "/tmp/ltrr-mn-x"
    rows = [
        (1, 0, ["/sbin/init"]),
        (100, 1, ["python", "-m", "pytest"]),
        (101, 100, ["python", "scripts/multinode.py", f"--log={tmp}/mine"]),  # this process: never its own target
        (150, 1, ["python", "dashboard/agent.py", "--node_id=HEAD", f"--session-dir={tmp}/session_1"]),
        (200, 1, ["/venv/ray/core/src/ray/gcs/gcs_server", f"--log_dir={tmp}/session_1/logs"]),
        (201, 1, ["/venv/ray/core/src/ray/raylet/raylet", "--node_id=HEAD", "--gcs-address=127.0.0.1:6379"]),
        (202, 201, ["ray::ServeReplica:ltrr:ingress"]),
        (203, 202, ["some-child"]),
        (300, 1, ["python", "-m", "ray.util.client.server", "--address=127.0.0.1:6379"]),
        (400, 1, ["/other/raylet", "--node_id=OTHER", "--gcs-address=127.0.0.1:16379", "--temp_dir=/tmp/ray"]),
        (401, 400, ["ray::IDLE"]),
        (500, 1, ["redis-cli", "-h", "127.0.0.1:63790"]),
    ]
    return {pid: Proc(pid, ppid, 10 * pid, tuple(argv)) for pid, ppid, argv in rows}


def test_the_clusters_processes_are_its_own_and_their_descendants_only():
    procs = _procs()
    assert ancestors(procs, 101) == {101, 100, 1}
    mine = cluster_pids(
        procs, substrings=["/tmp/ltrr-mn-x", "HEAD"], arg_suffixes=["127.0.0.1:6379"], exclude=ancestors(procs, 101)
    )
    # gcs (temp dir), agent and raylet (node id), the raylet's worker and its child, the client server (GCS address);
    # not the other cluster on port 16379, nor a process naming port 63790, nor this process.
    assert mine == {150, 200, 201, 202, 203, 300}


def test_find_raylet_matches_the_raylet_executable_only():
    procs = _procs()
    assert find_raylet(procs, "HEAD") == 201  # the agent (pid 150) names the node id too
    assert find_raylet(procs, "OTHER") == 400
    assert find_raylet(procs, "NOPE") is None


def _s(t: float, rid: str, code: str = "OK", degraded: bool = False, missing: tuple[str, ...] = ()) -> Call:
    return Call(t=t, rpc="Search", code=code, latency_s=0.01, degraded=degraded, missing=missing, request_id=rid)


def _f(t: float, eid: str, code: str = "OK") -> Call:
    return Call(t=t, rpc="Feedback", code=code, latency_s=0.01, request_id="r1", event_id=eid)


def test_loss_figures_from_a_hand_made_journal():
    whole = [_s(2.0 + i / 10, f"w{i}") for i in range(10)]
    calls = [
        _s(0.0, "r1"),
        _f(0.5, "e1"),
        _s(1.1, "", "UNAVAILABLE"),
        _s(1.2, "r3", degraded=True, missing=("vector",)),
    ]
    calls += whole + [_f(3.0, "e2"), _f(3.1, "e3", "UNAVAILABLE")]
    stored_searches = {"r1", "r3", *(f"w{i}" for i in range(9))}  # w9 answered but not logged
    got = loss_figures(calls, [Fault("worker-lost", 1.0, 1.0)], {"e1"}, stored_searches)
    # e2 was acknowledged and is not in the log; e3 was never acknowledged.
    assert (got["acknowledged_lost"], got["lost_ids"], got["feedback_acknowledged"]) == (1, ["e2"], 2)
    assert got["searches_answered_not_logged"] == 1
    assert (got["calls"], got["searches"], got["feedback_sent"]) == (16, 13, 3)
    assert got["failed_by_code"] == {"Feedback": {"UNAVAILABLE": 1}, "Search": {"UNAVAILABLE": 1}}
    base, kill = got["windows"]
    assert base == {
        "name": "baseline",
        "calls": 2,
        "failed": {},
        "degraded": 0,
        "degraded_missing": {},
        "acknowledged": 1,
        "lost": 0,
    }
    assert kill == {
        "name": "worker-lost",
        "calls": 14,
        "failed": {"UNAVAILABLE": 2},
        "degraded": 1,
        "degraded_missing": {"vector": 1},
        "acknowledged": 1,
        "lost": 1,
    }
    # The first of 10 whole searches in a row after the fault at t=1.0 was issued at t=2.0.
    assert got["whole_again_s"] == [1.0]


def test_render_md_states_the_figures():
    row = {
        "deployment": "ingress",
        "replica_id": "a1",
        "node": "head",
        "actor_state": "ALIVE",
        "serve_state": "RUNNING",
        "node_id": "H" * 40,
    }
    lat = {"n": 3, "p50": 12.5, "p90": 20.0, "p99": 30.0, "max": 31.0}
    tp = {
        "callers": 8,
        "seconds": 6.0,
        "answers": 300,
        "req_per_s": 50.0,
        "degraded": 0,
        "failed": 0,
        "latency_ms": lat,
    }
    report = {
        "command": "scripts/multinode.py --short",
        "date": "2026-01-01 00:00 UTC",
        "machine": "2 cores",
        "event_log": "postgres",
        "config": {
            "max_artists": 1500,
            "spread_deployments": ["ingress", "vector"],
            "qps": 10.0,
            "load_s": 40.0,
            "feedback": 0.3,
            "spread_timeout_s": 180.0,
        },
        "placement_before": [row],
        "spread_before": True,
        "throughput": {"2": tp, "1": {**tp, "req_per_s": 30.0}},
        "worker_loss": {
            "raylet_pid": 4242,
            "kill_t_s": 10.0,
            "window_s": 30.0,
            "windows": [],
            "feedback_sent": 90,
            "feedback_acknowledged": 88,
            "acknowledged_lost": 0,
            "searches_answered_not_logged": 0,
            "whole_again_s": 1.5,
            "node_dead_s": 4.0,
            "serve_dropped_s": 5.0,
            "replicas_back_s": 52.0,
        },
        "after_restart": {"restart_t_s": 45.0, "spread": True, "seconds": 20.0, "placement": [row]},
        "notes": ["a note"],
    }
    md = render_md(report)
    assert "event log: **postgres**" in md
    assert "| ingress | a1 | head | ALIVE | RUNNING | HHHHHHHHHHHH |" in md
    assert "| 1 | 8 | 6.0 | 300 | 30.0 | 0 | 0 | 12.5 | 30.0 |" in md
    assert "**0 acknowledged missing from the event log**" in md
    assert "answers whole again (10 in a row) **1.5**; Ray marked the node DEAD 4.0" in md
    assert "restarted 35.0 s after the kill" in md
    assert "Replicas on both nodes again: **yes**, 20.0 s after `ray start`" in md
    assert md.endswith("- a note\n")
