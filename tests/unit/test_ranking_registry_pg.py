"""Ranker models off the node (ltrr.ranking.registry_pg) and publishing fenced by the trainer lease, on a real
PostgreSQL server (tests/fixtures/postgres.py) and, where the rule is the same, on the file registry too."""

from __future__ import annotations

import io
import re
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from catboost import CatBoostRanker

from ltrr.config import AppConfig
from ltrr.errors import Aborted, BackendUnavailable
from ltrr.lease import TRAINER, FileLease, PgLease, lease_for
from ltrr.ranking import features as F
from ltrr.ranking.catboost import LiveRanker
from ltrr.ranking.registry import (
    META_FILE,
    MODEL_FILE,
    ModelMeta,
    ModelRegistry,
    RegistryError,
    SchemaMismatch,
    registry_for,
)
from ltrr.ranking.registry_pg import PgModelRegistry
from ltrr.ranking.rrf import RRFRanker

V = [f"catboost-{i:06d}" for i in range(10)]  # V[1] == "catboost-000001"
NOT_HELD = "the trainer lease is not held: nothing was written"


@pytest.fixture(autouse=True)
def _no_env_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LTRR_EVENTS_DSN", raising=False)  # the DSN is each test's pg_dsn


def fit_model(seed: int) -> CatBoostRanker:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, F.DIM))
    model = CatBoostRanker(iterations=5, depth=2, random_seed=seed, verbose=False, allow_writing_files=False)
    model.fit(x, (x[:, seed % F.DIM] > 0).astype(float), group_id=np.repeat(np.arange(6), 10))
    model.set_feature_names(list(F.NAMES))
    return model


@pytest.fixture(scope="module")
def models() -> list[CatBoostRanker]:
    return [fit_model(0), fit_model(1)]


def meta(**kw: Any) -> ModelMeta:
    return ModelMeta(schema_version=F.SCHEMA_VERSION, feature_names=tuple(F.NAMES), loss="YetiRank", **kw)


@dataclass
class Backend:
    """The app configs of processes on one store: the SQLite default (every process on one host, one
    ``model_dir``) or PostgreSQL (each node its own disk: its own ``model_dir``)."""

    name: str
    root: Path
    dsn: str

    def app(self, node: str = "node-a", **ranking: Any) -> AppConfig:
        model_dir = self.root / (node if self.dsn else "host") / "ranker"
        return AppConfig.model_validate(
            {
                "events_path": str(self.root / "events.sqlite"),
                "events_dsn": self.dsn,
                "ranking": {"model_dir": str(model_dir), **ranking},
            }
        )

    def stored(self, app: AppConfig) -> list[str]:
        """What the store holds of the models: the version rows, or the files under ``model_dir``."""
        if self.dsn:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                rows = conn.execute("SELECT version FROM ltrr_blobs WHERE kind = 'ranker' ORDER BY version")
                return [f"row {r[0]}" for r in rows]
        root = Path(app.ranking.model_dir)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return Backend(request.param, tmp_path, dsn)


