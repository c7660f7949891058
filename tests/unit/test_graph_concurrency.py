"""The graph strategy under fire: searches running while another thread refreshes thousands of times.

Each refresh publishes one *version* ``v`` of a small synthetic catalog, written to the store just
before it: the four artists ``X1..X4`` are retitled ``"Xj v<v>"`` (subtitle ``"v<v>"``), the
weights that rank them flip with the parity of ``v`` (even: X1 first, odd: X4 first), and every fifth
version a new podcast joins the seed playlist (the graph grows, so the seed's adjacency changes size). A search
that reads one snapshot returns the order of one parity with the titles of one version of that
parity; a search that mixes two states of the graph breaks one of these.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from graph.strategy import GraphStrategy
from ltrr.catalog.store import CatalogStore
from ltrr.types import Candidate, Entity, ParsedQuery, Query, Relation

SEED, TAG = "playlist:seed", "tag:t"
XS = tuple(f"artist:x{j}" for j in range(1, 5))
EXPECTED = {0: list(XS), 1: list(reversed(XS))}  # result order by version parity
REFRESHES = 500
GROW_EVERY = 5  # a new podcast every 5th version: the graph grows, and stays small
SEARCHERS = 4


def _version(v: int) -> tuple[list[Entity], list[Relation]]:
    """The store rows of version ``v`` (see the module docstring)."""
    similar = [0.9, 0.7, 0.5, 0.3] if v % 2 == 0 else [0.3, 0.5, 0.7, 0.9]
    tagged = [40.0, 30.0, 20.0, 10.0] if v % 2 == 0 else [10.0, 20.0, 30.0, 40.0]
    entities = [Entity(x, "artist", f"X{j} v{v}", f"v{v}", popularity=50) for j, x in enumerate(XS, start=1)]
    relations = [Relation(SEED, x, "similar", w) for x, w in zip(XS, similar, strict=True)]
    relations += [Relation(x, TAG, "tagged", w) for x, w in zip(XS, tagged, strict=True)]
    if v % GROW_EVERY == 0:
        entities.append(Entity(f"podcast:p{v}", "podcast", f"Pod {v}", popularity=1))
        relations.append(Relation(SEED, f"podcast:p{v}", "performs", 1.0))
    return entities, relations


def _write(store: CatalogStore, v: int) -> None:
    entities, relations = _version(v)
    store.upsert_entities(entities)
    store.upsert_relations(relations)


QUERIES = (
    # a "like X" phrase: exact seed, its own works (the growing ``performs`` neighbours) excluded
    Query("like seedlist", ParsedQuery("like seedlist", "", seed="seedlist"), entity_types=("artist",)),
    # a tag facet: the tag node's cached PPR vector
    Query("t", ParsedQuery("t", "", tags=("t",)), entity_types=("artist",)),
)


def _version_of(result: list[Candidate]) -> int | None:
    """The version ``result`` was computed from, or None if it mixes versions (or is malformed)."""
    subtitles = {c.subtitle for c in result}
    if len(subtitles) != 1 or len(result) != len(XS):
        return None
    v = int(subtitles.pop()[1:])
    ok = (
        [c.entity_id for c in result] == EXPECTED[v % 2]
        and [c.title for c in result] == [f"X{int(c.entity_id[-1])} v{v}" for c in result]
        and [c.rank for c in result] == [1, 2, 3, 4]
        and all(c.entity_type == "artist" for c in result)
    )
    return v if ok else None


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads preempt each other every 0.1 ms (default 5 ms): more interleavings per refresh, and the
    refresher, which releases the GIL at every SQLite call, is not held back 5 ms each time."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_switching")
def test_searches_see_one_snapshot_while_refresh_runs(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity(SEED, "playlist", "Seedlist", popularity=10)])
    _write(store, 0)
    strategy = GraphStrategy({"catalog_path": str(store.path), "cache_dir": None}, store=store)
    for q in QUERIES:
        assert _version_of(strategy.search(q, len(XS))) == 0
    started = threading.Barrier(SEARCHERS + 1)  # the refresher starts once every searcher has searched once
    done = threading.Event()
    errors: list[str] = []
    mixed: list[list[tuple[str, str, str]]] = []
    went_back: list[tuple[int, int]] = []
    seen: set[int] = set()

    def search() -> None:
        last, first = 0, True
        while first or not done.is_set():
            for q in QUERIES:
                try:
                    result = strategy.search(q, len(XS))
                except Exception as exc:  # noqa: BLE001 - counted and asserted below
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                v = _version_of(result)
                if v is None:
                    mixed.append([(c.entity_id, c.title, c.subtitle) for c in result])
                    continue
                if v < last:
                    went_back.append((last, v))
                last = max(last, v)
                seen.add(v)
            if first:
                first = False
                started.wait()

    def refresh() -> None:
        started.wait()
        try:
            for v in range(1, REFRESHES + 1):
                _write(store, v)
                assert strategy.refresh() > 0
        finally:
            done.set()

    threads = [threading.Thread(target=search) for _ in range(SEARCHERS)]
    for t in threads:
        t.start()
    refresh()
    for t in threads:
        t.join()
    final = [_version_of(strategy.search(q, len(XS))) for q in QUERIES]
    strategy.close()
    store.close()
    assert (len(errors), len(mixed)) == (0, 0), (
        f"{len(errors)} searches raised (e.g. {errors[:2]}), {len(mixed)} results mix versions (e.g. {mixed[:1]})"
    )
    assert went_back == [], "a later search saw an older snapshot"
    assert len(seen) > 1, "the searches overlapped the refreshes"
    assert final == [REFRESHES, REFRESHES]


def test_upsert_publishes_a_new_snapshot_and_leaves_the_old_one_alone(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities([Entity(SEED, "playlist", "Seedlist", popularity=10)])
    _write(store, 0)
    strategy = GraphStrategy({"catalog_path": str(store.path), "cache_dir": None}, store=store)
    before = strategy._snap
    strategy.upsert([Entity(XS[0], "artist", "Renamed", "v0"), Entity("artist:new", "artist", "Newcomer")])
    after = strategy._snap
    assert after is not before and after.csr is before.csr  # entities only: the walk matrix is shared
    assert before.nodes[XS[0]].title == "X1 v0" and "artist:new" not in before.nodes
    assert before.index.exact("renamed") == [] and before.index.exact("newcomer") == []
    assert after.nodes[XS[0]].title == "Renamed" and after.index.exact("newcomer") == ["artist:new"]
    assert not before.codes.flags.writeable and not after.codes.flags.writeable
    assert [c.title for c in strategy.search(QUERIES[0], 4)][0] == "Renamed"
    strategy.close()
    store.close()
