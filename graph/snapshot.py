"""The immutable state a graph search reads: one :class:`GraphSnapshot`, replaced whole on every change.

Copy-on-write. The writer (``refresh``, ``upsert``, under the strategy's lock) keeps the
:class:`networkx.Graph` to itself and mutates it in place; searches never touch it. After each
change the writer derives a new :class:`GraphSnapshot` from the graph, off to the side, and
publishes it with one attribute assignment (atomic in CPython). A search reads that attribute
once, at its start, and uses only the snapshot it got, so every part of one answer (seeds, walk
matrix, types, titles) comes from the same state of the graph, and nothing it reads is written
while it runs. A snapshot is never mutated once published, except for its tag-vector cache, a
memo of pure functions of its walk matrix (:class:`TagCache`, under its own lock).

What a change costs (``n`` nodes, ``m`` edges):

* an edge change (:func:`take_snapshot`): the CSR walk matrix, type codes, node table and
  ``performs`` lists are rebuilt, :math:`O(n + m)`, as the walk matrix always was;
* entities only (:func:`with_entities`): the node table, type codes and seed index are copied
  (:math:`O(n)` pointer copies) and the changed entities written into the copies; the walk
  matrix and its tag-vector cache are shared with the previous snapshot.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping

import networkx as nx
import numpy as np
import numpy.typing as npt

from graph.build import REVERSE_SUFFIX
from graph.ppr import CsrSnapshot, FloatArray, IntArray, Mode, build_snapshot
from graph.seeds import SeedIndex
from ltrr.types import ENTITY_TYPES, Entity

#: Entity type -> code in :attr:`GraphSnapshot.codes` (-1: a tag or unknown node).
TYPE_CODE: Mapping[str, int] = {t: i for i, t in enumerate(ENTITY_TYPES)}
#: Pending seed-index titles that trigger :meth:`SeedIndex.compact` before a snapshot is published.
COMPACT_PENDING = 256


@dataclass(frozen=True)
class NodeInfo:
    """What a result shows of one node."""

    entity_type: str
    title: str
    subtitle: str


class TagCache:
    """An LRU cache of tag-node PPR vectors (sparse ``(rows, mass)``, read-only arrays) for one walk
    matrix; thread-safe. ``size`` 0 stores nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[IntArray, FloatArray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, node: str) -> tuple[IntArray, FloatArray] | None:
        with self._lock:
            hit = self._items.get(node)
            if hit is not None:
                self._items.move_to_end(node)
            return hit

    def put(self, node: str, rows: IntArray, vals: FloatArray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[node] = (rows, vals)
            self._items.move_to_end(node)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class GraphSnapshot:
    """One state of the graph, as searches read it (see the module docstring).

    ``csr`` is the walk matrix, ``codes`` (``csr.n``, read-only) the :data:`TYPE_CODE` of each of
    its rows, ``nodes`` every node of the graph (also those not in ``csr`` yet: entities upserted
    since the last edge change), ``performs`` each node's ``performs`` neighbours (either
    direction; both mappings read-only), ``index`` the seed index (never mutated once published),
    ``tag_cache`` the memo of ``csr``'s tag vectors (shared by the snapshots that share ``csr``).
    ``seq`` is the highest store sequence reflected, ``edges`` the graph's edge count.
    """

    csr: CsrSnapshot
    codes: npt.NDArray[np.int8]
    nodes: Mapping[str, NodeInfo]
    performs: Mapping[str, tuple[str, ...]]
    index: SeedIndex
    tag_cache: TagCache
    seq: int
    edges: int


def _info(attrs: Mapping[str, object]) -> NodeInfo:
    return NodeInfo(str(attrs.get("entity_type", "")), str(attrs.get("title", "")), str(attrs.get("subtitle", "")))


def _readonly(a: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    a.flags.writeable = False
    return a


def take_snapshot(
    G: nx.Graph, kind_weights: Mapping[str, float], walk: Mode, index: SeedIndex, tag_cache_size: int
) -> GraphSnapshot:
    """A snapshot of all of ``G`` with a new walk matrix and an empty tag cache, and ``index`` as its
    seed index (as it is: a published index is shared, never changed)."""
    csr = build_snapshot(G, kind_weights, walk)
    node_attrs = G.nodes
    codes = np.fromiter(
        (TYPE_CODE.get(str(node_attrs[u].get("entity_type", "")), -1) for u in csr.nodes), dtype=np.int8, count=csr.n
    )
    performs: dict[str, list[str]] = {}
    for u, v, a in G.edges(data=True):
        if "performs" in a or "performs" + REVERSE_SUFFIX in a:
            performs.setdefault(u, []).append(v)
            performs.setdefault(v, []).append(u)
    return GraphSnapshot(
        csr=csr,
        codes=_readonly(codes),
        nodes=MappingProxyType({u: _info(a) for u, a in G.nodes(data=True)}),
        performs=MappingProxyType({u: tuple(vs) for u, vs in performs.items()}),
        index=index,
        tag_cache=TagCache(tag_cache_size),
        seq=int(G.graph.get("seq", 0)),
        edges=G.number_of_edges(),
    )


def with_entities(snap: GraphSnapshot, entities: Iterable[Entity], seq: int | None = None) -> GraphSnapshot:
    """``snap`` with ``entities``' types and titles written (into copies), the same walk matrix and
    tag cache, and ``seq`` (default ``snap.seq``); ``snap`` itself is not changed."""
    ents = list(entities)
    if not ents:
        return snap if seq is None or seq == snap.seq else dataclasses.replace(snap, seq=seq)
    nodes = dict(snap.nodes)
    codes = snap.codes.copy()
    index = snap.index.copy()
    for e in ents:
        nodes[e.entity_id] = NodeInfo(e.entity_type, e.title, e.subtitle)
        index.add(e.entity_id, e.title, e.entity_type, e.popularity)
        i = snap.csr.index.get(e.entity_id)
        if i is not None:
            codes[i] = TYPE_CODE.get(e.entity_type, -1)
    if index.pending >= COMPACT_PENDING:
        index.compact()
    return dataclasses.replace(
        snap,
        codes=_readonly(codes),
        nodes=MappingProxyType(nodes),
        index=index,
        seq=snap.seq if seq is None else seq,
    )
