"""One strict config for the whole application.

The same YAML drives ``serve run``, ``serve deploy``, the KubeRay RayService
and the ``ltrr ingest`` job: :func:`deployments.app.build_app` turns the
``args`` of a Serve config into the Serve application after validating them
here. Unknown keys are errors (``extra="forbid"``), and each strategy's own
``config`` block is validated by that strategy's strict config class, so a typo
fails at start-up with the field named.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ltrr import constants as C
from ltrr.auth import AuthConfig
from ltrr.bandit.config import PolicyConfig
from ltrr.ranking.config import RankingConfig
from ltrr.strategies.registry import STRATEGY_NAMES, config_class, make_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoscalingOptions(_Strict):
    """Serve's request-based autoscaling of one deployment (``autoscaling_config``, Ray 2.60).

    Every ``look_back_period_s`` window Serve averages the requests running and queued per replica and asks for
    ``ceil(total ongoing / target_ongoing_requests)`` replicas, clipped to [``min_replicas``, ``max_replicas``]; a
    decision to grow must hold for ``upscale_delay_s``, one to shrink for ``downscale_delay_s``, before it is
    applied. Replicas past what the cluster's logical CPUs hold wait, pending, for room."""

    min_replicas: int = Field(1, ge=1, le=64, description="Fewest replicas, in [1, 64] (never scaled to zero).")
    max_replicas: int = Field(2, ge=1, le=64, description="Most replicas, in [1, 64] and >= `min_replicas`.")
    initial_replicas: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Replicas started on the first deploy, in [`min_replicas`, `max_replicas`]; None: `min_replicas`.",
    )
    target_ongoing_requests: float = Field(
        2.0,
        gt=0.0,
        le=10_000.0,
        description="Requests running or queued per replica that Serve scales towards, > 0 and at most the "
        "deployment's `max_ongoing_requests` (Serve's default: 2).",
    )
    upscale_delay_s: float = Field(
        30.0, ge=0.0, le=3600.0, description="Seconds an upscale decision must hold before replicas are added."
    )
    downscale_delay_s: float = Field(
        600.0, ge=0.0, le=3600.0, description="Seconds a downscale decision must hold before replicas are removed."
    )
    look_back_period_s: float = Field(
        30.0,
        gt=10.0,
        le=3600.0,
        description="Seconds of request metrics averaged per decision, > 10 (Serve's metrics interval; Serve warns "
        "at or below it) and at most 3600 (Serve's default: 30).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingOptions:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"`max_replicas` must be at least `min_replicas` ({self.min_replicas}), got {self.max_replicas}"
            )
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(
                f"`initial_replicas` must be in [`min_replicas`, `max_replicas`] = [{self.min_replicas}, "
                f"{self.max_replicas}], got {self.initial_replicas}"
            )
        return self

    def to_serve(self) -> dict[str, Any]:
        """Serve's ``autoscaling_config`` dict (``initial_replicas`` only when set)."""
        return self.model_dump(exclude_none=True)


class DeploymentOptions(_Strict):
    """How Serve runs one deployment: a fixed ``num_replicas``, or ``autoscaling`` between two bounds (then
    ``num_replicas`` stays at its default, 1, and is not passed to Serve)."""

    num_replicas: int = Field(1, ge=1, le=64, description="Replicas of this deployment (scale from the dashboard too).")
    num_cpus: float = Field(
        0.1, ge=0.0, le=64.0, description="Logical CPUs reserved per replica; small so the app fits on 2 cores."
    )
    max_ongoing_requests: int = Field(64, ge=1, le=10_000, description="Concurrent requests per replica.")
    max_queued_requests: int = Field(
        -1,
        ge=-1,
        le=100_000,
        description="Requests waiting for a replica beyond `max_ongoing_requests`; past it a caller gets "
        "RESOURCE_EXHAUSTED at once instead of joining a growing queue. -1: unbounded (Serve's default).",
    )
    max_replicas_per_node: int | None = Field(
        None,
        ge=1,
        le=100,
        description="At most this many replicas of this deployment on one Ray node (Serve's option, in [1, 100]): "
        "1 spreads the replicas over the nodes, and the replacement of a lost node's replica waits for a node "
        "that has none. None: no limit.",
    )
    autoscaling: AutoscalingOptions | None = Field(
        None,
        description="Serve's autoscaling (`autoscaling_config`) instead of a fixed `num_replicas`; None: fixed. "
        "Serve (2.60) takes its own autoscaler or an external one, not both: set it with the application's "
        "`external_scaler_enabled: false` (the dashboard's scale API needs `true` and fixed replicas).",
    )

    @field_validator("autoscaling")
    @classmethod
    def _autoscaling(cls, v: AutoscalingOptions | None, info: ValidationInfo) -> AutoscalingOptions | None:
        if v is None:
            return v
        n, most = info.data.get("num_replicas"), info.data.get("max_ongoing_requests")
        if n is not None and n != 1:
            raise ValueError(
                f"`autoscaling` and `num_replicas` are exclusive: leave `num_replicas` at its default 1 (Serve "
                f"scales between `min_replicas` and `max_replicas`), got num_replicas={n}"
            )
        if most is not None and v.target_ongoing_requests > most:
            raise ValueError(
                f"`autoscaling.target_ongoing_requests` must be at most `max_ongoing_requests` ({most}), "
                f"got {v.target_ongoing_requests:g}"
            )
        return v


