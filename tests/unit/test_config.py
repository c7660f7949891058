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
