"""One limit on a strategy call's ``k``: ``MAX_STRATEGY_K``, checked once by ``check_k``.

Every strategy in the registry is built without its server (the one backend call
is replaced by a recorder; the graph runs in-process on a tiny catalog) and must
accept ``k = MAX_STRATEGY_K`` and reject ``MAX_STRATEGY_K + 1`` with the same message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from graph.strategy import GraphConfig, GraphStrategy
from ltrr import constants as C
from ltrr.catalog.store import CatalogStore
from ltrr.errors import InvalidRequest
from ltrr.strategies._meili import MAX_TOTAL_HITS
from ltrr.strategies.base import Strategy, check_k
from ltrr.strategies.lexical import LexicalConfig, LexicalStrategy
from ltrr.strategies.memory import MemoryConfig, MemoryStrategy
from ltrr.strategies.registry import STRATEGY_NAMES
from ltrr.strategies.vector import VectorConfig, VectorStrategy
from ltrr.types import Entity, ParsedQuery, Query, Relation

#: Milvus's largest ``limit`` (``topk``) of one search.
MILVUS_MAX_TOPK = 16384
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing may be sent there


def test_limits_are_separate_and_servable() -> None:
    assert C.MAX_K == 100  # the response
    assert C.MAX_STRATEGY_K == 1000  # one strategy call
    assert C.MAX_K <= C.MAX_STRATEGY_K <= min(MAX_TOTAL_HITS, MILVUS_MAX_TOPK)


@pytest.mark.parametrize(
    ("k", "name", "message"),
    [
        (0, "k", "k: must be an integer in [1, 1000], got 0"),
        (-5, "k", "k: must be an integer in [1, 1000], got -5"),
        (1001, "k", "k: must be an integer in [1, 1000], got 1001"),
        (True, "k", "k: must be an integer in [1, 1000], got True"),
        (10.0, "k", "k: must be an integer in [1, 1000], got 10.0"),
        ("10", "ks[2]", "ks[2]: must be an integer in [1, 1000], got '10'"),
    ],
)
def test_check_k_rejects(k: Any, name: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as ei:
        check_k(k, name)
    assert str(ei.value) == message


@pytest.mark.parametrize("k", [1, 100, C.MAX_STRATEGY_K])
def test_check_k_accepts(k: int) -> None:
    assert check_k(k) == k


# -- every strategy of the registry ------------------------------------------------------------
def _query(text: str = "like radiohead") -> Query:
    return Query(text=text, parsed=ParsedQuery(text=text, residual=text, seed="radiohead"))


def _lexical(tmp_path: Path, limits: list[int]) -> Strategy:
    st = LexicalStrategy(LexicalConfig(url=NOWHERE))

    def multi_search(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limits.extend(int(p["limit"]) for p in plan)
        return [{"hits": []} for _ in plan]

    st._client.multi_search = multi_search  # type: ignore[method-assign]
    return st


def _memory(tmp_path: Path, limits: list[int]) -> Strategy:
    st = MemoryStrategy(MemoryConfig(url=NOWHERE))

    def search(uid: str, params: dict[str, Any]) -> dict[str, Any]:
        limits.append(int(params["limit"]))
        return {"hits": []}

    st._client.search = search  # type: ignore[method-assign]
    return st


def _vector(tmp_path: Path, limits: list[int]) -> Strategy:
    st = VectorStrategy(VectorConfig(uri=NOWHERE, embedder="hashing"))

    def search_vectors(vectors: Any, limit: int, types: tuple[str, ...]) -> list[list[Any]]:
        limits.append(limit)
        return [[] for _ in range(len(vectors))]

    st._search_vectors = search_vectors  # type: ignore[method-assign]
    return st


def _graph(tmp_path: Path, limits: list[int]) -> Strategy:
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities(
        [Entity("artist:radiohead", "artist", "Radiohead", popularity=90), Entity("artist:muse", "artist", "Muse")]
    )
    store.upsert_relations([Relation("artist:radiohead", "artist:muse", "similar", 0.8)])
    return GraphStrategy(GraphConfig(catalog_path=str(store.path), cache_dir=str(tmp_path / "cache")), store=store)


BUILDERS: dict[str, Callable[[Path, list[int]], Strategy]] = {
    "lexical": _lexical,
    "memory": _memory,
    "vector": _vector,
    "graph": _graph,
}
BACKEND_LIMIT = {"lexical": MAX_TOTAL_HITS, "memory": MAX_TOTAL_HITS, "vector": MILVUS_MAX_TOPK, "graph": None}


def test_every_registered_strategy_is_covered() -> None:
    assert set(BUILDERS) == set(STRATEGY_NAMES)


@pytest.fixture(params=STRATEGY_NAMES)
def built(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Strategy, list[int]]]:
    limits: list[int] = []
    st = BUILDERS[request.param](tmp_path, limits)
    yield request.param, st, limits
    st.close()


def test_strategy_accepts_max_strategy_k(built: tuple[str, Strategy, list[int]]) -> None:
    name, st, limits = built
    got = st.search(_query(), C.MAX_STRATEGY_K)
    assert len(got) <= C.MAX_STRATEGY_K
    if name == "graph":
        assert [c.entity_id for c in got] == ["artist:muse"]  # served in-process, no limit below k
    else:
        assert limits and C.MAX_STRATEGY_K == max(limits) <= BACKEND_LIMIT[name]  # asked for all of k


@pytest.mark.parametrize("k", [0, C.MAX_STRATEGY_K + 1, True])
def test_strategy_rejects_k_above_the_limit(built: tuple[str, Strategy, list[int]], k: int) -> None:
    _, st, limits = built
    with pytest.raises(InvalidRequest) as ei:
        st.search(_query(), k)
    assert str(ei.value) == f"k: must be an integer in [1, 1000], got {k!r}"
    assert limits == []  # rejected before any backend call
