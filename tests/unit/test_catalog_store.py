"""The catalog store on both backends (``catalog_factory``, tests/fixtures/postgres.py: CatalogStore on a
SQLite file, PgCatalogStore on a fresh PostgreSQL database): change detection, sequence numbers, batching,
relations, users and the learner's compare-and-set, watermarks, and concurrent writers (threads with their
own connections, processes) whose seqs are unique and committed in order. What only PostgreSQL has (the
advisory lock, the schema, the migration, open_catalog) is in test_catalog_store_pg.py."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import threading
from typing import Any

import pytest

from ltrr.catalog.store import CatalogBase
from ltrr.types import Entity, Relation, UserProfile
from tests.fixtures.postgres import CatalogFactory, Spec, open_catalog_spec


def _ent(i: int, kind: str = "artist", **kw: object) -> Entity:
    return Entity(f"{kind}:{i}", kind, f"Title {i}", **kw)  # type: ignore[arg-type]


def test_upsert_counts_only_changed_entities(catalog_factory: CatalogFactory) -> None:
    store = catalog_factory()
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


def test_entities_since_yields_seq_ordered_batches(catalog_factory: CatalogFactory) -> None:
    store = catalog_factory()
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


def test_get_many_spans_chunks_and_roundtrips_fields(catalog_factory: CatalogFactory) -> None:
    store = catalog_factory()
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


def test_relations_change_detection_and_since(catalog_factory: CatalogFactory) -> None:
    store = catalog_factory()
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


def test_users_meta_watermarks_and_reopen(catalog_factory: CatalogFactory) -> None:
    store = catalog_factory()  # SQLite: the file's parent directory is created
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
    again = catalog_factory()
    assert again.watermark("meili") == 17 and again.get_meta("k") == "v" and again.get_meta("x", "d") == "d"
    assert again.count() == 1 and again.user("lfm:2") == UserProfile("lfm:2")


def test_a_repeat_in_one_batch_is_compared_with_the_row_before_it(catalog_factory: CatalogFactory) -> None:
    store = catalog_factory()
    v2 = dataclasses.replace(_ent(1), title="Second")
    assert store.upsert_entities([_ent(1), v2, v2]) == 2  # v1 (seq 1), v2 (seq 2), v2 again: unchanged
    assert store.max_seq() == 2 and store.count() == 1 and store.get("artist:1") == v2
    assert [(seq, [e.title for e in b]) for seq, b in store.entities_since(0)] == [(2, ["Second"])]
    r = Relation("artist:1", "artist:2", "similar", 0.5)
    assert store.upsert_relations([r, dataclasses.replace(r, weight=0.25), r]) == 3  # seqs 3, 4, 5
    assert store.max_seq() == 5 and list(store.relations_since(0)) == [r]
    u = UserProfile("lfm:1", (("artist:1", 1.0),))
    assert store.upsert_users([u, u, UserProfile("lfm:1")]) == 2 and store.user("lfm:1") == UserProfile("lfm:1")
    assert (store.upsert_entities([]), store.upsert_relations([]), store.upsert_users([])) == (0, 0, 0)
    assert store.get_many([]) == {} and store.delete_users([]) == 0


def test_update_users_moves_the_cursor_with_the_profiles_or_writes_nothing(catalog_factory: CatalogFactory) -> None:
    store = catalog_factory()
    store.upsert_users([UserProfile("a", (("artist:1", 1.0),))])
    seen: list[tuple[str, UserProfile | None, dict[str, Any] | None]] = []

    def update(uid: str, profile: UserProfile | None, state: dict[str, Any] | None) -> Any:
        seen.append((uid, profile, state))
        if uid == "skip":
            return None
        n = (state or {}).get("n", 0) + 1
        return UserProfile(uid, (("artist:1", float(n)),)), {"n": n, "é": [uid]}

    assert store.update_users(["a", "new", "skip", "a"], update, cursor_key="c", expect=0, to=7) is True
    assert seen == [
        ("a", UserProfile("a", (("artist:1", 1.0),)), None),
        ("new", None, None),
        ("skip", None, None),
        ("a", UserProfile("a", (("artist:1", 1.0),)), {"n": 1, "é": ["a"]}),  # sees the write before it
    ]
    assert store.get_meta("c") == "7" and store.user_state("a") == {"n": 2, "é": ["a"]}
    assert store.user("a") == UserProfile("a", (("artist:1", 2.0),)) and store.user("new") is not None
    assert store.user("skip") is None and store.user_state("skip") is None
    seen.clear()
    assert store.update_users(["a"], update, cursor_key="c", expect=0, to=9) is False  # the cursor is at 7
    assert seen == [] and store.get_meta("c") == "7" and store.user_state("a") == {"n": 2, "é": ["a"]}
    assert store.update_users([], update, cursor_key="fresh", expect=1, to=2) is False  # absent reads as 0
    assert store.get_meta("fresh") is None

    def broken(uid: str, profile: UserProfile | None, state: dict[str, Any] | None) -> Any:
        if uid == "b":
            raise RuntimeError("boom")
        return update(uid, profile, state)

    with pytest.raises(RuntimeError, match="boom"):
        store.update_users(["a", "b"], broken, cursor_key="c", expect=7, to=8)
    assert store.get_meta("c") == "7" and store.user_state("a") == {"n": 2, "é": ["a"]}  # rolled back
    assert store.update_users([], update, cursor_key="fresh", expect=0, to=3) is True
    assert store.get_meta("fresh") == "3"
    assert store.delete_users(["a", "nobody"]) == 1 and store.user("a") is None
    assert store.user_state("a") is not None  # the learner's state stays, as in the file


def test_concurrent_writers_in_one_process(catalog_factory: CatalogFactory) -> None:
    """Threads sharing one store (its one write connection)."""
    store = catalog_factory()
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


def _ids(k: int, r: int) -> list[str]:
    return [f"artist:w{k}-{r}-{i}" for i in range(PER_ROUND)]


def _write_rounds(store: CatalogBase, k: int, wait: Any) -> None:
    """Writer ``k``: small batches of entities and relations, starting each round with the other writer."""
    for r in range(ROUNDS):
        wait()  # both writers start each round together: their writes race
        ids = _ids(k, r)
        store.upsert_entities([Entity(e, "artist", e) for e in ids])
        store.upsert_relations([Relation(ids[0], e, "similar", 0.5) for e in ids[1:]])


def _replica(spec: Spec, k: int, barrier: Any) -> None:
    """An ingress replica: its own process and connection."""
    store = open_catalog_spec(spec)
    _write_rounds(store, k, lambda: barrier.wait(60))
    store.close()


def _watch(store: CatalogBase, running: Any) -> list[str]:
    """Walk by watermark (``entities_since`` from the last seq seen, as ``ltrr.ingest.sync`` does) while
    ``running()``, then once more; every entity id seen, in order."""
    seen: list[str] = []
    mark = 0
    while True:
        still = running()  # one last walk after the writers finished
        for last, batch in store.entities_since(mark, batch_size=4):
            seen += [e.entity_id for e in batch]
            mark = last
        if not still:
            return seen


def _check_seqs(catalog_factory: CatalogFactory, store: CatalogBase, seen: list[str]) -> None:
    written = {e for k in (1, 2) for r in range(ROUNDS) for e in _ids(k, r)}
    t = catalog_factory.table
    sql = f"SELECT seq FROM {t('entities')} UNION ALL SELECT seq FROM {t('relations')}"
    seqs = [s for (s,) in catalog_factory.rows(sql)]
    n = 2 * ROUNDS * (2 * PER_ROUND - 1)
    skipped, twice, duplicates = len(written - set(seen)), len(seen) - len(set(seen)), len(seqs) - len(set(seqs))
    assert (skipped, twice, duplicates) == (0, 0, 0), (
        f"the reader skipped {skipped} rows and saw {twice} twice; {duplicates} sequence numbers were reused"
    )
    assert len(seqs) == n and sorted(seqs) == list(range(1, n + 1)) and store.max_seq() == n


def test_two_writers_on_their_own_connections_get_unique_seqs_in_commit_order(
    catalog_factory: CatalogFactory,
) -> None:
    """Two threads, each with its own store (its own connections, as two replicas have), upsert at once while a
    third store walks by watermark: seqs are unique and contiguous across both tables, and the reader sees
    every entity exactly once."""
    stores = [catalog_factory() for _ in range(3)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            _write_rounds(stores[k], k, lambda: barrier.wait(60))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(k,)) for k in (1, 2)]
    for th in threads:
        th.start()
    seen = _watch(stores[0], lambda: any(th.is_alive() for th in threads))
    for th in threads:
        th.join()
    assert errors == []
    _check_seqs(catalog_factory, stores[0], seen)


def test_two_replicas_get_unique_seqs_and_a_watermark_reader_sees_each_row_once(
    catalog_factory: CatalogFactory,
) -> None:
    """The same with two processes. Sequence numbers are taken inside the write transaction (SQLite's write
    lock, PostgreSQL's advisory lock), so they are unique across both tables and grow in commit order: no row
    is skipped."""
    store = catalog_factory()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    replicas = [ctx.Process(target=_replica, args=(catalog_factory.spec, k, barrier)) for k in (1, 2)]
    for p in replicas:
        p.start()
    seen = _watch(store, lambda: any(p.is_alive() for p in replicas))
    for p in replicas:
        p.join(60)
    assert [p.exitcode for p in replicas] == [0, 0]
    _check_seqs(catalog_factory, store, seen)


def test_two_learners_move_the_cursor_once(catalog_factory: CatalogFactory) -> None:
    """Learners on their own connections compare-and-set the same cursor at once: one wins each round, and
    the loser wrote nothing."""
    stores = [catalog_factory() for _ in range(2)]
    barrier = threading.Barrier(2)
    wins: list[list[int]] = [[], []]

    def learner(k: int) -> None:
        for r in range(30):
            barrier.wait(60)

            def update(uid: str, profile: UserProfile | None, state: dict[str, Any] | None, r: int = r) -> Any:
                return UserProfile(uid, (("artist:1", 1.0),)), {"by": k, "round": r}

            if stores[k].update_users([f"u{r}"], update, cursor_key="c", expect=r, to=r + 1):
                wins[k].append(r)
            else:  # the other learner moved it: go on from there, as ProfileLearner does
                assert int(stores[k].get_meta("c") or 0) == r + 1

    threads = [threading.Thread(target=learner, args=(k,)) for k in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(wins[0] + wins[1]) == list(range(30))
    assert stores[0].get_meta("c") == "30"
    for r in range(30):
        state = stores[1].user_state(f"u{r}")
        assert state is not None and state["round"] == r and r in wins[state["by"]]
