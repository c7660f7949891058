"""A directory of versioned checkpoints with an atomically updated ``LATEST`` pointer.

``new(version)`` gives a fresh temporary path to write into (RLlib's
``save_to_path`` writes several files); ``commit`` renames it into place and then
replaces ``LATEST`` with ``os.replace``, so a crash at any point leaves either
the previous or the new checkpoint as the latest, never a half-written one.
Older checkpoints beyond ``keep`` are removed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

LATEST = "LATEST"


class CheckpointDir:
    def __init__(self, root: str | Path, *, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1, got {keep}")
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def new(self) -> Path:
        """A fresh temporary directory path (not yet created) to save into."""
        return self.root / f".tmp-{uuid.uuid4().hex}"

    def commit(self, tmp: Path, version: int) -> Path:
        final = self.root / f"ckpt-{version:010d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        pointer = self.root / f".{LATEST}.{uuid.uuid4().hex}"
        pointer.write_text(final.name + "\n")
        with open(pointer, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, self.root / LATEST)
        fsync_dir(self.root)  # make the rename and the new pointer durable
        self._prune(final)
        return final

    def latest(self) -> Path | None:
        try:
            name = (self.root / LATEST).read_text().strip()
        except FileNotFoundError:
            return None
        path = self.root / name
        return path if name and path.is_dir() else None

    def _prune(self, current: Path) -> None:
        ckpts = sorted(p for p in self.root.glob("ckpt-*") if p.is_dir())
        for old in ckpts[: max(0, len(ckpts) - self.keep)]:
            if old != current:
                shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        for stale in self.root.glob(f".{LATEST}.*"):  # a pointer left by a crash before os.replace
            stale.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
