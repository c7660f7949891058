"""Two learners (or trainers) on one PostgreSQL event log, as in a blue/green upgrade: one writes, the
other waits, and takes over from the saved checkpoint applying each settlement exactly once."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import psycopg
import pytest

from deployments.learner import PolicyLearner
from deployments.trainer import RankerTrainer
from ltrr.bandit import ContextFeaturizer, PolicyConfig, new_policy
from ltrr.checkpoints import PgCheckpointStore
from ltrr.eventlog import FeedbackEvent, SearchEvent, now
from ltrr.eventlog_pg import PostgresEventLog
from ltrr.lease import PgLease, waiting_message
from tests.unit.test_learner import NAMES, app_args

IDLE = {"settled": 0, "learned": 0, "credited": 0, "memory": 0, "profiles": 0, "pruned": 0}


@pytest.fixture(autouse=True)
def _no_env_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LTRR_EVENTS_DSN", raising=False)  # the DSN is each test's pg_dsn


def pod(tmp_path: Path, dsn: str, name: str) -> PolicyLearner:
    """A learner on ``dsn`` in pod ``name``: the same config as every other (a checkpoint made under another
    policy config, ``checkpoint_dir`` included, is relearned), but its own disk for the checkpoint cache."""
    args = app_args(tmp_path)
    args["events_dsn"] = dsn
    learner = PolicyLearner(args, start=False)
    store = learner.checkpoints
    assert isinstance(store, PgCheckpointStore), "with a DSN the checkpoints are in PostgreSQL"
    store.root = tmp_path / name
    store.root.mkdir()
    return learner


def log_clicked_searches(dsn: str, n: int, start: int = 0) -> None:
    """``n`` policy-decided searches, each clicked (so each settles positive at the next ``settle``)."""
    fz = ContextFeaturizer(NAMES)
    policy = new_policy(PolicyConfig(seed=start), NAMES, fz.dim)
    log = PostgresEventLog(dsn)
    try:
        for i in range(start, start + n):
            features = {"bias": 1.0, "class.seed": 1.0}
            d = dataclasses.replace(policy.forced(fz.vector(features), {"lexical": 10, "graph": 25}), forced=False)
            calls = tuple({"strategy": s, "status": "ok"} for s in NAMES)
            cands = {"lexical": [f"l{j}" for j in range(10)], "graph": [f"g{j}" for j in range(25)]}
            log.record_search(SearchEvent(f"r{i}", now(), "q", "", (), calls, cands, "", "", features, d.to_dict()))
            log.record_feedback(FeedbackEvent(f"e{i}", f"r{i}", "g3", "click", 1, now()))
    finally:
        log.close()


def checkpoint_versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM ltrr_blobs WHERE kind = 'policy' ORDER BY version")]


def cut(dsn: str, learner: PolicyLearner) -> None:
    """Cut the learner's lease session from a third connection (its pod vanished from the server's view)."""
    lease = learner.lease.lease
    assert isinstance(lease, PgLease) and lease.backend_pid is not None
    with psycopg.connect(dsn, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (lease.backend_pid,)).fetchone() == (True,)


def test_one_learner_writes_and_the_other_takes_over_exactly_once(
    tmp_path: Path, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    log_clicked_searches(pg_dsn, 3)
    caplog.set_level(logging.INFO, logger="ray.serve")
    blue = pod(tmp_path, pg_dsn, "blue")
    green = pod(tmp_path, pg_dsn, "green")  # the upgrade's second cluster
    try:
        assert blue.status()["lease"] == "held" and green.status()["lease"] == "waiting"
        assert green.step() == IDLE, "the waiting learner does not even settle"
        assert blue.step() == {**IDLE, "settled": 3, "learned": 3, "credited": 3}
        assert green.step() == IDLE and green.module.version == 0
        assert green.checkpoint() is None and checkpoint_versions(pg_dsn) == [], "nor checkpoint"
        assert [r.getMessage() for r in caplog.records].count(waiting_message("learner")) == 1, "logged once"
        assert blue.checkpoint() is not None and checkpoint_versions(pg_dsn) == [6]

        log_clicked_searches(pg_dsn, 2, start=3)
        assert blue.step()["credited"] == 2 and blue.module.version == 10
        blue.close()  # a clean shutdown: the last step, a checkpoint, and the lease released
        assert checkpoint_versions(pg_dsn) == [6, 10]

        log_clicked_searches(pg_dsn, 2, start=5)
        green.lease.retry_s = 0.0  # retry now rather than in a few seconds
        out = green.step()
        assert green.status()["lease"] == "held"
        assert out == {**IDLE, "settled": 2, "learned": 2, "credited": 2}, "only what blue had not applied"
        assert green.module.version == 14 and int(green.module.cursor) == 7 and int(green.module.open_cursor) == 7
        assert blue.totals["credited"] + green.totals["credited"] == 7 == len(green.events.settlements_since(0, 99))
        assert set(green.module.count.tolist()) == {0.0, 7.0}, "each arm a search observed counted all 7 once"
        assert green.step() == IDLE
    finally:
        green.close()
    assert checkpoint_versions(pg_dsn) == [6, 10, 14]


def test_a_learner_cut_off_stops_and_the_other_replays_from_its_last_checkpoint(tmp_path: Path, pg_dsn: str) -> None:
    log_clicked_searches(pg_dsn, 3)
    blue = pod(tmp_path, pg_dsn, "blue")
    green = pod(tmp_path, pg_dsn, "green")
    green.lease.retry_s = blue.lease.retry_s = 0.0
    try:
        assert blue.step()["credited"] == 3 and blue.checkpoint() is not None
        log_clicked_searches(pg_dsn, 2, start=3)
        assert blue.step()["credited"] == 2 and blue.module.version == 10  # not checkpointed: interval 3600 s
        cut(pg_dsn, blue)  # blue's pod is gone as far as the server knows: its lock is free
        assert green.step() == {**IDLE, "learned": 2, "credited": 2}, "replays what blue's checkpoint lacked"
        assert green.module.version == 10 and int(green.module.cursor) == 5
        assert blue.step() == IDLE and blue.status()["lease"] == "waiting", "blue noticed, and writes nothing"
        assert blue.checkpoint() is None and checkpoint_versions(pg_dsn) == [6]
        assert green.checkpoint() is not None and checkpoint_versions(pg_dsn) == [6, 10]
        assert blue.totals["credited"] + green.totals["credited"] == 7, "two of them were applied twice, in two modules"
        assert green.totals["credited"] == 2 and set(green.module.count.tolist()) == {0.0, 5.0}, "each once"
    finally:
        blue.close()
        green.close()
    assert checkpoint_versions(pg_dsn) == [6, 10], "blue, waiting, saved nothing at shutdown"


def test_a_learner_that_takes_the_lease_back_restores_the_newest_checkpoint(tmp_path: Path, pg_dsn: str) -> None:
    log_clicked_searches(pg_dsn, 3)
    blue = pod(tmp_path, pg_dsn, "blue")
    green = pod(tmp_path, pg_dsn, "green")
    green.lease.retry_s = blue.lease.retry_s = 0.0
    try:
        assert blue.step()["credited"] == 3 and blue.checkpoint() is not None
        cut(pg_dsn, blue)
        assert green.step() == IDLE and green.module.version == 6, "restored blue's checkpoint, nothing new"
        log_clicked_searches(pg_dsn, 2, start=3)
        assert green.step()["credited"] == 2 and green.checkpoint() is not None
        green.lease.release()  # green's cluster goes away between rounds (its close would do the same)
        assert blue.step() == IDLE, "blue took the lease back and restored green's checkpoint first"
        assert blue.module.version == 10 and int(blue.module.cursor) == 5
    finally:
        blue.close()
        green.close()


def test_one_trainer_trains_and_the_other_waits(tmp_path: Path, pg_dsn: str) -> None:
    args = {**app_args(tmp_path), "events_dsn": pg_dsn}
    PostgresEventLog(pg_dsn).close()  # the schema the trainer reads
    first = RankerTrainer(args, start=False)
    second = RankerTrainer(args, start=False)
    try:
        assert first.status()["lease"] == "held" and second.status()["lease"] == "waiting"
        report = second.train_now()
        assert report["published"] == "" and report["reason"] == "waiting for the trainer lease (another one holds it)"
        assert second.runs == 0, "nothing was trained"
        first.close()
        second.lease.retry_s = 0.0
        report = second.train_now()
        assert second.runs == 1 and report["reason"] != waiting_message("trainer")
        assert second.status()["lease"] == "held"
    finally:
        second.close()
