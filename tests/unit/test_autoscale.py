"""The pure parts of ``make autoscale`` (ltrr.scaling, scripts/autoscale.py): the declarative config read back from
Serve's details and changed, the CPU budget, replica counts, the ramp's figures and the report."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from ltrr.errors import ConfigError
from ltrr.loadtest import CallRecord
from ltrr.scaling import (
    actor_options,
    answers_per_second,
    app_config,
    autoscaling_applied,
    cpu_need,
    deploy_config,
    first_time,
    fit_cpus,
    forced_strategies,
    level_at,
    parse_levels,
    parse_targets,
    ramp_steps,
    render_md,
    replica_counts,
    scaled_to,
    with_actor_cpus,
    with_autoscaling,
    with_replicas,
)

ROOT = Path(__file__).resolve().parents[2]

APP_CFG = {
    "name": "ltrr",
    "route_prefix": "/",
    "import_path": "deployments.app:build_app",
    "external_scaler_enabled": True,
    "args": {"ingress": {"deployment": {"num_replicas": 1, "num_cpus": 0.6}}},
    "deployments": [{"name": "learner", "ray_actor_options": {"num_cpus": 0.1}}],
}


def replica(state: str, i: int = 0) -> dict:
    return {"replica_id": f"r{i}", "state": state, "node_id": "n1", "actor_name": f"SERVE_REPLICA::ltrr#x#r{i}"}


def dep(target: int, states: list[str], cpus: float, autoscaling: dict | None = None) -> dict:
    cfg: dict = {"name": "x", "ray_actor_options": {"num_cpus": cpus, "runtime_env": {}}}
    if autoscaling:
        cfg["autoscaling_config"] = autoscaling
    return {
        "status": "HEALTHY",
        "target_num_replicas": target,
        "required_resources": {"CPU": cpus},
        "deployment_config": cfg,
        "replicas": [replica(s, i) for i, s in enumerate(states)],
    }


def details() -> dict:
    """Serve's details as ``GET /api/serve/applications/`` returns them (the keys this code reads, and some it must
    leave out of a PUT)."""
    return {
        "controller_info": {"node_id": "n1"},
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "grpc_options": {"port": 9000, "grpc_servicer_functions": ["a.b"]},
        "proxies": {"n1": {"status": "HEALTHY"}},
        "target_capacity": None,
        "restores_unset_config_options": True,
        "applications": {
            "ltrr": {
                "name": "ltrr",
                "status": "RUNNING",
                "deployed_app_config": copy.deepcopy(APP_CFG),
                "deployments": {
                    "ingress": dep(1, ["RUNNING"], 0.6),
                    "vector": dep(2, ["RUNNING", "STARTING"], 0.4),
                    "learner": dep(1, ["RUNNING"], 0.1),
                    "trainer": dep(1, ["RUNNING"], 0.1),
                },
            }
        },
    }


# -- the declarative config ------------------------------------------------------------------------------------
def test_deploy_config_is_what_was_deployed_and_serve_accepts_it():
    from ray.serve.schema import ServeDeploySchema

    cfg = deploy_config(details())
    assert cfg == {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "grpc_options": {"port": 9000, "grpc_servicer_functions": ["a.b"]},
        "applications": [APP_CFG],
    }
    ServeDeploySchema.model_validate(cfg)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(applications={}), "no Serve application is running (`make up` first)"),
        (
            lambda d: d["applications"]["ltrr"].update(deployed_app_config=None),
            "application 'ltrr' has no declarative config (deployed with serve.run, or being deleted); only an app "
            "deployed by `serve deploy` / the REST API can be changed through it",
        ),
    ],
)
def test_deploy_config_refuses_what_a_put_would_delete(change, message):
    d = details()
    change(d)
    with pytest.raises(ConfigError) as ei:
        deploy_config(d)
    assert str(ei.value) == message


def test_app_config_names_the_apps_there():
    with pytest.raises(ConfigError) as ei:
        app_config(deploy_config(details()), "other")
    assert str(ei.value) == "no application named 'other' in the config; running: ltrr"


def test_replicas_then_autoscaling_then_back_are_overrides_serve_accepts():
    """Changes go to the `deployments` overrides (merged by name, the learner's kept), never to `args`; the input is
    not changed; each result validates as Serve's ServeDeploySchema (an int `num_replicas` beside an
    `autoscaling_config` would not)."""
    from ray.serve.schema import ServeDeploySchema

    base = deploy_config(details())
    frozen = copy.deepcopy(base)
    two = with_replicas(base, {"vector": 2, "ingress": 2})
    assert base == frozen
    assert app_config(two)["args"] == APP_CFG["args"]
    assert app_config(two)["deployments"] == [
        {"name": "learner", "ray_actor_options": {"num_cpus": 0.1}},
        {"name": "vector", "num_replicas": 2},
        {"name": "ingress", "num_replicas": 2},
    ]
    auto = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4.0}
    scaled = with_autoscaling(two, {"vector": auto})
    assert app_config(scaled)["deployments"][1] == {
        "name": "vector",
        "num_replicas": "auto",
        "autoscaling_config": auto,
    }
    # Serve refuses its own autoscaler beside an external one (the dashboard's scale API): the flag goes off.
    assert app_config(two)["external_scaler_enabled"] is True
    assert app_config(scaled)["external_scaler_enabled"] is False
    back = with_replicas(scaled, {"vector": 1})
    assert app_config(back)["deployments"][1] == {"name": "vector", "num_replicas": 1}
    for cfg in (two, scaled, back):
        ServeDeploySchema.model_validate(cfg)
    bad = copy.deepcopy(scaled)
    app_config(bad)["deployments"][1]["num_replicas"] = 3
    with pytest.raises(ValueError, match="Manually setting num_replicas is not allowed"):
        ServeDeploySchema.model_validate(bad)
    app_config(bad)["deployments"][1]["num_replicas"] = "auto"
    app_config(bad)["external_scaler_enabled"] = True
    with pytest.raises(ValueError, match="external_scaler_enabled is set to True, but the following deployment"):
        ServeDeploySchema.model_validate(bad)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: with_replicas(c, {"vector": 0}), "`replicas['vector']` must be an int >= 1, got 0"),
        (lambda c: with_replicas(c, {"vector": True}), "`replicas['vector']` must be an int >= 1, got True"),
        (
            lambda c: with_autoscaling(c, {"vector": {"min_replicas": 3, "max_replicas": 2}}),
            "`vector.max_replicas` must be at least `min_replicas` (3), got 2",
        ),
    ],
)
def test_invalid_changes(call, message):
    with pytest.raises(ValueError) as ei:
        call(deploy_config(details()))
    assert str(ei.value) == message


def test_actor_cpus_keep_the_other_actor_options():
    d = details()
    cfg = with_actor_cpus(deploy_config(d), {"vector": 0.24}, actor_options(d))
    assert app_config(cfg)["deployments"][-1] == {
        "name": "vector",
        "ray_actor_options": {"num_cpus": 0.24, "runtime_env": {}},
    }


def test_forced_strategies_are_the_enabled_ones():
    assert forced_strategies({}) == ["lexical", "vector", "graph", "memory"]
    assert forced_strategies({"strategies": {"vector": {}, "graph": {"enabled": False}, "lexical": None}}) == [
        "lexical",
        "vector",
    ]


# -- replica counts --------------------------------------------------------------------------------------------
def test_replica_counts_and_scaled_to():
    counts = replica_counts(details())
    assert counts["vector"] == {"target": 2, "running": 1, "live": 2, "states": {"RUNNING": 1, "STARTING": 1}}
    assert counts["ingress"] == {"target": 1, "running": 1, "live": 1, "states": {"RUNNING": 1}}
    assert scaled_to(counts, {"ingress": 1})
    assert not scaled_to(counts, {"vector": 2})  # one still starting
    assert not scaled_to(counts, {"ingress": 1, "vector": 1})  # Serve's target is 2
    assert not scaled_to(counts, {"nope": 1})
    d = details()
    d["applications"]["ltrr"]["deployments"]["vector"]["replicas"][1]["state"] = "RUNNING"
    assert scaled_to(replica_counts(d), {"vector": 2, "ingress": 1})
    d["applications"]["ltrr"]["deployments"]["vector"]["replicas"].append(replica("STOPPING", 2))
    assert not scaled_to(replica_counts(d), {"vector": 2})  # a third one still stopping
    assert replica_counts(d, "other") == {}


def test_autoscaling_applied():
    d = details()
    assert not autoscaling_applied(d, ["vector"])
    d["applications"]["ltrr"]["deployments"]["vector"] = dep(1, ["RUNNING"], 0.4, {"max_replicas": 3})
    assert autoscaling_applied(d, ["vector"])
    assert not autoscaling_applied(d, ["vector", "ingress"])


# -- the CPU budget --------------------------------------------------------------------------------------------
PER = {"ingress": 0.6, "vector": 0.4, "learner": 0.1, "trainer": 0.1}
NOW = {"ingress": 1, "vector": 1, "learner": 1, "trainer": 1}


def test_fit_cpus_hand_computed():
    # The peak, 3 ingress and 3 vector replicas, needs 0.2 + 3 * 0.6 + 3 * 0.4 = 3.2 of 2 CPUs.
    assert cpu_need(PER, {**NOW, "ingress": 3, "vector": 3}) == 3.2
    # f = (2 - 0.2) / (3 * 0.6 + 3 * 0.4) = 0.6: ingress 0.36, vector 0.24 (3 * 0.36 + 3 * 0.24 + 0.2 = 2.0).
    assert fit_cpus(PER, NOW, {"ingress": 3, "vector": 3}, 2.0) == {"ingress": 0.36, "vector": 0.24}
    # 2 vector replicas: 0.2 + 0.6 + 2 * 0.4 = 1.6 <= 2, nothing to change.
    assert fit_cpus(PER, NOW, {"vector": 2}, 2.0) == {}
    # f = (2 - 0.2 - 0.6) / (3 * 0.4) = 1.0 exactly: fits as it is.
    assert fit_cpus(PER, NOW, {"vector": 3}, 2.0) == {}
    # f = (2 - 0.8) / (4 * 0.4) = 0.75: 0.3, rounded down to 0.01.
    assert fit_cpus(PER, NOW, {"vector": 4}, 2.0) == {"vector": 0.3}


@pytest.mark.parametrize(
    "peak, total, message",
    [
        (
            {"nope": 2},
            2.0,
            "`peak` names 'nope', which is not a deployment; deployments: ingress, vector, learner, trainer",
        ),
        ({"vector": 2}, 0.8, "the other deployments hold 0.8 of 0.8 CPUs: no room to scale vector"),
        ({"vector": 64}, 0.81, "vector would get < 0.01 CPU per replica to fit 0.81 CPUs"),
    ],
)
def test_fit_cpus_invalid(peak, total, message):
    with pytest.raises(ValueError) as ei:
        fit_cpus(PER, NOW, peak, total)
    assert str(ei.value) == message


# -- the ramp --------------------------------------------------------------------------------------------------
def test_parse_levels_and_targets():
    assert parse_levels("1,4,16,4,1") == [1, 4, 16, 4, 1]
    assert parse_targets("vector=4, ingress=16") == {"vector": 4.0, "ingress": 16.0}


@pytest.mark.parametrize(
    "fn, spec, message",
    [
        (parse_levels, "1,x", "`levels` must be comma-separated integers, got '1,x'"),
        (parse_levels, "", "`levels` must be one or more integers in [1, 256], got ''"),
        (parse_levels, "1,0", "`levels` must be one or more integers in [1, 256], got '1,0'"),
        (parse_levels, "257", "`levels` must be one or more integers in [1, 256], got '257'"),
        (parse_targets, "vector", "`targets` must be name=number pairs with numbers > 0, got 'vector'"),
        (parse_targets, "vector=0", "`targets` must be name=number pairs with numbers > 0, got 'vector=0'"),
        (parse_targets, "vector=x", "`targets` must be name=number pairs with numbers > 0, got 'vector=x'"),
        (parse_targets, "=4", "`targets` must be name=number pairs with numbers > 0, got '=4'"),
        (parse_targets, ",", "`targets` must name at least one deployment, got ','"),
    ],
)
def test_parse_invalid(fn, spec, message):
    with pytest.raises(ValueError) as ei:
        fn(spec)
    assert str(ei.value) == message


def test_level_at():
    levels = [1, 4, 16]
    assert [level_at(levels, 30.0, t) for t in (-0.1, 0.0, 29.99, 30.0, 89.9, 90.0)] == [None, 1, 1, 4, 16, None]


def rec(t: float, status: str = "OK", ms: float = 10.0) -> CallRecord:
    return CallRecord(t, ms, status)


def test_answers_per_second_counts_ok_answers_by_whole_second():
    records = [rec(0.1), rec(0.9), rec(1.0), rec(1.5, "UNAVAILABLE"), rec(2.99), rec(3.0), rec(-0.5)]
    assert answers_per_second(records, 3) == [2, 1, 1]


def test_ramp_steps_and_first_times():
    # Step 1 [0, 10): 2 OK (10, 30 ms) and 1 failure; step 2 [10, 20): 1 OK (20 ms).
    records = [rec(1.0, ms=10.0), rec(5.0, ms=30.0), rec(6.0, "DEADLINE_EXCEEDED"), rec(15.0, ms=20.0)]

    def sample(t: float, running: int, target: int) -> dict:
        return {"t": t, "replicas": {"vector": {"target": target, "running": running, "live": running, "states": {}}}}

    samples = [sample(0.0, 1, 1), sample(5.0, 1, 3), sample(9.0, 2, 3), sample(12.0, 3, 3), sample(19.0, 1, 1)]
    steps = ramp_steps([1, 4], 10.0, records, samples)
    assert steps[0] == {
        "step": 1,
        "callers": 1,
        "t0_s": 0.0,
        "t1_s": 10.0,
        "answers": 2,
        "answers_per_s": 0.2,
        "failed": 1,
        "p50_ms": 20.0,
        "p99_ms": 29.8,  # 10 + 0.99 * (30 - 10)
        "replicas": {"vector": {"max_target": 3, "max_running": 2, "end_running": 2}},
    }
    assert (steps[1]["answers"], steps[1]["failed"], steps[1]["replicas"]["vector"]) == (
        1,
        0,
        {"max_target": 3, "max_running": 3, "end_running": 1},
    )
    assert first_time(samples, "vector", "running", lambda x: x > 1) == 9.0
    assert first_time(samples, "vector", "running", lambda x: x <= 1, since=10.0) == 19.0
    assert first_time(samples, "ingress", "running", lambda x: x > 1) is None


def test_render_md():
    report = {
        "command": "scripts/autoscale.py",
        "date": "2026-01-01 00:00 UTC",
        "machine": "2 cores",
        "config": {
            "dashboard": "http://127.0.0.1:8265",
            "target": "127.0.0.1:9000",
            "app": "ltrr",
            "scale_timeout_s": 120.0,
            "autoscaling": {
                "vector": {
                    "min_replicas": 1,
                    "max_replicas": 3,
                    "target_ongoing_requests": 4.0,
                    "upscale_delay_s": 5.0,
                    "downscale_delay_s": 30.0,
                    "look_back_period_s": 15.0,
                }
            },
        },
        "cpu_fit": {"total_cpus": 2.0, "need_peak": 2.4, "per_replica": {"vector": 0.4}, "lowered": {"vector": 0.3}},
        "rest": {"deployments": ["vector"], "replicas": 2, "up_s": 4.2, "up_reached": True, "down_s": None,
                 "down_reached": False},
        "ramp": {
            "levels": [1, 4],
            "step_s": 10.0,
            "steps": [
                {"step": 1, "callers": 1, "answers_per_s": 0.2, "failed": 1, "p50_ms": 20.0, "p99_ms": 29.8,
                 "replicas": {"vector": {"max_target": 3, "max_running": 2, "end_running": 2}}},
            ],
            "first_upscale_s": {"vector": 9.0},
            "back_to_one_s": {"vector": None},
        },
        "restored": True,
        "timings_s": {"preflight": 1.0},
        "notes": ["a note"],
    }
    md = render_md(report)
    assert "lowered to vector 0.3 (from 0.4)" in md
    assert "| num_replicas 1 → 2 | vector | yes | 4.2 | 120.0 |" in md
    assert "| num_replicas 2 → 1 | vector | NO | – | 120.0 |" in md
    assert "| 1 | 1 | 0.2 | 1 | 20.0 | 29.8 | 2 / 2 | 3 |" in md
    assert "more than one replica RUNNING: vector 9.0; back to one after the peak: vector None" in md
    assert "Original config restored: **yes**" in md
    assert "- a note" in md
    bare = render_md({**report, "ramp": None, "rest": None, "restored": False})
    assert "## Replicas changed" not in bare and "## Autoscaling" not in bare
    assert "Original config restored: **NO**" in bare


# -- the script's options --------------------------------------------------------------------------------------
def load_script():
    spec = importlib.util.spec_from_file_location("autoscale_script", ROOT / "scripts" / "autoscale.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_defaults_build_the_autoscaling_configs():
    args = load_script().parse_args([])
    assert args.deployments == ["vector", "ingress"]
    assert args.ramp == [1, 4, 16, 4, 1]
    assert args.autoscaling["vector"] == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 4.0,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 30.0,
        "look_back_period_s": 15.0,
    }
    assert args.autoscaling["ingress"]["target_ongoing_requests"] == 16.0
    # Serve's own validation takes them as they are, with no warning (pytest turns warnings into errors).
    from ray.serve.config import AutoscalingConfig

    for a in args.autoscaling.values():
        AutoscalingConfig(**a)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--targets", "vector=4"], "--targets has no target_ongoing_requests for ingress"),
        (["--min-replicas", "4"], "--min-replicas must be in [1, --max-replicas=3], got 4"),
        (["--look-back-s", "10"], "--look-back-s must be > 10 (Serve's metrics interval), got 10"),
        (["--ramp", "1,0"], "`levels` must be one or more integers in [1, 256], got '1,0'"),
        (["--replicas", "1"], "--replicas must be at least 2, got 1"),
    ],
)
def test_script_invalid_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_script().parse_args(argv)
    assert capsys.readouterr().err.strip().endswith(message)
