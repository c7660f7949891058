import re

import pytest
from pydantic import ValidationError

from ltrr import constants as C
from ltrr.appconfig_io import load_app_config
from ltrr.config import AppConfig
from ltrr.strategies.registry import STRATEGY_NAMES, config_class, make_config


def test_default_config_has_every_strategy():
    cfg = AppConfig()
    assert list(cfg.enabled()) == list(STRATEGY_NAMES) == ["lexical", "vector", "graph", "memory"]


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_registered_config_is_strict(name):
    cls = config_class(name)
    make_config(name, {})  # all defaults are valid
    with pytest.raises(ValidationError) as ei:
        cls.model_validate({"no_such_field": 1})
    assert "no_such_field" in str(ei.value)
    for field, info in cls.model_fields.items():
        assert info.description, f"{cls.__name__}.{field} has no description"


@pytest.mark.parametrize(
    "args, fragment",
    [
        ({"nope": 1}, "nope"),
        ({"strategies": {"bm25": {}}}, "strategies: unknown strategy 'bm25'; valid: lexical, vector, graph, memory"),
        ({"strategies": {"lexical": {"timeout_ms": 1}}}, "timeout_ms"),
        ({"strategies": {"lexical": {"config": {"urll": "x"}}}}, "strategies.lexical.config"),
        ({"strategies": {"lexical": {"enabled": False}}}, "at least one strategy must be enabled"),
        ({"ingress": {"deployment": {"num_replicas": 0}}}, "num_replicas"),
        ({"strategies": {"graph": {"placement": "sidecar"}}}, "strategies.graph.placement"),
    ],
)
def test_bad_config_names_the_field(args, fragment):
    with pytest.raises(ValidationError) as ei:
        AppConfig.model_validate(args)
    assert fragment in str(ei.value)


def test_repo_serve_config_validates(monkeypatch, tmp_path):
    monkeypatch.setenv("LTRR_HOME", str(tmp_path))
    cfg = load_app_config("deployments/serve_config.yaml")
    assert cfg.catalog_path == str(tmp_path / "var" / "catalog.sqlite")
    assert set(cfg.enabled()) == set(STRATEGY_NAMES)
    graph = cfg.strategy_config("graph")
    assert graph.catalog_path == cfg.catalog_path
    assert graph.cache_dir == str(tmp_path / "var" / "graph-cache")
    # Relative files of a strategy resolve against LTRR_HOME too, so Ray workers find them.
    assert cfg.strategy_config("vector").embedding_cache == str(tmp_path / "var" / "embeddings.sqlite")


@pytest.mark.parametrize(
    "args, loc, message",
    [
        (
            {"policy": {"ladder": [0, 10, 1001]}},
            ("policy", "ladder"),
            "Value error, `ladder` budgets must be at most 1000 (MAX_STRATEGY_K), got 1001",
        ),
        (
            {"policy": {"ladder": [0, 25, 10]}},
            ("policy", "ladder"),
            "Value error, `ladder` must be strictly increasing, got [0, 25, 10]",
        ),
        (
            {"strategies": {"graph": {"default_k": 1001}}},
            ("strategies", "graph", "default_k"),
            "Value error, `default_k` must be in [1, 1000] (MAX_STRATEGY_K), got 1001",
        ),
        (
            {"strategies": {"graph": {"default_k": 0}}},
            ("strategies", "graph", "default_k"),
            "Value error, `default_k` must be in [1, 1000] (MAX_STRATEGY_K), got 0",
        ),
    ],
)
def test_strategy_k_limit_in_config(args, loc, message):
    with pytest.raises(ValidationError) as ei:
        AppConfig.model_validate(args)
    (err,) = ei.value.errors()
    assert err["loc"] == loc
    assert err["msg"] == message


