"""Both ranker trainers publish only holding the trainer lease: ``ltrr train-ranker`` (ltrr/cli.py,
ltrr.lease.acquire_within) takes it first, waits while another trainer holds it and gives up after
``--lease-timeout``; the trainer deployment (deployments/trainer.py) publishes into a registry fenced by it, so
one that lost it while training publishes nothing. SQLite (a flock next to the event log, files in
``model_dir``) and a real PostgreSQL server (an advisory lock, the models in ``ltrr_blobs``;
tests/fixtures/postgres.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import deployments.trainer as trainer_module
import ltrr.strategies.vector  # noqa: F401 - eagerly: see the note below the imports
from deployments.trainer import RankerTrainer
from ltrr.cli import main
from ltrr.config import AppConfig
from ltrr.event_store import open_event_log
from ltrr.eventlog import FeedbackEvent, SearchEvent, now
from ltrr.lease import TRAINER, acquire_within, lease_for, waiting_message
from ltrr.ranking import features as F
from ltrr.ranking.registry import registry_for
from ltrr.ranking.registry_pg import PgModelRegistry

# ltrr.strategies.vector (pymilvus) is imported above, not lazily by the first AppConfig validation: imported
# inside a capsys test once Ray is loaded (tests/unit/test_learner_lease.py collected first), pymilvus closes
# pytest's capture stream and the session fails at teardown.

SEARCHES = 40
ROWS = 12


@pytest.fixture(autouse=True)
def _no_env_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LTRR_EVENTS_DSN", raising=False)  # a test's DSN is its config's (store_dsn)


@pytest.fixture
def app_args(store_args: dict[str, Any]) -> dict[str, Any]:
    ranking = {"min_searches": 10, "iterations": 20, "depth": 3, "position_bias": "none"}
    return {**store_args, "ranking": {**store_args["ranking"], **ranking}}


def config_file(tmp_path: Path, args: dict[str, Any]) -> str:
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(args))
    return str(path)


def log_learnable_searches(app: AppConfig) -> None:
    """Searches whose clicked row is the one with the largest ``popularity``, logged at a random position, so
    a trained model beats RRF (which follows the served order) on the held-out ones."""
    rng = np.random.default_rng(0)
    events = open_event_log(app)
    try:
        for i in range(SEARCHES):
            ids = [f"e{i}-{j}" for j in range(ROWS)]
            x = rng.normal(size=(ROWS, F.DIM)).astype(np.float32)
            x[:, F.INDEX["rrf"]] = 1.0 / (60 + np.arange(1, ROWS + 1))
            ranking = {**F.pack(ids, x), "schema": F.SCHEMA_VERSION}
            events.record_search(SearchEvent(f"r{i}", now(), "q", "", tuple(ids[:10]), ranking=ranking))
            clicked = int(np.argmax(x[:10, F.INDEX["popularity"]]))
            events.record_feedback(FeedbackEvent(f"f{i}", f"r{i}", ids[clicked], "click", clicked + 1, now()))
    finally:
        events.close()


def current_version(app: AppConfig) -> str | None:
    reg = registry_for(app)
    try:
        return reg.current_version()
    finally:
        reg.close()


def test_it_waits_for_the_lease_gives_up_after_the_timeout_and_trains_once_it_is_free(
    app_args: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = AppConfig.model_validate(app_args)
    log_learnable_searches(app)
    cfg = config_file(tmp_path, app_args)
    holder = lease_for(app, TRAINER)  # another trainer (the deployment, another train-ranker)
    assert holder.acquire()
    try:
        assert main(["train-ranker", "--config", cfg, "--lease-timeout", "0.2"]) == 1
        err = capsys.readouterr().err
        assert f"==> {waiting_message(TRAINER)}; giving up after 0.2 s (--lease-timeout)" in err.splitlines()
        assert re.search(
            r"^error: another trainer still holds the trainer lease \((FileLease|PgLease)\('trainer', .*\)\) "
            r"after 0\.2 s: nothing was trained or published$",
            err,
            re.MULTILINE,
        )
        assert "train YetiRank" not in err, "nothing was trained"
        assert current_version(app) is None, "nothing was published"
    finally:
        holder.release()

    assert main(["train-ranker", "--config", cfg, "--lease-timeout", "0"]) == 0
    out, err = capsys.readouterr()
    assert waiting_message(TRAINER) not in err
    assert "published catboost-000001" in out
    assert current_version(app) == "catboost-000001"
    other = lease_for(app, TRAINER)
    assert other.acquire(), "the CLI released the lease when it was done"
    other.release()


@pytest.mark.parametrize("timeout", ["-1", "nan"])
def test_a_negative_lease_timeout_is_refused(tmp_path: Path, timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_file(tmp_path, {"events_path": str(tmp_path / "events.sqlite")})
    assert main(["train-ranker", "--config", cfg, "--lease-timeout", timeout]) == 2
    assert capsys.readouterr().err == f"error: --lease-timeout must be >= 0 seconds, got {float(timeout):g}\n"


def test_the_trainer_deployment_publishes_holding_the_lease_and_not_once_it_lost_it(
    app_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = AppConfig.model_validate(app_args)
    log_learnable_searches(app)
    trainer = RankerTrainer(app_args, start=False)
    rival = lease_for(app, TRAINER)
    try:
        assert trainer.status()["lease"] == "held" and trainer.registry.lease is trainer.lease.lease
        assert isinstance(trainer.registry, PgModelRegistry) == bool(app_args["events_dsn"])
        report = trainer.train_now()
        assert report["published"] == "catboost-000001" and current_version(app) == "catboost-000001"

        real = trainer_module.retrain_from_log

        def lease_lost_while_training(*args: Any, **kw: Any) -> Any:
            trainer.lease.lease.release()  # as if its session was cut or its file replaced; another takes it
            assert rival.acquire()
            return real(*args, **kw)

        monkeypatch.setattr(trainer_module, "retrain_from_log", lease_lost_while_training)
        report = trainer.train_now()
        assert report["published"] == "" and report["reason"] == "the trainer lease is not held: nothing was written"
        assert trainer.runs == 1 and current_version(app) == "catboost-000001", "nothing was published"
    finally:
        trainer.close()
        rival.release()


# -- acquire_within: the wait itself -------------------------------------------------------------------------


@pytest.fixture(params=["file", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> AppConfig:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return AppConfig.model_validate({"events_path": str(tmp_path / "events.sqlite"), "events_dsn": dsn})


def test_acquire_within_takes_a_free_lease_without_waiting(app: AppConfig) -> None:
    lease = lease_for(app, TRAINER)
    waits: list[int] = []
    try:
        assert acquire_within(lease, 0, on_wait=lambda: waits.append(1)) and lease.held
        assert waits == []
    finally:
        lease.release()


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_acquire_within_waits_until_the_holder_lets_go(app: AppConfig, timeout: float | None) -> None:
    """``on_wait`` runs once the lease is found taken; here it makes the holder release, so the wait ends (None:
    the lease's blocking acquire; a bound: polling)."""
    holder, ours = lease_for(app, TRAINER), lease_for(app, TRAINER)
    assert holder.acquire()
    waits: list[bool] = []

    def holder_lets_go() -> None:
        waits.append(holder.held)
        holder.release()

    try:
        assert acquire_within(ours, timeout, on_wait=holder_lets_go, retry_s=0.01)
        assert waits == [True] and ours.held
    finally:
        ours.release()
        holder.release()


def test_acquire_within_gives_up_at_the_timeout(app: AppConfig) -> None:
    holder, ours = lease_for(app, TRAINER), lease_for(app, TRAINER)
    assert holder.acquire()
    waits: list[int] = []
    try:
        assert acquire_within(ours, 0.05, on_wait=lambda: waits.append(1), retry_s=0.01) is False
        assert waits == [1] and not ours.held and holder.held
    finally:
        holder.release()
        ours.release()


@pytest.mark.parametrize("timeout", [-1.0, float("nan")])
def test_acquire_within_refuses_a_negative_timeout(tmp_path: Path, timeout: float) -> None:
    app = AppConfig.model_validate({"events_path": str(tmp_path / "events.sqlite")})
    with pytest.raises(ValueError, match=re.escape(f"`timeout_s` must be >= 0 or None, got {timeout!r}")):
        acquire_within(lease_for(app, TRAINER), timeout)


def test_a_trainer_does_not_publish_over_a_model_another_published_while_it_trained(
    app_args: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The publish is a compare-and-set on the model the new one was validated against (``fit_and_publish``):
    an ingest's cold start or an operator's ``train-ranker`` racing the trainer deployment never replaces the
    model the other published meanwhile with one that was never compared against it."""
    import ltrr.ranking.retrain as retrain

    app = AppConfig.model_validate(app_args)
    log_learnable_searches(app)
    real_compare = retrain.compare
    rival: list[str] = []

    def compare_while_another_publishes(hold: Any, rankers: dict[str, Any]) -> Any:
        scores = real_compare(hold, rankers)  # after the current model (none yet) was read to compare against
        reg = registry_for(app)  # the other trainer, done first
        try:
            meta = retrain.ModelMeta(F.SCHEMA_VERSION, tuple(F.NAMES), "YetiRank")
            rival.append(reg.publish(rankers["new"], meta))
        finally:
            reg.close()
        return scores

    monkeypatch.setattr(retrain, "compare", compare_while_another_publishes)
    assert main(["train-ranker", "--config", config_file(tmp_path, app_args)]) == 1
    err = capsys.readouterr().err
    assert rival == ["catboost-000001"]
    assert "error: not published: the current model at " in err
    assert "is catboost-000001, not none, which this model was compared against" in err
    assert current_version(app) == "catboost-000001", "the rival's model still serves"
