"""Build the Serve application from one validated config.

``serve run deployments.app:build_app``, ``serve deploy deployments/serve_config.yaml``
and the KubeRay RayService all call :func:`build_app` with the ``args`` block.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.ingress import Ingress
from deployments.learner import PolicyLearner
from deployments.strategy import server_class
from deployments.trainer import RankerTrainer
from ltrr.config import AppConfig, DeploymentOptions


def _options(opts: DeploymentOptions) -> dict[str, Any]:
    """Serve's deployment options: ``num_replicas``, or, with ``autoscaling`` set, ``autoscaling_config`` and no
    ``num_replicas`` (Serve refuses both)."""
    scaling: dict[str, Any] = (
        {"autoscaling_config": opts.autoscaling.to_serve()} if opts.autoscaling else {"num_replicas": opts.num_replicas}
    )
    return {
        **scaling,
        "max_ongoing_requests": opts.max_ongoing_requests,
        "max_queued_requests": opts.max_queued_requests,
        "max_replicas_per_node": opts.max_replicas_per_node,
        "ray_actor_options": {"num_cpus": opts.num_cpus},
    }


def build_app(args: dict[str, Any]) -> Application:
    """Turn the app config (the Serve ``args``) into the bound application."""
    cfg = AppConfig.model_validate(args or {})
    plain = cfg.model_dump()
    handles = {}
    for name, spec in cfg.enabled().items():
        if spec.placement == "ingress":
            continue  # hosted by every ingress replica (deployments/ingress.py)
        cls = server_class(name)
        dep = serve.deployment(cls).options(  # type: ignore[attr-defined]
            name=f"{name}", **_options(spec.deployment)
        )
        handles[name] = dep.bind(name, plain)
    learner = serve.deployment(PolicyLearner).options(  # type: ignore[attr-defined]
        name="learner", **_options(cfg.learner)
    )
    ingress = serve.deployment(Ingress).options(  # type: ignore[attr-defined]
        name="ingress", **_options(cfg.ingress.deployment)
    )
    trainer = serve.deployment(RankerTrainer).options(  # type: ignore[attr-defined]
        name="trainer", **_options(cfg.trainer)
    )
    return ingress.bind(handles, learner.bind(plain), plain, trainer.bind(plain))
