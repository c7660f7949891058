"""Published ranker models: one directory (or PostgreSQL), written by the trainer, polled by every ingress replica.

Layout::

    <root>/
        CURRENT              the served version's name, one line, replaced atomically
        .lock                publishers and rollbacks hold an exclusive flock on it while they write
        catboost-000001/
            model.cbm        CatBoost's binary model
            meta.json        its ModelMeta: schema, feature names, loss, metrics, parent, ...
        catboost-000002/
        ...

A publish writes the new version into a hidden temporary directory, fsyncs its files, renames it
into place (a directory rename is atomic, so a version directory is always complete), and only then
replaces ``CURRENT`` (written aside, fsynced, ``os.replace``). A reader therefore sees the old or the
new version, never a half-written one, and a crash at any point leaves the previous version served.
Readers take no lock: a replica polls :meth:`ModelRegistry.current_version` (one small read) every
second or so and loads only when the name changes.

Versions are numbered in publish order and never reused. Each remembers its ``parent``, the version
served when it was published, which :meth:`ModelRegistry.rollback` returns to. Pruning keeps the
newest ``keep`` versions and always the current one and its parent; a version a reader has just
read from ``CURRENT`` survives at least one more publish when ``keep >= 3``.

The lock is ``fcntl.flock``: it serialises publishers on one host, and across hosts on file
systems that honour it (local disks, NFSv4 through Linux's emulation with POSIX locks).

A model is bound to the feature schema it was trained on (:mod:`ltrr.ranking.features`). A registry
is opened with the schema its process computes, and refuses to publish or load a model of another
schema version or other feature names (:class:`SchemaMismatch`), so serving falls back to RRF
instead of scoring rows whose columns mean something else.

**In PostgreSQL** (:class:`ltrr.ranking.registry_pg.PgModelRegistry`, issue 12: off the node). When a
DSN is configured (:func:`ltrr.event_store.events_dsn`), :func:`registry_for` opens the registry in the
database instead, with this interface (:class:`BaseModelRegistry`), so ingress replicas on any node, and a
trainer in the other cluster of a blue/green upgrade, see the same models; ``ranking.model_dir`` is then
only each process's cache.

**Fencing.** A registry opened with a ``lease`` (the trainer's, :data:`ltrr.lease.TRAINER`) publishes and
rolls back only while that lease is held, and raises :class:`~ltrr.errors.Aborted` ("the trainer lease is
not held: nothing was written") otherwise. A :class:`~ltrr.lease.FileLease` is checked before anything
is written and again before the new version is moved into place; with a :class:`~ltrr.lease.PgLease` the
PostgreSQL registry's transaction runs on the lease's own session (:meth:`ltrr.lease.PgLease.fenced`), so a
trainer whose lease was lost (its session cut) cannot commit a model, whatever it checked before.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from catboost import CatBoost, CatBoostError, CatBoostRanker

from ltrr.checkpoints import fsync_dir
from ltrr.config import AppConfig
from ltrr.errors import Aborted, LtrrError, NotFound
from ltrr.event_store import events_dsn
from ltrr.lease import Lease
from ltrr.ranking import features

if TYPE_CHECKING:
    from ltrr.ranking.registry_pg import PgModelRegistry

CURRENT = "CURRENT"
LOCK = ".lock"
MODEL_FILE = "model.cbm"
META_FILE = "meta.json"
PREFIX = "catboost-"
_VERSION = re.compile(rf"^{PREFIX}(\d{{6,}})$")
_TMP = ".tmp-"
#: :meth:`BaseModelRegistry.publish`'s ``expect_current`` default: publish over whatever is current.
ANY_CURRENT: Any = object()
_TRASH = ".trash-"


class RegistryError(LtrrError):
    """The model registry cannot do what was asked (nothing to roll back to, a corrupt entry, ...)."""


class SchemaMismatch(RegistryError, features.SchemaMismatch):
    """A model was trained on another feature schema (version or feature names) than this process computes.

    Also a :class:`ltrr.ranking.features.SchemaMismatch`, so one ``except`` covers a logged feature block
    and a model of another schema."""


@dataclass(frozen=True)
class ModelMeta:
    """What is known about a published model; ``meta.json`` holds its :meth:`to_dict`.

    ``version``, ``created`` and ``parent`` are set by :meth:`ModelRegistry.publish`.
    """

    schema_version: int
    feature_names: tuple[str, ...]
    loss: str
    #: metrics of the model on its training searches
    train_metrics: Mapping[str, float] = field(default_factory=dict)
    #: the held-out comparison (:func:`ltrr.ranking.train.compare`): ``{ranker: {metric: value}}``
    validation_metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: the examination probabilities theta_k behind the training weights, if any
    examination: tuple[float, ...] | None = None
    #: how it was trained: parameters, search counts, seconds, the publish decision
    training: Mapping[str, Any] = field(default_factory=dict)
    version: str = ""
    created: float = 0.0
    parent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["feature_names"] = list(self.feature_names)
        d["examination"] = None if self.examination is None else list(self.examination)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelMeta:
        """Read ``d`` (unknown keys are ignored, so an older reader reads a newer trainer's meta)."""
        missing = [k for k in ("schema_version", "feature_names", "loss") if k not in d]
        if missing:
            raise ValueError(f"model meta must have {', '.join(missing)}")
        examination = d.get("examination")
        return cls(
            schema_version=int(d["schema_version"]),
            feature_names=tuple(str(n) for n in d["feature_names"]),
            loss=str(d["loss"]),
            train_metrics=dict(d.get("train_metrics") or {}),
            validation_metrics={k: dict(v) for k, v in (d.get("validation_metrics") or {}).items()},
            examination=None if examination is None else tuple(float(t) for t in examination),
            training=dict(d.get("training") or {}),
            version=str(d.get("version", "")),
            created=float(d.get("created", 0.0)),
            parent=d.get("parent"),
        )


@dataclass(frozen=True)
class PublishedModel:
    version: str
    path: Path  # the version's directory
    meta: ModelMeta

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


@dataclass(frozen=True)
class LoadedModel(PublishedModel):
    """A published model read into memory, its schema checked against the registry's."""

    model: CatBoost


def version_name(number: int) -> str:
    return f"{PREFIX}{number:06d}"


def version_number(version: str) -> int:
    m = _VERSION.match(version)
    if m is None:
        raise ValueError(f"`version` must look like {version_name(1)}, got {version!r}")
    return int(m.group(1))


class BaseModelRegistry:
    """The interface of both registries (:class:`ModelRegistry`: files;
    :class:`~ltrr.ranking.registry_pg.PgModelRegistry`: PostgreSQL), and what they share: the published
    models for feature schema ``schema_version`` with columns ``feature_names``; ``keep`` (>= 1) versions
    survive pruning; with ``lease`` (:mod:`ltrr.lease`), publish and rollback write only while it is held
    (module docstring, "Fencing"). ``root`` is where the versions' directories are: the registry itself, or
    the local cache of the one in PostgreSQL."""

    def __init__(
        self,
        root: str | Path,
        *,
        schema_version: int,
        feature_names: Sequence[str],
        keep: int = 5,
        lease: Lease | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1, got {keep}")
        self.root = Path(root)
        self.schema_version = int(schema_version)
        self.feature_names = tuple(feature_names)
        self.keep = keep
        self.lease = lease

    # ------------------------------------------------------------------ what each backend implements

    def current_version(self) -> str | None:  # pragma: no cover - overridden
        """The served version's name (one small read: replicas poll it); None before the first publish."""
        raise NotImplementedError

    def versions(self) -> list[str]:  # pragma: no cover - overridden
        """Every complete version, oldest first."""
        raise NotImplementedError

    def get(self, version: str) -> PublishedModel:  # pragma: no cover - overridden
        """``version`` with its meta, without loading the model; raises NotFound if it does not exist."""
        raise NotImplementedError

    def publish(
        self, model: CatBoost, meta: ModelMeta, *, expect_current: str | None = ANY_CURRENT
    ) -> str:  # pragma: no cover - overridden
        """Write ``model`` as the next version, make it current, prune; returns the version's name. With
        ``expect_current`` (a version, or None for an empty registry), only if that is still the current one
        when the pointer moves (:meth:`_check_current`)."""
        raise NotImplementedError

    def rollback(self) -> str:  # pragma: no cover - overridden
        """Serve the current version's parent again; returns its name."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the registry holds open (a PostgreSQL connection); the file registry holds nothing."""

    # ------------------------------------------------------------------ shared

    def current(self) -> PublishedModel | None:
        """The served version with its meta (schema not checked); None before the first publish."""
        version = self.current_version()
        return None if version is None else self.get(version)

    def load(self, version: str) -> LoadedModel:
        """Read ``version`` into memory. Raises :class:`SchemaMismatch` if it was made for another feature
        schema than this registry's, NotFound if it does not exist (or was pruned meanwhile)."""
        published = self.get(version)
        self._check_schema(version, published.meta.schema_version, published.meta.feature_names)
        try:
            model = CatBoostRanker().load_model(str(published.model_path), format="cbm")
        except CatBoostError as exc:
            if not published.model_path.exists():
                raise NotFound(f"model {version} is not in the registry at {self._where}") from exc
            raise RegistryError(f"model {version}: {MODEL_FILE} cannot be read: {exc}") from exc
        if tuple(model.feature_names_) != published.meta.feature_names:
            raise RegistryError(f"model {version}: {MODEL_FILE} has other feature names than its {META_FILE}")
        return LoadedModel(published.version, published.path, published.meta, model)

    def load_current(self, attempts: int = 3) -> LoadedModel | None:
        """:meth:`load` the served version; None before the first publish. A version pruned between
        reading ``CURRENT`` and loading it (two publishes in between) is retried with the new pointer."""
        for attempt in range(1, attempts + 1):
            version = self.current_version()
            if version is None:
                return None
            try:
                return self.load(version)
            except NotFound:
                if attempt == attempts or self.current_version() == version:
                    raise  # CURRENT still names it: a dangling pointer, not a race
        raise AssertionError("unreachable")

    @property
    def _where(self) -> str:
        return str(self.root)

    def _read_meta(self, version: str, path: Path) -> PublishedModel:
        try:
            meta = ModelMeta.from_dict(json.loads((path / META_FILE).read_text()))
        except FileNotFoundError as exc:
            raise NotFound(f"model {version} is not in the registry at {self._where}") from exc
        except ValueError as exc:
            raise RegistryError(f"model {version} has an unreadable {META_FILE}: {exc}") from exc
        return PublishedModel(version, path, meta)

    def _check_publishable(self, model: CatBoost, meta: ModelMeta) -> None:
        self._check_schema("the model to publish", meta.schema_version, meta.feature_names)
        if not model.is_fitted():
            raise ValueError("`model` must be fitted")
        if tuple(model.feature_names_) != tuple(meta.feature_names):
            raise ValueError("`model` must have the feature names of `meta.feature_names`")

    def _rollback_target(self, version: str | None) -> str:
        """The version :meth:`rollback` serves instead of ``version`` (the current one): its parent, if it is
        still published and of this registry's feature schema. The rules both backends share; each holds its
        own lock around this and the pointer write."""
        if version is None:
            raise RegistryError(f"nothing is published at {self._where}: no version to roll back")
        parent = self.get(version).meta.parent
        if parent is None:
            raise RegistryError(f"model {version} has no parent to roll back to")
        try:
            published = self.get(parent)
        except NotFound as exc:
            raise RegistryError(f"model {version}'s parent {parent} is no longer in the registry") from exc
        if not published.model_path.is_file():  # a half-pruned directory (its meta outlived the model)
            raise RegistryError(f"model {version}'s parent {parent} is no longer in the registry")
        self._check_schema(parent, published.meta.schema_version, published.meta.feature_names)
        return parent

    def _check_current(self, expect_current: str | None, current: str | None) -> None:
        """Raise :class:`~ltrr.errors.Aborted` unless ``expect_current`` is :data:`ANY_CURRENT` or ``current``:
        a trainer that compared its model against one version does not publish over a newer one another
        trainer (the deployment, ``train-ranker``, an ingest's cold start) published meanwhile."""
        if expect_current is not ANY_CURRENT and expect_current != current:
            raise Aborted(
                f"the current model at {self._where} is {current or 'none'}, not {expect_current or 'none'}, "
                "which this model was compared against (another trainer published meanwhile): nothing was written"
            )

    def _require_lease(self) -> None:
        """Raise :class:`~ltrr.errors.Aborted` unless this registry has no lease or holds it now."""
        if self.lease is not None and not self.lease.held:
            raise Aborted(f"the {self.lease.name} lease is not held: nothing was written")

    def _check_schema(self, what: str, schema_version: int, feature_names: Sequence[str]) -> None:
        names = tuple(feature_names)
        if schema_version == self.schema_version and names == self.feature_names:
            return
        theirs = f"feature schema {schema_version} ({len(names)} features)"
        ours = f"schema {self.schema_version} ({len(self.feature_names)} features)"
        detail = ""
        if schema_version == self.schema_version:
            i = next((i for i, (a, b) in enumerate(zip(names, self.feature_names, strict=False)) if a != b), None)
            detail = (
                f": feature {i} is {names[i]!r}, here {self.feature_names[i]!r}"
                if i is not None
                else ": the feature lists differ in length"
            )
        raise SchemaMismatch(f"{what} was made for {theirs}, but this process computes {ours}{detail}")


class ModelRegistry(BaseModelRegistry):
    """The published models in the directory ``root`` (created on first publish; module docstring)."""

    # ------------------------------------------------------------------ reading (no lock)

    def current_version(self) -> str | None:
        """The served version's name, reading only ``CURRENT``; None before the first publish."""
        try:
            name = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def versions(self) -> list[str]:
        """Every complete version, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if _VERSION.match(p.name) and (p / MODEL_FILE).is_file()]
        return sorted(found, key=version_number)

    def get(self, version: str) -> PublishedModel:
        """``version`` with its meta, without loading the model; raises NotFound if it does not exist."""
        version_number(version)
        return self._read_meta(version, self.root / version)

    # ------------------------------------------------------------------ writing (under the lock)

    def publish(self, model: CatBoost, meta: ModelMeta, *, expect_current: str | None = ANY_CURRENT) -> str:
        """Write ``model`` as the next version, make it current, prune; returns the version's name.

        ``meta``'s schema must be this registry's and name the model's features (``version``,
        ``created`` and ``parent`` are filled in here). With a ``lease``, raises
        :class:`~ltrr.errors.Aborted` and writes nothing unless it is held (module docstring, "Fencing");
        with ``expect_current``, the same unless that version is still the current one (under the lock).
        """
        self._check_publishable(model, meta)
        self._require_lease()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._require_lease()
            parent = self.current_version()
            self._check_current(expect_current, parent)
            numbers = [version_number(p.name) for p in self.root.iterdir() if _VERSION.match(p.name)]
            version = version_name(max(numbers, default=0) + 1)
            meta = replace(meta, version=version, created=time.time(), parent=parent)
            tmp = self.root / f"{_TMP}{uuid.uuid4().hex}"
            tmp.mkdir()
            model.save_model(str(tmp / MODEL_FILE), format="cbm")
            _write_durably(tmp / META_FILE, json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
            _fsync_file(tmp / MODEL_FILE)
            fsync_dir(tmp)
            try:
                self._require_lease()  # the last moment before anyone could see it
            except Aborted:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            os.rename(tmp, self.root / version)
            fsync_dir(self.root)
            self._point(version)
            self._prune({version} if parent is None else {version, parent})
        return version

    def rollback(self) -> str:
        """Serve the current version's parent again; returns its name. Raises :class:`RegistryError` if
        nothing is published, the current version has no parent or it was pruned, and
        :class:`SchemaMismatch` if the parent is of another schema (serving could not load it); with a
        ``lease``, :class:`~ltrr.errors.Aborted` unless it is held."""
        if not self.root.is_dir():
            raise RegistryError(f"nothing is published at {self.root}: no version to roll back")
        with self._locked():
            self._require_lease()
            parent = self._rollback_target(self.current_version())
            self._point(parent)
        return parent

    # ------------------------------------------------------------------ private

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / LOCK, "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _point(self, version: str) -> None:
        pointer = self.root / f".{CURRENT}.{uuid.uuid4().hex}"
        _write_durably(pointer, version + "\n")
        os.replace(pointer, self.root / CURRENT)
        fsync_dir(self.root)

    def _prune(self, protected: set[str]) -> None:
        """Remove all but the newest ``keep`` versions (never ``protected``), and what crashed writers left.

        Runs under the lock, so a temporary directory or pointer found here is no live writer's. A reader
        that read ``CURRENT`` just before its version was pruned gets NotFound (:meth:`load_current` retries)."""
        versions = sorted((p.name for p in self.root.iterdir() if _VERSION.match(p.name)), key=version_number)
        for old in versions[: max(0, len(versions) - self.keep)]:
            if old not in protected:  # renamed away first, so no reader sees a half-deleted version
                trash = self.root / f"{_TRASH}{uuid.uuid4().hex}"
                os.rename(self.root / old, trash)
                shutil.rmtree(trash, ignore_errors=True)
        for debris in (*self.root.glob(f"{_TMP}*"), *self.root.glob(f"{_TRASH}*")):
            shutil.rmtree(debris, ignore_errors=True)
        for stale in self.root.glob(f".{CURRENT}.*"):
            stale.unlink(missing_ok=True)


def registry_for(app: AppConfig, *, lease: Lease | None = None) -> ModelRegistry | PgModelRegistry:
    """The model registry ``app`` configures, for the feature schema this ltrr computes: in PostgreSQL when
    a DSN is set (:func:`ltrr.event_store.events_dsn`; ``ranking.model_dir`` is then its local cache), else
    the directory ``ranking.model_dir``. With ``lease`` (the trainer's), publish and rollback are fenced by it."""
    cfg = app.ranking
    kw: dict[str, Any] = {"schema_version": features.SCHEMA_VERSION, "feature_names": features.NAMES, "keep": cfg.keep}
    dsn = events_dsn(app)
    if dsn:
        from ltrr.ranking.registry_pg import PgModelRegistry  # it builds on this module

        return PgModelRegistry(dsn, cache_dir=cfg.model_dir, lease=lease, **kw)
    return ModelRegistry(cfg.model_dir, lease=lease, **kw)


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
