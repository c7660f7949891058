"""CatalogStore: change detection, sequence numbers, batching, relations, users, watermarks."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import threading
from pathlib import Path
from typing import Any

from ltrr.catalog.store import CatalogStore
from ltrr.types import Entity, Relation, UserProfile


def _ent(i: int, kind: str = "artist", **kw: object) -> Entity:
    return Entity(f"{kind}:{i}", kind, f"Title {i}", **kw)  # type: ignore[arg-type]


def test_upsert_counts_only_changed_entities(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    assert store.max_seq() == 0
    assert store.upsert_entities([_ent(1), _ent(2), _ent(3, "track")]) == 3
    assert store.max_seq() == 3
    assert store.upsert_entities([_ent(1), _ent(2), _ent(3, "track")]) == 0  # same content hash
    assert store.max_seq() == 3
    changed = dataclasses.replace(_ent(2), popularity=42.0)
    assert store.upsert_entities([_ent(1), changed]) == 1
    assert store.max_seq() == 4
    got = store.get("artist:2")
    assert got == changed and got is not None and got.popularity == 42.0
    assert store.get("artist:404") is None
    assert (store.count(), store.count("artist"), store.count("track"), store.count("podcast")) == (3, 2, 1, 0)


def test_entities_since_yields_seq_ordered_batches(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    store.upsert_entities([_ent(i) for i in range(5)])  # seq 1..5
    store.upsert_entities([dataclasses.replace(_ent(1), title="New")])  # seq 6
    batches = list(store.entities_since(0, batch_size=2))
    assert [(seq, [e.entity_id for e in b]) for seq, b in batches] == [
        (3, ["artist:0", "artist:2"]),  # seqs 1 and 3: artist:1 moved to seq 6
        (5, ["artist:3", "artist:4"]),
        (6, ["artist:1"]),
    ]
    assert [e.title for _, b in store.entities_since(5) for e in b] == ["New"]
    assert list(store.entities_since(6)) == []
    assert (store.count_since(0), store.count_since(4), store.count_since(6)) == (5, 2, 0)


def test_get_many_spans_chunks_and_roundtrips_fields(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    rich = Entity(
        "track:x",
        "track",
        "Tïtle ♥",
        subtitle="Artist",
        genres=("pop",),
        tags=("a", "b"),
        description="d",
        popularity=12.5,
        sources=("spotify",),
        attrs={"album": "A"},
    )
    store.upsert_entities([_ent(i) for i in range(1200)] + [rich])
    ids = [f"artist:{i}" for i in range(0, 1200, 1)] + ["track:x", "missing:1"]
    got = store.get_many(ids)
    assert len(got) == 1201 and "missing:1" not in got
    assert got["track:x"] == rich and got["track:x"].content_hash() == rich.content_hash()


def test_relations_change_detection_and_since(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    store.upsert_entities([_ent(1), _ent(2)])  # seq 1, 2
    rels = [Relation("artist:1", "artist:2", "similar", 0.5), Relation("artist:1", "tag:rock", "tagged", 3.0)]
    assert store.upsert_relations(rels) == 2  # seq 3, 4
    assert store.upsert_relations(rels) == 0
    assert store.upsert_relations([Relation("artist:1", "artist:2", "similar", 0.75)]) == 1  # seq 5
    assert store.max_seq() == 5
    assert list(store.relations_since(0)) == [
        Relation("artist:1", "tag:rock", "tagged", 3.0),
        Relation("artist:1", "artist:2", "similar", 0.75),
    ]
    assert list(store.relations_since(4)) == [Relation("artist:1", "artist:2", "similar", 0.75)]
    # The same (src, dst) pair with another kind is another relation.
    assert store.upsert_relations([Relation("artist:1", "artist:2", "performs", 1.0)]) == 1


def test_users_meta_watermarks_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.sqlite"  # parent directories are created
    store = CatalogStore(path)
    u = UserProfile("lfm:1", (("artist:1", 0.75), ("artist:2", 0.25)), (("rock", 1.0),))
    assert store.upsert_users([u, UserProfile("lfm:2")]) == 2
    assert store.user("lfm:1") == u and store.user("nobody") is None
    assert store.upsert_users([dataclasses.replace(u, top_tags=())]) == 1
    assert {p.user_id: p.top_tags for p in store.users()} == {"lfm:1": (), "lfm:2": ()}
    assert store.watermark("meili") == 0
    store.set_watermark("meili", 17)
    store.set_meta("k", "v")
    store.upsert_entities([_ent(1)])
    store.close()
    again = CatalogStore(path)
    assert again.watermark("meili") == 17 and again.get_meta("k") == "v" and again.get_meta("x", "d") == "d"
    assert again.count() == 1 and again.user("lfm:2") == UserProfile("lfm:2")


def test_concurrent_writers_in_one_process(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for i in range(offset, offset + 200, 20):
                store.upsert_entities([_ent(j) for j in range(i, i + 20)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k * 200,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 800 and store.max_seq() == 800
    seqs = [seq for seq, _ in store.entities_since(0, batch_size=1)]
    assert seqs == list(range(1, 801))  # every write got its own sequence number


ROUNDS, PER_ROUND = 200, 3


def _replica(path: str, k: int, barrier: Any) -> None:
    """An ingress replica: its own process and connection, writing small batches in step with the other."""
    store = CatalogStore(path)
    for r in range(ROUNDS):
        barrier.wait(60)  # both replicas start each round together: their writes race
        ids = [f"artist:w{k}-{r}-{i}" for i in range(PER_ROUND)]
        store.upsert_entities([Entity(e, "artist", e) for e in ids])
        store.upsert_relations([Relation(ids[0], e, "similar", 0.5) for e in ids[1:]])
    store.close()


def test_two_replicas_get_unique_seqs_and_a_watermark_reader_sees_each_row_once(tmp_path: Path) -> None:
    """Two processes upsert concurrently; a reader walking by watermark (``entities_since`` from the last
    seq it saw, as ``ltrr.ingest.sync`` does) runs meanwhile. Sequence numbers are taken inside the write
    transaction, so they are unique across both tables and grow in commit order: no row is skipped."""
    path = str(tmp_path / "c.sqlite")
    store = CatalogStore(path)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    replicas = [ctx.Process(target=_replica, args=(path, k, barrier)) for k in (1, 2)]
    for p in replicas:
        p.start()
    seen: list[str] = []
    mark = 0
    while True:
        running = any(p.is_alive() for p in replicas)  # one last walk after both finished
        for last, batch in store.entities_since(mark, batch_size=4):
            seen += [e.entity_id for e in batch]
            mark = last
        if not running:
            break
    for p in replicas:
        p.join(60)
    assert [p.exitcode for p in replicas] == [0, 0]
    written = {f"artist:w{k}-{r}-{i}" for k in (1, 2) for r in range(ROUNDS) for i in range(PER_ROUND)}
    with store._lock:
        seqs = [s for (s,) in store._db.execute("SELECT seq FROM entities UNION ALL SELECT seq FROM relations")]
    n = 2 * ROUNDS * (2 * PER_ROUND - 1)
    skipped, twice, duplicates = len(written - set(seen)), len(seen) - len(set(seen)), len(seqs) - len(set(seqs))
    assert (skipped, twice, duplicates) == (0, 0, 0), (
        f"the reader skipped {skipped} rows and saw {twice} twice; {duplicates} sequence numbers were reused"
    )
    assert len(seqs) == n and sorted(seqs) == list(range(1, n + 1)) and store.max_seq() == n
    store.close()
