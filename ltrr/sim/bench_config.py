"""The Serve config of a regret run: the app's own config, with a fresh policy and its own state.

:func:`bench_config` copies a Serve config (``deployments/serve_config.yaml``) and points every
piece of state a run changes at bench-only names, so a run starts from a fresh policy and leaves
the user's data alone:

=============================== =====================================================================
``args.events_path``            ``<var_dir>/events.sqlite`` (searches, feedback, settlements)
``args.policy.checkpoint_dir``  ``<var_dir>/policy`` (no checkpoint: the policy starts from its prior)
``args.catalog_path``           ``<var_dir>/catalog.sqlite``, a copy of the catalog taken at the start
                                (profiles the app learns from the simulated users' clicks, and every
                                cursor kept in the catalog, stay in the copy)
``strategies.memory...index``   ``ltrr_bench_queries`` (the query memory the clicks teach; cold-started
                                from predicted queries exactly like a fresh deployment's, by
                                ``ltrr ingest --skip-catalog --only memory``)
``args.ranking.model_dir``      ``<var_dir>/ranker``, a copy of the app's model registry taken at the start
                                (the run ranks with the app's current model, the cold start of a fresh
                                deployment, and its trainer publishes what it learns from the simulated
                                clicks there, never into the app's registry)
``args.policy.algorithm``       the run's ``--algorithm``
=============================== =====================================================================

Everything else (strategies, costs, ladder, reward window, placement) is the app's. Pure: dict in,
dict out; the result is validated with :class:`ltrr.config.AppConfig`.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from pydantic import ValidationError

from ltrr.appconfig_io import APP_NAME
from ltrr.config import AppConfig
from ltrr.errors import ConfigError

BENCH_VAR_DIR = "var/bench-regret"
BENCH_MEMORY_INDEX = "ltrr_bench_queries"


def app_args(serve_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``args`` of the ltrr application in a Serve config (a copy)."""
    for app in serve_config.get("applications") or []:
        if app.get("name") == APP_NAME:
            return copy.deepcopy(dict(app.get("args") or {}))
    raise ConfigError(f"`serve_config` has no application named {APP_NAME!r}")


def bench_config(
    serve_config: Mapping[str, Any],
    *,
    var_dir: str = BENCH_VAR_DIR,
    algorithm: str | None = None,
    memory_index: str = BENCH_MEMORY_INDEX,
) -> dict[str, Any]:
    """The Serve config of a regret run (module docstring); raises :class:`ConfigError` naming the field."""
    out = copy.deepcopy(dict(serve_config))
    apps = out.get("applications") or []
    app = next((a for a in apps if a.get("name") == APP_NAME), None)
    if app is None:
        raise ConfigError(f"`serve_config` has no application named {APP_NAME!r}")
    args = app.setdefault("args", {})
    base = var_dir.rstrip("/")
    args["events_path"] = f"{base}/events.sqlite"
    args["catalog_path"] = f"{base}/catalog.sqlite"
    policy = args.setdefault("policy", {})
    policy["checkpoint_dir"] = f"{base}/policy"
    if algorithm is not None:
        policy["algorithm"] = algorithm
    args.setdefault("ranking", {})["model_dir"] = f"{base}/ranker"
    strategies = args.get("strategies") or {}
    if "memory" in strategies:
        strategies["memory"].setdefault("config", {})["index"] = memory_index
    check_app_args(args, "bench config")
    return out


def check_app_args(args: Mapping[str, Any], label: str) -> None:
    """Validate derived app ``args`` as :class:`AppConfig`; the first error becomes a
    :class:`~ltrr.errors.ConfigError` ``"<label>: <field path>: <message>"``."""
    try:
        AppConfig.model_validate(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{label}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
