"""Build the entity graph from the catalog, keep it current, and cache it.

The graph is an undirected, weighted :class:`networkx.Graph` whose nodes are
catalog entities (``"<type>:<key>"``) and tag nodes (``"tag:<name>"``).

Node attributes: ``entity_type`` (``"artist"``, ..., or ``"tag"``), ``title``,
``subtitle``, ``popularity``.

Edge attributes. A catalog :class:`~ltrr.types.Relation` is directed
(``src -> dst``) and the store may hold both directions of one pair (Last.fm
similarity is asymmetric). Each undirected edge ``{u, v}`` (``u < v`` as strings)
keeps the raw weight of every relation kind per direction, under the keys
``kind`` (relation ``u -> v``) and ``kind + "<"`` (relation ``v -> u``), and the
combined PageRank weight

.. math::

    w(u, v) = \\sum_{k \\in \\text{kinds}} c_k \\cdot \\max(w_k(u \\to v), w_k(v \\to u))

where :math:`c_k` is the kind weight (``similar`` 1.0, ``tagged`` 0.3, ...), kept
in ``G.graph["kind_weights"]``. Keeping both directions makes updates exact: a
changed relation replaces its own raw value and ``w`` is recomputed.

``G.graph["seq"]`` is the highest store sequence the graph reflects and
``G.graph["edge_version"]`` counts edge changes (a CSR snapshot is stale when its
version differs).

The store is any :class:`~ltrr.catalog.store.CatalogBase` (the SQLite file or the PostgreSQL
catalog, :func:`ltrr.catalog.store.open_catalog`). The pickled cache is keyed on the store's
:attr:`~ltrr.catalog.store.CatalogBase.location` (the resolved file, or the DSN without its
password) and the kind weights, and named by the ``seq`` it reflects: a cache file newer than
the store's ``max_seq()`` is ignored, an older one is loaded and brought up to date.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import networkx as nx
from tqdm import tqdm

from ltrr.catalog.store import CatalogBase, CatalogStore
from ltrr.types import ENTITY_TYPES, Entity, Relation

log = logging.getLogger(__name__)

DEFAULT_KIND_WEIGHTS: Mapping[str, float] = {"similar": 1.0, "tagged": 0.3, "performs": 1.0, "contains": 0.5}
TAG_PREFIX = "tag:"
REVERSE_SUFFIX = "<"
CACHE_VERSION = 1


def node_type_of(node_id: str) -> str:
    """The entity type implied by a node id's prefix (``"tag"`` for tag nodes, ``"unknown"`` otherwise)."""
    prefix = node_id.split(":", 1)[0]
    if prefix == "tag" or prefix in ENTITY_TYPES:
        return prefix
    return "unknown"


def _ensure_node(G: nx.Graph, node_id: str) -> None:
    if node_id not in G:
        ntype = node_type_of(node_id)
        title = node_id[len(TAG_PREFIX) :] if ntype == "tag" else ""
        G.add_node(node_id, entity_type=ntype, title=title, subtitle="", popularity=0.0)


def _set_entity(G: nx.Graph, e: Entity) -> None:
    G.add_node(
        e.entity_id, entity_type=e.entity_type, title=e.title, subtitle=e.subtitle, popularity=float(e.popularity)
    )


def _combined_weight(attrs: Mapping[str, float], kind_weights: Mapping[str, float]) -> float:
    total = 0.0
    for kind, c in kind_weights.items():
        fwd = attrs.get(kind)
        rev = attrs.get(kind + REVERSE_SUFFIX)
        if fwd is None and rev is None:
            continue
        total += c * max(fwd if fwd is not None else 0.0, rev if rev is not None else 0.0)
    return total


def _apply_relation(G: nx.Graph, r: Relation, kind_weights: Mapping[str, float]) -> bool:
    """Write one relation into ``G``; return True if an edge changed."""
    if r.src == r.dst or r.kind not in kind_weights:
        return False
    _ensure_node(G, r.src)
    _ensure_node(G, r.dst)
    key = r.kind if r.src < r.dst else r.kind + REVERSE_SUFFIX
    if G.has_edge(r.src, r.dst):
        attrs = G[r.src][r.dst]
        if attrs.get(key) == float(r.weight):
            return False
        attrs[key] = float(r.weight)
    else:
        G.add_edge(r.src, r.dst, **{key: float(r.weight)})
        attrs = G[r.src][r.dst]
    attrs["weight"] = _combined_weight(attrs, kind_weights)
    return True


def _validate_kind_weights(kind_weights: Mapping[str, float] | None) -> dict[str, float]:
    kw = dict(DEFAULT_KIND_WEIGHTS if kind_weights is None else kind_weights)
    for kind, c in kw.items():
        if kind == "weight" or kind.endswith(REVERSE_SUFFIX) or not kind:
            raise ValueError(f"`kind_weights` keys must be relation kinds, got {kind!r}")
        if not c >= 0.0:
            raise ValueError(f"`kind_weights[{kind!r}]` must be >= 0, got {c}")
    return kw


def build_graph(
    store: CatalogBase, kind_weights: Mapping[str, float] | None = None, progress: bool = False
) -> nx.Graph:
    """Build the whole graph from ``store`` (every entity, every relation).

    Relations whose kind has no weight in ``kind_weights`` are skipped; a kind
    weight of 0 keeps the edge in the graph but gives it no PageRank weight.
    """
    kw = _validate_kind_weights(kind_weights)
    G = nx.Graph(kind_weights=kw, seq=0, edge_version=0)
    apply_updates(G, store, since_seq=0, progress=progress)
    return G