def test_ladder_may_reach_max_strategy_k():
    ladder = (0, 10, 200, C.MAX_STRATEGY_K)
    cfg = AppConfig.model_validate(
        {"policy": {"ladder": ladder}, "strategies": {n: {"default_k": 200} for n in STRATEGY_NAMES}}
    )
    assert cfg.policy.ladder == ladder


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ({"max_age_s": 3600.0}, "retention.max_age_s: must be at least feedback_window_s + policy.reward_window_s"),
        ({"min_searches": 100}, "retention.min_searches: must be at least ranking.max_searches (20000), got 100"),
    ],
)
def test_retention_keeps_what_the_learner_and_trainer_read(retention, message):
    from ltrr.config import AppConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        AppConfig.model_validate({"retention": retention})
    assert AppConfig.model_validate({"retention": {**retention, "enabled": False}}).retention.enabled is False


def test_max_replicas_per_node_is_validated_and_reaches_serve():
    """Unset it is None (no limit); outside Serve's [1, 100] it fails naming the field; set, `build_app` passes it to
    the deployment (what spreads the replicas of scripts/multinode.py over the two nodes)."""
    from deployments.app import build_app

    assert AppConfig().ingress.deployment.max_replicas_per_node is None
    for bad, message in ((0, "greater than or equal to 1"), (101, "less than or equal to 100")):
        with pytest.raises(ValidationError) as ei:
            AppConfig.model_validate({"strategies": {"vector": {"deployment": {"max_replicas_per_node": bad}}}})
        (err,) = ei.value.errors()
        assert err["loc"] == ("strategies", "vector", "deployment", "max_replicas_per_node")
        assert err["msg"] == f"Input should be {message}"
    app = build_app(
        {
            "ingress": {"deployment": {"num_replicas": 2, "max_replicas_per_node": 1}},
            "strategies": {"vector": {"deployment": {"max_replicas_per_node": 2}}},
        }
    )
    ingress = app._bound_deployment
    assert ingress._replica_config.max_replicas_per_node == 1
    assert ingress.init_args[0]["vector"]._bound_deployment._replica_config.max_replicas_per_node == 2
    assert ingress.init_args[1]._bound_deployment.name == "learner"
    assert ingress.init_args[1]._bound_deployment._replica_config.max_replicas_per_node is None


AUTO = {
    "min_replicas": 1,
    "max_replicas": 3,
    "target_ongoing_requests": 4,
    "upscale_delay_s": 5,
    "downscale_delay_s": 30,
}


@pytest.mark.parametrize(
    "deployment, loc, message",
    [
        (
            {"num_replicas": 2, "autoscaling": AUTO},
            ("strategies", "vector", "deployment", "autoscaling"),
            "Value error, `autoscaling` and `num_replicas` are exclusive: leave `num_replicas` at its default 1 "
            "(Serve scales between `min_replicas` and `max_replicas`), got num_replicas=2",
        ),
        (
            {"max_ongoing_requests": 8, "autoscaling": {**AUTO, "target_ongoing_requests": 16}},
            ("strategies", "vector", "deployment", "autoscaling"),
            "Value error, `autoscaling.target_ongoing_requests` must be at most `max_ongoing_requests` (8), got 16",
        ),
        (
            {"autoscaling": {**AUTO, "min_replicas": 3, "max_replicas": 2}},
            ("strategies", "vector", "deployment", "autoscaling"),
            "Value error, `max_replicas` must be at least `min_replicas` (3), got 2",
        ),
        (
            {"autoscaling": {**AUTO, "initial_replicas": 4}},
            ("strategies", "vector", "deployment", "autoscaling"),
            "Value error, `initial_replicas` must be in [`min_replicas`, `max_replicas`] = [1, 3], got 4",
        ),
        (
            {"autoscaling": {**AUTO, "min_replicas": 0}},
            ("strategies", "vector", "deployment", "autoscaling", "min_replicas"),
            "Input should be greater than or equal to 1",
        ),
        (
            {"autoscaling": {**AUTO, "max_replicas": 65}},
            ("strategies", "vector", "deployment", "autoscaling", "max_replicas"),
            "Input should be less than or equal to 64",
        ),
        (
            {"autoscaling": {**AUTO, "target_ongoing_requests": 0}},
            ("strategies", "vector", "deployment", "autoscaling", "target_ongoing_requests"),
            "Input should be greater than 0",
        ),
        (
            {"autoscaling": {**AUTO, "upscale_delay_s": -1}},
            ("strategies", "vector", "deployment", "autoscaling", "upscale_delay_s"),
            "Input should be greater than or equal to 0",
        ),
        (
            {"autoscaling": {**AUTO, "downscale_delay_s": 3601}},
            ("strategies", "vector", "deployment", "autoscaling", "downscale_delay_s"),
            "Input should be less than or equal to 3600",
        ),
        (
            {"autoscaling": {**AUTO, "look_back_period_s": 10}},
            ("strategies", "vector", "deployment", "autoscaling", "look_back_period_s"),
            "Input should be greater than 10",
        ),
        (
            {"autoscaling": {**AUTO, "metrics_interval_s": 1}},
            ("strategies", "vector", "deployment", "autoscaling", "metrics_interval_s"),
            "Extra inputs are not permitted",
        ),
    ],
)
def test_autoscaling_invalid(deployment, loc, message):
    with pytest.raises(ValidationError) as ei:
        AppConfig.model_validate({"strategies": {"vector": {"deployment": deployment}}})
    (err,) = ei.value.errors()
    assert err["loc"] == loc
    assert err["msg"] == message


