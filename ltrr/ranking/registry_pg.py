"""The ranker's published models in PostgreSQL, off the node (issue 12): :class:`PgModelRegistry`.

What :func:`ltrr.ranking.registry.registry_for` opens when a DSN is configured
(:func:`ltrr.event_store.events_dsn`), with the interface and the rules of the file registry
(:mod:`ltrr.ranking.registry`: numbering, parents, rollback, pruning, the schema check, fencing by the
trainer's lease), so ingress replicas on any node, and a trainer in the other cluster of a blue/green
upgrade, see the same models.

Each version is one row ``(kind 'ranker', version)`` of the table ``ltrr_blobs``
(:class:`ltrr.checkpoints.PgBlobs`, the store of the policy's checkpoints too), its data the version's
directory (``model.cbm`` and ``meta.json``) as tar.gz. The pointer is the row order: the current version
is the newest row by ``created``, which a publish sets and a rollback moves to the parent (its data
unchanged), each in one transaction under the kind's advisory lock, so a reader sees the old or the new
current version and a publish and a rollback never interleave. The next number is one above the largest
in the table, which pruning never removes (it is the last published), so numbers are not reused.

A replica polls :meth:`PgModelRegistry.current_version` (one small read on a connection it keeps) and loads
a version only when the name changes. ``ranking.model_dir`` is then only each process's cache: a version
is extracted there once, as ``catboost-<n>-<created in µs>`` (renamed into place when complete, so the
processes of one host can share the directory), and copies of rows no longer in the table are removed.
Pruning is the file registry's: the newest ``keep`` numbers survive, and always the current one's parent.
A file registry's own ``CURRENT`` and ``catboost-<n>`` left in the same directory (before a DSN was set)
are not read or removed.

With a :class:`~ltrr.lease.PgLease`, publish and rollback run on the lease's own session
(:meth:`ltrr.lease.PgLease.fenced`): a trainer whose lease was lost cannot commit, whatever it checked before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Final, Sequence, TypeVar

import psycopg
from catboost import CatBoost

from ltrr.checkpoints import PgBlobs, materialise, pack_dir
from ltrr.errors import NotFound
from ltrr.lease import Lease, PgLease
from ltrr.ranking.registry import (
    _TMP,
    ANY_CURRENT,
    META_FILE,
    MODEL_FILE,
    PREFIX,
    BaseModelRegistry,
    ModelMeta,
    PublishedModel,
    RegistryError,
    version_name,
    version_number,
)

#: The ``ltrr_blobs`` kind of the published models.
KIND: Final = "ranker"
#: A local copy of a version: ``catboost-<n>-<created in µs>``.
_COPY: Final = re.compile(rf"^{PREFIX}\d{{6,}}-\d+$")
#: Seconds after which a half-extracted or half-saved directory in a shared cache is no live process's.
_DEBRIS_S: Final = 3600.0
T = TypeVar("T")


class PgModelRegistry(BaseModelRegistry):
    """The published models in the database at ``dsn``, ``cache_dir`` their local copies (module docstring);
    the interface of :class:`~ltrr.ranking.registry.BaseModelRegistry`. Server failures raise
    :class:`~ltrr.errors.BackendUnavailable` (never the password). Thread-safe."""

    def __init__(
        self,
        dsn: str,
        *,
        cache_dir: str | Path,
        schema_version: int,
        feature_names: Sequence[str],
        keep: int = 5,
        lease: Lease | None = None,
    ) -> None:
        super().__init__(cache_dir, schema_version=schema_version, feature_names=feature_names, keep=keep, lease=lease)
        fence = lease if isinstance(lease, PgLease) else None
        self.blobs = PgBlobs(dsn, KIND, fence=fence, label="models", keep_connection=True)
        self.dsn = self.blobs.dsn

    def __repr__(self) -> str:
        return f"PgModelRegistry({self.dsn!r})"

    def close(self) -> None:
        self.blobs.close()

    def current_version(self) -> str | None:
        """The newest row's version: the last published or rolled back to; None before the first publish."""
        head = self._read(self.blobs.head, "read the current version")
        return None if head is None else version_name(head[0])

    def versions(self) -> list[str]:
        return [version_name(v) for v, _ in sorted(self._read(self.blobs.rows, "list the versions"))]

    def get(self, version: str) -> PublishedModel:
        """``version`` with its meta, from its local copy (extracted on first sight)."""
        number = version_number(version)
        created = self._read(partial(self.blobs.created, version=number), f"read {version}")
        if created is None:
            raise NotFound(f"model {version} is not in the registry at {self.dsn}")
        path = self._copy(number, created)
        if not path.is_dir():
            row = self._read(partial(self.blobs.read, version=number), f"read {version}")
            if row is None:
                raise NotFound(f"model {version} is not in the registry at {self.dsn}")
            self.root.mkdir(parents=True, exist_ok=True)
            path = materialise(row[1], self._copy(number, row[0]))
            self._prune_cache()
        return self._read_meta(version, path)

    def publish(self, model: CatBoost, meta: ModelMeta, *, expect_current: str | None = ANY_CURRENT) -> str:
        """As :meth:`ltrr.ranking.registry.ModelRegistry.publish`: in one transaction under the kind's lock (fenced by a
        :class:`~ltrr.lease.PgLease`), the next number, the current version as parent (which must be
        ``expect_current`` when one is given), the new row, pruning."""
        self._check_publishable(model, meta)
        self._require_lease()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{_TMP}{uuid.uuid4().hex}"
        tmp.mkdir()

        def write(cur: psycopg.Cursor[Any]) -> tuple[int, float]:
            self.blobs.lock(cur)
            rows = self.blobs.rows(cur)  # the newest first: rows[0] is the current version
            number = max((v for v, _ in rows), default=0) + 1
            current = [rows[0][0]] if rows else []
            parent = version_name(current[0]) if current else None
            self._check_current(expect_current, parent)
            stamped = replace(meta, version=version_name(number), created=time.time(), parent=parent)
            (tmp / META_FILE).write_text(json.dumps(stamped.to_dict(), indent=2, sort_keys=True) + "\n")
            created = self.blobs.put(cur, number, pack_dir(tmp))
            numbers = sorted({v for v, _ in rows}, reverse=True)  # the rule of ModelRegistry._prune
            self.blobs.delete(cur, [v for v in numbers[max(0, self.keep - 1) :] if v not in current])
            return number, created

        try:
            model.save_model(str(tmp / MODEL_FILE), format="cbm")
            number, created = self._write(write, "publish")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.rename(tmp, self._copy(number, created))  # what was committed is this process's copy
        except OSError:  # a process sharing the cache extracted it first
            shutil.rmtree(tmp, ignore_errors=True)
        self._prune_cache()
        return version_name(number)

    def rollback(self) -> str:
        """As :meth:`ltrr.ranking.registry.ModelRegistry.rollback`: the parent's row becomes the newest (its data
        unchanged), in one transaction under the kind's lock, and only if the current version is still the one read."""
        self._require_lease()
        version = self.current_version()
        parent = self._rollback_target(version)

        def write(cur: psycopg.Cursor[Any]) -> None:
            self.blobs.lock(cur)
            head = self.blobs.head(cur)
            if head is None or version_name(head[0]) != version:
                raise RegistryError(f"model {version} is no longer the current version: not rolled back")
            if self.blobs.touch(cur, version_number(parent)) is None:
                raise RegistryError(f"model {version}'s parent {parent} is no longer in the registry")

        self._write(write, f"roll back to {parent}")
        return parent

    # ------------------------------------------------------------------ private

    @property
    def _where(self) -> str:
        return self.dsn

    def _read(self, fn: Callable[[psycopg.Cursor[Any]], T], what: str) -> T:
        return self.blobs.run(fn, what, fenced=False)

    def _write(self, fn: Callable[[psycopg.Cursor[Any]], T], what: str) -> T:
        """``fn`` in a transaction on the lease's session if the lease is a PgLease (else checked held first)."""
        self._require_lease()
        return self.blobs.run(fn, what, fenced=True)

    def _copy(self, number: int, created: float) -> Path:
        return self.root / f"{version_name(number)}-{round(created * 1e6)}"

    def _prune_cache(self) -> None:
        """Remove the local copies of rows no longer in the table (or since rolled back to: their ``created``
        moved), and debris older than :data:`_DEBRIS_S`; the cache may be shared by a host's processes, so a
        copy of a row still in the table stays, and another's half-extracted directory is left alone."""
        live = {self._copy(v, c).name for v, c in self._read(self.blobs.rows, "list the versions")}
        for old in self.root.iterdir():
            if _COPY.match(old.name) and old.name not in live:
                shutil.rmtree(old, ignore_errors=True)
        for debris in (*self.root.glob(".dl-*"), *self.root.glob(f"{_TMP}*")):
            try:
                stale = time.time() - debris.stat().st_mtime > _DEBRIS_S
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(debris, ignore_errors=True)