def blob_rows(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT kind, version FROM ltrr_blobs ORDER BY kind, version")]


def terminate(dsn: str, pid: int | None) -> None:
    assert pid is not None
    with psycopg.connect(dsn, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)


def predictions(model: Any) -> np.ndarray:
    return np.asarray(model.predict(np.random.default_rng(7).normal(size=(9, F.DIM))))


def served(live: LiveRanker) -> np.ndarray:
    """The predictions of the model ``live`` serves now."""
    return predictions(live.current().model)  # type: ignore[attr-defined]


# -- one interface, two backends, chosen in one place -------------------------------------------------------


def test_registry_for_picks_the_backend_by_the_dsn(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch):
    files = Backend("sqlite", tmp_path, "").app()
    reg = registry_for(files)
    assert type(reg) is ModelRegistry and reg.root == Path(files.ranking.model_dir) and reg.lease is None
    assert reg.keep == files.ranking.keep and reg.schema_version == F.SCHEMA_VERSION
    monkeypatch.setenv("LTRR_EVENTS_DSN", pg_dsn)  # the environment's DSN wins, as for the event log
    lease = lease_for(files, TRAINER)
    pg = registry_for(files, lease=lease)
    try:
        assert type(pg) is PgModelRegistry and pg.root == Path(files.ranking.model_dir) and pg.lease is lease
        assert isinstance(lease, PgLease) and pg.blobs.fence is lease, "its writes run on the lease's session"
    finally:
        pg.close()


def test_a_model_published_by_one_process_is_served_by_another(backend: Backend, models: list[CatBoostRanker]):
    """The trainer publishes, an ingress replica (with PostgreSQL: on another node, another disk) serves it."""
    trainer_app, ingress_app = backend.app("node-a"), backend.app("node-b")
    lease = lease_for(trainer_app, TRAINER)
    assert lease.acquire()
    writer, reader = registry_for(trainer_app, lease=lease), registry_for(ingress_app)
    try:
        live = LiveRanker(reader, RRFRanker(60))
        assert live.refresh() is False and live.version == RRFRanker(60).version, "nothing published: RRF"
        assert writer.publish(models[0], meta()) == V[1]
        assert live.refresh() is True and live.version == V[1]
        np.testing.assert_array_equal(served(live), predictions(models[0]))
        assert live.refresh() is False, "the same version: nothing loaded again"
        assert writer.publish(models[1], meta()) == V[2]
        assert live.refresh() is True and live.version == V[2]
        np.testing.assert_array_equal(served(live), predictions(models[1]))
        assert writer.rollback() == V[1]
        assert live.refresh() is True and live.version == V[1]
        np.testing.assert_array_equal(served(live), predictions(models[0]))
        assert reader.versions() == [V[1], V[2]] and reader.get(V[2]).meta.parent == V[1]
        if backend.dsn:  # no model file on either node is the registry: only caches, no CURRENT pointer
            for node in ("node-a", "node-b"):
                assert not (backend.root / node / "ranker" / "CURRENT").exists()
            assert backend.stored(trainer_app) == ["row 1", "row 2"]
    finally:
        writer.close()
        reader.close()
        lease.release()


def test_publish_and_rollback_are_refused_without_the_trainer_lease(backend: Backend, models: list[CatBoostRanker]):
    app = backend.app()
    ours, rival = lease_for(app, TRAINER), lease_for(app, TRAINER)
    reg = registry_for(app, lease=ours)
    try:
        with pytest.raises(Aborted, match=f"^{re.escape(NOT_HELD)}$"):
            reg.publish(models[0], meta())  # never acquired
        assert rival.acquire() and not ours.acquire()
        with pytest.raises(Aborted, match=f"^{re.escape(NOT_HELD)}$"):
            reg.publish(models[0], meta())  # another trainer holds it
        assert reg.current_version() is None and reg.versions() == []
        assert backend.stored(app) == [], "nothing was written, not even a temporary directory"

        rival.release()
        assert ours.acquire()
        assert [reg.publish(m, meta()) for m in models] == [V[1], V[2]]
        ours.release()
        assert rival.acquire()
        with pytest.raises(Aborted, match=f"^{re.escape(NOT_HELD)}$"):
            reg.publish(models[0], meta())
        with pytest.raises(Aborted, match=f"^{re.escape(NOT_HELD)}$"):
            reg.rollback()
        assert reg.current_version() == V[2] and reg.versions() == [V[1], V[2]]
        holder = registry_for(app, lease=rival)
        try:
            assert holder.rollback() == V[1], "the holder may"
        finally:
            holder.close()
    finally:
        reg.close()
        ours.release()
        rival.release()


def test_a_file_lease_replaced_under_the_trainer_cannot_publish(tmp_path: Path, models: list[CatBoostRanker]):
    """A FileLease is lost when its file is replaced (another process could lock the new one)."""
    app = Backend("sqlite", tmp_path, "").app()
    lease = lease_for(app, TRAINER)
    assert isinstance(lease, FileLease) and lease.acquire()
    reg = registry_for(app, lease=lease)
    assert reg.publish(models[0], meta()) == V[1]
    lease.path.unlink()
    lease.path.write_text("")
    with pytest.raises(Aborted, match=f"^{re.escape(NOT_HELD)}$"):
        reg.publish(models[1], meta())
    assert reg.versions() == [V[1]] and reg.current_version() == V[1]
    lease.release()


def test_rollback_and_pruning_follow_one_rule_on_both_backends(backend: Backend, models: list[CatBoostRanker]):
    """The sequence of tests/unit/test_ranking_registry.py's pruning test, on either store."""
    reg = registry_for(backend.app(keep=2))
    try:
        assert [reg.publish(models[0], meta()) for _ in range(3)] == V[1:4]
        assert reg.versions() == [V[2], V[3]]
        assert reg.rollback() == V[2]  # V[2]'s parent V[1] is already gone
        assert reg.publish(models[0], meta()) == V[4]  # parent V[2]: kept although not among the newest two
        assert reg.versions() == [V[2], V[3], V[4]] and reg.get(V[4]).meta.parent == V[2]
        assert reg.rollback() == V[2]
        with pytest.raises(
            RegistryError, match=re.escape(f"model {V[2]}'s parent {V[1]} is no longer in the registry")
        ):
            reg.rollback()
        assert reg.current_version() == V[2]
        reg.publish(models[0], meta())  # V[5], parent V[2]
        reg.publish(models[0], meta())  # V[6], parent V[5]
        assert reg.versions() == [V[5], V[6]] and reg.current_version() == V[6]
    finally:
        reg.close()


def test_a_model_of_another_schema_is_refused_on_both_backends(backend: Backend, models: list[CatBoostRanker]):
    reg = registry_for(backend.app())
    try:
        with pytest.raises(SchemaMismatch, match=r"^the model to publish was made for feature schema 0 "):
            reg.publish(models[0], ModelMeta(schema_version=0, feature_names=tuple(F.NAMES), loss="YetiRank"))
        assert reg.versions() == []
    finally:
        reg.close()


# -- PostgreSQL only --------------------------------------------------------------------------------------


def pg_registry(dsn: str, cache: Path, **kw: Any) -> PgModelRegistry:
    return PgModelRegistry(dsn, cache_dir=cache, schema_version=F.SCHEMA_VERSION, feature_names=F.NAMES, **kw)


def test_a_trainer_whose_lease_session_was_cut_cannot_commit(pg_dsn: str, tmp_path: Path, models: list[CatBoostRanker]):
    """The check before the write passed (``held`` answered before the cut), yet the fenced commit refuses."""

    class CheckedBeforeTheCut(PgLease):
        @property
        def held(self) -> bool:
            return True

    lease, rival = CheckedBeforeTheCut(pg_dsn, TRAINER), PgLease(pg_dsn, TRAINER)
    reg = pg_registry(pg_dsn, tmp_path / "a", lease=lease)
    try:
        assert lease.acquire()
        assert reg.publish(models[0], meta()) == V[1]
        terminate(pg_dsn, lease.backend_pid)  # the trainer's node vanished from the server's view
        assert rival.acquire(), "the server freed the lock with the session"
        with pytest.raises(Aborted, match=r"^the trainer lease was lost while writing"):
            reg.publish(models[1], meta())
        assert blob_rows(pg_dsn) == [("ranker", 1)] and reg.current_version() == V[1]
        assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".tmp-")], "no debris"
    finally:
        reg.close()
        lease.release()
        rival.release()


