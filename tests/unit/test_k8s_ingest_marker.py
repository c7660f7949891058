"""The ingest Job's done-marker (``k8s/ingest_marker.py``): a head serves only indexes built for it.

Each test writes a marker as the Job would, changes one input, and checks what a Ray head that
starts afterwards decides. The Serve config is the cluster's own (``k8s/base/serve_config.yaml``).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "k8s" / "base" / "serve_config.yaml"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ingest_marker", ROOT / "k8s" / "ingest_marker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


marker_mod = _load()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(marker path, config file, data dir) with a written marker, as after a finished ingest."""
    data = tmp_path / "data"
    (data / "lastfm").mkdir(parents=True)
    (data / "lastfm" / "artists.dat").write_text("id\tname\n1\tRadiohead\n")
    (data / "tags.dat").write_text("1\trock\n")
    config = tmp_path / "serve_config.yaml"
    config.write_text(SERVE_CONFIG.read_text())
    marker = tmp_path / "state" / "var" / "ingest-done.json"
    marker_mod.write(marker, config, data)
    return marker, config, data


def _edit(config: Path, change: Callable[[dict[str, Any]], None]) -> None:
    cfg = yaml.safe_load(config.read_text())
    change(cfg["applications"][0])
    config.write_text(yaml.safe_dump(cfg))


def _args(app: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = app["args"]
    return args


def test_a_head_of_the_same_config_and_data_may_serve(setup: tuple[Path, Path, Path]) -> None:
    marker, config, data = setup
    assert marker_mod.check(marker, config, data) == (True, "")
    assert not marker.with_name(marker.name + ".tmp").exists()  # written by rename
    assert marker_mod.main(["check", str(marker), "--config", str(config), "--data-dir", str(data)]) == 0


def test_a_re_ingest_in_progress_holds_a_starting_head(setup: tuple[Path, Path, Path], capsys: Any) -> None:
    marker, config, data = setup
    assert marker_mod.main(["clear", str(marker)]) == 0
    ok, why = marker_mod.check(marker, config, data)
    assert not ok and "has not finished (or is running again)" in why
    assert marker_mod.main(["check", str(marker), "--config", str(config), "--data-dir", str(data)]) == 1
    assert "no marker" in capsys.readouterr().err
    marker_mod.clear(marker)  # clearing twice is fine


def test_the_old_touch_marker_does_not_count(setup: tuple[Path, Path, Path]) -> None:
    """An empty file (what `touch .ingest-done` left) says nothing about what was ingested."""
    marker, config, data = setup
    marker.write_text("")
    ok, why = marker_mod.check(marker, config, data)
    assert not ok and why.startswith(f"marker {marker} unreadable")


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
    setup: tuple[Path, Path, Path], change: Callable[[Path, Path], Any]
) -> None:
    marker, config, data = setup
    change(data, config)
    ok, why = marker_mod.check(marker, config, data)
    assert not ok and "is for another ingest" in why
    marker_mod.write(marker, config, data)  # the Job ran for these inputs
    assert marker_mod.check(marker, config, data) == (True, "")


def test_another_ltrr_version_waits_for_its_own_ingest(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker, config, data = setup
    monkeypatch.setattr(marker_mod, "version", lambda name: "99.0.0")
    assert marker_mod.check(marker, config, data)[0] is False


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
    setup: tuple[Path, Path, Path], change: Callable[[dict[str, Any]], None]
) -> None:
    marker, config, data = setup
    before = copy.deepcopy(yaml.safe_load(config.read_text()))
    _edit(config, change)
    assert yaml.safe_load(config.read_text()) != before
    assert marker_mod.check(marker, config, data) == (True, "")


def test_no_data_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(SystemExit, match="no data files under"):
        marker_mod.fingerprint(SERVE_CONFIG, tmp_path / "data")
