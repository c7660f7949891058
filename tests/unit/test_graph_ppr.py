"""Personalised PageRank solvers against networkx, and the kind-balanced walk by hand."""

from __future__ import annotations

import random

import networkx as nx
import numpy as np
import pytest

from graph.ppr import build_snapshot, geometric_mix, ppr_power, ppr_push, restart_vector, top_k


def _random_graph(seed: int) -> nx.Graph:
    rnd = random.Random(seed)
    G = nx.gnm_random_graph(40, 90, seed=seed)
    G = nx.relabel_nodes(G, {u: f"artist:{u}" for u in G})
    for u, v in G.edges:
        G[u][v]["weight"] = round(rnd.uniform(0.1, 2.0), 3)
    G.add_node("artist:isolated")  # a dangling node
    return G


def _as_vector(snap, d: dict[str, float]) -> np.ndarray:
    x = np.zeros(snap.n)
    for node, val in d.items():
        x[snap.index[node]] = val
    return x


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.5, 0.85])
def test_power_matches_networkx_weight_mode(seed: int, alpha: float) -> None:
    G = _random_graph(seed)
    seeds = {"artist:3": 2.0, "artist:17": 1.0}
    ref = nx.pagerank(G, alpha=alpha, personalization=seeds, tol=1e-14, max_iter=2000)
    snap = build_snapshot(G, mode="weight")
    idx, w = restart_vector(snap, seeds)
    assert dict(zip(idx.tolist(), w.tolist(), strict=True)) == pytest.approx(
        {snap.index["artist:3"]: 2 / 3, snap.index["artist:17"]: 1 / 3}
    )
    pi, iters = ppr_power(snap, idx, w, alpha=alpha, max_iter=2000, tol=1e-13)
    assert iters < 2000
    np.testing.assert_allclose(pi, _as_vector(snap, ref), atol=1e-9, rtol=0)
    assert pi.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2])
def test_push_matches_networkx_with_tiny_eps(seed: int) -> None:
    G = _random_graph(seed)
    seeds = {"artist:5": 1.0, "artist:isolated": 0.5}  # a dangling seed sends mass back to the seeds
    ref = _as_vector(build_snapshot(G, mode="weight"), nx.pagerank(G, personalization=seeds, tol=1e-14, max_iter=2000))
    snap = build_snapshot(G, mode="weight")
    p, pushes = ppr_push(snap, *restart_vector(snap, seeds), eps=1e-13)
    assert pushes > 0
    np.testing.assert_allclose(p, ref, atol=1e-6, rtol=0)


def test_push_is_a_lower_bound_with_exact_l1_error() -> None:
    G = _random_graph(7)
    snap = build_snapshot(G, mode="weight")
    idx, w = restart_vector(snap, {"artist:0": 1.0})
    pi, _ = ppr_power(snap, idx, w, max_iter=5000, tol=1e-14)
    p, _ = ppr_push(snap, idx, w, eps=1e-3)
    assert np.all(p <= pi + 1e-12)
    # mass is conserved by every push, so ||pi - p||_1 is exactly the residual left, 1 - sum(p)
    assert float(np.abs(pi - p).sum()) == pytest.approx(1.0 - p.sum(), abs=1e-9)
    assert 0.0 < 1.0 - p.sum() < 0.2


def test_kind_mode_transition_by_hand() -> None:
    G = nx.Graph(kind_weights={"similar": 1.0, "tagged": 0.3})
    G.add_edge("artist:a", "artist:b", similar=0.8)
    G.add_edge("artist:a", "artist:c", **{"similar<": 0.2})  # reverse direction only: raw weight still 0.2
    G.add_edge("artist:a", "tag:x", tagged=5.0)
    G.add_edge("artist:b", "tag:x", tagged=15.0)
    snap = build_snapshot(G)
    P = snap.P.toarray()
    a, b, c, x = (snap.index[n] for n in ("artist:a", "artist:b", "artist:c", "tag:x"))
    # from a: kinds {similar, tagged}: similar share 1/1.3 split 0.8 : 0.2; tagged share 0.3/1.3
    assert P[a, b] == pytest.approx(0.8 / 1.3)
    assert P[a, c] == pytest.approx(0.2 / 1.3)
    assert P[a, x] == pytest.approx(0.3 / 1.3)
    # from b: similar -> a (only similar edge), tagged -> x
    assert P[b, a] == pytest.approx(1 / 1.3)
    assert P[b, x] == pytest.approx(0.3 / 1.3)
    # from c: only one kind -> all mass to a; from the tag: by tag count 5 : 15
    assert P[c, a] == pytest.approx(1.0)
    assert P[x, a] == pytest.approx(0.25)
    assert P[x, b] == pytest.approx(0.75)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    # and the solver agrees with networkx on the equivalent directed graph
    D = nx.DiGraph()
    D.add_nodes_from(snap.nodes)
    for i, j in zip(*np.nonzero(P), strict=True):
        D.add_edge(snap.nodes[i], snap.nodes[j], weight=P[i, j])
    ref = nx.pagerank(D, personalization={"artist:a": 1.0}, tol=1e-14, max_iter=2000)
    pi, _ = ppr_power(snap, *restart_vector(snap, {"artist:a": 1.0}), max_iter=2000, tol=1e-13)
    np.testing.assert_allclose(pi, _as_vector(snap, ref), atol=1e-9)