def test_the_models_are_rows_of_ltrr_blobs_beside_the_checkpoints(
    pg_dsn: str, tmp_path: Path, models: list[CatBoostRanker]
):
    from ltrr.checkpoints import PgCheckpointStore

    store = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "ckpt")
    tmp = store.new()
    tmp.mkdir()
    (tmp / "state.txt").write_text("v1")
    store.commit(tmp, 1)
    reg = pg_registry(pg_dsn, tmp_path / "cache")
    try:
        assert reg.publish(models[0], meta()) == V[1]
        assert blob_rows(pg_dsn) == [("policy", 1), ("ranker", 1)], "one table, the kinds apart"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT data FROM ltrr_blobs WHERE kind = 'ranker'").fetchone()
        assert row is not None
        with tarfile.open(fileobj=io.BytesIO(bytes(row[0])), mode="r:gz") as tar:
            assert sorted(tar.getnames()) == [META_FILE, MODEL_FILE], "the version's directory, as the files hold it"
        latest = store.latest()
        assert latest is not None and (latest / "state.txt").read_text() == "v1", "the checkpoint is untouched"
    finally:
        reg.close()


def test_a_new_node_extracts_the_current_version_once(pg_dsn: str, tmp_path: Path, models: list[CatBoostRanker]):
    writer = pg_registry(pg_dsn, tmp_path / "a")
    reader = pg_registry(pg_dsn, tmp_path / "b")
    try:
        writer.publish(models[0], meta())
        first = reader.load_current()
        assert first is not None and first.path.parent == tmp_path / "b" and first.path.name.startswith(V[1] + "-")
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [first.path.name], "no partial download left"
        again = reader.load_current()
        assert again is not None and again.path == first.path
        writer.publish(models[1], meta())
        writer.publish(models[1], meta())  # keep=5: V[1] stays in the table...
        assert reader.get(V[3]).meta.parent == V[2]
        assert first.path.is_dir(), "...so its copy stays too"
    finally:
        writer.close()
        reader.close()


