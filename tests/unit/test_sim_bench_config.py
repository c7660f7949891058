"""The Serve config of a regret run points all state at bench-only names and keeps the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ltrr.errors import ConfigError
from ltrr.sim.bench_config import app_args, bench_config

SERVE_CONFIG = Path(__file__).resolve().parents[2] / "deployments" / "serve_config.yaml"


def test_bench_config_moves_state_and_keeps_the_app() -> None:
    original = yaml.safe_load(SERVE_CONFIG.read_text())
    derived = bench_config(original, algorithm="linucb")
    args, before = app_args(derived), app_args(original)
    assert args["events_path"] == "var/bench-regret/events.sqlite"
    assert args["catalog_path"] == "var/bench-regret/catalog.sqlite"
    assert args["policy"]["checkpoint_dir"] == "var/bench-regret/policy"
    assert args["policy"]["algorithm"] == "linucb"
    assert args["strategies"]["memory"]["config"]["index"] == "ltrr_bench_queries"
    assert args["ranking"]["model_dir"] == "var/bench-regret/ranker"
    assert {k: v for k, v in args["ranking"].items() if k != "model_dir"} == {
        k: v for k, v in before["ranking"].items() if k != "model_dir"
    }
    changed = {"events_path", "catalog_path", "policy", "strategies", "ranking"}
    assert {k: v for k, v in args.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}
    assert args["strategies"]["lexical"] == before["strategies"]["lexical"]
    assert original == yaml.safe_load(SERVE_CONFIG.read_text())  # the input is not modified
    assert derived["grpc_options"] == original["grpc_options"]


def test_bench_config_rejects() -> None:
    with pytest.raises(ConfigError, match="has no application named 'ltrr'"):
        bench_config({"applications": [{"name": "other"}]})
    original = yaml.safe_load(SERVE_CONFIG.read_text())
    with pytest.raises(ConfigError) as err:
        bench_config(original, algorithm="nope")
    assert str(err.value) == (
        "bench config: policy.algorithm: Input should be 'linear_ts', 'linucb', 'epsilon_greedy' or 'uniform'"
    )