class StrategySpec(_Strict):
    """One retrieval strategy: whether it runs, its budget and deadline, and its own config."""

    enabled: bool = Field(True, description="Deploy and call this strategy.")
    default_k: int = Field(
        50,
        description=f"Candidates requested per query until a policy decides; in [1, {C.MAX_STRATEGY_K}] "
        "(MAX_STRATEGY_K) and on `policy.ladder`.",
    )
    timeout_ms: int = Field(
        500, ge=10, le=60_000, description="Per-call deadline; a late strategy is reported `timeout`."
    )
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions, description="Serve options.")
    placement: Literal["deployment", "ingress"] = Field(
        "deployment",
        description="`deployment`: its own Serve deployment, scaled on its own and called through a handle. "
        "`ingress`: hosted inside every ingress replica and called in a thread, which saves a Serve hop "
        "(~10-15 ms on 2 cores) for a strategy whose call costs less than that; it scales with the ingress "
        "and its `deployment` options are unused.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="The strategy's own config, validated by its config class."
    )

    @field_validator("default_k")
    @classmethod
    def _default_k(cls, v: int) -> int:
        if not 1 <= v <= C.MAX_STRATEGY_K:
            raise ValueError(f"`default_k` must be in [1, {C.MAX_STRATEGY_K}] (MAX_STRATEGY_K), got {v}")
        return v


class IngressOptions(_Strict):
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions, description="Serve options.")
    rrf_c: float = Field(60.0, ge=0.0, description="Reciprocal-rank fusion constant c in 1/(c + rank).")


class RetentionConfig(_Strict):
    """How long the event log keeps searches (:meth:`ltrr.eventlog.SQLiteEventLog.prune`).

    A search is deleted, with its feedback and settlement, only once it is older than ``max_age_s``,
    settled, applied by the learner's last saved checkpoint, folded into the query memory and the
    profiles, and outside the newest ``min_searches``: what the learner, the ranker trainer
    (``ranking.max_searches``) and off-policy evaluation read. ``query_stats`` (per-query counts)
    is kept whole. Freed pages are reused by SQLite, so the file stops growing; it does not shrink."""

    enabled: bool = Field(True, description="Prune the event log from the learner.")
    max_age_s: float = Field(
        30 * 86400.0, gt=0, description="Keep every search younger than this (default 30 days)."
    )
    min_searches: int = Field(
        50_000, ge=1, description="Always keep the newest this many searches (ranker training, OPE)."
    )
    interval_s: float = Field(600.0, gt=0, le=86400.0, description="How often the learner prunes.")
    batch: int = Field(
        5_000, ge=1, le=100_000, description="Searches deleted per transaction (each holds the write lock)."
    )


