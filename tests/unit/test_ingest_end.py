"""``ltrr ingest``'s end (ltrr/cli.py): it closes the catalog it opened (with PostgreSQL, its sessions: an
unclosed one is a ResourceWarning that fails the test at teardown), and its cold-start ranker, which takes no
lease (a running app's trainer deployment holds it for its life, and ``make up``'s background ingest must still
re-train once vector is indexed), reports a publish refused because another trainer published meanwhile
(ltrr.ranking.retrain.fit_and_publish's compare-and-set) and still succeeds: the indexes are synced. SQLite and a
real PostgreSQL server (tests/fixtures/postgres.py). The strategies' sync and the training are stood in for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import ltrr.ingest
import ltrr.ranking.retrain as retrain
from ltrr.cli import main
from ltrr.errors import Aborted


@pytest.fixture
def app_args(store_args: dict[str, Any]) -> dict[str, Any]:
    return store_args


def ingest(tmp_path: Path, args: dict[str, Any]) -> int:
    cfg = tmp_path / "app.yaml"
    cfg.write_text(yaml.safe_dump(args))
    return main(["ingest", "--config", str(cfg), "--skip-catalog"])


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The stores ``sync_all`` was given (no strategy is synced); a cold start is needed."""
    stores: list[Any] = []

    def sync_all(cfg: Any, store: Any, **kw: Any) -> dict[str, int]:
        stores.append(store)
        real_close = store.close

        def close() -> None:
            store.closed = getattr(store, "closed", 0) + 1
            real_close()

        store.close = close
        return {}

    monkeypatch.setattr(ltrr.ingest, "sync_all", sync_all)
    monkeypatch.setattr(retrain, "needs_cold_start", lambda *a, **kw: True)
    return stores


def test_the_ingest_trains_the_cold_start_ranker_and_closes_its_catalog(
    app_args: dict[str, Any], tmp_path: Path, synced: list[Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    trained: list[Any] = []

    def cold_start(app: Any, store: Any, **kw: Any) -> retrain.Report:
        trained.append(store)
        return retrain.Report("cold start", reason="stood in for")

    monkeypatch.setattr(retrain, "cold_start", cold_start)
    assert ingest(tmp_path, app_args) == 0
    assert trained == synced and len(synced) == 1, "one catalog, for the indexes and the cold start"
    assert "cold-start ranker: stood in for" in capsys.readouterr().err
    assert getattr(synced[0], "closed", 0) == 1, "the ingest closed its catalog once"


def test_a_cold_start_refused_by_a_newer_model_is_said_and_the_ingest_still_succeeds(
    app_args: dict[str, Any], tmp_path: Path, synced: list[Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def cold_start(app: Any, store: Any, **kw: Any) -> retrain.Report:
        raise Aborted("the current model at X is catboost-000002, not catboost-000001, which this model was ...")

    monkeypatch.setattr(retrain, "cold_start", cold_start)
    assert ingest(tmp_path, app_args) == 0
    err = capsys.readouterr().err
    assert "cold-start ranker: not published: the current model at X is catboost-000002" in err
    assert "ingest done in " in err