def test_a_reader_whose_connection_was_cut_reads_on(pg_dsn: str, tmp_path: Path, models: list[CatBoostRanker]):
    """An ingress replica keeps one connection for its polls; a server that cut it costs no failed poll."""
    writer, reader = pg_registry(pg_dsn, tmp_path / "a"), pg_registry(pg_dsn, tmp_path / "b")
    try:
        writer.publish(models[0], meta())
        assert reader.current_version() == V[1]
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            pids = [
                r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'ltrr-models'")
            ]
        assert pids, "the readers' kept connections"
        for pid in pids:
            terminate(pg_dsn, pid)
        assert reader.current_version() == V[1]
        assert writer.publish(models[1], meta()) == V[2]
    finally:
        writer.close()
        reader.close()


def test_publishers_at_once_take_turns(pg_dsn: str, tmp_path: Path, models: list[CatBoostRanker]):
    """Four registries (as four processes would have) publishing at once: each version complete, none lost,
    each one's parent the one before (the kind's advisory lock serialises them)."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def publish_three(i: int) -> None:
        own = pg_registry(pg_dsn, tmp_path / f"p{i}", keep=100)
        try:
            barrier.wait()
            for _ in range(3):
                own.publish(models[0], meta())
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=publish_three, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reg = pg_registry(pg_dsn, tmp_path / "check", keep=100)
    try:
        names = [f"catboost-{i:06d}" for i in range(1, 13)]
        assert reg.versions() == names and reg.current_version() == names[-1]
        assert [reg.get(v).meta.parent for v in names] == [None, *names[:-1]]
    finally:
        reg.close()


def test_an_unreachable_server_is_backend_unavailable(tmp_path: Path) -> None:
    dsn = f"host={tmp_path} port=1 dbname=x user=x password=hunter2"
    with pytest.raises(BackendUnavailable, match=r"^models 'ranker' on .*password=\*\*\*.*create the table") as e:
        pg_registry(dsn, tmp_path / "c")
    assert "hunter2" not in str(e.value)


def test_a_publish_expecting_a_current_version_refuses_once_another_was_published(
    backend: Backend, models: list[CatBoostRanker]
):
    """``expect_current``: the compare-and-set a trainer publishes with (ltrr.ranking.retrain.fit_and_publish),
    under the registry's lock, on either store."""
    reg = registry_for(backend.app())
    try:
        with pytest.raises(Aborted, match=re.escape(f"is none, not {V[1]}, which this model was compared against")):
            reg.publish(models[0], meta(), expect_current=V[1])  # nothing is published yet
        assert reg.current_version() is None and reg.versions() == []
        assert reg.publish(models[0], meta(), expect_current=None) == V[1]
        with pytest.raises(Aborted) as refused:
            reg.publish(models[1], meta(), expect_current=None)  # compared against an empty registry
        assert str(refused.value).endswith(
            f" is {V[1]}, not none, which this model was compared against (another trainer published meanwhile): "
            "nothing was written"
        )
        assert reg.current_version() == V[1] and reg.versions() == [V[1]]
        assert reg.publish(models[1], meta(), expect_current=V[1]) == V[2]
        assert reg.publish(models[0], meta()) == V[3], "without expect_current, over whatever is current"
        assert reg.get(V[3]).meta.parent == V[2]
    finally:
        reg.close()
