"""The ingest Job's done-marker (``k8s/ingest_marker.py``): a head serves only indexes built for it.

The marker is a row of the catalog's meta in PostgreSQL, so each test runs on a fresh database of the
real server of ``tests/fixtures/postgres.py`` (``pg_dsn``). Each test writes a marker as the Job would,
changes one input, and checks what a Ray head that starts afterwards decides; every call opens its own
connection, as the Job's and the head's separate pods do. The Serve config is the cluster's own
(``k8s/base/serve_config.yaml``).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import psycopg
import pytest
import yaml

from ltrr.catalog.store_pg import PgCatalogStore
from ltrr.event_store import DSN_ENV

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "k8s" / "base" / "serve_config.yaml"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ingest_marker", ROOT / "k8s" / "ingest_marker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


marker_mod = _load()

Setup = tuple[str, Path, Path]


@pytest.fixture(autouse=True)
def no_dsn_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DSN_ENV, raising=False)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """(config file, data dir) of an ingest."""
    data = tmp_path / "data"
    (data / "lastfm").mkdir(parents=True)
    (data / "lastfm" / "artists.dat").write_text("id\tname\n1\tRadiohead\n")
    (data / "tags.dat").write_text("1\trock\n")
    config = tmp_path / "serve_config.yaml"
    config.write_text(SERVE_CONFIG.read_text())
    return config, data


@pytest.fixture
def setup(pg_dsn: str, inputs: tuple[Path, Path]) -> Setup:
    """(DSN, config file, data dir) with a written marker, as after a finished ingest."""
    config, data = inputs
    marker_mod.write(config, data, dsn=pg_dsn)
    return pg_dsn, config, data


def _cli(cmd: str, config: Path | None = None, data: Path | None = None, *extra: str) -> int:
    argv = [cmd, *extra]
    if config is not None and data is not None:
        argv += ["--config", str(config), "--data-dir", str(data)]
    rc: int = marker_mod.main(argv)
    return rc


def _stored(dsn: str) -> list[tuple[str, str]]:
    """The marker's rows in the catalog's meta table, read without ltrr."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT key, value FROM catalog_meta WHERE key = %s", (marker_mod.META_KEY,)).fetchall()


def _edit(config: Path, change: Callable[[dict[str, Any]], None]) -> None:
    cfg = yaml.safe_load(config.read_text())
    change(cfg["applications"][0])
    config.write_text(yaml.safe_dump(cfg))


def _args(app: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = app["args"]
    return args


def test_the_job_s_sequence_on_postgres_gates_the_head(
    pg_dsn: str, inputs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """As in the cluster: the DSN from $LTRR_EVENTS_DSN; check fails before the first ingest, while an
    ingest runs (cleared), and passes once the marker of these inputs is written."""
    config, data = inputs
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    assert _cli("check", config, data) == 1  # a new database: never written
    assert "has not finished yet" in capsys.readouterr().err
    assert _cli("clear") == 0
    assert _stored(pg_dsn) == [(marker_mod.META_KEY, "")]  # cleared: the empty value
    assert _cli("check", config, data) == 1
    assert "is cleared: the ingest Job is running" in capsys.readouterr().err
    assert _cli("write", config, data) == 0
    capsys.readouterr()
    assert _cli("check", config, data) == 0
    assert capsys.readouterr().err == ""
    # In the PostgreSQL catalog, where any pod on any node reads it; ltrr's own store sees it too.
    ((_, value),) = _stored(pg_dsn)
    store = PgCatalogStore(pg_dsn)
    try:
        assert store.get_meta(marker_mod.META_KEY) == value
    finally:
        store.close()
    assert '"fingerprint": "' + marker_mod.fingerprint(config, data) + '"' in value
    # A re-ingest clears it again, and the head that (re)starts meanwhile waits.
    assert _cli("clear") == 0
    assert _cli("check", config, data) == 1
    assert _cli("clear") == 0  # clearing twice is fine


def test_the_script_runs_as_the_pods_run_it(pg_dsn: str, inputs: tuple[Path, Path]) -> None:
    """``python ingest_marker.py ...`` in a process of its own, the DSN only in its environment."""
    config, data = inputs
    env = {**os.environ, DSN_ENV: pg_dsn}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        script = str(ROOT / "k8s" / "ingest_marker.py")
        return subprocess.run([sys.executable, script, *argv], env=env, capture_output=True, text=True, timeout=120)

    paths = ["--config", str(config), "--data-dir", str(data)]
    assert run("clear").returncode == 0
    waiting = run("check", *paths)
    assert (waiting.returncode, "is cleared" in waiting.stderr) == (1, True), waiting.stderr
    assert run("write", *paths).returncode == 0
    assert run("check", *paths).returncode == 0


def test_a_head_of_the_same_config_and_data_may_serve(setup: Setup) -> None:
    dsn, config, data = setup
    assert marker_mod.check(config, data, dsn=dsn) == (True, "")
    assert _cli("check", config, data, "--dsn", dsn) == 0


def test_check_fails_before_any_write(pg_dsn: str, inputs: tuple[Path, Path]) -> None:
    config, data = inputs
    ok, why = marker_mod.check(config, data, dsn=pg_dsn)
    assert not ok and why.startswith(f"no marker {marker_mod.META_KEY}")
    assert _stored(pg_dsn) == []  # a check writes nothing


def test_check_fails_after_clear(setup: Setup, capsys: Any) -> None:
    dsn, config, data = setup
    assert _cli("clear", None, None, "--dsn", dsn) == 0
    ok, why = marker_mod.check(config, data, dsn=dsn)
    assert not ok and "is cleared" in why
    assert _cli("check", config, data, "--dsn", dsn) == 1
    assert "is cleared" in capsys.readouterr().err


def test_a_marker_without_a_fingerprint_does_not_count(setup: Setup) -> None:
    """What is not the JSON ``write`` stores (e.g. a hand-set value) says nothing about what was ingested."""
    dsn, config, data = setup
    store = PgCatalogStore(dsn)
    try:
        store.set_meta(marker_mod.META_KEY, "done")
    finally:
        store.close()
    ok, why = marker_mod.check(config, data, dsn=dsn)
    assert not ok and "unreadable" in why
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE catalog_meta SET value = '{}' WHERE key = %s", (marker_mod.META_KEY,))
    ok, why = marker_mod.check(config, data, dsn=dsn)
    assert not ok and "is for another ingest (None)" in why


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d, c: (d / "tags.dat").write_text("1\tjazz\n"), id="a data file changed"),
        pytest.param(lambda d, c: (d / "new.dat").write_text("x\n"), id="a data file added"),
        pytest.param(lambda d, c: (d / "tags.dat").unlink(), id="a data file removed"),
        pytest.param(
            lambda d, c: _edit(c, lambda a: _args(a)["strategies"]["lexical"]["config"].update(url="http://m2:7700")),
            id="an index moved to another server",
        ),
        pytest.param(
            lambda d, c: _edit(c, lambda a: _args(a)["strategies"]["memory"].update(enabled=False)),
            id="a strategy disabled",
        ),
        pytest.param(
            lambda d, c: _edit(c, lambda a: _args(a).update(catalog_path="/x/c.sqlite")), id="another catalog"
        ),
    ],
)
def test_a_head_of_other_inputs_waits_for_its_own_ingest(
    setup: Setup, change: Callable[[Path, Path], Any], capsys: Any
) -> None:
    dsn, config, data = setup
    change(data, config)
    ok, why = marker_mod.check(config, data, dsn=dsn)
    assert not ok and "is for another ingest" in why
    assert _cli("check", config, data, "--dsn", dsn) == 1
    assert "is for another ingest" in capsys.readouterr().err
    marker_mod.write(config, data, dsn=dsn)  # the Job ran for these inputs
    assert marker_mod.check(config, data, dsn=dsn) == (True, "")
    assert len(_stored(dsn)) == 1  # one row, replaced


