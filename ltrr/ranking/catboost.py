"""The learned ranker: a CatBoost model over :mod:`ltrr.ranking.features`, and its hot swap.

Scoring runs in-process in each ingress replica. CatBoost's ``predict`` on 200
rows costs about 0.5 ms on one core once its input Pool is built with one thread
(0.9 ms otherwise), while a Serve hop to a scoring deployment costs several
milliseconds on 2 cores, so there is no separate scoring deployment.

:class:`LiveRanker` serves the registry's current model and swaps in a newly
published one without a failed or slowed request: a background task loads the
new model (seconds at most, off the request path) and then replaces one
reference; a search takes the reference once, so its order and its
``ranker_version`` come from the same model. If no model is published, or the
published one cannot be loaded (another feature schema, a corrupt file), the
fallback (RRF) serves and the reason is logged and reported in :meth:`LiveRanker.status`.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
from catboost import CatBoost, Pool

from ltrr.fusion import FusedCandidate
from ltrr.ranking import features as F
from ltrr.ranking.base import Ranker
from ltrr.ranking.features import SchemaMismatch
from ltrr.ranking.registry import BaseModelRegistry

log = logging.getLogger("ltrr.ranking")


class CatBoostRanker:
    """Scores with a trained CatBoost model; ``version`` is its registry version."""

    def __init__(self, model: CatBoost, version: str, meta: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.version = version
        self.meta = dict(meta or {})
        n = len(model.feature_names_ or [])
        if n and n != F.DIM:
            raise SchemaMismatch(f"model {version} takes {n} features; schema {F.SCHEMA_VERSION} has {F.DIM}")

    @classmethod
    def from_registry(cls, registry: BaseModelRegistry, version: str) -> CatBoostRanker:
        """Load ``version`` (the registry refuses a model of another feature schema)."""
        loaded = registry.load(version)
        return cls(loaded.model, loaded.version, loaded.meta.to_dict())

    def score(self, x: np.ndarray, candidates: Sequence[FusedCandidate]) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        # One thread for the Pool too: by default building it starts a pool of every core's threads,
        # which cost 0.7 ms of the 0.9 ms a 200-row predict took.
        pool = Pool(np.ascontiguousarray(x, dtype=np.float32), thread_count=1)
        return np.asarray(self.model.predict(pool, thread_count=1), dtype=float)  # a ranker's raw score


class LiveRanker:
    """The registry's current model, or ``fallback``; :meth:`refresh` picks up a newly published one.

    ``registry`` needs ``current_version() -> str | None`` (cheap: a pointer file) and
    ``load(version)`` (:class:`ltrr.ranking.registry.BaseModelRegistry`: files or PostgreSQL).
    """

    def __init__(self, registry: Any, fallback: Ranker) -> None:
        self.registry = registry
        self.fallback = fallback
        self._ranker: Ranker = fallback
        self._seen: str | None = None  # the registry version last tried, loaded or not
        self.error = ""

    def current(self) -> Ranker:
        return self._ranker

    @property
    def version(self) -> str:
        return self._ranker.version

    def refresh(self) -> bool:
        """Load the registry's current model if it changed; True if the serving ranker changed.
        Blocking (file reads, model load): call it off the request path."""
        try:
            version = self.registry.current_version()
        except Exception as exc:  # noqa: BLE001 - an unreadable registry keeps what serves
            self.error = f"registry unreadable: {exc}"
            return False
        if version == self._seen:
            return False
        self._seen = version
        if version is None:
            changed, self._ranker, self.error = self._ranker is not self.fallback, self.fallback, ""
            return changed
        try:
            ranker = CatBoostRanker.from_registry(self.registry, version)
        except Exception as exc:  # noqa: BLE001 - a model that cannot serve must not take searches down
            self.error = f"cannot load ranker {version}: {exc}; serving {self.fallback.version}"
            log.error("%s", self.error)
            self._ranker = self.fallback
            return True
        self._ranker, self.error = ranker, ""
        log.info("ranker: now serving %s", ranker.version)
        return True

    def status(self) -> dict[str, Any]:
        return {"ranker_version": self.version, "registry_version": self._seen, "error": self.error}