class AppConfig(_Strict):
    """The whole application."""

    catalog_path: str = Field(C.CATALOG_PATH, description="SQLite catalog file: the input of every strategy.")
    events_path: str = Field(C.FEEDBACK_PATH, description="SQLite event log (searches and feedback).")
    events_dsn: str = Field(
        "",
        description="PostgreSQL event log (libpq DSN or postgresql:// URI) shared by every node; empty: the SQLite "
        "file events_path. $LTRR_EVENTS_DSN, when set and non-empty, wins (keep the password in a Secret, not here).",
    )
    feedback_window_s: float = Field(86400.0, gt=0, description="How long after a search its feedback is accepted.")
    ingress: IngressOptions = Field(default_factory=IngressOptions, description="The gRPC ingress.")
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="How long the event log keeps searches."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="Bearer tokens and their scopes (ltrr.auth).")
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="The learned retrieval policy.")
    ranking: RankingConfig = Field(default_factory=RankingConfig, description="The learned ranker.")
    learner: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(num_replicas=1),
        description="Serve options of the policy learner (always one replica: it owns the parameters).",
    )
    trainer: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(num_replicas=1),
        description="Serve options of the ranker trainer (always one replica: it publishes the models).",
    )
    strategies: dict[str, StrategySpec] = Field(
        default_factory=lambda: {name: StrategySpec() for name in STRATEGY_NAMES},
        description="Retrieval strategies by registry name.",
    )

    @model_validator(mode="after")
    def _check_strategies(self) -> AppConfig:
        self.catalog_path = C.resolve_path(self.catalog_path)
        self.events_path = C.resolve_path(self.events_path)
        for name, spec in self.strategies.items():
            if name not in STRATEGY_NAMES:
                raise ValueError(f"strategies: unknown strategy {name!r}; valid: {', '.join(STRATEGY_NAMES)}")
            try:
                make_config(name, spec.config)
            except Exception as exc:  # pydantic ValidationError or ConfigError: name the path
                raise ValueError(f"strategies.{name}.config: {exc}") from exc
        if not any(s.enabled for s in self.strategies.values()):
            raise ValueError("strategies: at least one strategy must be enabled")
        for name, spec in self.enabled().items():
            if spec.default_k not in self.policy.ladder:
                raise ValueError(
                    f"strategies.{name}.default_k: must be a budget on policy.ladder {list(self.policy.ladder)}, "
                    f"got {spec.default_k}"
                )
        r = self.retention
        if r.enabled and r.max_age_s < self.feedback_window_s + self.policy.reward_window_s:
            raise ValueError(
                f"retention.max_age_s: must be at least feedback_window_s + policy.reward_window_s "
                f"({self.feedback_window_s + self.policy.reward_window_s:g}), got {r.max_age_s:g}"
            )
        if r.enabled and r.min_searches < self.ranking.max_searches:
            raise ValueError(
                f"retention.min_searches: must be at least ranking.max_searches ({self.ranking.max_searches}), "
                f"got {r.min_searches}"
            )
        if self.learner.num_replicas != 1:
            raise ValueError(
                f"learner.num_replicas: must be 1 (one learner owns the parameters), got {self.learner.num_replicas}"
            )
        if self.trainer.num_replicas != 1:
            raise ValueError(
                f"trainer.num_replicas: must be 1 (one trainer publishes the models), got {self.trainer.num_replicas}"
            )
        for name, opts in (("learner", self.learner), ("trainer", self.trainer)):
            if opts.autoscaling is not None:
                raise ValueError(f"{name}.autoscaling: must be unset (always one {name} replica)")
        self.policy.checkpoint_dir = C.resolve_path(self.policy.checkpoint_dir)
        self.ranking.model_dir = C.resolve_path(self.ranking.model_dir)
        return self

    def enabled(self) -> dict[str, StrategySpec]:
        return {n: s for n, s in self.strategies.items() if s.enabled}

    def strategy_config(self, name: str) -> BaseModel:
        """The validated config of strategy ``name``; a strategy that reads the
        catalog gets the app's ``catalog_path`` unless its config sets one."""
        values = dict(self.strategies[name].config)
        fields = config_class(name).model_fields
        if "catalog_path" in fields:
            values.setdefault("catalog_path", self.catalog_path)
        cfg = make_config(name, values)
        paths = {
            f: C.resolve_path(getattr(cfg, f))
            for f in fields
            if f.endswith(("_path", "_dir", "_cache")) and isinstance(getattr(cfg, f), str)
        }
        return cfg.model_copy(update=paths) if paths else cfg
