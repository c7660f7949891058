"""Entity-graph retrieval: a NetworkX graph of the catalog, expanded by personalised PageRank.

Pure logic, no Ray: :mod:`graph.build` (graph from the catalog store, updates,
cache), :mod:`graph.seeds` (seed finding), :mod:`graph.ppr` (fast PPR solvers),
:mod:`graph.snapshot` (the immutable state a search reads, replaced whole on each change) and
:mod:`graph.strategy` (the :class:`GraphStrategy` retrieval strategy).
"""

from graph.build import apply_updates, build_graph, load_or_build, save_cache
from graph.ppr import CsrSnapshot, build_snapshot, ppr_power, ppr_push
from graph.seeds import Seed, SeedIndex, SeedResult, find_seeds
from graph.snapshot import GraphSnapshot
from graph.strategy import GraphConfig, GraphStrategy

__all__ = [
    "CsrSnapshot",
    "GraphConfig",
    "GraphSnapshot",
    "GraphStrategy",
    "Seed",
    "SeedIndex",
    "SeedResult",
    "apply_updates",
    "build_graph",
    "build_snapshot",
    "find_seeds",
    "load_or_build",
    "ppr_power",
    "ppr_push",
    "save_cache",
]
