"""The graph retrieval strategy: seeds -> personalised PageRank -> top-k entities.

``search(query, k)``:

1. find the seeds (:func:`graph.seeds.find_seeds`: the "like X" phrase, artist
   names in the text, the tag nodes of the recognised genres and tags, or the
   user's top artists); no seed -> ``[]``;
2. run personalised PageRank from them (:mod:`graph.ppr`; default the local
   push solver, ``solver="power"`` for the converged vector). Tag seeds (the
   genre/tag facets) and the other seeds are walked apart:

   * the tag part is :math:`\\sum_i w_i \\pi(e_i)` over the tag seeds, PPR being
     linear in the restart vector (exact when no seed is dangling; a tag node
     is dangling only if ``kind_weights["tagged"]`` is 0). The vector of
     each tag node is computed once and kept in an LRU cache of
     ``tag_cache_size`` sparse vectors per graph snapshot, as Haveliwala's
     topic-sensitive PageRank precomputes one vector per topic (WWW 2002): a
     tag node has thousands of neighbours and its push costs milliseconds,
     while the tag vocabulary is small. From a tag node the first step goes to
     its neighbours in proportion to the ``tagged`` weight (how many times the
     label was assigned), so the entities most tagged with it come first and
     co-listening (``similar``) then spreads that mass to what their listeners
     play; an artist tagged once gets a sliver;
   * the other seeds (names, profile) are one walk, as before;
   * with both ("radiohead female vocalists"), the score is the weighted
     geometric mean of the two (:func:`graph.ppr.geometric_mix`, weight of the
     tag part = its share of the restart mass, ``facet_mix``): the query asks
     for entities tied to both, and a linear mix would put the tag's most
     tagged artists (Britney Spears) above the female vocalists Radiohead's
     listeners play (Björk, Portishead);
3. return the ``k`` entities with the most PageRank mass, excluding the seeds
   and tag nodes, as :class:`~ltrr.types.Candidate` (score = PPR mass, or the
   geometric mean above; rank 1..k).
   For a seed named in a "like X" phrase (exact or fuzzy match), X's own works
   (``performs`` neighbours: an artist's tracks, a track's artist) are excluded
   too: "songs like radiohead" wants other artists' songs. Names found inside
   the text ("radiohead tracks") and profile seeds keep them.

Result types: ``query.entity_types`` (a hard restriction) intersected with
``query.parsed.types`` when that intersection is not empty; else
``parsed.types``; else the type of the seeds ("like radiohead" -> artists,
"like <a track>" -> tracks; tag seeds and profile seeds -> artists). Tag seeds
vote only when there is no other seed ("shoegaze like creep" follows the track).

Catalog: the store passed as ``store`` (what :func:`ltrr.strategies.registry.make_strategy` passes
from the app's :func:`ltrr.catalog.store.open_catalog`: PostgreSQL when a DSN is configured, else the
SQLite file), owned and closed by the caller; without one, the strategy opens the SQLite file
``catalog_path`` itself and closes it.

Freshness: ``upsert(entities)`` updates node titles and types at once;
relations only reach the graph through ``refresh()``, which applies the store
rows written since the last seen sequence number (the Serve deployment calls
it every ``refresh_interval_s`` seconds so that every replica converges).

Concurrency: searches take no lock. ``refresh`` and ``upsert`` (serialised by a lock) change a
graph that searches never read, then publish a new immutable :class:`~graph.snapshot.GraphSnapshot`
with one attribute assignment; each search reads that attribute once and answers from that
snapshot alone (copy-on-write, see :mod:`graph.snapshot`), so an answer never mixes two states
of the graph.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from graph.build import (
    DEFAULT_KIND_WEIGHTS,
    LoadReport,
    apply_updates,
    load_or_build,
    node_type_of,
    save_cache,
    upsert_entities,
)
from graph.ppr import (
    CsrSnapshot,
    FloatArray,
    IntArray,
    geometric_mix,
    ppr_power,
    ppr_push,
    restart_vector,
    top_k,
)
from graph.seeds import SeedIndex, SeedResult, find_seeds
from graph.snapshot import TYPE_CODE as _TYPE_CODE
from graph.snapshot import GraphSnapshot, take_snapshot, with_entities
from ltrr.catalog.store import CatalogBase, CatalogStore
from ltrr.constants import CATALOG_PATH, VAR_DIR
from ltrr.errors import BackendUnavailable, ConfigError, InvalidRequest
from ltrr.strategies.base import check_k
from ltrr.types import ENTITY_TYPES, Candidate, Entity, Query, UserProfile

log = logging.getLogger(__name__)


class GraphConfig(BaseModel):
    """Configuration of :class:`GraphStrategy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    catalog_path: str = Field(
        default=CATALOG_PATH,
        description="SQLite catalog file the graph is built from when no store is passed (the app's "
        "factories pass the catalog the app configures, PostgreSQL with a DSN).",
    )
    alpha: float = Field(
        default=0.85,
        gt=0.0,
        lt=1.0,
        description="PageRank damping: probability to follow an edge (1 - alpha restarts).",
    )
    solver: Literal["push", "power"] = Field(
        default="push",
        description="'push': local forward push (fast, approximate, see push_eps); 'power': power iteration.",
    )
    push_eps: float = Field(
        default=3e-6, gt=0.0, le=0.01, description="Push solver: stop when every residual r_u < push_eps * degree(u)."
    )
    max_iter: int = Field(default=30, ge=1, le=1000, description="Power solver: maximum number of iterations.")
    tol: float = Field(default=1e-6, gt=0.0, lt=1.0, description="Power solver: stop when the L1 change is below tol.")
    kind_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS),
        description="Relation kind -> weight (>= 0): relative probability that the walk follows an edge of that "
        "kind. Kinds missing here are left out of the graph.",
    )
    walk: Literal["kind", "weight"] = Field(
        default="kind",
        description="'kind': pick a kind by kind weight, then a neighbour by raw weight; 'weight': neighbour "
        "proportional to sum_k kind_weight_k * raw_weight_k.",
    )
    cache_dir: str | None = Field(
        default=f"{VAR_DIR}/graph_cache", description="Directory of the pickled-graph cache; null disables caching."
    )
    refresh_interval_s: float = Field(
        default=30.0, ge=0.0, description="Seconds between refresh() calls by the serving deployment; 0 disables."
    )
    fuzzy_cutoff: float = Field(
        default=0.85, gt=0.0, le=1.0, description="Minimum difflib ratio for a fuzzy seed-title match."
    )
    max_profile_seeds: int = Field(default=10, ge=1, le=100, description="How many of a user's top artists seed.")
    profile_mix: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="Share of restart mass on profile seeds when a personal query also names a seed.",
    )
    facet_mix: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of restart mass on genre/tag seeds when the query also names an entity.",
    )
    tag_cache_size: int = Field(
        default=256,
        ge=0,
        le=100_000,
        description="How many tag-node PPR vectors (sparse) to keep per graph snapshot; 0 disables the cache.",
    )
    progress: bool = Field(default=False, description="Show tqdm progress bars while building the graph.")

    @field_validator("kind_weights")
    @classmethod
    def _check_kind_weights(cls, v: dict[str, float]) -> dict[str, float]:
        for kind, w in v.items():
            if not kind or kind == "weight" or kind.endswith("<"):
                raise ValueError(f"kind names must be relation kinds, got {kind!r}")
            if w < 0:
                raise ValueError(f"weight of kind {kind!r} must be >= 0, got {w}")
        if not any(w > 0 for w in v.values()):
            raise ValueError("at least one kind weight must be > 0")
        return v


class GraphStrategy:
    """Entity-graph retrieval by personalised PageRank (implements :class:`ltrr.strategies.base.Strategy`)."""

    name = "graph"

    def __init__(
        self, config: GraphConfig | Mapping[str, Any] | None = None, store: CatalogBase | None = None
    ) -> None:
        if config is None or isinstance(config, Mapping):
            try:
                config = GraphConfig.model_validate(dict(config or {}))
            except ValueError as exc:
                raise ConfigError(f"invalid graph strategy config: {exc}") from exc
        self.config: GraphConfig = config
        self._own_store = store is None
        where = config.catalog_path if store is None else store.location
        try:
            self._store: CatalogBase = store if store is not None else CatalogStore(config.catalog_path)
            G, report = load_or_build(self._store, config.cache_dir, config.kind_weights, progress=config.progress)
        except (sqlite3.Error, BackendUnavailable) as exc:
            raise BackendUnavailable(f"graph: catalog store {where!r} unreadable: {exc}") from exc
        self.load_report: LoadReport = report
        self._G = G  # the writer's: only refresh, upsert and close touch it, under _lock
        self._lock = threading.RLock()
        self._cache_dirty = False
        #: What searches read (one attribute read per search); replaced whole, never mutated.
        self._snap: GraphSnapshot = self._take_snapshot(SeedIndex.from_graph(G))
        self._last_refresh = time.monotonic()

    # -- internals --------------------------------------------------------------
    def _take_snapshot(self, index: SeedIndex) -> GraphSnapshot:
        cfg = self.config
        return take_snapshot(self._G, cfg.kind_weights, cfg.walk, index, cfg.tag_cache_size)

    def _profile(self, user_id: str) -> UserProfile | None:
        try:
            return self._store.user(user_id)
        except (sqlite3.Error, BackendUnavailable) as exc:
            raise BackendUnavailable(f"graph: user profile lookup failed: {exc}") from exc

    def _result_types(self, snap: GraphSnapshot, query: Query, seeds: SeedResult) -> tuple[str, ...]:
        requested = tuple(t for t in query.entity_types if t in _TYPE_CODE)
        inferred = tuple(t for t in query.parsed.types if t in _TYPE_CODE)
        if requested:
            both = tuple(t for t in requested if t in inferred)
            return both or requested
        if inferred:
            return inferred
        mass: dict[str, float] = {}
        voters = [s for s in seeds.seeds if node_type_of(s.node_id) != "tag"] or seeds.seeds
        for s in voters:
            info = snap.nodes.get(s.node_id)
            t = info.entity_type if info is not None else ""
            t = t if t in _TYPE_CODE else "artist"
            mass[t] = mass.get(t, 0.0) + s.weight
        return (max(mass, key=lambda t: (mass[t], -_TYPE_CODE[t])),) if mass else ENTITY_TYPES

    @staticmethod
    def _own_works(snap: GraphSnapshot, seeds: SeedResult) -> list[str]:
        """Nodes joined by ``performs`` to a seed named in a "like X" phrase (X's own tracks, or its artist)."""
        out: list[str] = []
        for s in seeds.seeds:
            if s.method in ("exact", "fuzzy"):
                out += snap.performs.get(s.node_id, ())
        return out

    def seeds(self, query: Query) -> SeedResult:
        """The seeds :meth:`search` would use for ``query``."""
        return self._seeds(self._snap, query)

    def _seeds(self, snap: GraphSnapshot, query: Query) -> SeedResult:
        cfg = self.config
        return find_seeds(
            query,
            snap.index,
            profile_lookup=self._profile,
            has_node=snap.nodes.__contains__,
            fuzzy_cutoff=cfg.fuzzy_cutoff,
            max_profile_seeds=cfg.max_profile_seeds,
            profile_mix=cfg.profile_mix,
            facet_mix=cfg.facet_mix,
        )

    def _ppr(self, snap: CsrSnapshot, seed_idx: IntArray, seed_w: FloatArray) -> FloatArray:
        cfg = self.config
        if cfg.solver == "push":
            return ppr_push(snap, seed_idx, seed_w, alpha=cfg.alpha, eps=cfg.push_eps)[0]
        return ppr_power(snap, seed_idx, seed_w, alpha=cfg.alpha, max_iter=cfg.max_iter, tol=cfg.tol)[0]

    def _tag_vector(self, snap: GraphSnapshot, i: int) -> tuple[IntArray, FloatArray]:
        """PPR from tag node row ``i`` alone, as sparse ``(rows, mass)``; cached per walk matrix (LRU)."""
        node = snap.csr.nodes[i]
        hit = snap.tag_cache.get(node)
        if hit is not None:
            return hit
        p = self._ppr(snap.csr, np.asarray([i], dtype=np.int64), np.ones(1))
        rows = np.flatnonzero(p)
        vals = p[rows]
        rows.flags.writeable = vals.flags.writeable = False  # shared by every query that hits the cache
        snap.tag_cache.put(node, rows, vals)  # the cache of this snapshot's matrix: never another's
        return rows, vals

    def _scores(self, snap: GraphSnapshot, seed_idx: IntArray, seed_w: FloatArray) -> FloatArray:
        """Scores of every row (see the module docstring, step 2)."""
        csr = snap.csr
        is_tag = np.fromiter((node_type_of(csr.nodes[i]) == "tag" for i in seed_idx), bool, seed_idx.size)
        if not is_tag.any():
            return self._ppr(csr, seed_idx, seed_w)
        tag_mass = float(seed_w[is_tag].sum())
        tags = np.zeros(csr.n, dtype=np.float64)
        for i, w in zip(seed_idx[is_tag].tolist(), seed_w[is_tag].tolist(), strict=True):
            rows, vals = self._tag_vector(snap, i)
            tags[rows] += (w / tag_mass) * vals
        rest = ~is_tag
        rest_mass = float(seed_w[rest].sum())
        if rest_mass <= 0:
            return tags
        walk = self._ppr(csr, seed_idx[rest], seed_w[rest] / rest_mass)
        return geometric_mix(walk, tags, tag_mass / (tag_mass + rest_mass))

    # -- Strategy protocol --------------------------------------------------------
    def search(self, query: Query, k: int) -> list[Candidate]:
        """Top-``k`` entities by PPR mass from the query's seeds; ``[]`` when there is no seed."""
        if not isinstance(query, Query):
            raise InvalidRequest("query", f"must be a Query, got {type(query).__name__}")
        check_k(k)
        bad = [t for t in query.entity_types if t not in _TYPE_CODE]
        if bad:
            raise InvalidRequest("entity_types", f"must be among {list(ENTITY_TYPES)}, got {bad}")
        snap = self._snap  # the one read of the published state: everything below uses only `snap`
        seeds = self._seeds(snap, query)
        if not seeds.seeds:
            return []
        csr = snap.csr
        seed_idx, seed_w = restart_vector(csr, seeds.weights())
        if seed_idx.size == 0:
            return []
        scores = self._scores(snap, seed_idx, seed_w)
        mask = np.isin(snap.codes, [_TYPE_CODE[t] for t in self._result_types(snap, query, seeds)])
        mask[seed_idx] = False
        for node in [s.node_id for s in seeds.seeds] + self._own_works(snap, seeds):  # also seeds of weight 0
            i = csr.index.get(node)
            if i is not None:
                mask[i] = False
        out: list[Candidate] = []
        for rank, i in enumerate(top_k(scores, k, mask), start=1):
            node = csr.nodes[int(i)]
            info = snap.nodes[node]
            out.append(
                Candidate(
                    entity_id=node,
                    entity_type=info.entity_type,
                    title=info.title,
                    subtitle=info.subtitle,
                    score=float(scores[i]),
                    rank=rank,
                )
            )
        return out

    def upsert(self, entities: Sequence[Entity]) -> int:
        """Add or update entity nodes (titles, types, popularity); relations come with :meth:`refresh`."""
        if isinstance(entities, (str, bytes)) or not isinstance(entities, Sequence):
            raise InvalidRequest("entities", f"must be a sequence of Entity, got {type(entities).__name__}")
        bad = [type(e).__name__ for e in entities if not isinstance(e, Entity)]
        if bad:
            raise InvalidRequest("entities", f"must hold only Entity records, got {bad[0]}")
        with self._lock:
            n = upsert_entities(self._G, entities)
            self._snap = with_entities(self._snap, entities)  # copy-on-write, published in one assignment
        return n

    def refresh(self) -> int:
        """Apply store rows written since the last refresh; return how many nodes and edges changed.

        The graph is changed first; searches meanwhile still answer from the previous snapshot, and
        the new one (built from the changed graph) replaces it in one assignment at the end.
        """
        with self._lock:
            changed: list[Entity] = []
            G = self._G
            try:
                n = apply_updates(G, self._store, changed_entities=changed)
            except (sqlite3.Error, BackendUnavailable) as exc:
                # Some rows may be in the graph already; its seq did not move, so the next refresh reads
                # them again, but finds their edges unchanged: mark the walk matrix stale now.
                G.graph["edge_version"] = int(G.graph.get("edge_version", 0)) + 1
                raise BackendUnavailable(f"graph: catalog refresh failed: {exc}") from exc
            snap = with_entities(self._snap, changed, int(G.graph.get("seq", 0)))
            if G.graph.get("edge_version", 0) != snap.csr.edge_version:
                snap = self._take_snapshot(snap.index)
            self._snap = snap
            self._cache_dirty = self._cache_dirty or n > 0
            self._last_refresh = time.monotonic()
        return n

    def maybe_refresh(self) -> int:
        """:meth:`refresh` if ``refresh_interval_s`` (> 0) has passed since the last one, else 0."""
        interval = self.config.refresh_interval_s
        if interval > 0 and time.monotonic() - self._last_refresh >= interval:
            return self.refresh()
        return 0

    def stats(self) -> dict[str, Any]:
        """Sizes and freshness, for health checks and logs."""
        snap = self._snap
        return {
            "nodes": len(snap.nodes),
            "edges": snap.edges,
            "seq": snap.seq,
            "snapshot_nnz": snap.csr.nnz,
            "seed_titles": len(snap.index),
            "tag_vectors_cached": len(snap.tag_cache),
            "loaded_from_cache": self.load_report.loaded,
            "load_seconds": round(self.load_report.seconds, 3),
        }

    def close(self) -> None:
        """Save the graph cache if :meth:`refresh` changed the graph, and close an owned store."""
        with self._lock:
            if self._cache_dirty and self.config.cache_dir is not None:
                try:
                    save_cache(self._G, self._store, self.config.cache_dir)
                    self._cache_dirty = False
                except OSError as exc:
                    log.warning("graph: could not save the cache: %s", exc)
            if self._own_store:
                self._store.close()