@pytest.mark.parametrize("name", ["learner", "trainer"])
def test_learner_and_trainer_never_autoscale(name):
    with pytest.raises(ValidationError) as ei:
        AppConfig.model_validate({name: {"autoscaling": AUTO}})
    (err,) = ei.value.errors()
    assert err["msg"] == f"Value error, {name}.autoscaling: must be unset (always one {name} replica)"


def test_autoscaling_valid_and_reaches_serve():
    """Unset it is None (a fixed `num_replicas`); set (with `num_replicas` left at 1, or written as 1), `build_app`
    gives Serve an `autoscaling_config` with exactly these values and no `num_replicas` of its own."""
    from deployments.app import _options, build_app

    assert AppConfig().ingress.deployment.autoscaling is None
    cfg = AppConfig.model_validate(
        {
            "ingress": {"deployment": {"autoscaling": {**AUTO, "target_ongoing_requests": 16}}},
            "strategies": {
                "vector": {"deployment": {"num_replicas": 1, "autoscaling": {**AUTO, "initial_replicas": 2}}}
            },
        }
    )
    vector = cfg.strategies["vector"].deployment
    assert vector.autoscaling is not None
    assert vector.autoscaling.to_serve() == {**AUTO, "initial_replicas": 2, "look_back_period_s": 30.0}
    opts = _options(vector)
    assert "num_replicas" not in opts
    assert opts["autoscaling_config"]["max_replicas"] == 3
    assert _options(cfg.learner)["num_replicas"] == 1 and "autoscaling_config" not in _options(cfg.learner)

    app = build_app(cfg.model_dump())
    ingress = app._bound_deployment
    ing = ingress._deployment_config.autoscaling_config
    assert (ing.min_replicas, ing.max_replicas, ing.target_ongoing_requests) == (1, 3, 16.0)
    assert (ing.upscale_delay_s, ing.downscale_delay_s, ing.initial_replicas) == (5.0, 30.0, None)
    vec = ingress.init_args[0]["vector"]._bound_deployment._deployment_config.autoscaling_config
    assert (vec.max_replicas, vec.target_ongoing_requests, vec.initial_replicas) == (3, 4.0, 2)
    assert ingress.init_args[1]._bound_deployment._deployment_config.autoscaling_config is None
    assert ingress.init_args[1]._bound_deployment._deployment_config.num_replicas == 1