def test_another_ltrr_version_waits_for_its_own_ingest(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, config, data = setup
    monkeypatch.setattr(marker_mod, "version", lambda name: "99.0.0")
    assert marker_mod.check(config, data, dsn=dsn)[0] is False


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda a: _args(a)["ingress"]["deployment"].update(num_replicas=3), id="replicas"),
        pytest.param(lambda a: _args(a)["strategies"]["vector"].update(timeout_ms=900), id="a timeout"),
        pytest.param(lambda a: _args(a)["policy"].update(ts_scale=0.2), id="a policy setting"),
        pytest.param(lambda a: a["deployments"][0]["autoscaling_config"].update(max_replicas=8), id="autoscaling"),
    ],
)
def test_a_config_change_that_moves_no_index_does_not_hold_a_head(
    setup: Setup, change: Callable[[dict[str, Any]], None]
) -> None:
    dsn, config, data = setup
    before = copy.deepcopy(yaml.safe_load(config.read_text()))
    _edit(config, change)
    assert yaml.safe_load(config.read_text()) != before
    assert marker_mod.check(config, data, dsn=dsn) == (True, "")


def test_the_dsn_option_wins_over_the_environment(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, config, data = setup
    monkeypatch.setenv(DSN_ENV, "postgresql://nobody@/nowhere?host=/nonexistent-socket-dir")
    assert _cli("check", config, data, "--dsn", dsn) == 0


@pytest.mark.parametrize("cmd", ["clear", "write", "check"])
def test_without_a_dsn_every_subcommand_fails_and_says_why(cmd: str, inputs: tuple[Path, Path], capsys: Any) -> None:
    config, data = inputs
    assert _cli(cmd, *((None, None) if cmd == "clear" else (config, data))) == 2
    err = capsys.readouterr().err
    assert "no DSN" in err and f"${DSN_ENV}" in err
    with pytest.raises(marker_mod.MarkerError, match="no DSN"):
        marker_mod.check(config, data)


@pytest.mark.parametrize("cmd", ["clear", "write", "check"])
def test_an_unreachable_database_fails_without_showing_the_password(
    cmd: str, inputs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    config, data = inputs
    monkeypatch.setenv(DSN_ENV, "postgresql://ltrr:s3cr3t-pw@/ltrr?host=/nonexistent-socket-dir")
    assert _cli(cmd, *((None, None) if cmd == "clear" else (config, data))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ingest_marker: ${DSN_ENV}: ") and "failed" in err
    assert "s3cr3t-pw" not in err


def test_a_dsn_that_does_not_parse_fails_and_says_why(inputs: tuple[Path, Path], capsys: Any) -> None:
    config, data = inputs
    assert _cli("check", config, data, "--dsn", "not a dsn ===") == 2
    assert "ingest_marker: --dsn: `dsn` must be a PostgreSQL connection string" in capsys.readouterr().err


def test_no_data_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(SystemExit, match="no data files under"):
        marker_mod.fingerprint(SERVE_CONFIG, tmp_path / "data")
