"""Checkpoints in PostgreSQL (ltrr.checkpoints.PgCheckpointStore), on a real server: off the pod's disk."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import psycopg
import pytest

from ltrr.checkpoints import CheckpointDir, PgCheckpointStore, checkpoint_store
from ltrr.errors import Aborted, BackendUnavailable
from ltrr.lease import PgLease


def save(store: CheckpointDir | PgCheckpointStore, version: int, payload: str | None = None) -> Path:
    """What the learner does: write a few files into ``new()`` (RLlib writes a tree), then ``commit``."""
    tmp = store.new()
    (tmp / "module").mkdir(parents=True)
    (tmp / "state.txt").write_text(payload if payload is not None else f"v{version}")
    (tmp / "module" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    return store.commit(tmp, version)


def rows(dsn: str, kind: str = "policy") -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM ltrr_blobs WHERE kind = %s ORDER BY version", (kind,))]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_must_be_positive(pg_dsn: str, tmp_path: Path, keep: int) -> None:
    with pytest.raises(ValueError, match=re.escape(f"`keep` must be >= 1, got {keep}")):
        PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path, keep=keep)


@pytest.mark.parametrize("kind", ["", "  "])
def test_kind_must_be_named(pg_dsn: str, tmp_path: Path, kind: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"`kind` must be a non-empty string, got {kind!r}")):
        PgCheckpointStore(pg_dsn, kind, cache_dir=tmp_path)


def test_round_trip_and_another_pod_sees_the_commit(pg_dsn: str, tmp_path: Path) -> None:
    first = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "pod-a")
    assert first.latest() is None, "nothing committed yet"
    final = save(first, 7)
    assert final.parent == tmp_path / "pod-a" and final.name.startswith("ckpt-0000000007-")
    assert first.latest() == final, "its own commit is its local copy: nothing downloaded"
    expected = {"module/weights.bin": bytes(range(256)) * 4, "state.txt": b"v7"}
    assert tree(final) == expected
    assert rows(pg_dsn) == [7]

    other = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "pod-b")  # another node: another disk
    seen = other.latest()
    assert seen is not None and seen.parent == tmp_path / "pod-b" and seen.name == final.name
    assert tree(seen) == expected
    assert other.latest() == seen, "extracted once"
    assert sorted(p.name for p in (tmp_path / "pod-b").iterdir()) == [seen.name], "no partial download left"


def test_keeps_the_newest_n(pg_dsn: str, tmp_path: Path) -> None:
    store = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "a", keep=2)
    for v in (1, 2, 3, 4):
        assert save(store, v) == store.latest()
    assert rows(pg_dsn) == [3, 4]
    assert [p.name.split("-")[1] for p in (tmp_path / "a").iterdir()] == ["0000000004"], "one local copy"
    reader = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "b", keep=2)
    latest = reader.latest()
    assert latest is not None and (latest / "state.txt").read_text() == "v4"


def test_the_same_version_again_replaces_it_everywhere(pg_dsn: str, tmp_path: Path) -> None:
    writer = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "a")
    reader = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "b")
    save(writer, 5, "old")
    old = reader.latest()
    assert old is not None and (old / "state.txt").read_text() == "old"
    new = save(writer, 5, "new")
    assert rows(pg_dsn) == [5]
    seen = reader.latest()
    assert seen is not None and seen != old and seen.name == new.name, "a replaced version is fetched again"
    assert (seen / "state.txt").read_text() == "new" and not old.exists()


def test_newest_is_the_last_committed_not_the_largest_version(pg_dsn: str, tmp_path: Path) -> None:
    """A learner that relearns from scratch (a config change) commits small versions: those are restored."""
    store = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "a", keep=2)
    save(store, 40)
    save(store, 2, "relearnt")
    latest = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "b").latest()
    assert latest is not None and (latest / "state.txt").read_text() == "relearnt"
    save(store, 3)
    assert rows(pg_dsn) == [2, 3], "pruned by commit order too"


def test_kinds_are_apart(pg_dsn: str, tmp_path: Path) -> None:
    policy = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "p", keep=1)
    other = PgCheckpointStore(pg_dsn, "other", cache_dir=tmp_path / "o", keep=1)
    save(policy, 1)
    assert other.latest() is None
    save(other, 9)
    save(other, 10)
    assert rows(pg_dsn, "policy") == [1] and rows(pg_dsn, "other") == [10]


def test_a_fenced_commit_needs_the_lease(pg_dsn: str, tmp_path: Path) -> None:
    lease, rival = PgLease(pg_dsn, "learner"), PgLease(pg_dsn, "learner")
    try:
        assert lease.acquire()
        store = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path, fence=lease)
        save(store, 1)
        with psycopg.connect(pg_dsn, autocommit=True) as admin:  # the holder's session is cut
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (lease.backend_pid,))
        assert rival.acquire()
        tmp = store.new()
        tmp.mkdir()
        (tmp / "state.txt").write_text("v2")
        with pytest.raises(Aborted, match=r"^the learner lease was lost while writing"):
            store.commit(tmp, 2)
        assert rows(pg_dsn) == [1], "nothing written without the lease"
        latest = store.latest()
        assert latest is not None and (latest / "state.txt").read_text() == "v1"
    finally:
        lease.release()
        rival.release()


def test_the_blob_is_a_tar_gz_of_the_directory(pg_dsn: str, tmp_path: Path) -> None:
    save(PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path), 1)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT data, created FROM ltrr_blobs WHERE kind = 'policy'").fetchone()
    assert row is not None and row[1] > 1.6e9, "created: seconds since the epoch, by the server's clock"
    with tarfile.open(fileobj=io.BytesIO(bytes(row[0])), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["module", "module/weights.bin", "state.txt"]


def test_an_unsafe_archive_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "a")  # creates the table
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO ltrr_blobs VALUES ('policy', 1, 1.0, %s)", (buf.getvalue(),))
    with pytest.raises(tarfile.OutsideDestinationError):
        PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path / "a").latest()
    assert not (tmp_path / "escaped.txt").exists() and list((tmp_path / "a").iterdir()) == []


def test_an_unreachable_server_is_backend_unavailable(tmp_path: Path) -> None:
    dsn = f"host={tmp_path} port=1 dbname=x user=x password=hunter2"
    with pytest.raises(BackendUnavailable, match=r"^checkpoints 'policy' on .*password=\*\*\*.*create the table") as e:
        PgCheckpointStore(dsn, "policy", cache_dir=tmp_path / "c")
    assert "hunter2" not in str(e.value)


def test_the_factory_picks_by_dsn(pg_dsn: str, tmp_path: Path) -> None:
    assert isinstance(checkpoint_store(tmp_path / "d", "", "policy"), CheckpointDir)
    store = checkpoint_store(tmp_path / "p", pg_dsn, "policy", keep=4)
    assert isinstance(store, PgCheckpointStore) and store.kind == "policy" and store.keep == 4
    assert store.root == tmp_path / "p"


def test_a_checkpoint_dirs_own_checkpoints_are_left_alone(pg_dsn: str, tmp_path: Path) -> None:
    """Setting a DSN on a host that checkpointed to the directory before: its files are not deleted."""
    legacy = save(CheckpointDir(tmp_path), 3)
    store = PgCheckpointStore(pg_dsn, "policy", cache_dir=tmp_path)
    first, second = save(store, 1), save(store, 2)
    assert legacy.is_dir() and (legacy / "state.txt").read_text() == "v3"
    assert not first.exists() and second.is_dir(), "its own older copy is removed"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["LATEST", legacy.name, second.name])