def test_zero_kind_weight_drops_edges_and_makes_dangling() -> None:
    G = nx.Graph()
    G.add_edge("artist:a", "tag:x", tagged=1.0)
    snap = build_snapshot(G, kind_weights={"similar": 1.0, "tagged": 0.0})
    assert snap.nnz == 0
    assert snap.dangling.all()
    pi, _ = ppr_power(snap, *restart_vector(snap, {"artist:a": 1.0}))
    assert pi[snap.index["artist:a"]] == pytest.approx(1.0)


def test_restart_vector_drops_unknown_and_non_positive_seeds() -> None:
    G = _random_graph(1)
    snap = build_snapshot(G, mode="weight")
    idx, w = restart_vector(snap, {"artist:1": 3.0, "artist:nope": 1.0, "artist:2": 0.0})
    assert idx.tolist() == [snap.index["artist:1"]]
    assert w.tolist() == [1.0]
    idx, w = restart_vector(snap, {"artist:nope": 1.0})
    assert idx.size == 0 and w.size == 0


def test_top_k_order_mask_and_ties() -> None:
    scores = np.array([0.1, 0.5, 0.0, 0.5, 0.3, 0.2])
    assert top_k(scores, 3).tolist() == [1, 3, 4]  # tie 0.5 broken by index
    assert top_k(scores, 10).tolist() == [1, 3, 4, 5, 0]  # zero scores are never returned
    mask = np.array([True, False, True, True, False, True])
    assert top_k(scores, 2, mask).tolist() == [3, 5]


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="`mode` must be 'kind' or 'weight', got 'nope'"):
        build_snapshot(nx.Graph(), mode="nope")  # type: ignore[arg-type]


def test_self_loop_counts_once_like_networkx() -> None:
    G = _random_graph(4)
    G.add_edge("artist:1", "artist:1", weight=3.0)
    seeds = {"artist:1": 1.0}
    snap = build_snapshot(G, mode="weight")
    ref = nx.pagerank(G, personalization=seeds, tol=1e-14, max_iter=2000)
    pi, _ = ppr_power(snap, *restart_vector(snap, seeds), max_iter=2000, tol=1e-13)
    np.testing.assert_allclose(pi, _as_vector(snap, ref), atol=1e-9)


def test_directed_graph_is_rejected() -> None:
    with pytest.raises(ValueError, match="`G` must be an undirected nx.Graph, got DiGraph"):
        build_snapshot(nx.DiGraph())


def test_geometric_mix_by_hand() -> None:
    a = np.array([0.7, 0.1, 0.0, 0.0, 0.3])
    b = np.array([0.0, 0.1, 0.2, 0.0, 0.3])
    # floors f_a = f_b = 0.1; t = 0.5: sqrt(0.7 * 0.1), sqrt(0.1 * 0.1), sqrt(0.1 * 0.2), 0 (unreached), sqrt(0.3 * 0.3)
    m = geometric_mix(a, b, 0.5)
    np.testing.assert_allclose(m, [np.sqrt(0.07), 0.1, np.sqrt(0.02), 0.0, 0.3], rtol=1e-12, atol=0)
    # node 4, fair on both sides, beats node 0, strong on one only; the linear mix (0.35 vs 0.3) does the opposite
    assert m[4] > m[0] and (0.5 * a + 0.5 * b)[4] < (0.5 * a + 0.5 * b)[0]
    # t = 0.25: 0.7^0.75 * 0.1^0.25
    assert geometric_mix(a, b, 0.25)[0] == pytest.approx(0.7**0.75 * 0.1**0.25, rel=1e-12)
    # t = 0 keeps a's order (a node only b reached gets a's floor)
    np.testing.assert_allclose(geometric_mix(a, b, 0.0), [0.7, 0.1, 0.1, 0.0, 0.3], rtol=1e-12)
    # an empty side: the other vector as is
    np.testing.assert_array_equal(geometric_mix(a, np.zeros(5), 0.5), a)
    np.testing.assert_array_equal(geometric_mix(np.zeros(5), b, 0.5), b)


@pytest.mark.parametrize("t", [-0.1, 1.5])
def test_geometric_mix_rejects_bad_t(t: float) -> None:
    with pytest.raises(ValueError) as exc:
        geometric_mix(np.ones(2), np.ones(2), t)
    assert str(exc.value) == f"`t` must be in [0, 1], got {t}"
