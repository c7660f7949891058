"""The ``ranking`` block of the app config: where models live, how serving picks them up, how the trainer retrains."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RankingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: str = Field(
        "var/ranker", description="The model registry: published CatBoost models and the CURRENT pointer."
    )
    reload_interval_s: float = Field(
        2.0, gt=0, le=3600, description="How often each ingress replica checks for a newly published model."
    )
    log_top: int = Field(
        50, ge=10, le=400, description="Feature rows logged per search: the top of the served order (at least k)."
    )
    retrain_interval_s: float = Field(
        3600.0, gt=0, description="The trainer retrains at least this often when there are new labelled searches."
    )
    retrain_after: int = Field(
        500, ge=1, description="...or as soon as this many new labelled searches were logged since the last try."
    )
    min_searches: int = Field(
        200, ge=10, description="Labelled searches needed before training from the log (the cold-start model serves)."
    )
    max_searches: int = Field(20_000, ge=100, description="Train on at most the newest this many labelled searches.")
    holdout: float = Field(
        0.2, gt=0, lt=1, description="Share of the newest labelled searches held out to validate a new model."
    )
    tolerance: float = Field(
        0.0, ge=0, le=0.1, description="Publish if held-out nDCG@10 is at most this much below the current and RRF."
    )
    loss: Literal["YetiRank", "YetiRankPairwise", "QueryRMSE"] = Field("YetiRank", description="CatBoost's loss.")
    iterations: int = Field(300, ge=10, le=5000, description="Boosting rounds (trees).")
    depth: int = Field(6, ge=2, le=10, description="Depth of each (oblivious) tree.")
    position_bias: Literal["regression_em", "none"] = Field(
        "regression_em",
        description="How clicks are de-biased for position: inverse examination weights estimated by "
        "regression-EM from the log (ltrr.ranking.position_bias), or none.",
    )
    keep: int = Field(5, ge=2, le=100, description="Published versions kept in the registry (for rollback).")
    cold_start_queries: int = Field(
        1500, ge=0, le=100_000, description="Predicted queries the ingest job trains the first model on (0: none)."
    )
    cold_start_rows: int = Field(
        400, ge=10, le=400, description="Feature rows per predicted query the cold start trains on: the top of "
        "RRF's order (400 is every candidate at the ladder's maximum), so it learns to lift what RRF buries.",
    )  # fmt: skip
    seed: int = Field(0, description="Seed of the cold-start queries and of training.")