def apply_updates(
    G: nx.Graph,
    store: CatalogBase,
    since_seq: int | None = None,
    progress: bool = False,
    changed_entities: list[Entity] | None = None,
) -> int:
    """Apply store rows with ``seq > since_seq`` (default ``G.graph["seq"]``) to ``G``.

    Entities add or update node attributes (and are appended to
    ``changed_entities`` when given); relations add or update edges.
    Returns how many nodes and edges changed. ``G.graph["seq"]`` becomes the
    store's ``max_seq()`` read *before* the rows, so rows written concurrently
    are picked up by the next call (re-applying a row is a no-op).
    """
    since = int(G.graph.get("seq", 0) if since_seq is None else since_seq)
    if since < 0:
        raise ValueError(f"`since_seq` must be >= 0, got {since}")
    kw: Mapping[str, float] = G.graph.setdefault("kind_weights", dict(DEFAULT_KIND_WEIGHTS))
    high = store.max_seq()
    changed = 0
    bar = tqdm(desc="graph: entities", unit="ent", disable=not progress, leave=False)
    for _, batch in store.entities_since(since):
        for e in batch:
            _set_entity(G, e)
        if changed_entities is not None:
            changed_entities.extend(batch)
        changed += len(batch)
        bar.update(len(batch))
    bar.close()
    edges_changed = 0
    for r in tqdm(store.relations_since(since), desc="graph: relations", unit="rel", disable=not progress, leave=False):
        edges_changed += _apply_relation(G, r, kw)
    if edges_changed:
        G.graph["edge_version"] = int(G.graph.get("edge_version", 0)) + 1
    G.graph["seq"] = max(high, since)
    return changed + edges_changed


def upsert_entities(G: nx.Graph, entities: Iterable[Entity]) -> int:
    """Add or update entity nodes (attributes only); return how many were written."""
    n = 0
    for e in entities:
        _set_entity(G, e)
        n += 1
    return n


# -- cache --------------------------------------------------------------------


@dataclass(frozen=True)
class LoadReport:
    """How :func:`load_or_build` obtained the graph."""

    loaded: bool
    cache_file: str
    cached_seq: int
    applied: int
    seconds: float


def cache_key(store: CatalogBase, kind_weights: Mapping[str, float]) -> str:
    """A short hash of the store's :attr:`~ltrr.catalog.store.CatalogBase.location` and the kind weights.

    A SQLite file's location is resolved first (a relative path or a symlink is the same file), which
    keeps the keys of caches written when this hashed the file path; a PostgreSQL catalog's is its
    DSN without the password, so another database, server or user is another key.
    """
    location = str(Path(store.location).resolve()) if isinstance(store, CatalogStore) else store.location
    blob = json.dumps({"path": location, "kw": dict(sorted(kind_weights.items()))})
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


def _cache_files(cache_dir: Path, key: str) -> list[tuple[int, Path]]:
    out: list[tuple[int, Path]] = []
    for p in cache_dir.glob(f"graph-{key}-*.pkl"):
        try:
            out.append((int(p.stem.rsplit("-", 1)[1]), p))
        except ValueError:
            continue
    return sorted(out)


def save_cache(G: nx.Graph, store: CatalogBase, cache_dir: str | Path) -> Path:
    """Pickle ``G``, built from ``store``, to ``cache_dir/graph-<key>-<seq>.pkl`` (atomic, key
    :func:`cache_key`) and drop older files of the same key."""
    cdir = Path(cache_dir)
    cdir.mkdir(parents=True, exist_ok=True)
    key = cache_key(store, G.graph["kind_weights"])
    seq = int(G.graph.get("seq", 0))
    target = cdir / f"graph-{key}-{seq}.pkl"
    fd, tmp = tempfile.mkstemp(dir=cdir, prefix=".graph-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump({"version": CACHE_VERSION, "seq": seq, "graph": G}, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for s, p in _cache_files(cdir, key):
        if s < seq:
            p.unlink(missing_ok=True)
    return target


def _try_save(G: nx.Graph, store: CatalogBase, cache_dir: str | Path) -> str:
    """:func:`save_cache`, but a cache that cannot be written only costs a warning."""
    try:
        return str(save_cache(G, store, cache_dir))
    except OSError as exc:
        log.warning("graph cache not written to %s: %s", cache_dir, exc)
        return ""


def load_or_build(
    store: CatalogBase,
    cache_dir: str | Path | None,
    kind_weights: Mapping[str, float] | None = None,
    progress: bool = False,
) -> tuple[nx.Graph, LoadReport]:
    """Load the newest cached graph for this store (then apply newer store rows) or build it.

    A cache file newer than the store (``seq > store.max_seq()``, e.g. the store
    was rebuilt) is ignored. A fresh build is saved to the cache (a cache that
    cannot be written is logged and skipped).
    """
    kw = _validate_kind_weights(kind_weights)
    t0 = time.perf_counter()
    if cache_dir is not None:
        cdir = Path(cache_dir)
        high = store.max_seq()
        for seq, path in reversed(_cache_files(cdir, cache_key(store, kw))):
            if seq > high:
                continue
            try:
                with path.open("rb") as fh:
                    blob = pickle.load(fh)
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
                log.warning("graph cache %s unreadable (%s); ignoring it", path, exc)
                continue
            if not isinstance(blob, dict) or blob.get("version") != CACHE_VERSION:
                continue
            G = blob["graph"]
            applied = apply_updates(G, store, progress=progress)
            if applied:
                _try_save(G, store, cdir)
            return G, LoadReport(True, str(path), seq, applied, time.perf_counter() - t0)
    G = build_graph(store, kw, progress=progress)
    path_s = ""
    if cache_dir is not None:
        path_s = _try_save(G, store, cache_dir)
    return G, LoadReport(False, path_s, 0, G.number_of_nodes() + G.number_of_edges(), time.perf_counter() - t0)
