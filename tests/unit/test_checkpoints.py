"""Versioned checkpoint directories with an atomic LATEST pointer (ltrr.checkpoints)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ltrr import checkpoints
from ltrr.checkpoints import LATEST, CheckpointDir


def save(ckpts: CheckpointDir, version: int, payload: str | None = None) -> Path:
    """What a writer does: write into ``new()``, then ``commit``."""
    tmp = ckpts.new()
    tmp.mkdir()
    (tmp / "state.txt").write_text(payload if payload is not None else f"v{version}")
    return ckpts.commit(tmp, version)


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_must_be_positive(tmp_path: Path, keep: int) -> None:
    with pytest.raises(ValueError, match=re.escape(f"`keep` must be >= 1, got {keep}")):
        CheckpointDir(tmp_path, keep=keep)


def test_latest_is_none_before_commit(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    ckpts = CheckpointDir(root)
    assert root.is_dir()
    assert ckpts.latest() is None


def test_new_is_a_fresh_path(tmp_path: Path) -> None:
    ckpts = CheckpointDir(tmp_path)
    a, b = ckpts.new(), ckpts.new()
    assert a != b
    assert a.parent == b.parent == tmp_path
    assert a.name.startswith(".tmp-") and not a.exists()


def test_commit_and_latest(tmp_path: Path) -> None:
    ckpts = CheckpointDir(tmp_path)
    tmp = ckpts.new()
    tmp.mkdir()
    (tmp / "state.txt").write_text("one")
    final = ckpts.commit(tmp, 1)
    assert final == tmp_path / "ckpt-0000000001"
    assert not tmp.exists()
    assert (final / "state.txt").read_text() == "one"
    assert (tmp_path / LATEST).read_text() == "ckpt-0000000001\n"
    assert ckpts.latest() == final
    assert listing(tmp_path) == ["LATEST", "ckpt-0000000001"]  # no pointer temp file left


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    ckpts = CheckpointDir(tmp_path, keep=2)
    for v in (1, 2, 3, 4):
        assert save(ckpts, v) == ckpts.latest()
    assert listing(tmp_path) == ["LATEST", "ckpt-0000000003", "ckpt-0000000004"]
    assert ckpts.latest() == tmp_path / "ckpt-0000000004"
    assert (tmp_path / "ckpt-0000000004" / "state.txt").read_text() == "v4"


def test_versions_sort_numerically(tmp_path: Path) -> None:
    ckpts = CheckpointDir(tmp_path, keep=2)
    for v in (9, 10, 100):
        save(ckpts, v)
    assert listing(tmp_path) == ["LATEST", "ckpt-0000000010", "ckpt-0000000100"]


def test_commit_same_version_replaces(tmp_path: Path) -> None:
    ckpts = CheckpointDir(tmp_path)
    save(ckpts, 5, "old")
    final = save(ckpts, 5, "new")
    assert (final / "state.txt").read_text() == "new"
    assert ckpts.latest() == final
    assert listing(tmp_path) == ["LATEST", "ckpt-0000000005"]


def test_leftover_tmp_dirs_are_cleaned(tmp_path: Path) -> None:
    ckpts = CheckpointDir(tmp_path)
    crashed = ckpts.new()  # a writer died half-way through a save
    crashed.mkdir()
    (crashed / "partial").write_text("x")
    save(ckpts, 1)
    assert not crashed.exists()
    assert listing(tmp_path) == ["LATEST", "ckpt-0000000001"]


def test_crash_before_pointer_swap_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LATEST is replaced atomically: a crash before the swap leaves the old pointer intact."""
    ckpts = CheckpointDir(tmp_path)
    first = save(ckpts, 1)

    def crash(src: object, dst: object) -> None:
        raise OSError("crash")

    monkeypatch.setattr(checkpoints.os, "replace", crash)
    with pytest.raises(OSError, match="crash"):
        save(ckpts, 2)
    monkeypatch.undo()
    assert (tmp_path / LATEST).read_text() == "ckpt-0000000001\n"
    assert ckpts.latest() == first
    # the next good commit moves on, and removes the pointer file the crash left behind
    assert list(tmp_path.glob(f".{LATEST}.*"))
    assert save(ckpts, 3) == ckpts.latest() == tmp_path / "ckpt-0000000003"
    assert not list(tmp_path.glob(f".{LATEST}.*"))


@pytest.mark.parametrize("content", ["", "\n", "ckpt-0000000009\n"])
def test_latest_none_for_empty_or_dangling_pointer(tmp_path: Path, content: str) -> None:
    ckpts = CheckpointDir(tmp_path)
    (tmp_path / LATEST).write_text(content)
    assert ckpts.latest() is None


def test_pointer_is_replaced_with_os_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpts = CheckpointDir(tmp_path)
    calls: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        calls.append((Path(src).name, Path(dst).name))
        real(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", spy)
    save(ckpts, 1)
    assert len(calls) == 1
    src, dst = calls[0]
    assert src.startswith(f".{LATEST}.") and dst == LATEST
