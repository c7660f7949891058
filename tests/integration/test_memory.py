"""Memory strategy against a real Meilisearch: cold start, click feedback, atomicity, durability, exactly once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from ltrr.backends.meili_server import MeiliServer
from ltrr.catalog.store import CatalogStore
from ltrr.errors import BackendUnavailable, NotFound
from ltrr.eventlog import FeedbackEvent, SearchEvent, SQLiteEventLog, now
from ltrr.strategies.base import Strategy
from ltrr.strategies.memory import Click, ClickEdit, MemoryConfig, MemoryStrategy
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


# -- exactly once ----------------------------------------------------------------------------------
def test_logged_clicks_count_once_however_often_they_are_recorded(memory: MemoryStrategy) -> None:
    """A batch replayed whole, in halves, or after later clicks: each logged click counts once, and the
    server's edit agrees with :meth:`ClickEdit.apply` exactly."""
    memory.record("best sad song", "track:hurts", weight=0.5)  # a document from before last_seq: reads 0
    batch = [
        Click("best sad song", "track:hurts", 1.0, 3),
        Click("Best Sad Song!", "track:hurts", 0.25, 5),  # the same document, a later seq
        Click("that creep song", "track:creep", 2.0, 4),
    ]
    memory.record_many(batch)
    once = {q: memory.stats(q)["clicks"] for q in ("best sad song", "that creep song")}
    assert once == {"best sad song": 0.5 + 1.0 + 0.25, "that creep song": 2.0}
    expected = {q: ClickEdit().apply(c, 0) for q, c in once.items()}  # (clicks, last_seq) as the rule says
    memory.record_many(batch)  # the crash came before the cursor was saved: the whole batch again
    memory.record_many(batch[:1])  # a bisected batch: one half, then the other
    memory.record_many(batch[1:])
    assert {q: memory.stats(q)["clicks"] for q in once} == once
    memory.record_many([*batch, Click("best sad song", "track:hurts", 1.0, 6)])  # replayed, then one new
    docs = memory._client.fetch_documents(memory.config.index, 'source = "click"', ["query", "clicks", "last_seq"])
    got = {d["query"]: (d["clicks"], d["last_seq"]) for d in docs}
    want_sad = ClickEdit(0.0, ((3, 1.0), (5, 0.25), (6, 1.0))).apply(*ClickEdit().apply(0.5, 0))
    assert want_sad == (2.75, 6) and got == {
        "best sad song": want_sad,
        "that creep song": (expected["that creep song"][0], 4),
    }
    memory.record("best sad song", "track:hurts")  # without a seq: counted every time, last_seq unchanged
    assert memory.stats("best sad song")["clicks"] == 3.75


class Crash(Exception):
    """The learner process dies here."""


def _log_clicks(path: Path, clicks: list[tuple[str, str]]) -> None:
    """One search per (query, entity), clicked on that entity: the positive feedback the learner teaches."""
    log = SQLiteEventLog(path)
    for i, (query, entity) in enumerate(clicks):
        log.record_search(SearchEvent(f"r{i}", now(), query, "", (entity,)))
        log.record_feedback(FeedbackEvent(f"e{i}", f"r{i}", entity, "click", 1, now()))
    log.close()


def test_a_crash_before_the_cursor_save_does_not_count_clicks_twice(memory: MemoryStrategy, tmp_path: Path) -> None:
    """The learner teaches a batch, dies before saving the ``memory`` cursor, restarts and replays the
    batch: the counts are those of one application."""
    from deployments.learner import MEMORY_CURSOR, PolicyLearner  # imports RLlib: only this test needs it

    store = CatalogStore(tmp_path / "catalog.sqlite")
    store.upsert_entities(CATALOG)
    store.close()
    clicks = [("best sad song", "track:hurts")] * 3 + [("that creep song", "track:creep")] * 2
    _log_clicks(tmp_path / "events.sqlite", clicks)
    app = {
        "catalog_path": str(tmp_path / "catalog.sqlite"),
        "events_path": str(tmp_path / "events.sqlite"),
        "strategies": {"lexical": {}, "vector": {"enabled": False}, "memory": {"enabled": False}},
        "policy": {"checkpoint_dir": str(tmp_path / "policy"), "checkpoint_interval_s": 3600.0},
    }
    first = PolicyLearner(app, start=False)
    first.memory = memory
    save = first.events.set_cursor

    def crash_before_memory_cursor(name: str, seq: int) -> None:
        if name == MEMORY_CURSOR:
            raise Crash
        save(name, seq)

    first.events.set_cursor = crash_before_memory_cursor  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.step_side()
    assert first.events.cursor(MEMORY_CURSOR) == 0, "the batch was taught, the cursor not saved"
    assert memory.stats("best sad song")["clicks"] == 3.0
    first._stop.set()  # dead: no final step
    first.lease.release()  # and a dead process's lease goes with it
    first.events.close()

    restarted = PolicyLearner(app, start=False)
    restarted.memory = memory
    assert restarted.step_side()["memory"] == 5  # the whole batch is replayed ...
    assert restarted.events.cursor(MEMORY_CURSOR) == 5
    assert memory.stats("best sad song")["clicks"] == 3.0  # ... and counted once
    assert memory.stats("that creep song")["clicks"] == 2.0
    assert restarted.step_side()["memory"] == 0
    restarted.memory = None  # the fixture closes the shared strategy
    restarted.close()
