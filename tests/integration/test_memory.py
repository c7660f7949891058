"""Memory strategy against a real Meilisearch: cold start, click feedback, atomicity, durability."""

from __future__ import annotations

import threading
from typing import Iterator

import pytest

from ltrr.backends.meili_server import MeiliServer
from ltrr.errors import BackendUnavailable, NotFound
from ltrr.strategies.base import Strategy
from ltrr.strategies.memory import MemoryConfig, MemoryStrategy
from ltrr.types import Entity, ParsedQuery, Query

pytestmark = pytest.mark.integration

E = Entity
CATALOG = [
    E("artist:radiohead", "artist", "Radiohead", tags=("alternative",), popularity=80),
    E("track:creep", "track", "Creep", "Radiohead", tags=("alternative",), popularity=90),
    E("track:sad", "track", "Sad Song", "The Velvet Underground", tags=("sad",), popularity=40),
    E("track:songs", "track", "Best Songs Ever", "Compilation Crew", popularity=30),
    E("track:hurts", "track", "Everybody Hurts", "R.E.M.", tags=("melancholy",), popularity=70),
    E(
        "podcast:crime",
        "podcast",
        "Crime Junkie",
        genres=("True Crime",),
        popularity=65,
        attrs={"publisher": "audiochuck"},
    ),
]


def Q(text: str, types: tuple[str, ...] = ()) -> Query:
    return Query(text=text, parsed=ParsedQuery(text=text, residual=text), entity_types=types)


def ids(cands: list) -> list[str]:  # type: ignore[type-arg]
    return [c.entity_id for c in cands]


def make(server: MeiliServer, index: str = "ltrr_queries") -> MemoryStrategy:
    return MemoryStrategy(MemoryConfig(url=server.url, api_key=server.api_key, index=index))


@pytest.fixture
def memory(meili_server: MeiliServer, meili_index_prefix: str) -> Iterator[MemoryStrategy]:
    s = make(meili_server, f"{meili_index_prefix}queries")
    assert s.upsert(CATALOG) == len(CATALOG)
    yield s
    s._client.delete_index(s.config.index)
    s.close()


def test_cold_start_finds_entities_by_predicted_queries(memory: MemoryStrategy) -> None:
    assert isinstance(memory, Strategy) and memory.name == "memory"
    assert memory.count() == 16  # 3 + 3 + 3 + 2 + 3 + 2 predicted queries (see predict_queries)
    out = memory.search(Q("creep radiohead"), 3)
    assert out[0].entity_id == "track:creep" and out[0].rank == 1 and out[0].title == "Creep"
    assert memory.search(Q("crime junkie audiochuk"), 1)[0].entity_id == "podcast:crime"  # typo tolerant
    assert ids(memory.search(Q("radiohead", ("artist",)), 5)) == ["artist:radiohead"]
    assert memory.search(Q("?!"), 5) == []


def test_clicks_teach_a_new_query(memory: MemoryStrategy) -> None:
    before = memory.search(Q("best sad songs"), 5)
    assert "track:hurts" not in ids(before)
    assert memory.stats("best sad song")["seen"] is False
    for _ in range(3):
        memory.record("Best sad song", "track:hurts")  # metadata taken from its predicted queries
    after = memory.search(Q("best sad songs"), 5)
    assert after[0].entity_id == "track:hurts" and after[0].title == "Everybody Hurts"
    assert memory.stats("best  SAD song!") == {
        "query": "best sad song",
        "seen": True,
        "clicks": 3.0,
        "clicked_entities": 1,
        "predicted": 0,
    }
    assert memory.stats("sad song")["predicted"] == 1


def test_record_needs_entity_metadata(memory: MemoryStrategy) -> None:
    with pytest.raises(NotFound, match="'track:new' has no memory documents; pass `entity`"):
        memory.record("brand new", "track:new")
    new = E("track:new", "track", "Brand New Thing", "Nobody")
    memory.record("brand new", "track:new", weight=2.5, entity=new)
    assert memory.stats("brand new")["clicks"] == 2.5
    assert memory.search(Q("brand new"), 1)[0].entity_id == "track:new"


def test_reingest_replaces_predictions_and_keeps_clicks(memory: MemoryStrategy) -> None:
    memory.record("that creep song", "track:creep", weight=2.0)
    renamed = E("track:creep", "track", "Creep Acoustic", "Radiohead", popularity=90)
    memory.upsert([renamed])
    assert memory.stats("creep alternative")["predicted"] == 0  # the old tag query is gone
    assert memory.stats("creep acoustic")["predicted"] == 1
    assert memory.stats("that creep song")["clicks"] == 2.0
    memory.upsert([renamed])  # idempotent
    assert memory.count() == 16 - 3 + 2 + 1


def test_concurrent_records_are_atomic(memory: MemoryStrategy, meili_server: MeiliServer) -> None:
    """Two clients (separate connections) record the same pair at once: no increment is lost."""
    other = make(meili_server, memory.config.index)
    errors: list[BaseException] = []

    def work(s: MemoryStrategy) -> None:
        try:
            for _ in range(4):
                s.record("crime podcast", "podcast:crime")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in (memory, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    assert memory.stats("crime podcast")["clicks"] == 8.0


def test_recorded_click_survives_a_crash(own_meili_server: MeiliServer) -> None:
    s = make(own_meili_server)
    s.upsert(CATALOG)
    for _ in range(3):
        s.record("best sad song", "track:hurts")
    own_meili_server.stop(kill=True)  # SIGKILL: nothing flushed after record() returned
    with pytest.raises(BackendUnavailable):
        s.search(Q("best sad songs"), 5)
    with pytest.raises(BackendUnavailable):
        s.record("best sad song", "track:hurts")
    own_meili_server.start()  # same port and data dir
    assert s.stats("best sad song")["clicks"] == 3.0
    assert s.search(Q("best sad songs"), 5)[0].entity_id == "track:hurts"
    s.close()
